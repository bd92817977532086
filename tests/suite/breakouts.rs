//! Breakout rooms through the real server: media isolation with webrtc peers, and the controls.

use crate::common;

use common::join;

use common::{expect_error, pid};

use std::collections::HashMap;
use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions, SignalClient};
use hearth::room::ParticipantId;
use hearth::signal::protocol::{BreakoutPlan, ClientMessage, ErrorCode, MediaKind, ServerMessage};

const WAIT: Duration = Duration::from_secs(10);

fn plan_of(m: &ServerMessage) -> Option<&BreakoutPlan> {
    match m {
        ServerMessage::BreakoutsUpdated { breakouts } => Some(breakouts),
        _ => None,
    }
}

/// Creates breakouts named `names` and returns their ids (read from the therapist's plan).
async fn create_breakouts(t: &mut SignalClient, names: &[&str]) -> Vec<String> {
    for n in names {
        t.send(&ClientMessage::CreateBreakout { name: n.to_string() }).await.unwrap();
    }
    loop {
        let m = t.recv_until("plan", WAIT, |m| plan_of(m).is_some()).await.unwrap();
        let plan = plan_of(&m).unwrap();
        if plan.rooms.len() == names.len() {
            return plan.rooms.iter().map(|r| r.id.clone()).collect();
        }
    }
}

