//! Media forwarding (the SFU). Owns every use of the `webrtc` crate, so a version change of that
//! crate touches this module only.
//!
//! One server-side peer connection per participant ([`peer`]): it receives what the participant
//! publishes and sends them everyone else's tracks. [`track`] fans RTP out without decoding.
//! All connections share one UDP port ([`udp_mux`], `ice.udp_port`) unless `ice.single_port`
//! is off.
//! Who receives whom is not decided here: the room tells each peer to subscribe or unsubscribe.

pub mod audio_level;
pub mod bwe;
pub mod keep_rid;
pub mod keyframe;
pub mod path;
pub mod peer;
pub mod simulcast;
pub mod tap;
pub mod track;
pub mod udp_mux;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder, Slot};
use webrtc::peer_connection::{
    configure_rtcp_reports, configure_twcc_receiver_only, MediaEngine, RTCConfigurationBuilder, RTCIceCandidateType, RTCIceServer,
    Registry, SettingEngineBuilder,
};

use crate::config::IceConfig;
use crate::vocab::ParticipantId;

pub use peer::{Candidate, PeerCommand, PeerEvent, PeerHandle, Refusal};
use tap::TapInterceptor;
pub use track::{PublishedTrack, TrackId};

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("no free UDP port in {min}-{max}")]
    NoFreePort { min: u16, max: u16 },
    #[error("peer connection is closed")]
    PeerClosed,
    #[error("a new transceiver came without its sender")]
    NoSender,
    #[error("invalid session description: {0}")]
    InvalidSdp(String),
    #[error("cannot bind the media port {addr}: {source}")]
    MediaPort { addr: SocketAddr, source: std::io::Error },
}

/// Counters the whole server shares, read by `/healthz` and `/metrics`. Plain atomics: the
/// forwarding path pays one relaxed add per packet and nothing else.
#[derive(Default, Debug)]
pub struct SfuStats {
    pub peers: AtomicUsize,
    pub published_tracks: AtomicUsize,
    pub subscriptions: AtomicUsize,
    pub rtp_packets_in: AtomicU64,
    pub rtp_bytes_in: AtomicU64,
    pub rtp_packets_out: AtomicU64,
    pub rtp_bytes_out: AtomicU64,
    /// Duplicate RTP (late retransmissions) dropped before fan-out.
    pub rtp_duplicates_dropped: AtomicU64,
    /// PLIs this server sent to publishers.
    pub keyframe_requests_sent: AtomicU64,
    /// PLI/FIR received from subscribers.
    pub keyframe_requests_received: AtomicU64,
    /// Simulcast layer switches made for subscribers.
    pub layer_switches: AtomicU64,
    /// Packets subscribers asked to have sent again (NACK): loss on the way to them.
    pub nack_received: AtomicU64,
    /// Packets this server asked publishers to send again (NACK): loss on the way here.
    pub nack_sent: AtomicU64,
    /// Video subscriptions paused right now because the subscriber's connection cannot carry
    /// even the lowest layer.
    pub bandwidth_paused: AtomicUsize,
    /// Connected peers by the path their media takes, indexed by [`path::MediaPath`].
    pub peers_by_path: [AtomicUsize; 4],
    /// Datagrams on the shared media port that belonged to no connection (strangers, late
    /// packets of closed connections), and datagrams dropped because a connection's queue was full.
    pub media_port_unrouted: AtomicU64,
    pub media_port_overflow: AtomicU64,
    /// The shared media socket's receive buffer as the kernel granted it (bytes).
    pub media_port_buffer_bytes: AtomicUsize,
}

/// How often the server asks a publisher for one missing packet (100 ms apart), after which
/// the subscribers' own NACKs and keyframe requests take over.
const NACKS_PER_PACKET: u16 = 5;

/// Packets kept per outgoing stream for retransmission to a subscriber who NACKs them. 256 is
/// about 1.7 s of 1.5 Mbit/s video (≈150 packets a second) and 5 s of audio: longer than a
/// NACK's round trip on any network a session survives, after which a keyframe request is the
/// cheaper repair. The crate's default (1,024) held ≈112 KiB per forwarded stream.
const RETRANSMIT_BUFFER_PACKETS: u16 = 256;

