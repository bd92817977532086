//! Chat and "I need support" through the real server: scope, privacy, refusals, delete,
//! transcript, support alerts and the one-action private room (media isolation with webrtc peers).
//!
//! "Did not receive" is proved with a barrier, not a sleep: a therapist's no-op
//! `setChatSettings` makes the room send `chatSettings` to everyone admitted, and the room task
//! sends in order, so whatever a client has not seen before that `chatSettings` it never gets.

use crate::common;

use common::{expect_error, pid, WAIT};

use std::collections::HashMap;
use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions, SignalClient};
use hearth::room::ParticipantId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{
    BreakoutRef, ChatEntry, ChatMessageId, ChatSettings, ClientMessage, ErrorCode, MediaKind, ServerMessage, SupportDelivery,
};

const ROOM: &str = "chat";

/// Joins an open room and reads up to the `chatSettings` sent on admission (a `chatHistory`,
/// when there is one, comes right after it and is left unread).
async fn join(server: &RunningServer, role: Role, name: &str, id: &str) -> SignalClient {
    common::join_upto(server, ROOM, role, name, id, "chatSettings").await
}

fn say(text: &str) -> ClientMessage {
    ClientMessage::Chat { text: text.into(), to: None }
}

fn whisper(text: &str, to: &str) -> ClientMessage {
    ClientMessage::Chat { text: text.into(), to: Some(pid(to)) }
}

fn no_change() -> ClientMessage {
    ClientMessage::SetChatSettings { enabled: None, private_messages: None, keep_transcript: None }
}

/// Everything `c` receives up to the next `chatSettings` (excluded).
async fn drain(c: &mut SignalClient) -> Vec<ServerMessage> {
    let mut seen = Vec::new();
    loop {
        match c.recv_until("chatSettings barrier", WAIT, |_| true).await.unwrap() {
            ServerMessage::ChatSettings(_) => return seen,
            m => seen.push(m),
        }
    }
}

/// The therapist `t` sets a barrier; returns what each of `clients` received before it.
async fn barrier(t: &mut SignalClient, clients: &mut [&mut SignalClient]) -> (Vec<ServerMessage>, Vec<Vec<ServerMessage>>) {
    t.send(&no_change()).await.unwrap();
    let mine = drain(t).await;
    let mut theirs = Vec::new();
    for c in clients.iter_mut() {
        theirs.push(drain(c).await);
    }
    (mine, theirs)
}

