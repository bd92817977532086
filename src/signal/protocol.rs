//! The wire protocol: every JSON message that crosses the signaling websocket.
//!
//! One internally tagged enum per direction (`type` field, camelCase names). The server, the
//! integration tests and the load generator all use these types; the web client mirrors them and
//! `docs/protocol.md` documents each one with an example. This module holds data only: no I/O,
//! no room state.

use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::room::{ParticipantId, RoomId};

/// Bumped on any incompatible change. A client sends the version it speaks in `join`.
pub const PROTOCOL_VERSION: u32 = 1;

/// An SDP blob, as produced by `RTCPeerConnection.createOffer/createAnswer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sdp {
    pub sdp: String,
}

/// A trickled ICE candidate, field names as in the browser's `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex", skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Which kind of media a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// ICE server handed to clients so they can reach the relay through NATs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What everyone in a room may know about a participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// Muted by the participant (or asked to by the therapist).
    pub audio_muted: bool,
    pub video_muted: bool,
    /// Muted by the therapist: the server does not forward it and only a therapist can lift it.
    pub audio_hard_muted: bool,
    pub video_hard_muted: bool,
    pub hand_raised: bool,
}

/// Someone in the waiting room, as therapists see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingInfo {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
}

/// Room-wide settings every admitted member sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoomState {
    pub locked: bool,
    pub waiting_room: bool,
    pub spotlight: Option<ParticipantId>,
}

/// Why the server ended someone's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndReason {
    /// The therapist declined entry from the waiting room.
    Declined,
    /// The therapist removed this participant.
    Removed,
    /// The therapist ended the session for everyone.
    Ended,
    /// The same participant joined from another connection.
    Replaced,
    /// The connection could not keep up with the room's messages.
    Stalled,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// Enter a room. Must be the first message that changes state on a connection.
    Join {
        protocol_version: u32,
        room_id: RoomId,
        /// A join token (see docs/protocol.md): it carries the role, name and participant id.
        token: String,
    },
    /// Leave the room; the socket stays open and may join again.
    Leave,
    /// A client-made offer (for example the first one, carrying the client's own tracks).
    Offer(Sdp),
    /// The answer to a server-made offer.
    Answer(Sdp),
    /// A trickled local candidate; `candidate` empty means end of candidates.
    IceCandidate { candidate: IceCandidate },
    /// The client muted or unmuted its own microphone or camera (shown to others).
    SetMute { kind: MediaKind, muted: bool },
    /// Raise or lower one's own hand.
    RaiseHand,
    /// Lower a hand: one's own, or (therapist) anyone's.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
    },
    // ---- therapist only ----
    /// Let someone in from the waiting room.
    Admit { participant_id: ParticipantId },
    AdmitAll,
    /// Refuse someone in the waiting room; they are told and disconnected.
    Decline { participant_id: ParticipantId },
    /// Mute a participant. `hard`: the server stops forwarding and only a therapist can undo it;
    /// otherwise a request the participant's client honours and the participant may undo.
    Mute { participant_id: ParticipantId, kind: MediaKind, hard: bool },
    /// Lift a hard mute.
    Unmute { participant_id: ParticipantId, kind: MediaKind },
    /// Mute every participant (not therapists).
    MuteAll { kind: MediaKind, hard: bool },
    /// Disconnect a participant; their participant id cannot rejoin this session.
    Remove { participant_id: ParticipantId },
    /// A locked room takes no new joins, even with valid tokens (therapists excepted).
    LockRoom { locked: bool },
    SetWaitingRoom { enabled: bool },
    /// Pin a participant on every client (`null` to clear).
    Spotlight { participant_id: Option<ParticipantId> },
    /// End the session for everyone.
    EndSession,
    // ---- breakout rooms (issue 4) ----
    // ---- polls (issue 5) ----
    // ---- milestones (issue 6) ----
    // ---- chat and support (issue 10) ----
    /// Keep-alive; answered by `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ClientMessage {
    /// The `type` tag, for metrics and logs (never the content).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Leave => "leave",
            ClientMessage::Offer(_) => "offer",
            ClientMessage::Answer(_) => "answer",
            ClientMessage::IceCandidate { .. } => "iceCandidate",
            ClientMessage::SetMute { .. } => "setMute",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::RaiseHand => "raiseHand",
            ClientMessage::LowerHand { .. } => "lowerHand",
            ClientMessage::Admit { .. } => "admit",
            ClientMessage::AdmitAll => "admitAll",
            ClientMessage::Decline { .. } => "decline",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::Unmute { .. } => "unmute",
            ClientMessage::MuteAll { .. } => "muteAll",
            ClientMessage::Remove { .. } => "remove",
            ClientMessage::LockRoom { .. } => "lockRoom",
            ClientMessage::SetWaitingRoom { .. } => "setWaitingRoom",
            ClientMessage::Spotlight { .. } => "spotlight",
            ClientMessage::EndSession => "endSession",
        }
    }
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    /// Reply to `join`: who you are, who is here, how to reach the relay.
    Joined {
        protocol_version: u32,
        room_id: RoomId,
        participant_id: ParticipantId,
        name: String,
        role: Role,
        /// `false`: in the waiting room; `admitted` follows when the therapist lets you in.
        admitted: bool,
        /// Empty while waiting.
        participants: Vec<ParticipantInfo>,
        room: RoomState,
        ice_servers: Vec<IceServer>,
    },
    /// You were let in from the waiting room.
    Admitted { participants: Vec<ParticipantInfo>, room: RoomState },
    /// Therapists only: who is waiting.
    WaitingList { waiting: Vec<WaitingInfo> },
    RoomStateChanged { room: RoomState },
    /// The therapist muted you (`hard`: you cannot unmute) or asked you to mute.
    MutedByModerator { kind: MediaKind, hard: bool },
    /// The therapist lifted a hard mute; you may unmute.
    UnmutedByModerator { kind: MediaKind },
    /// Your session is over; the socket closes next.
    SessionEnded { reason: EndReason, message: String },
    // ---- breakout rooms (issue 4) ----
    // ---- polls (issue 5) ----
    // ---- milestones (issue 6) ----
    // ---- chat and support (issue 10) ----
    ParticipantJoined { participant: ParticipantInfo },
    ParticipantLeft { participant_id: ParticipantId },
    ParticipantUpdated { participant: ParticipantInfo },
    /// A server-made offer: tracks were added or removed.
    Offer(Sdp),
    /// The answer to a client-made offer.
    Answer(Sdp),
    IceCandidate { candidate: IceCandidate },
    /// Maps a media stream id seen in SDP (`msid`) to the participant who publishes it.
    TrackPublished {
        participant_id: ParticipantId,
        stream_id: String,
        track_id: String,
        kind: MediaKind,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// The request failed; nothing changed. `code` is stable, `message` is for people.
    Error { code: ErrorCode, message: String },
    /// The server is going away (shutdown); the socket closes next.
    Goodbye { reason: String },
}