/// The codecs Hearth negotiates: Opus, and VP8 and H.264 for video, with NACK, PLI/FIR and
/// REMB feedback but no RTX (RFC 4588). A browser's simulcast layer announces its RTX stream
/// only by a `repaired-rtp-stream-id` extension, which the webrtc crate (0.21) does not map, so
/// its retransmissions would be dropped and a lost packet never repaired. Without RTX the
/// browser resends a NACKed packet on the layer's own SSRC (RFC 4585), which the crate maps.
/// The payload types are the crate's defaults (and what the headless client sends).
fn register_codecs(media_engine: &mut MediaEngine) -> Result<(), SfuError> {
    use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
    let codec = |mime: &str, clock_rate: u32, channels: u16, fmtp: &str, rtcp_feedback: Vec<RTCPFeedback>, payload_type: u8| {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec { mime_type: mime.to_string(), clock_rate, channels, sdp_fmtp_line: fmtp.to_string(), rtcp_feedback },
            payload_type,
        }
    };
    let feedback = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.to_string(), parameter: parameter.to_string() };
    let video_feedback = vec![feedback("goog-remb", ""), feedback("ccm", "fir"), feedback("nack", ""), feedback("nack", "pli")];
    media_engine.register_codec(codec("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", vec![], 111), RtpCodecKind::Audio)?;
    for (mime, fmtp, payload_type) in [
        ("video/VP8", "", 96),
        ("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102),
        ("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 108),
    ] {
        media_engine.register_codec(codec(mime, 90_000, 0, fmtp, video_feedback.clone(), payload_type), RtpCodecKind::Video)?;
    }
    Ok(())
}

/// The one UDP port all media uses (`ice.udp_port` on `ice.bind_ip`). Setting up the shared
/// port is this function and [`udp_mux`]; nothing else in the engine knows about it.
fn bind_media_port(ice: &IceConfig, stats: Arc<SfuStats>) -> Result<Arc<udp_mux::UdpMux>, SfuError> {
    let addr = SocketAddr::new(ice.bind_ip, ice.udp_port);
    udp_mux::UdpMux::bind(addr, ice.socket_buffer_bytes, stats).map_err(|source| SfuError::MediaPort { addr, source })
}

/// How often a server connection's ICE agent runs its timers until ICE connects (the crate's
/// default is 200 ms). The server is the DTLS client, and the webrtc crate (0.21) queues the
/// first DTLS flight when the client nominates a pair but sends it only on the connection's
/// next timer tick: each join waited up to one tick (130-190 ms measured) before its
/// handshake began. A lite agent sends no checks, so a short tick costs a few wake-ups while
/// connecting; once connected the agent ticks at the keepalive interval.
const ICE_TICK_WHILE_CONNECTING: std::time::Duration = std::time::Duration::from_millis(10);

/// Builds peer connections with the configured ICE settings.
pub struct SfuEngine {
    ice: IceConfig,
    next_port: AtomicU32,
    next_tcp_port: AtomicU32,
    pub stats: Arc<SfuStats>,
    /// The one media port every connection shares (`ice.single_port`).
    mux: Option<Arc<udp_mux::UdpMux>>,
}

impl SfuEngine {
    /// An engine that binds nothing until a peer is activated: a port of its own per peer
    /// connection, whatever `ice.single_port` says (for tests of the room's rules).
    pub fn new(ice: IceConfig) -> Arc<Self> {
        Arc::new(Self {
            next_port: AtomicU32::new(0),
            next_tcp_port: AtomicU32::new(0),
            ice,
            stats: Arc::new(SfuStats::default()),
            mux: None,
        })
    }

    /// The server's engine: with `ice.single_port`, binds the shared media port now, so a port
    /// in use fails the start rather than the first admission. Needs a tokio runtime.
    pub fn start(ice: IceConfig) -> Result<Arc<Self>, SfuError> {
        let stats = Arc::new(SfuStats::default());
        let mux = if ice.single_port { Some(bind_media_port(&ice, stats.clone())?) } else { None };
        Ok(Arc::new(Self { next_port: AtomicU32::new(0), next_tcp_port: AtomicU32::new(0), ice, stats, mux }))
    }

    /// The shared media port's address, when there is one.
    pub fn media_port(&self) -> Option<SocketAddr> {
        self.mux.as_ref().map(|m| m.local_addr())
    }

    /// A new connection's share of the media port, and the runtime that gives it: `None`
    /// when each connection binds a port of its own.
    fn media_route(&self) -> Option<(Arc<udp_mux::PeerRoute>, Arc<dyn webrtc::runtime::Runtime>)> {
        self.mux.as_ref().map(|m| m.route())
    }

    /// Starts a participant's peer task. It stays dormant (no socket, no connection) until the
    /// room sends [`PeerCommand::Activate`] on admission; `publishes` is false for those whose
    /// media must never be received (observers).
    pub fn create_peer(
        self: &Arc<Self>,
        participant: ParticipantId,
        events: tokio::sync::mpsc::UnboundedSender<PeerEvent>,
        publishes: bool,
    ) -> PeerHandle {
        peer::spawn(self.clone(), participant, events, publishes)
    }

    fn media_engine_and_registry(&self, feedback: Arc<bwe::FeedbackSink>) -> Result<(MediaEngine, Registry), SfuError> {
        let mut media_engine = MediaEngine::default();
        register_codecs(&mut media_engine)?;
        // Audio levels feed active-speaker detection (the room decides; see `audio_level`).
        media_engine.register_header_extension(
            rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability { uri: audio_level::URI.to_string() },
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
            None,
        )?;
        // Simulcast layers are told apart by their rid; the first packets of each carry mid and
        // rid extensions so the receiver can map an SSRC it was never told about.
        for uri in [
            "urn:ietf:params:rtp-hdrext:sdes:mid",
            "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        ] {
            media_engine.register_header_extension(
                rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability { uri: uri.to_string() },
                rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video,
                None,
            )?;
        }
        // The crate's default chain (NACK both ways, TWCC feedback for publishers, RTCP reports)
        // but with a bounded NACK generator: by default it asks again for a missing packet
        // every 100 ms for as long as the packet is in its window, which on a lossy uplink
        // became a storm (27,000 packets asked for in 20 s from one browser at 500 kbit/s).
        let registry = Registry::new()
            .with(Slot::NackResponder, NackResponderBuilder::new().with_size(RETRANSMIT_BUFFER_PACKETS).build())
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().with_max_nacks_per_packet(NACKS_PER_PACKET).build());
        let registry = configure_rtcp_reports(configure_twcc_receiver_only(registry, &mut media_engine)?);
        let registry = registry
            .with(Slot::from(keyframe::SLOT), TapInterceptor::new(keyframe::KeyframeRequestTap))
            .with(Slot::from(bwe::SLOT), TapInterceptor::new(bwe::FeedbackTap::new(feedback, self.stats.clone())))
            .with(Slot::from(keep_rid::SLOT), TapInterceptor::new(keep_rid::KeepRid::default()));
        Ok((media_engine, registry))
    }

    fn setting_engine(&self) -> webrtc::peer_connection::SettingEngine {
        let mut b = SettingEngineBuilder::new()
            // Loopback candidates are what a development server on 127.0.0.1 has.
            .with_include_loopback_candidate(self.ice.bind_ip.is_loopback())
            // ICE-lite: the server is the publicly reachable side and only answers checks. A
            // full server's own checks often reached a client before its trickled candidate,
            // the client took the server for a peer-reflexive candidate, and its agent waited a
            // second before nominating such a pair: most joins took 1.2 s to first media.
            .with_lite(true)
            // The attempts per candidate do not apply: a lite agent sends no checks.
            .with_ice_connection_attempts(Some(ICE_TICK_WHILE_CONNECTING), None);
        if !self.ice.announce_ips.is_empty() {
            b = b.with_nat_1to1_ips(self.ice.announce_ips.iter().map(IpAddr::to_string).collect(), RTCIceCandidateType::Host);
        }
        b.build()
    }

    fn configuration(&self) -> webrtc::peer_connection::RTCConfiguration {
        // The server itself needs no STUN/TURN: it is the publicly reachable side.
        RTCConfigurationBuilder::new().with_ice_servers(Vec::<RTCIceServer>::new()).build()
    }

    /// The UDP address a new peer binds: an ephemeral port, or the next free one in the range.
    /// With the shared port, the crate still binds (and we close) an ephemeral one.
    fn udp_addr(&self) -> Result<SocketAddr, SfuError> {
        let (min, max) = (self.ice.udp_port_min, self.ice.udp_port_max);
        if min == 0 || self.mux.is_some() {
            return Ok(SocketAddr::new(self.ice.bind_ip, 0));
        }
        let span = u32::from(max - min) + 1;
        for _ in 0..span {
            let offset = self.next_port.fetch_add(1, Ordering::Relaxed) % span;
            let addr = SocketAddr::new(self.ice.bind_ip, min + offset as u16);
            // Probe so a busy port is skipped; the peer binds it right after.
            if UdpSocket::bind(addr).is_ok() {
                return Ok(addr);
            }
        }
        Err(SfuError::NoFreePort { min, max })
    }

    /// ICE over TCP (RFC 6544): with `ice.tcp`, the address a new peer also listens on, whose
    /// passive TCP candidate lets a client that can only reach the server over TCP connect
    /// without TURN (the browser dials it, the crate frames ICE, DTLS and SRTP over the stream).
    /// The webrtc crate (0.21) has no TCP mux: each peer has a listener of its own, from the
    /// same port range as UDP (or an ephemeral port).
    fn ice_tcp_addrs(&self) -> Result<Vec<SocketAddr>, SfuError> {
        if !self.ice.tcp {
            return Ok(Vec::new());
        }
        let (min, max) = (self.ice.udp_port_min, self.ice.udp_port_max);
        if min == 0 {
            return Ok(vec![SocketAddr::new(self.ice.bind_ip, 0)]);
        }
        let span = u32::from(max - min) + 1;
        for _ in 0..span {
            let offset = self.next_tcp_port.fetch_add(1, Ordering::Relaxed) % span;
            let addr = SocketAddr::new(self.ice.bind_ip, min + offset as u16);
            if TcpListener::bind(addr).is_ok() {
                return Ok(vec![addr]);
            }
        }
        Err(SfuError::NoFreePort { min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every join's DTLS handshake starts on the server connection's next ICE tick after the
    /// client nominates (see [`ICE_TICK_WHILE_CONNECTING`]): with the crate's 200 ms it took
    /// most of a first picture's 300 ms budget. Much below 5 ms, a connection that never
    /// connects would only spin.
    #[test]
    fn the_server_starts_dtls_within_a_short_ice_tick() {
        assert!(ICE_TICK_WHILE_CONNECTING <= std::time::Duration::from_millis(20), "{ICE_TICK_WHILE_CONNECTING:?}");
        assert!(ICE_TICK_WHILE_CONNECTING >= std::time::Duration::from_millis(5), "{ICE_TICK_WHILE_CONNECTING:?}");
    }
}
