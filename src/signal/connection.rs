//! One websocket: a reader loop here, a writer task, and the participant's session once joined.
//!
//! Every frame is decoded and checked before anything changes; a bad frame gets an `error`
//! reply and the connection stays up. On close (clean or not) the participant leaves its room
//! and its peer connection is closed, so nothing outlives the socket.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, Instrument};

use super::protocol::{
    decode_client, encode_server, ClientMessage, EndReason, ErrorCode, IceCandidate, RedirectReason, Sdp, ServerMessage, PROTOCOL_VERSION,
};
use crate::auth::AuthError;
use crate::cluster::Placement;
use crate::metrics::{CodeLabel, TypeLabel};
use crate::room::actor::OUTBOX_CAPACITY;
use crate::room::{JoinRequest, ParticipantId, RoomError, RoomHandle, RoomId, RoomInput};
use crate::sfu::{Candidate, PeerCommand, PeerEvent, PeerHandle, Refusal};
use crate::state::AppState;

/// How long a closing connection's writer may take to deliver what is queued.
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// A joined participant's place: its room, its peer and the peer's event stream.
struct Session {
    participant: ParticipantId,
    room: RoomHandle,
    peer: PeerHandle,
    peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    /// Fires when the room ends this session (removed, declined, ended, replaced).
    ended: Option<tokio::sync::oneshot::Receiver<EndReason>>,
}

/// Serves one websocket. `remote` is the TCP peer; `client` the client's address (the same,
/// or the one a trusted proxy forwarded), which the join limiter is keyed by.
pub async fn serve(socket: WebSocket, state: Arc<AppState>, remote: SocketAddr, client: IpAddr) {
    let span = info_span!("conn", %remote, %client, room = tracing::field::Empty, participant = tracing::field::Empty);
    Connection::new(state, client).run(socket).instrument(span).await
}

struct Connection {
    state: Arc<AppState>,
    client: IpAddr,
    out: mpsc::Sender<ServerMessage>,
    out_rx: Option<mpsc::Receiver<ServerMessage>>,
    session: Option<Session>,
    rate: DefaultDirectRateLimiter,
    /// When we last told this client it is rate limited (the telling is rate limited too).
    last_rate_error: Option<Instant>,
}

enum Flow {
    Continue,
    Close,
}

