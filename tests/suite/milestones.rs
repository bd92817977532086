//! Milestone celebrations through the real server: audiences, approval, congratulations,
//! persistence, and fan-out to a large group.

use crate::common;

use common::{expect_error, pid};

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::ParticipantId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{
    decode_client, CelebrationAudience, CelebrationId, CelebrationStyle, ClientMessage, ErrorCode, MilestoneKind, ProposalId, Reaction,
    ServerMessage, Text,
};

const WAIT: Duration = Duration::from_secs(5);
const ROOM: &str = "group-m";

/// Joins `ROOM` on an open server (no waiting room) and waits until admitted.
async fn join(server: &RunningServer, role: Role, name: &str, id: &str) -> SignalClient {
    common::join(server, ROOM, role, name, id).await
}

async fn set_prefs(c: &mut SignalClient, style: CelebrationStyle, audience: CelebrationAudience) {
    c.send(&ClientMessage::SetCelebrationPreferences { style, audience }).await.unwrap();
    let reply = c.recv_until("prefs", WAIT, |m| matches!(m, ServerMessage::CelebrationPreferences { .. })).await.unwrap();
    assert_eq!(reply, ServerMessage::CelebrationPreferences { style, audience, chosen: true });
}

/// Everything `c` receives up to the answer to a request sent now. The room answers in order,
/// so whatever it sent `c` before handling this request is in the returned list.
async fn drain(c: &mut SignalClient) -> Vec<ServerMessage> {
    c.send(&ClientMessage::GetCelebrationPreferences).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(WAIT, c.recv()).await.expect("barrier reply").unwrap().expect("socket open");
        if matches!(m, ServerMessage::CelebrationPreferences { .. }) {
            return seen;
        }
        seen.push(m);
    }
}

async fn assert_no_celebration(c: &mut SignalClient, who: &str) {
    let got: Vec<_> = drain(c).await.into_iter().filter(|m| matches!(m, ServerMessage::Celebration { .. })).collect();
    assert!(got.is_empty(), "{who} must not receive {got:?}");
}

fn celebrate(who: &str, kind: MilestoneKind, value: Option<u32>) -> ClientMessage {
    ClientMessage::Celebrate { participant_id: pid(who), kind, value, label: None, message: Some("So proud of you".into()) }
}

/// The next celebration `c` receives: (id, participant, style, audience, milestone kind).
async fn next_celebration(c: &mut SignalClient) -> (CelebrationId, ParticipantId, CelebrationStyle, CelebrationAudience, MilestoneKind) {
    match c.recv_until("celebration", WAIT, |m| matches!(m, ServerMessage::Celebration { .. })).await.unwrap() {
        ServerMessage::Celebration { celebration_id, participant_id, style, audience, milestone, badge_svg, .. } => {
            assert!(badge_svg.starts_with("<svg") && badge_svg.ends_with("</svg>"));
            (celebration_id, participant_id, style, audience, milestone.kind)
        }
        _ => unreachable!(),
    }
}

