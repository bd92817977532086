//! Running a group in real browsers: the therapist starts a go-around round from the side
//! panel; a participant on a phone-sized screen (390×844) sees whose turn it is, the server's
//! countdown and the order, without sideways scrolling, and passes; the therapist's talk-time
//! chart shows that participant's speech (a steady tone as their microphone) and not the
//! silent one's.
//!
//! Written with the browser fixture (`tests/common/fixture.rs`). Screenshots go to
//! `target/test-artifacts/group/`: `round-phone.png` and `talk-time.png`; the partners test keeps
//! `target/test-artifacts/partners/`: `partners-phone.png` and `partners-therapist.png`.

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use hearth::auth::Role;
use serde_json::json;

const ROOM: &str = "browser-group";
const TEST_DEADLINE: Duration = Duration::from_secs(120);

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
    let mut fx = BrowserTest::with_server("group", TEST_DEADLINE, open_config()).await;
    let voice = fx.artifacts().join("voice.wav");
    write_tone_wav(&voice, 10, 0.3);
    let phone = PageSpec::phone("phone").arg(format!("--use-file-for-fake-audio-capture={}", voice.display()));
    let [therapist, phone] = fx.open([PageSpec::desktop("therapist"), phone]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &phone)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, therapist: &Client, phone: &Client) -> Result<(), String> {
    fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-1", "Dr. Rivera")).await?;
    fx.join(phone, "phone", ROOM, Role::Participant, ("p-pat", "Pat")).await?;
    // A second, silent participant without a browser.
    let _quinn = common::join(fx.server(), ROOM, Role::Participant, "Quinn", "p-quinn").await;

    // The therapist starts a round: everyone in join order, a minute each, passing allowed.
    wait_for(therapist, "the round form", VISIBLE_JS, &[json!("#round-start")]).await?;
    fill(therapist, "#round-seconds", "60").await?;
    click(therapist, "therapist", "#round-start button[type=submit]").await?;
    wait_for(phone, "the phone's turn with a countdown", PHONE_SEES_TURN_JS, &[json!("It is your turn")]).await?;
    fx.shot(phone, "round-phone").await;

    // Pat's tone counts as speech; Quinn has said nothing.
    wait_for_within(
        therapist,
        "the talk-time chart",
        THERAPIST_SEES_TALK_JS,
        &[json!("p-pat"), json!(2), json!("p-quinn")],
        Duration::from_secs(30),
    )
    .await?;
    fx.shot(therapist, "talk-time").await;
    fx.shot_of(therapist, "#talk-section", "talk-time-chart").await;
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

/// The participant's partner line on the phone says `arguments[0]` and fits the screen.
const PHONE_SEES_PARTNER_JS: &str = r#"
const line = document.getElementById('partners-line');
if (!line || line.hidden || line.offsetParent === null) return false;
const fits = document.documentElement.scrollWidth <= window.innerWidth + 1;
return line.textContent === arguments[0] && fits;
"#;

/// The therapist's saved groups list `arguments[0]` groups.
const THERAPIST_SEES_GROUPS_JS: &str = r#"
const section = document.getElementById('partners-section');
if (!section || section.hidden) return false;
return document.querySelectorAll('#partners-groups li').length === arguments[0]
  && document.getElementById('partners-groups').textContent.includes(arguments[1]);
"#;

/// Accountability partners in browsers: a co-therapist (a raw client) puts people in breakout
/// rooms; the therapist saves them as partner groups with one button, a participant on a phone
/// reads "Your accountability partner: Ben." (and nobody else's pairing), and the therapist opens
/// breakout rooms with exactly those groups in one action. Screenshots `partners-phone.png`
/// and `partners-therapist.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_are_saved_from_breakouts_shown_to_each_member_and_opened_in_one_action() {
    let mut fx = BrowserTest::with_server("partners", TEST_DEADLINE, open_config()).await;
    let [therapist, phone] = fx.open([PageSpec::desktop("therapist"), PageSpec::phone("phone")]).await;
    let outcome = fx.within(partners_scenario(&fx, &therapist, &phone)).await;
    fx.finish(outcome).await;
}

async fn partners_scenario(fx: &BrowserTest, therapist: &Client, phone: &Client) -> Result<(), String> {
    use hearth::signal::protocol::{ClientMessage, ServerMessage};
    const ROOM: &str = "browser-partners";
    fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-1", "Dr. Rivera")).await?;
    fx.join(phone, "phone", ROOM, Role::Participant, ("p-ana", "Ana")).await?;
    let server = fx.server();
    let mut others = Vec::new();
    for (id, name) in [("p-ben", "Ben"), ("p-cy", "Cy"), ("p-dee", "Dee")] {
        others.push(common::join(server, ROOM, Role::Participant, name, id).await);
    }
    let mut co = common::join(server, ROOM, Role::Therapist, "Co", "t-2").await;
    for name in ["Garden", "Library"] {
        co.send(&ClientMessage::CreateBreakout { name: name.into() }).await.map_err(|e| e.to_string())?;
    }
    for (id, room) in [("p-ana", "b1"), ("p-ben", "b1"), ("p-cy", "b2"), ("p-dee", "b2")] {
        co.send(&ClientMessage::AssignBreakout { participant_id: common::pid(id), breakout_id: Some(room.into()) })
            .await
            .map_err(|e| e.to_string())?;
    }
    co.recv_until(
        "the plan",
        Duration::from_secs(10),
        |m| matches!(m, ServerMessage::BreakoutsUpdated { breakouts } if breakouts.rooms.iter().all(|r| r.members.len() == 2)),
    )
    .await
    .map_err(|e| e.to_string())?;
    fx.step("breakouts planned; the therapist saves them as partners");

    wait_for(
        therapist,
        "the save button",
        "const b = document.getElementById('partners-save'); return b && !b.disabled && b.offsetParent !== null;",
        &[],
    )
    .await?;
    click(therapist, "therapist", "#partners-save").await?;
    wait_for(therapist, "two saved groups", THERAPIST_SEES_GROUPS_JS, &[json!(2), json!("Group 1: Ana and Ben")]).await?;
    wait_for(phone, "Ana's partner line", PHONE_SEES_PARTNER_JS, &[json!("Your accountability partner: Ben.")]).await?;
    fx.shot(phone, "partners-phone").await;

    // Dee has to go: Cy, her partner, joins another group (the default choice).
    if let Some(mut dee) = others.pop() {
        dee.send(&ClientMessage::Leave).await.map_err(|e| e.to_string())?;
    }
    co.recv_until(
        "Dee left",
        Duration::from_secs(10),
        |m| matches!(m, ServerMessage::ParticipantLeft { participant_id } if participant_id.as_str() == "p-dee"),
    )
    .await
    .map_err(|e| e.to_string())?;
    click(therapist, "therapist", "#partners-open").await?;
    wait_for(
        phone,
        "Ana in a partner breakout",
        "return document.body.textContent.includes(arguments[0]);",
        &[json!("You are in breakout: Partners 1")],
    )
    .await?;
    wait_for(
        therapist,
        "the therapist sees them open",
        "return document.getElementById('partners-status').textContent === arguments[0];",
        &[json!("Partner breakout rooms are open.")],
    )
    .await?;
    fx.shot_of(therapist, "#partners-section", "partners-therapist").await;
    let probe = phone.execute("return window.hearth.partners;", vec![]).await.map_err(|e| e.to_string())?;
    if probe["groups"] != json!([]) || probe["mine"] != json!(["p-ben"]) {
        return Err(format!("a participant knows only their own partners: {probe}"));
    }
    Ok(())
}
