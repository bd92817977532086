//! The wire protocol: every JSON message that crosses the signaling websocket.
//!
//! One internally tagged enum per direction (`type` field, camelCase names). The server, the
//! integration tests and the load generator all use these types; the web client mirrors them and
//! `docs/protocol.md` documents each one with an example. This module holds data only: no I/O,
//! no room state.

use serde::{Deserialize, Serialize};

pub use crate::vocab::{
    CelebrationId, ChatMessageId, CheckInId, E2eeMode, IceServer, MediaKind, MilestoneKind, ParticipantId, PauseReason, PollId,
    PollOptionId, ProposalId, Role, RoomId, SessionId, SimulcastLayer, SupportRequestId, TrackSource,
};

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
    /// The connection dropped; the place is held for the reconnect grace period.
    #[serde(default)]
    pub reconnecting: bool,
    /// Sharing a screen or window right now.
    #[serde(default)]
    pub screen_sharing: bool,
    /// May share a screen: therapists always, participants when a therapist allows it.
    #[serde(default)]
    pub can_share_screen: bool,
}

/// Someone in the waiting room, as therapists see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingInfo {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// Family guests only: their sponsor's id and display name ("Guest of <sponsor>"); the
    /// name is absent while the sponsor is not in the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor: Option<ParticipantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor_name: Option<String>,
}

/// Room-wide settings every admitted member sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoomState {
    pub locked: bool,
    pub waiting_room: bool,
    pub spotlight: Option<ParticipantId>,
    /// End-to-end encryption of media: `off`, `preferred` or `required`.
    #[serde(default)]
    pub e2ee: E2eeMode,
}

/// A breakout room, as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakoutRef {
    pub id: String,
    pub name: String,
}

/// One breakout in the therapist's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakoutInfo {
    pub id: String,
    pub name: String,
    /// Assigned participants (while open: those in it).
    pub members: Vec<ParticipantId>,
}

/// Everything a therapist needs to run breakouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BreakoutPlan {
    pub open: bool,
    pub rooms: Vec<BreakoutInfo>,
    pub closes_at_ms: Option<u64>,
    pub allow_return: bool,
    /// Where each admitted member is now (`null`: the main room), with their names.
    pub whereabouts: Vec<Whereabouts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Whereabouts {
    pub participant_id: ParticipantId,
    pub name: String,
    pub role: Role,
    pub breakout_id: Option<String>,
    /// Their connection dropped and their place is held (therapists see it in every space).
    #[serde(default)]
    pub reconnecting: bool,
}

// ---- end-to-end encryption (opaque to the server) ----

/// One member's wrapped copy of a space key, inside `e2eeKeyBundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct E2eeWrap {
    pub participant_id: ParticipantId,
    /// base64url; the server never opens it.
    pub wrap: String,
}

/// Who is in one space, for the key leader (therapists only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct E2eeSpace {
    /// `main`, a breakout id or a private room id.
    pub space: String,
    pub members: Vec<E2eeMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct E2eeMember {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
}

/// Longest group name a therapist may set for the waiting room.
pub const MAX_GROUP_NAME_CHARS: usize = 80;
/// Longest welcome message for the waiting room.
pub const MAX_WELCOME_CHARS: usize = 600;
/// Longest closing message on the end screen.
pub const MAX_CLOSING_CHARS: usize = 600;

/// Largest signed bundle (base64url characters): a 50-person member list with keys and names.
pub const MAX_E2EE_BUNDLE_CHARS: usize = 16 * 1024;
/// Largest public key, signature or wrap (base64url characters).
pub const MAX_E2EE_KEY_CHARS: usize = 256;

/// A blob the server relays without reading: non-empty base64url (no padding) of bounded size.
pub fn is_e2ee_blob(text: &str, max_chars: usize) -> bool {
    !text.is_empty() && text.len() <= max_chars && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---- texts sealed end to end ----

/// Most sealings one text may carry: one per space it goes to (the main room and every
/// breakout, for a poll to all of them).
pub const MAX_SEALED_ENVELOPES: usize = 64;
/// Bytes of an AES-GCM nonce, and of its tag.
const SEALED_IV_BYTES: usize = 12;
const SEALED_TAG_BYTES: usize = 16;

/// Characters of the base64url (no padding) form of `bytes` bytes.
const fn b64url_chars(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

/// Longest `ct` of a sealed text whose plain form may have `max_chars` characters: the UTF-8
/// of that many characters (4 bytes each at most) and the tag, in base64url.
pub const fn max_sealed_ct_chars(max_chars: usize) -> usize {
    b64url_chars(4 * max_chars + SEALED_TAG_BYTES)
}

/// One sealing of a text under one space's key, made in the sender's browser (AES-256-GCM,
/// a key derived from the space key of `epoch`; see docs/protocol.md, "Sealed texts").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedText {
    /// `main`, a breakout id or a private room id: whose key sealed it.
    pub space: String,
    /// The epoch of that space's key.
    pub epoch: u32,
    /// The nonce: 12 random bytes, base64url.
    pub iv: String,
    /// Ciphertext and tag, base64url.
    pub ct: String,
}

impl SealedText {
    /// A well-formed sealing of a text of at most `max_chars` characters.
    pub fn is_well_formed(&self, max_chars: usize) -> bool {
        let space_ok = !self.space.is_empty()
            && self.space.len() <= 64
            && self.space.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        space_ok
            && self.iv.len() == b64url_chars(SEALED_IV_BYTES)
            && is_e2ee_blob(&self.iv, self.iv.len())
            && self.ct.len() > b64url_chars(SEALED_TAG_BYTES)
            && is_e2ee_blob(&self.ct, max_sealed_ct_chars(max_chars))
    }
}

/// A text people typed: plain, or sealed end to end by the sender's browser (in rooms whose
/// `e2ee` is `required`, where the server takes only sealed texts and cannot read them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Sealed { sealed: Vec<SealedText> },
}

impl Text {
    /// The text when it is plain.
    pub fn plain(&self) -> Option<&str> {
        match self {
            Text::Plain(t) => Some(t),
            Text::Sealed { .. } => None,
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, Text::Sealed { .. })
    }

    /// A sealed text with 1 to [`MAX_SEALED_ENVELOPES`] well-formed sealings of at most
    /// `max_chars` characters; `false` for a plain text.
    pub fn is_well_sealed(&self, max_chars: usize) -> bool {
        match self {
            Text::Plain(_) => false,
            Text::Sealed { sealed } => {
                (1..=MAX_SEALED_ENVELOPES).contains(&sealed.len()) && sealed.iter().all(|s| s.is_well_formed(max_chars))
            }
        }
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text::Plain(text.to_string())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::Plain(text)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.plain() == Some(other)
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.plain() == Some(other.as_str())
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.plain() == Some(*other)
    }
}

