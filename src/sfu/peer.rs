//! One participant's server-side peer connection, driven by its own task.
//!
//! The task owns the `PeerConnection` and every subscription on it; the connection task (for
//! SDP and ICE from the client) and the room (for subscribe/unsubscribe) talk to it through a
//! [`PeerHandle`]. A peer starts dormant: no `PeerConnection`, no UDP port, no DTLS, no
//! connectivity checks to addresses the client names, until the room sends
//! [`PeerCommand::Activate`] on admission. While dormant, the client's offer (the latest) and
//! a bounded number of its candidates wait; they are answered on admission. A peer of someone
//! who may not publish (an observer) never receives media: its answer has no receiving
//! section and an offer that tries to send is refused with `forbidden`.
//!
//! Negotiation: the client offers first (its own tracks); after that the server offers whenever
//! its set of outgoing tracks changes, once for all the commands already queued (a group
//! admitted together gets every track in one offer, not a round trip per track). The server
//! is the impolite side of "perfect negotiation": a client offer that collides with a server
//! offer in flight is ignored, and the client (polite) rolls back and answers ours.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info_span, warn, Instrument};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, RTCStatsReportEntry, StatsSelector,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

use super::audio_level::ExtensionId;
use super::bwe::{want_layer, Estimator, FeedbackSink, UpstreamGaps};
use super::path::{classify, parse_candidate, PathGauge};
use super::simulcast::{choose_layer, layer_name, Rewriter};
use super::track::{is_vp8_keyframe, rewrite_for_subscriber, Fanned, PublishedTrack, TrackId};
use super::udp_mux::PeerRoute;
use super::{SfuEngine, SfuError};
use crate::vocab::{MediaKind, ParticipantId, PauseReason, SimulcastLayer, TrackSource};

/// What the connection and the room may ask of a peer.
#[derive(Debug)]
pub enum PeerCommand {
    /// The participant was admitted: build the peer connection and answer the client's offer.
    Activate,
    RemoteOffer(String),
    RemoteAnswer(String),
    RemoteCandidate(Candidate),
    Subscribe(Arc<PublishedTrack>),
    Unsubscribe(TrackId),
    /// The transport just connected: subscribers need fresh keyframes.
    RequestKeyframes,
    /// The subscriber shows this video `max_height` pixels high (0: not at all).
    SetVideoPreference {
        track_id: TrackId,
        max_height: u32,
    },
    Close,
}

impl std::fmt::Debug for PublishedTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedTrack").field("id", &self.id).finish_non_exhaustive()
    }
}

/// An ICE candidate, field names as in the browser's `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
    pub username_fragment: Option<String>,
}

/// Why the peer could not do what its client asked; the message is for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server could not build a peer connection.
    Internal,
    /// A video preference for a track this peer does not send.
    UnknownTrack,
    /// An SDP or ICE step failed.
    Negotiation,
    /// Someone who may not publish offered to send.
    Forbidden,
    /// A value beyond a limit (ICE candidates).
    OverLimit,
}

/// What a peer reports to the connection task that owns it, in the SFU's own terms: the
/// connection turns these into wire messages.
#[derive(Debug)]
pub enum PeerEvent {
    /// SDP for the client: our offer, or our answer to its offer.
    Offer(String),
    Answer(String),
    /// One of our ICE candidates for the client.
    Candidate(Candidate),
    /// The client is about to receive `track` (sent before the offer that carries it), in the
    /// stream `stream_id`.
    Forwarding {
        publisher: ParticipantId,
        stream_id: String,
        track_id: TrackId,
        kind: MediaKind,
        source: TrackSource,
    },
    /// What reaches the client of a video now: the simulcast layer, or why it is paused.
    VideoState {
        track_id: TrackId,
        layer: Option<SimulcastLayer>,
        paused: Option<PauseReason>,
    },
    /// Something the client asked for was not done.
    Refused(Refusal, String),
    TrackPublished(Arc<PublishedTrack>),
    TrackEnded(TrackId),
    /// The media transport failed or closed by itself.
    Failed,
}

/// Cheap to clone; dropping every handle does not close the peer, `Close` does.
#[derive(Clone, Debug)]
pub struct PeerHandle {
    tx: mpsc::UnboundedSender<PeerCommand>,
}

impl PeerHandle {
    /// Sends a command; a peer that has already closed ignores it.
    pub fn send(&self, cmd: PeerCommand) {
        let _ = self.tx.send(cmd);
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

struct Handler {
    participant: ParticipantId,
    events: mpsc::UnboundedSender<PeerEvent>,
    commands: mpsc::UnboundedSender<PeerCommand>,
    publishing: Publishing,
    /// The connection this handler belongs to, set once it is built (the handler comes first).
    pc: std::sync::OnceLock<Weak<dyn PeerConnection>>,
    /// DTLS is up: until then there are no SRTP keys and forwarded packets would be dropped.
    connected: Arc<AtomicBool>,
    publishes: bool,
    /// This connection's share of the shared media port, if there is one.
    route: Option<Arc<PeerRoute>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let candidate = Candidate {
                    candidate: match &self.route {
                        Some(route) => route.public_candidate(&init.candidate),
                        None => init.candidate,
                    },
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                };
                let _ = self.events.send(PeerEvent::Candidate(candidate));
            }
            Err(e) => debug!(error = %e, "local candidate not serialisable"),
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(participant = %self.participant, %state, "peer connection state");
        self.connected.store(state == RTCPeerConnectionState::Connected, Ordering::Relaxed);
        match state {
            RTCPeerConnectionState::Connected => {
                let _ = self.commands.send(PeerCommand::RequestKeyframes);
            }
            RTCPeerConnectionState::Failed => {
                let _ = self.events.send(PeerEvent::Failed);
            }
            _ => {}
        }
    }