fn chats(seen: &[ServerMessage]) -> Vec<&ChatEntry> {
    seen.iter()
        .filter_map(|m| match m {
            ServerMessage::ChatMessage(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn texts(seen: &[ServerMessage]) -> Vec<&str> {
    chats(seen).into_iter().map(|e| e.text.plain().unwrap_or_default()).collect()
}

async fn next_chat(c: &mut SignalClient) -> ChatEntry {
    match recv!(c, ServerMessage::ChatMessage(_)) {
        ServerMessage::ChatMessage(e) => e,
        _ => unreachable!(),
    }
}

async fn space_changed(c: &mut SignalClient) -> Option<BreakoutRef> {
    match recv!(c, ServerMessage::SpaceChanged { .. }) {
        ServerMessage::SpaceChanged { breakout, .. } => breakout,
        _ => unreachable!(),
    }
}

/// Creates breakouts and opens them with `assign` (participant id, breakout index).
async fn open_breakouts(t: &mut SignalClient, names: &[&str], assign: &[(&str, usize)]) -> Vec<String> {
    for n in names {
        t.send(&ClientMessage::CreateBreakout { name: n.to_string() }).await.unwrap();
    }
    let ids = loop {
        let breakouts = recv!(t, ServerMessage::BreakoutsUpdated { breakouts } => breakouts);
        if breakouts.rooms.len() == names.len() {
            break breakouts.rooms.into_iter().map(|r| r.id).collect::<Vec<_>>();
        }
    };
    for (p, i) in assign {
        t.send(&ClientMessage::AssignBreakout { participant_id: pid(p), breakout_id: Some(ids[*i].clone()) }).await.unwrap();
    }
    t.send(&ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false }).await.unwrap();
    ids
}

#[tokio::test]
async fn chat_reaches_only_the_senders_space_and_private_only_its_target() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr T", "t").await;
    let mut p1 = join(&server, Role::Participant, "One", "p1").await;
    let mut p2 = join(&server, Role::Participant, "Two", "p2").await;
    let mut p3 = join(&server, Role::Participant, "Three", "p3").await;
    let mut p4 = join(&server, Role::Participant, "Four", "p4").await;
    // Garden: p1, p2. Library: p3. The main room: t, p4.
    let ids = open_breakouts(&mut t, &["Garden", "Library"], &[("p1", 0), ("p2", 0), ("p3", 1)]).await;
    for (c, b) in [(&mut p1, 0), (&mut p2, 0), (&mut p3, 1)] {
        assert_eq!(space_changed(c).await.map(|b| b.id), Some(ids[b].clone()));
    }

    p1.send(&say("hello garden")).await.unwrap();
    t.send(&say("hello main room")).await.unwrap();
    let (seen_t, seen) = barrier(&mut t, &mut [&mut p1, &mut p2, &mut p3, &mut p4]).await;
    assert_eq!(texts(&seen_t), ["hello main room"], "the therapist in the main room");
    assert_eq!(texts(&seen[0]), ["hello garden"], "p1 sees its own message");
    assert_eq!(texts(&seen[1]), ["hello garden"], "p2 shares the breakout");
    assert!(texts(&seen[2]).is_empty(), "p3 is in another breakout");
    assert_eq!(texts(&seen[3]), ["hello main room"], "p4 is in the main room");
    let e = chats(&seen[1])[0];
    assert_eq!((e.from.as_str(), e.from_name.as_str(), e.private, e.to.is_none()), ("p1", "One", false, true));

    // Participant to participant: refused until the therapist allows it.
    p1.send(&whisper("psst", "p2")).await.unwrap();
    expect_error(&mut p1, ErrorCode::PrivateMessagesOff).await;
    // Participant to therapist: always, even across spaces.
    p1.send(&whisper("can we talk later?", "t")).await.unwrap();
    let (seen_t, seen) = barrier(&mut t, &mut [&mut p1, &mut p2, &mut p3, &mut p4]).await;
    let got = chats(&seen_t);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].text.plain().unwrap_or_default(), got[0].private, got[0].to.as_ref()),
        ("can we talk later?", true, Some(&pid("t")))
    );
    assert_eq!(texts(&seen[0]), ["can we talk later?"], "the sender gets its copy");
    for s in &seen[1..] {
        assert!(texts(s).is_empty(), "nobody else sees a private message");
    }

    t.send(&ClientMessage::SetChatSettings { enabled: None, private_messages: Some(true), keep_transcript: None }).await.unwrap();
    for c in [&mut t, &mut p1, &mut p2, &mut p3, &mut p4] {
        let m = recv!(c, ServerMessage::ChatSettings(_));
        assert_eq!(m, ServerMessage::ChatSettings(ChatSettings { enabled: true, private_messages: true, keep_transcript: false }));
    }
    p1.send(&whisper("psst", "p2")).await.unwrap();
    // Still not across spaces.
    p1.send(&whisper("hi library", "p3")).await.unwrap();
    expect_error(&mut p1, ErrorCode::UnknownParticipant).await;
    let (seen_t, seen) = barrier(&mut t, &mut [&mut p1, &mut p2, &mut p3, &mut p4]).await;
    assert!(texts(&seen_t).is_empty(), "a private message between participants is not copied to the therapist");
    assert_eq!(texts(&seen[1]), ["psst"]);
    assert!(chats(&seen[1])[0].private);
    assert!(texts(&seen[2]).is_empty() && texts(&seen[3]).is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_settings_and_delete_for_everyone() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr T", "t").await;
    let mut p1 = join(&server, Role::Participant, "One", "p1").await;
    let mut p2 = join(&server, Role::Participant, "Two", "p2").await;

    // Length: trimmed, never empty, at most 1000 characters.
    p1.send(&say("   ")).await.unwrap();
    expect_error(&mut p1, ErrorCode::InvalidChat).await;
    p1.send(&say(&"a".repeat(1001))).await.unwrap();
    expect_error(&mut p1, ErrorCode::InvalidChat).await;
    p1.send(&say(&format!("  {}  ", "é".repeat(1000)))).await.unwrap();
    assert_eq!(next_chat(&mut p2).await.text.plain().unwrap_or_default().chars().count(), 1000, "1000 characters, trimmed, are fine");
    // Markup is carried as text, untouched: the client renders it with textContent.
    p1.send(&say("<b>bold</b> & <script>x</script>")).await.unwrap();
    assert_eq!(next_chat(&mut p2).await.text, "<b>bold</b> & <script>x</script>");

    // Rate: five in the window, the sixth refused.
    for i in 0..6 {
        p2.send(&say(&format!("quick {i}"))).await.unwrap();
    }
    expect_error(&mut p2, ErrorCode::RateLimited).await;
    let (_, seen) = barrier(&mut t, &mut [&mut p1, &mut p2]).await;
    assert_eq!(texts(&seen[0]).iter().filter(|t| t.starts_with("quick")).count(), 5);

    // Participants cannot change settings or delete.
    for msg in [no_change(), ClientMessage::DeleteChatMessage { message_id: ChatMessageId::from_raw("m-1") }] {
        p1.send(&msg).await.unwrap();
        expect_error(&mut p1, ErrorCode::Forbidden).await;
    }

    // Delete for everyone who received it (and only them).
    p1.send(&say("I regret this")).await.unwrap();
    let public = next_chat(&mut t).await;
    // (From p1: p2 may still be over its rate limit.)
    p1.send(&whisper("just to you", "t")).await.unwrap();
    let private = next_chat(&mut t).await;
    t.send(&ClientMessage::DeleteChatMessage { message_id: public.id.clone() }).await.unwrap();
    t.send(&ClientMessage::DeleteChatMessage { message_id: private.id.clone() }).await.unwrap();
    t.send(&ClientMessage::DeleteChatMessage { message_id: public.id.clone() }).await.unwrap();
    expect_error(&mut t, ErrorCode::UnknownChatMessage).await;
    let deleted = |seen: &[ServerMessage]| -> Vec<ChatMessageId> {
        seen.iter()
            .filter_map(|m| match m {
                ServerMessage::ChatMessageDeleted { message_id } => Some(message_id.clone()),
                _ => None,
            })
            .collect()
    };
    let (_, seen) = barrier(&mut t, &mut [&mut p1, &mut p2]).await;
    assert_eq!(deleted(&seen[0]), [public.id.clone(), private.id.clone()]);
    assert_eq!(deleted(&seen[1]), std::slice::from_ref(&public.id), "p2 never had the private one");

    // Chat off: participants are refused, the therapist may still post.
    t.send(&ClientMessage::SetChatSettings { enabled: Some(false), private_messages: None, keep_transcript: None }).await.unwrap();
    let m = recv!(p1, ServerMessage::ChatSettings(_));
    assert!(matches!(m, ServerMessage::ChatSettings(ChatSettings { enabled: false, .. })));
    p1.send(&say("anyone?")).await.unwrap();
    expect_error(&mut p1, ErrorCode::ChatDisabled).await;
    p1.send(&whisper("anyone?", "t")).await.unwrap();
    expect_error(&mut p1, ErrorCode::ChatDisabled).await;
    t.send(&say("We will pause the chat for now.")).await.unwrap();
    assert_eq!(next_chat(&mut p1).await.text, "We will pause the chat for now.");
    server.shutdown().await;
}