// ---- poll data ----

/// Who a poll goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PollScope {
    /// The therapist's own space: the main room, or the breakout they are in.
    #[default]
    Room,
    /// Every space at once: the main room and every breakout.
    AllBreakouts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollOption {
    pub id: PollOptionId,
    /// Plain, or sealed in a `required` room.
    pub text: Text,
}

/// A poll as everyone in its scope sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollInfo {
    pub id: PollId,
    /// Plain, or sealed in a `required` room.
    pub question: Text,
    pub options: Vec<PollOption>,
    /// `true`: choose one or more options; `false`: exactly one.
    pub multiple: bool,
    /// `true`: the server keeps no record of who chose what (see docs/polls.md).
    pub anonymous: bool,
    pub scope: PollScope,
    /// When the timer closes the poll, milliseconds since the Unix epoch (`null`: by hand only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollOptionCount {
    pub option_id: PollOptionId,
    pub count: u32,
}

/// Named polls, therapists only: who chose an option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollOptionVoters {
    pub option_id: PollOptionId,
    pub voters: Vec<PollVoter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollVoter {
    pub participant_id: ParticipantId,
    pub name: String,
}

/// A poll's counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollTally {
    pub poll_id: PollId,
    /// One entry per option, in option order.
    pub counts: Vec<PollOptionCount>,
    /// People who have voted (a multiple-choice vote counts once here, once per option above).
    pub total_voters: u32,
    /// Named polls, and only in messages to therapists: who chose each option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_option: Option<Vec<PollOptionVoters>>,
}

/// Why a poll closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PollCloseReason {
    /// A therapist closed it.
    Closed,
    /// Its time limit ran out.
    Timer,
    /// Everyone left, so the session (and the poll with it) ended.
    SessionEnded,
    /// The server stopped while it was open; its last counts were kept.
    Interrupted,
}

impl PollCloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PollCloseReason::Closed => "closed",
            PollCloseReason::Timer => "timer",
            PollCloseReason::SessionEnded => "sessionEnded",
            PollCloseReason::Interrupted => "interrupted",
        }
    }
}

// ---- milestone data ----

/// How a participant likes to be celebrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum CelebrationStyle {
    /// No overlay for the group: only the participant and therapists get a record.
    None,
    /// A small banner.
    Quiet,
    #[default]
    Standard,
    /// Confetti.
    Big,
}

/// Who sees a participant's celebrations (never wider than this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum CelebrationAudience {
    /// Everyone in the participant's space (main room or breakout), and therapists.
    Group,
    /// The participant and therapists only. The default until the participant chooses.
    #[default]
    TherapistOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CelebrationPreferences {
    pub style: CelebrationStyle,
    pub audience: CelebrationAudience,
}

/// The fixed set of reactions peers congratulate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reaction {
    Clap,
    Heart,
    Star,
    Hug,
    Sparkle,
}

/// What is celebrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Milestone {
    pub kind: MilestoneKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u32>,
    /// At most 40 characters; required for `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One celebrated milestone in someone's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MilestoneEntry {
    pub celebration_id: CelebrationId,
    pub participant_id: ParticipantId,
    pub milestone: Milestone,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

// ---- chat and support data ----

/// One chat message as its recipients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatEntry {
    pub id: ChatMessageId,
    pub from: ParticipantId,
    pub from_name: String,
    /// Plain text, 1 to 1000 characters, trimmed (sealed in a `required` room). Never render it
    /// as markup.
    pub text: Text,
    /// Private messages: the one recipient (the sender sees it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ParticipantId>,
    pub private: bool,
    /// Milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// The room's chat settings, set by a therapist, shown to everyone admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSettings {
    /// `false`: only therapists may post.
    pub enabled: bool,
    /// Participants may message each other privately (they may always message a therapist).
    pub private_messages: bool,
    /// Keep each space's messages in memory for the session, so late joiners get `chatHistory`.
    pub keep_transcript: bool,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self { enabled: true, private_messages: false, keep_transcript: false }
    }
}

// ---- support requests ----

/// Where a support request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SupportState {
    /// No therapist has seen it yet.
    Open,
    /// A therapist saw it and is on it.
    Acknowledged,
    /// Done, with an outcome.
    Resolved,
}

/// How a therapist closed a support request (stored; the only thing stored besides ids and
/// times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SupportOutcome {
    ResolvedInSession,
    FollowUpNeeded,
    Escalated,
}

impl SupportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SupportOutcome::ResolvedInSession => "resolvedInSession",
            SupportOutcome::FollowUpNeeded => "followUpNeeded",
            SupportOutcome::Escalated => "escalated",
        }
    }
}

/// What the requester is told, truthfully: whether anyone has seen the request yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SupportDelivery {
    /// No therapist is connected right now; it reaches the first one who connects.
    NoTherapist,
    /// Sent to the connected therapists; none has acknowledged it yet.
    Alerted,
    /// A therapist has seen it.
    Seen,
    /// A therapist closed it.
    Resolved,
}

/// One open (or acknowledged) support request, as therapists see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportRequestInfo {
    pub request_id: SupportRequestId,
    pub participant_id: ParticipantId,
    pub name: String,
    /// The space they are in (`null`: the main room).
    pub breakout_id: Option<String>,
    pub at_ms: u64,
    pub state: SupportState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<ParticipantId>,
    /// `false` once the requester has left the session (their request stays until resolved).
    pub requester_present: bool,
}

// ---- check-in and check-out ----

/// A check-in at the start of a session, or a check-out at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckInPhase {
    CheckIn,
    CheckOut,
}

impl CheckInPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckInPhase::CheckIn => "checkIn",
            CheckInPhase::CheckOut => "checkOut",
        }
    }
}

/// A check-in round as everyone admitted sees it: a scale from `min` to `max`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInInfo {
    pub check_in_id: CheckInId,
    pub phase: CheckInPhase,
    /// The question, e.g. "How is your mood right now?" (at most 200 characters).
    pub question: String,
    pub min: u8,
    pub max: u8,
    /// Words for the two ends, e.g. "very low" and "very good".
    pub min_label: String,
    pub max_label: String,
    /// `true`: only counts are kept and shown, never who answered what, and no trend.
    pub anonymous: bool,
}