#[test]
fn every_milestone_type_is_known_to_the_decoder() {
    for ty in ["setCelebrationPreferences", "celebrate", "shareMilestone", "approveMilestone", "declineMilestone", "congratulate"] {
        let err = decode_client(&format!(r#"{{"type":"{ty}"}}"#), 1024).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidMessage, "{ty}");
    }
    for ok in [r#"{"type":"getCelebrationPreferences"}"#, r#"{"type":"getMilestoneHistory"}"#] {
        assert!(decode_client(ok, 1024).is_ok(), "{ok}");
    }
    let bad_reaction = r#"{"type":"congratulate","celebrationId":"c-1","reaction":"thumbsDown"}"#;
    assert_eq!(decode_client(bad_reaction, 1024).unwrap_err().code, ErrorCode::InvalidMessage);
}

#[test]
fn the_documented_examples_are_real_messages() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md")).unwrap();
    let section = doc.split("\n## Milestones").nth(1).expect("a Milestones section").split("\n## ").next().unwrap();
    let mut types = std::collections::BTreeSet::new();
    for example in section.split('`').filter(|s| s.starts_with(r#"{"type":"#)) {
        let client = decode_client(example, 65536).map(|m| m.kind().to_string());
        let server = serde_json::from_str::<ServerMessage>(example);
        assert!(client.is_ok() || server.is_ok(), "not a message: {example}");
        let v: serde_json::Value = serde_json::from_str(example).unwrap();
        types.insert(v["type"].as_str().unwrap().to_string());
    }
    for ty in [
        "setCelebrationPreferences",
        "getCelebrationPreferences",
        "celebrate",
        "shareMilestone",
        "approveMilestone",
        "declineMilestone",
        "congratulate",
        "getMilestoneHistory",
        "celebrationPreferences",
        "milestoneProposed",
        "milestoneProposalResolved",
        "celebration",
        "congratulation",
        "milestoneHistory",
    ] {
        assert!(types.contains(ty), "no example of `{ty}`");
    }
}

#[tokio::test]
async fn the_audience_is_never_wider_than_the_preference() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
    let mut ana = join(&server, Role::Participant, "Ana", "p-ana").await;
    let mut ben = join(&server, Role::Participant, "Ben", "p-ben").await;
    let mut cy = join(&server, Role::Participant, "Cy", "p-cy").await;

    // Never chose: the default is the therapist only.
    t.send(&celebrate("p-cy", MilestoneKind::DaysSober, Some(7))).await.unwrap();
    let (_, who, style, audience, _) = next_celebration(&mut cy).await;
    assert_eq!((who, style, audience), (pid("p-cy"), CelebrationStyle::Standard, CelebrationAudience::TherapistOnly));
    next_celebration(&mut t).await;
    assert_no_celebration(&mut ben, "Ben (Cy never chose)").await;
    assert_no_celebration(&mut ana, "Ana (Cy never chose)").await;

    // Therapist only: Ana and the therapist, nobody else.
    set_prefs(&mut ana, CelebrationStyle::Big, CelebrationAudience::TherapistOnly).await;
    t.send(&celebrate("p-ana", MilestoneKind::DaysSober, Some(30))).await.unwrap();
    let (_, _, style, audience, kind) = next_celebration(&mut ana).await;
    assert_eq!((style, audience, kind), (CelebrationStyle::Big, CelebrationAudience::TherapistOnly, MilestoneKind::DaysSober));
    next_celebration(&mut t).await;
    assert_no_celebration(&mut ben, "Ben (therapist only)").await;
    assert_no_celebration(&mut cy, "Cy (therapist only)").await;

    // Style none: nothing to the group even with audience `group`; Ana and the therapist get a record.
    set_prefs(&mut ana, CelebrationStyle::None, CelebrationAudience::Group).await;
    t.send(&celebrate("p-ana", MilestoneKind::SessionsAttended, Some(10))).await.unwrap();
    let (_, _, style, audience, _) = next_celebration(&mut ana).await;
    assert_eq!((style, audience), (CelebrationStyle::None, CelebrationAudience::TherapistOnly));
    let (_, _, style, _, _) = next_celebration(&mut t).await;
    assert_eq!(style, CelebrationStyle::None);
    assert_no_celebration(&mut ben, "Ben (style none)").await;
    assert_no_celebration(&mut cy, "Cy (style none)").await;

    // Group: everyone in the space, with the chosen style.
    set_prefs(&mut ana, CelebrationStyle::Quiet, CelebrationAudience::Group).await;
    t.send(&celebrate("p-ana", MilestoneKind::ProgramCompletion, None)).await.unwrap();
    for c in [&mut ana, &mut ben, &mut cy, &mut t] {
        let (_, who, style, audience, kind) = next_celebration(c).await;
        assert_eq!(
            (who, style, audience, kind),
            (pid("p-ana"), CelebrationStyle::Quiet, CelebrationAudience::Group, MilestoneKind::ProgramCompletion)
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shared_milestones_wait_for_a_therapist() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
    let mut ana = join(&server, Role::Participant, "Ana", "p-ana").await;
    let mut ben = join(&server, Role::Participant, "Ben", "p-ben").await;
    set_prefs(&mut ana, CelebrationStyle::Standard, CelebrationAudience::Group).await;

    let share = ClientMessage::ShareMilestone {
        kind: MilestoneKind::Custom,
        value: None,
        label: Some("First public talk".into()),
        message: Some("I did it!".into()),
    };
    ana.send(&share).await.unwrap();
    let proposed = t.recv_until("proposed", WAIT, |m| matches!(m, ServerMessage::MilestoneProposed { .. })).await.unwrap();
    let ServerMessage::MilestoneProposed { proposal_id, participant_id, name, milestone, message } = proposed else { unreachable!() };
    assert_eq!((participant_id, name.as_str(), milestone.label.as_deref()), (pid("p-ana"), "Ana", Some("First public talk")));
    assert_eq!(message.as_ref().and_then(Text::plain), Some("I did it!"));
    // Nobody else hears of it before approval (Ana herself gets an acknowledgement).
    let ack = ana.recv_until("ack", WAIT, |m| matches!(m, ServerMessage::MilestoneProposed { .. })).await.unwrap();
    assert!(matches!(ack, ServerMessage::MilestoneProposed { proposal_id: ref p, .. } if *p == proposal_id));
    let ben_saw = drain(&mut ben).await;
    assert!(
        !ben_saw.iter().any(|m| matches!(m, ServerMessage::MilestoneProposed { .. } | ServerMessage::Celebration { .. })),
        "{ben_saw:?}"
    );
    // A participant cannot approve, not even their own.
    ana.send(&ClientMessage::ApproveMilestone { proposal_id: proposal_id.clone() }).await.unwrap();
    expect_error(&mut ana, ErrorCode::Forbidden).await;

    // Approved: the celebration goes out as Ana prefers.
    t.send(&ClientMessage::ApproveMilestone { proposal_id: proposal_id.clone() }).await.unwrap();
    let resolved = ana.recv_until("resolved", WAIT, |m| matches!(m, ServerMessage::MilestoneProposalResolved { .. })).await.unwrap();
    assert_eq!(resolved, ServerMessage::MilestoneProposalResolved { proposal_id: proposal_id.clone(), approved: true });
    for c in [&mut ana, &mut ben, &mut t] {
        let m = c.recv_until("celebration", WAIT, |m| matches!(m, ServerMessage::Celebration { .. })).await.unwrap();
        let ServerMessage::Celebration { participant_id, milestone, message, .. } = m else { unreachable!() };
        assert_eq!(
            (participant_id, milestone.kind, message.as_ref().and_then(Text::plain)),
            (pid("p-ana"), MilestoneKind::Custom, Some("I did it!"))
        );
    }
    t.send(&ClientMessage::ApproveMilestone { proposal_id }).await.unwrap();
    expect_error(&mut t, ErrorCode::UnknownMilestone).await; // only once

    // Declined: Ana is told, nobody is celebrated.
    ana.send(&ClientMessage::ShareMilestone { kind: MilestoneKind::DaysSober, value: Some(90), label: None, message: None }).await.unwrap();
    let ServerMessage::MilestoneProposed { proposal_id, .. } =
        t.recv_until("proposed", WAIT, |m| matches!(m, ServerMessage::MilestoneProposed { .. })).await.unwrap()
    else {
        unreachable!()
    };
    t.send(&ClientMessage::DeclineMilestone { proposal_id: proposal_id.clone() }).await.unwrap();
    let resolved = ana.recv_until("resolved", WAIT, |m| matches!(m, ServerMessage::MilestoneProposalResolved { .. })).await.unwrap();
    assert_eq!(resolved, ServerMessage::MilestoneProposalResolved { proposal_id: proposal_id.clone(), approved: false });
    let ana_saw = drain(&mut ana).await;
    assert!(!ana_saw.iter().any(|m| matches!(m, ServerMessage::Celebration { .. })), "{ana_saw:?}");
    assert_no_celebration(&mut ben, "Ben (declined)").await;
    t.send(&ClientMessage::ApproveMilestone { proposal_id }).await.unwrap();
    expect_error(&mut t, ErrorCode::UnknownMilestone).await;
    let log = server.state().store.audit_log(ROOM).await.unwrap();
    let actions: Vec<_> = log.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["approve_milestone", "decline_milestone"]);
    server.shutdown().await;
}

#[tokio::test]
async fn sharing_needs_a_therapist_and_a_valid_milestone() {
    let server = common::start_open_server().await;
    let mut ana = join(&server, Role::Participant, "Ana", "p-ana").await;
    let share = ClientMessage::ShareMilestone { kind: MilestoneKind::DaysSober, value: Some(5), label: None, message: None };
    ana.send(&share).await.unwrap();
    expect_error(&mut ana, ErrorCode::NoTherapist).await;
    let _t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
    for bad in [
        ClientMessage::ShareMilestone { kind: MilestoneKind::DaysSober, value: None, label: None, message: None },
        ClientMessage::ShareMilestone { kind: MilestoneKind::Custom, value: None, label: None, message: None },
        ClientMessage::ShareMilestone { kind: MilestoneKind::Custom, value: None, label: Some("x".repeat(41)), message: None },
    ] {
        ana.send(&bad).await.unwrap();
        expect_error(&mut ana, ErrorCode::InvalidField).await;
    }
    for _ in 0..3 {
        ana.send(&share).await.unwrap();
        ana.recv_until("ack", WAIT, |m| matches!(m, ServerMessage::MilestoneProposed { .. })).await.unwrap();
    }
    ana.send(&share).await.unwrap();
    expect_error(&mut ana, ErrorCode::RateLimited).await; // three waiting at most
    server.shutdown().await;
}

#[tokio::test]
async fn congratulations_reach_the_audience_and_are_rate_limited() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
    let mut ana = join(&server, Role::Participant, "Ana", "p-ana").await;
    let mut ben = join(&server, Role::Participant, "Ben", "p-ben").await;
    let mut cy = join(&server, Role::Participant, "Cy", "p-cy").await;
    set_prefs(&mut ana, CelebrationStyle::Big, CelebrationAudience::Group).await;
    t.send(&celebrate("p-ana", MilestoneKind::DaysSober, Some(100))).await.unwrap();
    let (id, ..) = next_celebration(&mut ben).await;
    next_celebration(&mut cy).await;

    let congratulate = |reaction, message: Option<&str>| ClientMessage::Congratulate {
        celebration_id: id.clone(),
        reaction,
        message: message.map(Text::from),
    };
    ben.send(&congratulate(Reaction::Heart, Some("So happy for you"))).await.unwrap();
    let expected = ServerMessage::Congratulation {
        celebration_id: id.clone(),
        from: pid("p-ben"),
        from_name: "Ben".into(),
        reaction: Reaction::Heart,
        message: Some("So happy for you".into()),
    };
    for c in [&mut ana, &mut cy, &mut t] {
        let got = c.recv_until("congratulation", WAIT, |m| matches!(m, ServerMessage::Congratulation { .. })).await.unwrap();
        assert_eq!(got, expected);
    }
    // Rate limited: five per ten seconds per sender; the sixth is refused.
    for _ in 0..4 {
        ben.send(&congratulate(Reaction::Clap, None)).await.unwrap();
    }
    ben.send(&congratulate(Reaction::Star, None)).await.unwrap();
    expect_error(&mut ben, ErrorCode::RateLimited).await;
    let ana_got: Vec<_> = drain(&mut ana).await.into_iter().filter(|m| matches!(m, ServerMessage::Congratulation { .. })).collect();
    assert_eq!(ana_got.len(), 4, "four more reached Ana, the refused one did not");
    // Another sender has their own allowance.
    cy.send(&congratulate(Reaction::Hug, None)).await.unwrap();
    let got = ana.recv_until("congratulation", WAIT, |m| matches!(m, ServerMessage::Congratulation { .. })).await.unwrap();
    assert!(matches!(got, ServerMessage::Congratulation { reaction: Reaction::Hug, .. }));
    // Too long, to oneself, or to a celebration one was not shown: refused.
    cy.send(&congratulate(Reaction::Hug, Some(&"x".repeat(141)))).await.unwrap();
    expect_error(&mut cy, ErrorCode::InvalidField).await;
    ana.send(&congratulate(Reaction::Hug, None)).await.unwrap();
    expect_error(&mut ana, ErrorCode::Forbidden).await;
    t.send(&celebrate("p-cy", MilestoneKind::DaysSober, Some(3))).await.unwrap(); // Cy never chose: therapist only
    let (private_id, ..) = next_celebration(&mut cy).await;
    ana.send(&ClientMessage::Congratulate { celebration_id: private_id, reaction: Reaction::Clap, message: None }).await.unwrap();
    expect_error(&mut ana, ErrorCode::UnknownMilestone).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_participant_cannot_celebrate_anyone() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
    let mut ana = join(&server, Role::Participant, "Ana", "p-ana").await;
    let mut ben = join(&server, Role::Participant, "Ben", "p-ben").await;
    set_prefs(&mut ben, CelebrationStyle::Big, CelebrationAudience::Group).await;
    for target in ["p-ben", "p-ana"] {
        ana.send(&celebrate(target, MilestoneKind::DaysSober, Some(1))).await.unwrap();
        let message = expect_error(&mut ana, ErrorCode::Forbidden).await;
        assert!(message.contains("celebrate"), "{message}");
    }
    ana.send(&ClientMessage::DeclineMilestone { proposal_id: ProposalId::from_raw("mp-1") }).await.unwrap();
    expect_error(&mut ana, ErrorCode::Forbidden).await;
    assert_no_celebration(&mut ben, "Ben").await;
    // Nor read anyone else's history, or the group's.
    ana.send(&ClientMessage::GetMilestoneHistory { participant_id: Some(pid("p-ben")), group: false }).await.unwrap();
    expect_error(&mut ana, ErrorCode::Forbidden).await;
    ana.send(&ClientMessage::GetMilestoneHistory { participant_id: None, group: true }).await.unwrap();
    expect_error(&mut ana, ErrorCode::Forbidden).await;
    // A therapist celebrating someone who is not here is told so.
    t.send(&celebrate("p-nobody", MilestoneKind::DaysSober, Some(1))).await.unwrap();
    expect_error(&mut t, ErrorCode::UnknownParticipant).await;
    server.shutdown().await;
}

async fn history(c: &mut SignalClient, participant_id: Option<&str>, group: bool) -> Vec<(String, MilestoneKind, Option<u32>)> {
    c.send(&ClientMessage::GetMilestoneHistory { participant_id: participant_id.map(pid), group }).await.unwrap();
    match c.recv_until("history", WAIT, |m| matches!(m, ServerMessage::MilestoneHistory { .. })).await.unwrap() {
        ServerMessage::MilestoneHistory { entries, .. } => {
            entries.into_iter().map(|e| (e.participant_id.to_string(), e.milestone.kind, e.milestone.value)).collect()
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn preferences_and_history_survive_a_restart() {
    let server = common::start_open_server().await;
    let path = server.state().config.store.path.clone();
    {
        let mut t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
        let mut ana = join(&server, Role::Participant, "Ana Lima", "p-ana").await;
        let mut ben = join(&server, Role::Participant, "Ben", "p-ben").await;
        set_prefs(&mut ana, CelebrationStyle::Big, CelebrationAudience::Group).await;
        t.send(&celebrate("p-ana", MilestoneKind::DaysSober, Some(30))).await.unwrap();
        next_celebration(&mut ana).await;
        t.send(&celebrate("p-ana", MilestoneKind::SessionsAttended, Some(12))).await.unwrap();
        next_celebration(&mut ana).await;
        t.send(&celebrate("p-ben", MilestoneKind::DaysSober, Some(2))).await.unwrap();
        next_celebration(&mut ben).await;
        let own = history(&mut ana, None, false).await;
        assert_eq!(
            own.iter().map(|e| (e.1, e.2)).collect::<Vec<_>>(),
            [(MilestoneKind::DaysSober, Some(30)), (MilestoneKind::SessionsAttended, Some(12))]
        );
        assert_eq!(history(&mut t, None, true).await.len(), 3);
    }
    server.shutdown().await;

    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.store.path = path;
    let server = common::start_with(config).await;
    let mut ana = join(&server, Role::Participant, "Ana Lima", "p-ana").await;
    let mut ben = join(&server, Role::Participant, "Ben", "p-ben").await;
    ana.send(&ClientMessage::GetCelebrationPreferences).await.unwrap();
    let prefs = ana.recv_until("prefs", WAIT, |m| matches!(m, ServerMessage::CelebrationPreferences { .. })).await.unwrap();
    assert_eq!(
        prefs,
        ServerMessage::CelebrationPreferences { style: CelebrationStyle::Big, audience: CelebrationAudience::Group, chosen: true }
    );
    let own = history(&mut ana, None, false).await;
    assert_eq!(own.len(), 2);
    assert!(own.iter().all(|e| e.0 == "p-ana"), "a participant sees only their own: {own:?}");
    // The stored preference governs the first celebration after the restart: the group sees it.
    let mut t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
    t.send(&celebrate("p-ana", MilestoneKind::ProgramCompletion, None)).await.unwrap();
    let (_, _, style, audience, _) = next_celebration(&mut ben).await;
    assert_eq!((style, audience), (CelebrationStyle::Big, CelebrationAudience::Group));
    assert_eq!(history(&mut t, Some("p-ana"), false).await.len(), 3);
    assert_eq!(history(&mut t, None, true).await.len(), 4);
    assert_eq!(history(&mut ben, None, false).await.len(), 1);

    // The store holds ids and milestone data, never names or messages.
    let rows: Vec<String> = server
        .state()
        .store
        .with(|c| {
            let mut stmt = c.prepare(
                "SELECT participant || '|' || kind || '|' || IFNULL(value, '') || '|' || IFNULL(label, '') FROM milestones
                 UNION ALL SELECT participant || '|' || style || '|' || audience FROM celebration_prefs",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 4 + 1);
    assert!(rows.iter().all(|r| !r.contains("Ana") && !r.contains("proud")), "{rows:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_celebration_reaches_200_sockets() {
    const CLIENTS: usize = 200;
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.limits.max_room_size = CLIENTS + 10;
    config.limits.joins_per_minute_per_ip = 10_000;
    let server = common::start_with(config).await;
    let started = std::time::Instant::now();
    let mut t = join(&server, Role::Therapist, "Dr Rowan", "t-1").await;
    let mut ana = join(&server, Role::Participant, "Ana", "p-ana").await;
    set_prefs(&mut ana, CelebrationStyle::Big, CelebrationAudience::Group).await;

    // The others join a few at a time, and each then waits for the celebration on its own task.
    let mut waiters = Vec::new();
    let (joined_tx, mut joined_rx) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    for chunk in (0..CLIENTS - 2).collect::<Vec<_>>().chunks(25) {
        let clients = futures::future::join_all(chunk.iter().map(|i| {
            let (server, name, id) = (&server, format!("Peer {i}"), format!("p-{i}"));
            async move { join(server, Role::Participant, &name, &id).await }
        }))
        .await;
        for mut c in clients {
            let joined_tx = joined_tx.clone();
            waiters.push(tokio::spawn(async move {
                let _ = joined_tx.send(()).await;
                match c.recv_until("celebration", Duration::from_secs(15), |m| matches!(m, ServerMessage::Celebration { .. })).await {
                    Ok(ServerMessage::Celebration { celebration_id, .. }) => Some(celebration_id),
                    _ => None,
                }
            }));
        }
    }
    for _ in 0..CLIENTS - 2 {
        joined_rx.recv().await.unwrap();
    }
    assert_eq!(common::health(&server).await["participants"], CLIENTS);
    t.send(&celebrate("p-ana", MilestoneKind::DaysSober, Some(365))).await.unwrap();
    let (id, ..) = next_celebration(&mut t).await;
    assert_eq!(next_celebration(&mut ana).await.0, id);
    let mut reached = 2;
    for w in waiters {
        if w.await.unwrap().as_ref() == Some(&id) {
            reached += 1;
        }
    }
    assert_eq!(reached, CLIENTS, "every socket received the celebration");
    eprintln!("200 sockets: joined and celebrated in {:?}", started.elapsed());
    server.shutdown().await;
}