    async fn on_track(&self, remote: Arc<dyn TrackRemote>) {
        if !self.publishes {
            return; // never negotiated as receiving; nothing of an observer's is read
        }
        let kind = match remote.kind().await {
            RtpCodecKind::Audio => MediaKind::Audio,
            RtpCodecKind::Video => MediaKind::Video,
            _ => return,
        };
        let ssrc = remote.ssrcs().await.first().copied();
        let codec = match ssrc {
            Some(ssrc) => remote.codec(ssrc).await,
            None => None,
        };
        if let (Some(ssrc), Some(codec)) = (ssrc, codec) {
            return self.publishing.publish(remote, kind, ssrc, codec, Vec::new()).await;
        }
        // The track opened while a renegotiation was being applied: the crate re-creates each
        // receiving track's codings (codec unset until the next packet) when it applies a
        // description, and the track handed to us copied that unset codec. It never learns it
        // later, so the codec comes from the first packet's payload type, on a task of its own
        // (this handler runs inside the connection's driver, which delivers those packets).
        debug!(participant = %self.participant, ?kind, "track opened without its codec; reading it from the first packet");
        let publishing = self.publishing.clone();
        let pc = self.pc.get().cloned();
        tokio::spawn(
            async move {
                let Some(pc) = pc else { return };
                match tokio::time::timeout(FIRST_PACKET_PATIENCE, first_packet_codec(&remote, &pc)).await {
                    Ok(Some((ssrc, codec, prelude))) => publishing.publish(remote, kind, ssrc, codec, prelude).await,
                    Ok(None) => warn!(?kind, "a published track ended before its codec was known"),
                    Err(_) => warn!(?kind, "a published track sent nothing with a negotiated payload type"),
                }
            }
            .instrument(info_span!("track", participant = %self.participant)),
        );
    }
}

/// How long a track whose codec is not yet known may take to send its first packet.
const FIRST_PACKET_PATIENCE: Duration = Duration::from_secs(20);

/// Reads `remote` until its first RTP packet and looks its payload type up in what was
/// negotiated for the receiver carrying it. Returns the packet's SSRC, the codec, and every
/// event taken on the way (the packet included) for the track's pump to handle first.
async fn first_packet_codec(
    remote: &Arc<dyn TrackRemote>,
    pc: &Weak<dyn PeerConnection>,
) -> Option<(u32, RTCRtpCodec, Vec<TrackRemoteEvent>)> {
    let mut taken = Vec::new();
    let (ssrc, payload_type) = loop {
        let event = remote.poll().await?;
        let first = match &event {
            TrackRemoteEvent::OnRtpPacket(packet) => Some((packet.header.ssrc, packet.header.payload_type)),
            TrackRemoteEvent::OnEnded => return None,
            _ => None,
        };
        taken.push(event);
        if let Some(first) = first {
            break first;
        }
    };
    let pc = pc.upgrade()?;
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(receiver)) = transceiver.receiver().await else { continue };
        if !std::ptr::addr_eq(Arc::as_ptr(receiver.track()), Arc::as_ptr(remote)) {
            continue;
        }
        let parameters = receiver.get_parameters().await.ok()?;
        let codec = parameters.rtp_parameters.codecs.into_iter().find(|c| c.payload_type == payload_type)?;
        return Some((ssrc, codec.rtp_codec, taken));
    }
    None
}

/// What a new published track needs from its peer: shared with the task that learns a late
/// track's codec, so it lives apart from the handler.
#[derive(Clone)]
struct Publishing {
    participant: ParticipantId,
    events: mpsc::UnboundedSender<PeerEvent>,
    engine: Arc<SfuEngine>,
    track_seq: Arc<AtomicU32>,
    nonce: u32,
    audio_level_id: Arc<ExtensionId>,
}

