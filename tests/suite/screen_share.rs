//! Screen sharing through the real server with webrtc client peers: the therapist's share
//! reaches everyone as a separate `screen` stream beside their camera; a participant may share
//! only once a therapist allows it (a refused share is never forwarded), a revoked permission
//! stops the share for everyone, and stopping removes it.

use crate::common;

use common::pid;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::MediaClient;
use hearth::signal::protocol::{ClientMessage, ErrorCode, MediaKind, ServerMessage, TrackSource};

const WAIT: Duration = Duration::from_secs(10);

/// Video packets `c` received on `who`'s screen stream.
fn screen_packets(c: &MediaClient, who: &str) -> u64 {
    let stream = format!("{who}~screen");
    c.received().values().filter(|t| t.participant == stream && t.kind == MediaKind::Video).map(|t| t.packets).sum()
}

async fn grows(f: impl Fn() -> u64, wait: Duration) -> bool {
    let before = f();
    common::eventually(wait, || f() > before + 5).await
}

async fn stays(f: impl Fn() -> u64) -> bool {
    // Let in-flight packets land, then nothing more may arrive for a while.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = f();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    f() == before
}

/// The sharer is told the server forwards the share.
async fn forwarded(c: &mut MediaClient) {
    c.wait_for("screenShareForwarded", WAIT, |m| matches!(m, ServerMessage::ScreenShareForwarded { .. }))
        .await
        .unwrap_or_else(|e| panic!("{} was never told the share is forwarded: {e}", c.participant_id));
}

async fn updated(c: &mut MediaClient, who: &str, pred: impl Fn(&hearth::signal::protocol::ParticipantInfo) -> bool) {
    c.wait_for(
        "participantUpdated",
        WAIT,
        |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == pid(who) && pred(participant)),
    )
    .await
    .unwrap_or_else(|e| panic!("{} never saw {who} updated: {e}", c.participant_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_sharing_is_forwarded_allowed_revoked_and_stopped() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let join = |id: &'static str, role| common::join_media(&server, "screens", role, id);
    let mut t = join("t", Role::Therapist).await;
    let mut p = join("p", Role::Participant).await;
    let mut q = join("q", Role::Participant).await;
    for c in [&t, &p, &q] {
        for other in ["t", "p", "q"].iter().filter(|o| **o != c.participant_id.as_str()) {
            assert!(common::eventually(WAIT, || c.packets_from(&pid(other), MediaKind::Video) > 10).await, "camera media flows");
        }
    }

    // The therapist shares: a separate stream, announced as a screen, reaching everyone. The
    // client's msid does not carry the announced track id (as Chromium's, when its `addTrack`
    // reuses a transceiver the server created for someone else's video); the stream id does.
    t.start_screen_share().await.expect("share");
    forwarded(&mut t).await;
    for c in [&mut p, &mut q] {
        // The roster update and the track announcement travel separately; either may be first.
        let (mut announced, mut marked) = (None, false);
        while announced.is_none() || !marked {
            match c
                .wait_for("share", WAIT, |m| matches!(m, ServerMessage::TrackPublished { .. } | ServerMessage::ParticipantUpdated { .. }))
                .await
            {
                Ok(ServerMessage::TrackPublished { participant_id, stream_id, kind, source: TrackSource::Screen, .. }) => {
                    announced = Some((participant_id, stream_id, kind));
                }
                Ok(ServerMessage::ParticipantUpdated { participant }) if participant.id == pid("t") && participant.screen_sharing => {
                    marked = true
                }
                Ok(_) => {}
                Err(e) => panic!("{}: the share was not announced: {e}", c.participant_id),
            }
        }
        assert_eq!(announced, Some((pid("t"), "t~screen".to_string(), MediaKind::Video)));
    }
    assert!(grows(|| screen_packets(&p, "t"), WAIT).await && grows(|| screen_packets(&q, "t"), WAIT).await);
    assert!(grows(|| p.packets_from(&pid("t"), MediaKind::Video), WAIT).await, "the camera keeps flowing beside the share");

    // A participant may not share until allowed: refused, and the track is not forwarded.
    p.start_screen_share().await.expect("the client tries");
    let m = p.wait_for("refusal", WAIT, |m| matches!(m, ServerMessage::Error { .. })).await.unwrap();
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::Forbidden, .. }), "{m:?}");
    assert!(stays(|| screen_packets(&q, "p")).await && screen_packets(&q, "p") == 0, "a refused share never reaches anyone");
    // Only a therapist can allow.
    q.send(ClientMessage::AllowScreenShare { participant_id: pid("q"), allowed: true });
    let m = q.wait_for("refusal", WAIT, |m| matches!(m, ServerMessage::Error { .. })).await.unwrap();
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::Forbidden, .. }), "{m:?}");
    p.stop_screen_share().await.expect("gives up");

    // Allowed: the participant's share reaches the others.
    t.send(ClientMessage::AllowScreenShare { participant_id: pid("p"), allowed: true });
    updated(&mut p, "p", |i| i.can_share_screen).await;
    p.start_screen_share().await.expect("share");
    forwarded(&mut p).await;
    assert!(grows(|| screen_packets(&q, "p"), WAIT).await, "an allowed share is forwarded");

    // The permission outlives the connection: the participant leaves, joins again and may
    // share at once (a share itself ends with its connection).
    p.leave().await;
    q.wait_for("p to leave", WAIT, |m| matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == pid("p")))
        .await
        .expect("q sees p leave");
    let mut p = join("p", Role::Participant).await;
    let me = p.roster.iter().find(|i| i.id == pid("p")).cloned();
    assert!(me.as_ref().is_some_and(|i| i.can_share_screen && !i.screen_sharing), "the roster on rejoining: {me:?}");
    let before = screen_packets(&q, "p");
    p.start_screen_share().await.expect("share again");
    let shared = grows(|| screen_packets(&q, "p").saturating_sub(before), WAIT).await;
    let seen: Vec<String> = q.received().values().map(|t| format!("{}:{:?}:{}", t.participant, t.kind, t.packets)).collect();
    assert!(shared, "shared again without asking; q receives {seen:?}");

    // Revoked: it stops for everyone at once, and the participant is told.
    t.send(ClientMessage::AllowScreenShare { participant_id: pid("p"), allowed: false });
    updated(&mut p, "p", |i| !i.can_share_screen && !i.screen_sharing).await;
    assert!(stays(|| screen_packets(&q, "p")).await, "a revoked share stops");

    // The therapist stops: gone for everyone; cameras go on.
    t.stop_screen_share().await.expect("stop");
    updated(&mut q, "t", |i| !i.screen_sharing).await;
    assert!(stays(|| screen_packets(&q, "t")).await, "a stopped share stops");
    assert!(grows(|| q.packets_from(&pid("t"), MediaKind::Video), WAIT).await);
    for c in [t, p, q] {
        c.close().await;
    }
    server.shutdown().await;
}