async fn space_changed(c: &mut SignalClient) -> Option<String> {
    match recv!(c, ServerMessage::SpaceChanged { .. }) {
        ServerMessage::SpaceChanged { breakout, .. } => breakout.map(|b| b.id),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakouts_isolate_media_and_close_all_reunites() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let mut therapist = MediaClient::join(MediaOptions::light(&url, "group", "t").with_token(common::token_for(
        &server,
        "group",
        Role::Therapist,
        "Dr T",
        "t",
    )))
    .await
    .unwrap();
    let mut people = Vec::new();
    for i in 1..=5 {
        let id = format!("p{i}");
        let token = common::token_for(&server, "group", Role::Participant, &id, &id);
        people.push(MediaClient::join(MediaOptions::light(&url, "group", &id).with_token(token)).await.unwrap());
    }
    let all: Vec<ParticipantId> = std::iter::once(pid("t")).chain((1..=5).map(|i| pid(&format!("p{i}")))).collect();
    let everyone_hears_everyone = |clients: &[&MediaClient], min: u64| {
        clients.iter().all(|c| all.iter().filter(|p| **p != c.participant_id).all(|p| c.packets_from(p, MediaKind::Audio) >= min))
    };
    let ok = common::eventually(Duration::from_secs(30), || {
        let clients: Vec<&MediaClient> = std::iter::once(&therapist).chain(people.iter()).collect();
        everyone_hears_everyone(&clients, 10)
    })
    .await;
    assert!(ok, "before breakouts everyone hears everyone");

    // Two breakouts: A = p1, p2; B = p3, p4, p5. The therapist stays in the main room.
    for name in ["Garden", "Library"] {
        therapist.send(ClientMessage::CreateBreakout { name: name.into() });
    }
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let m = therapist.wait_for("plan", WAIT, |m| plan_of(m).is_some_and(|p| p.rooms.len() == 2)).await.unwrap();
        ids = plan_of(&m).unwrap().rooms.iter().map(|r| r.id.clone()).collect();
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let group_of: HashMap<ParticipantId, Option<String>> = all
        .iter()
        .map(|p| {
            let g = match p.as_str() {
                "p1" | "p2" => Some(a.clone()),
                "t" => None,
                _ => Some(b.clone()),
            };
            (p.clone(), g)
        })
        .collect();
    for (p, g) in &group_of {
        if g.is_some() {
            therapist.send(ClientMessage::AssignBreakout { participant_id: p.clone(), breakout_id: g.clone() });
        }
    }
    therapist.send(ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false });
    for c in people.iter_mut() {
        let m = c.wait_for("spaceChanged", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { .. })).await.unwrap();
        let ServerMessage::SpaceChanged { breakout, participants, .. } = m else { unreachable!() };
        assert_eq!(breakout.map(|b| b.id), group_of[&c.participant_id], "moved to the assigned breakout");
        let mut names: Vec<_> = participants.iter().map(|p| p.id.clone()).collect();
        names.sort();
        let mut expected: Vec<_> = group_of.iter().filter(|(_, g)| **g == group_of[&c.participant_id]).map(|(p, _)| p.clone()).collect();
        expected.sort();
        assert_eq!(names, expected, "the roster shows only the breakout's members");
    }

    // Let renegotiation settle, then measure a window.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let snapshot = |c: &MediaClient| -> HashMap<ParticipantId, u64> {
        all.iter().map(|p| (p.clone(), c.packets_from(p, MediaKind::Audio) + c.packets_from(p, MediaKind::Video))).collect()
    };
    let before: Vec<_> = people.iter().map(snapshot).collect();
    let t_before = snapshot(&therapist);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (c, before) in people.iter().zip(&before) {
        let after = snapshot(c);
        for p in all.iter().filter(|p| **p != c.participant_id) {
            let grew = after[p] > before[p];
            let same_space = group_of[p] == group_of[&c.participant_id];
            assert_eq!(grew, same_space, "{} receiving from {}: grew={grew}, same breakout={same_space}", c.participant_id, p);
        }
    }
    let t_after = snapshot(&therapist);
    for p in all.iter().filter(|p| p.as_str() != "t") {
        assert_eq!(t_after[p], t_before[p], "the therapist in the main room hears no breakout ({p})");
    }

    // Close all with a short countdown: everyone returns and hears everyone again.
    therapist.send(ClientMessage::CloseBreakouts { countdown_secs: Some(1) });
    for c in people.iter_mut() {
        let m = c.wait_for("closing", WAIT, |m| matches!(m, ServerMessage::BreakoutsClosing { .. })).await.unwrap();
        assert_eq!(m, ServerMessage::BreakoutsClosing { seconds_left: 1 });
        let m = c.wait_for("back", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { .. })).await.unwrap();
        assert!(matches!(m, ServerMessage::SpaceChanged { breakout: None, .. }));
    }
    let marks: Vec<_> = std::iter::once(&therapist).chain(people.iter()).map(snapshot).collect();
    let reunited = common::eventually(Duration::from_secs(20), || {
        std::iter::once(&therapist)
            .chain(people.iter())
            .zip(&marks)
            .all(|(c, mark)| all.iter().filter(|p| **p != c.participant_id).all(|p| c.packets_from(p, MediaKind::Audio) > mark[p] + 10))
    })
    .await;
    assert!(reunited, "after close-all everyone receives from everyone again");
    for c in people {
        c.leave().await;
    }
    therapist.leave().await;
    server.shutdown().await;
}

