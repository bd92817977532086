//! Real media through the real server: webrtc-crate peers over loopback.

use crate::common;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::signal::protocol::{MediaKind, ServerMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_receive_each_other_and_leave_cleanly() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let mut clients = Vec::new();
    for name in ["ana", "ben", "cleo"] {
        let token = common::token(&server, "circle", Role::Participant, name);
        clients.push(MediaClient::join(MediaOptions::light(&url, "circle", name).with_token(token)).await.expect("join"));
    }
    let ids: Vec<_> = clients.iter().map(|c| c.participant_id.clone()).collect();
    assert_eq!(clients[2].roster.len(), 3, "the third sees the first two and itself in the roster");

    // Everyone receives audio and video from both others, attributed to the right participant.
    let ok = common::eventually(Duration::from_secs(20), || {
        clients.iter().enumerate().all(|(i, c)| {
            ids.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(_, other)| c.packets_from(other, MediaKind::Audio) >= 20 && c.packets_from(other, MediaKind::Video) >= 10)
        })
    })
    .await;
    for (i, c) in clients.iter().enumerate() {
        eprintln!("client {i} received: {:?}", c.received().values().map(|t| (&t.participant, t.kind, t.packets)).collect::<Vec<_>>());
    }
    assert!(ok, "every peer receives audio and video from both others");
    for c in &clients {
        for t in c.received().values() {
            assert_ne!(t.participant, c.participant_id.as_str(), "nobody receives their own media back");
            assert!(ids.iter().any(|id| id.as_str() == t.participant), "track attributed to a participant in the room");
            assert_eq!(t.seq_regressions, 0, "sequence numbers increase on {:?}", t.kind);
        }
    }
    let health = common::health(&server).await;
    assert_eq!(health["participants"], 3);

    // One leaves: the others are told and its tracks stop arriving.
    let leaver = clients.remove(0);
    let leaver_id = leaver.participant_id.clone();
    leaver.leave().await;
    for c in clients.iter_mut() {
        let msg = c
            .wait_for("participantLeft", Duration::from_secs(5), |m| matches!(m, ServerMessage::ParticipantLeft { .. }))
            .await
            .expect("left event");
        assert_eq!(msg, ServerMessage::ParticipantLeft { participant_id: leaver_id.clone() });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<u64> = clients.iter().map(|c| c.packets_from(&leaver_id, MediaKind::Audio)).collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after: Vec<u64> = clients.iter().map(|c| c.packets_from(&leaver_id, MediaKind::Audio)).collect();
    assert_eq!(before, after, "no more RTP from a participant who left");
    // The two who stay still hear each other.
    let (a, b) = (clients[0].packets_from(&ids[2], MediaKind::Audio), clients[1].packets_from(&ids[1], MediaKind::Audio));
    let flowing = common::eventually(Duration::from_secs(10), || {
        clients[0].packets_from(&ids[2], MediaKind::Audio) > a && clients[1].packets_from(&ids[1], MediaKind::Audio) > b
    })
    .await;
    assert!(flowing, "the two who stay still hear each other");

    for c in clients {
        c.leave().await;
    }
    let empty = async {
        loop {
            let h = common::health(&server).await;
            if h["participants"] == 0 && h["rooms"] == 0 && h["peers"] == 0 {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), empty).await.expect("server returns to 0 participants, rooms and peers");
    server.shutdown().await;
}

/// A publisher that sends every video packet twice (the second copy after the next packet, as
/// a late retransmission arrives): the server forwards each sequence number once, so the
/// subscriber never sees a duplicate. The copies stop at the server's SRTP replay check (the
/// webrtc crate's window) or, older than that window, at the track's own sequence window
/// (`track::SeqWindow`, unit-tested); either way they never reach the fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_duplicates_are_forwarded_once() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let token = common::token(&server, "resend", Role::Participant, "pub");
    let mut opts = MediaOptions::light(&url, "resend", "pub").with_token(token);
    opts.publish_audio = false;
    opts.resend_video = true;
    let publisher = MediaClient::join(opts).await.expect("publisher joins");
    let token = common::token(&server, "resend", Role::Observer, "sub");
    let mut opts = MediaOptions::light(&url, "resend", "sub").with_token(token);
    opts.publish_audio = false;
    opts.publish_video = false;
    let subscriber = MediaClient::join(opts).await.expect("subscriber joins");

    let got =
        common::eventually(Duration::from_secs(20), || subscriber.packets_from(&publisher.participant_id, MediaKind::Video) >= 150).await;
    assert!(got, "video arrives: {:?}", subscriber.received());
    let video: Vec<_> = subscriber.received().into_values().filter(|t| t.kind == MediaKind::Video).collect();
    assert_eq!(video.len(), 1);
    assert_eq!(video[0].duplicates, 0, "each sequence number once: {:?}", video[0]);
    assert_eq!(video[0].seq_regressions, 0, "never a step back: {:?}", video[0]);
    let distinct = video[0].probe_max - video[0].probe_min + 1;
    let fanned_in = server.state().sfu.stats.rtp_packets_in.load(std::sync::atomic::Ordering::Relaxed);
    // The publisher sent about twice `distinct`; a few originals may be in flight at the reading.
    assert!(fanned_in <= distinct + 15, "only one copy of each packet reached the fan-out: {fanned_in} for {distinct} sequence numbers");

    publisher.close().await;
    subscriber.close().await;
    server.shutdown().await;
}

