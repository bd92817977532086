//! Security hardening of room state, through the real server on port 0 with websocket clients:
//! breakout conversations end with the round, bans and final declines outlive an empty room,
//! alerts to therapists are rate limited per participant, and display names refuse control and
//! text-direction characters at mint and at join.

use crate::common;

use common::{expect_error, pid};

use std::time::Duration;

use hearth::auth::{now_secs, Claims, Role};
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, ErrorCode, MilestoneKind, PollScope, ServerMessage, PROTOCOL_VERSION};

const WAIT: Duration = Duration::from_secs(10);

async fn connect_and_join(server: &RunningServer, room: &str, token: String) -> SignalClient {
    let mut c = SignalClient::connect(&common::ws_url(server)).await.unwrap();
    c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token }).await.unwrap();
    c
}

/// Joins and waits for `joined`, or returns the error the join got (the id is also the name).
async fn try_join(server: &RunningServer, room: &str, role: Role, id: &str) -> Result<SignalClient, ErrorCode> {
    common::try_join(server, room, role, id, Some(id), "joined").await.map(|joined| joined.client)
}

/// Joins an open room and reads up to the `chatSettings` sent on admission.
async fn join_admitted(server: &RunningServer, room: &str, role: Role, id: &str) -> SignalClient {
    common::join_upto(server, room, role, id, id, "chatSettings").await
}

fn no_change() -> ClientMessage {
    ClientMessage::SetChatSettings { enabled: None, private_messages: None, keep_transcript: None }
}

/// Everything `c` receives up to the next `chatSettings` (excluded): a therapist's no-op
/// `setChatSettings` reaches everyone admitted after whatever the room sent them before.
async fn until_barrier(c: &mut SignalClient) -> Vec<ServerMessage> {
    let mut seen = Vec::new();
    loop {
        match c.recv_until("chatSettings barrier", WAIT, |_| true).await.unwrap() {
            ServerMessage::ChatSettings(_) => return seen,
            m => seen.push(m),
        }
    }
}

async fn space_changed(c: &mut SignalClient) -> ServerMessage {
    recv!(c, ServerMessage::SpaceChanged { .. })
}

