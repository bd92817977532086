//! In-call polls through the real server: concurrent votes, vote changes, refusals, anonymity
//! in the store, persistence across a restart, the summary endpoint, and the timer.

use crate::common;

use common::{expect_error, join, WAIT};

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::config::Config;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, ErrorCode, PollCloseReason, PollId, PollInfo, PollOptionId, PollTally, ServerMessage};
use hearth::store::PollRecord;

fn open_config() -> Config {
    let mut c = common::test_config();
    c.rooms.waiting_room = false;
    c.limits.max_room_size = 64;
    c
}

fn create(question: &str, options: &[&str], multiple: bool, anonymous: bool, duration_secs: Option<u32>) -> ClientMessage {
    ClientMessage::CreatePoll {
        question: question.into(),
        options: options.iter().map(|s| (*s).into()).collect(),
        multiple,
        anonymous,
        duration_secs,
        scope: None,
    }
}

fn vote(poll: &PollId, options: &[&str]) -> ClientMessage {
    ClientMessage::Vote { poll_id: poll.clone(), option_ids: options.iter().map(|o| PollOptionId::from_raw(*o)).collect() }
}

async fn poll_started(c: &mut SignalClient) -> PollInfo {
    match c.recv_until("pollStarted", WAIT, |m| matches!(m, ServerMessage::PollStarted { .. })).await.unwrap() {
        ServerMessage::PollStarted { poll } => poll,
        _ => unreachable!(),
    }
}

/// The next live results for `poll` that satisfy `pred`.
async fn results_where(c: &mut SignalClient, poll: &PollId, pred: impl Fn(&PollTally) -> bool) -> PollTally {
    match c.recv_until("pollResults", WAIT, |m| matches!(m, ServerMessage::PollResults(t) if &t.poll_id == poll && pred(t))).await.unwrap()
    {
        ServerMessage::PollResults(t) => t,
        _ => unreachable!(),
    }
}

async fn expect_vote_accepted(c: &mut SignalClient, poll: &PollId, options: &[&str]) {
    let m = c
        .recv_until("voteAccepted", WAIT, |m| matches!(m, ServerMessage::VoteAccepted { .. } | ServerMessage::Error { .. }))
        .await
        .unwrap();
    let expected: Vec<PollOptionId> = options.iter().map(|o| PollOptionId::from_raw(*o)).collect();
    assert_eq!(m, ServerMessage::VoteAccepted { poll_id: poll.clone(), option_ids: expected });
}

fn counts(t: &PollTally) -> Vec<u32> {
    t.counts.iter().map(|c| c.count).collect()
}

