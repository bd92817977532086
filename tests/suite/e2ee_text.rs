//! Texts sealed end to end through the real server: in a `required` room a plain chat, poll
//! or milestone text is refused (`sealed_text_required`) with nothing relayed or stored; a
//! sealed one is relayed exactly as it came, votes on a sealed poll still count, and neither
//! the database file nor the poll summary holds the words. Other rooms keep plain texts.

use crate::common;

use common::{expect_error, pid};

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, ErrorCode, MilestoneKind, SealedText, ServerMessage, Text};
use hearth::vocab::E2eeMode;

const WAIT: Duration = Duration::from_secs(10);
/// A word the texts carry: it must never reach another member, the database or the summary.
const MARKER: &str = "QUINCEMARKER";

/// A sealing with `ct` in front of a made-up 16-byte tag.
fn sealed(ct: &str) -> Text {
    let ct = format!("{ct}VGFnVGFnVGFnVGFnVGFnVA");
    Text::Sealed { sealed: vec![SealedText { space: "main".into(), epoch: 41, iv: "AAECAwQFBgcICQoL".into(), ct }] }
}

async fn send(c: &mut SignalClient, msg: ClientMessage) {
    c.send(&msg).await.expect("send");
}

/// Nothing of type chat, poll or celebration reaches `c` for a moment.
async fn hears_no_text(c: &mut SignalClient, what: &str) {
    let got = c
        .recv_until(what, Duration::from_millis(400), |m| {
            matches!(m, ServerMessage::ChatMessage(_) | ServerMessage::PollStarted { .. } | ServerMessage::Celebration { .. })
        })
        .await;
    assert!(got.is_err(), "{what} reached another member: {got:?}");
}

