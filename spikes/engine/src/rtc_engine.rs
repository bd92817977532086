//! Engine A: the sans-IO `rtc` crate (0.21.1, the core the webrtc crate drives), configured
//! the way Hearth configures its server connections: Hearth's codecs and header extensions,
//! its interceptor chain (NACK responder of 256 packets, bounded NACK generator, TWCC
//! feedback, sender and receiver reports), ICE-lite on the server side.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder, Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{configure_rtcp_reports, configure_twcc, configure_twcc_receiver_only};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::{alloc, Measured, Run};

const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

fn media_engine_and_registry(server: bool) -> (MediaEngine, Registry) {
    let mut me = MediaEngine::default();
    let codec = |mime: &str, clock_rate, channels, fmtp: &str, fb: Vec<RTCPFeedback>, pt| RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec { mime_type: mime.to_string(), clock_rate, channels, sdp_fmtp_line: fmtp.to_string(), rtcp_feedback: fb },
        payload_type: pt,
    };
    let fb = |t: &str, p: &str| RTCPFeedback { typ: t.to_string(), parameter: p.to_string() };
    let video_fb = vec![fb("goog-remb", ""), fb("ccm", "fir"), fb("nack", ""), fb("nack", "pli")];
    me.register_codec(codec("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", vec![], 111), RtpCodecKind::Audio).expect("opus");
    for (mime, fmtp, pt) in [
        ("video/VP8", "", 96),
        ("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102),
        ("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 108),
    ] {
        me.register_codec(codec(mime, 90_000, 0, fmtp, video_fb.clone(), pt), RtpCodecKind::Video).expect("video");
    }
    me.register_header_extension(RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL.to_string() }, RtpCodecKind::Audio, None)
        .expect("audio level");
    for uri in [
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    ] {
        me.register_header_extension(RTCRtpHeaderExtensionCapability { uri: uri.to_string() }, RtpCodecKind::Video, None).expect("sdes");
    }
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().with_size(256).build())
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().with_max_nacks_per_packet(5).build());
    // The server gives publishers TWCC feedback (as Hearth does); the client also stamps
    // transport-wide sequence numbers on what it sends, as a browser does.
    let registry = if server {
        configure_twcc_receiver_only(registry, &mut me).expect("twcc")
    } else {
        configure_twcc(registry, &mut me).expect("twcc")
    };
    (me, configure_rtcp_reports(registry))
}

fn peer(server: bool, addr: SocketAddr, now: Instant) -> RTCPeerConnection {
    let (me, registry) = media_engine_and_registry(server);
    let setting = SettingEngineBuilder::new().with_lite(server).build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build(now)
        .expect("peer connection");
    let cand = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("candidate");
    pc.add_local_candidate(RTCIceCandidate::from(&cand).to_json().expect("json")).expect("add candidate");
    pc
}

/// One server connection and the client connection it talks to.
struct Leg {
    sfu: RTCPeerConnection,
    client: RTCPeerConnection,
    sfu_addr: SocketAddr,
    client_addr: SocketAddr,
    sfu_up: bool,
    client_up: bool,
    /// Subscriber legs: the server's sender and the SSRC it was given.
    sender: Option<rtc::rtp_transceiver::RTCRtpSenderId>,
    ssrc: u32,
    pt: u8,
    /// Sequence numbers of the RTP packets the client read (for the NACK check).
    received: Vec<u16>,
    /// Picture loss indications read by the server and by the client (keyframe check).
    sfu_plis: usize,
    client_plis: usize,
}

fn plis(message: &RTCMessage) -> usize {
    match message {
        RTCMessage::RtcpPacket(_, packets) => packets.iter().filter(|p| p.as_any().is::<PictureLossIndication>()).count(),
        _ => 0,
    }
}

fn tagged(now: Instant, local: SocketAddr, peer: SocketAddr, bytes: &[u8]) -> TaggedBytesMut {
    TaggedBytesMut {
        now,
        transport: TransportContext { local_addr: local, peer_addr: peer, ecn: None, transport_protocol: TransportProtocol::UDP },
        message: BytesMut::from(bytes),
    }
}