#[tokio::test]
async fn breakout_controls() {
    let server = common::start_open_server().await;
    let mut t = join(&server, "r", Role::Therapist, "Dr T", "t").await;
    let mut p1 = join(&server, "r", Role::Participant, "One", "p1").await;
    let mut p2 = join(&server, "r", Role::Participant, "Two", "p2").await;

    // Participants may not run breakouts; nothing changes.
    for msg in [
        ClientMessage::CreateBreakout { name: "x".into() },
        ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: true },
        ClientMessage::CloseBreakouts { countdown_secs: None },
        ClientMessage::BroadcastToBreakouts { text: "hi".into() },
        ClientMessage::AssignBreakout { participant_id: pid("p2"), breakout_id: None },
        ClientMessage::AutoAssignBreakouts,
    ] {
        p1.send(&msg).await.unwrap();
        expect_error(&mut p1, ErrorCode::Forbidden).await;
    }
    create_breakouts(&mut t, &["Garden", "Library"]).await;
    t.send(&ClientMessage::AssignBreakout { participant_id: pid("p1"), breakout_id: Some("nope".into()) }).await.unwrap();
    expect_error(&mut t, ErrorCode::UnknownBreakout).await;
    t.send(&ClientMessage::AutoAssignBreakouts).await.unwrap();
    let m = t.recv_until("plan", WAIT, |m| plan_of(m).is_some()).await.unwrap();
    let plan = plan_of(&m).unwrap();
    assert_eq!(plan.rooms.iter().map(|r| r.members.len()).collect::<Vec<_>>(), [1, 1], "evenly sized");

    // Open with a duration: warning, then the timer closes them.
    t.send(&ClientMessage::OpenBreakouts { duration_secs: Some(2), warning_secs: Some(1), allow_return: false }).await.unwrap();
    let s1 = space_changed(&mut p1).await.expect("p1 in a breakout");
    let s2 = space_changed(&mut p2).await.expect("p2 in a breakout");
    assert_ne!(s1, s2);

    // Self-return refused when not allowed.
    p1.send(&ClientMessage::GoToBreakout { breakout_id: None }).await.unwrap();
    expect_error(&mut p1, ErrorCode::ReturnNotAllowed).await;
    // Reassignment while open moves at once.
    t.send(&ClientMessage::AssignBreakout { participant_id: pid("p1"), breakout_id: Some(s2.clone()) }).await.unwrap();
    assert_eq!(space_changed(&mut p1).await, Some(s2.clone()));
    // Broadcast reaches every breakout; help reaches only therapists.
    t.send(&ClientMessage::BroadcastToBreakouts { text: "Two minutes left".into() }).await.unwrap();
    for c in [&mut p1, &mut p2] {
        let m = recv!(c, ServerMessage::BreakoutBroadcast { .. });
        assert_eq!(m, ServerMessage::BreakoutBroadcast { from: "Dr T".into(), text: "Two minutes left".into() });
    }
    p1.send(&ClientMessage::AskForHelp).await.unwrap();
    let m = recv!(t, ServerMessage::HelpRequested { .. });
    assert_eq!(m, ServerMessage::HelpRequested { participant_id: pid("p1"), name: "One".into(), breakout_id: Some(s2.clone()) });

    let w = recv!(p2, ServerMessage::BreakoutWarning { .. });
    assert!(matches!(w, ServerMessage::BreakoutWarning { seconds_left } if seconds_left <= 1));
    assert_eq!(space_changed(&mut p2).await, None, "timer expiry returns everyone");
    assert_eq!(space_changed(&mut p1).await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_lands_in_the_breakout_and_return_when_allowed() {
    let server = common::start_open_server().await;
    let mut t = join(&server, "r", Role::Therapist, "Dr T", "t").await;
    let mut p1 = join(&server, "r", Role::Participant, "One", "p1").await;
    let ids = create_breakouts(&mut t, &["Garden"]).await;
    t.send(&ClientMessage::AssignBreakout { participant_id: pid("p1"), breakout_id: Some(ids[0].clone()) }).await.unwrap();
    t.send(&ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: true }).await.unwrap();
    assert_eq!(space_changed(&mut p1).await, Some(ids[0].clone()));

    // The socket drops; the same participant comes back and lands in the breakout.
    drop(p1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = join(&server, "r", Role::Participant, "One", "p1").await;
    assert_eq!(space_changed(&mut again).await, Some(ids[0].clone()));

    // Returning by oneself is allowed here, and going back to one's own breakout too.
    again.send(&ClientMessage::GoToBreakout { breakout_id: None }).await.unwrap();
    assert_eq!(space_changed(&mut again).await, None);
    again.send(&ClientMessage::GoToBreakout { breakout_id: Some(ids[0].clone()) }).await.unwrap();
    assert_eq!(space_changed(&mut again).await, Some(ids[0].clone()));
    // The therapist can visit.
    t.send(&ClientMessage::GoToBreakout { breakout_id: Some(ids[0].clone()) }).await.unwrap();
    assert_eq!(space_changed(&mut t).await, Some(ids[0].clone()));
    server.shutdown().await;
}
