//! Sessions on record through the real server: attendance (JSON and CSV, across a restart, with
//! talk time when the clinic keeps it), support requests that cannot get lost, check-in privacy,
//! last session's check-in with the live value, and trends, the session-end webhook (a local
//! receiver), and retention.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{
    CheckInPhase, ClientMessage, EndReason, ErrorCode, ServerMessage, SessionId, SupportDelivery, SupportOutcome, SupportState,
    PROTOCOL_VERSION,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const API_KEY: &str = "an-operator-api-key-of-enough-length";

/// Connects and sends `join`; returns the client and its `joined`.
async fn connect(server: &RunningServer, room: &str, token: String) -> (SignalClient, ServerMessage) {
    let mut c = SignalClient::connect(&common::ws_url(server)).await.unwrap();
    c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token }).await.unwrap();
    let joined = recv!(c, ServerMessage::Joined { .. });
    (c, joined)
}

/// Joins and waits until admitted; returns the session id `admitted` names.
async fn enter(server: &RunningServer, room: &str, role: Role, id: &str) -> (SignalClient, SessionId) {
    let (mut c, _) = connect(server, room, common::token_for(server, room, role, id, id)).await;
    let s = admitted(&mut c).await;
    (c, s)
}

async fn admitted(c: &mut SignalClient) -> SessionId {
    match recv!(c, ServerMessage::Admitted { .. }) {
        ServerMessage::Admitted { session_id: Some(s), .. } => s,
        other => panic!("admitted without a session: {other:?}"),
    }
}

async fn wait_waiting(t: &mut SignalClient, id: &str) {
    recv!(t, ServerMessage::WaitingList { waiting } if waiting.iter().any(|w| w.id.as_str() == id));
}

async fn get(server: &RunningServer, path: &str, bearer: &str) -> (u16, String) {
    let auth = format!("Bearer {bearer}");
    common::http(server.addr(), "GET", path, &[("Authorization", &auth)], "").await
}