async fn required_room() -> (RunningServer, SignalClient, SignalClient, SignalClient) {
    let mut config = common::test_config();
    config.rooms.e2ee = E2eeMode::Required;
    let server = common::start_with(config).await;
    let mut t = common::join(&server, "sealed", Role::Therapist, "Dr T", "t-1").await;
    let mut a = common::join_upto(&server, "sealed", Role::Participant, "Ana", "p-a", "joined").await;
    let mut b = common::join_upto(&server, "sealed", Role::Participant, "Ben", "p-b", "joined").await;
    for id in ["p-a", "p-b"] {
        send(&mut t, ClientMessage::Admit { participant_id: pid(id) }).await;
    }
    for c in [&mut a, &mut b] {
        c.recv_until("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.expect("admitted");
    }
    (server, t, a, b)
}

#[tokio::test]
async fn a_required_room_relays_sealed_chat_as_it_came_and_refuses_plain_chat() {
    let (server, mut t, mut a, mut b) = required_room().await;
    send(&mut a, ClientMessage::Chat { text: format!("I relapsed, {MARKER}").into(), to: None }).await;
    let message = expect_error(&mut a, ErrorCode::SealedTextRequired).await;
    assert!(message.contains("sealed"), "{message}");
    hears_no_text(&mut b, "a refused plain chat").await;

    let frame =
        r#"{"type":"chat","text":{"sealed":[{"space":"main","epoch":41,"iv":"AAECAwQFBgcICQoL","ct":"U2VhbGVkQ2hhdENpcGhlcnRleHQ"}]}}"#;
    a.send_raw(frame.to_string()).await.expect("send");
    let sent: serde_json::Value = serde_json::from_str(frame).expect("json");
    for c in [&mut b, &mut t, &mut a] {
        match c.recv_until("chatMessage", WAIT, |m| matches!(m, ServerMessage::ChatMessage(_))).await {
            Ok(ServerMessage::ChatMessage(entry)) => {
                assert_eq!(serde_json::to_value(&entry.text).expect("json"), sent["text"], "relayed byte for byte");
                assert_eq!(entry.from, pid("p-a"));
            }
            other => panic!("{other:?}"),
        }
    }
    // A private message, sealed for its two parties, goes to them only.
    send(&mut b, ClientMessage::Chat { text: sealed("UHJpdmF0ZUNpcGhlcnRleHQ"), to: Some(pid("t-1")) }).await;
    match t.recv_until("private", WAIT, |m| matches!(m, ServerMessage::ChatMessage(_))).await {
        Ok(ServerMessage::ChatMessage(entry)) => assert_eq!((entry.text, entry.private), (sealed("UHJpdmF0ZUNpcGhlcnRleHQ"), true)),
        other => panic!("{other:?}"),
    }
    hears_no_text(&mut a, "a private message").await;
    // A sealing outside its form is refused too.
    send(&mut a, ClientMessage::Chat { text: sealed(&"A".repeat(6000)), to: None }).await;
    expect_error(&mut a, ErrorCode::InvalidE2ee).await;
    server.shutdown().await;
}

#[tokio::test]
async fn sealed_polls_count_votes_and_nothing_readable_is_stored() {
    let (server, mut t, mut a, mut b) = required_room().await;
    let path = server.state().config.store.path.clone();
    let poll = |question: Text, options: Vec<Text>| ClientMessage::CreatePoll {
        question,
        options,
        multiple: false,
        anonymous: false,
        duration_secs: None,
        scope: None,
    };
    send(&mut t, poll(format!("{MARKER}?").into(), vec!["Yes".into(), "No".into()])).await;
    expect_error(&mut t, ErrorCode::SealedTextRequired).await;
    send(&mut t, poll(sealed("UXVlc3Rpb25DaXBoZXJ0ZXh0"), vec![sealed("WWVzQ2lwaGVydGV4dA"), MARKER.into()])).await;
    expect_error(&mut t, ErrorCode::SealedTextRequired).await;
    hears_no_text(&mut a, "a refused plain poll").await;

    send(&mut t, poll(sealed("UXVlc3Rpb25DaXBoZXJ0ZXh0"), vec![sealed("WWVzQ2lwaGVydGV4dA"), sealed("Tm9DaXBoZXJ0ZXh0")])).await;
    let started = match b.recv_until("pollStarted", WAIT, |m| matches!(m, ServerMessage::PollStarted { .. })).await {
        Ok(ServerMessage::PollStarted { poll }) => poll,
        other => panic!("{other:?}"),
    };
    assert_eq!(started.question, sealed("UXVlc3Rpb25DaXBoZXJ0ZXh0"));
    assert_eq!(started.options[1].text, sealed("Tm9DaXBoZXJ0ZXh0"));
    send(&mut b, ClientMessage::Vote { poll_id: started.id.clone(), option_ids: vec![started.options[1].id.clone()] }).await;
    b.recv_until("voteAccepted", WAIT, |m| matches!(m, ServerMessage::VoteAccepted { .. })).await.expect("the vote counts");
    send(&mut t, ClientMessage::ClosePoll { poll_id: started.id.clone() }).await;
    let results = match t.recv_until("pollClosed", WAIT, |m| matches!(m, ServerMessage::PollClosed { .. })).await {
        Ok(ServerMessage::PollClosed { results: Some(results), .. }) => results,
        other => panic!("{other:?}"),
    };
    assert_eq!(results.counts.iter().map(|c| c.count).collect::<Vec<_>>(), [0, 1]);

    // Celebration notes: plain refused, sealed relayed.
    let celebrate = |message: Text| ClientMessage::Celebrate {
        participant_id: pid("p-a"),
        kind: MilestoneKind::SessionsAttended,
        value: Some(4),
        label: None,
        message: Some(message),
    };
    send(&mut t, celebrate(MARKER.into())).await;
    expect_error(&mut t, ErrorCode::SealedTextRequired).await;
    send(&mut t, celebrate(sealed("Tm90ZUNpcGhlcnRleHQ"))).await;
    match a.recv_until("celebration", WAIT, |m| matches!(m, ServerMessage::Celebration { .. })).await {
        Ok(ServerMessage::Celebration { message, .. }) => assert_eq!(message, Some(sealed("Tm90ZUNpcGhlcnRleHQ"))),
        other => panic!("{other:?}"),
    }

    // The store wrote the poll (its counts are there) but no word of it: not the marker of the
    // refused ones, not the ciphertext, only the placeholder.
    let token = common::token_for(&server, "sealed", Role::Therapist, "Dr T", "t-1");
    let auth = format!("Bearer {token}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) = common::http(server.addr(), "GET", "/api/rooms/sealed/polls", &[("Authorization", auth.as_str())], "").await;
        if status == 200 && body.contains("\"votes\":1") {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "the summary never showed the sealed poll's vote: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.contains("(sealed end to end)"), "{body}");
    let mut raw = std::fs::read(&path).expect("database");
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    raw.extend(std::fs::read(&wal).unwrap_or_default());
    let raw = String::from_utf8_lossy(&raw);
    for word in [MARKER, "UXVlc3Rpb25DaXBoZXJ0ZXh0", "Tm90ZUNpcGhlcnRleHQ"] {
        assert!(!raw.contains(word), "{word} is in the database file");
    }
    server.shutdown().await;
}

/// A sealing under epoch `epoch` (what the key leader makes when it re-seals).
fn sealed_at(ct: &str, epoch: u32) -> Text {
    let Text::Sealed { mut sealed } = sealed(ct) else { unreachable!("sealed() seals") };
    sealed[0].epoch = epoch;
    Text::Sealed { sealed }
}

/// Someone admitted after a sealed poll started holds only the newer key: the therapist seals
/// the open poll's texts again, everyone it is for gets it again with their vote kept, and
/// a re-sealing that would change the poll or unseal it is refused with nothing changed.
#[tokio::test]
async fn an_open_sealed_poll_is_sealed_again_for_late_joiners_and_keeps_its_votes() {
    let (server, mut t, mut a, mut b) = required_room().await;
    let create = ClientMessage::CreatePoll {
        question: sealed("UXVlc3Rpb24"),
        options: vec![sealed("WWVz"), sealed("Tm8")],
        multiple: false,
        anonymous: true,
        duration_secs: None,
        scope: None,
    };
    send(&mut t, create).await;
    let poll = recv!(b, ServerMessage::PollStarted { poll } => poll);
    recv!(a, ServerMessage::PollStarted { .. });
    send(&mut b, ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![poll.options[1].id.clone()] }).await;
    recv!(b, ServerMessage::VoteAccepted { .. });
    // A late joiner: admitted while the poll is open, it receives the poll as first sealed.
    let mut c = common::join_upto(&server, "sealed", Role::Participant, "Cy", "p-c", "joined").await;
    send(&mut t, ClientMessage::Admit { participant_id: pid("p-c") }).await;
    let first = recv!(c, ServerMessage::PollStarted { poll } => poll);
    assert_eq!(first.question, sealed("UXVlc3Rpb24"));

    let reseal = |question: Text, options: Vec<Text>| ClientMessage::ResealPoll { poll_id: poll.id.clone(), question, options };
    // Refused, each with nothing changed or sent: not the therapist, plain, another number of
    // options, an unknown poll.
    send(&mut a, reseal(sealed_at("UXVlc3Rpb24y", 42), vec![sealed_at("WWVzMg", 42), sealed_at("Tm8y", 42)])).await;
    expect_error(&mut a, ErrorCode::Forbidden).await;
    send(&mut t, reseal(MARKER.into(), vec!["Yes".into(), "No".into()])).await;
    expect_error(&mut t, ErrorCode::SealedTextRequired).await;
    send(&mut t, reseal(sealed_at("UXVlc3Rpb24y", 42), vec![sealed_at("WWVzMg", 42)])).await;
    expect_error(&mut t, ErrorCode::InvalidPoll).await;
    let unknown = ClientMessage::ResealPoll {
        poll_id: serde_json::from_str("\"poll-0000000000000000\"").expect("a poll id"),
        question: sealed_at("UXVlc3Rpb24y", 42),
        options: vec![sealed_at("WWVzMg", 42), sealed_at("Tm8y", 42)],
    };
    send(&mut t, unknown).await;
    expect_error(&mut t, ErrorCode::UnknownPoll).await;
    hears_no_text(&mut c, "a refused re-sealing").await;

    send(&mut t, reseal(sealed_at("UXVlc3Rpb24y", 42), vec![sealed_at("WWVzMg", 42), sealed_at("Tm8y", 42)])).await;
    for (who, client) in [("the late joiner", &mut c), ("a voter", &mut b), ("another member", &mut a)] {
        let again = recv!(client, ServerMessage::PollStarted { poll } => poll);
        assert_eq!(again.id, poll.id, "{who}");
        assert_eq!(again.question, sealed_at("UXVlc3Rpb24y", 42), "{who}");
        assert_eq!(
            again.options.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
            poll.options.iter().map(|o| o.id.clone()).collect::<Vec<_>>()
        );
    }
    // The voter's choice and the therapist's counts are as before.
    let kept = recv!(b, ServerMessage::VoteAccepted { option_ids, .. } => option_ids);
    assert_eq!(kept, vec![poll.options[1].id.clone()]);
    let tally = recv!(t, ServerMessage::PollResults(tally) if tally.counts.iter().map(|c| c.count).sum::<u32>() == 1 => tally);
    assert_eq!(tally.counts.iter().map(|c| c.count).collect::<Vec<_>>(), [0, 1]);

    // Closed, it is not sealed again.
    send(&mut t, ClientMessage::ClosePoll { poll_id: poll.id.clone() }).await;
    recv!(t, ServerMessage::PollClosed { .. });
    send(&mut t, reseal(sealed_at("UXVlc3Rpb24z", 43), vec![sealed_at("WWVzMw", 43), sealed_at("Tm8z", 43)])).await;
    expect_error(&mut t, ErrorCode::PollClosed).await;
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_that_do_not_require_encryption_keep_plain_texts() {
    let server = common::start_open_server().await;
    let mut a = common::join(&server, "plain", Role::Participant, "Ana", "p-a").await;
    let mut b = common::join(&server, "plain", Role::Participant, "Ben", "p-b").await;
    send(&mut a, ClientMessage::Chat { text: sealed("U2VhbGVkQ2hhdENpcGhlcnRleHQ"), to: None }).await;
    expect_error(&mut a, ErrorCode::InvalidE2ee).await;
    send(&mut a, ClientMessage::Chat { text: "hello".into(), to: None }).await;
    match b.recv_until("chatMessage", WAIT, |m| matches!(m, ServerMessage::ChatMessage(_))).await {
        Ok(ServerMessage::ChatMessage(entry)) => assert_eq!(entry.text, "hello"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}