#[tokio::test]
async fn a_breakouts_conversation_ends_with_the_round() {
    let server = common::start_open_server().await;
    let room = "rounds";
    let mut t = join_admitted(&server, room, Role::Therapist, "t").await;
    let mut p1 = join_admitted(&server, room, Role::Participant, "p1").await;
    let mut p2 = join_admitted(&server, room, Role::Participant, "p2").await;
    t.send(&ClientMessage::SetChatSettings { enabled: None, private_messages: None, keep_transcript: Some(true) }).await.unwrap();
    for c in [&mut t, &mut p1, &mut p2] {
        until_barrier(c).await;
    }

    t.send(&ClientMessage::CreateBreakout { name: "Pairs".into() }).await.unwrap();
    let b = match recv!(t, ServerMessage::BreakoutsUpdated { breakouts } if !breakouts.rooms.is_empty()) {
        ServerMessage::BreakoutsUpdated { breakouts } => breakouts.rooms[0].id.clone(),
        _ => unreachable!(),
    };
    for p in ["p1", "p2"] {
        t.send(&ClientMessage::AssignBreakout { participant_id: pid(p), breakout_id: Some(b.clone()) }).await.unwrap();
    }
    t.send(&ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false }).await.unwrap();
    for c in [&mut p1, &mut p2] {
        space_changed(c).await;
    }
    // Inside: a message, a raised hand, and a poll for this breakout (the therapist visits to
    // start it, then goes back to the main room).
    p1.send(&ClientMessage::Chat { text: "said only in the breakout".into(), to: None }).await.unwrap();
    recv!(p2, ServerMessage::ChatMessage(e) if e.text == "said only in the breakout");
    p1.send(&ClientMessage::RaiseHand).await.unwrap();
    recv!(p2, ServerMessage::ParticipantUpdated { participant } if participant.hand_raised);
    t.send(&ClientMessage::GoToBreakout { breakout_id: Some(b.clone()) }).await.unwrap();
    space_changed(&mut t).await;
    t.send(&ClientMessage::CreatePoll {
        question: "Breakout check".into(),
        options: vec!["Yes".into(), "No".into()],
        multiple: false,
        anonymous: true,
        duration_secs: None,
        scope: Some(PollScope::Room),
    })
    .await
    .unwrap();
    let poll = match recv!(p1, ServerMessage::PollStarted { .. }) {
        ServerMessage::PollStarted { poll } => poll.id,
        _ => unreachable!(),
    };
    t.send(&ClientMessage::GoToBreakout { breakout_id: None }).await.unwrap();
    space_changed(&mut t).await;

    // Close: the breakout's poll closes with it and the hand does not follow p1 back.
    t.send(&ClientMessage::CloseBreakouts { countdown_secs: Some(0) }).await.unwrap();
    recv!(p1, ServerMessage::PollClosed { poll_id, .. } if *poll_id == poll);
    let ServerMessage::SpaceChanged { breakout: None, participants, .. } = space_changed(&mut p1).await else {
        panic!("p1 did not come back to the main room")
    };
    let me = participants.iter().find(|p| p.id == pid("p1")).expect("p1 in the main room's roster");
    assert!(!me.hand_raised, "a hand raised in the breakout was carried back to the main room");
    space_changed(&mut p2).await;

    // Reopen the same breakout (same id): it starts empty.
    t.send(&ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false }).await.unwrap();
    for c in [&mut p1, &mut p2] {
        let ServerMessage::SpaceChanged { breakout: Some(again), .. } = space_changed(c).await else { panic!("not moved back") };
        assert_eq!(again.id, b, "the same breakout id");
        match recv!(c, ServerMessage::ChatHistory { .. }) {
            ServerMessage::ChatHistory { messages } => assert!(messages.is_empty(), "the last round's chat came back: {messages:?}"),
            _ => unreachable!(),
        }
    }
    t.send(&no_change()).await.unwrap();
    until_barrier(&mut t).await;
    let seen = until_barrier(&mut p1).await;
    assert!(
        !seen.iter().any(|m| matches!(m, ServerMessage::PollStarted { poll: p } if p.id == poll)),
        "the last round's poll came back: {seen:?}"
    );
    until_barrier(&mut p2).await;

    // Reconnecting inside the reopened breakout brings no earlier history either.
    let mut p2 = join_admitted(&server, room, Role::Participant, "p2").await;
    match recv!(p2, ServerMessage::ChatHistory { .. }) {
        ServerMessage::ChatHistory { messages } => assert!(messages.is_empty(), "history after a reconnect: {messages:?}"),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn removals_and_final_declines_outlast_an_empty_room() {
    let server = common::start_server().await; // waiting room on
    let room = "bans";
    let mut t = try_join(&server, room, Role::Therapist, "t").await.unwrap();
    let mut removed = try_join(&server, room, Role::Participant, "removed").await.unwrap();
    t.send(&ClientMessage::Admit { participant_id: pid("removed") }).await.unwrap();
    recv!(removed, ServerMessage::Admitted { .. });
    t.send(&ClientMessage::Remove { participant_id: pid("removed") }).await.unwrap();
    recv!(removed, ServerMessage::SessionEnded { .. });

    // A final decline bans; a plain one lets them knock again.
    let mut blocked = try_join(&server, room, Role::Participant, "blocked").await.unwrap();
    t.send(&ClientMessage::Decline { participant_id: pid("blocked"), r#final: true }).await.unwrap();
    recv!(blocked, ServerMessage::SessionEnded { .. });
    let mut knocks = try_join(&server, room, Role::Participant, "knocks").await.unwrap();
    t.send(&ClientMessage::Decline { participant_id: pid("knocks"), r#final: false }).await.unwrap();
    recv!(knocks, ServerMessage::SessionEnded { .. });
    assert_eq!(try_join(&server, room, Role::Participant, "blocked").await.err(), Some(ErrorCode::Banned));
    let again = try_join(&server, room, Role::Participant, "knocks").await.expect("a plain decline may knock again");
    drop(again);

    // Everyone leaves: the room task ends, and the next join makes a new one.
    t.send(&ClientMessage::Leave).await.unwrap();
    drop(t);
    let gone = common::eventually(WAIT, || server.state().rooms.room_count() == 0).await;
    assert!(gone, "the room did not end when everyone left");
    assert_eq!(try_join(&server, room, Role::Participant, "removed").await.err(), Some(ErrorCode::Banned));
    assert_eq!(try_join(&server, room, Role::Participant, "blocked").await.err(), Some(ErrorCode::Banned));
    assert!(try_join(&server, room, Role::Participant, "someone-else").await.is_ok(), "others still join");
}

#[tokio::test]
async fn alerts_to_therapists_are_rate_limited_per_participant() {
    let server = common::start_open_server().await;
    let room = "alerts";
    let mut t = join_admitted(&server, room, Role::Therapist, "t").await;
    let mut p = join_admitted(&server, room, Role::Participant, "p").await;
    for _ in 0..4 {
        p.send(&ClientMessage::RequestSupport).await.unwrap();
        p.send(&ClientMessage::AskForHelp).await.unwrap();
        p.send(&ClientMessage::RaiseHand).await.unwrap();
        p.send(&ClientMessage::LowerHand { participant_id: None }).await.unwrap();
    }
    for _ in 0..3 {
        expect_error(&mut p, ErrorCode::RateLimited).await;
    }
    // A reconnect (new socket, same participant id) does not reset the count.
    let mut p = join_admitted(&server, room, Role::Participant, "p").await;
    p.send(&ClientMessage::RequestSupport).await.unwrap();
    expect_error(&mut p, ErrorCode::RateLimited).await;
    t.send(&no_change()).await.unwrap();
    let seen = until_barrier(&mut t).await;
    let support = seen.iter().filter(|m| matches!(m, ServerMessage::SupportRequested { .. })).count();
    let help = seen.iter().filter(|m| matches!(m, ServerMessage::HelpRequested { .. })).count();
    let hands = seen.iter().filter(|m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.hand_raised)).count();
    assert_eq!((support, help, hands), (3, 3, 3), "therapists were alerted beyond the limit");
    let store = server.state().store.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let rows = loop {
        let log = store.audit_log(room).await.unwrap();
        let n = |a: &str| log.iter().filter(|r| r.action == a).count();
        let rows = (n("support_request"), n("ask_for_help"));
        if rows.0 + rows.1 >= 6 || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows, (3, 3), "audit rows beyond the limit");

    // Shared milestones: declined at once (so none is pending), still at most 3 a minute.
    for _ in 0..3 {
        p.send(&ClientMessage::ShareMilestone { kind: MilestoneKind::DaysSober, value: Some(30), label: None, message: None })
            .await
            .unwrap();
        let proposal = match recv!(t, ServerMessage::MilestoneProposed { .. }) {
            ServerMessage::MilestoneProposed { proposal_id, .. } => proposal_id,
            _ => unreachable!(),
        };
        t.send(&ClientMessage::DeclineMilestone { proposal_id: proposal }).await.unwrap();
        recv!(p, ServerMessage::MilestoneProposalResolved { .. });
    }
    p.send(&ClientMessage::ShareMilestone { kind: MilestoneKind::DaysSober, value: Some(30), label: None, message: None }).await.unwrap();
    expect_error(&mut p, ErrorCode::RateLimited).await;
    t.send(&no_change()).await.unwrap();
    let seen = until_barrier(&mut t).await;
    assert!(!seen.iter().any(|m| matches!(m, ServerMessage::MilestoneProposed { .. })), "a fourth proposal reached the therapist");
}

const BIDI_NAME_JSON: &str = r#""Ana\u202Egnp.exe""#;

#[tokio::test]
async fn names_with_direction_overrides_are_refused_at_mint_and_at_join() {
    let mut config = common::test_config();
    config.auth.api_key = "an-api-key-for-the-tests-0123456789".into();
    let server = common::start_with(config).await;
    for (path, auth) in [("/dev/token", None), ("/api/tokens", Some("Bearer an-api-key-for-the-tests-0123456789"))] {
        for name in [BIDI_NAME_JSON, r#""\u2066Ana""#, r#""A\u0085B""#, r#""Ana\u001b[2J""#] {
            let body = format!(r#"{{"room":"names","role":"participant","name":{name}}}"#);
            let headers: Vec<(&str, &str)> = auth
                .map(|a| vec![("Authorization", a), ("Content-Type", "application/json")])
                .unwrap_or(vec![("Content-Type", "application/json")]);
            let (status, body) = common::http(server.addr(), "POST", path, &headers, &body).await;
            assert_eq!(status, 400, "{path} {name}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "invalid_name", "{path} {name}: {body}");
        }
        let ok = r#"{"room":"names","role":"participant","name":"  Zoë Ørsted  "}"#;
        let headers: Vec<(&str, &str)> = auth
            .map(|a| vec![("Authorization", a), ("Content-Type", "application/json")])
            .unwrap_or(vec![("Content-Type", "application/json")]);
        let (status, body) = common::http(server.addr(), "POST", path, &headers, ok).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // A token signed with the right secret elsewhere, carrying such a name.
    let now = now_secs();
    let claims = Claims {
        sub: "p-bidi".into(),
        room: "names".into(),
        role: Role::Participant,
        name: "Sam\u{202E}".into(),
        exp: now + 600,
        iat: now,
        sponsor: None,
    };
    let token = server.state().tokens.sign(&claims).unwrap();
    let mut c = connect_and_join(&server, "names", token).await;
    expect_error(&mut c, ErrorCode::InvalidName).await;

    // The CLI refuses it too, with the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["token", "--room", "names", "--name", "Ana\u{202E}"])
        .env("HEARTH_STORE__PATH", common::unique_temp_path("hearth-token-cli", "db"))
        .output()
        .expect("hearth runs");
    assert!(!out.status.success(), "hearth token minted a bidi name");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text-direction"), "{err}");
}

#[test]
fn a_final_decline_is_spelled_final_on_the_wire() {
    let m = hearth::signal::protocol::decode_client(r#"{"type":"decline","participantId":"p-1","final":true}"#, 1024).unwrap();
    assert_eq!(m, ClientMessage::Decline { participant_id: pid("p-1"), r#final: true });
    let plain = hearth::signal::protocol::decode_client(r#"{"type":"decline","participantId":"p-1"}"#, 1024).unwrap();
    assert_eq!(plain, ClientMessage::Decline { participant_id: pid("p-1"), r#final: false });
}
