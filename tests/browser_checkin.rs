//! Check-in and the trend charts through a real browser: the therapist's page (Chromium) runs a
//! check-in that a headless participant (Sam, `hearth::client::SignalClient`) answers. Sam has
//! two earlier sessions on record (written to the store before the server starts), so after
//! the round closes the therapist's people list shows Sam's trend as a small SVG chart of three
//! points (check-ins as circles, check-outs as squares) with a text alternative naming every
//! value, and the check-in panel shows this session's chart. Screenshots of both go to
//! `target/test-artifacts/` (files starting `checkin-`).
//!
//! Same harness as `tests/browser.rs`: needs `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (`scripts/install-test-deps.sh`), and fails rather than skips without them.

mod common;

use common::browser::*;

use std::path::Path;
use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use hearth::store::{CheckInValueRecord, Record, Recorder, SessionRecord, Store};
use serde_json::json;

const ROOM: &str = "browser-checkin";
const TEST_DEADLINE: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(20);
const SCREENSHOT_PREFIX: &str = "checkin-";

/// Sam's answer is in the therapist's live list, only there.
const ANSWER_SHOWN_JS: &str = r#"
const li = document.querySelector('#checkin-answers li[data-participant-id="p-sam"]');
return Boolean(li && /^Sam: 6/.test(li.textContent));
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
    with_deadline(TEST_DEADLINE, "browser check-in test", run()).await;
}

async fn run() {
    let artifacts = artifacts_dir(SCREENSHOT_PREFIX);
    let profile = TempDir::new("checkin-therapist");
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    seed_history(&config.store.path).await;
    let server = common::start_with(config).await;
    let driver = ChromeDriver::spawn(&artifacts.join("checkin-chromedriver.log")).await;
    let therapist = open_browser(&driver.url, profile.path()).await;
    let outcome = scenario(&therapist, &server, &artifacts).await;
    wrap_up(&[("therapist", &therapist)], &artifacts, SCREENSHOT_PREFIX, outcome.is_err()).await;
    server.shutdown().await;
    drop(driver);
    if let Err(message) = outcome {
        panic!("{message}");
    }
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

async fn scenario(therapist: &Client, server: &hearth::server::RunningServer, artifacts: &Path) -> Result<(), String> {
    let base = format!("http://{}", server.addr());
    let shot = |name: &str| artifacts.join(format!("{SCREENSHOT_PREFIX}{name}.png"));
    let token = common::token_for(server, ROOM, Role::Therapist, "Dr. Rivera", "t-rivera");
    join_with_link(therapist, "therapist", &base, &token).await?;

    let mut sam = SignalClient::connect(&common::ws_url(server)).await.map_err(|e| format!("sam: {e}"))?;
    let sam_token = common::token_for(server, ROOM, Role::Participant, "Sam", "p-sam");
    sam.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(ROOM).unwrap(), token: sam_token })
        .await
        .map_err(|e| format!("sam: {e}"))?;
    sam.recv_until("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.map_err(|e| format!("sam: {e}"))?;

    // The therapist starts the check-in from the panel; Sam answers 6.
    wait_for(therapist, "the check-in panel", VISIBLE_JS, &[json!("#checkin-start")]).await?;
    click(therapist, "therapist", "#checkin-start").await?;
    let started = sam.recv_until("checkInStarted", WAIT, |m| matches!(m, ServerMessage::CheckInStarted { .. })).await;
    let Ok(ServerMessage::CheckInStarted { check_in }) = started else { return Err(format!("sam: no check-in: {started:?}")) };
    sam.send(&ClientMessage::AnswerCheckIn { check_in_id: check_in.check_in_id, value: Some(6) }).await.map_err(|e| format!("sam: {e}"))?;
    wait_for(therapist, "Sam's answer in the therapist's list", ANSWER_SHOWN_JS, &[]).await?;
    save_screenshot_of(therapist, "#checkin-section", &shot("therapist-answers")).await;

    // Closed: the trend in the people list and this session's chart.
    click(therapist, "therapist", "#checkin-close").await?;
    wait_for(therapist, "Sam's trend chart in the people list", TREND_SHOWN_JS, &[]).await?;
    wait_for(therapist, "the session chart", SESSION_CHART_JS, &[]).await?;
    save_screenshot_of(therapist, "#people-section", &shot("therapist-trend")).await;
    save_screenshot_of(therapist, "#checkin-section", &shot("therapist-session-chart")).await;
    save_screenshot(therapist, &shot("therapist-page")).await;
    Ok(())
}