/// How many people chose each value (`counts[i]` chose `min + i`), and how many passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInHistogram {
    pub check_in_id: CheckInId,
    pub min: u8,
    pub counts: Vec<u32>,
    pub passed: u32,
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
    /// The room moved to another relay node; a `redirect` or `goodbye` says where to go.
    Moved,
}

// ---- running a group: speaking queue, rounds, ground rules ----

/// One raised hand in a space's speaking queue. `seq` is stamped by the server when the hand
/// went up (per space, never reused), so every screen orders the queue the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedHand {
    pub participant_id: ParticipantId,
    pub seq: u64,
}

/// The order of a go-around round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoundOrder {
    /// The space's roster, in join order.
    #[default]
    Roster,
    /// Shuffled once by the server at the start; everyone sees the same order.
    Random,
    /// The speaking queue first (in its order), then everyone else in roster order.
    Queue,
}

/// Where partner breakouts put someone whose partners are all absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AbsentPartners {
    /// Into the smallest other partner group that is open (or together with others in the same
    /// situation when no group is).
    #[default]
    JoinAnother,
    /// They stay in the main room.
    StayInMain,
}

/// A go-around round as everyone in its space sees it. The server owns the order and the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundInfo {
    pub order: Vec<ParticipantId>,
    /// Whose turn it is (`null`: the round is over).
    pub current: Option<ParticipantId>,
    /// Those who passed, and those who left before their turn (skipped).
    pub passed: Vec<ParticipantId>,
    pub skipped: Vec<ParticipantId>,
    pub allow_pass: bool,
    /// Length of each turn (`null`: until the speaker passes or the therapist moves on).
    pub seconds_per_turn: Option<u32>,
    /// When the current turn ends, milliseconds since the Unix epoch.
    pub turn_ends_at_ms: Option<u64>,
    /// Seconds left in the current turn when this was sent: clients count down from receipt,
    /// which does not depend on their clock agreeing with the server's.
    pub seconds_left: Option<u32>,
}

/// One item of a session's agenda.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgendaItem {
    /// 1 to 80 characters.
    pub title: String,
    /// 1 to 240.
    pub minutes: u32,
}

/// The session's agenda as everyone sees it: the items, the current segment and its clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgendaInfo {
    pub items: Vec<AgendaItem>,
    /// Index of the running segment (`null`: none).
    pub current: Option<u32>,
    /// Items already ended, by index.
    pub done: Vec<u32>,
    /// When the running segment's time is up, milliseconds since the Unix epoch.
    pub ends_at_ms: Option<u64>,
    /// Seconds left in the running segment when this was sent (0: over time).
    pub seconds_left: Option<u32>,
}

/// An agenda a therapist saved to use again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgendaTemplate {
    pub name: String,
    pub items: Vec<AgendaItem>,
}

/// Therapists only: how long one member has spoken in this session, from the audio levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TalkTimeEntry {
    pub participant_id: ParticipantId,
    pub seconds: u32,
}

/// Therapists only: where one person stands with the room's agreement, and where they said
/// they are right now (memory only, gone at session end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementStatus {
    pub participant_id: ParticipantId,
    /// Accepted the room's current agreement.
    pub agreed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Client → server. A message's `type` tag is its variant name in camelCase, written once by