impl Publishing {
    async fn publish(&self, remote: Arc<dyn TrackRemote>, kind: MediaKind, ssrc: u32, codec: RTCRtpCodec, prelude: Vec<TrackRemoteEvent>) {
        let client_track_id = remote.track_id().await.to_string();
        let client_stream_id = remote.stream_id().await.to_string();
        let n = self.track_seq.fetch_add(1, Ordering::Relaxed);
        let kind_name = match kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        // The nonce keeps ids unique across a participant's successive peers (reconnects), so a
        // late `TrackEnded` from an old peer never names a track of the new one.
        let id = format!("{}/{kind_name}/{:08x}-{n}", self.participant, self.nonce);
        let track = PublishedTrack::new(
            id.clone(),
            self.participant.clone(),
            kind,
            codec,
            ssrc,
            remote,
            self.engine.stats.clone(),
            self.audio_level_id.clone(),
            client_track_id,
            client_stream_id,
        );
        let stats = self.engine.stats.clone();
        stats.published_tracks.fetch_add(1, Ordering::Relaxed);
        let events = self.events.clone();
        let pump = track.clone();
        let regulate = (kind == MediaKind::Video).then(|| tokio::spawn(track.clone().regulate_publisher()));
        tokio::spawn(
            async move {
                pump.pump(prelude).await;
                if let Some(task) = regulate {
                    task.abort();
                }
                stats.published_tracks.fetch_sub(1, Ordering::Relaxed);
                let _ = events.send(PeerEvent::TrackEnded(id));
            }
            .instrument(info_span!("track", participant = %self.participant)),
        );
        let _ = self.events.send(PeerEvent::TrackPublished(track));
    }
}

struct Subscription {
    sender: Arc<dyn RtpSender>,
    tasks: [JoinHandle<()>; 2],
    /// The tile height the subscriber asked for; [`NO_PREFERENCE`] until it says.
    max_height: Arc<AtomicU32>,
    /// Our SSRC for this leg (its feedback is kept while it lives).
    ssrc: u32,
}

/// No `setVideoPreference` yet: the best layer there is.
const NO_PREFERENCE: u32 = u32::MAX;

impl Subscription {
    fn stop(self) -> Arc<dyn RtpSender> {
        for t in &self.tasks {
            t.abort();
        }
        self.sender
    }
}

struct PeerTask {
    participant: ParticipantId,
    pc: Arc<dyn PeerConnection>,
    engine: Arc<SfuEngine>,
    events: mpsc::UnboundedSender<PeerEvent>,
    subs: HashMap<TrackId, (Arc<PublishedTrack>, Subscription)>,
    /// A server offer is out and its answer has not come back.
    awaiting_answer: bool,
    /// The outgoing track set changed while we could not offer.
    offer_needed: bool,
    /// The first client offer has been answered; until then the server does not offer.
    established: bool,
    /// Subscriptions that arrived before the client's first offer. They are added once that
    /// offer is answered: a sending transceiver created earlier would be paired with one of the
    /// m-lines the client offered for its own camera or microphone (the crate matches a
    /// mid-less transceiver of the same kind), and that forwarding then hangs on how the
    /// client treats a track arriving on its own sender's m-line.
    pending: Vec<Arc<PublishedTrack>>,
    /// Legs added since the last server offer, and those in the offer awaiting its answer
    /// (see [`Leg::negotiated`]).
    unannounced: Vec<Arc<AtomicBool>>,
    in_offer: Vec<Arc<AtomicBool>>,
    has_remote_description: bool,
    early_candidates: Vec<RTCIceCandidateInit>,
    /// Remote candidates taken since the last remote description (see [`MAX_REMOTE_CANDIDATES`]).
    remote_candidates: usize,
    connected: Arc<AtomicBool>,
    audio_level_id: Arc<ExtensionId>,
    /// What the client reports about the streams we send it (loss, REMB).
    feedback: Arc<FeedbackSink>,
    /// False for observers: nothing they send is received.
    publishes: bool,
    /// The candidate types the client named for its addresses (bounded), and the path counted.
    told: HashMap<std::net::SocketAddr, String>,
    path: PathGauge,
    /// This connection's share of the shared media port, if there is one.
    route: Option<Arc<PeerRoute>>,
}

/// Remote candidates (trickled or in an offer) one peer takes per remote description: a
/// browser gathers a handful; beyond this the server would be sending connectivity checks to
/// whatever addresses a client lists.
pub const MAX_REMOTE_CANDIDATES: usize = 32;

/// Starts a participant's peer task, dormant until [`PeerCommand::Activate`].
pub(super) fn spawn(
    engine: Arc<SfuEngine>,
    participant: ParticipantId,
    events: mpsc::UnboundedSender<PeerEvent>,
    publishes: bool,
) -> PeerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = info_span!("peer", participant = %participant);
    let dormant = Dormant { engine, participant, events, publishes, commands: tx.clone() };
    tokio::spawn(dormant.run(rx).instrument(span));
    PeerHandle { tx }
}

/// A peer before admission: it keeps what the client sent and owns nothing on the network.
struct Dormant {
    engine: Arc<SfuEngine>,
    participant: ParticipantId,
    events: mpsc::UnboundedSender<PeerEvent>,
    publishes: bool,
    commands: mpsc::UnboundedSender<PeerCommand>,
}