/// The stored record of `poll`, once `pred` holds for it (the store is written behind the room).
async fn stored(server: &RunningServer, room: &str, poll: &PollId, pred: impl Fn(&PollRecord) -> bool) -> PollRecord {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let polls = server.state().store.polls(room).await.unwrap();
        if let Some(p) = polls.into_iter().find(|p| p.id == poll.as_str()) {
            if pred(&p) {
                return p;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "poll {poll} not stored as expected in time");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET `path` with an optional bearer token: (status, JSON body).
async fn get_json(server: &RunningServer, path: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = buf.split("\r\n\r\n").nth(1).expect("body");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// Every text value in every column of every table of the SQLite file, plus the raw bytes of the
/// file and its write-ahead log.
fn store_contents(path: &std::path::Path) -> (Vec<String>, Vec<u8>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.iter().any(|t| t == "polls"), "{tables:?}");
    let mut values = Vec::new();
    // Attendance rows hold participant ids by design (docs/protocol.md, "Sessions"): what a poll
    // must not leave behind is read from every other table.
    for table in
        tables.iter().filter(|t| !["sessions", "attendance", "checkin_values", "checkin_counts", "support_requests"].contains(&t.as_str()))
    {
        let columns: Vec<String> = conn
            .prepare(&format!("PRAGMA table_info(\"{table}\")"))
            .unwrap()
            .query_map([], |r| r.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for column in columns {
            let mut stmt = conn.prepare(&format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"")).unwrap();
            for v in stmt.query_map([], |r| r.get::<_, Option<String>>(0)).unwrap() {
                values.extend(v.unwrap());
            }
        }
    }
    let mut raw = std::fs::read(path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    raw.extend(std::fs::read(&wal).unwrap_or_default());
    (values, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_voters_at_once_exact_totals_and_an_anonymous_poll_stores_no_ids() {
    let server = common::start_with(open_config()).await;
    let mut therapist = join(&server, "g", Role::Therapist, "Dr T", "t-1").await;
    let ids: Vec<String> = (0..50).map(|i| format!("voter-{i:02}-{:08x}", rand::random::<u32>())).collect();
    let names: Vec<String> = (0..50).map(|i| format!("Voter Name {i:02}")).collect();
    let mut voters = join_all(ids.iter().zip(&names).map(|(id, name)| join(&server, "g", Role::Participant, name, id))).await;

    therapist.send(&create("How is your week going?", &["Good", "Mixed", "Hard"], false, true, None)).await.unwrap();
    let poll = poll_started(&mut therapist).await;
    assert!(poll.anonymous && !poll.multiple && poll.closes_at.is_none());
    assert_eq!(poll.options.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["o1", "o2", "o3"]);

    // Everyone sees the poll, then all 50 vote at the same moment.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(voters.len()));
    let tasks = voters.drain(..).enumerate().map(|(i, mut c)| {
        let (barrier, poll_id) = (barrier.clone(), poll.id.clone());
        tokio::spawn(async move {
            assert_eq!(poll_started(&mut c).await.id, poll_id);
            barrier.wait().await;
            let option = ["o1", "o2", "o3"][i % 3];
            c.send(&vote(&poll_id, &[option])).await.unwrap();
            expect_vote_accepted(&mut c, &poll_id, &[option]).await;
            c
        })
    });
    let mut voters: Vec<SignalClient> = join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    let live = results_where(&mut therapist, &poll.id, |t| t.total_voters == 50).await;
    assert_eq!(counts(&live), [17, 17, 16]);
    assert!(live.by_option.is_none(), "an anonymous poll never says who chose what");

    // A second vote changes the first rather than adding to it.
    voters[0].send(&vote(&poll.id, &["o2"])).await.unwrap();
    expect_vote_accepted(&mut voters[0], &poll.id, &["o2"]).await;
    let live = results_where(&mut therapist, &poll.id, |t| t.counts[0].count == 16).await;
    assert_eq!((counts(&live), live.total_voters), (vec![16, 18, 16], 50));

    // Closed: therapists get the final counts; participants, who were not shown the results,
    // only hear that it closed.
    therapist.send(&ClientMessage::ClosePoll { poll_id: poll.id.clone() }).await.unwrap();
    match therapist.recv_until("pollClosed", WAIT, |m| matches!(m, ServerMessage::PollClosed { .. })).await.unwrap() {
        ServerMessage::PollClosed { reason, results: Some(r), .. } => {
            assert_eq!(reason, PollCloseReason::Closed);
            assert_eq!((counts(&r), r.total_voters, r.by_option), (vec![16, 18, 16], 50, None));
        }
        other => panic!("{other:?}"),
    }
    let closed = voters[7].recv_until("pollClosed", WAIT, |m| matches!(m, ServerMessage::PollClosed { .. })).await.unwrap();
    assert!(matches!(closed, ServerMessage::PollClosed { results: None, .. }), "{closed:?}");

    let record = stored(&server, "g", &poll.id, |p| p.closed_at_ms.is_some()).await;
    assert_eq!(record.options.iter().map(|o| o.votes).collect::<Vec<_>>(), [16, 18, 16]);
    assert_eq!((record.total_voters, record.choices.clone()), (50, None));

    // The store holds no participant id or name, in any table, column, page or log frame.
    let (values, raw) = store_contents(&server.state().config.store.path);
    assert!(values.iter().any(|v| v == poll.id.as_str()), "the scan reads the poll tables");
    for secret in ids.iter().chain(&names) {
        assert!(!values.iter().any(|v| v.contains(secret.as_str())), "{secret} is in the store");
    }
    for name in &names {
        assert!(!raw.windows(name.len()).any(|w| w == name.as_bytes()), "{name} is in the store file");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn refused_requests_change_nothing() {
    let server = common::start_with(open_config()).await;
    let mut therapist = join(&server, "g", Role::Therapist, "Dr T", "t-1").await;
    let mut alice = join(&server, "g", Role::Participant, "Alice", "p-alice").await;
    let mut bob = join(&server, "g", Role::Participant, "Bob", "p-bob").await;
    let mut carol = join(&server, "h", Role::Participant, "Carol", "p-carol").await; // another room

    // Invalid polls are refused.
    therapist.send(&create("Only one option?", &["Yes"], false, false, None)).await.unwrap();
    expect_error(&mut therapist, ErrorCode::InvalidPoll).await;
    therapist.send(&create("", &["Yes", "No"], false, false, None)).await.unwrap();
    expect_error(&mut therapist, ErrorCode::InvalidPoll).await;
    therapist.send(&create("Too long?", &["Yes", "No"], false, false, Some(0))).await.unwrap();
    expect_error(&mut therapist, ErrorCode::InvalidPoll).await;

    therapist.send(&create("Which exercise first?", &["Breathing", "Journaling", "Walk"], false, false, None)).await.unwrap();
    let poll = poll_started(&mut alice).await;
    assert_eq!(poll_started(&mut bob).await, poll);
    alice.send(&vote(&poll.id, &["o1"])).await.unwrap();
    expect_vote_accepted(&mut alice, &poll.id, &["o1"]).await;
    let live = results_where(&mut therapist, &poll.id, |t| t.total_voters == 1).await;
    let by = live.by_option.expect("named polls show therapists who chose what");
    assert_eq!(by[0].voters.iter().map(|v| (v.participant_id.as_str(), v.name.as_str())).collect::<Vec<_>>(), [("p-alice", "Alice")]);

    // Refusals: unknown option, two options in a single-choice poll, no option, a poll of
    // another room, a participant (or a therapist voting) using therapist actions.
    for (bad, code) in [
        (vote(&poll.id, &["o9"]), ErrorCode::UnknownOption),
        (vote(&poll.id, &["o1", "o2"]), ErrorCode::InvalidVote),
        (vote(&poll.id, &[]), ErrorCode::InvalidVote),
        (vote(&PollId::from_raw("poll-0000000000000000"), &["o1"]), ErrorCode::UnknownPoll),
        (create("Mine?", &["A", "B"], false, false, None), ErrorCode::Forbidden),
        (ClientMessage::ClosePoll { poll_id: poll.id.clone() }, ErrorCode::Forbidden),
        (ClientMessage::SharePollResults { poll_id: poll.id.clone() }, ErrorCode::Forbidden),
    ] {
        alice.send(&bad).await.unwrap();
        expect_error(&mut alice, code).await;
    }
    carol.send(&vote(&poll.id, &["o2"])).await.unwrap();
    expect_error(&mut carol, ErrorCode::UnknownPoll).await;
    therapist.send(&vote(&poll.id, &["o2"])).await.unwrap();
    expect_error(&mut therapist, ErrorCode::Forbidden).await;

    // Nothing changed: Bob's vote is the next thing the therapist hears, on top of Alice's
    // unchanged one; the next poll anyone sees is the therapist's; the poll is still open.
    bob.send(&vote(&poll.id, &["o2"])).await.unwrap();
    expect_vote_accepted(&mut bob, &poll.id, &["o2"]).await;
    let next = therapist.recv_until("pollResults", WAIT, |m| matches!(m, ServerMessage::PollResults(_))).await.unwrap();
    let ServerMessage::PollResults(live) = next else { unreachable!() };
    assert_eq!((counts(&live), live.total_voters), (vec![1, 1, 0], 2));
    therapist.send(&create("Marker", &["A", "B"], true, true, None)).await.unwrap();
    assert_eq!(poll_started(&mut bob).await.question, "Marker");
    let stored_polls = server.state().store.polls("g").await.unwrap();
    assert!(stored_polls.iter().all(|p| p.question != "Mine?"));

    // Shared: everyone sees the counts, never the names.
    therapist.send(&ClientMessage::SharePollResults { poll_id: poll.id.clone() }).await.unwrap();
    let shared = bob.recv_until("shared", WAIT, |m| matches!(m, ServerMessage::PollResultsShared(_))).await.unwrap();
    let ServerMessage::PollResultsShared(shared) = shared else { unreachable!() };
    assert_eq!((counts(&shared), shared.by_option), (vec![1, 1, 0], None));

    // Closed: votes and a second close are refused, and the counts stay.
    therapist.send(&ClientMessage::ClosePoll { poll_id: poll.id.clone() }).await.unwrap();
    match alice.recv_until("pollClosed", WAIT, |m| matches!(m, ServerMessage::PollClosed { .. })).await.unwrap() {
        // The results were shared, so participants get the final counts too (still no names).
        ServerMessage::PollClosed { results: Some(r), .. } => assert_eq!((counts(&r), r.by_option), (vec![1, 1, 0], None)),
        other => panic!("{other:?}"),
    }
    alice.send(&vote(&poll.id, &["o3"])).await.unwrap();
    expect_error(&mut alice, ErrorCode::PollClosed).await;
    therapist.send(&ClientMessage::ClosePoll { poll_id: poll.id.clone() }).await.unwrap();
    expect_error(&mut therapist, ErrorCode::PollClosed).await;
    let record = stored(&server, "g", &poll.id, |p| p.closed_at_ms.is_some()).await;
    assert_eq!(record.options.iter().map(|o| o.votes).collect::<Vec<_>>(), [1, 1, 0]);
    assert_eq!(record.close_reason.as_deref(), Some("closed"));
    assert!(record.shared);
    server.shutdown().await;
}

#[tokio::test]
async fn results_survive_a_restart_and_the_summary_is_for_therapists_only() {
    let server = common::start_with(open_config()).await;
    let mut therapist = join(&server, "g", Role::Therapist, "Dr T", "t-1").await;
    let mut alice = join(&server, "g", Role::Participant, "Alice", "p-alice").await;
    let mut bob = join(&server, "g", Role::Participant, "Bob", "p-bob").await;

    therapist.send(&create("What helped this week?", &["Sleep", "Friends", "Exercise"], true, false, None)).await.unwrap();
    let named = poll_started(&mut alice).await;
    poll_started(&mut bob).await;
    alice.send(&vote(&named.id, &["o1", "o3"])).await.unwrap();
    expect_vote_accepted(&mut alice, &named.id, &["o1", "o3"]).await;
    bob.send(&vote(&named.id, &["o3"])).await.unwrap();
    expect_vote_accepted(&mut bob, &named.id, &["o3"]).await;
    therapist.send(&ClientMessage::ClosePoll { poll_id: named.id.clone() }).await.unwrap();
    stored(&server, "g", &named.id, |p| p.closed_at_ms.is_some()).await;

    // A second, anonymous poll is still open when the server stops.
    therapist.send(&create("Ready to share?", &["Yes", "Not yet"], false, true, None)).await.unwrap();
    let open = poll_started(&mut alice).await;
    alice.send(&vote(&open.id, &["o2"])).await.unwrap();
    expect_vote_accepted(&mut alice, &open.id, &["o2"]).await;
    stored(&server, "g", &open.id, |p| p.total_voters == 1).await;
    let path = server.state().config.store.path.clone();
    drop((therapist, alice, bob));
    server.shutdown().await;

    let mut config = open_config();
    config.store.path = path;
    let server = common::start_with(config).await;
    let therapist_token = common::token(&server, "g", Role::Therapist, "Dr T");
    let (status, body) = get_json(&server, "/api/rooms/g/polls", Some(&therapist_token)).await;
    assert_eq!(status, 200, "{body}");
    let polls = body.as_array().expect("a list");
    assert_eq!(polls.len(), 2, "{body}");
    let first = &polls[0];
    assert_eq!(first["id"], named.id.as_str());
    assert_eq!(first["question"], "What helped this week?");
    assert_eq!((first["multiple"].as_bool(), first["anonymous"].as_bool()), (Some(true), Some(false)));
    let votes: Vec<_> =
        first["options"].as_array().unwrap().iter().map(|o| (o["text"].as_str().unwrap(), o["votes"].as_u64().unwrap())).collect();
    assert_eq!(votes, [("Sleep", 1), ("Friends", 0), ("Exercise", 2)]);
    assert_eq!((first["totalVoters"].as_u64(), first["closeReason"].as_str()), (Some(2), Some("closed")));
    let choices: HashSet<(String, String)> = first["choices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["optionIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |o| (c["participantId"].as_str().unwrap().to_string(), o.as_str().unwrap().to_string()))
        })
        .collect();
    let expected: HashSet<(String, String)> =
        [("p-alice", "o1"), ("p-alice", "o3"), ("p-bob", "o3")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(choices, expected);
    let second = &polls[1];
    assert_eq!((second["id"].as_str(), second["anonymous"].as_bool()), (Some(open.id.as_str()), Some(true)));
    assert!(second["closedAtMs"].is_number(), "closed by the stop: {second}");
    assert!(["sessionEnded", "interrupted"].contains(&second["closeReason"].as_str().unwrap()), "{second}");
    assert_eq!(second["options"][1]["votes"], 1);
    assert!(second.get("choices").is_none(), "no choices for an anonymous poll: {second}");

    // Therapist token of this room only.
    let participant_token = common::token(&server, "g", Role::Participant, "Alice");
    assert_eq!(
        get_json(&server, "/api/rooms/g/polls", Some(&participant_token)).await,
        (403, serde_json::json!({"code": "forbidden", "message": "only a therapist of this room can read its polls"}))
    );
    assert_eq!(get_json(&server, "/api/rooms/g/polls", None).await.1["code"], "token_missing");
    let (status, body) = get_json(&server, "/api/rooms/g/polls", Some(&common::token(&server, "h", Role::Therapist, "Dr T"))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("token_wrong_room")));
    assert_eq!(get_json(&server, "/api/rooms/g/polls", Some("garbage")).await.0, 401);
    let (status, body) = get_json(&server, "/api/rooms/h/polls", Some(&common::token(&server, "h", Role::Therapist, "Dr T"))).await;
    assert_eq!((status, body), (200, serde_json::json!([])));
    server.shutdown().await;
}

#[tokio::test]
async fn the_timer_closes_the_poll() {
    let server = common::start_with(open_config()).await;
    let mut therapist = join(&server, "g", Role::Therapist, "Dr T", "t-1").await;
    let mut alice = join(&server, "g", Role::Participant, "Alice", "p-alice").await;
    let started = tokio::time::Instant::now();
    therapist.send(&create("Quick check-in", &["Calm", "Tense"], false, true, Some(1))).await.unwrap();
    let poll = poll_started(&mut alice).await;
    let closes_at = poll.closes_at.expect("a timed poll says when it closes");
    let now = hearth::store::now_ms() as u64;
    assert!(closes_at > now && closes_at <= now + 1_000, "{closes_at} vs {now}");
    alice.send(&vote(&poll.id, &["o1"])).await.unwrap();
    expect_vote_accepted(&mut alice, &poll.id, &["o1"]).await;
    let closed = alice.recv_until("pollClosed", WAIT, |m| matches!(m, ServerMessage::PollClosed { .. })).await.unwrap();
    assert!(matches!(closed, ServerMessage::PollClosed { reason: PollCloseReason::Timer, results: None, .. }), "{closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    match therapist.recv_until("pollClosed", WAIT, |m| matches!(m, ServerMessage::PollClosed { .. })).await.unwrap() {
        ServerMessage::PollClosed { results: Some(r), .. } => assert_eq!(counts(&r), [1, 0]),
        other => panic!("{other:?}"),
    }
    alice.send(&vote(&poll.id, &["o2"])).await.unwrap();
    expect_error(&mut alice, ErrorCode::PollClosed).await;
    let record = stored(&server, "g", &poll.id, |p| p.closed_at_ms.is_some()).await;
    assert_eq!(record.close_reason.as_deref(), Some("timer"));

    // Someone who joins later is caught up on open polls only; a reconnecting voter gets their
    // choice back.
    therapist.send(&create("Still open", &["A", "B"], false, true, None)).await.unwrap();
    let open = poll_started(&mut alice).await;
    alice.send(&vote(&open.id, &["o2"])).await.unwrap();
    expect_vote_accepted(&mut alice, &open.id, &["o2"]).await;
    let mut again = join(&server, "g", Role::Participant, "Alice", "p-alice").await; // replaces the old socket
    assert_eq!(poll_started(&mut again).await.id, open.id);
    expect_vote_accepted(&mut again, &open.id, &["o2"]).await;
    server.shutdown().await;
}

#[tokio::test]
async fn polls_scope_to_the_space_or_to_every_breakout() {
    let server = common::start_with(open_config()).await;
    let mut therapist = join(&server, "g", Role::Therapist, "Dr T", "t-1").await;
    let mut alice = join(&server, "g", Role::Participant, "Alice", "p-alice").await;
    let mut bob = join(&server, "g", Role::Participant, "Bob", "p-bob").await;
    therapist.send(&ClientMessage::CreateBreakout { name: "Garden".into() }).await.unwrap();
    let plan = therapist
        .recv_until("plan", WAIT, |m| matches!(m, ServerMessage::BreakoutsUpdated { breakouts } if !breakouts.rooms.is_empty()))
        .await
        .unwrap();
    let ServerMessage::BreakoutsUpdated { breakouts } = plan else { unreachable!() };
    let garden = breakouts.rooms[0].id.clone();
    let alice_id = hearth::room::ParticipantId::from_trusted("p-alice");
    therapist.send(&ClientMessage::AssignBreakout { participant_id: alice_id, breakout_id: Some(garden) }).await.unwrap();
    therapist.send(&ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: true }).await.unwrap();
    alice.recv_until("spaceChanged", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { breakout: Some(_), .. })).await.unwrap();

    // The therapist is in the main room: a `room` poll reaches Bob there, not Alice in the garden.
    therapist.send(&create("Main room only", &["A", "B"], false, true, None)).await.unwrap();
    let main_only = poll_started(&mut bob).await;
    alice.send(&vote(&main_only.id, &["o1"])).await.unwrap();
    expect_error(&mut alice, ErrorCode::PollOutOfScope).await;

    // `allBreakouts` reaches every space; it is the first poll Alice sees.
    therapist
        .send(&ClientMessage::CreatePoll {
            question: "Everyone".into(),
            options: vec!["A".into(), "B".into()],
            multiple: false,
            anonymous: true,
            duration_secs: None,
            scope: Some(hearth::signal::protocol::PollScope::AllBreakouts),
        })
        .await
        .unwrap();
    let everyone = poll_started(&mut alice).await;
    assert_eq!(everyone.question, "Everyone");
    assert_eq!(poll_started(&mut bob).await.id, everyone.id);
    alice.send(&vote(&everyone.id, &["o2"])).await.unwrap();
    expect_vote_accepted(&mut alice, &everyone.id, &["o2"]).await;
    let live = results_where(&mut therapist, &everyone.id, |t| t.total_voters == 1).await;
    assert_eq!(counts(&live), [0, 1]);
    // The store is written in order: once Alice's later vote is there, anything her refused
    // vote had changed would be too.
    stored(&server, "g", &everyone.id, |p| p.total_voters == 1).await;
    let refused = stored(&server, "g", &main_only.id, |_| true).await;
    assert_eq!(refused.total_voters, 0, "the refused vote changed nothing");
    server.shutdown().await;
}