/// the derives: serde's for the wire, strum's for [`ClientMessage::kind`] and
/// [`ClientMessage::TYPES`] (the same rule; a test decodes every documented example and checks
/// the two agree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
#[strum(serialize_all = "camelCase")]
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
    IceCandidate {
        candidate: IceCandidate,
    },
    /// The client muted or unmuted its own microphone or camera (shown to others).
    SetMute {
        kind: MediaKind,
        muted: bool,
    },
    /// Raise or lower one's own hand.
    RaiseHand,
    /// Lower a hand: one's own, or (therapist) anyone's.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
    },
    // ---- therapist only ----
    /// Let someone in from the waiting room.
    Admit {
        participant_id: ParticipantId,
    },
    AdmitAll,
    /// Refuse someone in the waiting room; they are told and disconnected.
    Decline {
        participant_id: ParticipantId,
        /// `true`: a ban for the rest of the session (`banned` on every later knock); otherwise
        /// they may knock again.
        #[serde(default)]
        r#final: bool,
    },
    /// Mute a participant. `hard`: the server stops forwarding and only a therapist can undo it;
    /// otherwise a request the participant's client honours and the participant may undo.
    Mute {
        participant_id: ParticipantId,
        kind: MediaKind,
        hard: bool,
    },
    /// Lift a hard mute.
    Unmute {
        participant_id: ParticipantId,
        kind: MediaKind,
    },
    /// Mute every participant (not therapists).
    MuteAll {
        kind: MediaKind,
        hard: bool,
    },
    /// Disconnect a participant; their participant id cannot rejoin this session.
    Remove {
        participant_id: ParticipantId,
    },
    /// A locked room takes no new joins, even with valid tokens (therapists excepted).
    LockRoom {
        locked: bool,
    },
    SetWaitingRoom {
        enabled: bool,
    },
    /// Pin a participant on every client (`null` to clear).
    Spotlight {
        participant_id: Option<ParticipantId>,
    },
    /// End the session for everyone. While support requests are not resolved it is refused
    /// (`support_open`) unless `confirm` is true.
    EndSession {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm: bool,
        /// A few words for everyone's end screen (at most [`MAX_CLOSING_CHARS`] characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closing_message: Option<String>,
    },
    /// What the waiting room shows: the group's name and a welcome message from the therapist
    /// (empty clears either). Kept by the server beyond the session, for the next one.
    SetWelcome {
        group_name: String,
        message: String,
    },
    // ---- breakout rooms ----
    /// Therapist: add a breakout room.
    CreateBreakout {
        name: String,
    },
    /// Therapist: delete a breakout room; anyone in it returns to the main room.
    DeleteBreakout {
        breakout_id: String,
    },
    /// Therapist: put a participant in a breakout (`null`: the main room). While breakouts are
    /// open the participant moves at once.
    AssignBreakout {
        participant_id: ParticipantId,
        breakout_id: Option<String>,
    },
    /// Therapist: spread the participants in the main room evenly, at random, over the breakouts.
    AutoAssignBreakouts,
    /// Therapist: open the breakouts; everyone assigned moves there.
    OpenBreakouts {
        #[serde(default)]
        duration_secs: Option<u32>,
        #[serde(default)]
        warning_secs: Option<u32>,
        allow_return: bool,
    },
    /// Therapist: a short text shown in every breakout and the main room.
    BroadcastToBreakouts {
        text: String,
    },
    /// Therapist: everyone returns to the main room after a countdown (default 10 s).
    CloseBreakouts {
        #[serde(default)]
        countdown_secs: Option<u32>,
    },
    /// Move oneself: therapists to any breakout; `null` is the main room, which participants may
    /// choose only when the breakouts allow returning.
    GoToBreakout {
        breakout_id: Option<String>,
    },
    /// A participant in a breakout asks the therapists for help.
    AskForHelp,
    // ---- screen sharing ----
    /// About to publish (`active: true`) or stopped (`false`) a screen share: the video track
    /// whose `MediaStreamTrack.id` is `clientTrackId`, added with the stream `clientStreamId`.
    /// The server matches either against the msid in the client's SDP: Chromium writes the
    /// track's id there only on a new transceiver, and its sender's id when `addTrack` reuses
    /// one the server created, while the stream id is always the one given to `addTrack`.
    /// Therapists may always share; participants once a therapist allows it.
    ScreenShare {
        client_track_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_stream_id: Option<String>,
        active: bool,
    },
    /// Therapist: allow or stop a participant's screen sharing.
    AllowScreenShare {
        participant_id: ParticipantId,
        allowed: bool,
    },
    // ---- simulcast ----
    /// The height in device pixels at which this subscriber shows a video (its tile); the
    /// server forwards the simulcast layer that fits. 0: do not send this video now.
    SetVideoPreference {
        track_id: String,
        max_height: u32,
    },
    // ---- polls ----
    /// Therapist: create and launch a poll; everyone in `scope` gets `pollStarted`.
    CreatePoll {
        /// 1 to 300 characters (sealed in a `required` room).
        question: Text,
        /// 2 to 10 options of 1 to 100 characters each (sealed in a `required` room).
        options: Vec<Text>,
        multiple: bool,
        anonymous: bool,
        /// Closes by itself after this many seconds (1 to 86400); absent: by hand only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_secs: Option<u32>,
        /// Absent: `room` (the therapist's own space).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<PollScope>,
    },
    /// Vote, or change one's vote while the poll is open: the new choice replaces the old.
    Vote {
        poll_id: PollId,
        option_ids: Vec<PollOptionId>,
    },
    /// Therapist: close a poll now.
    ClosePoll {
        poll_id: PollId,
    },
    /// Therapist, `required` rooms: the texts of an open poll sealed again under the newest
    /// keys, so people who joined after it started can read it. Same number of options, in the
    /// same order; votes are kept. Everyone the poll is for gets `pollStarted` again.
    ResealPoll {
        poll_id: PollId,
        question: Text,
        options: Vec<Text>,
    },
    /// Therapist: show the counts (never who chose what) to everyone in the poll's scope.
    SharePollResults {
        poll_id: PollId,
    },
    // ---- milestones ----
    /// Your own celebration preferences, remembered per participant id; answered by
    /// `celebrationPreferences`.
    SetCelebrationPreferences {
        style: CelebrationStyle,
        audience: CelebrationAudience,
    },
    /// Answered by `celebrationPreferences`.
    GetCelebrationPreferences,
    /// Therapist: celebrate a participant's milestone, shown as far as their preferences allow.
    Celebrate {
        participant_id: ParticipantId,
        kind: MilestoneKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// A note shown with the celebration (at most 280 characters; never stored).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Text>,
    },
    /// Propose one's own milestone; therapists approve or decline it before anyone sees it.
    ShareMilestone {
        kind: MilestoneKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Text>,
    },
    /// Therapist: celebrate a shared milestone.
    ApproveMilestone {
        proposal_id: ProposalId,
    },
    /// Therapist: drop a shared milestone; nobody but therapists and the proposer hears of it.
    DeclineMilestone {
        proposal_id: ProposalId,
    },
    /// React to a celebration you were shown (rate limited; `message` at most 140 characters).
    Congratulate {
        celebration_id: CelebrationId,
        reaction: Reaction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Text>,
    },
    /// Your own timeline (all groups). A therapist may name anyone (this group's entries only)
    /// or ask for the whole `group`.
    GetMilestoneHistory {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        group: bool,
    },
    // ---- chat and support ----
    /// Post to everyone in one's space, or (`to`) privately to one person. The text is sealed
    /// in a `required` room.
    Chat {
        text: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<ParticipantId>,
    },
    /// Therapist: change the chat settings; absent fields stay as they are.
    SetChatSettings {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enabled: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_messages: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_transcript: Option<bool>,
    },
    /// Therapist: remove a message for everyone who received it.
    DeleteChatMessage {
        message_id: ChatMessageId,
    },
    /// Participant: "I need support". Only therapists are alerted.
    RequestSupport,
    /// Therapist: move oneself and a participant into a private space of two.
    OpenPrivateRoom {
        participant_id: ParticipantId,
    },
    /// Therapist: end a private room; the participant returns where they belong.
    ClosePrivateRoom {
        space_id: String,
    },
    /// Therapist: "I have seen this" for a support request; the requester is told.
    AcknowledgeSupport {
        request_id: SupportRequestId,
    },
    /// Therapist: close a support request with its outcome (acknowledging it if need be).
    ResolveSupport {
        request_id: SupportRequestId,
        outcome: SupportOutcome,
    },
    /// Therapist: whether support requests also reach the admitted peer-support staff (off
    /// when a room starts).
    RouteSupport {
        peer_support: bool,
    },
    // ---- family spaces ----
    /// Therapist: open a family space for a participant (the sponsor): the sponsor and the
    /// therapist move in, and the sponsor's family guests can then be admitted into it.
    OpenFamilySpace {
        sponsor_id: ParticipantId,
    },
    /// Therapist: close a sponsor's family space: their guests' sessions end, the others return
    /// where they belong.
    CloseFamilySpace {
        sponsor_id: ParticipantId,
    },
    // ---- check-in and check-out ----
    /// Therapist: open the session's check-in or check-out, a scale from `min` to `max`
    /// (defaults 0 and 10; at most 20 steps). One round open at a time.
    StartCheckIn {
        phase: CheckInPhase,
        question: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_label: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_label: Option<String>,
        #[serde(default)]
        anonymous: bool,
    },
    /// Answer the open check-in (`value: null` passes); a new answer replaces the old one.
    AnswerCheckIn {
        check_in_id: CheckInId,
        value: Option<u8>,
    },
    /// Therapist: close the check-in; `share: true` shows the group the histogram (counts only).
    CloseCheckIn {
        check_in_id: CheckInId,
        #[serde(default)]
        share: bool,
    },
    // ---- end-to-end encryption ----
    /// Therapist, before anyone else is admitted: the room's encryption policy.
    SetE2ee {
        mode: E2eeMode,
    },
    /// Every client of an encrypted room, after `joined`: its key for this connection (and a
    /// therapist's identity key signing it). Relayed to therapists; kept in memory only.
    E2eeHello {
        ecdh_pub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity_sig: Option<String>,
    },
    /// The key leader: a new key for one space, a signed member list and one wrap per member.
    /// The server hands each member only its own wrap (`e2eeKeys`).
    E2eeKeyBundle {
        space: String,
        epoch: u32,
        bundle: String,
        signature: String,
        wraps: Vec<E2eeWrap>,
    },
    // ---- running a group ----
    /// Therapist: give the floor to `participantId`, or (absent) to the first hand in the
    /// queue. Their hand goes down; with `spotlight` they are pinned on every screen for the
    /// turn. Nobody is unmuted: the speaker unmutes themselves.
    GiveFloor {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
        #[serde(default)]
        spotlight: bool,
    },
    /// Therapist: start a go-around round in their space.
    StartRound {
        #[serde(default)]
        order: RoundOrder,
        /// 5 to 900; absent: no time limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds_per_turn: Option<u32>,
        #[serde(default)]
        allow_pass: bool,
    },
    /// The speaker: pass (or finish) one's turn, when the round allows passing.
    PassTurn,
    /// Therapist: move the round on to the next person.
    NextTurn,
    /// Therapist: end the round in their space.
    EndRound,
    /// Therapist: the session's agenda (replaces the last one; 0 to 20 items). A running
    /// segment stops.
    SetAgenda {
        items: Vec<AgendaItem>,
    },
    /// Therapist: start the agenda item at `index` (ending the running one).
    StartSegment {
        index: u32,
    },
    /// Therapist: give the running segment `minutes` more (1 to 60).
    ExtendSegment {
        minutes: u32,
    },
    /// Therapist: end the running segment.
    EndSegment,
    /// Therapist: keep the current agenda's items under `name` (1 to 60 characters) for later
    /// sessions; a template of the same name is replaced. Answered by `agendaTemplates`.
    SaveAgendaTemplate {
        name: String,
    },
    /// Therapist: one's saved agendas; answered by `agendaTemplates`.
    GetAgendaTemplates,
    /// Therapist: the room's ground rules (`null`: none), and whether to ask people where they
    /// are. A changed text asks everyone waiting to accept again.
    SetAgreement {
        text: Option<String>,
        #[serde(default)]
        ask_location: bool,
    },
    /// Accept the agreement with the `version` you were shown; `location` when asked.
    AcceptAgreement {
        version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },
    /// Therapist: the room's accountability partner groups (participant ids, 2 to 6 a group,
    /// nobody twice), kept for later sessions; `[]` forgets them. Answered by `partners`.
    SavePartners {
        groups: Vec<Vec<ParticipantId>>,
    },
    /// Therapist: open breakouts with exactly the saved partner groups (the breakouts there
    /// were, closed, are replaced). `absent` says where someone whose partners are all absent
    /// goes.
    OpenPartnerBreakouts {
        #[serde(default)]
        absent: AbsentPartners,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_secs: Option<u32>,
        #[serde(default)]
        allow_return: bool,
    },
    /// Keep-alive; answered by `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ClientMessage {
    /// The `type` tag, for metrics and logs (never the content).
    pub fn kind(&self) -> &'static str {
        self.into()
    }

    /// Every `type` a client may send.
    pub const TYPES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;
}