fn track(id: &str, kind: RtpCodecKind, ssrc: u32, mime: &str, clock_rate: u32, channels: u16) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("stream-{id}"),
        format!("track-{id}"),
        format!("label-{id}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: RTCRtpCodec { mime_type: mime.to_string(), clock_rate, channels, ..Default::default() },
            ..Default::default()
        }],
    )
}

impl Leg {
    /// Moves every pending datagram both ways and notes connection state; true if anything moved.
    fn pump(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(m) = self.sfu.poll_write() {
            moved = true;
            self.client.handle_read(tagged(now, self.client_addr, self.sfu_addr, &m.message)).expect("client read");
        }
        while let Some(m) = self.client.poll_write() {
            moved = true;
            self.sfu.handle_read(tagged(now, self.sfu_addr, self.client_addr, &m.message)).expect("sfu read");
        }
        while let Some(e) = self.sfu.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                assert_ne!(s, RTCPeerConnectionState::Failed, "server leg failed");
                self.sfu_up |= s == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(e) = self.client.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                assert_ne!(s, RTCPeerConnectionState::Failed, "client leg failed");
                self.client_up |= s == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(m) = self.sfu.poll_read() {
            self.sfu_plis += plis(&m.message);
        }
        while let Some(m) = self.client.poll_read() {
            self.client_plis += plis(&m.message);
            if let RTCMessage::RtpPacket(_, p) = m.message {
                self.received.push(p.header.sequence_number);
            }
        }
        moved
    }
}

