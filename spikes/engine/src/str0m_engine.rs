//! Engine B: `str0m` in RTP mode (raw RTP in and out, as an SFU uses it), aws-lc-rs crypto,
//! ICE-lite on the server side, Hearth's codecs (Opus, VP8, H.264) with str0m's own feedback
//! (NACK answered through RTX, TWCC, sender and receiver reports).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::{alloc, Measured, Run};

fn peer(server: bool, addr: SocketAddr, run: &Run, now: Instant) -> Rtc {
    let mut b =
        Rtc::builder().set_rtp_mode(true).set_ice_lite(server).clear_codecs().enable_opus(true, false).enable_vp8(true).enable_h264(true);
    if server && run.bwe {
        // High enough that the pacer never holds back the 8.8 Mbit/s this harness sends per leg.
        b = b.enable_bwe(Some(str0m::bwe::Bitrate::mbps(20)));
    }
    let mut rtc = b.build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    rtc
}

struct Leg {
    sfu: Rtc,
    client: Rtc,
    sfu_addr: SocketAddr,
    client_addr: SocketAddr,
    sfu_up: bool,
    client_up: bool,
    mid: Option<Mid>,
    ssrc: Option<Ssrc>,
    pt: Option<Pt>,
    /// Sequence numbers of the RTP packets the client read (for the NACK check).
    received: Vec<u16>,
    /// Keyframe requests the server and the client received (keyframe check).
    sfu_keyframes: usize,
    client_keyframes: usize,
}

/// Everything one connection wants to send until it asks for a timeout; returns that timeout.
/// Sequence numbers of RTP packets read go to `received`; keyframe requests are counted.
fn outputs(rtc: &mut Rtc, up: &mut bool, sent: &mut Vec<Vec<u8>>, received: &mut Vec<u16>, keyframes: &mut usize) -> Instant {
    loop {
        match rtc.poll_output().expect("poll_output") {
            Output::Timeout(t) => return t,
            Output::Transmit(t) => sent.push(t.contents.to_vec()),
            Output::Event(Event::Connected) => *up = true,
            Output::Event(Event::RtpPacket(p)) => received.push(p.header.sequence_number),
            Output::Event(Event::KeyframeRequest(_)) => *keyframes += 1,
            Output::Event(_) => {}
        }
    }
}

fn receive(rtc: &mut Rtc, now: Instant, from: SocketAddr, to: SocketAddr, d: &[u8]) {
    let input =
        Input::Receive(now, Receive { proto: Protocol::Udp, source: from, destination: to, contents: d.try_into().expect("datagram") });
    rtc.handle_input(input).expect("handle_input");
}

impl Leg {
    /// Moves datagrams both ways until neither side has more; returns the sides' next timeout.
    fn pump(&mut self, now: Instant) -> Instant {
        loop {
            let mut a = Vec::new();
            let mut b = Vec::new();
            let ta = outputs(&mut self.sfu, &mut self.sfu_up, &mut a, &mut Vec::new(), &mut self.sfu_keyframes);
            let tb = outputs(&mut self.client, &mut self.client_up, &mut b, &mut self.received, &mut self.client_keyframes);
            if a.is_empty() && b.is_empty() {
                return ta.min(tb);
            }
            for d in a {
                receive(&mut self.client, now, self.sfu_addr, self.client_addr, &d);
            }
            for d in b {
                receive(&mut self.sfu, now, self.client_addr, self.sfu_addr, &d);
            }
        }
    }
}

