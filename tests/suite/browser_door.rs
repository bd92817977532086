//! Getting in and getting out without an operator, at desktop (1280×800) and phone (390×844)
//! size, in headless Chromium through the real server: the therapist sets the waiting room's
//! welcome and mints an invite from the call ("Invite someone…", with their own join token);
//! Ana opens it, types her name and waits in a waiting room that names the group, the therapist
//! and says they are here; the therapist opens Ana's actions from her video tile ("…", the same
//! menu as her row); a poll and a breakout are checked with axe-core; a late arrival turned away
//! by the locked room shows up for the therapist only; the therapist ends the session with a
//! closing message that Ana's end screen carries; and a link opened after its session ended
//! says so instead of waiting.
//!
//! Screenshots (`<step>.png`) go to `target/test-artifacts/door-<size>/`.

use crate::common;

use common::a11y::assert_accessible;
use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use fantoccini::wd::TimeoutConfiguration;
use hearth::auth::{Claims, Role};
use hearth::signal::protocol::{ClientMessage, ErrorCode, ServerMessage, PROTOCOL_VERSION};
use serde_json::{json, Value};

const TEST_DEADLINE: Duration = Duration::from_secs(420);
const SUPPORT_TEXT: &str = "If you need help now: call the clinic on 0100 000 000.";
const WELCOME: &str = "Welcome. Find a quiet spot; we start at six.";
const CLOSING: &str = "Thank you all. See you next Tuesday.";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_wait_end_at_desktop_and_phone_size() {
    let _one_at_a_time = SERIAL.lock().await;
    run("desktop").await;
    run("phone").await;
}

async fn run(size: &'static str) {
    let mut config = common::test_config();
    config.support.resources_text = SUPPORT_TEXT.to_string();
    let mut fx = BrowserTest::with_server(&format!("door-{size}"), TEST_DEADLINE, config).await;
    let page = |who: &str| if size == "phone" { PageSpec::phone(who) } else { PageSpec::desktop(who) };
    let [therapist, ana] = fx.open([page("therapist"), page("ana")]).await;
    for p in [&therapist, &ana] {
        let timeouts = TimeoutConfiguration::new(Some(Duration::from_secs(30)), Some(Duration::from_secs(30)), Some(Duration::ZERO));
        p.update_timeouts(timeouts).await.expect("set webdriver timeouts");
    }
    let outcome = fx.within(scenario(&fx, &therapist, &ana, size)).await;
    fx.finish(outcome.map_err(|m| format!("{size}: {m}"))).await;
}

async fn js(client: &Client, who: &str, script: &str) -> Result<Value, String> {
    client.execute(script, vec![]).await.map_err(|e| format!("{who}: running a script: {e}"))
}

async fn escape(client: &Client, who: &str) -> Result<(), String> {
    let focused = client.active_element().await.map_err(|e| format!("{who}: the focused element: {e}"))?;
    focused.send_keys(&Key::Escape.to_string()).await.map_err(|e| format!("{who}: Escape: {e}"))
}

