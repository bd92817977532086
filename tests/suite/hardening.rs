//! Security hardening through the real server, with webrtc client peers: removal cuts media
//! whatever the removed client does; a token never takes over a seat of another role; nobody
//! waiting has a peer connection; observers are never received; tracks and ICE candidates per
//! participant are bounded.

use crate::common;

use common::{join_media, pid};

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, ErrorCode, IceCandidate, MediaKind, ServerMessage, PROTOCOL_VERSION};

const WAIT: Duration = Duration::from_secs(10);

/// Waits until `f()` stops growing: the same value over a 1 s window, within `wait`.
async fn stops_growing(wait: Duration, f: impl Fn() -> u64) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = f();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = f();
        if now == last {
            return true;
        }
        last = now;
    }
    false
}

async fn health_is(server: &RunningServer, participants: u64, peers: u64) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let h = common::health(server).await;
        if h["participants"] == participants && h["peers"] == peers {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!("health stayed {h}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A removed participant who stops reading its socket and floods it with bad frames (whose
/// error replies fill every buffer between the server and it) still loses the group's media
/// at once: the room closes its peer itself, not through the connection task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_cuts_media_even_from_a_client_that_stalls_its_socket() {
    let _machine = common::machine(common::Load::Media).await;
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.limits.max_message_bytes = 256 * 1024;
    let server = common::start_with(config).await;
    let t = join_media(&server, "stall", Role::Therapist, "t").await;
    let p = join_media(&server, "stall", Role::Participant, "p").await;
    let q = join_media(&server, "stall", Role::Participant, "q").await;
    for (c, other) in [(&p, "t"), (&p, "q"), (&q, "t"), (&t, "p")] {
        assert!(
            common::eventually(WAIT, || c.packets_from(&pid(other), MediaKind::Audio) > 20).await,
            "{} hears {other}",
            c.participant_id
        );
    }
    p.stop_reading();
    // Each frame is a join with a 200 KB string where a number belongs. Enough of them, over
    // a few seconds (the message rate limit lets 200 through at once, then 50 a second), to
    // fill the outbox and the socket buffers whatever the server puts in its error replies.
    let bad = format!(r#"{{"type":"join","protocolVersion":"{}","roomId":"a","token":"b"}}"#, "x".repeat(200_000));
    for _ in 0..500 {
        p.send_text(bad.clone());
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    t.send(ClientMessage::Remove { participant_id: pid("p") });
    assert!(
        stops_growing(Duration::from_secs(4), || p.packets_from(&pid("t"), MediaKind::Audio) + p.packets_from(&pid("q"), MediaKind::Audio))
            .await,
        "the removed participant keeps receiving the group's audio"
    );
    assert!(health_is(&server, 2, 2).await, "the removed participant's place and peer are gone");
    // The others still hear each other.
    let before = q.packets_from(&pid("t"), MediaKind::Audio);
    assert!(common::eventually(WAIT, || q.packets_from(&pid("t"), MediaKind::Audio) > before + 20).await);
    server.shutdown().await;
}

/// A token whose participant id sits in the room under another role is refused `seat_taken`
/// and the person in the seat notices nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_never_takes_over_a_seat_of_another_role() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let mut t = join_media(&server, "seats", Role::Therapist, "t").await;
    let p = join_media(&server, "seats", Role::Participant, "p").await;
    assert!(common::eventually(WAIT, || t.packets_from(&pid("p"), MediaKind::Audio) > 10).await);
    for (id, role) in [("p", Role::Therapist), ("p", Role::Observer), ("t", Role::Participant)] {
        let mut c = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
        let token = common::token_for(&server, "seats", role, "Intruder", id);
        c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new("seats").unwrap(), token }).await.unwrap();
        let m = recv!(c, ServerMessage::Joined { .. } | ServerMessage::Error { .. });
        assert!(matches!(m, ServerMessage::Error { code: ErrorCode::SeatTaken, .. }), "{id} as {role:?}: {m:?}");
    }
    // Nothing changed for the people in the seats: no session ended, media flows, roster same.
    let before = t.packets_from(&pid("p"), MediaKind::Audio);
    assert!(common::eventually(WAIT, || t.packets_from(&pid("p"), MediaKind::Audio) > before + 20).await, "p is still heard");
    assert!(p.is_connected(), "p's connection was not ended");
    t.send(ClientMessage::Ping { nonce: Some(7) });
    let m = t.wait_for("pong", WAIT, |m| matches!(m, ServerMessage::Pong { .. } | ServerMessage::SessionEnded { .. })).await.unwrap();
    assert!(matches!(m, ServerMessage::Pong { .. }), "the therapist's session goes on: {m:?}");
    assert!(health_is(&server, 2, 2).await);
    server.shutdown().await;
}

