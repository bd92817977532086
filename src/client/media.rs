//! The media half of a headless client: one `webrtc` peer connection that publishes synthetic
//! RTP and records what arrives from whom.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::signaling::{SignalClient, SignalError};
use crate::signal::protocol::{ClientMessage, IceCandidate, MediaKind, ParticipantInfo, Sdp, ServerMessage, PROTOCOL_VERSION};
use crate::vocab::{ParticipantId, RoomId};

/// Bytes of probe at the start of every synthetic payload: VP8 descriptor (2), send time in
/// microseconds since the Unix epoch (8), probe sequence (8).
pub const PROBE_LEN: usize = 18;

#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// `ws://host:port/ws`
    pub url: String,
    pub room: String,
    /// Labels this client's own tracks (the server takes the display name from the token).
    pub name: String,
    /// The join token; see `hearth::auth::TokenIssuer::mint`.
    pub token: String,
    pub publish_audio: bool,
    pub publish_video: bool,
    /// Video packets per second and payload size; a keyframe every `keyframe_every` packets.
    pub video_pps: u32,
    pub video_payload: usize,
    pub keyframe_every: u32,
    /// Audio packets per second (Opus: 50) and payload size.
    pub audio_pps: u32,
    pub audio_payload: usize,
    /// Keep this many latency samples per received track (0 = none).
    pub latency_samples: usize,
    /// Frame-shaped video like a real encoder; when set it replaces `video_pps`,
    /// `video_payload` and `keyframe_every`.
    pub video_profile: Option<VideoProfile>,
    /// Relay nodes: other entry points to try, in order, when `url` cannot be reached (what a
    /// load balancer does for a browser). A `redirect` from any of them is followed.
    pub fallback_urls: Vec<String>,
    /// Send the ssrc-audio-level header extension on audio with this level (−dBov: 0 is the
    /// loudest, 127 silence), as browsers do; `None`: no extension. See `set_audio_level`.
    pub audio_level: Option<u8>,
    /// Publish camera video as simulcast: layers `q`, `h`, `f` (quarter, half, full), each
    /// its own SSRC, at 1/4, 1/2 and all of the video's packet size. Every layer's payload
    /// carries its index at byte [`LAYER_MARKER`], so a receiver can tell which one it got.
    pub simulcast: bool,
    /// Drop inbound video beyond this many kbit/s, as a weak network would (see
    /// [`super::throttle`]); `None`: no limit. Changeable later with `set_throttle`.
    pub throttle_kbps: Option<u32>,
    /// Send every video packet a second time after the next one, as a late retransmission
    /// arrives (the plain video of `video_pps`, not `video_profile`).
    pub resend_video: bool,
    /// Keep the first this many packets of every received track as they arrived (a raw tap:
    /// the end-to-end encryption tests read what the relay forwards). 0: keep none.
    pub capture_packets: usize,
    /// The camera's codec (not the simulcast camera's or a screen share's: those are VP8).
    pub video_codec: VideoCodec,
}

/// A codec the synthetic camera can announce. The payload stays the synthetic VP8-shaped
/// probe: what is tested with H.264 is what the server does with the codec it negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    #[default]
    Vp8,
    H264,
}