impl Dormant {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<PeerCommand>) {
        let mut offer: Option<String> = None;
        let mut candidates: Vec<Candidate> = Vec::new();
        while let Some(cmd) = rx.recv().await {
            match cmd {
                PeerCommand::Activate => {
                    let mut task = match self.build().await {
                        Ok(task) => task,
                        Err(e) => {
                            warn!(error = %e, "could not create a peer connection");
                            let _ = self.events.send(PeerEvent::Refused(
                                Refusal::Internal,
                                "the media relay could not set up a connection; leave and join again".into(),
                            ));
                            return;
                        }
                    };
                    if let Some(sdp) = offer.take() {
                        task.step(PeerCommand::RemoteOffer(sdp)).await;
                    }
                    for c in candidates.drain(..) {
                        task.step(PeerCommand::RemoteCandidate(c)).await;
                    }
                    return task.run(rx).await;
                }
                // A newer offer replaces an older one: only the latest describes the client now,
                // and its candidates start afresh.
                PeerCommand::RemoteOffer(sdp) => {
                    offer = Some(sdp);
                    candidates.clear();
                }
                PeerCommand::RemoteCandidate(c) => {
                    if candidates.len() < MAX_REMOTE_CANDIDATES {
                        candidates.push(c);
                    }
                }
                PeerCommand::Close => return,
                // Nothing is sent to a dormant peer, and it has nothing to answer or refresh.
                PeerCommand::RemoteAnswer(_)
                | PeerCommand::Subscribe(_)
                | PeerCommand::Unsubscribe(_)
                | PeerCommand::RequestKeyframes
                | PeerCommand::SetVideoPreference { .. } => {}
            }
        }
    }

    async fn build(&self) -> Result<PeerTask, SfuError> {
        let engine = &self.engine;
        let feedback = Arc::new(FeedbackSink::default());
        let (media_engine, registry) = engine.media_engine_and_registry(feedback.clone())?;
        let connected = Arc::new(AtomicBool::new(false));
        let audio_level_id = Arc::new(ExtensionId::default());
        let (route, runtime) = engine.media_route().unzip();
        let handler = Arc::new(Handler {
            route: route.clone(),
            participant: self.participant.clone(),
            events: self.events.clone(),
            commands: self.commands.clone(),
            publishing: Publishing {
                participant: self.participant.clone(),
                events: self.events.clone(),
                engine: engine.clone(),
                track_seq: Arc::default(),
                nonce: rand::random(),
                audio_level_id: audio_level_id.clone(),
            },
            pc: std::sync::OnceLock::new(),
            connected: connected.clone(),
            publishes: self.publishes,
        });
        let mut builder = PeerConnectionBuilder::new()
            .with_configuration(engine.configuration())
            .with_media_engine(media_engine)
            .with_setting_engine(engine.setting_engine())
            .with_interceptor_registry(registry)
            .with_handler(handler.clone() as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(vec![engine.udp_addr()?])
            .with_tcp_addrs(engine.ice_tcp_addrs()?);
        if let Some(runtime) = runtime {
            builder = builder.with_runtime(runtime);
        }
        let pc = builder.build().await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let _ = handler.pc.set(Arc::downgrade(&pc));
        engine.stats.peers.fetch_add(1, Ordering::Relaxed);
        Ok(PeerTask {
            participant: self.participant.clone(),
            pc,
            engine: engine.clone(),
            events: self.events.clone(),
            subs: HashMap::new(),
            awaiting_answer: false,
            offer_needed: false,
            established: false,
            pending: Vec::new(),
            unannounced: Vec::new(),
            in_offer: Vec::new(),
            has_remote_description: false,
            early_candidates: Vec::new(),
            remote_candidates: 0,
            connected,
            audio_level_id,
            feedback,
            publishes: self.publishes,
            told: HashMap::new(),
            path: PathGauge::new(engine.stats.clone()),
            route,
        })
    }
}