pub fn measure(run: Run) -> Measured {
    let mut now = Instant::now();
    let sfu_addr: SocketAddr = "10.0.0.1:3478".parse().expect("addr");
    let client_addr = |k: usize| -> SocketAddr { format!("10.0.1.{}:5000", k + 1).parse().expect("addr") };
    let (kind, mime, clock, ch) =
        if run.audio { (RtpCodecKind::Audio, "audio/opus", 48_000, 2) } else { (RtpCodecKind::Video, "video/VP8", 90_000, 0) };

    // Publisher leg: the client offers a sendonly track, the server answers.
    let pub_ssrc = 0x1000_0001;
    let mut publisher = Leg {
        sfu: peer(true, sfu_addr, now),
        client: peer(false, client_addr(0), now),
        sfu_addr,
        client_addr: client_addr(0),
        sfu_up: false,
        client_up: false,
        sender: None,
        ssrc: pub_ssrc,
        pt: 0,
        received: Vec::new(),
        sfu_plis: 0,
        client_plis: 0,
    };
    let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, streams: vec![], send_encodings: vec![] };
    publisher.client.add_transceiver_from_track(track("pub", kind, pub_ssrc, mime, clock, ch), Some(init)).expect("pub track");
    negotiate(&mut publisher.client, &mut publisher.sfu, now);
    let pub_sender = publisher.client.get_senders().next().expect("pub sender");
    publisher.pt = publisher
        .client
        .rtp_sender(pub_sender)
        .expect("sender")
        .get_parameters()
        .rtp_parameters
        .codecs
        .first()
        .expect("codec")
        .payload_type;

    // Subscriber legs: the server adds a sendonly track and offers, the client answers.
    let mut subs: Vec<Leg> = (0..run.subscribers)
        .map(|k| {
            let ssrc = 0x2000_0000 + k as u32;
            let mut l = Leg {
                sfu: peer(true, sfu_addr, now),
                client: peer(false, client_addr(k + 1), now),
                sfu_addr,
                client_addr: client_addr(k + 1),
                sfu_up: false,
                client_up: false,
                sender: None,
                ssrc,
                pt: 0,
                received: Vec::new(),
                sfu_plis: 0,
                client_plis: 0,
            };
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, streams: vec![], send_encodings: vec![] };
            l.sfu.add_transceiver_from_track(track(&format!("sub{k}"), kind, ssrc, mime, clock, ch), Some(init)).expect("sub track");
            negotiate(&mut l.sfu, &mut l.client, now);
            let sender = l.sfu.get_senders().next().expect("sub sender");
            l.pt = l.sfu.rtp_sender(sender).expect("sender").get_parameters().rtp_parameters.codecs.first().expect("codec").payload_type;
            l.sender = Some(sender);
            l
        })
        .collect();

    {
        let mut all: Vec<&mut Leg> = std::iter::once(&mut publisher).chain(subs.iter_mut()).collect();
        connect(&mut all, &mut now);
    }

    // The publisher's datagrams, made (and encrypted) by its client before any timing.
    let total = run.warmup + run.packets + crate::CHECK_PACKETS;
    let payload = bytes::Bytes::from(vec![0x5a_u8; run.payload]);
    let mut datagrams: Vec<(bool, Vec<u8>)> = Vec::with_capacity(total + total / 8);
    let step = if run.audio { 960 } else { 3000 };
    for i in 0..total {
        let p = rtp::packet::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: !run.audio && i % 8 == 7,
                payload_type: publisher.pt,
                sequence_number: 1000u16.wrapping_add(i as u16),
                timestamp: 90_000u32.wrapping_add((i as u32 / 8) * step),
                ssrc: pub_ssrc,
                ..Default::default()
            },
            payload: payload.clone(),
        };
        let t = now + run.interval * i as u32;
        publisher.client.rtp_sender(pub_sender).expect("sender").write_rtp(t, p).expect("write");
        while let Some(m) = publisher.client.poll_write() {
            // RTP (not RTCP) is what counts as a published packet; RTCP is delivered too.
            let is_rtp = m.message.len() > 1 && !(192..=223).contains(&m.message[1]);
            datagrams.push((is_rtp, m.message.to_vec()));
        }
    }
    let rtp_count = datagrams.iter().filter(|d| d.0).count();
    assert_eq!(rtp_count, total, "one RTP datagram per written packet");

    let mut out = Vec::with_capacity(2048);
    let mut fwd = Measured::default();
    let mut next_timer = now;
    let timer_step = Duration::from_millis(10);
    let mut idx = 0;
    let base = now;
    let mut packet_no = 0usize;
    // Warm-up then the timed region, with the same code.
    for (phase, count) in [(0, run.warmup), (1, run.packets)] {
        let a0 = alloc::count();
        let t0 = Instant::now();
        let c0 = crate::thread_cpu();
        let end_packet = packet_no + count;
        let mut body = || {
            while packet_no < end_packet {
                let (is_rtp, d) = &datagrams[idx];
                idx += 1;
                now = base + run.interval * packet_no as u32;
                if *is_rtp {
                    packet_no += 1;
                }
                forward_one(&mut publisher, &mut subs, now, d, &mut out, &mut fwd);
                if now >= next_timer {
                    timers(&mut publisher, &mut subs, now, &mut out, &mut fwd);
                    next_timer = now + timer_step;
                }
            }
        };
        if phase == 0 {
            crate::warm_phase(&mut body)
        } else {
            crate::timed_phase(&mut body)
        }
        let elapsed = t0.elapsed();
        let cpu = crate::thread_cpu() - c0;
        let allocs = alloc::count() - a0;
        if phase == 0 {
            fwd = Measured::default();
        } else {
            fwd.nanos = elapsed.as_nanos();
            fwd.cpu_nanos = cpu.as_nanos();
            fwd.allocs = allocs;
        }
    }
    fwd.nack_repaired = check_nack(&mut publisher, &mut subs[0], &datagrams[idx..], &mut now, run.interval);
    fwd.keyframe_relayed = check_keyframe(&mut publisher, &mut subs[0], &mut now);
    fwd
}