impl VideoCodec {
    /// The codec as the track announces it, and the payload type both sides register for it.
    fn rtp(self) -> (RTCRtpCodec, u8) {
        match self {
            Self::Vp8 => (
                RTCRtpCodec {
                    mime_type: "video/VP8".into(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                96,
            ),
            Self::H264 => (
                RTCRtpCodec {
                    mime_type: "video/H264".into(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f".into(),
                    rtcp_feedback: vec![],
                },
                102,
            ),
        }
    }
}

/// One RTP packet as it arrived, kept when [`MediaOptions::capture_packets`] asks for it.
#[derive(Debug, Clone)]
pub struct CapturedPacket {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

/// Where a simulcast layer's payload says which layer it is (after the probe).
pub const LAYER_MARKER: usize = PROBE_LEN;
/// The rids a simulcast publisher uses, lowest first.
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// Video shaped like a camera encoder's output: `fps` frames a second averaging `kbps`, each
/// frame cut into packets of at most `max_packet` payload bytes sent back to back (as an
/// unpaced encoder would), every `keyframe_interval` frames a keyframe `keyframe_scale` times
/// the size of a delta frame. Forwarding cost depends on packets and bursts, not only on
/// bits per second, which is why the load generator uses this rather than a steady stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoProfile {
    pub kbps: u32,
    pub fps: u32,
    pub max_packet: usize,
    pub keyframe_interval: u32,
    pub keyframe_scale: u32,
}

impl VideoProfile {
    /// A typical 1 Mbit/s call camera: 30 frames/s, 1,100-byte packets, a keyframe every 2 s
    /// at 4x the size of a delta frame.
    pub fn camera(kbps: u32) -> Self {
        Self { kbps, fps: 30, max_packet: 1100, keyframe_interval: 60, keyframe_scale: 4 }
    }

    /// Payload bytes of a delta frame and of a keyframe, chosen so the average is `kbps`.
    pub fn frame_sizes(&self) -> (usize, usize) {
        let fps = u64::from(self.fps.max(1));
        let interval = u64::from(self.keyframe_interval.max(1));
        let scale = u64::from(self.keyframe_scale.max(1));
        let bytes_per_interval = u64::from(self.kbps) * 1000 / 8 * interval / fps;
        // interval frames = (interval - 1) deltas + one keyframe worth `scale` deltas.
        let delta = (bytes_per_interval / (interval - 1 + scale)).max(PROBE_LEN as u64) as usize;
        (delta, delta * scale as usize)
    }

    /// Nominal packets per second (what a receiver of this video should see).
    pub fn packets_per_second(&self) -> f64 {
        let (delta, key) = self.frame_sizes();
        let per = |size: usize| size.div_ceil(self.max_packet.max(PROBE_LEN)) as f64;
        let interval = f64::from(self.keyframe_interval.max(1));
        f64::from(self.fps) * ((interval - 1.0) * per(delta) + per(key)) / interval
    }
}

impl MediaOptions {
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Light media, enough to prove forwarding in tests without loading the machine.
    pub fn light(url: impl Into<String>, room: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            room: room.into(),
            name: name.into(),
            token: String::new(),
            publish_audio: true,
            publish_video: true,
            video_pps: 30,
            video_payload: 300,
            keyframe_every: 30,
            audio_pps: 50,
            audio_payload: 80,
            latency_samples: 0,
            video_profile: None,
            fallback_urls: Vec::new(),
            audio_level: None,
            simulcast: false,
            throttle_kbps: None,
            resend_video: false,
            capture_packets: 0,
            video_codec: VideoCodec::Vp8,
        }
    }
}

/// What one client received on one remote track.
#[derive(Debug, Clone)]
pub struct ReceivedTrack {
    /// The media stream id: the publishing participant.
    pub participant: String,
    pub kind: MediaKind,
    pub packets: u64,
    pub bytes: u64,
    /// Packets whose RTP sequence number did not advance (mod 2^16) over the previous one.
    pub seq_regressions: u64,
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
    /// Video: when the last packet (marker bit) of the first keyframe arrived, i.e. when a
    /// decoder could show the first picture.
    pub first_keyframe_at: Option<Instant>,
    /// Video: the RTP timestamp of the first keyframe's first packet, until its last arrives.
    keyframe_started: Option<u32>,
    /// Lowest and highest probe sequence seen, and how many distinct ones (for loss).
    pub probe_min: u64,
    pub probe_max: u64,
    pub latencies_us: Vec<u64>,
    /// Probes seen a second time (retransmissions of packets that had arrived: `packets`
    /// counts them again, so loss from `packets` alone reads too low).
    pub duplicates: u64,
    /// First arrivals of probes after a higher one (reordered, or recovered by retransmission).
    pub late: u64,
    /// Largest forward step of the RTP sequence number between two packets (1 when nothing
    /// was lost; a layer switch that broke continuity shows here).
    pub max_seq_step: u16,
    /// Video packets by the simulcast layer their payload says they belong to (byte
    /// [`LAYER_MARKER`]; a non-simulcast publisher's video counts as layer 0).
    pub layers: [u64; 3],
    /// The first packets as they arrived (see [`MediaOptions::capture_packets`]).
    pub captured: Vec<CapturedPacket>,
    last_seq: Option<u16>,
    /// Which of the last `PROBE_WINDOW` probes (up to `probe_max`) have arrived, one bit each.
    recent: [u64; PROBE_WINDOW / 64],
}

/// How far back duplicate probes are recognised.
const PROBE_WINDOW: usize = 1024;

impl ReceivedTrack {
    /// Records probe `seq` in the recent window; returns whether it had arrived before.
    fn mark_probe(&mut self, seq: u64) -> bool {
        let bit = |q: u64| ((q as usize % PROBE_WINDOW) / 64, q % 64);
        if self.probe_min == u64::MAX || seq > self.probe_max {
            let first = self.probe_min == u64::MAX;
            if first || seq - self.probe_max >= PROBE_WINDOW as u64 {
                self.recent = [0; PROBE_WINDOW / 64];
            } else {
                // The window slides forward: forget the bits it leaves behind.
                for q in self.probe_max + 1..seq {
                    let (w, b) = bit(q);
                    self.recent[w] &= !(1 << b);
                }
            }
            let (w, b) = bit(seq);
            self.recent[w] |= 1 << b;
            return false;
        }
        if self.probe_max - seq >= PROBE_WINDOW as u64 {
            self.late += 1;
            return false; // too old to tell
        }
        let (w, b) = bit(seq);
        let seen = self.recent[w] & (1 << b) != 0;
        self.recent[w] |= 1 << b;
        if !seen {
            self.late += 1;
        }
        seen
    }

    /// Distinct packets received (`packets` less the duplicates).
    pub fn unique_packets(&self) -> u64 {
        self.packets - self.duplicates
    }
}

impl ReceivedTrack {
    /// Fraction of probes between the first and last seen that never arrived.
    pub fn loss(&self) -> f64 {
        if self.packets == 0 || self.probe_max < self.probe_min {
            return 0.0;
        }
        let expected = (self.probe_max - self.probe_min + 1) as f64;
        (1.0 - self.unique_packets() as f64 / expected).max(0.0)
    }
}

type Received = Arc<Mutex<HashMap<String, ReceivedTrack>>>;

/// When this client's connection first passed each step of its setup, on the client's clock:
/// a join timed stage by stage (`hearth-load --admit-all` reports them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Milestones {
    /// The server's answer to our first offer was applied.
    pub answered: Option<Instant>,
    /// The server's first offer (the tracks it forwards to us) arrived.
    pub server_offer: Option<Instant>,
    /// Our answer to that offer went out: from now on the server forwards those tracks.
    pub server_offer_answered: Option<Instant>,
    /// ICE nominated a pair (the connection's ICE state `connected`).
    pub ice_connected: Option<Instant>,
    /// DTLS finished (the connection's state `connected`): media can flow.
    pub connected: Option<Instant>,
}

type SharedMilestones = Arc<Mutex<Milestones>>;

/// Records `now` in the milestone `field` picks, unless it was passed before.
fn reached(milestones: &SharedMilestones, field: impl FnOnce(&mut Milestones) -> &mut Option<Instant>) {
    let now = Instant::now();
    if let Ok(mut m) = milestones.lock() {
        field(&mut m).get_or_insert(now);
    }
}

pub struct MediaClient {
    pub participant_id: ParticipantId,
    /// Who was in the room when this client was admitted (empty while waiting).
    pub roster: Vec<ParticipantInfo>,
    /// `false` while in the waiting room; an `admitted` event follows on `events`.
    pub admitted: bool,
    /// Server messages other than negotiation (roster events, errors, ...).
    pub events: mpsc::UnboundedReceiver<ServerMessage>,
    out: mpsc::UnboundedSender<ClientMessage>,
    received: Received,
    pc: Arc<dyn PeerConnection>,
    sending: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    pub joined_at: Instant,
    /// The websocket URL this client ended up on (after any `redirect`).
    pub node_url: String,
    opts: MediaOptions,
    /// Cleared when the signaling socket closes (the node went away, or sent us elsewhere).
    socket_open: Arc<AtomicBool>,
    /// Where a `redirect` received during the session (a drain) told us to go.
    moved_to: Arc<Mutex<Option<String>>>,
    /// The audio level sent in the extension; [`NO_AUDIO_LEVEL`]: none.
    audio_level: Arc<AtomicU8>,
    negotiation: Negotiation,
    /// Raw text for the socket, beside protocol messages.
    raw: mpsc::UnboundedSender<String>,
    /// Cancelled by [`MediaClient::stop_reading`].
    stop_reading: tokio_util::sync::CancellationToken,
    /// A screen share being published: its sender and the task sending its RTP.
    screen: Option<(Arc<dyn RtpSender>, JoinHandle<()>)>,
    /// Inbound video limit, kbit/s (0: none).
    throttle: super::throttle::Limit,
    /// The last REMB the server sent us, bits per second (0: none yet).
    remb: Arc<AtomicU64>,
    /// Every UDP port the server named in its candidates (descriptions and trickled).
    server_ports: Arc<Mutex<std::collections::BTreeSet<u16>>>,
    /// Offers the server made us (renegotiations).
    server_offers: Arc<AtomicU32>,
    /// Keyframe requests (PLI/FIR) the server sent our camera.
    keyframe_requests: Arc<AtomicU64>,
    milestones: SharedMilestones,
}

/// The UDP ports of the candidates in `text` (an SDP, or one candidate line).
fn udp_candidate_ports(text: &str) -> Vec<u16> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("a=");
            let fields: Vec<&str> = l.strip_prefix("candidate:")?.split(' ').collect();
            fields.get(2).filter(|t| t.eq_ignore_ascii_case("udp"))?;
            fields.get(5)?.parse().ok()
        })
        .collect()
}