/// A share started before anyone else is there reaches each person who joins; a share started
/// inside a breakout reaches that breakout only, and the main room's share stops reaching
/// those who moved out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_reach_later_joiners_and_follow_breakouts() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let join = |id: &'static str, role| common::join_media(&server, "screens-later", role, id);
    let mut t = join("t", Role::Therapist).await;
    t.start_screen_share().await.expect("share alone");
    forwarded(&mut t).await;
    let p = join("p", Role::Participant).await;
    let q = join("q", Role::Participant).await;
    let r = join("r", Role::Participant).await;
    let (mut p, mut q, r) = (p, q, r);
    for c in [&p, &q, &r] {
        assert!(grows(|| screen_packets(c, "t"), WAIT).await, "{} receives the share started before they came", c.participant_id);
    }

    // p and q go to a breakout; t and r stay in the main room.
    t.send(ClientMessage::CreateBreakout { name: "Garden".into() });
    let plan = t
        .wait_for("plan", WAIT, |m| matches!(m, ServerMessage::BreakoutsUpdated { breakouts } if !breakouts.rooms.is_empty()))
        .await
        .expect("breakout created");
    let ServerMessage::BreakoutsUpdated { breakouts } = plan else { unreachable!() };
    let garden = breakouts.rooms[0].id.clone();
    for who in ["p", "q"] {
        t.send(ClientMessage::AssignBreakout { participant_id: pid(who), breakout_id: Some(garden.clone()) });
    }
    t.send(ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false });
    for c in [&mut p, &mut q] {
        c.wait_for("spaceChanged", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { .. })).await.expect("moved");
    }
    assert!(stays(|| screen_packets(&p, "t")).await, "the main room's share stops reaching the breakout");
    assert!(grows(|| screen_packets(&r, "t"), WAIT).await, "the main room keeps the share");

    // Inside the breakout p shares (once allowed): q receives it, the main room does not.
    t.send(ClientMessage::AllowScreenShare { participant_id: pid("p"), allowed: true });
    updated(&mut p, "p", |i| i.can_share_screen).await;
    p.start_screen_share().await.expect("share in the breakout");
    forwarded(&mut p).await;
    assert!(grows(|| screen_packets(&q, "p"), WAIT).await, "the breakout receives its member's share");
    assert!(stays(|| screen_packets(&r, "p")).await && screen_packets(&r, "p") == 0, "the main room never sees the breakout's share");
    assert_eq!(screen_packets(&t, "p"), 0, "the therapist in the main room does not either");
    for c in [t, p, q, r] {
        c.close().await;
    }
    server.shutdown().await;
}

/// An announced share whose track never comes is reported to the sharer; an over-long stream
/// id is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_that_never_arrives_is_reported() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let join = |id: &'static str, role| common::join_media(&server, "screens-missing", role, id);
    let mut t = join("t", Role::Therapist).await;
    let p = join("p", Role::Participant).await;
    let _q = join("q", Role::Participant).await;
    t.send(ClientMessage::ScreenShare { client_track_id: "x".into(), client_stream_id: Some("s".repeat(500)), active: true });
    let m = t.wait_for("refusal", WAIT, |m| matches!(m, ServerMessage::Error { .. })).await.unwrap();
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::InvalidField, .. }), "{m:?}");

    t.send(ClientMessage::ScreenShare { client_track_id: "never-added".into(), client_stream_id: Some("nope".into()), active: true });
    let m = t
        .wait_for("not received", Duration::from_secs(20), |m| {
            matches!(m, ServerMessage::Error { .. } | ServerMessage::ScreenShareForwarded { .. })
        })
        .await
        .expect("told");
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::ScreenShareNotReceived, .. }), "{m:?}");
    // Nothing is stuck: a real share afterwards works.
    t.start_screen_share().await.expect("share");
    forwarded(&mut t).await;
    assert!(grows(|| screen_packets(&p, "t"), WAIT).await);
    server.shutdown().await;
}