/// GET as JSON, waiting (bounded) until `ready` holds (records are written off the room task).
async fn get_json_when(server: &RunningServer, path: &str, bearer: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(server, path, bearer).await;
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status == 200 && ready(&value) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` every 50 ms until it gives a value (panics after [`WAIT`]).
async fn until<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The attendance without its times: what must be exactly as scripted.
fn shape(attendance: &Value) -> Value {
    let people = attendance.as_array().expect("attendance list");
    Value::Array(
        people
            .iter()
            .map(|p| {
                let spaces: Vec<Value> = p["intervals"].as_array().unwrap().iter().map(|i| i["space"].clone()).collect();
                json!({
                    "participantId": p["participantId"],
                    "role": p["role"],
                    "admitted": !p["admittedMs"].is_null(),
                    "late": p["late"],
                    "reconnects": p["reconnects"],
                    "spaces": spaces,
                    "outcome": p["outcome"],
                })
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_scripted_session_gives_exactly_its_attendance_in_json_and_csv_and_survives_a_restart() {
    const ROOM: &str = "attend";
    let mut config = common::test_config();
    config.rooms.reconnect_grace_ms = 5_000;
    config.rooms.late_after_secs = 0;
    config.auth.api_key = API_KEY.into();
    let server = common::start_with(config.clone()).await;

    // A knocks before any therapist is there: no session yet.
    let a_token = common::token_for(&server, ROOM, Role::Participant, "A", "p-a");
    let (mut a, joined) = connect(&server, ROOM, a_token.clone()).await;
    assert!(matches!(joined, ServerMessage::Joined { admitted: false, session_id: None, .. }), "{joined:?}");
    let (mut t, session) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    let started = hearth::store::now_ms();
    wait_waiting(&mut t, "p-a").await;
    t.send(&ClientMessage::Admit { participant_id: common::pid("p-a") }).await.unwrap();
    assert_eq!(admitted(&mut a).await, session, "one session for everyone");

    // A drops and comes back within the grace: one interval, one reconnect.
    drop(a);
    t.recv_until(
        "a reconnecting",
        WAIT,
        |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id.as_str() == "p-a" && participant.reconnecting),
    )
    .await
    .unwrap();
    let (mut a, joined) = connect(&server, ROOM, a_token).await;
    assert!(matches!(&joined, ServerMessage::Joined { admitted: true, session_id: Some(s), .. } if *s == session), "{joined:?}");

    // B arrives after the session started (late_after_secs = 0), is admitted.
    assert!(common::eventually(WAIT, || hearth::store::now_ms() > started + 1).await);
    let (mut b, _) = connect(&server, ROOM, common::token_for(&server, ROOM, Role::Participant, "B", "p-b")).await;
    wait_waiting(&mut t, "p-b").await;
    t.send(&ClientMessage::Admit { participant_id: common::pid("p-b") }).await.unwrap();
    admitted(&mut b).await;
    // C is declined; D is admitted, then removed.
    let (mut c, _) = connect(&server, ROOM, common::token_for(&server, ROOM, Role::Participant, "C", "p-c")).await;
    wait_waiting(&mut t, "p-c").await;
    t.send(&ClientMessage::Decline { participant_id: common::pid("p-c"), r#final: false }).await.unwrap();
    recv!(c, ServerMessage::SessionEnded { reason: EndReason::Declined, .. });
    let (mut d, _) = connect(&server, ROOM, common::token_for(&server, ROOM, Role::Participant, "D", "p-d")).await;
    wait_waiting(&mut t, "p-d").await;
    t.send(&ClientMessage::Admit { participant_id: common::pid("p-d") }).await.unwrap();
    admitted(&mut d).await;
    t.send(&ClientMessage::Remove { participant_id: common::pid("p-d") }).await.unwrap();
    recv!(d, ServerMessage::SessionEnded { reason: EndReason::Removed, .. });
    // A leaves; the therapist ends the session for B and themselves.
    a.send(&ClientMessage::Leave).await.unwrap();
    recv!(t, ServerMessage::ParticipantLeft { participant_id } if participant_id.as_str() == "p-a");
    t.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    recv!(b, ServerMessage::SessionEnded { reason: EndReason::Ended, .. });

    let sessions_path = format!("/api/rooms/{ROOM}/sessions");
    let sessions = get_json_when(&server, &sessions_path, API_KEY, |v| v[0]["endReason"] == "ended").await;
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["id"], session.as_str());
    let path = format!("/api/rooms/{ROOM}/sessions/{session}/attendance");
    let record = get_json_when(&server, &path, API_KEY, |v| {
        v["attendance"].as_array().is_some_and(|a| a.len() == 5 && a.iter().all(|p| !p["outcome"].is_null()))
    })
    .await;
    let attendance = &record["attendance"];
    assert_eq!(
        shape(attendance),
        json!([
            {"participantId":"p-a","role":"participant","admitted":true,"late":false,"reconnects":1,"spaces":["main"],"outcome":"left"},
            {"participantId":"t-1","role":"therapist","admitted":true,"late":false,"reconnects":0,"spaces":["main"],"outcome":"ended"},
            {"participantId":"p-b","role":"participant","admitted":true,"late":true,"reconnects":0,"spaces":["main"],"outcome":"ended"},
            {"participantId":"p-c","role":"participant","admitted":false,"late":false,"reconnects":0,"spaces":[],"outcome":"declined"},
            {"participantId":"p-d","role":"participant","admitted":true,"late":true,"reconnects":0,"spaces":["main"],"outcome":"removed"},
        ])
    );
    for p in attendance.as_array().unwrap() {
        let n = |k: &str| p[k].as_i64();
        let (arrived, left) = (n("arrivedMs").unwrap(), n("leftMs").unwrap());
        assert!(left >= arrived, "{p}");
        if let Some(admitted) = n("admittedMs") {
            assert_eq!(n("waitedMs"), Some(admitted - arrived), "waiting is knock to admission: {p}");
            let i = &p["intervals"][0];
            assert_eq!((i["fromMs"].as_i64(), i["toMs"].as_i64()), (Some(admitted), Some(left)), "{p}");
        }
    }
    assert_eq!(record["session"]["endedMs"], attendance[1]["leftMs"], "the session ends when the therapist's end does");
    let text = serde_json::to_string(&record).unwrap();
    for name in ["\"A\"", "\"B\"", "\"C\"", "\"D\""] {
        assert!(!text.contains(name), "no names in records: {text}");
    }

    // CSV: one row per interval; the declined person's row has no space.
    let (status, csv) = get(&server, &format!("{path}?format=csv"), API_KEY).await;
    assert_eq!(status, 200, "{csv}");
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0].join(","),
        "session_id,room,participant_id,role,arrived_ms,admitted_ms,waited_ms,late,reconnects,space,from_ms,to_ms,left_ms,outcome"
    );
    let summary: Vec<String> = rows[1..].iter().map(|r| [r[2], r[3], r[7], r[8], r[9], r[13]].join(" ")).collect();
    assert_eq!(
        summary,
        [
            "p-a participant false 1 main left",
            "t-1 therapist false 0 main ended",
            "p-b participant true 0 main ended",
            "p-c participant false 0  declined",
            "p-d participant true 0 main removed",
        ]
    );
    assert!(rows[1..].iter().all(|r| r.len() == 14 && r[0] == session.as_str() && r[1] == ROOM));
    let (status, sessions_csv) = get(&server, &format!("{sessions_path}?format=csv"), API_KEY).await;
    assert_eq!(status, 200);
    assert!(sessions_csv.lines().nth(1).is_some_and(|l| l.starts_with(session.as_str()) && l.ends_with(",ended")), "{sessions_csv}");

    // Who may read it: the room's therapists and the operator; not participants, not others.
    let therapist = common::token_for(&server, ROOM, Role::Therapist, "T", "t-1");
    assert_eq!(get(&server, &path, &therapist).await.0, 200);
    let participant = common::token_for(&server, ROOM, Role::Participant, "B", "p-b");
    let (status, body) = get(&server, &path, &participant).await;
    assert_eq!(status, 403, "{body}");
    let elsewhere = common::token_for(&server, "another-room", Role::Therapist, "T", "t-1");
    assert_eq!(get(&server, &path, &elsewhere).await.0, 403);
    assert_eq!(common::http(server.addr(), "GET", &path, &[], "").await.0, 401);
    let (status, body) = get(&server, &format!("{path}?format=xml"), API_KEY).await;
    assert!(status == 400 && body.contains("invalid_request"), "{status} {body}");
    assert_eq!(get(&server, &format!("/api/rooms/{ROOM}/sessions/s-0000000000000000/attendance"), API_KEY).await.0, 404);

    // The records survive a restart, unchanged.
    let before = get(&server, &path, API_KEY).await.1;
    drop((t, b, c, d));
    server.shutdown().await;
    let server = common::start_with(config).await;
    let (status, after) = get(&server, &path, API_KEY).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&after).unwrap(), serde_json::from_str::<Value>(&before).unwrap());
    server.shutdown().await;
}

/// What a support request's requester was last told.
async fn support_status(c: &mut SignalClient) -> (SupportDelivery, String) {
    match recv!(c, ServerMessage::SupportStatus { .. }) {
        ServerMessage::SupportStatus { delivery, resources_text, .. } => (delivery, resources_text),
        _ => unreachable!(),
    }
}

async fn support_list(t: &mut SignalClient) -> Vec<hearth::signal::protocol::SupportRequestInfo> {
    support_list_where(t, |_| true).await
}

/// The first `supportRequests` whose list satisfies `pred` (earlier ones are skipped).
async fn support_list_where(
    t: &mut SignalClient,
    pred: impl Fn(&[hearth::signal::protocol::SupportRequestInfo]) -> bool,
) -> Vec<hearth::signal::protocol::SupportRequestInfo> {
    match recv!(t, ServerMessage::SupportRequests { requests, .. } if pred(requests)) {
        ServerMessage::SupportRequests { requests, .. } => requests,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_support_request_made_while_no_therapist_is_connected_reaches_the_next_one_and_the_requester_hears_the_truth() {
    const ROOM: &str = "support";
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.rooms.reconnect_grace_ms = 10_000;
    config.support.resources_text = "Crisis line: 0800 111 222 (free, day and night).".into();
    config.auth.api_key = API_KEY.into();
    let server = common::start_with(config).await;
    let t_token = common::token_for(&server, ROOM, Role::Therapist, "Dr T", "t-1");
    let (t, _) = connect(&server, ROOM, t_token.clone()).await;
    let (mut p, _) = enter(&server, ROOM, Role::Participant, "p-1").await;

    // The therapist's connection drops: they are in their grace, not connected.
    drop(t);
    p.recv_until(
        "t reconnecting",
        WAIT,
        |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id.as_str() == "t-1" && participant.reconnecting),
    )
    .await
    .unwrap();
    p.send(&ClientMessage::RequestSupport).await.unwrap();
    let (delivery, resources) = support_status(&mut p).await;
    assert_eq!(delivery, SupportDelivery::NoTherapist, "not told it was received while nobody was there");
    assert_eq!(resources, "Crisis line: 0800 111 222 (free, day and night).", "the crisis resources at once");

    // The therapist comes back: the request is delivered, and the requester is told.
    let (mut t, _) = connect(&server, ROOM, t_token).await;
    let (request_id, participant_id) =
        recv!(t, ServerMessage::SupportRequested { request_id, participant_id, .. } => (request_id, participant_id));
    assert_eq!(participant_id.as_str(), "p-1");
    let list = support_list(&mut t).await;
    assert_eq!((list.len(), list[0].state, list[0].requester_present), (1, SupportState::Open, true));
    assert_eq!(support_status(&mut p).await.0, SupportDelivery::Alerted);
    // A second therapist who joins later gets it too, until someone acknowledges it.
    let (mut t2, _) = enter(&server, ROOM, Role::Therapist, "t-2").await;
    recv!(t2, ServerMessage::SupportRequested { .. });

    // Asking again does not make a second request.
    p.send(&ClientMessage::RequestSupport).await.unwrap();
    assert_eq!(support_status(&mut p).await.0, SupportDelivery::Alerted);
    t.send(&ClientMessage::AcknowledgeSupport { request_id: request_id.clone() }).await.unwrap();
    assert_eq!(support_status(&mut p).await.0, SupportDelivery::Seen, "seen only after an acknowledgement");
    let list = support_list_where(&mut t2, |l| l.iter().any(|r| r.state != SupportState::Open)).await;
    assert_eq!(
        (list.len(), list[0].state, list[0].acknowledged_by.as_ref().map(|a| a.as_str())),
        (1, SupportState::Acknowledged, Some("t-1"))
    );

    // Participants may not acknowledge or resolve; unknown ids are refused.
    p.send(&ClientMessage::ResolveSupport { request_id: request_id.clone(), outcome: SupportOutcome::Escalated }).await.unwrap();
    common::expect_error(&mut p, ErrorCode::Forbidden).await;
    t.send(&ClientMessage::AcknowledgeSupport { request_id: hearth::signal::protocol::SupportRequestId::from_raw("sr-nope") })
        .await
        .unwrap();
    common::expect_error(&mut t, ErrorCode::UnknownSupportRequest).await;

    // The requester leaves for good with the request still open: the therapists are alerted.
    p.send(&ClientMessage::Leave).await.unwrap();
    let left = recv!(t, ServerMessage::SupportRequesterLeft { .. });
    assert!(matches!(left, ServerMessage::SupportRequesterLeft { participant_id, .. } if participant_id.as_str() == "p-1"));
    // Ending the session with it open needs a confirmation; without one nothing changes.
    t.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    common::expect_error(&mut t, ErrorCode::SupportOpen).await;
    t.send(&ClientMessage::ResolveSupport { request_id: request_id.clone(), outcome: SupportOutcome::FollowUpNeeded }).await.unwrap();
    support_list_where(&mut t2, |l| l.is_empty()).await;
    t.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    recv!(t2, ServerMessage::SessionEnded { reason: EndReason::Ended, .. });

    // Stored: ids, times and the outcome code.
    let store = server.state().store.clone();
    let stored = until(|| async {
        let r = store.support_requests(ROOM).await.unwrap_or_default();
        (r.len() == 1 && r[0].outcome.as_deref() == Some("followUpNeeded")).then(|| r[0].clone())
    })
    .await;
    let r = &stored;
    assert_eq!((r.participant_id.as_str(), r.acknowledged_by.as_deref(), r.requester_left_open), ("p-1", Some("t-1"), true));
    assert!(r.opened_ms <= r.acknowledged_ms.unwrap() && r.acknowledged_ms <= r.resolved_ms);
    server.shutdown().await;
}

/// Everything `c` receives until (and with) the `checkInClosed` of the round.
async fn until_closed(c: &mut SignalClient) -> Vec<ServerMessage> {
    let mut seen = Vec::new();
    loop {
        let m = c.recv_until("checkInClosed", WAIT, |_| true).await.unwrap();
        let done = matches!(m, ServerMessage::CheckInClosed { .. });
        seen.push(m);
        if done {
            return seen;
        }
    }
}

async fn start_round(t: &mut SignalClient, phase: CheckInPhase, anonymous: bool) -> hearth::signal::protocol::CheckInInfo {
    t.send(&ClientMessage::StartCheckIn {
        phase,
        question: "How is your mood right now?".into(),
        min: None,
        max: None,
        min_label: None,
        max_label: None,
        anonymous,
    })
    .await
    .unwrap();
    match recv!(t, ServerMessage::CheckInStarted { .. }) {
        ServerMessage::CheckInStarted { check_in } => check_in,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn check_in_values_reach_therapists_only_and_trends_span_sessions() {
    const ROOM: &str = "checkin";
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    let server = common::start_with(config).await;
    let (mut t, session1) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    let (mut p1, _) = enter(&server, ROOM, Role::Participant, "p-1").await;
    let (mut p2, _) = enter(&server, ROOM, Role::Participant, "p-2").await;
    let (mut o, _) = enter(&server, ROOM, Role::Observer, "o-1").await;

    // Check-in: p-1 says 3, p-2 passes. Only the therapist sees who said what.
    let round = start_round(&mut t, CheckInPhase::CheckIn, false).await;
    p1.send(&ClientMessage::AnswerCheckIn { check_in_id: round.check_in_id.clone(), value: Some(3) }).await.unwrap();
    p2.send(&ClientMessage::AnswerCheckIn { check_in_id: round.check_in_id.clone(), value: None }).await.unwrap();
    p2.send(&ClientMessage::AnswerCheckIn { check_in_id: round.check_in_id.clone(), value: Some(11) }).await.unwrap();
    common::expect_error(&mut p2, ErrorCode::InvalidCheckInValue).await;
    for _ in 0..2 {
        recv!(t, ServerMessage::CheckInValue { .. });
    }
    t.send(&ClientMessage::CloseCheckIn { check_in_id: round.check_in_id.clone(), share: false }).await.unwrap();
    let seen_t = until_closed(&mut t).await;
    let values: Vec<_> = seen_t
        .iter()
        .filter_map(|m| match m {
            ServerMessage::CheckInValue { participant_id, value, .. } => Some((participant_id.as_str().to_string(), *value)),
            _ => None,
        })
        .collect();
    assert!(values.is_empty(), "values came before the drain: {values:?}");
    let [.., ServerMessage::CheckInClosed { histogram: Some(h), .. }] = &seen_t[..] else { panic!("{seen_t:?}") };
    assert_eq!((h.counts[3], h.passed), (1, 1));
    for (who, c) in [("p-1", &mut p1), ("p-2", &mut p2), ("o-1", &mut o)] {
        for m in until_closed(c).await {
            match &m {
                ServerMessage::CheckInValue { .. } | ServerMessage::CheckInCounts(_) => panic!("{who} received {m:?}"),
                ServerMessage::CheckInAnswered { .. } => assert_ne!(who, "o-1"),
                ServerMessage::CheckInClosed { histogram, .. } => assert_eq!(histogram, &None, "not shared: {who}"),
                _ => {}
            }
            let text = serde_json::to_string(&m).unwrap();
            assert!(!(who != "p-1" && text.contains("p-1") && text.contains("\"value\"")), "{who} got p-1's value: {text}");
        }
    }

    // Check-out: p-1 says 7; the therapist sees the change since check-in; shared counts only.
    let round = start_round(&mut t, CheckInPhase::CheckOut, false).await;
    p1.send(&ClientMessage::AnswerCheckIn { check_in_id: round.check_in_id.clone(), value: Some(7) }).await.unwrap();
    let v = recv!(t, ServerMessage::CheckInValue { .. });
    assert!(matches!(v, ServerMessage::CheckInValue { value: Some(7), change: Some(4), .. }), "{v:?}");
    t.send(&ClientMessage::CloseCheckIn { check_in_id: round.check_in_id.clone(), share: true }).await.unwrap();
    for c in [&mut p1, &mut p2] {
        let seen = until_closed(c).await;
        let Some(ServerMessage::CheckInClosed { histogram: Some(h), .. }) = seen.last() else { panic!("{seen:?}") };
        assert_eq!((h.counts[7], h.counts.iter().sum::<u32>()), (1, 1), "counts, never names");
        assert!(seen.iter().all(|m| !matches!(m, ServerMessage::CheckInValue { .. })));
    }
    t.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    recv!(p1, ServerMessage::SessionEnded { .. });

    // A second session: check-in 5, and an anonymous round that keeps counts only.
    let (mut t, session2) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    assert_ne!(session1, session2);
    let (mut p1, _) = enter(&server, ROOM, Role::Participant, "p-1").await;
    let round = start_round(&mut t, CheckInPhase::CheckIn, false).await;
    p1.send(&ClientMessage::AnswerCheckIn { check_in_id: round.check_in_id.clone(), value: Some(5) }).await.unwrap();
    // With the live value, the server sends last session's check-in (read from the store, so
    // it may follow the first `checkInValue`); nobody else gets either.
    recv!(t, ServerMessage::CheckInValue { value: Some(5), previous: Some(3), .. });
    t.send(&ClientMessage::CloseCheckIn { check_in_id: round.check_in_id.clone(), share: false }).await.unwrap();
    until_closed(&mut t).await;
    let round = start_round(&mut t, CheckInPhase::CheckOut, true).await;
    p1.send(&ClientMessage::AnswerCheckIn { check_in_id: round.check_in_id.clone(), value: Some(2) }).await.unwrap();
    t.send(&ClientMessage::CloseCheckIn { check_in_id: round.check_in_id.clone(), share: false }).await.unwrap();
    let seen = until_closed(&mut t).await;
    assert!(seen.iter().all(|m| !matches!(m, ServerMessage::CheckInValue { .. })), "anonymous: no values, even to therapists");
    assert!(seen.iter().any(|m| matches!(m, ServerMessage::CheckInCounts(h) if h.counts[2] == 1)));

    // The trend: p-1's own, across both sessions, without the anonymous answer.
    let path = format!("/api/rooms/{ROOM}/trends/p-1");
    let own = common::token_for(&server, ROOM, Role::Participant, "P1", "p-1");
    let trend = get_json_when(&server, &path, &own, |v| v["values"].as_array().is_some_and(|a| a.len() == 3)).await;
    let points: Vec<(String, String, Value)> = trend["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["sessionId"].as_str().unwrap().to_string(), v["phase"].as_str().unwrap().to_string(), v["value"].clone()))
        .collect();
    assert_eq!(
        points,
        [
            (session1.to_string(), "checkIn".to_string(), json!(3)),
            (session1.to_string(), "checkOut".to_string(), json!(7)),
            (session2.to_string(), "checkIn".to_string(), json!(5)),
        ]
    );
    let other = common::token_for(&server, ROOM, Role::Participant, "P2", "p-2");
    assert_eq!(get(&server, &path, &other).await.0, 403, "nobody else's trend");
    let therapist = common::token_for(&server, ROOM, Role::Therapist, "T", "t-1");
    assert_eq!(get(&server, &path, &therapist).await.0, 200);
    // A participant may not open a round.
    p1.send(&ClientMessage::StartCheckIn {
        phase: CheckInPhase::CheckIn,
        question: "?".into(),
        min: None,
        max: None,
        min_label: None,
        max_label: None,
        anonymous: false,
    })
    .await
    .unwrap();
    common::expect_error(&mut p1, ErrorCode::Forbidden).await;
    server.shutdown().await;
}

/// A local webhook receiver: answers `fail_first` requests with 500, then 200; keeps each
/// request's headers and body.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Hit>>>,
}

/// One request the receiver got: its headers (names lower-cased), its body, the status sent.
type Hit = (Vec<(String, String)>, String, u16);

async fn receiver(fail_first: usize) -> Receiver {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            let (head, body) = loop {
                let Ok(n) = s.read(&mut chunk).await else { break (String::new(), String::new()) };
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let head = text[..i].to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break (head, String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string());
                    }
                }
            };
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
                .collect();
            let status = {
                let mut g = store.lock().unwrap();
                let status = if g.len() < fail_first { 500 } else { 200 };
                g.push((headers, body, status));
                status
            };
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    Receiver { url, got }
}

#[tokio::test]
async fn the_webhook_gets_a_signed_summary_after_retries_and_a_failing_receiver_changes_nothing() {
    const ROOM: &str = "hook";
    const SECRET: &str = "a-webhook-signing-secret-123";
    let rx = receiver(2).await;
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.webhook.url = rx.url.clone();
    config.webhook.secret = SECRET.into();
    config.webhook.first_retry_ms = 20;
    config.webhook.max_attempts = 4;
    let server = common::start_with(config).await;
    let (mut t, session) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    let (mut p, _) = enter(&server, ROOM, Role::Participant, "p-1").await;
    p.send(&ClientMessage::Leave).await.unwrap();
    recv!(t, ServerMessage::ParticipantLeft { .. });
    t.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    recv!(t, ServerMessage::SessionEnded { .. });

    assert!(common::eventually(WAIT, || rx.got.lock().unwrap().iter().any(|r| r.2 == 200)).await, "delivered after retries");
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.iter().map(|r| r.2).collect::<Vec<_>>(), [500, 500, 200], "retried until accepted, then no more");
    let delivery: Vec<_> = got.iter().map(|r| r.0.iter().find(|h| h.0 == "x-hearth-delivery").map(|h| h.1.clone())).collect();
    assert!(delivery[0].is_some() && delivery.iter().all(|d| *d == delivery[0]), "one delivery id for every attempt");
    let (headers, body, _) = &got[2];
    let header = |k: &str| headers.iter().find(|h| h.0 == k).map(|h| h.1.clone()).unwrap_or_default();
    let ts: i64 = header("x-hearth-timestamp").parse().unwrap();
    assert_eq!(header("x-hearth-signature"), hearth::webhook::sign(SECRET, ts, body.as_bytes()), "signed over timestamp and body");
    assert_ne!(header("x-hearth-signature"), hearth::webhook::sign("another-secret-entirely-xx", ts, body.as_bytes()));
    let summary: hearth::webhook::SessionSummary = serde_json::from_str(body).unwrap();
    assert_eq!((summary.event.as_str(), summary.session.id.as_str()), ("sessionEnded", session.as_str()));
    let outcomes: Vec<_> = summary.attendance.iter().map(|a| (a.participant_id.as_str(), a.outcome.as_deref())).collect();
    assert_eq!(outcomes, [("t-1", Some("ended")), ("p-1", Some("left"))]);
    assert!(!body.contains("\"t-1\"") || !body.contains("Dr"), "ids only");
    server.shutdown().await;

    // A receiver that always fails: the room goes on as if there were none.
    let rx = receiver(usize::MAX).await;
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.webhook.url = rx.url.clone();
    config.webhook.secret = SECRET.into();
    config.webhook.first_retry_ms = 20;
    config.webhook.max_attempts = 3;
    let server = common::start_with(config).await;
    let (mut t, first) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    t.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    recv!(t, ServerMessage::SessionEnded { .. });
    let (mut t, second) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    let (_p, joined_session) = enter(&server, ROOM, Role::Participant, "p-1").await;
    assert!(second != first && joined_session == second, "a new session runs while the webhook fails");
    t.send(&ClientMessage::RaiseHand).await.unwrap_or(());
    assert!(common::eventually(WAIT, || rx.got.lock().unwrap().len() >= 3).await);
    assert_eq!(rx.got.lock().unwrap().iter().filter(|r| r.2 == 500).count(), 3, "gave up after max_attempts");
    let (status, body) = get(
        &server,
        &format!("/api/rooms/{ROOM}/sessions/{first}/attendance"),
        &common::token_for(&server, ROOM, Role::Therapist, "T", "t-1"),
    )
    .await;
    assert_eq!(status, 200, "the records are kept whatever the webhook did: {body}");
    server.shutdown().await;
}

#[tokio::test]
async fn retention_purges_old_records_at_start() {
    let mut config = common::test_config();
    config.store.retention_days = 30;
    let store = hearth::store::Store::open(&config.store.path).unwrap();
    let old = hearth::store::now_ms() - 40 * 86_400_000;
    let recorder = hearth::store::Recorder::spawn(store.clone());
    for (id, t) in [("s-old", old), ("s-new", hearth::store::now_ms())] {
        recorder.record(hearth::store::Record::Session(hearth::store::SessionRecord {
            id: id.into(),
            room: "kept".into(),
            started_ms: t,
            ended_ms: Some(t + 1),
            end_reason: Some("ended".into()),
        }));
    }
    until(|| async { (store.sessions("kept").await.unwrap_or_default().len() == 2).then_some(()) }).await;
    drop((store, recorder));
    let server = common::start_with(config).await;
    let s = server.state().store.clone();
    // The old session is purged at start, the new one kept.
    until(|| async {
        (s.sessions("kept").await.unwrap_or_default().iter().map(|s| s.id.clone()).collect::<Vec<_>>() == ["s-new"]).then_some(())
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn therapists_in_the_main_room_see_a_member_drop_in_a_breakout() {
    const ROOM: &str = "whereabouts";
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.rooms.reconnect_grace_ms = 10_000;
    let server = common::start_with(config).await;
    let (mut t, _) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    let p_token = common::token_for(&server, ROOM, Role::Participant, "P", "p-1");
    let (mut p, _) = connect(&server, ROOM, p_token.clone()).await;
    admitted(&mut p).await;
    t.send(&ClientMessage::CreateBreakout { name: "Pairs".into() }).await.unwrap();
    let plan = recv!(t, ServerMessage::BreakoutsUpdated { breakouts } if !breakouts.rooms.is_empty());
    let ServerMessage::BreakoutsUpdated { breakouts } = plan else { unreachable!() };
    let b = breakouts.rooms[0].id.clone();
    t.send(&ClientMessage::AssignBreakout { participant_id: common::pid("p-1"), breakout_id: Some(b.clone()) }).await.unwrap();
    t.send(&ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false }).await.unwrap();
    recv!(p, ServerMessage::SpaceChanged { breakout: Some(_), .. });
    let in_breakout = |m: &ServerMessage, reconnecting: bool| {
        matches!(m, ServerMessage::BreakoutsUpdated { breakouts } if breakouts.open && breakouts.whereabouts.iter().any(|w| {
            w.participant_id.as_str() == "p-1" && w.breakout_id.as_deref() == Some(b.as_str()) && w.reconnecting == reconnecting
        }))
    };
    t.recv_until("p-1 in the breakout", WAIT, |m| in_breakout(m, false)).await.unwrap();

    // p-1's connection drops in the breakout: the therapist, in the main room, sees it.
    drop(p);
    t.recv_until("p-1 reconnecting", WAIT, |m| in_breakout(m, true)).await.unwrap();
    let (mut p, _) = connect(&server, ROOM, p_token).await;
    admitted(&mut p).await;
    t.recv_until("p-1 back", WAIT, |m| in_breakout(m, false)).await.unwrap();
    server.shutdown().await;
}

/// With `rooms.talk_time_in_attendance` on, each participant's seconds of speech (the talk-time
/// balance, from the audio levels two webrtc peers send) are in their attendance record, JSON
/// and CSV; the therapist's record has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_time_goes_into_the_attendance_when_the_clinic_keeps_it() {
    let _machine = common::machine(common::Load::Media).await;
    use hearth::client::{MediaClient, MediaOptions};
    const ROOM: &str = "talk-record";
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.rooms.talk_time_in_attendance = true;
    config.auth.api_key = API_KEY.into();
    let server = common::start_with(config).await;
    let (mut t, session) = enter(&server, ROOM, Role::Therapist, "t-1").await;
    let url = common::ws_url(&server);
    let mut peers = Vec::new();
    for (id, level) in [("p-loud", 20), ("p-still", 127)] {
        let mut o = MediaOptions::light(&url, ROOM, id).with_token(common::token_for(&server, ROOM, Role::Participant, id, id));
        o.publish_video = false;
        o.audio_level = Some(level);
        peers.push(MediaClient::join(o).await.expect("joins"));
    }
    t.recv_until("two seconds of speech", WAIT, |m| {
        matches!(m, ServerMessage::TalkTime { people } if people.iter().any(|p| p.participant_id.as_str() == "p-loud" && p.seconds >= 2))
    })
    .await
    .unwrap();
    for p in peers {
        p.close().await;
    }
    t.send(&ClientMessage::EndSession { confirm: true, closing_message: None }).await.unwrap();
    let path = format!("/api/rooms/{ROOM}/sessions/{session}/attendance");
    let record = get_json_when(&server, &path, API_KEY, |v| v["session"]["endReason"] == "ended").await;
    let talk = |id: &str| {
        let people = record["attendance"].as_array().unwrap();
        people.iter().find(|p| p["participantId"] == id).map(|p| p["talkSeconds"].clone()).unwrap_or_else(|| panic!("{id}: {record}"))
    };
    assert!(talk("p-loud").as_u64().is_some_and(|s| s >= 2), "{record}");
    assert_eq!(talk("p-still"), json!(0), "{record}");
    assert_eq!(talk("t-1"), Value::Null, "therapists are not counted: {record}");
    let (status, csv) = get(&server, &format!("{path}?format=csv"), API_KEY).await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    assert!(lines.next().is_some_and(|h| h.ends_with(",outcome,talk_seconds")), "{csv}");
    assert!(lines.any(|l| l.contains(",p-still,") && l.ends_with(",0")), "{csv}");
    server.shutdown().await;
}