/// Registry position of [`RembWatch`]: wire-most, beside the throttle.
const REMB_SLOT: usize = 150;

/// Notes the bitrate of every REMB the server sends (what it says our video may use).
struct RembWatch(Arc<AtomicU64>);

impl crate::sfu::tap::Tap for RembWatch {
    fn read(&mut self, msg: &mut rtc::interceptor::TaggedPacket) -> bool {
        use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
        if let rtc::interceptor::Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(remb) = p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    self.0.store(remb.bitrate as u64, Ordering::Relaxed);
                }
            }
        }
        true
    }
}

/// `audio_level` value meaning "send no audio-level extension".
const NO_AUDIO_LEVEL: u8 = u8::MAX;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("server refused: {0}")]
    Refused(String),
}

impl ClientError {
    /// Worth another try a moment later (a node down, the room moving between nodes).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Signal(_) => true,
            ClientError::Refused(m) => {
                ["cluster_unavailable", "shutting_down", "redirected", "rate_limited"].iter().any(|code| m.starts_with(code))
            }
            ClientError::WebRtc(_) => false,
        }
    }
}

struct Handler {
    out: mpsc::UnboundedSender<ClientMessage>,
    received: Received,
    latency_samples: usize,
    capture_packets: usize,
    connected: Arc<AtomicBool>,
    milestones: SharedMilestones,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.out.send(ClientMessage::IceCandidate {
                candidate: IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                },
            });
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            reached(&self.milestones, |m| &mut m.ice_connected);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.connected.store(state == RTCPeerConnectionState::Connected, Ordering::Relaxed);
        if state == RTCPeerConnectionState::Connected {
            reached(&self.milestones, |m| &mut m.connected);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let participant = track.stream_id().await.to_string();
        let key = track.track_id().await.to_string();
        let kind = match track.kind().await {
            RtpCodecKind::Audio => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        let received = self.received.clone();
        let samples = self.latency_samples;
        let capture = self.capture_packets;
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => record(&received, &key, &participant, kind, &p, samples, capture),
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

fn record(received: &Received, key: &str, participant: &str, kind: MediaKind, p: &rtp::Packet, samples: usize, capture: usize) {
    let now = Instant::now();
    let Ok(mut map) = received.lock() else { return };
    let t = map.entry(key.to_string()).or_insert_with(|| ReceivedTrack {
        participant: participant.to_string(),
        kind,
        packets: 0,
        bytes: 0,
        seq_regressions: 0,
        first_at: None,
        last_at: None,
        first_keyframe_at: None,
        keyframe_started: None,
        probe_min: u64::MAX,
        probe_max: 0,
        latencies_us: Vec::new(),
        duplicates: 0,
        late: 0,
        max_seq_step: 0,
        layers: [0; 3],
        captured: Vec::new(),
        last_seq: None,
        recent: [0; PROBE_WINDOW / 64],
    });
    if t.captured.len() < capture {
        t.captured.push(CapturedPacket {
            sequence: p.header.sequence_number,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            payload: p.payload.clone(),
        });
    }
    if let Some(last) = t.last_seq {
        let delta = p.header.sequence_number.wrapping_sub(last);
        if delta == 0 || delta > 0x8000 {
            t.seq_regressions += 1;
        } else {
            t.max_seq_step = t.max_seq_step.max(delta);
        }
    }
    t.last_seq = Some(p.header.sequence_number);
    t.packets += 1;
    t.bytes += p.payload.len() as u64;
    if kind == MediaKind::Video {
        if let Some(&layer) = p.payload.get(LAYER_MARKER).filter(|l| **l < 3) {
            t.layers[usize::from(layer)] += 1;
        }
        if t.first_keyframe_at.is_none() {
            if t.keyframe_started.is_none() && crate::sfu::track::is_vp8_keyframe(&p.payload) {
                t.keyframe_started = Some(p.header.timestamp);
            }
            if p.header.marker && t.keyframe_started == Some(p.header.timestamp) {
                t.first_keyframe_at = Some(now);
            }
        }
    }
    t.first_at.get_or_insert(now);
    t.last_at = Some(now);
    if let Some((sent_us, seq)) = read_probe(&p.payload) {
        if t.mark_probe(seq) {
            t.duplicates += 1;
            // A duplicate says nothing new about forwarding latency.
            return;
        }
        t.probe_min = t.probe_min.min(seq);
        t.probe_max = t.probe_max.max(seq);
        if t.latencies_us.len() < samples {
            t.latencies_us.push(unix_micros().saturating_sub(sent_us));
        }
    }
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A synthetic payload: VP8 descriptor with an honest keyframe bit, then the probe, then filler.
pub fn synthetic_payload(size: usize, keyframe: bool, seq: u64) -> Bytes {
    synthetic_frame_part(size, true, keyframe, seq)
}

/// One packet of a synthetic frame. Only the first (`start`) carries the VP8 start bit and the
/// frame header, as a real VP8 packetizer does, so the server's keyframe gate sees each frame once.
pub fn synthetic_frame_part(size: usize, start: bool, keyframe: bool, seq: u64) -> Bytes {
    let mut buf = vec![0u8; size.max(PROBE_LEN)];
    buf[0] = if start { 0x10 } else { 0x00 }; // VP8 descriptor: S bit, partition 0
    buf[1] = if keyframe { 0x00 } else { 0x01 }; // frame header P bit (meaningful only with S)
    buf[2..10].copy_from_slice(&unix_micros().to_be_bytes());
    buf[10..18].copy_from_slice(&seq.to_be_bytes());
    Bytes::from(buf)
}

pub fn read_probe(payload: &[u8]) -> Option<(u64, u64)> {
    let sent = u64::from_be_bytes(payload.get(2..10)?.try_into().ok()?);
    let seq = u64::from_be_bytes(payload.get(10..18)?.try_into().ok()?);
    Some((sent, seq))
}

fn local_track(kind: MediaKind, name: &str, video: VideoCodec) -> (Arc<TrackLocalStaticRTP>, u32) {
    local_track_in_stream(kind, &format!("client-{name}"), &format!("{name}-{kind:?}"), video)
}

/// Our side of "perfect negotiation" (the polite one): offers and the server's offers take
/// turns through one lock, which also holds whether an offer of ours awaits its answer; a new
/// offer waits for the answer to the last (an answer must match the offer it answers).
#[derive(Clone, Default)]
struct Negotiation(Arc<tokio::sync::Mutex<bool>>, Arc<tokio::sync::Notify>);

/// How long a new offer waits for the answer to the previous one before going anyway.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How often the client's ICE agent sends a connectivity check while connecting.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

impl Negotiation {
    async fn offer(&self, pc: &Arc<dyn PeerConnection>, out: &mpsc::UnboundedSender<ClientMessage>) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        let mut offer_out = self.0.lock().await;
        while *offer_out && tokio::time::Instant::now() < deadline {
            let answered = self.1.notified();
            drop(offer_out);
            let _ = tokio::time::timeout_at(deadline, answered).await;
            offer_out = self.0.lock().await;
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer.clone()).await?;
        out.send(ClientMessage::Offer(Sdp { sdp: offer.sdp })).map_err(|_| SignalError::Closed)?;
        *offer_out = true;
        Ok(())
    }
}

/// The server's description without its acceptance of our simulcast (`a=simulcast:recv`, and
/// `a=rid:<id> recv`). The webrtc crate (0.21) reads rids in a remote description as layers it
/// will *receive*, whatever their direction; when the server then forwards someone's video on
/// the media section we publish simulcast on (it reuses it, as `addTrack` does), the crate
/// waits for rid-tagged packets there and drops the forwarded stream. Our layers are sent with
/// their rids all the same (see [`send_simulcast`]).
fn without_receive_simulcast(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let l = line.trim_end();
        let receive_rid = l.strip_prefix("a=rid:").is_some_and(|v| v.split_whitespace().nth(1) == Some("recv"));
        if receive_rid || l.starts_with("a=simulcast:recv") {
            continue;
        }
        out.push_str(line);
    }
    out
}

/// A simulcast camera: one track, three encodings (rids q/h/f), each with its own SSRC.
fn simulcast_track(name: &str) -> (Arc<TrackLocalStaticRTP>, [u32; 3]) {
    let ssrcs: [u32; 3] = std::array::from_fn(|_| rand::random());
    let (codec, _) = VideoCodec::Vp8.rtp();
    let label = format!("{name}-Video");
    let codings = SIMULCAST_RIDS
        .iter()
        .zip(ssrcs)
        .map(|(rid, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { rid: rid.to_string(), ssrc: Some(ssrc), ..Default::default() },
            codec: codec.clone(),
            ..Default::default()
        })
        .collect();
    let track =
        TrackLocalStaticRTP::new(MediaStreamTrack::new(format!("client-{name}"), label.clone(), label, RtpCodecKind::Video, codings));
    (Arc::new(track), ssrcs)
}

/// Sends three simulcast layers of synthetic VP8: at `pps` each, payloads of 1/4, 1/2 and 1 times
/// `size`, keyframes every second, every packet carrying its layer's mid and rid extensions
/// (what lets the receiver map an SSRC it was never told about to its rid).
async fn send_simulcast(
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrcs: [u32; 3],
    sender: Arc<dyn RtpSender>,
    pps: u32,
    size: usize,
    sending: Arc<AtomicBool>,
) {
    // Extension ids and the mid exist once negotiation is done.
    let (mid_id, rid_id, mid) = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(params) = sender.get_parameters().await else { continue };
        let id_of = |uri: &str| params.rtp_parameters.header_extensions.iter().find(|e| e.uri == uri).map(|e| e.id as u8);
        let (Some(mid_id), Some(rid_id)) =
            (id_of("urn:ietf:params:rtp-hdrext:sdes:mid"), id_of("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"))
        else {
            continue;
        };
        let mut mid = None;
        for t in pc.get_transceivers().await {
            if let Ok(Some(s)) = t.sender().await {
                if s.id() == sender.id() {
                    mid = t.mid().await.ok().flatten();
                }
            }
        }
        if let Some(mid) = mid {
            break (mid_id, rid_id, mid);
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / pps);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seqs: [u16; 3] = std::array::from_fn(|_| rand::random());
    let mut ts: [u32; 3] = std::array::from_fn(|_| rand::random());
    let mut probe: u64 = 0;
    let step = 90_000 / pps;
    loop {
        tick.tick().await;
        if !sending.load(Ordering::Relaxed) {
            continue;
        }
        let keyframe = probe.is_multiple_of(u64::from(pps));
        for layer in 0..3 {
            let layer_size = (size >> (2 - layer)).max(LAYER_MARKER + 1);
            let mut payload = synthetic_payload(layer_size, keyframe, probe).to_vec();
            payload[LAYER_MARKER] = layer as u8;
            let mut header = rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: seqs[layer],
                timestamp: ts[layer],
                ssrc: ssrcs[layer],
                ..Default::default()
            };
            let rid = SIMULCAST_RIDS[layer];
            if header.set_extension(mid_id, Bytes::from(mid.clone())).is_err()
                || header.set_extension(rid_id, Bytes::from(rid.to_string())).is_err()
            {
                continue;
            }
            if track.write_rtp(rtp::Packet { header, payload: Bytes::from(payload) }).await.is_ok() {
                seqs[layer] = seqs[layer].wrapping_add(1);
            }
            ts[layer] = ts[layer].wrapping_add(step);
        }
        probe += 1;
    }
}