/// Stable error codes; clients switch on these, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON (or not text).
    MalformedJson,
    /// Valid JSON without a string `type` field.
    MissingType,
    /// A `type` this server does not know.
    UnknownType,
    /// A known `type` with missing or ill-typed fields.
    InvalidMessage,
    /// The frame exceeded `limits.max_message_bytes`.
    MessageTooLarge,
    /// `join.protocolVersion` is one this server does not speak.
    UnsupportedVersion,
    /// The action needs a joined connection.
    NotJoined,
    /// `join` on a connection that is already in a room.
    AlreadyJoined,
    /// Room id or display name outside the allowed form.
    InvalidField,
    /// The room has `limits.max_room_size` participants.
    RoomFull,
    /// SDP or ICE negotiation failed.
    Negotiation,
    /// The server is shutting down and takes no new joins.
    ShuttingDown,
    /// Something broke on the server; the message says what, without internals.
    Internal,
    TokenMissing,
    TokenExpired,
    TokenInvalid,
    TokenWrongRoom,
    /// The sender's role may not do this.
    Forbidden,
    RoomLocked,
    /// Removed from this session earlier.
    Banned,
    /// A therapist muted this; only a therapist can unmute it.
    HardMuted,
    UnknownParticipant,
    /// Too many messages or join attempts; slow down.
    RateLimited,
    /// Still in the waiting room.
    NotAdmitted,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::MissingType => "missing_type",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Negotiation => "negotiation",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::TokenMissing => "token_missing",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenWrongRoom => "token_wrong_room",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RoomLocked => "room_locked",
            ErrorCode::Banned => "banned",
            ErrorCode::HardMuted => "hard_muted",
            ErrorCode::UnknownParticipant => "unknown_participant",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotAdmitted => "not_admitted",
        }
    }
}