#[tokio::test]
async fn late_joiners_get_history_only_when_the_transcript_is_kept() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr T", "t").await;
    let mut p1 = join(&server, Role::Participant, "One", "p1").await;
    p1.send(&say("marigold-7731 said before anyone came")).await.unwrap();
    next_chat(&mut t).await;

    // Ephemeral by default: a late joiner gets no history.
    let mut p2 = join(&server, Role::Participant, "Two", "p2").await;
    p1.send(&say("after p2 came")).await.unwrap();
    let (_, seen) = barrier(&mut t, &mut [&mut p2]).await;
    assert!(!seen[0].iter().any(|m| matches!(m, ServerMessage::ChatHistory { .. })), "no history without keepTranscript");
    assert_eq!(texts(&seen[0]), ["after p2 came"]);

    // Kept: a later joiner gets what was said since, without others' private messages.
    t.send(&ClientMessage::SetChatSettings { enabled: None, private_messages: None, keep_transcript: Some(true) }).await.unwrap();
    p1.send(&say("kept one")).await.unwrap();
    p1.send(&whisper("kept, but private", "t")).await.unwrap();
    let (_, _) = barrier(&mut t, &mut [&mut p1, &mut p2]).await;
    let mut p3 = join(&server, Role::Participant, "Three", "p3").await;
    let history = match recv!(p3, ServerMessage::ChatHistory { .. }) {
        ServerMessage::ChatHistory { messages } => messages,
        _ => unreachable!(),
    };
    assert_eq!(history.iter().map(|e| e.text.plain().unwrap_or_default()).collect::<Vec<_>>(), ["kept one"]);
    // p1 reconnects and gets its own private message too.
    let mut p1 = join(&server, Role::Participant, "One", "p1").await;
    let history = match recv!(p1, ServerMessage::ChatHistory { .. }) {
        ServerMessage::ChatHistory { messages } => messages,
        _ => unreachable!(),
    };
    assert_eq!(history.iter().map(|e| e.text.plain().unwrap_or_default()).collect::<Vec<_>>(), ["kept one", "kept, but private"]);

    // Turning it off forgets the transcript.
    t.send(&ClientMessage::SetChatSettings { enabled: None, private_messages: None, keep_transcript: Some(false) }).await.unwrap();
    recv!(t, ServerMessage::ChatSettings(_));
    let mut p4 = join(&server, Role::Participant, "Four", "p4").await;
    let (_, seen) = barrier(&mut t, &mut [&mut p4]).await;
    assert!(!seen[0].iter().any(|m| matches!(m, ServerMessage::ChatHistory { .. })));
    drop((p1, p3));

    // Nothing said in chat reached the disk.
    let path = server.state().config.store.path.clone();
    server.shutdown().await;
    let dir = path.parent().unwrap();
    let stem = path.file_name().unwrap().to_string_lossy().to_string();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&stem) {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            assert!(!bytes.windows(13).any(|w| w == b"marigold-7731"), "chat text found in {:?}", entry.path());
        }
    }
}

