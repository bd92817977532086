//! Running a group in real browsers: the therapist starts a go-around round from the side
//! panel; a participant on a phone-sized screen (390×844) sees whose turn it is, the server's
//! countdown and the order, without sideways scrolling, and passes; the therapist's talk-time
//! chart shows that participant's speech (a steady tone as their microphone) and not the
//! silent one's.
//!
//! Same harness as `tests/browser.rs`: needs `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (`scripts/install-test-deps.sh`). Screenshots go to `target/test-artifacts/` (files starting
//! `group-`): `group-round-phone.png` and `group-talk-time.png`.

mod common;

use common::browser::*;

use std::path::Path;
use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use serde_json::json;

const ROOM: &str = "browser-group";
const TEST_DEADLINE: Duration = Duration::from_secs(120);
const SCREENSHOT_PREFIX: &str = "group-";

/// The round bar on the phone: its turn line says `arguments[0]`, the countdown reads m:ss, the
/// order lists two people, and nothing is wider than the screen.
const PHONE_SEES_TURN_JS: &str = r#"
const bar = document.getElementById('round-bar');
if (!bar || bar.hidden || bar.offsetParent === null) return false;
const turn = document.getElementById('round-turn').textContent;
const clock = document.getElementById('round-countdown').textContent;
const order = document.querySelectorAll('#round-order li').length;
const fits = document.documentElement.scrollWidth <= window.innerWidth + 1 && bar.getBoundingClientRect().right <= window.innerWidth + 1;
return turn.startsWith(arguments[0]) && /^\d:\d\d$/.test(clock) && order === 2 && fits;
"#;

/// The therapist's chart has a row for `arguments[0]` with at least `arguments[1]` seconds and a
/// bar drawn, and a row for `arguments[2]` at zero.
const THERAPIST_SEES_TALK_JS: &str = r#"
const row = document.querySelector(`#talk-list li[data-participant-id="${arguments[0]}"]`);
const quiet = document.querySelector(`#talk-list li[data-participant-id="${arguments[2]}"]`);
if (!row || !quiet || document.getElementById('talk-section').hidden) return false;
return Number(row.dataset.seconds) >= arguments[1] && row.querySelector('.talk-fill').getBoundingClientRect().width > 10
  && quiet.dataset.seconds === '0';
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_on_a_phone_and_the_therapists_talk_time_chart() {
    with_deadline(TEST_DEADLINE, "browser group test", run()).await;
}

async fn run() {
    let artifacts = artifacts_dir(SCREENSHOT_PREFIX);
    let therapist_profile = TempDir::new("group-therapist");
    let phone_profile = TempDir::new("group-phone");
    let voice = artifacts.join("group-voice.wav");
    write_tone_wav(&voice, 10, 0.3);
    let server = common::start_open_server().await;
    let driver = ChromeDriver::spawn(&artifacts.join("group-chromedriver.log")).await;
    let phone_opts = BrowserOptions {
        extra_args: vec![format!("--use-file-for-fake-audio-capture={}", voice.display())],
        ..BrowserOptions::size(390, 844)
    };
    let (therapist, phone) = tokio::join!(
        open_browser(&driver.url, therapist_profile.path()),
        open_browser_with(&driver.url, phone_profile.path(), &phone_opts)
    );
    let outcome = scenario(&therapist, &phone, &server, &artifacts).await;
    wrap_up(&[("therapist", &therapist), ("phone", &phone)], &artifacts, SCREENSHOT_PREFIX, outcome.is_err()).await;
    server.shutdown().await;
    drop(driver);
    if let Err(message) = outcome {
        panic!("{message}");
    }
}

async fn scenario(therapist: &Client, phone: &Client, server: &hearth::server::RunningServer, artifacts: &Path) -> Result<(), String> {
    let base = format!("http://{}", server.addr());
    let shot = |name: &str| artifacts.join(format!("{SCREENSHOT_PREFIX}{name}.png"));
    join_with_link(therapist, "therapist", &base, &common::token_for(server, ROOM, Role::Therapist, "Dr. Rivera", "t-1")).await?;
    join_with_link(phone, "phone", &base, &common::token_for(server, ROOM, Role::Participant, "Pat", "p-pat")).await?;
    // A second, silent participant without a browser.
    let mut quinn = SignalClient::connect(&common::ws_url(server)).await.map_err(|e| e.to_string())?;
    let token = common::token_for(server, ROOM, Role::Participant, "Quinn", "p-quinn");
    quinn
        .send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(ROOM).unwrap(), token })
        .await
        .map_err(|e| e.to_string())?;
    quinn
        .recv_until("admitted", Duration::from_secs(10), |m| matches!(m, ServerMessage::Admitted { .. }))
        .await
        .map_err(|e| e.to_string())?;

    // The therapist starts a round: everyone in join order, a minute each, passing allowed.
    wait_for(therapist, "the round form", VISIBLE_JS, &[json!("#round-start")]).await?;
    fill(therapist, "#round-seconds", "60").await?;
    click(therapist, "therapist", "#round-start button[type=submit]").await?;
    wait_for(phone, "the phone's turn with a countdown", PHONE_SEES_TURN_JS, &[json!("It is your turn")]).await?;
    save_screenshot(phone, &shot("round-phone")).await;

    // Pat's tone counts as speech; Quinn has said nothing.
    wait_for_within(
        therapist,
        "the talk-time chart",
        THERAPIST_SEES_TALK_JS,
        &[json!("p-pat"), json!(2), json!("p-quinn")],
        Duration::from_secs(30),
    )
    .await?;
    save_screenshot(therapist, &shot("talk-time")).await;
    save_screenshot_of(therapist, "#talk-section", &shot("talk-time-chart")).await;
    let participant_chart =
        phone.execute("return window.hearth.talkTime.length === 0 && document.getElementById('talk-section').hidden;", vec![]).await;
    if !matches!(participant_chart, Ok(serde_json::Value::Bool(true))) {
        return Err(format!("a participant must never see talk time: {participant_chart:?}"));
    }

    // Pat passes: the turn moves to Quinn on both screens.
    click(phone, "phone", "#round-pass").await?;
    wait_for(phone, "Quinn's turn on the phone", PHONE_SEES_TURN_JS, &[json!("It is Quinn's turn")]).await?;
    wait_for(
        therapist,
        "Quinn's turn for the therapist",
        "return document.getElementById('round-turn').textContent.startsWith(arguments[0]);",
        &[json!("It is Quinn's turn")],
    )
    .await?;
    Ok(())
}