/// Someone in the waiting room has no peer connection (no UDP port, no DTLS) until admitted;
/// their offer waits and is answered on admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_waiting_has_a_peer_connection() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_server().await;
    let mut t = join_media(&server, "lobby", Role::Therapist, "t").await;
    let p = join_media(&server, "lobby", Role::Participant, "p").await;
    assert!(!p.admitted);
    t.wait_for("p waiting", WAIT, |m| matches!(m, ServerMessage::WaitingList { waiting } if waiting.len() == 1)).await.unwrap();
    // The client offered at once; the server holds it and creates nothing.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(health_is(&server, 2, 1).await, "only the therapist has a peer while p waits");
    assert_eq!(t.packets_from(&pid("p"), MediaKind::Audio), 0);
    t.send(ClientMessage::Admit { participant_id: pid("p") });
    assert!(common::eventually(WAIT, || p.packets_from(&pid("t"), MediaKind::Audio) > 10).await, "p hears t once admitted");
    assert!(common::eventually(WAIT, || t.packets_from(&pid("p"), MediaKind::Video) > 10).await, "t sees p once admitted");
    assert!(health_is(&server, 2, 2).await);
    server.shutdown().await;
}

/// An observer who tries to publish is told so, and nothing it sends reaches anyone; it still
/// receives the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_is_never_received() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let t = join_media(&server, "watch", Role::Therapist, "t").await;
    let q = join_media(&server, "watch", Role::Participant, "q").await;
    // This observer's client offers a microphone and a camera anyway.
    let mut o = join_media(&server, "watch", Role::Observer, "o").await;
    let m = o.wait_for("refusal", WAIT, |m| matches!(m, ServerMessage::Error { .. })).await.unwrap();
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::Forbidden, .. }), "{m:?}");
    assert!(common::eventually(WAIT, || o.packets_from(&pid("t"), MediaKind::Video) > 10).await, "the observer receives");
    let before = q.packets_from(&pid("t"), MediaKind::Audio);
    assert!(common::eventually(WAIT, || q.packets_from(&pid("t"), MediaKind::Audio) > before + 50).await);
    for c in [&t, &q] {
        assert_eq!(
            c.packets_from(&pid("o"), MediaKind::Audio) + c.packets_from(&pid("o"), MediaKind::Video),
            0,
            "nothing of the observer's"
        );
    }
    let metrics = common::http(server.addr(), "GET", "/metrics", &[], "").await.1;
    let published: u64 =
        metrics.lines().find_map(|l| l.strip_prefix("hearth_published_tracks ")).and_then(|v| v.trim().parse().ok()).unwrap_or(99);
    assert_eq!(published, 4, "only the therapist's and the participant's tracks are read: {metrics}");
    server.shutdown().await;
}

/// A track beyond `limits.max_tracks_per_participant` is refused and never forwarded; more
/// ICE candidates than the server takes get one clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_and_candidates_per_participant_are_bounded() {
    let _machine = common::machine(common::Load::Media).await;
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.limits.max_tracks_per_participant = 2;
    let server = common::start_with(config).await;
    let mut t = join_media(&server, "bounded", Role::Therapist, "t").await;
    let p = join_media(&server, "bounded", Role::Participant, "p").await;
    let q = join_media(&server, "bounded", Role::Participant, "q").await;
    assert!(common::eventually(WAIT, || q.packets_from(&pid("t"), MediaKind::Video) > 10).await);
    // A microphone and a camera are the two allowed; a screen share is one too many.
    t.start_screen_share().await.expect("the client tries");
    let m = t
        .wait_for("refusal", WAIT, |m| matches!(m, ServerMessage::Error { .. } | ServerMessage::ScreenShareForwarded { .. }))
        .await
        .unwrap();
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::TooManyTracks, .. }), "{m:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for c in [&p, &q] {
        let screens: u64 = c.received().values().filter(|r| r.participant == "t~screen").map(|r| r.packets).sum();
        assert_eq!(screens, 0, "{} never receives the extra track", c.participant_id);
    }

    for i in 0..40 {
        let candidate = IceCandidate {
            candidate: format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 9 + i),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        };
        t.send(ClientMessage::IceCandidate { candidate });
    }
    let m = t.wait_for("candidate limit", WAIT, |m| matches!(m, ServerMessage::Error { code: ErrorCode::InvalidField, .. })).await.unwrap();
    let ServerMessage::Error { message, .. } = m else { unreachable!() };
    assert!(message.contains("ICE candidates"), "{message}");
    // Still in the call.
    let before = t.packets_from(&pid("q"), MediaKind::Audio);
    assert!(common::eventually(WAIT, || t.packets_from(&pid("q"), MediaKind::Audio) > before + 20).await);
    server.shutdown().await;
}
