//! Reconnect and resume: a dropped socket keeps its place for the grace period.

use crate::common;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::signal::protocol::{ClientMessage, MediaKind, ServerMessage};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_socket_resumes_without_leave_and_media_returns() {
    let _machine = common::machine(common::Load::Media).await;
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.rooms.reconnect_grace_ms = 10_000;
    let server = common::start_with(config).await;
    let url = common::ws_url(&server);
    let mut t = MediaClient::join(MediaOptions::light(&url, "r", "t").with_token(common::token(&server, "r", Role::Therapist, "Dr T")))
        .await
        .unwrap();
    let p_token = common::token_for(&server, "r", Role::Participant, "Pat", "p-pat");
    let p = MediaClient::join(MediaOptions::light(&url, "r", "p").with_token(p_token.clone())).await.unwrap();
    let pid = p.participant_id.clone();
    assert!(common::eventually(WAIT, || t.packets_from(&pid, MediaKind::Audio) > 10).await);
    p.send(ClientMessage::RaiseHand);
    t.wait_for("hand", WAIT, |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.hand_raised)).await.unwrap();

    // The network drops: no leave, the others see "reconnecting".
    p.close().await;
    let m = t
        .wait_for("reconnecting", WAIT, |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.reconnecting))
        .await
        .unwrap();
    let ServerMessage::ParticipantUpdated { participant } = m else { unreachable!() };
    assert!(participant.hand_raised, "the raised hand is kept");

    // Back with the same token: same id, no leave/join for the others, media flows again.
    let p = MediaClient::join(MediaOptions::light(&url, "r", "p").with_token(p_token)).await.unwrap();
    assert_eq!(p.participant_id, pid);
    assert!(p.admitted, "no second trip through the waiting room");
    let me = p.roster.iter().find(|x| x.id == pid).expect("in the roster");
    assert!(me.hand_raised && !me.reconnecting);
    let before = t.packets_from(&pid, MediaKind::Audio);
    assert!(common::eventually(WAIT, || t.packets_from(&pid, MediaKind::Audio) > before + 20).await, "media resumes");
    assert!(common::eventually(WAIT, || p.packets_from(&t.participant_id, MediaKind::Video) > 5).await);
    // Nothing the therapist received in the meantime was a leave or a join.
    while let Ok(m) = t.events.try_recv() {
        assert!(
            !matches!(m, ServerMessage::ParticipantLeft { .. } | ServerMessage::ParticipantJoined { .. }),
            "no leave/join flash: {m:?}"
        );
    }
    assert_eq!(common::health(&server).await["participants"], 2);
    p.leave().await;
    t.leave().await;
    server.shutdown().await;
}

#[tokio::test]
async fn grace_expiry_means_left_and_resume_keeps_the_breakout() {
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.rooms.reconnect_grace_ms = 600;
    let server = common::start_with(config).await;
    let url = common::ws_url(&server);
    let join = |token: String| {
        let url = url.clone();
        async move {
            let mut c = hearth::client::SignalClient::connect(&url).await.unwrap();
            c.send(&ClientMessage::Join {
                protocol_version: hearth::signal::protocol::PROTOCOL_VERSION,
                room_id: hearth::room::RoomId::new("r").unwrap(),
                token,
            })
            .await
            .unwrap();
            recv!(c, ServerMessage::Admitted { .. });
            c
        }
    };
    let mut t = join(common::token(&server, "r", Role::Therapist, "Dr T")).await;
    let p_token = common::token_for(&server, "r", Role::Participant, "Pat", "p-pat");
    let mut p = join(p_token.clone()).await;
    let pid = hearth::room::ParticipantId::from_trusted("p-pat");
    t.send(&ClientMessage::CreateBreakout { name: "Garden".into() }).await.unwrap();
    let breakouts = recv!(t, ServerMessage::BreakoutsUpdated { breakouts } => breakouts);
    let b = breakouts.rooms[0].id.clone();
    t.send(&ClientMessage::AssignBreakout { participant_id: pid.clone(), breakout_id: Some(b.clone()) }).await.unwrap();
    t.send(&ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false }).await.unwrap();
    recv!(p, ServerMessage::SpaceChanged { breakout: Some(_), .. });

    // Drop and come back inside the grace period: straight back into the breakout.
    drop(p);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut p = join(p_token).await;
    let m = recv!(p, ServerMessage::SpaceChanged { .. });
    assert!(matches!(m, ServerMessage::SpaceChanged { breakout: Some(ref r), .. } if r.id == b), "{m:?}");

    // Drop and stay away: after the grace period the others are told.
    drop(p);
    let left = recv!(t, ServerMessage::ParticipantLeft { .. });
    assert_eq!(left, ServerMessage::ParticipantLeft { participant_id: pid });
    assert_eq!(common::health(&server).await["participants"], 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_keeps_media_flowing() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let a =
        MediaClient::join(MediaOptions::light(&url, "r", "a").with_token(common::token(&server, "r", Role::Therapist, "A"))).await.unwrap();
    let b = MediaClient::join(MediaOptions::light(&url, "r", "b").with_token(common::token(&server, "r", Role::Participant, "B")))
        .await
        .unwrap();
    assert!(common::eventually(WAIT, || b.packets_from(&a.participant_id, MediaKind::Video) > 10).await);
    let before = b.packets_from(&a.participant_id, MediaKind::Audio);
    let a_before = a.packets_from(&b.participant_id, MediaKind::Audio);
    b.restart_ice().await.expect("ice restart offer");
    // Media keeps flowing both ways on the restarted connection.
    assert!(common::eventually(WAIT, || b.packets_from(&a.participant_id, MediaKind::Audio) > before + 50).await, "b still receives");
    assert!(common::eventually(WAIT, || a.packets_from(&b.participant_id, MediaKind::Audio) > a_before + 50).await, "a still receives b");
    a.leave().await;
    b.leave().await;
    server.shutdown().await;
}