fn offer_answer(offerer: &mut Rtc, answerer: &mut Rtc, offer: SdpOffer, pending: SdpPendingOffer) {
    let answer: SdpAnswer = answerer.sdp_api().accept_offer(offer).expect("accept offer");
    offerer.sdp_api().accept_answer(pending, answer).expect("accept answer");
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Pt {
    rtc.codec_config().find(|p| p.spec().codec == codec).expect("codec").pt()
}

pub fn measure(run: Run) -> Measured {
    str0m::crypto::from_feature_flags().install_process_default();
    let mut now = Instant::now();
    let sfu_addr: SocketAddr = "10.0.0.1:3478".parse().expect("addr");
    let client_addr = |k: usize| -> SocketAddr { format!("10.0.1.{}:5000", k + 1).parse().expect("addr") };
    let (kind, codec) = if run.audio { (MediaKind::Audio, Codec::Opus) } else { (MediaKind::Video, Codec::Vp8) };
    let leg = |k: usize, now: Instant| Leg {
        sfu: peer(true, sfu_addr, &run, now),
        client: peer(false, client_addr(k), &run, now),
        sfu_addr,
        client_addr: client_addr(k),
        sfu_up: false,
        client_up: false,
        mid: None,
        ssrc: None,
        pt: None,
        received: Vec::new(),
        sfu_keyframes: 0,
        client_keyframes: 0,
    };

    // Publisher leg: the client offers a sendonly m-line, the server answers.
    let mut publisher = leg(0, now);
    let mut api = publisher.client.sdp_api();
    let mid = api.add_media(kind, Direction::SendOnly, Some("pub".into()), Some("pub-track".into()), None);
    let (offer, pending) = api.apply().expect("offer");
    offer_answer(&mut publisher.client, &mut publisher.sfu, offer, pending);
    publisher.mid = Some(mid);

    // Subscriber legs: the server adds a sendonly m-line and offers, the client answers.
    let mut subs: Vec<Leg> = (0..run.subscribers)
        .map(|k| {
            let mut l = leg(k + 1, now);
            let mut api = l.sfu.sdp_api();
            let mid = api.add_media(kind, Direction::SendOnly, Some(format!("s{k}")), Some(format!("t{k}")), None);
            let (offer, pending) = api.apply().expect("offer");
            offer_answer(&mut l.sfu, &mut l.client, offer, pending);
            l.mid = Some(mid);
            l
        })
        .collect();

    // Handshakes on the fake clock.
    let deadline = now + Duration::from_secs(20);
    loop {
        let mut next = now + Duration::from_secs(1);
        for l in std::iter::once(&mut publisher).chain(subs.iter_mut()) {
            next = next.min(l.pump(now));
        }
        if std::iter::once(&publisher).chain(subs.iter()).all(|l| l.sfu_up && l.client_up) {
            break;
        }
        assert!(now < deadline, "handshake did not finish in 20 s of simulated time");
        now = next.max(now + Duration::from_micros(100));
        for l in std::iter::once(&mut publisher).chain(subs.iter_mut()) {
            l.sfu.handle_input(Input::Timeout(now)).expect("timeout");
            l.client.handle_input(Input::Timeout(now)).expect("timeout");
        }
    }

    for s in subs.iter_mut() {
        let mid = s.mid.expect("mid");
        let mut api = s.sfu.direct_api();
        s.ssrc = Some(api.stream_tx_by_mid(mid, None).expect("subscriber stream").ssrc());
        s.pt = Some(pt_of(&s.sfu, codec));
    }

    // The publisher's datagrams, made (and encrypted) by its client before any timing.
    let total = run.warmup + run.packets + crate::CHECK_PACKETS;
    let payload: std::sync::Arc<[u8]> = vec![0x5a_u8; run.payload].into();
    let pub_pt = pt_of(&publisher.client, codec);
    let pub_ssrc = publisher.client.direct_api().stream_tx_by_mid(mid, None).expect("publisher stream").ssrc();
    let step = if run.audio { 960 } else { 3000 };
    let mut datagrams: Vec<(bool, Vec<u8>)> = Vec::with_capacity(total + total / 8);
    let base = now;
    let mut rtp_count = 0;
    for i in 0..total {
        let t = base + run.interval * i as u32;
        let mut api = publisher.client.direct_api();
        let tx = api.stream_tx(&pub_ssrc).expect("stream");
        let w = RtpWrite::new(pub_pt, (1000 + i as u64).into(), 90_000 + (i as u32 / 8) * step, t, payload.clone())
            .marker(!run.audio && i % 8 == 7)
            .nackable(!run.audio);
        tx.write_rtp(w);
        publisher.client.handle_input(Input::Timeout(t)).expect("timeout");
        let mut sent = Vec::new();
        let mut up = true;
        outputs(&mut publisher.client, &mut up, &mut sent, &mut Vec::new(), &mut 0);
        for d in sent {
            let is_rtp = d.len() > 1 && !(192..=223).contains(&d[1]) && d[0] >> 6 == 2;
            rtp_count += usize::from(is_rtp);
            datagrams.push((is_rtp, d));
        }
    }
    assert_eq!(rtp_count, total, "one RTP datagram per written packet");

    let mut out = Vec::with_capacity(2048);
    let mut fwd = Measured::default();
    let mut next_timer = base;
    let timer_step = Duration::from_millis(10);
    let mut idx = 0;
    let mut packet_no = 0usize;
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
                forward_one(&mut publisher, &mut subs, now, d, &mut out, &mut fwd, &run);
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
    fwd.nack_repaired = check_nack(&mut publisher, &mut subs[0], &datagrams[idx..], &mut now, &run);
    fwd.keyframe_relayed = check_keyframe(&mut publisher, &mut subs[0], pub_ssrc, &mut now);
    fwd
}

/// Feature check: a PLI from subscriber 0's client reaches the server, and a PLI the server
/// sends to the publisher reaches the publisher's client (what an SFU relays on a new
/// subscription or a lost keyframe).
fn check_keyframe(publisher: &mut Leg, sub: &mut Leg, pub_ssrc: Ssrc, now: &mut Instant) -> bool {
    let sub_ssrc = sub.ssrc.expect("ssrc");
    let mut api = sub.client.direct_api();
    let Some(rx) = api.stream_rx(&sub_ssrc) else { return false };
    rx.request_keyframe(KeyframeRequestKind::Pli);
    let mut api = publisher.sfu.direct_api();
    let Some(rx) = api.stream_rx(&pub_ssrc) else { return false };
    rx.request_keyframe(KeyframeRequestKind::Pli);
    for _ in 0..10 {
        *now += Duration::from_millis(10);
        for l in [&mut *sub, &mut *publisher] {
            l.sfu.handle_input(Input::Timeout(*now)).expect("timeout");
            l.client.handle_input(Input::Timeout(*now)).expect("timeout");
            l.pump(*now);
        }
    }
    sub.sfu_keyframes > 0 && publisher.client_keyframes > 0
}

/// Feature check, after the timed region: the server's datagram carrying the 20th RTP packet
/// to subscriber 0 is dropped; its client must NACK it and the server must resend it (RTX).
fn check_nack(publisher: &mut Leg, sub: &mut Leg, rest: &[(bool, Vec<u8>)], clock: &mut Instant, run: &Run) -> bool {
    let mut now = *clock;
    let mut rtp_seen = 0;
    let mut lost = None;
    let ssrc = sub.ssrc.expect("ssrc");
    let mut sent = Vec::new();
    for (is_rtp, d) in rest {
        if *is_rtp {
            now += run.interval;
        }
        receive(&mut publisher.sfu, now, publisher.client_addr, publisher.sfu_addr, d);
        loop {
            match publisher.sfu.poll_output().expect("poll_output") {
                Output::Timeout(_) => break,
                Output::Event(Event::RtpPacket(p)) => {
                    let mut api = sub.sfu.direct_api();
                    let tx = api.stream_tx(&ssrc).expect("stream");
                    let seq: u64 = *p.seq_no + 7;
                    let w = RtpWrite::new(sub.pt.expect("pt"), seq.into(), p.header.timestamp, p.timestamp, p.payload.clone())
                        .marker(p.header.marker)
                        .nackable(!run.audio);
                    tx.write_rtp(w);
                }
                _ => {}
            }
        }
        sub.sfu.handle_input(Input::Timeout(now)).expect("timeout");
        sent.clear();
        outputs(&mut sub.sfu, &mut sub.sfu_up, &mut sent, &mut Vec::new(), &mut sub.sfu_keyframes);
        for b in &sent {
            if b.len() > 12 && !(192..=223).contains(&b[1]) && b[0] >> 6 == 2 {
                rtp_seen += 1;
                if rtp_seen == 20 {
                    lost = Some(u16::from_be_bytes([b[2], b[3]]));
                    continue;
                }
            }
            receive(&mut sub.client, now, sub.sfu_addr, sub.client_addr, b);
        }
        sub.client.handle_input(Input::Timeout(now)).expect("timeout");
        sub.pump(now);
    }
    for _ in 0..100 {
        now += Duration::from_millis(10);
        sub.sfu.handle_input(Input::Timeout(now)).expect("timeout");
        sub.client.handle_input(Input::Timeout(now)).expect("timeout");
        sub.pump(now);
    }
    *clock = now;
    lost.is_some_and(|lost| sub.received.iter().filter(|&&s| s == lost).count() == 1)
}

/// The SFU's work for one datagram from the publisher: decrypt it, take the RTP packet event,
/// write it to every subscriber's send stream (sequence number rewritten; the payload is a
/// shared `Arc`), let each subscriber connection send, drain every outgoing datagram.
#[inline(never)]
fn forward_one(publisher: &mut Leg, subs: &mut [Leg], now: Instant, d: &[u8], out: &mut Vec<u8>, m: &mut Measured, run: &Run) {
    receive(&mut publisher.sfu, now, publisher.client_addr, publisher.sfu_addr, d);
    loop {
        match publisher.sfu.poll_output().expect("poll_output") {
            Output::Timeout(_) => break,
            Output::Transmit(t) => {
                out.clear();
                out.extend_from_slice(&t.contents);
                m.datagrams_out += 1;
                m.bytes_out += out.len() as u64;
            }
            Output::Event(Event::RtpPacket(p)) => {
                for s in subs.iter_mut() {
                    let ssrc = s.ssrc.expect("ssrc");
                    let mut api = s.sfu.direct_api();
                    let tx = api.stream_tx(&ssrc).expect("stream");
                    let seq: u64 = *p.seq_no + 7;
                    let w = RtpWrite::new(s.pt.expect("pt"), seq.into(), p.header.timestamp, p.timestamp, p.payload.clone())
                        .marker(p.header.marker)
                        .nackable(!run.audio);
                    tx.write_rtp(w);
                    m.forwarded += 1;
                    if !run.no_tick {
                        s.sfu.handle_input(Input::Timeout(now)).expect("timeout");
                    }
                    drain(&mut s.sfu, out, m);
                }
            }
            Output::Event(_) => {}
        }
    }
}

fn drain(rtc: &mut Rtc, out: &mut Vec<u8>, m: &mut Measured) {
    loop {
        match rtc.poll_output().expect("poll_output") {
            Output::Timeout(_) => return,
            Output::Transmit(t) => {
                out.clear();
                out.extend_from_slice(&t.contents);
                m.datagrams_out += 1;
                m.bytes_out += out.len() as u64;
            }
            Output::Event(_) => {}
        }
    }
}

/// Timers every 10 ms of simulated time: reports, NACK and TWCC feedback, pacing.
#[inline(never)]
fn timers(publisher: &mut Leg, subs: &mut [Leg], now: Instant, out: &mut Vec<u8>, m: &mut Measured) {
    for rtc in std::iter::once(&mut publisher.sfu).chain(subs.iter_mut().map(|s| &mut s.sfu)) {
        rtc.handle_input(Input::Timeout(now)).expect("timeout");
        drain(rtc, out, m);
    }
}