/// A local track whose msid is `stream track_id`.
fn local_track_in_stream(kind: MediaKind, stream: &str, track_id: &str, video: VideoCodec) -> (Arc<TrackLocalStaticRTP>, u32) {
    let ssrc = rand::random::<u32>();
    let (codec_kind, codec) = match kind {
        MediaKind::Audio => (
            RtpCodecKind::Audio,
            RTCRtpCodec {
                mime_type: "audio/opus".into(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
        ),
        MediaKind::Video => (RtpCodecKind::Video, video.rtp().0),
    };
    let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream.to_string(),
        track_id.to_string(),
        track_id.to_string(),
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    ));
    (Arc::new(track), ssrc)
}

impl MediaClient {
    /// Connects, joins `opts.room`, negotiates media and starts publishing.
    /// Relay nodes: joins through `opts.url` or, when it cannot be reached or the cluster is
    /// busy moving the room, through each of `opts.fallback_urls` in turn, retrying for up to
    /// `patience`. What a browser behind a load balancer does after losing its node.
    pub async fn join_any(opts: MediaOptions, patience: Duration) -> Result<Self, ClientError> {
        Self::join_any_keeping(opts, patience, Received::default()).await
    }

    async fn join_any_keeping(opts: MediaOptions, patience: Duration, received: Received) -> Result<Self, ClientError> {
        let deadline = Instant::now() + patience;
        let entries: Vec<String> = std::iter::once(opts.url.clone()).chain(opts.fallback_urls.iter().cloned()).collect();
        let mut attempt = 0usize;
        loop {
            let url = &entries[attempt % entries.len()];
            attempt += 1;
            let mut try_opts = opts.clone();
            try_opts.url = url.clone();
            match Self::join_keeping(try_opts, received.clone()).await {
                Ok(mut client) => {
                    client.opts.url = opts.url.clone();
                    return Ok(client);
                }
                Err(e) if Instant::now() < deadline && e.is_transient() => {
                    tracing::debug!(error = %e, %url, "join failed; trying again");
                    // Every entry point once, then back off (with jitter, so that a room's
                    // people do not retry in step): a dead node's rooms move only once its
                    // heartbeat lapses, and joins are rate-limited per address.
                    if attempt.is_multiple_of(entries.len()) {
                        let round = (attempt / entries.len()).min(4) as u32;
                        let ceiling = 150u64 << round;
                        let jitter = rand::random::<u64>() % (ceiling / 2 + 1);
                        tokio::time::sleep(Duration::from_millis(ceiling / 2 + jitter)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the signaling socket is still open.
    pub fn is_connected(&self) -> bool {
        self.socket_open.load(Ordering::Relaxed)
    }

    /// Joins again with the same token after the node went away or sent us elsewhere: first
    /// where a `redirect` pointed, else through the entry points (see [`Self::join_any`]).
    /// What was received so far is kept (new tracks are added beside the old ones), so counts
    /// read before and after stay comparable.
    pub async fn rejoin(self, patience: Duration) -> Result<Self, ClientError> {
        let mut opts = self.opts.clone();
        let moved = self.moved_to.lock().ok().and_then(|m| m.clone());
        let received = self.received.clone();
        self.close().await;
        if let Some(url) = moved {
            let mut direct = opts.clone();
            direct.url = url;
            if let Ok(mut client) = Self::join_keeping(direct, received.clone()).await {
                client.opts = opts;
                return Ok(client);
            }
        }
        opts.fallback_urls.retain(|u| u != &opts.url);
        Self::join_any_keeping(opts, patience, received).await
    }

    pub async fn join(opts: MediaOptions) -> Result<Self, ClientError> {
        Self::join_keeping(opts, Received::default()).await
    }

    async fn join_keeping(opts: MediaOptions, received: Received) -> Result<Self, ClientError> {
        let joined_at = Instant::now();
        let room_id = RoomId::new(opts.room.clone()).map_err(|e| ClientError::Refused(e.to_string()))?;
        let mut url = opts.url.clone();
        let mut hops = 0;
        let (mut sig, reply) = loop {
            let mut sig = SignalClient::connect(&url).await?;
            sig.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: room_id.clone(), token: opts.token.clone() })
                .await?;
            let reply = sig
                .recv_until("joined", Duration::from_secs(10), |m| {
                    matches!(m, ServerMessage::Joined { .. } | ServerMessage::Error { .. } | ServerMessage::Redirect { .. })
                })
                .await?;
            match reply {
                // The room lives on another relay node: join there, with the same token.
                ServerMessage::Redirect { url: next, .. } if hops < 3 => {
                    hops += 1;
                    url = next;
                }
                other => break (sig, other),
            }
        };
        let (participant_id, mut roster, admitted) = match reply {
            ServerMessage::Joined { participant_id, participants, admitted, .. } => (participant_id, participants, admitted),
            ServerMessage::Error { code, message } => {
                return Err(ClientError::Refused(format!("{}: {message}", code.as_str())));
            }
            _ => return Err(ClientError::Refused("redirected too many times".into())),
        };

        // An admitted member's roster arrives right behind `joined`.
        if admitted {
            if let Ok(ServerMessage::Admitted { participants, .. }) =
                sig.recv_until("admitted", Duration::from_secs(10), |m| matches!(m, ServerMessage::Admitted { .. })).await
            {
                roster = participants;
            }
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ClientMessage>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(false));
        let milestones = SharedMilestones::default();
        let handler = Arc::new(Handler {
            out: out_tx.clone(),
            received: received.clone(),
            latency_samples: opts.latency_samples,
            capture_packets: opts.capture_packets,
            connected,
            milestones: milestones.clone(),
        });
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        media_engine.register_header_extension(
            RTCRtpHeaderExtensionCapability { uri: crate::sfu::audio_level::URI.to_string() },
            RtpCodecKind::Audio,
            None,
        )?;
        if opts.simulcast {
            for uri in ["urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"] {
                media_engine.register_header_extension(
                    RTCRtpHeaderExtensionCapability { uri: uri.to_string() },
                    RtpCodecKind::Video,
                    None,
                )?;
            }
        }
        let throttle: super::throttle::Limit = Arc::new(std::sync::atomic::AtomicU32::new(opts.throttle_kbps.unwrap_or(0)));
        let remb: Arc<AtomicU64> = Arc::default();
        let server_ports: Arc<Mutex<std::collections::BTreeSet<u16>>> = Arc::default();
        let seen_ports = server_ports.clone();
        let note_ports = move |text: &str| {
            if let Ok(mut ports) = seen_ports.lock() {
                ports.extend(udp_candidate_ports(text));
            }
        };
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?
            .with(
                rtc::interceptor::Slot::from(super::throttle::SLOT),
                crate::sfu::tap::TapInterceptor::new(super::throttle::Throttle::new(throttle.clone())),
            )
            .with(rtc::interceptor::Slot::from(REMB_SLOT), crate::sfu::tap::TapInterceptor::new(RembWatch(remb.clone())))
            // Keyframe requests from the server reach our tracks, which answer them.
            .with(
                rtc::interceptor::Slot::from(crate::sfu::keyframe::SLOT),
                crate::sfu::tap::TapInterceptor::new(crate::sfu::keyframe::KeyframeRequestTap),
            );
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            // A peer-reflexive pair is nominated at once (the crate waits 1 s by default).
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_include_loopback_candidate(true)
                    .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
                    // Checks paced at RFC 8445's Ta (50 ms), as browsers pace them, not the crate's
                    // 200 ms: the controlling agent nominates a pair on the tick after its first
                    // successful check, so every join waited one interval beyond the round trip.
                    // As many attempts as the crate's default allows in 1.4 s.
                    .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(28))
                    .build(),
            )
            .with_interceptor_registry(registry)
            .with_handler(handler as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let mut locals = Vec::new();
        if opts.publish_audio {
            locals.push((MediaKind::Audio, local_track(MediaKind::Audio, &opts.name, opts.video_codec)));
        }
        let simulcast = if opts.publish_video && opts.simulcast {
            let (track, ssrcs) = simulcast_track(&opts.name);
            let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
            Some((track, ssrcs, sender))
        } else {
            if opts.publish_video {
                locals.push((MediaKind::Video, local_track(MediaKind::Video, &opts.name, opts.video_codec)));
            }
            None
        };
        for (_, (t, _)) in &locals {
            pc.add_track(t.clone() as Arc<dyn TrackLocal>).await?;
        }
        if locals.is_empty() && simulcast.is_none() {
            // A receive-only participant (like the web client without camera or microphone):
            // an offer with no media section has no ICE credentials and cannot be answered.
            for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
                let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
                pc.add_transceiver_from_kind(kind, Some(init)).await?;
            }
        }
        let negotiation = Negotiation::default();
        negotiation.offer(&pc, &out_tx).await?;
        let server_offers: Arc<AtomicU32> = Arc::default();
        let keyframe_requests: Arc<AtomicU64> = Arc::default();
        let offers_seen = server_offers.clone();

        let mut tasks = Vec::new();
        let (mut sink, mut stream) = sig.into_split();
        let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<String>();
        tasks.push(tokio::spawn(async move {
            loop {
                let text = tokio::select! {
                    msg = out_rx.recv() => match msg {
                        Some(msg) => match serde_json::to_string(&msg) {
                            Ok(text) => text,
                            Err(_) => continue,
                        },
                        None => break,
                    },
                    Some(text) = raw_rx.recv() => text,
                };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        }));
        let stop_reading = tokio_util::sync::CancellationToken::new();
        let reading = stop_reading.clone();
        let signal_pc = pc.clone();
        let signal_out = out_tx.clone();
        let signal_negotiation = negotiation.clone();
        let signal_milestones = milestones.clone();
        let socket_open = Arc::new(AtomicBool::new(true));
        let moved_to: Arc<Mutex<Option<String>>> = Arc::default();
        let (open_flag, moved_slot) = (socket_open.clone(), moved_to.clone());
        tasks.push(tokio::spawn(async move {
            let mut has_remote = false;
            let mut early: Vec<RTCIceCandidateInit> = Vec::new();
            loop {
                let frame = tokio::select! {
                    // A client that stops reading keeps its socket open (see `stop_reading`).
                    _ = reading.cancelled() => std::future::pending().await,
                    frame = stream.next() => frame,
                };
                let Some(Ok(frame)) = frame else { break };
                let Message::Text(text) = frame else { continue };
                let Ok(msg) = serde_json::from_str::<ServerMessage>(text.as_str()) else { continue };
                let result: Result<(), webrtc::error::Error> = async {
                    match msg {
                        ServerMessage::Answer(sdp) => {
                            note_ports(&sdp.sdp);
                            let mut offer_out = signal_negotiation.0.lock().await;
                            let sdp = without_receive_simulcast(&sdp.sdp);
                            let applied = signal_pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await;
                            *offer_out = false;
                            signal_negotiation.1.notify_waiters();
                            applied?;
                            reached(&signal_milestones, |m| &mut m.answered);
                            has_remote = true;
                        }
                        ServerMessage::Offer(sdp) => {
                            offers_seen.fetch_add(1, Ordering::Relaxed);
                            reached(&signal_milestones, |m| &mut m.server_offer);
                            note_ports(&sdp.sdp);
                            let offer_out = signal_negotiation.0.lock().await;
                            // Glare: the server (impolite) ignored our offer. We are polite: roll
                            // ours back, answer theirs, then offer our change again.
                            if *offer_out {
                                signal_pc.set_local_description(RTCSessionDescription::rollback(None)?).await?;
                            }
                            let sdp = without_receive_simulcast(&sdp.sdp);
                            signal_pc.set_remote_description(RTCSessionDescription::offer(sdp)?).await?;
                            has_remote = true;
                            let answer = signal_pc.create_answer(None).await?;
                            signal_pc.set_local_description(answer.clone()).await?;
                            let _ = signal_out.send(ClientMessage::Answer(Sdp { sdp: answer.sdp }));
                            reached(&signal_milestones, |m| &mut m.server_offer_answered);
                            if *offer_out {
                                let offer = signal_pc.create_offer(None).await?;
                                signal_pc.set_local_description(offer.clone()).await?;
                                let _ = signal_out.send(ClientMessage::Offer(Sdp { sdp: offer.sdp }));
                            }
                        }
                        ServerMessage::IceCandidate { candidate } => {
                            note_ports(&candidate.candidate);
                            let init = RTCIceCandidateInit {
                                candidate: candidate.candidate,
                                sdp_mid: candidate.sdp_mid,
                                sdp_mline_index: candidate.sdp_mline_index,
                                username_fragment: candidate.username_fragment,
                                ..Default::default()
                            };
                            if has_remote {
                                signal_pc.add_ice_candidate(init).await?;
                            } else {
                                early.push(init);
                            }
                        }
                        other => {
                            if let ServerMessage::Redirect { url, .. } = &other {
                                if let Ok(mut slot) = moved_slot.lock() {
                                    *slot = Some(url.clone());
                                }
                            }
                            let _ = events_tx.send(other);
                        }
                    }
                    if has_remote {
                        for c in early.drain(..) {
                            signal_pc.add_ice_candidate(c).await?;
                        }
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "client negotiation step failed");
                }
            }
            open_flag.store(false, Ordering::Relaxed);
        }));

        let sending = Arc::new(AtomicBool::new(true));
        let audio_level = Arc::new(AtomicU8::new(opts.audio_level.map_or(NO_AUDIO_LEVEL, |l| l.min(127))));
        if let Some((track, ssrcs, sender)) = simulcast {
            tasks.push(tokio::spawn(send_simulcast(
                pc.clone(),
                track,
                ssrcs,
                sender,
                opts.video_pps.max(1),
                opts.video_payload,
                sending.clone(),
            )));
        }
        for (kind, (track, ssrc)) in locals {
            let (pps, size, pt, clock) = match kind {
                MediaKind::Audio => (opts.audio_pps, opts.audio_payload, 111u8, 48_000u32),
                MediaKind::Video => (opts.video_pps, opts.video_payload, opts.video_codec.rtp().1, 90_000u32),
            };
            let keyframe_every = if kind == MediaKind::Video { opts.keyframe_every.max(1) } else { 1 };
            let sending = sending.clone();
            let wanted = Arc::new(AtomicBool::new(false));
            if kind == MediaKind::Video {
                tasks.push(tokio::spawn(watch_keyframe_requests(track.clone(), wanted.clone(), keyframe_requests.clone())));
            }
            match (&opts.video_profile, kind) {
                (Some(profile), MediaKind::Video) => {
                    tasks.push(tokio::spawn(send_video_frames(track, ssrc, pt, profile.clone(), sending, wanted)));
                }
                _ => {
                    let level = (kind == MediaKind::Audio).then(|| audio_level.clone());
                    let resend = kind == MediaKind::Video && opts.resend_video;
                    tasks.push(tokio::spawn(send_loop(
                        track,
                        ssrc,
                        pps.max(1),
                        size,
                        pt,
                        clock,
                        keyframe_every,
                        sending,
                        level,
                        wanted,
                        resend,
                    )))
                }
            }
        }

        Ok(Self {
            participant_id,
            roster,
            admitted,
            events,
            out: out_tx,
            received,
            pc,
            sending,
            tasks,
            joined_at,
            node_url: url,
            opts,
            socket_open,
            moved_to,
            audio_level,
            screen: None,
            throttle,
            remb,
            server_ports,
            server_offers,
            keyframe_requests,
            milestones,
            negotiation,
            raw: raw_tx,
            stop_reading,
        })
    }

    /// Sends any text on the socket, valid protocol or not (for robustness tests).
    pub fn send_text(&self, text: impl Into<String>) {
        let _ = self.raw.send(text.into());
    }

    /// Stops reading the websocket while keeping it (and the media) open: how a client that
    /// tries to stall the server behaves, for robustness tests.
    pub fn stop_reading(&self) {
        self.stop_reading.cancel();
    }

    /// Sends any protocol message on this client's socket.
    pub fn send(&self, msg: ClientMessage) {
        let _ = self.out.send(msg);
    }

    /// A snapshot of everything received so far, keyed by remote track id.
    pub fn received(&self) -> HashMap<String, ReceivedTrack> {
        self.received.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Takes the latency samples recorded so far (all tracks together), so a measurement window
    /// can start clean and the per-track cap (`latency_samples`) applies per window.
    pub fn drain_latencies(&self) -> Vec<u64> {
        let Ok(mut map) = self.received.lock() else { return Vec::new() };
        map.values_mut().flat_map(|t| std::mem::take(&mut t.latencies_us)).collect()
    }

    /// Packets received so far from `participant`, of `kind`, over all its tracks.
    pub fn packets_from(&self, participant: &ParticipantId, kind: MediaKind) -> u64 {
        self.received().values().filter(|t| t.participant == participant.as_str() && t.kind == kind).map(|t| t.packets).sum()
    }

    /// Restarts ICE (as a client does when only its media path broke): new credentials in a
    /// fresh offer; the server answers and media continues on the same peer connection.
    pub async fn restart_ice(&self) -> Result<(), ClientError> {
        self.pc.restart_ice().await?;
        self.offer().await
    }

    /// The level the audio-level extension carries from now on (−dBov, 0 loudest, 127
    /// silence); `None` stops sending the extension.
    pub fn set_audio_level(&self, level: Option<u8>) {
        self.audio_level.store(level.map_or(NO_AUDIO_LEVEL, |l| l.min(127)), Ordering::Relaxed);
    }

    /// Every UDP port the server's candidates named so far.
    pub fn server_candidate_ports(&self) -> Vec<u16> {
        self.server_ports.lock().map(|p| p.iter().copied().collect()).unwrap_or_default()
    }

    /// The last REMB from the server: how many bits per second our video may use.
    pub fn last_remb_bps(&self) -> Option<u64> {
        Some(self.remb.load(Ordering::Relaxed)).filter(|b| *b != 0)
    }

    /// How many offers the server has made this client (each a renegotiation round trip).
    pub fn server_offers(&self) -> u32 {
        self.server_offers.load(Ordering::Relaxed)
    }

    /// When this client's connection passed each step of its setup.
    pub fn milestones(&self) -> Milestones {
        self.milestones.lock().map(|m| *m).unwrap_or_default()
    }

    /// How many keyframe requests (PLI/FIR) the server has sent this client's camera.
    pub fn keyframe_requests_received(&self) -> u64 {
        self.keyframe_requests.load(Ordering::Relaxed)
    }

    /// Limits inbound video to `kbps` (a weak network); `None` lifts the limit.
    pub fn set_throttle(&self, kbps: Option<u32>) {
        self.throttle.store(kbps.unwrap_or(0), Ordering::Relaxed);
    }

    /// Shares a (synthetic) screen as Chromium does: announces the track with `screenShare`
    /// (its track id and the id of the stream it is added with), adds it and offers. As in
    /// Chromium when `addTrack` reuses a transceiver the server created, the msid in the SDP
    /// carries a sender id, not the announced track id; only the stream id is the same.
    /// Returns the track's client id.
    pub async fn start_screen_share(&mut self) -> Result<String, ClientError> {
        let label = format!("{}-screen-{:08x}", self.opts.name, rand::random::<u32>());
        let stream = format!("{}-display-{:08x}", self.opts.name, rand::random::<u32>());
        let sender_id = format!("sender-{:08x}", rand::random::<u32>());
        let (track, ssrc) = local_track_in_stream(MediaKind::Video, &stream, &sender_id, VideoCodec::Vp8);
        self.send(ClientMessage::ScreenShare { client_track_id: label.clone(), client_stream_id: Some(stream), active: true });
        let sender = self.pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
        self.offer().await?;
        // A slide deck: few frames, a keyframe every second.
        let wanted = Arc::new(AtomicBool::new(false));
        tokio::spawn(watch_keyframe_requests(track.clone(), wanted.clone(), Arc::default()));
        let task = tokio::spawn(send_loop(track, ssrc, 15, 600, 96, 90_000, 15, self.sending.clone(), None, wanted, false));
        self.screen = Some((sender, task));
        Ok(label)
    }

    /// Stops sharing: `screenShare` inactive, the track removed, a new offer.
    pub async fn stop_screen_share(&mut self) -> Result<(), ClientError> {
        let Some((sender, task)) = self.screen.take() else { return Ok(()) };
        task.abort();
        self.send(ClientMessage::ScreenShare { client_track_id: String::new(), client_stream_id: None, active: false });
        self.pc.remove_track(&sender).await?;
        self.offer().await
    }

    async fn offer(&self) -> Result<(), ClientError> {
        self.negotiation.offer(&self.pc, &self.out).await
    }

    /// Stops or resumes publishing (the RTP stops at the source).
    pub fn set_sending(&self, on: bool) {
        self.sending.store(on, Ordering::Relaxed);
    }

    /// Waits (bounded) for a server message matching `pred`, dropping others.
    pub async fn wait_for<F>(&mut self, what: &str, wait: Duration, mut pred: F) -> Result<ServerMessage, SignalError>
    where
        F: FnMut(&ServerMessage) -> bool,
    {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| SignalError::Timeout(what.to_string()))?
                .ok_or(SignalError::Closed)?;
            if pred(&msg) {
                return Ok(msg);
            }
        }
    }

    /// Leaves cleanly: `leave`, then close the peer connection and the socket.
    pub async fn leave(self) {
        self.send(ClientMessage::Leave);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.close().await;
    }

    /// Drops everything without saying goodbye (like a lost network or a killed tab).
    pub async fn close(self) {
        self.sending.store(false, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.pc.close().await;
    }
}

/// Notes PLI and FIR from the server on `track`, as a camera's encoder would, so the next frame
/// `send_loop` makes is a keyframe, and counts them in `counted`. Ends with the track.
async fn watch_keyframe_requests(track: Arc<TrackLocalStaticRTP>, wanted: Arc<AtomicBool>, counted: Arc<AtomicU64>) {
    use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    while let Some(event) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event {
            if packets.iter().any(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()) {
                wanted.store(true, Ordering::Relaxed);
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// The synthetic camera's knobs, one argument each; called from two places.
#[allow(clippy::too_many_arguments)]
async fn send_loop(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pps: u32,
    size: usize,
    payload_type: u8,
    clock_rate: u32,
    keyframe_every: u32,
    sending: Arc<AtomicBool>,
    audio_level: Option<Arc<AtomicU8>>,
    keyframe_wanted: Arc<AtomicBool>,
    resend: bool,
) {
    let mut previous: Option<rtp::Packet> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / pps);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u16 = rand::random();
    let mut probe: u64 = 0;
    let step = clock_rate / pps;
    let mut ts: u32 = rand::random();
    loop {
        tick.tick().await;
        if !sending.load(Ordering::Relaxed) {
            continue;
        }
        // A camera answers a keyframe request (PLI/FIR) with its next frame.
        let keyframe = probe.is_multiple_of(u64::from(keyframe_every)) || keyframe_wanted.swap(false, Ordering::Relaxed);
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: true,
                payload_type,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
                ..Default::default()
            },
            payload: synthetic_payload(size, keyframe, probe),
        };
        let level = audio_level.as_ref().map(|l| l.load(Ordering::Relaxed)).filter(|l| *l != NO_AUDIO_LEVEL);
        let written = match level {
            Some(level) => {
                let ext = HeaderExtension::AudioLevel(AudioLevelExtension { level, voice: level < 127 });
                track.write_rtp_with_extensions(packet, &[ext]).await
            }
            None => {
                let copy = resend.then(|| packet.clone());
                let written = track.write_rtp(packet).await;
                // The packet before this one again: a retransmission arriving late.
                if let Some(again) = previous.take() {
                    let _ = track.write_rtp(again).await;
                }
                previous = copy;
                written
            }
        };
        // Before negotiation completes the track is unbound and the write fails: that packet
        // is simply not sent, as a camera's frame would not be.
        if written.is_ok() {
            seq = seq.wrapping_add(1);
            probe += 1;
        }
        ts = ts.wrapping_add(step);
    }
}

/// Sends frame-shaped video (see [`VideoProfile`]): all packets of a frame share a timestamp,
/// the last carries the marker bit, and every packet carries its own probe.
async fn send_video_frames(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    profile: VideoProfile,
    sending: Arc<AtomicBool>,
    keyframe_wanted: Arc<AtomicBool>,
) {
    let fps = profile.fps.clamp(1, 120);
    let max_packet = profile.max_packet.max(PROBE_LEN);
    let (delta_size, key_size) = profile.frame_sizes();
    let keyframe_interval = u64::from(profile.keyframe_interval.max(1));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / fps);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    let mut probe: u64 = 0;
    // Counts frames actually started, so the stream opens on a keyframe once negotiation is done.
    let mut frame: u64 = 0;
    loop {
        tick.tick().await;
        ts = ts.wrapping_add(90_000 / fps);
        if !sending.load(Ordering::Relaxed) {
            continue;
        }
        let keyframe = frame.is_multiple_of(keyframe_interval) || keyframe_wanted.swap(false, Ordering::Relaxed);
        let size = if keyframe { key_size } else { delta_size };
        let parts = size.div_ceil(max_packet);
        for i in 0..parts {
            let part = if i + 1 == parts { size - max_packet * (parts - 1) } else { max_packet };
            let packet = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: i + 1 == parts,
                    payload_type,
                    sequence_number: seq,
                    timestamp: ts,
                    ssrc,
                    ..Default::default()
                },
                payload: synthetic_frame_part(part.max(PROBE_LEN), i == 0, keyframe, probe),
            };
            if track.write_rtp(packet).await.is_err() {
                // Unbound before negotiation: drop the rest of this frame, as a camera would.
                break;
            }
            seq = seq.wrapping_add(1);
            probe += 1;
            if i == 0 {
                frame += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_acceptance_of_our_simulcast_is_left_out() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:q recv\r\na=rid:f send\r\na=simulcast:recv q;h;f\r\na=ssrc:5 cname:x\r\n";
        assert_eq!(
            without_receive_simulcast(sdp),
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:f send\r\na=ssrc:5 cname:x\r\n"
        );
    }

    fn track() -> ReceivedTrack {
        ReceivedTrack {
            participant: "p".into(),
            kind: MediaKind::Video,
            packets: 0,
            bytes: 0,
            seq_regressions: 0,
            first_at: None,
            last_at: None,
            first_keyframe_at: None,
            keyframe_started: None,
            probe_min: u64::MAX,
            probe_max: 0,
            latencies_us: Vec::new(),
            duplicates: 0,
            late: 0,
            max_seq_step: 0,
            layers: [0; 3],
            captured: Vec::new(),
            last_seq: None,
            recent: [0; PROBE_WINDOW / 64],
        }
    }

    #[test]
    fn duplicate_and_late_probes_are_told_apart() {
        let mut t = track();
        let feed = |t: &mut ReceivedTrack, seq: u64| {
            let dup = t.mark_probe(seq);
            if !dup {
                t.probe_min = t.probe_min.min(seq);
                t.probe_max = t.probe_max.max(seq);
            }
            dup
        };
        assert!(!feed(&mut t, 5));
        assert!(!feed(&mut t, 7)); // 6 missing
        assert!(feed(&mut t, 7)); // duplicate
        assert!(!feed(&mut t, 6)); // late, recovered
        assert!(feed(&mut t, 6));
        assert_eq!((t.late, t.probe_max), (1, 7));
        // Far ahead: the window restarts, old bits do not alias new probes.
        assert!(!feed(&mut t, 7 + 1024 + 6));
        assert!(!feed(&mut t, 7 + 1024 + 5));
        assert!(feed(&mut t, 7 + 1024 + 5));
        // Sliding by less than the window clears what it passes over.
        assert!(!feed(&mut t, 7 + 1024 + 6 + 1024 - 1));
        assert!(!feed(&mut t, 7 + 1024 + 6 + 1));
    }

    #[test]
    fn video_profile_averages_its_bitrate() {
        let v = VideoProfile::camera(1000);
        let (delta, key) = v.frame_sizes();
        assert_eq!(key, delta * 4);
        let per_interval = (59 * delta + key) as f64;
        let kbps = per_interval * 8.0 * 30.0 / 60.0 / 1000.0;
        assert!((kbps - 1000.0).abs() < 5.0, "{kbps}");
        assert!((v.packets_per_second() - 125.5).abs() < 0.01, "{}", v.packets_per_second());
    }
}