#[tokio::test]
async fn support_requests_reach_therapists_only() {
    let server = common::start_open_server().await;
    let mut t1 = join(&server, Role::Therapist, "Dr T", "t1").await;
    let mut t2 = join(&server, Role::Therapist, "Co T", "t2").await;
    let mut p1 = join(&server, Role::Participant, "One", "p1").await;
    let mut p2 = join(&server, Role::Participant, "Two", "p2").await;
    let mut o = join(&server, Role::Observer, "Watcher", "o").await;

    p1.send(&ClientMessage::RequestSupport).await.unwrap();
    let (seen_t1, mut seen) = barrier(&mut t1, &mut [&mut t2, &mut p1, &mut p2, &mut o]).await;
    // Roster news of later joiners is queued too; only support messages matter here.
    let support = |m: &ServerMessage| {
        matches!(m, ServerMessage::SupportRequested { .. } | ServerMessage::SupportStatus { .. } | ServerMessage::SupportRequests { .. })
    };
    for s in seen.iter_mut() {
        s.retain(support);
    }
    let alert = |seen: &[ServerMessage]| -> Vec<ServerMessage> {
        seen.iter().filter(|m| matches!(m, ServerMessage::SupportRequested { .. })).cloned().collect()
    };
    let [ServerMessage::SupportRequested { request_id, participant_id, name, breakout_id, at_ms }] = &alert(&seen_t1)[..] else {
        panic!("the therapist is alerted once: {seen_t1:?}")
    };
    assert_eq!((participant_id.as_str(), name.as_str(), breakout_id.as_deref()), ("p1", "One", None));
    assert!(*at_ms > 0);
    assert_eq!(alert(&seen[0]).len(), 1, "the co-therapist too");
    let [ServerMessage::SupportStatus { request_id: told, delivery: SupportDelivery::Alerted, resources_text }] = &seen[1][..] else {
        panic!("the requester: where the request stands, nothing more: {:?}", seen[1])
    };
    assert_eq!(told, request_id);
    assert!(!resources_text.is_empty(), "with the crisis resources");
    assert!(seen[2].is_empty(), "another participant hears nothing: {:?}", seen[2]);
    assert!(seen[3].is_empty(), "an observer hears nothing: {:?}", seen[3]);

    t1.send(&ClientMessage::RequestSupport).await.unwrap();
    expect_error(&mut t1, ErrorCode::Forbidden).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.state().store.audit_log(ROOM).await.unwrap();
    let support: Vec<_> = log.iter().filter(|r| r.action == "support_request").collect();
    assert_eq!(support.len(), 1);
    assert_eq!((support[0].actor.as_str(), support[0].target.as_deref()), ("p1", None), "ids only");
    server.shutdown().await;
}