/// Feature check: a PLI from subscriber 0's client reaches the server, and a PLI the server
/// sends to the publisher reaches the publisher's client (what an SFU relays on a new
/// subscription or a lost keyframe).
fn check_keyframe(publisher: &mut Leg, sub: &mut Leg, now: &mut Instant) -> bool {
    let pli = |media_ssrc| vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc }) as Box<dyn rtc::rtcp::Packet>];
    let from_sub = sub.client.get_receivers().next().expect("subscriber's receiver");
    sub.client.rtp_receiver(from_sub).expect("receiver").write_rtcp(*now, pli(sub.ssrc)).expect("client PLI");
    let to_pub = publisher.sfu.get_receivers().next().expect("publisher's receiver");
    publisher.sfu.rtp_receiver(to_pub).expect("receiver").write_rtcp(*now, pli(publisher.ssrc)).expect("server PLI");
    // The requests leave as SRTCP datagrams at once; deliver them by hand to see that they do.
    let mut datagrams = 0;
    while let Some(m) = sub.client.poll_write() {
        datagrams += 1;
        sub.sfu.handle_read(tagged(*now, sub.sfu_addr, sub.client_addr, &m.message)).expect("sfu read");
    }
    while let Some(m) = publisher.sfu.poll_write() {
        datagrams += 1;
        publisher.client.handle_read(tagged(*now, publisher.client_addr, publisher.sfu_addr, &m.message)).expect("client read");
    }
    for _ in 0..10 {
        *now += Duration::from_millis(10);
        sub.pump(*now);
        publisher.pump(*now);
    }
    // Without an interceptor that marks them for the application (Hearth's `sfu::keyframe`
    // tap), rtc consumes inbound RTCP in its chain: the requests arrive but are not surfaced.
    eprintln!(
        "rtc keyframe check: {datagrams} RTCP datagrams carried the two PLIs; surfaced: server {}, publisher's client {}",
        sub.sfu_plis, publisher.client_plis
    );
    sub.sfu_plis > 0 && publisher.client_plis > 0
}

/// Feature check, after the timed region: the server's datagram carrying the 20th RTP packet
/// to subscriber 0 is dropped; its client must NACK it and the server must resend it.
fn check_nack(publisher: &mut Leg, sub: &mut Leg, rest: &[(bool, Vec<u8>)], clock: &mut Instant, interval: Duration) -> bool {
    let mut now = *clock;
    let mut rtp_seen = 0;
    let mut lost = None;
    let sender = sub.sender.expect("subscriber leg");
    for (is_rtp, d) in rest {
        if *is_rtp {
            now += interval;
        }
        publisher.sfu.handle_read(tagged(now, publisher.sfu_addr, publisher.client_addr, d)).expect("sfu read");
        while let Some(TaggedRTCMessage { message, .. }) = publisher.sfu.poll_read() {
            let RTCMessage::RtpPacket(_, mut p) = message else { continue };
            p.header.extension = false;
            p.header.extensions.clear();
            p.header.ssrc = sub.ssrc;
            p.header.payload_type = sub.pt;
            p.header.sequence_number = p.header.sequence_number.wrapping_add(7);
            sub.sfu.rtp_sender(sender).expect("sender").write_rtp(now, p).expect("write_rtp");
        }
        while publisher.sfu.poll_write().is_some() {}
        while let Some(m) = sub.sfu.poll_write() {
            let b = &m.message;
            if b.len() > 12 && !(192..=223).contains(&b[1]) {
                rtp_seen += 1;
                if rtp_seen == 20 {
                    lost = Some(u16::from_be_bytes([b[2], b[3]]));
                    continue;
                }
            }
            sub.client.handle_read(tagged(now, sub.client_addr, sub.sfu_addr, b)).expect("client read");
        }
        sub.pump(now);
    }
    for _ in 0..100 {
        now += Duration::from_millis(10);
        for pc in [&mut sub.sfu, &mut sub.client] {
            if pc.poll_timeout().is_some_and(|t| t <= now) {
                pc.handle_timeout(now).expect("timeout");
            }
        }
        sub.pump(now);
    }
    *clock = now;
    lost.is_some_and(|lost| sub.received.iter().filter(|&&s| s == lost).count() == 1)
}