/// A protocol-level failure to turn a frame into a [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Every `type` tag a client may send; used to tell "unknown type" from "bad fields".
const CLIENT_TYPES: &[&str] = &[
    "join", "leave", "offer", "answer", "iceCandidate", "setMute", "ping", "raiseHand", "lowerHand", "admit", "admitAll",
    "decline", "mute", "unmute", "muteAll", "remove", "lockRoom", "setWaitingRoom", "spotlight", "endSession",
];

/// Decodes one text frame. `max_bytes` is the configured frame limit.
pub fn decode_client(text: &str, max_bytes: usize) -> Result<ClientMessage, DecodeError> {
    if text.len() > max_bytes {
        return Err(DecodeError::new(
            ErrorCode::MessageTooLarge,
            format!("message is {} bytes; the limit is {max_bytes}", text.len()),
        ));
    }
    // Fast path: a well-formed message decodes in one pass.
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(msg) => Ok(msg),
        Err(first) => Err(classify(text, first)),
    }
}

/// Works out which of the decode errors a bad frame deserves (only on the error path).
fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return DecodeError::new(ErrorCode::MalformedJson, format!("not valid JSON: {e}")),
    };
    let Some(ty) = value.get("type").and_then(|t| t.as_str()) else {
        return DecodeError::new(ErrorCode::MissingType, "message needs a string field `type`");
    };
    if !CLIENT_TYPES.contains(&ty) {
        let shown: String = ty.chars().take(40).collect();
        return DecodeError::new(ErrorCode::UnknownType, format!("unknown message type `{shown}`"));
    }
    DecodeError::new(ErrorCode::InvalidMessage, format!("invalid `{ty}` message: {err}"))
}

/// Encodes a server message. Serialising these types cannot fail (no maps with non-string
/// keys, no custom serialisers), so a failure is a programming error worth a loud log.
pub fn encode_server(msg: &ServerMessage) -> String {
    serde_json::to_string(msg).unwrap_or_else(|e| {
        tracing::error!(error = %e, "failed to encode server message");
        r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_round_trips_in_camel_case() {
        let text = r#"{"type":"join","protocolVersion":1,"roomId":"group-a","token":"t"}"#;
        let msg = decode_client(text, 1024).expect("decodes");
        assert_eq!(
            msg,
            ClientMessage::Join { protocol_version: 1, room_id: RoomId::new("group-a").expect("valid"), token: "t".into() }
        );
        let back = serde_json::to_string(&msg).expect("encodes");
        assert_eq!(back, text);
    }

    #[test]
    fn errors_are_classified() {
        let code = |t: &str| decode_client(t, 64).unwrap_err().code;
        assert_eq!(code("{nope"), ErrorCode::MalformedJson);
        assert_eq!(code(r#"{"x":1}"#), ErrorCode::MissingType);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join","roomId":"a"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(&"x".repeat(65)), ErrorCode::MessageTooLarge);
    }

    #[test]
    fn invalid_room_id_is_an_invalid_message() {
        let t = r#"{"type":"join","protocolVersion":1,"roomId":"bad room!","token":"a"}"#;
        assert_eq!(decode_client(t, 1024).unwrap_err().code, ErrorCode::InvalidMessage);
    }

    #[test]
    fn every_client_type_is_listed() {
        // A type missing from CLIENT_TYPES would be reported as unknown instead of invalid.
        let samples = [
            r#"{"type":"leave"}"#, r#"{"type":"raiseHand"}"#, r#"{"type":"admitAll"}"#, r#"{"type":"endSession"}"#,
            r#"{"type":"lowerHand"}"#, r#"{"type":"spotlight","participantId":null}"#,
        ];
        for t in samples {
            let msg = decode_client(t, 1024).expect(t);
            assert!(CLIENT_TYPES.contains(&msg.kind()), "{}", msg.kind());
        }
        assert_eq!(decode_client(r#"{"type":"mute"}"#, 1024).unwrap_err().code, ErrorCode::InvalidMessage);
    }

    #[test]
    fn server_messages_have_type_tags() {
        let s = encode_server(&ServerMessage::Error { code: ErrorCode::RoomFull, message: "full".into() });
        assert_eq!(s, r#"{"type":"error","code":"room_full","message":"full"}"#);
        let s = encode_server(&ServerMessage::Offer(Sdp { sdp: "v=0".into() }));
        assert_eq!(s, r#"{"type":"offer","sdp":"v=0"}"#);
    }
}