/// Congestion signals to publishers: the server tells a video publisher (REMB) what its
/// subscribers' connections can carry. With nobody limited it offers the ceiling; when one
/// subscriber's link turns weak, the offer drops to what that link carries (bounded below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_is_offered_less_when_a_subscribers_link_is_weak() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let token = common::token(&server, "remb", Role::Participant, "pub");
    let mut opts = MediaOptions::light(&url, "remb", "pub").with_token(token);
    opts.publish_audio = false;
    opts.video_payload = 1000; // 30 packets/s: 240 kbit/s
    let publisher = MediaClient::join(opts).await.expect("publisher joins");
    let mut subscribers = Vec::new();
    for name in ["healthy", "weak"] {
        let token = common::token(&server, "remb", Role::Observer, name);
        let mut opts = MediaOptions::light(&url, "remb", name).with_token(token);
        opts.publish_audio = false;
        opts.publish_video = false;
        subscribers.push(MediaClient::join(opts).await.expect("subscriber joins"));
    }
    let video = |c: &MediaClient| c.packets_from(&publisher.participant_id, MediaKind::Video);
    let flowing = common::eventually(Duration::from_secs(20), || subscribers.iter().all(|s| video(s) > 30)).await;
    assert!(flowing, "both subscribers receive the video");
    let offered = common::eventually(Duration::from_secs(10), || publisher.last_remb_bps().is_some_and(|b| b >= 2_000_000)).await;
    assert!(offered, "nobody is limited: the ceiling is offered ({:?})", publisher.last_remb_bps());

    subscribers[1].set_throttle(Some(60));
    let lowered = common::eventually(Duration::from_secs(20), || publisher.last_remb_bps().is_some_and(|b| b <= 300_000)).await;
    assert!(lowered, "the weak link lowers the offer: {:?}", publisher.last_remb_bps());
    let remb = publisher.last_remb_bps().unwrap_or(0);
    assert!(remb >= hearth::sfu::track::REMB_FLOOR_BPS as u64, "never below the floor: {remb}");
    let before = video(&subscribers[0]);
    assert!(common::eventually(Duration::from_secs(5), || video(&subscribers[0]) > before + 30).await, "the healthy one still receives");

    publisher.close().await;
    for s in subscribers {
        s.close().await;
    }
    server.shutdown().await;
}