/// Server → client. Tags as for [`ClientMessage`]: serde's camelCase, listed by strum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
#[strum(serialize_all = "camelCase")]
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
        /// The session running in the room (absent while none runs: nobody admitted yet).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
    },
    /// You were let in from the waiting room (or, without one, right after `joined`).
    Admitted {
        participants: Vec<ParticipantInfo>,
        room: RoomState,
        /// The session you are now part of (attendance and check-ins are filed under it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        /// How to reach the relay: STUN, and TURN with credentials of your own that expire.
        /// Only here, never before admission; fresh on every admission and reconnection.
        ice_servers: Vec<IceServer>,
        /// The rows of the permission table your role may send here (the first column of the
        /// table in docs/protocol.md, this deployment's withholdings applied), so a page shows
        /// only the controls that work. The server checks every message regardless.
        #[serde(default)]
        permissions: Vec<String>,
    },
    /// Therapists only: who is waiting.
    WaitingList {
        waiting: Vec<WaitingInfo>,
    },
    RoomStateChanged {
        room: RoomState,
    },
    /// The therapist muted you (`hard`: you cannot unmute) or asked you to mute.
    MutedByModerator {
        kind: MediaKind,
        hard: bool,
    },
    /// The therapist lifted a hard mute; you may unmute.
    UnmutedByModerator {
        kind: MediaKind,
    },
    /// Your session is over; the socket closes next.
    SessionEnded {
        reason: EndReason,
        message: String,
        /// `ended`: the therapist's closing words, when they wrote any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closing_message: Option<String>,
    },
    /// People in the waiting room, and therapists (who set it): what they are waiting for.
    /// Sent on arrival and whenever any of it changes.
    WaitingRoom {
        /// The group's name as the therapist set it (`null`: not set; never the room id).
        group_name: Option<String>,
        /// The therapist who is here, or who ran the last session here (`null`: none yet).
        therapist_name: Option<String>,
        /// A therapist is in the session now.
        therapist_here: bool,
        /// The therapist's welcome message (`null`: none).
        welcome: Option<String>,
        /// The session this person's link was for has ended and no new one has started.
        session_ended: bool,
    },
    /// Therapists: someone with a valid link was turned away because the room is locked. Only
    /// therapists hear of it; nobody else is told.
    TurnedAway {
        participant_id: ParticipantId,
        name: String,
        role: Role,
    },
    // ---- breakout rooms ----
    /// Therapists: the whole breakout plan, after every change.
    BreakoutsUpdated {
        breakouts: BreakoutPlan,
    },
    /// You moved to another space; `participants` is who is there (you included).
    SpaceChanged {
        breakout: Option<BreakoutRef>,
        participants: Vec<ParticipantInfo>,
        closes_at_ms: Option<u64>,
        allow_return: bool,
    },
    /// Someone entered or left your space: who is there now.
    SpaceRoster {
        participants: Vec<ParticipantInfo>,
    },
    /// The breakouts close in `seconds_left` (the warning before the duration ends).
    BreakoutWarning {
        seconds_left: u32,
    },
    /// The therapist closed the breakouts: everyone returns in `seconds_left`.
    BreakoutsClosing {
        seconds_left: u32,
    },
    BreakoutBroadcast {
        from: String,
        text: String,
    },
    /// Therapists: someone in a breakout asked for help.
    HelpRequested {
        participant_id: ParticipantId,
        name: String,
        breakout_id: Option<String>,
    },
    // ---- polls ----
    /// A poll opened in your space (also sent on admission for polls still open).
    PollStarted {
        poll: PollInfo,
    },
    /// Therapists: the live counts after every vote (`byOption` for named polls).
    PollResults(PollTally),
    /// A therapist shared the counts with the room (never who chose what).
    PollResultsShared(PollTally),
    /// The poll closed. `results`: the final counts for therapists (with `byOption` for named
    /// polls); for everyone else only when a therapist shared the results.
    PollClosed {
        poll_id: PollId,
        reason: PollCloseReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        results: Option<PollTally>,
    },
    /// Your vote counts; `optionIds` is your current choice.
    VoteAccepted {
        poll_id: PollId,
        option_ids: Vec<PollOptionId>,
    },
    // ---- milestones ----
    /// Your celebration preferences; `chosen: false` means the defaults (you never chose).
    CelebrationPreferences {
        style: CelebrationStyle,
        audience: CelebrationAudience,
        chosen: bool,
    },
    /// Therapists (and, as an acknowledgement, the proposer): a shared milestone awaits approval.
    MilestoneProposed {
        proposal_id: ProposalId,
        participant_id: ParticipantId,
        name: String,
        milestone: Milestone,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Text>,
    },
    /// Therapists and the proposer: a therapist approved (a `celebration` follows) or declined.
    MilestoneProposalResolved {
        proposal_id: ProposalId,
        approved: bool,
    },
    /// A milestone to celebrate. Sent only to the audience the celebrated participant chose:
    /// `group`: their space and therapists; `therapistOnly`, or style `none`: themselves and
    /// therapists. `badgeSvg` is a self-contained SVG image (render it as an image, not markup).
    Celebration {
        celebration_id: CelebrationId,
        participant_id: ParticipantId,
        name: String,
        milestone: Milestone,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Text>,
        style: CelebrationStyle,
        audience: CelebrationAudience,
        badge_svg: String,
    },
    /// Someone reacted to a celebration; sent to everyone who received that celebration.
    Congratulation {
        celebration_id: CelebrationId,
        from: ParticipantId,
        from_name: String,
        reaction: Reaction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Text>,
    },
    /// Reply to `getMilestoneHistory`, oldest first.
    MilestoneHistory {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        group: bool,
        entries: Vec<MilestoneEntry>,
    },
    // ---- chat and support ----
    /// A chat message, to everyone in the sender's space or (private) to its two parties.
    ChatMessage(ChatEntry),
    /// The chat settings: to everyone admitted on every change, and to each member on admission.
    ChatSettings(ChatSettings),
    /// A therapist deleted a message; sent to everyone who received it.
    ChatMessageDeleted {
        message_id: ChatMessageId,
    },
    /// With `keepTranscript`: the messages kept for the space you entered (private ones only
    /// when you are a party), oldest first.
    ChatHistory {
        messages: Vec<ChatEntry>,
    },
    /// Therapists only: a participant asked for support.
    SupportRequested {
        request_id: SupportRequestId,
        participant_id: ParticipantId,
        name: String,
        /// The space they are in (`null`: the main room).
        breakout_id: Option<String>,
        at_ms: u64,
    },
    /// The requester: where their request stands, truthfully (`noTherapist` until one is
    /// connected, `seen` only after a therapist acknowledged it), with the crisis resources
    /// (`support.resources_text`). Sent at once and again at every change.
    SupportStatus {
        request_id: SupportRequestId,
        delivery: SupportDelivery,
        resources_text: String,
    },
    /// Therapists only: every support request of the session not yet resolved, after every
    /// change and when a therapist joins or reconnects.
    SupportRequests {
        requests: Vec<SupportRequestInfo>,
        /// Whether requests also reach peer-support staff now (`routeSupport`).
        #[serde(default)]
        peer_support: bool,
    },
    /// Therapists only: someone left the session for good while their support request was still
    /// open.
    SupportRequesterLeft {
        request_id: SupportRequestId,
        participant_id: ParticipantId,
    },
    // ---- check-in and check-out ----
    /// A check-in or check-out opened (also sent on admission while one is open).
    CheckInStarted {
        check_in: CheckInInfo,
    },
    /// To the one who answered only: their answer counts (`null`: they passed).
    CheckInAnswered {
        check_in_id: CheckInId,
        value: Option<u8>,
    },
    /// Therapists only, named check-ins: one person's answer and, at check-out, the change
    /// since this session's check-in (`change`). Earlier sessions are in the person's trend.
    CheckInValue {
        check_in_id: CheckInId,
        participant_id: ParticipantId,
        value: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<i16>,
        /// Their check-in value at the latest earlier session of this room that has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<u8>,
    },
    /// Therapists: the counts after every answer (for anonymous check-ins the only live view).
    CheckInCounts(CheckInHistogram),
    /// The check-in closed: to therapists with the counts; to everyone else with the counts only
    /// when the therapist shared them (`histogram: null` otherwise).
    CheckInClosed {
        check_in_id: CheckInId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        histogram: Option<CheckInHistogram>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    /// A server-made offer: tracks were added or removed.
    Offer(Sdp),
    /// The answer to a client-made offer.
    Answer(Sdp),
    IceCandidate {
        candidate: IceCandidate,
    },
    /// To the sharer: the server now forwards their announced screen share to the others in
    /// their space (the client's "you are sharing" is this, not its own assumption).
    ScreenShareForwarded {
        track_id: String,
    },
    // ---- running a group ----
    /// The speaking queue of your space and who has the floor, after every change and on
    /// entering a space.
    SpeakingQueue {
        queue: Vec<QueuedHand>,
        floor: Option<ParticipantId>,
    },
    /// The round in your space (`null`: none), after every change and on entering a space.
    RoundUpdated {
        round: Option<RoundInfo>,
    },
    /// The room's ground rules (to everyone not yet in, and on every change). `version` is the
    /// text's hash; accept with it.
    Agreement {
        text: Option<String>,
        version: Option<String>,
        ask_location: bool,
        /// You accepted this version already.
        accepted: bool,
    },
    /// The agenda and the running segment's clock: to everyone admitted after every change,
    /// and on admission (also to reconnects and late joiners).
    AgendaUpdated {
        agenda: AgendaInfo,
    },
    /// The running segment ends in `secondsLeft` (sent once per segment, to everyone admitted).
    AgendaWarning {
        seconds_left: u32,
    },
    /// Therapists: their saved agendas, by name.
    AgendaTemplates {
        templates: Vec<AgendaTemplate>,
    },
    /// Therapists only: seconds of speaking per participant in this session (everyone admitted,
    /// in join order), every few seconds while it changes. Never sent to participants, never
    /// stored.
    TalkTime {
        people: Vec<TalkTimeEntry>,
    },
    /// Therapists only: the room's saved accountability partner groups, on admission and after
    /// every change.
    Partners {
        groups: Vec<Vec<ParticipantId>>,
    },
    /// To one member only: the others in their partner group (`[]`: none), on admission and
    /// when their group changes. Nobody is told anyone else's pairing.
    YourPartners {
        partner_ids: Vec<ParticipantId>,
    },
    /// Therapists only: who (waiting or in) has accepted the agreement and where they said they
    /// are, for everyone in the session but therapists; after every change.
    AgreementStatuses {
        people: Vec<AgreementStatus>,
    },
    /// Maps a media stream id seen in SDP (`msid`) to the participant who publishes it.
    TrackPublished {
        participant_id: ParticipantId,
        stream_id: String,
        track_id: String,
        kind: MediaKind,
        /// `screen` for a shared screen (its stream id is `<participant>~screen`).
        #[serde(default)]
        source: TrackSource,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// The request failed; nothing changed. `code` is stable, `message` is for people.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The server is going away (shutdown); the socket closes next.
    Goodbye {
        reason: String,
    },
    /// The layer of a video this subscriber receives changed, or its video paused or resumed.
    VideoState {
        track_id: String,
        /// `null` for a video without simulcast layers.
        layer: Option<SimulcastLayer>,
        paused: bool,
        reason: Option<PauseReason>,
    },
    /// Who is speaking in the receiver's space (the main room or a breakout), from audio
    /// levels; `null` when nobody is. Sent on change only, at most a few times a second.
    ActiveSpeaker {
        participant_id: Option<ParticipantId>,
    },
    // ---- end-to-end encryption ----
    /// Therapists: a member's `e2eeHello` (also for people still waiting).
    E2eePeerKey {
        participant_id: ParticipantId,
        ecdh_pub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity_sig: Option<String>,
    },
    /// Everyone: the therapist whose device makes the keys (the first admitted therapist that
    /// sent an identity key), or all `null` when there is none.
    E2eeLeader {
        participant_id: Option<ParticipantId>,
        identity_key: Option<String>,
        ecdh_pub: Option<String>,
        identity_sig: Option<String>,
    },
    /// One member: its own wrapped copy of a space key, with the leader's signed bundle.
    E2eeKeys {
        from: ParticipantId,
        space: String,
        epoch: u32,
        bundle: String,
        signature: String,
        wrap: String,
    },
    /// Therapists: who is admitted in which space, whenever that changes.
    E2eeSpaces {
        spaces: Vec<E2eeSpace>,
    },
    /// Relay nodes: this room is served by another node (in reply to `join`), or is moving
    /// there (a drain). Join again at `url` with the same token; the socket closes next.
    Redirect {
        url: String,
        reason: RedirectReason,
    },
}

/// Why a client is sent to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RedirectReason {
    /// The room lives on another node.
    RoomElsewhere,
    /// This node is draining; the room moved to another node.
    Draining,
    /// Another node took the room over (this one lost contact with the cluster for a while).
    Moved,
}

