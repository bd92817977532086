//! Decoding client messages and encoding server messages: every signaling frame passes through
//! `decode_client` or `encode_server` once (a room event once per recipient).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hearth::auth::{Role, TokenIssuer};
use hearth::room::{ParticipantId, RoomId};
use hearth::signal::protocol::{
    decode_client, encode_server, ClientMessage, IceCandidate, MediaKind, ParticipantInfo, RoomState, Sdp, ServerMessage, PROTOCOL_VERSION,
};

const LIMIT: usize = 65_536;

/// A browser-sized offer: audio and video, the usual codec list, ~4 KB.
fn browser_sdp() -> String {
    let mut s = String::from(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
         a=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:Gz2s\r\na=ice-pwd:QxWfWc1mNQnJv8sTPdPTmbZQ\r\na=ice-options:trickle\r\n\
         a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
         a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
         a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
         a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:stream audio-track\r\na=rtcp-mux\r\n\
         a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
         a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n\
         a=ssrc:1001 cname:4TOk42mSjXCkVIa6\r\na=ssrc:1001 msid:stream audio-track\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105 106 107 108 109 127 125 39 40 45 46\r\n\
         c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Gz2s\r\na=ice-pwd:QxWfWc1mNQnJv8sTPdPTmbZQ\r\n\
         a=ice-options:trickle\r\na=setup:actpass\r\na=mid:1\r\na=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n\
         a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:13 urn:3gpp:video-orientation\r\n\
         a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
         a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\na=sendrecv\r\na=msid:stream video-track\r\n\
         a=rtcp-mux\r\na=rtcp-rsize\r\n",
    );
    for (pt, codec) in [(96, "VP8"), (98, "VP9"), (100, "H264"), (102, "H264"), (104, "AV1"), (106, "H264"), (108, "H264")] {
        s += &format!(
            "a=rtpmap:{pt} {codec}/90000\r\na=rtcp-fb:{pt} goog-remb\r\na=rtcp-fb:{pt} transport-cc\r\na=rtcp-fb:{pt} ccm fir\r\n\
             a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\na=rtpmap:{} rtx/90000\r\na=fmtp:{} apt={pt}\r\n",
            pt + 1,
            pt + 1
        );
    }
    s += "a=ssrc-group:FID 2001 2002\r\na=ssrc:2001 cname:4TOk42mSjXCkVIa6\r\na=ssrc:2001 msid:stream video-track\r\n";
    s
}

fn candidate() -> IceCandidate {
    IceCandidate {
        candidate: "candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host generation 0 ufrag Gz2s network-id 1".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: Some("Gz2s".into()),
    }
}

fn client_frames() -> Vec<(&'static str, String)> {
    let room_id = RoomId::new("group-a").expect("valid");
    let (token, _) = TokenIssuer::new(hearth::config::DEV_TOKEN_SECRET)
        .mint(&room_id, Role::Participant, "Sam", None, Duration::from_secs(3600))
        .expect("mint");
    let msgs = [
        ("join", ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id, token }),
        ("iceCandidate", ClientMessage::IceCandidate { candidate: candidate() }),
        ("offer", ClientMessage::Offer(Sdp { sdp: browser_sdp() })),
        ("ping", ClientMessage::Ping { nonce: Some(7) }),
    ];
    let mut frames: Vec<_> = msgs.into_iter().map(|(n, m)| (n, serde_json::to_string(&m).expect("encodes"))).collect();
    // The error path: a known type with a bad field (decoded twice to classify it).
    frames.push(("invalid", r#"{"type":"join","protocolVersion":"one","roomId":"a","token":"b"}"#.into()));
    frames
}

/// A roster entry as the server sends it, built from its wire form so that fields added later
/// with defaults do not break the benchmark.
fn participant(i: usize) -> ParticipantInfo {
    let value = serde_json::json!({
        "id": ParticipantId::random(),
        "name": format!("Participant {i}"),
        "role": if i == 0 { "therapist" } else { "participant" },
        "audioMuted": false,
        "videoMuted": i.is_multiple_of(3),
        "audioHardMuted": false,
        "videoHardMuted": false,
        "handRaised": i == 4,
    });
    serde_json::from_value(value).expect("roster entry matches the protocol")
}

fn server_messages() -> Vec<(&'static str, ServerMessage)> {
    let roster: Vec<ParticipantInfo> = (0..10).map(participant).collect();
    let pid = ParticipantId::random();
    vec![
        (
            "joined10",
            serde_json::from_value(serde_json::json!({
                "type": "joined",
                "protocolVersion": PROTOCOL_VERSION,
                "roomId": "group-a",
                "participantId": pid,
                "name": "Sam",
                "role": "participant",
                "admitted": true,
                "participants": roster,
                "room": RoomState::default(),
            }))
            .expect("joined matches the protocol"),
        ),
        ("participantJoined", ServerMessage::ParticipantJoined { participant: roster[0].clone() }),
        (
            "trackPublished",
            ServerMessage::TrackPublished {
                participant_id: pid.clone(),
                stream_id: pid.to_string(),
                track_id: format!("{pid}/video/1"),
                kind: MediaKind::Video,
                source: hearth::signal::protocol::TrackSource::Camera,
            },
        ),
        ("iceCandidate", ServerMessage::IceCandidate { candidate: candidate() }),
        ("offer", ServerMessage::Offer(Sdp { sdp: browser_sdp() })),
    ]
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_client");
    for (name, frame) in client_frames() {
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| black_box(decode_client(black_box(frame), LIMIT)))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_server");
    for (name, msg) in server_messages() {
        group.throughput(Throughput::Bytes(encode_server(&msg).len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &msg, |b, msg| b.iter(|| black_box(encode_server(black_box(msg)))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = decode, encode
}
criterion_main!(benches);