impl Connection {
    fn new(state: Arc<AppState>, client: IpAddr) -> Self {
        let (out, out_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let limits = &state.config.limits;
        let per_second = NonZeroU32::new(limits.messages_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.message_burst).unwrap_or(NonZeroU32::MIN);
        let rate = RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst));
        Self { state, client, out, out_rx: Some(out_rx), session: None, rate, last_rate_error: None }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let Some(mut out_rx) = self.out_rx.take() else { return };
        let metrics = self.state.metrics.clone();
        // Once the reader is done, the writer sends what is already queued and stops; it never
        // waits for more (the room may still hold a sender for a held place).
        let finish = CancellationToken::new();
        let finished = finish.clone();
        let mut writer = tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    biased;
                    msg = out_rx.recv() => msg,
                    _ = finished.cancelled() => None,
                };
                let Some(msg) = msg else { break };
                if let ServerMessage::Error { code, .. } = &msg {
                    metrics.errors.get_or_create(&CodeLabel { code: code.as_str() }).inc();
                }
                let goodbye = matches!(msg, ServerMessage::Goodbye { .. } | ServerMessage::Redirect { .. });
                if sink.send(Message::Text(encode_server(&msg).into())).await.is_err() {
                    break;
                }
                if goodbye {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let shutdown = self.state.shutdown.clone();
        // A socket that never joins holds memory and a connection slot for nothing: it gets
        // `limits.join_timeout_ms` from the upgrade (and again after a `leave`) to join.
        let join_timeout = Duration::from_millis(self.state.config.limits.join_timeout_ms);
        let mut join_deadline = tokio::time::Instant::now() + join_timeout;
        let mut had_session = false;
        loop {
            let joined = self.session.is_some();
            if joined != had_session {
                had_session = joined;
                if !joined {
                    join_deadline = tokio::time::Instant::now() + join_timeout;
                }
            }
            let flow = tokio::select! {
                _ = tokio::time::sleep_until(join_deadline), if !joined => {
                    debug!("no join in time; closing");
                    let _ = self.error(ErrorCode::JoinTimeout, "no `join` arrived in time; connect again and join").await;
                    Flow::Close
                }
                _ = shutdown.cancelled() => {
                    let _ = self.out.try_send(ServerMessage::Goodbye { reason: "the server is shutting down".into() });
                    Flow::Close
                }
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        self.error(ErrorCode::MalformedJson, "binary frames are not accepted; send JSON text").await
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Flow::Continue,
                    Some(Ok(Message::Close(_))) | None => Flow::Close,
                    Some(Err(e)) => {
                        debug!(error = %e, "websocket read failed");
                        Flow::Close
                    }
                },
                event = next_session_event(&mut self.session) => match event {
                    SessionEvent::Peer(event) => self.on_peer_event(event).await,
                    SessionEvent::Ended(reason) => self.on_session_ended(reason),
                },
            };
            if matches!(flow, Flow::Close) {
                break;
            }
        }
        // A socket that drops without `leave` may come back: the room holds the place for
        // `rooms.reconnect_grace_ms`. On shutdown nobody comes back here.
        if shutdown.is_cancelled() {
            self.leave().await;
        } else {
            self.disconnect().await;
        }
        drop(self.out);
        finish.cancel();
        // A client that does not read cannot hold the socket open: the writer gets a moment
        // to deliver the last words (`sessionEnded`, `goodbye`), then the socket is dropped.
        if tokio::time::timeout(WRITER_GRACE, &mut writer).await.is_err() {
            debug!("client does not read; closing without flushing");
            writer.abort();
        }
    }

    /// Queues a message without waiting: a full outbox means the client stopped reading, and
    /// waiting on it would let that client stall this task (and what the room asks of it).
    async fn send(&self, msg: ServerMessage) -> Flow {
        match self.out.try_send(msg) {
            Ok(()) => Flow::Continue,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("outbox full; closing the connection of a client that does not read");
                Flow::Close
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Flow::Close, // the writer is gone
        }
    }

    async fn error(&self, code: ErrorCode, message: impl Into<String>) -> Flow {
        // Some messages quote what the client sent; none goes back in full.
        let message = super::protocol::clip_message(&message.into());
        self.send(ServerMessage::Error { code, message }).await
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        if self.rate.check().is_err() {
            let quiet = self.last_rate_error.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
            if quiet {
                return Flow::Continue;
            }
            self.last_rate_error = Some(Instant::now());
            return self.error(ErrorCode::RateLimited, "too many messages; slow down").await;
        }
        let msg = match decode_client(text, self.state.config.limits.max_message_bytes) {
            Ok(m) => m,
            Err(e) => return self.error(e.code, e.message).await,
        };
        self.state.metrics.ws_messages.get_or_create(&TypeLabel { r#type: msg.kind() }).inc();
        match msg {
            ClientMessage::Join { protocol_version, room_id, token } => self.join(protocol_version, room_id, token).await,
            ClientMessage::Ping { nonce } => self.send(ServerMessage::Pong { nonce }).await,
            ClientMessage::Leave => {
                if self.session.is_none() {
                    return self.error(ErrorCode::NotJoined, "not in a room").await;
                }
                self.leave().await;
                Flow::Continue
            }
            other => {
                let Some(session) = &self.session else {
                    return self.error(ErrorCode::NotJoined, format!("`{}` needs a joined room; send `join` first", other.kind())).await;
                };
                match other {
                    ClientMessage::Offer(sdp) => session.peer.send(PeerCommand::RemoteOffer(sdp.sdp)),
                    ClientMessage::Answer(sdp) => session.peer.send(PeerCommand::RemoteAnswer(sdp.sdp)),
                    ClientMessage::IceCandidate { candidate } => session.peer.send(PeerCommand::RemoteCandidate(Candidate {
                        candidate: candidate.candidate,
                        sdp_mid: candidate.sdp_mid,
                        sdp_mline_index: candidate.sdp_mline_index,
                        username_fragment: candidate.username_fragment,
                    })),
                    // What this connection receives is its own peer's business.
                    ClientMessage::SetVideoPreference { track_id, max_height } => {
                        session.peer.send(PeerCommand::SetVideoPreference { track_id, max_height })
                    }
                    ClientMessage::Join { .. } | ClientMessage::Ping { .. } | ClientMessage::Leave => {}
                    room_level => session.room.send(RoomInput::Client { from: session.participant.clone(), msg: room_level }).await,
                }
                Flow::Continue
            }
        }
    }

    async fn join(&mut self, version: u32, room_id: RoomId, token: String) -> Flow {
        let started = Instant::now();
        if version != PROTOCOL_VERSION {
            return self
                .error(ErrorCode::UnsupportedVersion, format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}"))
                .await;
        }
        if self.session.is_some() {
            return self.error(ErrorCode::AlreadyJoined, "already in a room; send `leave` first").await;
        }
        if self.state.shutdown.is_cancelled() {
            return self.error(ErrorCode::ShuttingDown, "the server is shutting down").await;
        }
        let grant = match self.state.tokens.verify(&token, &room_id) {
            Ok(g) => g,
            Err(e) => {
                // Only failures count, and only against their sender: a valid join is never
                // refused, so guessing tokens cannot lock out people behind the same address.
                if self.state.join_limiter.check_key(&self.client).is_err() {
                    return self.error(ErrorCode::RateLimited, "too many failed join attempts from this address; wait a minute").await;
                }
                let code = match e {
                    AuthError::Missing => ErrorCode::TokenMissing,
                    AuthError::Expired => ErrorCode::TokenExpired,
                    AuthError::WrongRoom => ErrorCode::TokenWrongRoom,
                    AuthError::InvalidName(_) => ErrorCode::InvalidName,
                    AuthError::Invalid | AuthError::Mint(_) => ErrorCode::TokenInvalid,
                };
                return self.error(code, e.to_string()).await;
            }
        };
        if let Some(flow) = self.place(&room_id).await {
            return flow;
        }
        let participant = grant.participant.clone();
        let (events_tx, peer_events) = mpsc::unbounded_channel();
        let peer = self.state.sfu.create_peer(participant.clone(), events_tx, grant.role.publishes());
        // A room that empties as we join closes under us; a fresh one is made on retry.
        let mut attempt = 0;
        let (room, ended) = loop {
            let room = self.state.rooms.get_or_create(&room_id);
            let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
            let req = JoinRequest { grant: grant.clone(), outbox: self.out.clone(), peer: peer.clone(), ended: ended_tx };
            match room.join(req).await {
                Ok(()) => {
                    self.state.metrics.join_seconds.observe(started.elapsed().as_secs_f64());
                    break (room, ended_rx);
                }
                Err(RoomError::Closed) if attempt < 3 => attempt += 1,
                Err(e) => {
                    peer.send(PeerCommand::Close);
                    let code = match e {
                        RoomError::Full(_) => ErrorCode::RoomFull,
                        RoomError::Locked => ErrorCode::RoomLocked,
                        RoomError::Banned => ErrorCode::Banned,
                        RoomError::Closed => ErrorCode::Internal,
                        RoomError::SeatTaken => ErrorCode::SeatTaken,
                    };
                    return self.error(code, e.to_string()).await;
                }
            }
        };
        let span = tracing::Span::current();
        span.record("room", room_id.as_str());
        span.record("participant", participant.as_str());
        debug!(role = grant.role.as_str(), "joined room");
        self.session = Some(Session { participant, room, peer, peer_events, ended: Some(ended) });
        Flow::Continue
    }

    /// Relay nodes: `None` when the room is (or now becomes) this node's; otherwise the
    /// client has been redirected to the owner or told to retry, and the flow says what next.
    async fn place(&mut self, room_id: &RoomId) -> Option<Flow> {
        let cluster = self.state.rooms.cluster()?.clone();
        // A room running here is served here; the heartbeat moves it if it is owned elsewhere.
        if self.state.rooms.is_running(room_id) {
            return None;
        }
        match cluster.place(room_id).await {
            Ok(Placement::Local) => None,
            Ok(Placement::Remote { ws_url, node }) if !ws_url.is_empty() => {
                debug!(%node, "room lives on another node; redirecting");
                self.state.metrics.redirects.inc();
                let _ = self.send(ServerMessage::Redirect { url: ws_url, reason: RedirectReason::RoomElsewhere }).await;
                Some(Flow::Close)
            }
            Ok(Placement::Remote { .. }) => {
                Some(self.error(ErrorCode::ClusterUnavailable, "this room is moving to another server; try again in a moment").await)
            }
            Err(e) => {
                tracing::warn!(error = %e, "room placement failed");
                Some(self.error(ErrorCode::ClusterUnavailable, "the relay cluster cannot be reached; try again in a moment").await)
            }
        }
    }

    /// The room ended our session and already queued `sessionEnded`; close after it is sent.
    fn on_session_ended(&mut self, reason: EndReason) -> Flow {
        debug!(?reason, "session ended by the room");
        if let Some(session) = self.session.take() {
            session.peer.send(PeerCommand::Close);
        }
        Flow::Close
    }

    async fn on_peer_event(&mut self, event: PeerEvent) -> Flow {
        let Some(session) = &self.session else { return Flow::Continue };
        match event {
            PeerEvent::Offer(sdp) => self.send(ServerMessage::Offer(Sdp { sdp })).await,
            PeerEvent::Answer(sdp) => self.send(ServerMessage::Answer(Sdp { sdp })).await,
            PeerEvent::Candidate(c) => {
                let candidate = IceCandidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_mline_index: c.sdp_mline_index,
                    username_fragment: c.username_fragment,
                };
                self.send(ServerMessage::IceCandidate { candidate }).await
            }
            PeerEvent::Forwarding { publisher, stream_id, track_id, kind, source } => {
                self.send(ServerMessage::TrackPublished { participant_id: publisher, stream_id, track_id, kind, source }).await
            }
            PeerEvent::VideoState { track_id, layer, paused } => {
                self.send(ServerMessage::VideoState { track_id, layer, paused: paused.is_some(), reason: paused }).await
            }
            PeerEvent::Refused(why, message) => {
                let code = match why {
                    Refusal::Internal => ErrorCode::Internal,
                    Refusal::UnknownTrack => ErrorCode::UnknownTrack,
                    Refusal::Negotiation => ErrorCode::Negotiation,
                    Refusal::Forbidden => ErrorCode::Forbidden,
                    Refusal::OverLimit => ErrorCode::InvalidField,
                };
                self.error(code, message).await
            }
            PeerEvent::TrackPublished(track) => {
                session.room.send(RoomInput::TrackPublished(session.participant.clone(), track)).await;
                Flow::Continue
            }
            PeerEvent::TrackEnded(id) => {
                session.room.send(RoomInput::TrackEnded(session.participant.clone(), id)).await;
                Flow::Continue
            }
            PeerEvent::Failed => self.error(ErrorCode::Negotiation, "the media connection failed; leave and join again").await,
        }
    }

    async fn leave(&mut self) {
        if let Some(session) = self.session.take() {
            session.room.send(RoomInput::Leave(session.participant.clone())).await;
            session.peer.send(PeerCommand::Close);
        }
    }

    /// The socket went away without `leave`.
    async fn disconnect(&mut self) {
        if let Some(session) = self.session.take() {
            session.room.send(RoomInput::Disconnected(session.participant.clone())).await;
            session.peer.send(PeerCommand::Close);
        }
    }
}

enum SessionEvent {
    Peer(PeerEvent),
    Ended(EndReason),
}

/// The next thing the session's peer or room has to say; never, without a session.
async fn next_session_event(session: &mut Option<Session>) -> SessionEvent {
    let Some(s) = session.as_mut() else { return std::future::pending().await };
    tokio::select! {
        Some(event) = s.peer_events.recv() => SessionEvent::Peer(event),
        reason = room_ended(&mut s.ended) => SessionEvent::Ended(reason),
        else => std::future::pending().await,
    }
}

/// Resolves when the room ends the session; never for a plain leave (the room then drops
/// its end unused, and we stop watching).
async fn room_ended(ended: &mut Option<tokio::sync::oneshot::Receiver<EndReason>>) -> EndReason {
    let Some(rx) = ended.as_mut() else { return std::future::pending().await };
    match rx.await {
        Ok(reason) => reason,
        Err(_) => {
            *ended = None;
            std::future::pending().await
        }
    }
}
