//! Roles and safety through the real server: tokens, waiting room, moderation, audit.

use crate::common;

use common::expect_error;

use std::time::Duration;

use hearth::auth::{Claims, Role};
use hearth::client::{MediaClient, MediaOptions, SignalClient};
use hearth::room::{ParticipantId, RoomId};
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, EndReason, ErrorCode, MediaKind, ServerMessage, PROTOCOL_VERSION};

const WAIT: Duration = Duration::from_secs(5);

fn join_msg(room: &str, token: String) -> ClientMessage {
    ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token }
}

/// Connects and joins; returns the client and its participant id (waiting or not).
async fn join(server: &RunningServer, room: &str, role: Role, name: &str) -> (SignalClient, ParticipantId) {
    match common::try_join(server, room, role, name, None, "joined").await {
        Ok(joined) => (joined.client, joined.id),
        Err(code) => panic!("join refused: {code:?}"),
    }
}

async fn waiting_list_names(c: &mut SignalClient, expect_len: usize) -> Vec<String> {
    loop {
        let m = recv!(c, ServerMessage::WaitingList { .. });
        if let ServerMessage::WaitingList { waiting } = m {
            if waiting.len() == expect_len {
                return waiting.into_iter().map(|w| w.name).collect();
            }
        }
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_distinct_codes() {
    let server = common::start_server().await;
    let mut c = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    c.send(&join_msg("g", String::new())).await.unwrap();
    expect_error(&mut c, ErrorCode::TokenMissing).await;
    c.send(&join_msg("g", common::token(&server, "other-room", Role::Therapist, "T"))).await.unwrap();
    expect_error(&mut c, ErrorCode::TokenWrongRoom).await;
    // Tampered: a participant token whose payload claims therapist.
    let good = common::token(&server, "g", Role::Participant, "P");
    let issuer = &server.state().tokens;
    let now = hearth::auth::now_secs();
    let forged = issuer
        .sign(&Claims {
            sub: "p-x".into(),
            room: "g".into(),
            role: Role::Therapist,
            name: "P".into(),
            exp: now + 60,
            iat: now,
            sponsor: None,
        })
        .unwrap();
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = forged.split('.').nth(1).unwrap();
    c.send(&join_msg("g", parts.join("."))).await.unwrap();
    expect_error(&mut c, ErrorCode::TokenInvalid).await;
    let expired = issuer
        .sign(&Claims {
            sub: "p-y".into(),
            room: "g".into(),
            role: Role::Participant,
            name: "P".into(),
            exp: now - 600,
            iat: now - 900,
            sponsor: None,
        })
        .unwrap();
    c.send(&join_msg("g", expired)).await.unwrap();
    expect_error(&mut c, ErrorCode::TokenExpired).await;
    let h = common::health(&server).await;
    assert_eq!(h["participants"], 0, "no refused join changed anything");
    // The same connection still joins with a good token.
    c.send(&join_msg("g", good)).await.unwrap();
    recv!(c, ServerMessage::Joined { .. });
    server.shutdown().await;
}

#[tokio::test]
async fn participants_cannot_moderate() {
    let server = common::start_server().await;
    let (mut therapist, _) = join(&server, "g", Role::Therapist, "Dr T").await;
    let (mut alice, alice_id) = join(&server, "g", Role::Participant, "Alice").await;
    let (mut bob, bob_id) = join(&server, "g", Role::Participant, "Bob").await;
    waiting_list_names(&mut therapist, 2).await;
    // A waiting participant cannot act at all, moderator or not.
    alice.send(&ClientMessage::Admit { participant_id: alice_id.clone() }).await.unwrap();
    expect_error(&mut alice, ErrorCode::Forbidden).await;
    alice.send(&ClientMessage::RaiseHand).await.unwrap();
    expect_error(&mut alice, ErrorCode::NotAdmitted).await;
    therapist.send(&ClientMessage::AdmitAll).await.unwrap();
    recv!(alice, ServerMessage::Admitted { .. });
    recv!(bob, ServerMessage::Admitted { .. });

    let actions = vec![
        ClientMessage::Admit { participant_id: bob_id.clone() },
        ClientMessage::AdmitAll,
        ClientMessage::Decline { participant_id: bob_id.clone(), r#final: false },
        ClientMessage::Mute { participant_id: bob_id.clone(), kind: MediaKind::Audio, hard: true },
        ClientMessage::Unmute { participant_id: bob_id.clone(), kind: MediaKind::Audio },
        ClientMessage::MuteAll { kind: MediaKind::Audio, hard: true },
        ClientMessage::Remove { participant_id: bob_id.clone() },
        ClientMessage::LockRoom { locked: true },
        ClientMessage::SetWaitingRoom { enabled: false },
        ClientMessage::Spotlight { participant_id: Some(alice_id.clone()) },
        ClientMessage::LowerHand { participant_id: Some(bob_id.clone()) },
        ClientMessage::EndSession { confirm: false, closing_message: None },
    ];
    for action in actions {
        let kind = action.kind();
        alice.send(&action).await.unwrap();
        match recv!(alice, ServerMessage::Error { .. }) {
            ServerMessage::Error { code, message } => {
                assert_eq!(code, ErrorCode::Forbidden, "{kind}");
                assert!(message.contains(kind), "{message}");
            }
            _ => unreachable!(),
        }
    }
    // Nothing changed: Bob is still here and unmuted, the room is unlocked, nobody was told
    // anything but Alice.
    let h = common::health(&server).await;
    assert_eq!(h["participants"], 3);
    bob.send(&ClientMessage::RaiseHand).await.unwrap();
    let participant = recv!(bob, ServerMessage::ParticipantUpdated { participant } => participant);
    assert!(participant.hand_raised && !participant.audio_hard_muted && !participant.audio_muted);
    let (_late, _) = join(&server, "g", Role::Participant, "Late").await; // not locked
    server.shutdown().await;
}

#[tokio::test]
async fn waiting_room_decline_lock_remove_and_end() {
    let server = common::start_server().await;
    let (mut therapist, therapist_id) = join(&server, "g", Role::Therapist, "Dr T").await;
    let (mut carol, carol_id) = join(&server, "g", Role::Participant, "Carol").await;
    assert_eq!(waiting_list_names(&mut therapist, 1).await, ["Carol"]);

    // Declined: told, then disconnected.
    therapist.send(&ClientMessage::Decline { participant_id: carol_id, r#final: false }).await.unwrap();
    let ended = recv!(carol, ServerMessage::SessionEnded { .. });
    assert!(matches!(ended, ServerMessage::SessionEnded { reason: EndReason::Declined, .. }));
    assert!(matches!(carol.recv().await, Ok(None) | Err(_)), "socket closed after decline");

    // Admitted then removed: cannot come back with the same participant id.
    let tok = common::token_for(&server, "g", Role::Participant, "Dan", "p-dan");
    let mut dan = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    dan.send(&join_msg("g", tok.clone())).await.unwrap();
    recv!(dan, ServerMessage::Joined { .. });
    therapist.send(&ClientMessage::Admit { participant_id: ParticipantId::from_trusted("p-dan") }).await.unwrap();
    recv!(dan, ServerMessage::Admitted { .. });
    therapist.send(&ClientMessage::Remove { participant_id: therapist_id.clone() }).await.unwrap();
    expect_error(&mut therapist, ErrorCode::Forbidden).await; // therapists cannot be removed
    therapist.send(&ClientMessage::Remove { participant_id: ParticipantId::from_trusted("p-dan") }).await.unwrap();
    let ended = recv!(dan, ServerMessage::SessionEnded { .. });
    assert!(matches!(ended, ServerMessage::SessionEnded { reason: EndReason::Removed, .. }));
    let left = recv!(therapist, ServerMessage::ParticipantLeft { .. });
    assert_eq!(left, ServerMessage::ParticipantLeft { participant_id: ParticipantId::from_trusted("p-dan") });
    let mut again = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    again.send(&join_msg("g", tok)).await.unwrap();
    expect_error(&mut again, ErrorCode::Banned).await;

    // Locked: nobody new, even with a valid token; a therapist still can.
    therapist.send(&ClientMessage::LockRoom { locked: true }).await.unwrap();
    let st = recv!(therapist, ServerMessage::RoomStateChanged { .. });
    assert!(matches!(st, ServerMessage::RoomStateChanged { room } if room.locked));
    let mut eve = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    eve.send(&join_msg("g", common::token(&server, "g", Role::Participant, "Eve"))).await.unwrap();
    expect_error(&mut eve, ErrorCode::RoomLocked).await;
    let (mut cotherapist, _) = join(&server, "g", Role::Therapist, "Dr U").await;
    recv!(cotherapist, ServerMessage::Admitted { .. });
    assert_eq!(common::health(&server).await["participants"], 2);

    // End for all: everyone is told; the room is gone.
    therapist.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    for c in [&mut therapist, &mut cotherapist] {
        let ended = recv!(c, ServerMessage::SessionEnded { .. });
        assert!(matches!(ended, ServerMessage::SessionEnded { reason: EndReason::Ended, .. }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let h = common::health(&server).await;
    assert_eq!((h["participants"].as_u64(), h["rooms"].as_u64()), (Some(0), Some(0)));

    // The audit log has every action, with ids only.
    let log = server.state().store.audit_log("g").await.unwrap();
    let actions: Vec<_> = log.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["decline", "admit", "remove", "lock", "end_session"]);
    assert!(log.iter().all(|r| r.actor == therapist_id.as_str()));
    let path = server.state().config.store.path.clone();
    server.shutdown().await;

    // ...and survives a restart.
    let mut config = common::test_config();
    config.store.path = path;
    let server = common::start_with(config).await;
    let log = server.state().store.audit_log("g").await.unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log[2].target.as_deref(), Some("p-dan"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_gets_no_media_and_hard_mute_stops_audio() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_server().await;
    let url = common::ws_url(&server);
    let t_opts = MediaOptions::light(&url, "m", "t").with_token(common::token(&server, "m", Role::Therapist, "Dr T"));
    let therapist = MediaClient::join(t_opts).await.unwrap();
    assert!(therapist.admitted);
    let p_opts = MediaOptions::light(&url, "m", "p").with_token(common::token(&server, "m", Role::Participant, "Pat"));
    let mut pat = MediaClient::join(p_opts).await.unwrap();
    assert!(!pat.admitted, "participants wait by default");
    let pat_id = pat.participant_id.clone();
    let t_id = therapist.participant_id.clone();

    // Over a measured window, the waiting participant neither receives nor is received.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pat.packets_from(&t_id, MediaKind::Audio) + pat.packets_from(&t_id, MediaKind::Video), 0);
    assert_eq!(therapist.packets_from(&pat_id, MediaKind::Audio), 0);

    therapist.send(ClientMessage::Admit { participant_id: pat_id.clone() });
    pat.wait_for("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.unwrap();
    let flowing = common::eventually(Duration::from_secs(10), || {
        pat.packets_from(&t_id, MediaKind::Video) > 5 && therapist.packets_from(&pat_id, MediaKind::Audio) > 10
    })
    .await;
    assert!(flowing, "media flows both ways after admission");

    // Hard mute: the audio stops reaching the therapist (the publisher keeps sending).
    therapist.send(ClientMessage::Mute { participant_id: pat_id.clone(), kind: MediaKind::Audio, hard: true });
    let m = pat.wait_for("muted", WAIT, |m| matches!(m, ServerMessage::MutedByModerator { .. })).await.unwrap();
    assert_eq!(m, ServerMessage::MutedByModerator { kind: MediaKind::Audio, hard: true });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = therapist.packets_from(&pat_id, MediaKind::Audio);
    let video_before = therapist.packets_from(&pat_id, MediaKind::Video);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(therapist.packets_from(&pat_id, MediaKind::Audio), before, "no audio while hard-muted");
    assert!(therapist.packets_from(&pat_id, MediaKind::Video) > video_before, "video still flows");
    // The participant cannot lift it.
    pat.send(ClientMessage::SetMute { kind: MediaKind::Audio, muted: false });
    let e = pat.wait_for("error", WAIT, |m| matches!(m, ServerMessage::Error { .. })).await.unwrap();
    assert!(matches!(e, ServerMessage::Error { code: ErrorCode::HardMuted, .. }));
    // The therapist can.
    therapist.send(ClientMessage::Unmute { participant_id: pat_id.clone(), kind: MediaKind::Audio });
    pat.wait_for("unmuted", WAIT, |m| matches!(m, ServerMessage::UnmutedByModerator { .. })).await.unwrap();
    let resumed = common::eventually(Duration::from_secs(5), || therapist.packets_from(&pat_id, MediaKind::Audio) > before + 10).await;
    assert!(resumed, "audio resumes after unmute");
    pat.leave().await;
    therapist.leave().await;
    server.shutdown().await;
}

#[tokio::test]
async fn message_and_join_rate_limits() {
    let mut config = common::test_config();
    config.limits.messages_per_second = 5;
    config.limits.message_burst = 5;
    config.limits.joins_per_minute_per_ip = 3;
    let server = common::start_with(config).await;
    let mut c = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    for i in 0..20 {
        c.send(&ClientMessage::Ping { nonce: Some(i) }).await.unwrap();
    }
    expect_error(&mut c, ErrorCode::RateLimited).await;

    let url = common::ws_url(&server);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let mut j = SignalClient::connect(&url).await.unwrap();
        j.send(&join_msg("g", String::new())).await.unwrap();
        if let ServerMessage::Error { code, .. } = recv!(j, ServerMessage::Error { .. }) {
            codes.push(code);
        }
    }
    assert_eq!(codes, [ErrorCode::TokenMissing, ErrorCode::TokenMissing, ErrorCode::TokenMissing, ErrorCode::RateLimited]);
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_keeps_admission_and_hard_mute() {
    let server = common::start_server().await;
    let (mut therapist, _) = join(&server, "g", Role::Therapist, "Dr T").await;
    let tok = common::token_for(&server, "g", Role::Participant, "Ivy", "p-ivy");
    let ivy_id = ParticipantId::from_trusted("p-ivy");
    let mut ivy = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    ivy.send(&join_msg("g", tok.clone())).await.unwrap();
    recv!(ivy, ServerMessage::Joined { admitted: false, .. });
    therapist.send(&ClientMessage::Admit { participant_id: ivy_id.clone() }).await.unwrap();
    recv!(ivy, ServerMessage::Admitted { .. });
    therapist.send(&ClientMessage::Mute { participant_id: ivy_id.clone(), kind: MediaKind::Audio, hard: true }).await.unwrap();
    recv!(ivy, ServerMessage::MutedByModerator { .. });
    therapist.send(&ClientMessage::LockRoom { locked: true }).await.unwrap();
    recv!(therapist, ServerMessage::RoomStateChanged { .. });

    // The page reloads: a new socket, the same participant id, a locked room.
    drop(ivy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ivy = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    ivy.send(&join_msg("g", tok)).await.unwrap();
    let joined = recv!(ivy, ServerMessage::Joined { .. } | ServerMessage::Error { .. });
    assert!(matches!(joined, ServerMessage::Joined { admitted: true, .. }), "straight back in: {joined:?}");
    let ServerMessage::Admitted { participants, .. } = recv!(ivy, ServerMessage::Admitted { .. }) else { unreachable!() };
    let me = participants.iter().find(|p| p.id == ivy_id).expect("in the roster");
    assert!(me.audio_hard_muted && me.audio_muted, "the hard mute outlives the reload");
    ivy.send(&ClientMessage::SetMute { kind: MediaKind::Audio, muted: false }).await.unwrap();
    expect_error(&mut ivy, ErrorCode::HardMuted).await;
    server.shutdown().await;
}

/// Receives on `c` (bounded), keeping every frame in `log`, until one matches `pred`.
async fn recv_logged(c: &mut SignalClient, log: &mut Vec<String>, what: &str, pred: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(received) = tokio::time::timeout(left, c.recv()).await else { panic!("no {what} in time") };
        let m = received.unwrap().unwrap_or_else(|| panic!("socket closed before {what}"));
        log.push(serde_json::to_string(&m).unwrap());
        if pred(&m) {
            return m;
        }
    }
}

/// A family guest minted through `/api/tokens` waits as their sponsor's guest, is admitted only
/// into the family space the therapist opens, and leaves when it closes. The group goes on
/// meanwhile (a member publishing audio and video, chatting, spotlighted, polled); over every
/// frame the guest's socket received, no other member's id, name, track or message appears.
#[tokio::test]
async fn a_family_guest_receives_nothing_of_the_rest_of_the_group() {
    let _machine = common::machine(common::Load::Media).await;
    let mut config = common::test_config();
    config.auth.api_key = "an-api-key-for-the-tests-0123456789".into();
    config.rooms.waiting_room = false;
    let server = common::start_with(config).await;
    let room = "fam";
    let mut t = common::join(&server, room, Role::Therapist, "Dr T", "therapist-0").await;
    let mut sponsor = common::join(&server, room, Role::Participant, "Sam Sponsor", "sponsor-1").await;
    // The other member publishes media: a track of theirs would show in an offer to the guest.
    let mut other = common::join_media(&server, room, Role::Participant, "other-2").await;

    let headers = [("Authorization", "Bearer an-api-key-for-the-tests-0123456789"), ("Content-Type", "application/json")];
    let body = r#"{"room":"fam","role":"familyGuest","name":"Gail Guest","sponsor":"sponsor-1","ttlSeconds":3600}"#;
    let (status, minted) = common::http(server.addr(), "POST", "/api/tokens", &headers, body).await;
    assert_eq!(status, 200, "{minted}");
    let minted: serde_json::Value = serde_json::from_str(&minted).unwrap();
    let no_sponsor = r#"{"room":"fam","role":"familyGuest","name":"Gail Guest"}"#;
    assert_eq!(common::http(server.addr(), "POST", "/api/tokens", &headers, no_sponsor).await.0, 400, "a guest needs a sponsor");
    let too_long = r#"{"room":"fam","role":"familyGuest","name":"Gail Guest","sponsor":"sponsor-1","ttlSeconds":86400}"#;
    assert_eq!(common::http(server.addr(), "POST", "/api/tokens", &headers, too_long).await.0, 400, "a guest's link is short");

    let mut log = Vec::new();
    let mut guest = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    guest.send(&join_msg(room, minted["token"].as_str().unwrap().to_string())).await.unwrap();
    let guest_id = match recv_logged(&mut guest, &mut log, "joined", |m| matches!(m, ServerMessage::Joined { .. })).await {
        ServerMessage::Joined { participant_id, admitted, .. } => {
            assert!(!admitted, "a guest always waits, waiting room or not");
            participant_id
        }
        _ => unreachable!(),
    };
    let listed = t
        .recv_until(
            "the guest listed",
            WAIT,
            |m| matches!(m, ServerMessage::WaitingList { waiting } if waiting.iter().any(|w| w.id == guest_id)),
        )
        .await
        .unwrap();
    let ServerMessage::WaitingList { waiting } = listed else { unreachable!() };
    let entry = waiting.iter().find(|w| w.id == guest_id).unwrap();
    assert_eq!((entry.role, entry.sponsor_name.as_deref()), (Role::FamilyGuest, Some("Sam Sponsor")), "Guest of Sam Sponsor");

    // No family space yet: admitting the guest is refused and they keep waiting; a participant
    // may not open one.
    t.send(&ClientMessage::Admit { participant_id: guest_id.clone() }).await.unwrap();
    expect_error(&mut t, ErrorCode::InvalidField).await;
    sponsor.send(&ClientMessage::OpenFamilySpace { sponsor_id: common::pid("sponsor-1") }).await.unwrap();
    expect_error(&mut sponsor, ErrorCode::Forbidden).await;

    t.send(&ClientMessage::OpenFamilySpace { sponsor_id: common::pid("sponsor-1") }).await.unwrap();
    recv!(sponsor, ServerMessage::SpaceChanged { breakout: Some(_), .. });
    t.send(&ClientMessage::Admit { participant_id: guest_id.clone() }).await.unwrap();
    let admitted = recv_logged(&mut guest, &mut log, "admitted", |m| matches!(m, ServerMessage::Admitted { .. })).await;
    let ServerMessage::Admitted { participants, .. } = admitted else { unreachable!() };
    let mut roster: Vec<_> = participants.iter().map(|p| p.id.to_string()).collect();
    roster.sort();
    let mut expected = vec![guest_id.to_string(), "sponsor-1".to_string(), "therapist-0".to_string()];
    expected.sort();
    assert_eq!(roster, expected, "the family space: the guest, their sponsor and the therapist who opened it");

    // The group goes on without them.
    other.send(ClientMessage::Chat { text: "something only the group hears".into(), to: None });
    other.wait_for("own chat", WAIT, |m| matches!(m, ServerMessage::ChatMessage { .. })).await.unwrap();
    other.send(ClientMessage::RaiseHand);
    other.send(ClientMessage::Chat { text: "psst".into(), to: Some(guest_id.clone()) });
    other.wait_for("refused", WAIT, |m| matches!(m, ServerMessage::Error { code: ErrorCode::Forbidden, .. })).await.unwrap();
    let mut t2 = common::join(&server, room, Role::Therapist, "Dr Two", "therapist-9").await;
    t2.send(&ClientMessage::Spotlight { participant_id: Some(common::pid("other-2")) }).await.unwrap();
    recv!(t2, ServerMessage::RoomStateChanged { .. });
    // The guest may not write privately to another member, vote, nor share a screen.
    guest.send(&ClientMessage::Chat { text: "hi".into(), to: Some(common::pid("other-2")) }).await.unwrap();
    recv_logged(&mut guest, &mut log, "forbidden", |m| matches!(m, ServerMessage::Error { code: ErrorCode::Forbidden, .. })).await;
    guest.send(&ClientMessage::Chat { text: "hello family".into(), to: None }).await.unwrap();
    recv_logged(&mut guest, &mut log, "own chat", |m| matches!(m, ServerMessage::ChatMessage { .. })).await;
    recv!(sponsor, ServerMessage::ChatMessage(c) if c.text == "hello family");

    t.send(&ClientMessage::CloseFamilySpace { sponsor_id: common::pid("sponsor-1") }).await.unwrap();
    recv_logged(&mut guest, &mut log, "session ended", |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
    recv!(sponsor, ServerMessage::SpaceChanged { breakout: None, .. });
    // Whatever else reached the guest's socket before it closed.
    while let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_millis(500), guest.recv()).await {
        log.push(serde_json::to_string(&m).unwrap());
    }
    assert!(log.iter().any(|m| m.contains("\"spaceChanged\"") && m.contains("Family space")), "the guest was in the family space");
    for frame in &log {
        for secret in ["other-2", "therapist-9", "Dr Two", "something only the group hears", "psst"] {
            assert!(!frame.contains(secret), "the guest received `{secret}`: {frame}");
        }
    }
    let audit = server.state().store.audit_log(room).await.unwrap();
    let open = audit.iter().find(|r| r.action == "family_space_open").expect("audited");
    assert_eq!(open.actor_role.as_deref(), Some("therapist"));
    other.close().await;
    server.shutdown().await;
}

/// A co-facilitator minted through the CLI admits from the waiting room and asks to mute, is
/// refused a removal, and the audit log says which role acted.
#[tokio::test]
async fn a_co_facilitator_admits_and_the_audit_log_records_their_role() {
    let server = common::start_server().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["token", "--room", "co", "--role", "coFacilitator", "--name", "Chris Co", "--participant", "co-1"])
        .env("HEARTH_STORE__PATH", common::unique_temp_path("hearth-token-cli", "db"))
        .env("HEARTH_AUTH__TOKEN_SECRET", &server.state().config.auth.token_secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut c = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    c.send(&join_msg("co", token)).await.unwrap();
    recv!(c, ServerMessage::Admitted { .. });
    let (_p, p_id) = join(&server, "co", Role::Participant, "Pat").await;
    recv!(c, ServerMessage::WaitingList { waiting } if !waiting.is_empty());
    c.send(&ClientMessage::Admit { participant_id: p_id.clone() }).await.unwrap();
    recv!(c, ServerMessage::ParticipantJoined { .. });
    c.send(&ClientMessage::Remove { participant_id: p_id.clone() }).await.unwrap();
    let why = expect_error(&mut c, ErrorCode::Forbidden).await;
    assert!(why.contains("coFacilitator"), "{why}");
    c.send(&ClientMessage::Mute { participant_id: p_id.clone(), kind: MediaKind::Audio, hard: false }).await.unwrap();
    recv!(c, ServerMessage::ParticipantUpdated { participant } if participant.audio_muted);
    let store = server.state().store.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let rows = loop {
        let rows = store.audit_log("co").await.unwrap();
        if rows.iter().any(|r| r.action == "ask_mute_audio") || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let admit = rows.iter().find(|r| r.action == "admit").expect("admit audited");
    assert_eq!((admit.actor.as_str(), admit.actor_role.as_deref()), ("co-1", Some("coFacilitator")));
    assert!(!rows.iter().any(|r| r.action == "remove"));
    server.shutdown().await;
}

/// `rooms.co_facilitator_withhold` narrows what co-facilitators may do (here: admit, and with
/// it admitAll), and a row
/// they never have (remove) stops the server at start-up with the reason.
#[tokio::test]
async fn a_deployment_narrows_co_facilitators_and_cannot_widen_them() {
    let mut config = common::test_config();
    config.rooms.co_facilitator_withhold = vec!["remove".into()];
    let err = hearth::server::start(config).await.err().expect("refused at start-up").to_string();
    assert!(err.contains("co_facilitator_withhold") && err.contains("remove"), "{err}");

    let mut config = common::test_config();
    config.rooms.co_facilitator_withhold = vec!["admit".into()];
    let server = common::start_with(config).await;
    let mut t = common::join(&server, "narrow", Role::Therapist, "Dr T", "t-1").await;
    let mut c = common::join(&server, "narrow", Role::CoFacilitator, "Chris Co", "co-1").await;
    let (_p, p_id) = join(&server, "narrow", Role::Participant, "Pat").await;
    recv!(c, ServerMessage::WaitingList { waiting } if !waiting.is_empty());
    c.send(&ClientMessage::Admit { participant_id: p_id.clone() }).await.unwrap();
    expect_error(&mut c, ErrorCode::Forbidden).await;
    // Withholding `admit` withholds admitting everyone at once too: no side door.
    c.send(&ClientMessage::AdmitAll).await.unwrap();
    expect_error(&mut c, ErrorCode::Forbidden).await;
    t.send(&ClientMessage::Admit { participant_id: p_id.clone() }).await.unwrap();
    recv!(t, ServerMessage::ParticipantJoined { .. });
    server.shutdown().await;
}

/// Support requests reach peer-support staff only while a therapist routes them there; the
/// co-facilitator gets them always.
#[tokio::test]
async fn support_requests_reach_peer_support_staff_when_the_therapist_routes_them() {
    let server = common::start_open_server().await;
    let room = "peers";
    let mut t = common::join(&server, room, Role::Therapist, "Dr T", "t-1").await;
    let mut c = common::join(&server, room, Role::CoFacilitator, "Chris Co", "co-1").await;
    let mut s = common::join(&server, room, Role::PeerSupport, "Sasha Peer", "peer-1").await;
    let mut p = common::join(&server, room, Role::Participant, "Pat", "p-1").await;
    let mut q = common::join(&server, room, Role::Participant, "Quinn", "q-1").await;
    let requested = |m: &ServerMessage| matches!(m, ServerMessage::SupportRequested { .. });
    p.send(&ClientMessage::RequestSupport).await.unwrap();
    t.recv_until("p's request", WAIT, requested).await.unwrap();
    c.recv_until("p's request, co-facilitator", WAIT, requested).await.unwrap();
    // Peer support may not route requests to themselves.
    s.send(&ClientMessage::RouteSupport { peer_support: true }).await.unwrap();
    expect_error(&mut s, ErrorCode::Forbidden).await;
    t.send(&ClientMessage::RouteSupport { peer_support: true }).await.unwrap();
    recv!(s, ServerMessage::SupportRequests { requests, peer_support: true } if requests.len() == 1);
    // Both staff see the routing (a second therapist's page shows the switch as it is).
    recv!(t, ServerMessage::SupportRequests { peer_support: true, .. });
    recv!(c, ServerMessage::SupportRequests { peer_support: true, .. });
    q.send(&ClientMessage::RequestSupport).await.unwrap();
    let alert = s.recv_until("q's request, peer support", WAIT, requested).await.unwrap();
    assert!(matches!(alert, ServerMessage::SupportRequested { participant_id, .. } if participant_id.as_str() == "q-1"));
    // Routed back to staff: peer support is shown nothing, the therapist sees the switch off.
    t.send(&ClientMessage::RouteSupport { peer_support: false }).await.unwrap();
    recv!(s, ServerMessage::SupportRequests { requests, peer_support: false } if requests.is_empty());
    recv!(t, ServerMessage::SupportRequests { requests, peer_support: false } if requests.len() == 2);
    server.shutdown().await;
}