async fn scenario(fx: &BrowserTest, therapist: &Client, ana: &Client, size: &str) -> Result<(), String> {
    let server = fx.server();
    let shot = |name: &str| fx.shot_path(name);
    let room = format!("door-{size}");
    let base = fx.base_url();

    fx.step("the therapist arrives and writes the welcome");
    fx.join(therapist, "therapist", &room, Role::Therapist, ("t-lee", "Dr Lee")).await?;
    press(therapist, "therapist", "#welcome-button", Key::Enter).await?;
    wait_for(
        therapist,
        "the welcome dialog",
        "return document.querySelector('#welcome-dialog').open && document.activeElement.id === 'welcome-group';",
        &[],
    )
    .await?;
    fill(therapist, "#welcome-group", "Tuesday evening group").await?;
    fill(therapist, "#welcome-message", WELCOME).await?;
    assert_accessible(therapist, "the welcome dialog").await?;
    click(therapist, "therapist", "#welcome-save").await?;
    wait_for(
        therapist,
        "the welcome saved",
        "return window.hearth.door.groupName === 'Tuesday evening group' && !document.querySelector('#welcome-dialog').open \
         && document.activeElement.id === 'welcome-button' \
         && document.querySelector('#room-heading').innerText.trim() === 'Tuesday evening group';",
        &[],
    )
    .await?;

    fx.step("the therapist invites someone without a name");
    press(therapist, "therapist", "#invite-button", Key::Enter).await?;
    wait_for(therapist, "the invite dialog", "return document.querySelector('#invite-dialog').open;", &[]).await?;
    click(therapist, "therapist", "#invite-create").await?;
    wait_for(therapist, "the invite link", "return document.querySelector('#invite-link').value.includes('/#invite=');", &[]).await?;
    save_screenshot(therapist, &shot("therapist-invite")).await;
    assert_accessible(therapist, "the invite dialog").await?;
    let link = js(therapist, "therapist", "return document.querySelector('#invite-link').value;").await?;
    let link = link.as_str().unwrap_or_default().to_string();
    escape(therapist, "therapist").await?;
    wait_for(therapist, "the invite dialog closed", "return !document.querySelector('#invite-dialog').open;", &[]).await?;

    fx.step("Ana opens the invite and types her name");
    ana.goto(&link).await.map_err(|e| format!("ana: opening the invite: {e}"))?;
    wait_for(ana, "the invite page", VISIBLE_JS, &[json!("#link-name-input")]).await?;
    let address = js(ana, "ana", "return location.href;").await?;
    if address.as_str().is_some_and(|a| a.contains("invite=")) {
        return Err(format!("the invite should leave the address bar, it shows {address}"));
    }
    save_screenshot(ana, &shot("ana-invite")).await;
    assert_accessible(ana, "the invite page").await?;
    // Join without a name: it says so, and nothing is sent.
    click(ana, "ana", "#link-join-button").await?;
    wait_for(
        ana,
        "a clear request for a name",
        "return document.querySelector('#alert').textContent.includes('enter your name') \
        && document.querySelector('#link-name-input').getAttribute('aria-invalid') === 'true';",
        &[],
    )
    .await?;
    fill(ana, "#link-name-input", "Ana").await?;
    click(ana, "ana", "#link-join-button").await?;
    wait_for(ana, "Ana in the waiting room", "return window.hearth.state === 'waiting';", &[]).await?;
    wait_for(
        ana,
        "the waiting room naming the group, the therapist and the welcome",
        "const t = (s) => document.querySelector(s).textContent; \
         return t('#lobby-group') === 'Tuesday evening group' && t('#lobby-therapist') === 'Dr Lee is here and will let you in shortly.' \
           && t('#lobby-welcome-text') === arguments[0] && !document.querySelector('#lobby-welcome').hidden \
           && !document.querySelector('#lobby-panel').innerText.includes(arguments[1]);",
        &[json!(WELCOME), json!(room)],
    )
    .await?;
    save_screenshot(ana, &shot("ana-waiting")).await;
    assert_accessible(ana, "the waiting room with its welcome").await?;

    fx.step("admitted; the therapist opens Ana's actions from her tile");
    wait_for(therapist, "Ana waiting", "return window.hearth.waiting.some((w) => w.name === 'Ana');", &[]).await?;
    js(therapist, "therapist", "const w = window.hearth.waiting.find((w) => w.name === 'Ana'); window.hearth.send({ type: 'admit', participantId: w.id }); return true;").await?;
    wait_for(
        ana,
        "Ana admitted, the group's name over the call",
        "return window.hearth.state === 'joined' && window.hearth.admitted \
           && document.querySelector('#room-heading').innerText.trim() === 'Tuesday evening group';",
        &[],
    )
    .await?;
    let ana_id = js(ana, "ana", "return window.hearth.participantId;").await?;
    let ana_id = ana_id.as_str().unwrap_or_default().to_string();
    let tile = format!("#tiles .tile[data-participant-id=\"{ana_id}\"]");
    wait_for(therapist, "the … on Ana's tile", VISIBLE_JS, &[json!(format!("{tile} .tile-more"))]).await?;
    let participant_sees = js(ana, "ana", "return [...document.querySelectorAll('.tile-more')].some((b) => !b.hidden);").await?;
    if participant_sees != json!(false) {
        return Err("a participant's tiles must not carry the therapist's … menu".into());
    }
    press(therapist, "therapist", &format!("{tile} .tile-more"), Key::Enter).await?;
    wait_for(
        therapist,
        "the tile's menu with the row's actions, focus on the first",
        "const menu = document.querySelector(arguments[0] + ' .tile-menu .person-actions'); \
         return Boolean(menu && !menu.hidden && menu.querySelector('[data-action=spotlight]:not([hidden])') \
           && menu.querySelector('[data-action=remove]:not([hidden])') && menu.querySelector('.ms-celebrate') \
           && menu.contains(document.activeElement) \
           && document.querySelector(arguments[0] + ' .tile-more').getAttribute('aria-expanded') === 'true');",
        &[json!(tile)],
    )
    .await?;
    save_screenshot(therapist, &shot("therapist-tile-menu")).await;
    assert_accessible(therapist, "the menu on a video tile").await?;
    click(therapist, "therapist", &format!("{tile} .tile-menu [data-action=spotlight]")).await?;
    wait_for(
        ana,
        "Ana in the spotlight (from the tile's menu)",
        "return window.hearth.room.spotlight === window.hearth.participantId;",
        &[],
    )
    .await?;
    escape(therapist, "therapist").await?;
    wait_for(
        therapist,
        "the tile's menu closed, focus back on its …",
        "return !document.querySelector(arguments[0] + ' .tile-menu .person-actions') \
           && document.activeElement === document.querySelector(arguments[0] + ' .tile-more');",
        &[json!(tile)],
    )
    .await?;
    js(therapist, "therapist", "window.hearth.send({ type: 'spotlight', participantId: null }); return true;").await?;

    fx.step("a poll and a breakout, checked by axe");
    js(
        therapist,
        "therapist",
        "window.hearth.send({ type: 'createPoll', question: 'How are you arriving today?', options: ['Calm', 'Unsettled'], multiple: false, anonymous: true }); return true;",
    )
    .await?;
    wait_for(ana, "the poll on Ana's page", VISIBLE_JS, &[json!("#poll-cards input[type=radio]")]).await?;
    save_screenshot(ana, &shot("ana-poll")).await;
    assert_accessible(ana, "the poll (participant)").await?;
    assert_accessible(therapist, "the poll (therapist's live results)").await?;
    js(therapist, "therapist", "window.hearth.send({ type: 'createBreakout', name: 'Pairs' }); return true;").await?;
    wait_for(therapist, "the breakout panel", VISIBLE_JS, &[json!("#breakouts-section")]).await?;
    js(therapist, "therapist", "window.hearth.send({ type: 'autoAssignBreakouts' }); return true;").await?;
    js(therapist, "therapist", "window.hearth.send({ type: 'openBreakouts', allowReturn: true }); return true;").await?;
    wait_for_within(ana, "Ana in the breakout", "return Boolean(window.hearth.space);", &[], Duration::from_secs(20)).await?;
    save_screenshot(ana, &shot("ana-breakout")).await;
    assert_accessible(ana, "the breakout (participant)").await?;
    save_screenshot(therapist, &shot("therapist-breakouts")).await;
    assert_accessible(therapist, "the breakouts (therapist)").await?;
    js(therapist, "therapist", "window.hearth.send({ type: 'closeBreakouts' }); return true;").await?;
    wait_for_within(ana, "Ana back in the main room", "return !window.hearth.space;", &[], Duration::from_secs(20)).await?;

    fx.step("locked: a late arrival is turned away, and only the therapist hears of it");
    js(therapist, "therapist", "window.hearth.send({ type: 'lockRoom', locked: true }); return true;").await?;
    wait_for(ana, "the lock on Ana's page", "return window.hearth.room.locked;", &[]).await?;
    let mut late = hearth::client::SignalClient::connect(&common::ws_url(server)).await.map_err(|e| e.to_string())?;
    let late_token = common::token_for(server, &room, Role::Participant, "Sam Late", "p-late");
    late.send(&ClientMessage::Join {
        protocol_version: PROTOCOL_VERSION,
        room_id: hearth::room::RoomId::new(room.as_str()).unwrap(),
        token: late_token,
    })
    .await
    .map_err(|e| e.to_string())?;
    let refused = late.recv_until("the lock's refusal", Duration::from_secs(10), |m| matches!(m, ServerMessage::Error { .. })).await;
    if !matches!(refused, Ok(ServerMessage::Error { code: ErrorCode::RoomLocked, .. })) {
        return Err(format!("a late arrival should get room_locked, got {refused:?}"));
    }
    wait_for(
        therapist,
        "the turned-away arrival in the people panel and a note",
        "const box = document.querySelector('#turned-away'); \
         return !box.hidden && box.textContent.includes('Sam Late') \
           && [...document.querySelectorAll('.toast')].some((t) => t.textContent.includes('Sam Late tried to join'));",
        &[],
    )
    .await?;
    save_screenshot(therapist, &shot("therapist-turned-away")).await;
    assert_accessible(therapist, "the turned-away arrival").await?;
    let leak = js(ana, "ana", "return document.body.textContent.includes('Sam Late');").await?;
    if leak != json!(false) {
        return Err("Ana's page mentions the late arrival".into());
    }
    click(therapist, "therapist", "#turned-away-unlock").await?;
    wait_for(therapist, "the room unlocked", "return !window.hearth.room.locked;", &[]).await?;

    fx.step("the therapist ends with a closing message");
    press(therapist, "therapist", "#end-session-button", Key::Enter).await?;
    wait_for(therapist, "the end confirmation with its closing message", VISIBLE_JS, &[json!("#confirm-dialog #closing-message")]).await?;
    fill(therapist, "#closing-message", CLOSING).await?;
    save_screenshot(therapist, &shot("therapist-end-confirm")).await;
    assert_accessible(therapist, "the end confirmation with a closing message").await?;
    click(therapist, "therapist", "#confirm-yes").await?;
    wait_for(ana, "Ana's end screen", "return window.hearth.state === 'ended';", &[]).await?;
    let more = text_of(ana, "#message-more").await?;
    if !more.contains(CLOSING) {
        return Err(format!("Ana's end screen should carry the closing message, shows {more:?}"));
    }
    let help = text_of(ana, "#message-help").await?;
    if help != SUPPORT_TEXT {
        return Err(format!("Ana's end screen should carry the support resources, shows {help:?}"));
    }
    save_screenshot(ana, &shot("ana-ended")).await;
    assert_accessible(ana, "the end screen with a closing message").await?;

    fx.step("a link from that session, opened afterwards, says the session has ended");
    wait_for_within(therapist, "the room closed", "return window.hearth.state === 'ended';", &[], Duration::from_secs(10)).await?;
    let now = hearth::auth::now_secs();
    let old = server
        .state()
        .tokens
        .sign(&Claims {
            sub: "p-ben".into(),
            room: room.clone(),
            role: Role::Participant,
            name: "Ben".into(),
            exp: now + 600,
            iat: now - 120,
            sponsor: None,
        })
        .map_err(|e| e.to_string())?;
    ana.goto(&format!("{base}/#token={old}")).await.map_err(|e| format!("ana: opening the old link: {e}"))?;
    wait_for(ana, "the old link's page", VISIBLE_JS, &[json!("#link-join-button")]).await?;
    click(ana, "ana", "#link-join-button").await?;
    wait_for(
        ana,
        "the page saying that session has ended",
        "return window.hearth.state === 'ended' && document.querySelector('#message-heading').textContent === 'This session has ended';",
        &[],
    )
    .await?;
    let text = text_of(ana, "#message-text").await?;
    if !text.contains("Dr Lee") {
        return Err(format!("the ended link's page should say who ran it: {text:?}"));
    }
    save_screenshot(ana, &shot("ana-link-after-end")).await;
    assert_accessible(ana, "a link opened after its session ended").await?;
    Ok(())
}
