//! Check-in and the trend charts through a real browser: the therapist's page (Chromium) runs a
//! check-in that a headless participant (Sam, `hearth::client::SignalClient`) answers. Sam has
//! two earlier sessions on record (written to the store before the server starts), so after
//! the round closes the therapist's people list shows Sam's trend as a small SVG chart of three
//! points (check-ins as circles, check-outs as squares) with a text alternative naming every
//! value, and the check-in panel shows this session's chart. Written with the browser fixture
//! (`tests/common/fixture.rs`); screenshots of both go to `target/test-artifacts/checkin/`.

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::path::Path;
use std::time::Duration;

use hearth::auth::Role;
use hearth::signal::protocol::{ClientMessage, ServerMessage};
use hearth::store::{CheckInValueRecord, Record, Recorder, SessionRecord, Store};
use serde_json::json;

const ROOM: &str = "browser-checkin";
const TEST_DEADLINE: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(20);

/// Sam's answer is in the therapist's live list, only there, with the check-in of Sam's last
/// session the server sent with it.
const ANSWER_SHOWN_JS: &str = r#"
const li = document.querySelector('#checkin-answers li[data-participant-id="p-sam"]');
return Boolean(li && li.textContent === 'Sam: 6, last time 4');
"#;

/// Sam's row in the people list carries a trend chart of three points: two circles (check-ins)
/// and a square (check-out), with a text alternative listing the values.
const TREND_SHOWN_JS: &str = r#"
const fig = document.querySelector('#people-list li[data-participant-id="p-sam"] figure.trend');
if (!fig) return false;
const svg = fig.querySelector('svg[role="img"]');
const text = fig.querySelector('figcaption').textContent;
return Boolean(svg && fig.dataset.points === '4'
  && svg.querySelectorAll('circle.trend-in').length === 3 && svg.querySelectorAll('rect.trend-out').length === 1
  && svg.querySelector('title').textContent === text
  && /Check-in 3/.test(text) && /Check-out 5/.test(text) && /Check-in 6/.test(text));
"#;

/// The session chart: Sam's check-in as a circle, with a text alternative.
const SESSION_CHART_JS: &str = r#"
const fig = document.querySelector('#session-chart');
return Boolean(fig && fig.querySelector('svg circle.trend-in')
  && /Sam: check-in 6, check-out none/.test(fig.querySelector('p.visually-hidden').textContent));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_therapist_runs_a_check_in_and_sees_each_members_trend_as_a_chart() {
    let config = open_config();
    seed_history(&config.store.path).await;
    let mut fx = BrowserTest::with_server("checkin", TEST_DEADLINE, config).await;
    let [therapist] = fx.open([PageSpec::desktop("therapist")]).await;
    let outcome = fx.within(scenario(&fx, &therapist)).await;
    fx.finish(outcome).await;
}

/// Two earlier sessions of Sam's: check-in 3, check-out 5 (the first); check-in 4 (the second).
async fn seed_history(path: &Path) {
    let store = Store::open(path).expect("store");
    let recorder = Recorder::spawn(store.clone());
    let day = 86_400_000;
    let now = hearth::store::now_ms();
    for (session, at, phase, value) in [
        ("s-one", now - 14 * day, "checkIn", 3),
        ("s-one", now - 14 * day + 3_000_000, "checkOut", 5),
        ("s-two", now - 7 * day, "checkIn", 4),
    ] {
        recorder.record(Record::Session(SessionRecord {
            id: session.into(),
            room: ROOM.into(),
            started_ms: at,
            ended_ms: Some(at + 1),
            end_reason: Some("ended".into()),
        }));
        recorder.record(Record::CheckIn(CheckInValueRecord {
            session_id: session.into(),
            room: ROOM.into(),
            participant_id: "p-sam".into(),
            phase: phase.into(),
            value: Some(value),
            at_ms: at,
        }));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.check_in_values(ROOM, "p-sam").await.unwrap_or_default().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "history not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario(fx: &BrowserTest, therapist: &Client) -> Result<(), String> {
    fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-rivera", "Dr. Rivera")).await?;
    let mut sam = common::join(fx.server(), ROOM, Role::Participant, "Sam", "p-sam").await;

    // The therapist starts the check-in from the panel; Sam answers 6.
    wait_for(therapist, "the check-in panel", VISIBLE_JS, &[json!("#checkin-start")]).await?;
    click(therapist, "therapist", "#checkin-start").await?;
    let started = sam.recv_until("checkInStarted", WAIT, |m| matches!(m, ServerMessage::CheckInStarted { .. })).await;
    let Ok(ServerMessage::CheckInStarted { check_in }) = started else { return Err(format!("sam: no check-in: {started:?}")) };
    sam.send(&ClientMessage::AnswerCheckIn { check_in_id: check_in.check_in_id, value: Some(6) }).await.map_err(|e| format!("sam: {e}"))?;
    wait_for(therapist, "Sam's answer in the therapist's list", ANSWER_SHOWN_JS, &[]).await?;
    fx.shot_of(therapist, "#checkin-section", "therapist-answers").await;

    // Closed: the trend in the people list and this session's chart.
    click(therapist, "therapist", "#checkin-close").await?;
    wait_for(therapist, "Sam's trend chart in the people list", TREND_SHOWN_JS, &[]).await?;
    wait_for(therapist, "the session chart", SESSION_CHART_JS, &[]).await?;
    fx.shot_of(therapist, "#people-section", "therapist-trend").await;
    fx.shot_of(therapist, "#checkin-section", "therapist-session-chart").await;
    fx.shot(therapist, "therapist-page").await;
    Ok(())
}