impl PeerTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<PeerCommand>) {
        'commands: loop {
            self.negotiate().await;
            let Some(mut cmd) = rx.recv().await else { break };
            // Commands already queued are taken before offering, so one offer carries them
            // all: a group admitted at once subscribes each newcomer to every published track
            // in one burst, and an offer per track would cost a round trip each.
            loop {
                if matches!(cmd, PeerCommand::Close) {
                    break 'commands;
                }
                self.step(cmd).await;
                match rx.try_recv() {
                    Ok(next) => cmd = next,
                    Err(_) => break,
                }
            }
        }
        self.close().await;
    }

    /// Offers the outgoing track set if it changed and the signaling state allows.
    async fn negotiate(&mut self) {
        if !self.offer_needed {
            return;
        }
        if let Err(e) = self.offer().await {
            warn!(error = %e, "negotiation step failed");
            self.refuse(Refusal::Negotiation, format!("media negotiation failed: {e}"));
        }
    }

    /// Handles one command; a failed negotiation step is reported to the client.
    async fn step(&mut self, cmd: PeerCommand) {
        let result = match cmd {
            PeerCommand::Activate | PeerCommand::Close => Ok(()),
            PeerCommand::RemoteOffer(sdp) => self.on_remote_offer(sdp).await,
            PeerCommand::RemoteAnswer(sdp) => self.on_remote_answer(sdp).await,
            PeerCommand::RemoteCandidate(c) => self.on_remote_candidate(c).await,
            PeerCommand::Subscribe(track) => self.subscribe(track).await,
            PeerCommand::Unsubscribe(id) => self.unsubscribe(&id).await,
            PeerCommand::RequestKeyframes => {
                for (track, _) in self.subs.values() {
                    track.request_keyframe();
                }
                self.note_path().await;
                Ok(())
            }
            PeerCommand::SetVideoPreference { track_id, max_height } => {
                match self.subs.get(&track_id) {
                    Some((track, sub)) if track.kind == MediaKind::Video => sub.max_height.store(max_height, Ordering::Relaxed),
                    _ => self.refuse(Refusal::UnknownTrack, "no video with that trackId reaches this connection"),
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "negotiation step failed");
            self.refuse(Refusal::Negotiation, format!("media negotiation failed: {e}"));
        }
    }

    fn tell(&self, event: PeerEvent) {
        let _ = self.events.send(event);
    }

    fn refuse(&self, why: Refusal, message: impl Into<String>) {
        self.tell(PeerEvent::Refused(why, message.into()));
    }

    /// A local description just set, as the client must see it: on the shared media port,
    /// STUN naming its ufrag reaches this connection from now on, and its candidates carry
    /// the shared port.
    fn for_client(&self, sdp: String) -> String {
        match &self.route {
            Some(route) => {
                route.learn_ufrags(&sdp);
                route.public_sdp(&sdp)
            }
            None => sdp,
        }
    }

    async fn on_remote_offer(&mut self, sdp: String) -> Result<(), SfuError> {
        if self.awaiting_answer {
            // Glare: we are impolite. The client rolls back and answers our offer, then offers again.
            debug!("ignoring client offer that collides with ours");
            return Ok(());
        }
        let offered_candidates = sdp.lines().filter(|l| l.trim_start().starts_with("a=candidate:")).count();
        if offered_candidates > MAX_REMOTE_CANDIDATES {
            return Err(SfuError::InvalidSdp(format!("{offered_candidates} ICE candidates; at most {MAX_REMOTE_CANDIDATES}")));
        }
        let sends = sdp.lines().any(|l| matches!(l.trim(), "a=sendrecv" | "a=sendonly"));
        for line in sdp.lines().filter(|l| l.trim_start().starts_with("a=candidate:")) {
            self.remember_candidate(line);
        }
        // The client offers first, so its extension ids are the session's.
        self.audio_level_id.set(super::audio_level::extmap_id(&sdp));
        let offer = RTCSessionDescription::offer(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        self.pc.set_remote_description(offer).await?;
        self.has_remote_description = true;
        self.remote_candidates = offered_candidates;
        if !self.publishes {
            self.receive_nothing().await?;
            if sends {
                self.refuse(Refusal::Forbidden, "observers receive only: nothing you send reaches the group");
            }
        }
        self.flush_candidates().await;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer.clone()).await?;
        let sdp = self.for_client(answer.sdp);
        self.tell(PeerEvent::Answer(sdp));
        self.established = true;
        // One subscription that cannot be added (a codec this client did not offer) must not
        // keep the others from it.
        for track in std::mem::take(&mut self.pending) {
            match self.add_leg(track).await {
                Ok(()) => self.offer_needed = true,
                Err(e) => {
                    warn!(error = %e, "subscription not added");
                    self.refuse(Refusal::Negotiation, format!("one forwarded track could not be added: {e}"));
                }
            }
        }
        Ok(())
    }

    async fn on_remote_answer(&mut self, sdp: String) -> Result<(), SfuError> {
        if !self.awaiting_answer {
            debug!("ignoring an answer to no offer");
            return Ok(());
        }
        let answer = RTCSessionDescription::answer(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        self.pc.set_remote_description(answer).await?;
        self.awaiting_answer = false;
        for leg in self.in_offer.drain(..) {
            leg.store(true, Ordering::Relaxed);
        }
        self.has_remote_description = true;
        self.flush_candidates().await;
        Ok(())
    }

    /// An observer's peer: no transceiver receives, so the answer offers the client nothing to
    /// send and nothing it sends is read.
    async fn receive_nothing(&self) -> Result<(), SfuError> {
        for t in self.pc.get_transceivers().await {
            let dir = t.direction().await?;
            if dir.has_recv() {
                t.set_direction(RTCRtpTransceiverDirection::from_send_recv(dir.has_send(), false)).await?;
            }
        }
        Ok(())
    }

    async fn on_remote_candidate(&mut self, c: Candidate) -> Result<(), SfuError> {
        if c.candidate.is_empty() {
            return Ok(()); // end-of-candidates: nothing to do for a full-ICE server
        }
        if self.remote_candidates >= MAX_REMOTE_CANDIDATES {
            if self.remote_candidates == MAX_REMOTE_CANDIDATES {
                self.refuse(
                    Refusal::OverLimit,
                    format!("at most {MAX_REMOTE_CANDIDATES} ICE candidates per negotiation; the rest are ignored"),
                );
            }
            self.remote_candidates += 1;
            return Ok(());
        }
        self.remote_candidates += 1;
        self.remember_candidate(&c.candidate);
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        if self.has_remote_description {
            self.pc.add_ice_candidate(init).await?;
        } else {
            self.early_candidates.push(init);
        }
        Ok(())
    }

    fn remember_candidate(&mut self, line: &str) {
        if let Some((addr, typ)) = parse_candidate(line) {
            if self.told.len() < 2 * MAX_REMOTE_CANDIDATES || self.told.contains_key(&addr) {
                self.told.insert(addr, typ.to_string());
            }
        }
    }

    /// The transport connected (or reconnected): which path its selected pair takes, from the
    /// connection's stats (the transport's selected pair and its two candidates).
    async fn note_path(&mut self) {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let selected = report.iter().find_map(|e| match e {
            RTCStatsReportEntry::Transport(t) if !t.selected_candidate_pair_id.is_empty() => Some(t.selected_candidate_pair_id.clone()),
            _ => None,
        });
        let Some(RTCStatsReportEntry::IceCandidatePair(pair)) = selected.as_deref().and_then(|id| report.get(id)) else {
            debug!("connected without a selected candidate pair in the stats");
            return;
        };
        // The pair names the agent's candidate ids; the report keys candidates with a prefix. A
        // peer-reflexive remote candidate is in no report: then only what the client told helps.
        let Some(RTCStatsReportEntry::LocalCandidate(local)) = report.get(&format!("RTCLocalIceCandidate_{}", pair.local_candidate_id))
        else {
            debug!("selected pair without its local candidate in the stats");
            return;
        };
        let remote = match report.get(&format!("RTCRemoteIceCandidate_{}", pair.remote_candidate_id)) {
            Some(RTCStatsReportEntry::RemoteCandidate(remote)) => Some(remote),
            _ => None,
        };
        let remote_addr = remote.and_then(|r| r.address.as_deref()?.parse().ok().map(|ip| std::net::SocketAddr::new(ip, r.port)));
        let remote_type = remote.map(|r| r.candidate_type.to_string()).unwrap_or_else(|| "prflx".to_string());
        let path = classify(local.protocol.eq_ignore_ascii_case("tcp"), &remote_type, remote_addr, &self.told);
        debug!(path = path.as_str(), "media path");
        self.path.set(Some(path));
    }

    async fn flush_candidates(&mut self) {
        for c in std::mem::take(&mut self.early_candidates) {
            if let Err(e) = self.pc.add_ice_candidate(c).await {
                debug!(error = %e, "buffered remote candidate refused");
            }
        }
    }

    /// Makes a server offer now if the signaling state allows; otherwise `offer_needed` stays
    /// set and [`PeerTask::negotiate`] tries again after the next commands.
    async fn offer(&mut self) -> Result<(), SfuError> {
        if !self.established || self.awaiting_answer {
            self.offer_needed = true;
            return Ok(());
        }
        self.offer_needed = false;
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer.clone()).await?;
        self.awaiting_answer = true;
        self.in_offer.append(&mut self.unannounced);
        let sdp = self.for_client(offer.sdp);
        self.tell(PeerEvent::Offer(sdp));
        Ok(())
    }

    async fn subscribe(&mut self, track: Arc<PublishedTrack>) -> Result<(), SfuError> {
        if self.subs.contains_key(&track.id) || track.publisher == self.participant {
            return Ok(());
        }
        if !self.established {
            if !self.pending.iter().any(|t| t.id == track.id) {
                self.pending.push(track);
            }
            return Ok(());
        }
        self.add_leg(track).await?;
        self.offer_needed = true;
        Ok(())
    }

    /// A transceiver of its own for one subscription. `add_track` would reuse any sender-less
    /// transceiver of the same kind, which includes the ones receiving the client's own
    /// microphone and camera; a forwarded track on the client's own m-line made that client's
    /// published track stop reaching anyone now and then (about one run in six of
    /// `media::three_peers…` under load). It stays `sendrecv` because a client's `addTrack`
    /// (a browser's screen share, say) may in turn reuse this m-line to send.
    async fn sending_transceiver(&self, local: Arc<TrackLocalStaticRTP>) -> Result<Arc<dyn RtpSender>, SfuError> {
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendrecv, ..Default::default() };
        let transceiver = self.pc.add_transceiver_from_track(local as Arc<dyn TrackLocal>, Some(init)).await?;
        transceiver.sender().await?.ok_or(SfuError::NoSender)
    }

    /// Adds the sending side of one subscription and starts forwarding into it; the caller
    /// sets `offer_needed`.
    async fn add_leg(&mut self, track: Arc<PublishedTrack>) -> Result<(), SfuError> {
        let ssrc = rand::random::<u32>();
        let kind = match track.kind {
            MediaKind::Audio => RtpCodecKind::Audio,
            MediaKind::Video => RtpCodecKind::Video,
        };
        let stream_id = track.stream_id();
        let local = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.clone(),
            track.id.clone(),
            track.id.clone(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec: track.codec.clone(),
                ..Default::default()
            }],
        )));
        let sender = self.sending_transceiver(local.clone()).await?;
        self.feedback.register(ssrc);
        let max_height = Arc::new(AtomicU32::new(NO_PREFERENCE));
        let negotiated = Arc::new(AtomicBool::new(false));
        self.unannounced.push(negotiated.clone());
        let leg = Leg {
            track: track.clone(),
            local: local.clone(),
            sender: sender.clone(),
            ssrc,
            connected: self.connected.clone(),
            negotiated: negotiated.clone(),
            max_height: max_height.clone(),
            events: self.events.clone(),
            feedback: self.feedback.clone(),
        };
        let span = info_span!("leg", subscriber = %self.participant, track = %track.id);
        let forward = tokio::spawn(forward(leg, track.subscribe()).instrument(span));
        let feedback = tokio::spawn(relay_feedback(track.clone(), local));
        self.subs.insert(track.id.clone(), (track.clone(), Subscription { sender, tasks: [forward, feedback], max_height, ssrc }));
        self.engine.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.tell(PeerEvent::Forwarding {
            publisher: track.publisher.clone(),
            stream_id,
            track_id: track.id.clone(),
            kind: track.kind,
            source: track.source(),
        });
        Ok(())
    }

    async fn unsubscribe(&mut self, id: &str) -> Result<(), SfuError> {
        self.pending.retain(|t| t.id != id);
        let Some((_, sub)) = self.subs.remove(id) else { return Ok(()) };
        self.engine.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        self.feedback.forget(sub.ssrc);
        let sender = sub.stop();
        self.pc.remove_track(&sender).await?;
        self.offer_needed = true;
        Ok(())
    }

    async fn close(mut self) {
        for (_, (_, sub)) in self.subs.drain() {
            sub.stop();
            self.engine.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if let Err(e) = self.pc.close().await {
            debug!(error = %e, "closing peer connection");
        }
        self.engine.stats.peers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often a subscription waiting for a keyframe asks again.
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);

/// One leg's share of `SfuStats::bandwidth_paused`.
struct PausedGauge {
    stats: Arc<super::SfuStats>,
    on: bool,
}

impl PausedGauge {
    fn set(&mut self, on: bool) {
        if on != self.on {
            self.on = on;
            if on {
                self.stats.bandwidth_paused.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.bandwidth_paused.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for PausedGauge {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// A leg's estimate as the publisher's REMB sees it (see `PublishedTrack::regulate_publisher`).
struct Downlink {
    track: Arc<PublishedTrack>,
    leg: u32,
}

impl Downlink {
    fn report(&self, estimate: Option<f64>) {
        self.track.report_downlink(self.leg, estimate);
    }
}

impl Drop for Downlink {
    fn drop(&mut self) {
        self.track.forget_downlink(self.leg);
    }
}

/// How often a leg looks at its feedback.
const BWE_EVERY: Duration = Duration::from_millis(200);

/// Bitrates over one-second windows: of each layer as it arrives, and of what a leg sends.
#[derive(Default)]
struct Rates {
    window_start: Option<Instant>,
    layer_bytes: [u64; 3],
    sent_bytes: u64,
    layer_bps: [f64; 3],
    sent_bps: f64,
    windows: u32,
}

impl Rates {
    fn arrived(&mut self, layer: usize, bytes: usize) {
        let start = *self.window_start.get_or_insert_with(Instant::now);
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let secs = elapsed.as_secs_f64();
            // RTP and UDP/IP headers are about 50 bytes a packet; payload dominates video.
            self.layer_bps = self.layer_bytes.map(|b| b as f64 * 8.0 / secs);
            self.sent_bps = self.sent_bytes as f64 * 8.0 / secs;
            self.layer_bytes = [0; 3];
            self.sent_bytes = 0;
            self.window_start = Some(Instant::now());
            self.windows += 1;
        }
        if let Some(b) = self.layer_bytes.get_mut(layer) {
            *b += bytes as u64;
        }
    }

    fn sent(&mut self, bytes: usize) {
        self.sent_bytes += bytes as u64;
    }

    fn known(&self) -> bool {
        self.windows > 0
    }

    fn sending_bps(&self) -> f64 {
        self.sent_bps
    }
}

/// One subscription's leg: what `forward` needs.
struct Leg {
    track: Arc<PublishedTrack>,
    local: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    connected: Arc<AtomicBool>,
    /// The subscriber answered an offer with this leg's m-line: until then its SSRC is unknown
    /// to the client, and a client with one m-line of the kind binds an unknown SSRC to it (the
    /// webrtc crate's single-section shortcut), so the forwarded stream would land on the
    /// client's own transceiver for good.
    negotiated: Arc<AtomicBool>,
    max_height: Arc<AtomicU32>,
    events: mpsc::UnboundedSender<PeerEvent>,
    feedback: Arc<FeedbackSink>,
}

impl Leg {
    fn tell(&self, layer: Option<usize>, paused: Option<PauseReason>) {
        let layer = if self.track.is_simulcast() { layer.map(layer_name) } else { None };
        let _ = self.events.send(PeerEvent::VideoState { track_id: self.track.id.clone(), layer, paused });
    }
}

/// Copies one published track into one subscriber's local track. Video starts on a keyframe
/// so the decoder never starts mid-picture; with simulcast, the layer that fits the
/// subscriber's tile is forwarded, switching on a keyframe of the new layer, and sequence
/// numbers and timestamps are rewritten so the subscriber sees one continuous stream.
async fn forward(leg: Leg, mut rx: broadcast::Receiver<Fanned>) {
    let track = leg.track.clone();
    let video = track.kind == MediaKind::Video;
    let gate_on_keyframes = video && track.codec.mime_type.eq_ignore_ascii_case("video/vp8");
    // The layer being forwarded (`None`: waiting for a keyframe, or paused).
    let mut current: Option<usize> = None;
    // The layer wanted: what fits the tile (`None`: paused by preference).
    let mut wanted: Option<usize> = Some(0);
    let mut told: Option<(Option<usize>, Option<PauseReason>)> = None;
    let mut last_request: Option<Instant> = None;
    let mut payload_type: Option<u8> = None;
    let mut rewriter = Rewriter::default();
    // Bandwidth: each layer's bitrate as it arrives, what this leg sends, the estimate.
    let mut rates = Rates::default();
    let mut estimator = Estimator::default();
    let mut upstream = UpstreamGaps::default();
    let mut last_estimate = Instant::now();
    // Counted in the server-wide gauge while true, however this task ends (an aborted task too).
    let mut bandwidth_paused = PausedGauge { stats: track.stats().clone(), on: false };
    // This leg's say in the publisher's REMB, withdrawn however this task ends.
    let downlink = Downlink { track: track.clone(), leg: leg.ssrc };
    loop {
        let (layer, mut packet) = match rx.recv().await {
            Ok(p) => p,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                current = None;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let layer = usize::from(layer);
        rates.arrived(layer, packet.payload.len());
        if !leg.connected.load(Ordering::Relaxed) || !leg.negotiated.load(Ordering::Relaxed) {
            current = None;
            continue;
        }
        if video {
            let max_height = leg.max_height.load(Ordering::Relaxed);
            let (available, heights) = if track.is_simulcast() { track.layers() } else { ([true, false, false], [None; 3]) };
            let preferred = match max_height {
                0 => None,
                _ => choose_layer(available, heights, max_height),
            };
            if last_estimate.elapsed() >= BWE_EVERY {
                last_estimate = Instant::now();
                estimator.update(leg.feedback.get(leg.ssrc), rates.sending_bps(), &mut upstream);
                downlink.report(estimator.estimate());
            }
            let was = wanted;
            let rates_known = rates.known().then_some(&rates.layer_bps);
            wanted = want_layer(&mut estimator, preferred, rates_known, &available, was);
            if wanted != was {
                tracing::debug!(?was, ?wanted, ?preferred, ?available, estimate = ?estimator.estimate(), rates = ?rates.layer_bps, "layer wanted");
            }
            if wanted.is_none() {
                current = None;
                let reason = if preferred.is_none() { PauseReason::Preference } else { PauseReason::Bandwidth };
                if told != Some((None, Some(reason))) {
                    if reason == PauseReason::Bandwidth {
                        tracing::debug!(track = %track.id, "video paused to keep audio");
                        bandwidth_paused.set(true);
                    } else {
                        bandwidth_paused.set(false);
                    }
                    leg.tell(None, Some(reason));
                    told = Some((None, Some(reason)));
                }
                continue;
            }
            bandwidth_paused.set(false);
        }
        // Keep forwarding the old layer until the new one's keyframe arrives.
        let switching = wanted != current && Some(layer) == wanted;
        if switching || current.is_none() {
            if Some(layer) != wanted {
                continue;
            }
            if gate_on_keyframes && !is_vp8_keyframe(&packet.payload) {
                if last_request.is_none_or(|t| t.elapsed() >= KEYFRAME_RETRY) {
                    track.request_keyframe();
                    last_request = Some(Instant::now());
                }
                if current.is_none() {
                    continue;
                }
            } else {
                rewriter.switch_to(packet.header.sequence_number, packet.header.timestamp);
                if current.is_some() && track.is_simulcast() {
                    track.stats().layer_switches.fetch_add(1, Ordering::Relaxed);
                }
                current = Some(layer);
                tracing::debug!(layer, "forwarding layer");
                last_request = None;
            }
        }
        if Some(layer) != current {
            if wanted != current && last_request.is_none_or(|t| t.elapsed() >= KEYFRAME_RETRY) {
                track.request_keyframe();
                last_request = Some(Instant::now());
            }
            continue;
        }
        if video && told != Some((current, None)) {
            if told.is_some() || track.is_simulcast() {
                leg.tell(current, None);
            }
            told = Some((current, None));
        }
        let pt = match payload_type {
            Some(pt) => pt,
            None => match negotiated_payload_type(&leg.sender, &track.codec.mime_type).await {
                Some(pt) => *payload_type.insert(pt),
                None => {
                    current = None;
                    continue; // not negotiated yet
                }
            },
        };
        let (seq, ts) = rewriter.rewrite(packet.header.sequence_number, packet.header.timestamp);
        upstream.forwarded(seq);
        packet.header.sequence_number = seq;
        packet.header.timestamp = ts;
        rewrite_for_subscriber(&mut packet, leg.ssrc, pt);
        let bytes = packet.payload.len();
        if leg.local.write_rtp(packet).await.is_ok() {
            track.count_forwarded(bytes);
            rates.sent(bytes);
        } else {
            // Not bound to a negotiated sender yet: start again from a keyframe once it is.
            current = None;
        }
    }
}

async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
    let params = sender.get_parameters().await.ok()?;
    params.rtp_parameters.codecs.iter().find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime)).map(|c| c.payload_type)
}

/// Passes a subscriber's keyframe requests (PLI/FIR) on to the publisher.
async fn relay_feedback(track: Arc<PublishedTrack>, local: Arc<TrackLocalStaticRTP>) {
    while let Some(event) = local.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(_) = event {
            track.keyframe_requested_by_subscriber();
        }
    }
}