/// Runs every leg's handshake on the fake clock until all are connected.
fn connect(legs: &mut [&mut Leg], now: &mut Instant) {
    let deadline = *now + Duration::from_secs(20);
    loop {
        let mut moved = true;
        while moved {
            moved = false;
            for l in legs.iter_mut() {
                moved |= l.pump(*now);
            }
        }
        if legs.iter().all(|l| l.sfu_up && l.client_up) {
            return;
        }
        assert!(*now < deadline, "handshake did not finish in 20 s of simulated time");
        let next = legs
            .iter_mut()
            .flat_map(|l| [l.sfu.poll_timeout(), l.client.poll_timeout()])
            .flatten()
            .min()
            .unwrap_or(*now + Duration::from_millis(10));
        *now = next.max(*now + Duration::from_micros(100));
        for l in legs.iter_mut() {
            l.sfu.handle_timeout(*now).expect("timeout");
            l.client.handle_timeout(*now).expect("timeout");
        }
    }
}

fn negotiate(offerer: &mut RTCPeerConnection, answerer: &mut RTCPeerConnection, now: Instant) {
    let offer = offerer.create_offer(None).expect("offer");
    offerer.set_local_description(now, offer.clone()).expect("local offer");
    answerer.set_remote_description(now, offer).expect("remote offer");
    let answer = answerer.create_answer(None).expect("answer");
    answerer.set_local_description(now, answer.clone()).expect("local answer");
    offerer.set_remote_description(now, answer).expect("remote answer");
}

/// The SFU's work for one datagram from the publisher: decrypt and read it, write the RTP to
/// every subscriber leg (SSRC, payload type and sequence number rewritten, extensions
/// stripped as Hearth does before fan-out), drain every outgoing datagram.
#[inline(never)]
fn forward_one(publisher: &mut Leg, subs: &mut [Leg], now: Instant, d: &[u8], out: &mut Vec<u8>, m: &mut Measured) {
    publisher.sfu.handle_read(tagged(now, publisher.sfu_addr, publisher.client_addr, d)).expect("sfu read");
    while let Some(TaggedRTCMessage { message, .. }) = publisher.sfu.poll_read() {
        let RTCMessage::RtpPacket(_track, mut packet) = message else { continue };
        packet.header.extension = false;
        packet.header.extensions.clear();
        for s in subs.iter_mut() {
            let mut p = packet.clone();
            p.header.ssrc = s.ssrc;
            p.header.payload_type = s.pt;
            p.header.sequence_number = p.header.sequence_number.wrapping_add(7);
            let sender = s.sender.expect("subscriber leg");
            s.sfu.rtp_sender(sender).expect("sender").write_rtp(now, p).expect("write_rtp");
            m.forwarded += 1;
            drain(&mut s.sfu, out, m);
        }
    }
    drain(&mut publisher.sfu, out, m);
    while publisher.sfu.poll_event().is_some() {}
}

fn drain(pc: &mut RTCPeerConnection, out: &mut Vec<u8>, m: &mut Measured) {
    while let Some(d) = pc.poll_write() {
        out.clear();
        out.extend_from_slice(&d.message);
        m.datagrams_out += 1;
        m.bytes_out += out.len() as u64;
    }
}

/// Timers every 10 ms of simulated time: reports, NACK and TWCC feedback, ICE keepalive.
#[inline(never)]
fn timers(publisher: &mut Leg, subs: &mut [Leg], now: Instant, out: &mut Vec<u8>, m: &mut Measured) {
    for pc in std::iter::once(&mut publisher.sfu).chain(subs.iter_mut().map(|s| &mut s.sfu)) {
        if pc.poll_timeout().is_some_and(|t| t <= now) {
            pc.handle_timeout(now).expect("timeout");
        }
        drain(pc, out, m);
        while pc.poll_event().is_some() {}
        while pc.poll_read().is_some() {}
    }
}