/// Stable error codes; clients switch on these, never on the message text.
#[derive(strum::IntoStaticStr, strum::VariantArray, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// `setVideoPreference` named a track this connection does not receive.
    UnknownTrack,
    /// Relay nodes: the cluster cannot place the room right now (Redis unreachable, or the
    /// room is moving between nodes). Retry in a moment.
    ClusterUnavailable,
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
    /// No breakout with that id.
    UnknownBreakout,
    /// The breakouts do not allow returning to the main room by oneself.
    ReturnNotAllowed,
    /// A `createPoll` outside the limits (question, options, duration, open polls).
    InvalidPoll,
    /// No poll with that id in this room.
    UnknownPoll,
    /// The poll is for another space (another breakout or the main room).
    PollOutOfScope,
    /// The poll has closed; votes are no longer taken.
    PollClosed,
    /// An option id the poll does not have.
    UnknownOption,
    /// The wrong number of options: exactly one for single choice, at least one and no repeats
    /// for multiple choice.
    InvalidVote,
    /// No pending proposal or recent celebration with that id that you may act on.
    UnknownMilestone,
    /// A shared milestone needs a therapist in the session to approve it.
    NoTherapist,
    /// The therapist turned chat off.
    ChatDisabled,
    /// A chat message that is empty or over 1000 characters.
    InvalidChat,
    /// Participants may message each other privately only when the therapist allows it.
    PrivateMessagesOff,
    /// No chat message with that id (or it is too old to delete).
    UnknownChatMessage,
    /// No open private room with that id.
    UnknownPrivateRoom,
    /// The therapist or participant is already in a private room.
    PrivateRoomBusy,
    /// A `screenShare` was announced but no matching video reached the server in time.
    ScreenShareNotReceived,
    /// The token's participant id is in the room under another role; nothing changed there.
    SeatTaken,
    /// More tracks than `limits.max_tracks_per_participant`: the extra one is not forwarded.
    TooManyTracks,
    /// No `join` within `limits.join_timeout_ms` of opening the socket; it closes next.
    JoinTimeout,
    /// An end-to-end encryption message with a key, signature or bundle that is not
    /// base64url or is too large, or a space that does not exist.
    InvalidE2ee,
    /// The encryption policy changes only before anyone but therapists is admitted; a
    /// `required` room keeps its waiting room on.
    E2eeSettingLocked,
    /// An end-to-end encrypted (`required`) room forwards only VP8 video and Opus audio.
    E2eeCodec,
    /// A plain chat, poll or milestone text in an end-to-end encrypted (`required`) room, where
    /// the sender's browser must seal it; nothing was stored or relayed.
    SealedTextRequired,
    /// A display name (in a token) that is empty, over 64 characters, or holds control or
    /// text-direction (bidi override) characters.
    InvalidName,
    /// No support request with that id in this session (or it is already resolved).
    UnknownSupportRequest,
    /// `endSession` while support requests are still open: send it again with `confirm: true`.
    SupportOpen,
    /// A `startCheckIn` outside the limits (question, scale), or one is already open.
    InvalidCheckIn,
    /// No open check-in with that id.
    UnknownCheckIn,
    /// A check-in value outside its scale.
    InvalidCheckInValue,
    /// An agenda outside the limits (items, titles, minutes), or a segment index it does not
    /// have, or no running segment to extend or end.
    InvalidAgenda,
    /// `giveFloor` without a name while nobody's hand is raised.
    QueueEmpty,
    /// A `startRound` outside the limits (seconds per turn, nobody to go around).
    InvalidRound,
    /// No round is running in your space.
    NoRound,
    /// `passTurn` when it is not your turn, or the round does not allow passing.
    NotYourTurn,
    /// An agreement text that is empty or too long, or a location that is.
    InvalidAgreement,
    /// `admit` of someone who has not accepted the room's agreement.
    AgreementPending,
    /// `acceptAgreement` with a version that is no longer the room's (it changed; read it again).
    AgreementChanged,
    /// Partner groups outside the limits (a group of 1 or over 6, someone twice, a therapist),
    /// or partner breakouts with none saved, none to open, or breakouts already open.
    InvalidPartners,
}