#[tokio::test]
async fn private_room_controls_with_breakouts() {
    let server = common::start_open_server().await;
    let mut t = join(&server, Role::Therapist, "Dr T", "t").await;
    let mut p1 = join(&server, Role::Participant, "One", "p1").await;
    let mut p2 = join(&server, Role::Participant, "Two", "p2").await;
    let ids = open_breakouts(&mut t, &["Garden"], &[("p1", 0), ("p2", 0)]).await;
    space_changed(&mut p1).await;
    space_changed(&mut p2).await;

    p1.send(&ClientMessage::OpenPrivateRoom { participant_id: pid("p2") }).await.unwrap();
    expect_error(&mut p1, ErrorCode::Forbidden).await;
    t.send(&ClientMessage::OpenPrivateRoom { participant_id: pid("t") }).await.unwrap();
    expect_error(&mut t, ErrorCode::UnknownParticipant).await;

    t.send(&ClientMessage::OpenPrivateRoom { participant_id: pid("p1") }).await.unwrap();
    let room = space_changed(&mut t).await.expect("the therapist moved");
    assert_eq!(room.name, "Private room");
    assert!(room.id.starts_with("private-"));
    assert_eq!(space_changed(&mut p1).await, Some(room.clone()));
    let plan = recv!(t, ServerMessage::BreakoutsUpdated { .. });
    let ServerMessage::BreakoutsUpdated { breakouts } = plan else { unreachable!() };
    assert_eq!(breakouts.rooms.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids, "not listed among the breakouts");
    t.send(&ClientMessage::OpenPrivateRoom { participant_id: pid("p2") }).await.unwrap();
    expect_error(&mut t, ErrorCode::PrivateRoomBusy).await;

    // Chat in the private room stays between the two.
    p1.send(&say("thank you for coming")).await.unwrap();
    p2.send(&say("still in the garden")).await.unwrap();
    let (seen_t, seen) = barrier(&mut t, &mut [&mut p1, &mut p2]).await;
    assert_eq!(texts(&seen_t), ["thank you for coming"]);
    assert_eq!(texts(&seen[0]), ["thank you for coming"]);
    assert_eq!(texts(&seen[1]), ["still in the garden"]);

    // Closing returns p1 to its breakout and the therapist to the main room.
    t.send(&ClientMessage::ClosePrivateRoom { space_id: "private-99".into() }).await.unwrap();
    expect_error(&mut t, ErrorCode::UnknownPrivateRoom).await;
    t.send(&ClientMessage::ClosePrivateRoom { space_id: room.id.clone() }).await.unwrap();
    assert_eq!(space_changed(&mut p1).await.map(|b| b.id), Some(ids[0].clone()));
    assert_eq!(space_changed(&mut t).await, None);

    // If the therapist leaves a private room, the participant is not left alone in it.
    t.send(&ClientMessage::OpenPrivateRoom { participant_id: pid("p2") }).await.unwrap();
    assert!(space_changed(&mut p2).await.is_some_and(|b| b.id.starts_with("private-")));
    t.send(&ClientMessage::Leave).await.unwrap();
    assert_eq!(space_changed(&mut p2).await.map(|b| b.id), Some(ids[0].clone()));

    let log = server.state().store.audit_log(ROOM).await.unwrap();
    assert!(log.iter().any(|r| r.action == "private_room_open" && r.target.as_deref() == Some("p1")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_action_private_room_isolates_media() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let client = |role: Role, name: &str, id: &str| {
        let token = common::token_for(&server, ROOM, role, name, id);
        MediaClient::join(MediaOptions::light(&url, ROOM, id).with_token(token))
    };
    let mut t = client(Role::Therapist, "Dr T", "t").await.unwrap();
    let mut p1 = client(Role::Participant, "One", "p1").await.unwrap();
    let mut p2 = client(Role::Participant, "Two", "p2").await.unwrap();
    let mut p3 = client(Role::Participant, "Three", "p3").await.unwrap();
    let all = [pid("t"), pid("p1"), pid("p2"), pid("p3")];
    let total = |c: &MediaClient, p: &ParticipantId| c.packets_from(p, MediaKind::Audio) + c.packets_from(p, MediaKind::Video);
    let ok = common::eventually(Duration::from_secs(15), || {
        [&t, &p1, &p2, &p3]
            .iter()
            .all(|c| all.iter().filter(|p| **p != c.participant_id).all(|p| c.packets_from(p, MediaKind::Audio) >= 10))
    })
    .await;
    if !ok {
        for c in [&t, &p1, &p2, &p3] {
            let got: Vec<_> = c.received().values().map(|r| (r.participant.clone(), r.kind, r.packets)).collect();
            eprintln!("{} received: {got:?}", c.participant_id);
        }
    }
    assert!(ok, "before: everyone hears everyone");

    // p1 asks for support; the therapist answers with one action.
    p1.send(ClientMessage::RequestSupport);
    p1.wait_for("supportStatus", WAIT, |m| matches!(m, ServerMessage::SupportStatus { .. })).await.unwrap();
    t.wait_for("supportRequested", WAIT, |m| matches!(m, ServerMessage::SupportRequested { .. })).await.unwrap();
    t.send(ClientMessage::OpenPrivateRoom { participant_id: pid("p1") });
    let mut space = String::new();
    for c in [&mut t, &mut p1] {
        let m = c.wait_for("spaceChanged", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { .. })).await.unwrap();
        let ServerMessage::SpaceChanged { breakout, participants, .. } = m else { unreachable!() };
        space = breakout.expect("a private room").id;
        let mut who: Vec<_> = participants.iter().map(|p| p.id.as_str().to_string()).collect();
        who.sort();
        assert_eq!(who, ["p1", "t"], "a room of two");
    }
    for c in [&mut p2, &mut p3] {
        let m = c.wait_for("spaceRoster", WAIT, |m| matches!(m, ServerMessage::SpaceRoster { .. })).await.unwrap();
        let ServerMessage::SpaceRoster { participants } = m else { unreachable!() };
        assert_eq!(participants.len(), 2, "the rest see each other only");
    }

    // Let renegotiation settle, then measure a window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pair = |p: &ParticipantId| p.as_str() == "t" || p.as_str() == "p1";
    let snapshot = |c: &MediaClient| -> HashMap<ParticipantId, u64> { all.iter().map(|p| (p.clone(), total(c, p))).collect() };
    let before: Vec<_> = [&t, &p1, &p2, &p3].iter().map(|c| snapshot(c)).collect();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (c, before) in [&t, &p1, &p2, &p3].iter().zip(&before) {
        let after = snapshot(c);
        for p in all.iter().filter(|p| **p != c.participant_id) {
            let grew = after[p] > before[p];
            let together = pair(p) == pair(&c.participant_id);
            assert_eq!(grew, together, "{} receiving from {p}: grew={grew}, same space={together}", c.participant_id);
        }
    }

    // Closing it reunites everyone.
    t.send(ClientMessage::ClosePrivateRoom { space_id: space });
    for c in [&mut t, &mut p1] {
        let m = c.wait_for("back", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { .. })).await.unwrap();
        assert!(matches!(m, ServerMessage::SpaceChanged { breakout: None, .. }));
    }
    let marks: Vec<_> = [&t, &p1, &p2, &p3].iter().map(|c| snapshot(c)).collect();
    let reunited = common::eventually(Duration::from_secs(10), || {
        [&t, &p1, &p2, &p3]
            .iter()
            .zip(&marks)
            .all(|(c, mark)| all.iter().filter(|p| **p != c.participant_id).all(|p| total(c, p) > mark[p] + 5))
    })
    .await;
    assert!(reunited, "after closing, everyone receives from everyone again");
    for c in [t, p1, p2, p3] {
        c.leave().await;
    }
    server.shutdown().await;
}