impl ErrorCode {
    /// Every code, in declaration order (tests check clients against it).
    pub const ALL: &'static [ErrorCode] = <Self as strum::VariantArray>::VARIANTS;

    /// The wire form (`snake_case`, as serde writes it).
    pub fn as_str(self) -> &'static str {
        self.into()
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
        Self { code, message: clip_message(&message.into()) }
    }
}

/// Longest error message sent to a client, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 200;

/// An error message cut to [`MAX_ERROR_MESSAGE_CHARS`] on a char boundary, with "…" when cut.
/// Messages may quote client input (serde's errors quote the offending value): echoing a
/// 64 KiB value back, queued per socket, let idle sockets multiply the server's memory.
pub fn clip_message(message: &str) -> String {
    match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        None => message.to_string(),
        Some((cut, _)) => format!("{}…", &message[..cut]),
    }
}

/// Decodes one text frame. `max_bytes` is the configured frame limit.
pub fn decode_client(text: &str, max_bytes: usize) -> Result<ClientMessage, DecodeError> {
    if text.len() > max_bytes {
        return Err(DecodeError::new(ErrorCode::MessageTooLarge, format!("message is {} bytes; the limit is {max_bytes}", text.len())));
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
    if !ClientMessage::TYPES.contains(&ty) {
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
        assert_eq!(msg, ClientMessage::Join { protocol_version: 1, room_id: RoomId::new("group-a").expect("valid"), token: "t".into() });
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
        // A type missing from TYPES would be reported as unknown instead of invalid.
        let samples = [
            r#"{"type":"leave"}"#,
            r#"{"type":"raiseHand"}"#,
            r#"{"type":"admitAll"}"#,
            r#"{"type":"endSession"}"#,
            r#"{"type":"lowerHand"}"#,
            r#"{"type":"spotlight","participantId":null}"#,
        ];
        for t in samples {
            let msg = decode_client(t, 1024).expect(t);
            assert!(ClientMessage::TYPES.contains(&msg.kind()), "{}", msg.kind());
        }
        assert_eq!(decode_client(r#"{"type":"mute"}"#, 1024).unwrap_err().code, ErrorCode::InvalidMessage);
    }

    #[test]
    fn chat_and_support_messages_match_the_docs() {
        let d = |t: &str| decode_client(t, 4096).expect(t);
        assert_eq!(
            d(r#"{"type":"chat","text":"Can we talk after?","to":"t-1"}"#),
            ClientMessage::Chat { text: "Can we talk after?".into(), to: Some(ParticipantId::from_trusted("t-1")) }
        );
        assert_eq!(d(r#"{"type":"requestSupport"}"#), ClientMessage::RequestSupport);
        assert_eq!(
            d(r#"{"type":"setChatSettings","keepTranscript":true}"#),
            ClientMessage::SetChatSettings { enabled: None, private_messages: None, keep_transcript: Some(true) }
        );
        for t in
            [r#"{"type":"chat"}"#, r#"{"type":"openPrivateRoom"}"#, r#"{"type":"closePrivateRoom"}"#, r#"{"type":"deleteChatMessage"}"#]
        {
            assert_eq!(decode_client(t, 4096).unwrap_err().code, ErrorCode::InvalidMessage, "{t}");
        }
        let entry = ChatEntry {
            id: ChatMessageId::from_raw("m-1"),
            from: ParticipantId::from_trusted("p-1"),
            from_name: "Sam".into(),
            text: "<b>hi</b>".into(),
            to: None,
            private: false,
            sent_at_ms: 7,
        };
        assert_eq!(
            encode_server(&ServerMessage::ChatMessage(entry)),
            r#"{"type":"chatMessage","id":"m-1","from":"p-1","fromName":"Sam","text":"<b>hi</b>","private":false,"sentAtMs":7}"#
        );
        assert_eq!(
            encode_server(&ServerMessage::ChatSettings(ChatSettings::default())),
            r#"{"type":"chatSettings","enabled":true,"privateMessages":false,"keepTranscript":false}"#
        );
    }

    #[test]
    fn error_messages_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(300);
        let clipped = clip_message(&long);
        assert_eq!(clipped.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip_message("short"), "short");
        let frame = format!(r#"{{"type":"join","protocolVersion":"{}","roomId":"r","token":"t"}}"#, "a".repeat(5000));
        let err = decode_client(&frame, 65536).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidMessage);
        assert!(err.message.chars().count() <= MAX_ERROR_MESSAGE_CHARS + 1, "{}", err.message.len());
    }

    #[test]
    fn server_messages_have_type_tags() {
        let s = encode_server(&ServerMessage::Error { code: ErrorCode::RoomFull, message: "full".into() });
        assert_eq!(s, r#"{"type":"error","code":"room_full","message":"full"}"#);
        let s = encode_server(&ServerMessage::Offer(Sdp { sdp: "v=0".into() }));
        assert_eq!(s, r#"{"type":"offer","sdp":"v=0"}"#);
    }
}
