//! The call as a first-timer and a busy therapist meet it, at desktop (1280×800) and phone
//! (390×844) size: four people (a therapist and Ana in browsers, Ben and Cy headless), driven
//! through the real server.
//!
//! In every state the scenario reaches, Ana's "I need support" button must be on screen, big
//! enough, enabled and the topmost element under its centre and corners (nothing covers it:
//! no question on arrival, no toast, no celebration overlay, no open menu). Along the way: the
//! microphone and camera buttons say what they will do ("Unmute", "Turn on camera"); the
//! controls are one row at 1280 px with a "More" menu; the phone grid shows the four as 2×2
//! with no clipped label; the people count never says "just you" while someone waits; on a
//! phone "Leave" asks first; "End session for everyone" is in the therapist's control bar and
//! asks first; Ana's end screen carries the clinic's support resources; every page has a
//! favicon.
//!
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots (`<step>.png`) go
//! to `target/test-artifacts/webux-<size>/` and `target/test-artifacts/webux-keyboard/`.

use crate::common;

use common::a11y::assert_accessible;
use common::browser::*;
use common::fixture::*;

use std::path::Path;
use std::time::Duration;

use fantoccini::wd::TimeoutConfiguration;
use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, ServerMessage};
use serde_json::{json, Value};

const TEST_DEADLINE: Duration = Duration::from_secs(480);
const WAIT: Duration = Duration::from_secs(10);
const SUPPORT_TEXT: &str = "If you need help now: call the clinic on 0100 000 000, or 988 at any hour.";

/// Whether `#support-button` can be seen and pressed: "ok", or what is wrong (hidden, off
/// screen, too small, disabled, or which element lies over it, found by hit-testing).
const SUPPORT_JS: &str = r#"
const b = document.querySelector('#support-button');
if (!b || b.hidden || b.offsetParent === null) return 'hidden';
if (b.disabled) return 'disabled';
const r = b.getBoundingClientRect();
if (r.width < 44 || r.height < 40) return `too small: ${Math.round(r.width)}x${Math.round(r.height)}`;
if (r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth) {
  return `off screen: ${JSON.stringify(r)} in ${innerWidth}x${innerHeight}`;
}
const name = (el) => el ? `${el.tagName.toLowerCase()}#${el.id}.${[...el.classList].join('.')}` : 'nothing';
// The centre and both ends of the middle line (the corners of a pill-shaped button are
// outside it).
const cy = r.top + r.height / 2;
for (const [x, y] of [[r.left + r.width / 2, cy], [r.left + r.height / 2, cy], [r.right - r.height / 2, cy]]) {
  const hit = document.elementFromPoint(x, y);
  if (!hit || !b.contains(hit)) return `covered at ${Math.round(x)},${Math.round(y)} by ${name(hit)}`;
}
return 'ok';
"#;

/// The control bar's visible buttons: how many rows they make, and any label cut off.
const CONTROLS_JS: &str = r#"
const bar = document.querySelector('#controls');
const items = [...bar.children].filter((el) => el.offsetParent !== null && el.getBoundingClientRect().width > 2
  && !el.classList.contains('visually-hidden'));
const tops = new Set(items.map((el) => Math.round(el.getBoundingClientRect().top)));
const clipped = [...bar.querySelectorAll(':scope > .button, :scope > .more > .button')]
  .filter((b) => b.offsetParent !== null)
  .flatMap((b) => [...b.querySelectorAll('.label, .short')].filter((s) => s.offsetParent !== null)
    .filter((s) => s.scrollWidth > s.clientWidth + 1 || s.getBoundingClientRect().right > b.getBoundingClientRect().right + 1
      || s.getBoundingClientRect().left < b.getBoundingClientRect().left - 1)
    .map((s) => s.textContent));
return { rows: tops.size, clipped, labels: items.map((el) => el.textContent.replace(/\s+/g, ' ').trim()) };
"#;

/// The tile grid: columns, visible tiles, and tiles whose name and badges wrap onto two lines.
const GRID_JS: &str = r#"
const tiles = [...document.querySelectorAll('#tiles > .tile')].filter((t) => !t.hidden && t.offsetParent !== null);
const lefts = new Set(tiles.map((t) => Math.round(t.getBoundingClientRect().left)));
const tops = new Set(tiles.map((t) => Math.round(t.getBoundingClientRect().top)));
// The name and its badges on one line: every part overlaps the name vertically.
const wrapped = tiles.filter((t) => {
  const name = t.querySelector('figcaption .tile-name').getBoundingClientRect();
  return [...t.querySelectorAll('figcaption .badge')]
    .filter((b) => !b.hidden && b.offsetParent !== null && b.getBoundingClientRect().width > 0)
    .some((b) => { const r = b.getBoundingClientRect(); return r.top >= name.bottom || r.bottom <= name.top; });
}).map((t) => `${t.dataset.participantId}: ${[...t.querySelectorAll('figcaption .tile-name, figcaption .badge')]
  .filter((b) => !b.hidden && b.offsetParent !== null)
  .map((b) => { const r = b.getBoundingClientRect(); return `${b.className} ${Math.round(r.top)}-${Math.round(r.bottom)}`; }).join(', ')}`);
const offscreen = tiles.filter((t) => t.getBoundingClientRect().right > innerWidth + 1).length;
return { tiles: tiles.length, cols: lefts.size, rows: tops.size, wrapped, offscreen };
"#;

/// The two tests each drive browsers; one at a time on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_at_desktop_and_phone_size() {
    let _one_at_a_time = SERIAL.lock().await;
    run(Size { name: "desktop", width: DESKTOP.0, height: DESKTOP.1 }).await;
    run(Size { name: "phone", width: PHONE.0, height: PHONE.1 }).await;
}

#[derive(Clone, Copy)]
struct Size {
    name: &'static str,
    width: u32,
    height: u32,
}

impl Size {
    fn phone(self) -> bool {
        self.width < 640
    }
}

async fn run(size: Size) {
    let mut config = common::test_config();
    config.support.resources_text = SUPPORT_TEXT.to_string();
    let mut fx = BrowserTest::with_server(&format!("webux-{}", size.name), TEST_DEADLINE, config).await;
    let page = |who: &str| if size.phone() { PageSpec::phone(who) } else { PageSpec::desktop(who) };
    let [therapist, ana] = fx.open([page("therapist"), page("ana")]).await;
    // A busy machine can hold a page's main thread for seconds; scripts get longer than usual.
    for page in [&therapist, &ana] {
        let timeouts = TimeoutConfiguration::new(Some(Duration::from_secs(30)), Some(Duration::from_secs(30)), Some(Duration::ZERO));
        page.update_timeouts(timeouts).await.expect("set webdriver timeouts");
    }
    let outcome = fx.within(scenario(&fx, &therapist, &ana, size)).await;
    fx.finish(outcome.map_err(|message| format!("{} ({}×{}): {message}", size.name, size.width, size.height))).await;
}

/// A participant without a browser who joins and waits to be admitted.
async fn headless(server: &RunningServer, room: &str, name: &str, id: &str) -> SignalClient {
    common::join_upto(server, room, Role::Participant, name, id, "joined").await
}

/// Ana's support button passes SUPPORT_JS now (it is checked after every step).
async fn support_ok(ana: &Client, step: &str) -> Result<(), String> {
    let seen = ana.execute(SUPPORT_JS, vec![]).await.map_err(|e| format!("{step}: reading the support button: {e}"))?;
    if seen == json!("ok") {
        Ok(())
    } else {
        Err(format!("{step}: \"I need support\" is not visible and clickable: {seen}"))
    }
}

async fn js(client: &Client, who: &str, script: &str) -> Result<Value, String> {
    client.execute(script, vec![]).await.map_err(|e| format!("{who}: running a script: {e}"))
}

async fn label_of(client: &Client, css: &str) -> Result<String, String> {
    let v = js(client, "ana", &format!("return document.querySelector('{css} .label').textContent;")).await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

async fn scenario(fx: &BrowserTest, therapist: &Client, ana: &Client, size: Size) -> Result<(), String> {
    let server = fx.server();
    let shot = |name: &str| fx.shot_path(name);
    let room = format!("webux-{}", size.name);
    let base = fx.base_url();

    // Every page has its icon (a missing one logged a 404 on every load).
    let (status, body) = common::http(server.addr(), "GET", "/favicon.svg", &[], "").await;
    if status != 200 || !body.contains("<svg") {
        return Err(format!("GET /favicon.svg should serve the icon, got {status}"));
    }

    // Ana opens her link first and waits.
    let ana_token = common::token_for(server, &room, Role::Participant, "Ana", "p-ana");
    ana.goto(&format!("{base}/#token={ana_token}")).await.map_err(|e| format!("ana: opening the link: {e}"))?;
    wait_for(ana, "Ana's link page", VISIBLE_JS, &[json!("#link-join-button")]).await?;
    let icon = js(ana, "ana", "const l = document.querySelector('link[rel=icon]'); return l ? l.href : null;").await?;
    if !icon.as_str().is_some_and(|h| h.ends_with("/favicon.svg")) {
        return Err(format!("the page should link its favicon, found {icon}"));
    }
    save_screenshot(ana, &shot("ana-link")).await;
    assert_accessible(ana, "the link page").await?;
    click(ana, "ana", "#link-join-button").await?;
    wait_for(ana, "Ana in the waiting room", "return window.hearth.state === 'waiting';", &[]).await?;
    wait_for(ana, "Ana's camera preview", "return document.querySelector('#preview-video').videoWidth > 0;", &[]).await?;
    save_screenshot(ana, &shot("ana-waiting")).await;
    assert_accessible(ana, "the waiting room").await?;
    check_devices(ana, &shot("ana-devices")).await?;

    // The therapist arrives; Ben and Cy wait too.
    let t_token = common::token_for(server, &room, Role::Therapist, "Dr Lee", "t-lee");
    therapist.goto(&format!("{base}/#token={t_token}")).await.map_err(|e| format!("therapist: opening the link: {e}"))?;
    wait_for(therapist, "the therapist's link page", VISIBLE_JS, &[json!("#link-join-button")]).await?;
    click(therapist, "therapist", "#link-join-button").await?;
    wait_for(therapist, "the therapist in the room", "return window.hearth.state === 'joined' && window.hearth.admitted;", &[]).await?;
    let mut ben = headless(server, &room, "Ben", "p-ben").await;
    let mut cy = headless(server, &room, "Cy", "p-cy").await;
    wait_for(therapist, "three people waiting", "return window.hearth.waiting.length === 3;", &[]).await?;
    // A busy therapist notices without looking: a chime, and the count in the tab's title.
    wait_for(
        therapist,
        "the arrival chime and the tab title",
        "return window.hearth.cues.includes('arrival') && document.title === '(3 waiting) Hearth';",
        &[],
    )
    .await?;
    // Alone in the room with three waiting: the count says so, never "just you so far".
    let count = text_of(therapist, "#people-count").await?;
    if count.contains("so far. Others") || !count.contains("3 people are waiting") {
        return Err(format!("with three waiting the therapist's people count should say so, says {count:?}"));
    }
    save_screenshot(therapist, &shot("therapist-waiting")).await;
    assert_accessible(therapist, "the therapist's call with people waiting").await?;

    // "Admit all": Ana's page goes from the waiting room into the call.
    press(therapist, "therapist", "#admit-all-button", Key::Enter).await?;
    wait_for(ana, "Ana admitted", "return window.hearth.state === 'joined' && window.hearth.admitted;", &[]).await?;
    wait_for(ana, "four tiles on Ana's page", "return document.querySelectorAll('#tiles > .tile:not([hidden])').length === 4;", &[])
        .await?;
    wait_for(ana, "Ana's support button", "const b = document.querySelector('#support-button'); return Boolean(b && b.offsetParent);", &[])
        .await?;
    // The question about celebrations used to appear now, over the controls: it must not.
    tokio::time::sleep(Duration::from_millis(500)).await; // the preferences answer arrives in this time
    let asked = js(ana, "ana", "return Boolean(document.querySelector('#ms-prompt, .ms-toast'));").await?;
    if asked != json!(false) {
        return Err("no question or toast may appear on admission".into());
    }
    support_ok(ana, "just admitted").await?;
    save_screenshot(ana, &shot("ana-call")).await;

    // Hands: Cy first, then Ben. The therapist hears a soft cue and sees a note, and the list
    // gives them in the order they went up (not join order).
    cy.send(&ClientMessage::RaiseHand).await.map_err(|e| format!("cy: raising a hand: {e}"))?;
    wait_for(therapist, "Cy's hand", "return window.hearth.participants.some((p) => p.id === 'p-cy' && p.handRaised);", &[]).await?;
    ben.send(&ClientMessage::RaiseHand).await.map_err(|e| format!("ben: raising a hand: {e}"))?;
    wait_for(
        therapist,
        "the raised hands in order, with a cue and a note",
        "const order = [...document.querySelectorAll('#hands-order li')].map((li) => li.textContent); \
         const rows = [...document.querySelectorAll('#people-list li')].map((li) => li.dataset.participantId); \
         return order.join() === 'Cy,Ben' && rows[0] === 'p-cy' && rows[1] === 'p-ben' \
           && window.hearth.cues.filter((c) => c === 'hand').length === 2 \
           && [...document.querySelectorAll('.toast')].some((t) => t.textContent.includes('Ben raised their hand'));",
        &[],
    )
    .await?;
    // The note stays clear of the therapist's control bar.
    let toast = js(
        therapist,
        "therapist",
        "const c = document.querySelector('#controls').getBoundingClientRect(); \
         return [...document.querySelectorAll('.toast')].every((t) => { const r = t.getBoundingClientRect(); \
           return r.bottom <= c.top || r.top >= c.bottom; });",
    )
    .await?;
    if toast != json!(true) {
        return Err("a note on the therapist's page overlaps the control bar".into());
    }
    wait_for(ana, "the hands on Ana's tiles", "return document.querySelectorAll('#tiles .tile.hand-raised').length === 2;", &[]).await?;
    support_ok(ana, "two hands raised").await?;
    save_screenshot(therapist, &shot("therapist-call")).await;
    assert_accessible(ana, "the participant's call").await?;
    assert_accessible(therapist, "the therapist's call").await?;

    // The control bar: one row at 1280 px; on a phone nothing is cut off.
    let controls = js(ana, "ana", CONTROLS_JS).await?;
    if !controls["clipped"].as_array().is_some_and(|a| a.is_empty()) {
        return Err(format!("labels in the control bar are cut off: {controls}"));
    }
    if !size.phone() && controls["rows"] != 1 {
        return Err(format!("at 1280 px the controls should be one row: {controls}"));
    }
    for (who, page) in [("ana", ana), ("therapist", therapist)] {
        let bar = js(page, who, CONTROLS_JS).await?;
        if !bar["clipped"].as_array().is_some_and(|a| a.is_empty()) || (!size.phone() && bar["rows"] != 1) {
            return Err(format!("{who}'s control bar: {bar}"));
        }
    }
    // The grid shows the group at a glance: on a phone, four as 2×2; badges on one line.
    let grid = js(ana, "ana", GRID_JS).await?;
    if grid["tiles"] != 4 || grid["offscreen"] != 0 || !grid["wrapped"].as_array().is_some_and(|a| a.is_empty()) {
        return Err(format!("Ana's grid should show four tiles, on screen, badges on one line: {grid}"));
    }
    if size.phone() && (grid["cols"] != 2 || grid["rows"] != 2) {
        return Err(format!("on a phone four people should be a 2×2 grid: {grid}"));
    }

    // The buttons say what they will do.
    let mic = label_of(ana, "#mic-button").await?;
    let cam = label_of(ana, "#cam-button").await?;
    if mic != "Mute" || cam != "Turn off camera" {
        return Err(format!("while on, the buttons should offer Mute / Turn off camera, say {mic:?} / {cam:?}"));
    }
    press(ana, "ana", "#mic-button", Key::Enter).await?;
    press(ana, "ana", "#cam-button", Key::Enter).await?;
    wait_for(
        ana,
        "Unmute / Turn on camera",
        "return document.querySelector('#mic-button .label').textContent === 'Unmute' \
         && document.querySelector('#cam-button .label').textContent === 'Turn on camera' \
         && document.querySelector('#mic-button').dataset.off === 'true';",
        &[],
    )
    .await?;
    wait_for(
        therapist,
        "the therapist to see Ana's microphone and camera off",
        "const p = window.hearth.participants.find((p) => p.id === 'p-ana'); return Boolean(p && p.audioMuted && p.videoMuted);",
        &[],
    )
    .await?;
    support_ok(ana, "microphone and camera off").await?;
    save_screenshot(ana, &shot("ana-muted")).await;
    press(ana, "ana", "#mic-button", Key::Enter).await?;
    press(ana, "ana", "#cam-button", Key::Enter).await?;
    wait_for(ana, "Mute again", "return document.querySelector('#mic-button .label').textContent === 'Mute';", &[]).await?;

    // The "More" menu opens above the bar, and closes back onto its button.
    press(ana, "ana", "#more-button", Key::Enter).await?;
    wait_for(
        ana,
        "the More menu with Milestones",
        "const b = document.querySelector('#ms-open-button'); return Boolean(b && b.offsetParent) \
         && document.activeElement === document.querySelector('#more-menu button:not([hidden])') \
         && document.querySelector('#more-button').getAttribute('aria-expanded') === 'true';",
        &[],
    )
    .await?;
    support_ok(ana, "More menu open").await?;
    save_screenshot(ana, &shot("ana-more-menu")).await;
    assert_accessible(ana, "the More menu").await?;
    let focused = ana.active_element().await.map_err(|e| format!("ana: the focused element: {e}"))?;
    focused.send_keys(&Key::Escape.to_string()).await.map_err(|e| format!("ana: Escape: {e}"))?;
    wait_for(
        ana,
        "the menu closed, focus back on More",
        "return document.querySelector('#more-menu').hidden && document.activeElement.id === 'more-button';",
        &[],
    )
    .await?;

    // A celebration for Ana: the overlay (full screen on a phone) never covers the controls.
    js(therapist, "therapist", "window.hearth.send({ type: 'celebrate', participantId: 'p-ana', kind: 'sessionsAttended', value: 10, message: 'Ten sessions.' }); return true;")
        .await?;
    wait_for(ana, "the celebration on Ana's page", "return Boolean(document.querySelector('.ms-overlay .ms-card'));", &[]).await?;
    support_ok(ana, "celebration showing").await?;
    save_screenshot(ana, &shot("ana-celebration")).await;
    assert_accessible(ana, "a celebration").await?;
    // On a phone, Leave asks first; Cancel keeps Ana in the call, focus back on Leave.
    if size.phone() {
        press(ana, "ana", "#leave-button", Key::Enter).await?;
        wait_for(ana, "the leave confirmation", "return document.querySelector('#confirm-dialog').open;", &[]).await?;
        let title = text_of(ana, "#confirm-title").await?;
        if title != "Leave the session?" {
            return Err(format!("the leave confirmation should ask, says {title:?}"));
        }
        save_screenshot(ana, &shot("ana-leave-confirm")).await;
        let focused = ana.active_element().await.map_err(|e| format!("ana: the focused element: {e}"))?;
        focused.send_keys(&Key::Escape.to_string()).await.map_err(|e| format!("ana: Escape: {e}"))?;
        wait_for(
            ana,
            "the dialog closed, Ana still in the call, focus on Leave",
            "return !document.querySelector('#confirm-dialog').open && window.hearth.state === 'joined' \
             && document.activeElement.id === 'leave-button';",
            &[],
        )
        .await?;
        support_ok(ana, "after cancelling Leave").await?;
    }

    // The therapist leaves without ending: the group is told, calmly, and told when they are back.
    press(therapist, "therapist", "#leave-button", Key::Enter).await?;
    if size.phone() {
        wait_for(therapist, "the therapist's leave confirmation", "return document.querySelector('#confirm-dialog').open;", &[]).await?;
        click(therapist, "therapist", "#confirm-yes").await?;
    }
    wait_for(
        ana,
        "the note that the therapist stepped out",
        "const n = document.querySelector('#presence-note'); \
         return Boolean(n && !n.hidden && n.textContent.trim() === 'Dr Lee stepped out for a moment.');",
        &[],
    )
    .await?;
    support_ok(ana, "therapist stepped out").await?;
    save_screenshot(ana, &shot("ana-therapist-away")).await;
    wait_for(therapist, "the therapist's link page again", VISIBLE_JS, &[json!("#link-join-button")]).await?;
    click(therapist, "therapist", "#link-join-button").await?;
    wait_for(therapist, "the therapist back in the room", "return window.hearth.state === 'joined' && window.hearth.admitted;", &[])
        .await?;
    wait_for(ana, "the note gone", "return document.querySelector('#presence-note').hidden;", &[]).await?;

    // Ana asks for support with a real click: it is there and it works.
    click(ana, "ana", "#support-button").await?;
    wait_for(therapist, "the support request on the therapist's page", "return window.hearth.chat.alerts.length === 1;", &[]).await?;
    save_screenshot(ana, &shot("ana-support-sent")).await;

    // The therapist ends the session from the control bar, after a confirmation.
    wait_for(therapist, "End session in the therapist's control bar", VISIBLE_JS, &[json!("#controls #end-session-button")]).await?;
    press(therapist, "therapist", "#end-session-button", Key::Enter).await?;
    wait_for(therapist, "the end confirmation", "return document.querySelector('#confirm-dialog').open;", &[]).await?;
    save_screenshot(therapist, &shot("therapist-end-confirm")).await;
    assert_accessible(therapist, "the end-session confirmation").await?;
    click(therapist, "therapist", "#confirm-yes").await?;
    // Ana's support request is still open: ending asks once more (support requests are kept).
    wait_for(
        therapist,
        "the open-support confirmation",
        "const d = document.querySelector('#confirm-dialog'); return d.open && /Support requests are still open/.test(d.textContent);",
        &[],
    )
    .await?;
    click(therapist, "therapist", "#confirm-yes").await?;
    wait_for(ana, "Ana's end screen", "return window.hearth.state === 'ended';", &[]).await?;
    let help = text_of(ana, "#message-help").await?;
    if help != SUPPORT_TEXT {
        return Err(format!("Ana's end screen should carry the clinic's support resources, shows {help:?}"));
    }
    let heading = text_of(ana, "#message-heading").await?;
    if heading != "The session has ended" {
        return Err(format!("Ana's end screen heading: {heading:?}"));
    }
    save_screenshot(ana, &shot("ana-ended")).await;
    assert_accessible(ana, "the end screen").await?;
    let therapist_help = js(therapist, "therapist", "return document.querySelector('#message-help').hidden;").await?;
    if therapist_help != json!(true) {
        return Err("the therapist's own end screen needs no support resources".into());
    }
    Ok(())
}

/// While waiting, Ana checks her devices: the dialog lists them, the level meter moves with
/// the fake microphone's beeps, another microphone replaces the one the connection sends, the
/// mirror can be turned off, and closing gives focus back to the button that opened it.
async fn check_devices(ana: &Client, screenshot: &Path) -> Result<(), String> {
    press(ana, "ana", "#devices-lobby", Key::Enter).await?;
    wait_for(
        ana,
        "the device dialog with cameras and microphones listed",
        "return document.querySelector('#devices-dialog').open && document.querySelector('#dev-camera').options.length > 0 \
         && document.querySelector('#dev-mic').options.length > 0;",
        &[],
    )
    .await?;
    wait_for(ana, "the microphone level meter to move", "return window.hearth.devices.peak > 0.01;", &[]).await?;
    save_screenshot(ana, screenshot).await;
    assert_accessible(ana, "the device settings").await?;
    let mics = js(ana, "ana", "return [...document.querySelector('#dev-mic').options].map((o) => o.value);").await?;
    let mics: Vec<String> = mics.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
    let current = js(ana, "ana", "return document.querySelector('#dev-mic').value;").await?;
    if let Some(other) = mics.iter().find(|m| json!(m) != current) {
        ana.find(Locator::Css("#dev-mic"))
            .await
            .map_err(|e| format!("ana: the microphone select: {e}"))?
            .select_by_value(other)
            .await
            .map_err(|e| format!("ana: choosing another microphone: {e}"))?;
        wait_for(
            ana,
            "the connection to send the chosen microphone",
            // In the waiting room there is no connection yet (it starts on admission).
            "const changed = document.querySelector('#dev-status').textContent === 'Microphone changed.'; \
             const pc = window.hearth.pc; if (!pc) return changed; \
             const s = pc.getSenders().find((s) => s.track && s.track.kind === 'audio'); \
             return Boolean(s && s.track.getSettings().deviceId === arguments[0] && s.track.readyState === 'live') && changed;",
            &[json!(other)],
        )
        .await?;
    }
    click(ana, "ana", "#dev-mirror").await?;
    wait_for(ana, "the mirror off", "return document.body.classList.contains('no-mirror') && !window.hearth.devices.mirror;", &[]).await?;
    click(ana, "ana", "#dev-mirror").await?;
    click(ana, "ana", "#devices-dialog button[type=submit]").await?;
    wait_for(
        ana,
        "the dialog closed, focus back on its button",
        "return !document.querySelector('#devices-dialog').open && document.activeElement.id === 'devices-lobby';",
        &[],
    )
    .await
}

/// Keyboard only: Ana joins from her link, raises her hand (the H shortcut), answers a poll and
/// asks for support without a mouse; the therapist (headless) sees each of them arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_join_hand_poll_support() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut fx = BrowserTest::with_server("webux-keyboard", TEST_DEADLINE, common::test_config()).await;
    let [ana] = fx.open([PageSpec::desktop("ana")]).await;
    let outcome = fx.within(keyboard_scenario(&fx, &ana)).await;
    fx.finish(outcome).await;
}

/// Presses Tab (from wherever focus is) until `css` has focus; at most 80 presses.
async fn tab_to(client: &Client, css: &str) -> Result<(), String> {
    for _ in 0..80 {
        let there = client
            .execute("return document.activeElement && document.activeElement.matches(arguments[0]);", vec![json!(css)])
            .await
            .map_err(|e| format!("reading focus: {e}"))?;
        if there == json!(true) {
            return Ok(());
        }
        key(client, Key::Tab).await?;
    }
    Err(format!("80 presses of Tab never reached {css}"))
}

async fn key(client: &Client, k: impl ToString) -> Result<(), String> {
    let focused = client.active_element().await.map_err(|e| format!("the focused element: {e}"))?;
    focused.send_keys(&k.to_string()).await.map_err(|e| format!("pressing a key: {e}"))
}

async fn keyboard_scenario(fx: &BrowserTest, ana: &Client) -> Result<(), String> {
    let server = fx.server();
    let shot = |name: &str| fx.shot_path(name);
    let room = "webux-keyboard";
    let mut therapist = common::join_upto(server, room, Role::Therapist, "Dr Lee", "t-lee", "joined").await;

    let ana_token = common::token_for(server, room, Role::Participant, "Ana", "p-ana");
    ana.goto(&format!("http://{}/#token={ana_token}", server.addr())).await.map_err(|e| format!("opening the link: {e}"))?;
    wait_for(ana, "the link page", VISIBLE_JS, &[json!("#link-join-button")]).await?;
    tab_to(ana, "#link-join-button").await?;
    key(ana, Key::Enter).await?;
    wait_for(ana, "the waiting room", "return window.hearth.state === 'waiting';", &[]).await?;
    therapist
        .recv_until("Ana waiting", WAIT, |m| matches!(m, ServerMessage::WaitingList { waiting } if waiting.iter().any(|w| w.name == "Ana")))
        .await
        .map_err(|e| e.to_string())?;
    therapist.send(&ClientMessage::Admit { participant_id: common::pid("p-ana") }).await.map_err(|e| e.to_string())?;
    wait_for(ana, "Ana admitted", "return window.hearth.state === 'joined' && window.hearth.admitted;", &[]).await?;

    // H raises the hand (focus is on the room's heading, not in a text field).
    key(ana, "h").await?;
    therapist
        .recv_until("Ana's hand", WAIT, |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.hand_raised))
        .await
        .map_err(|e| e.to_string())?;

    // A poll: Tab to the first answer, Space chooses it, Tab to "Send my vote", Enter.
    therapist
        .send(&ClientMessage::CreatePoll {
            question: "How are you arriving today?".into(),
            options: vec!["Calm".into(), "Unsettled".into()],
            multiple: false,
            anonymous: true,
            duration_secs: None,
            scope: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    wait_for(ana, "the poll on Ana's page", VISIBLE_JS, &[json!("#poll-cards input[type=radio]")]).await?;
    tab_to(ana, "#poll-cards input[type=radio]").await?;
    key(ana, Key::Space).await?;
    tab_to(ana, "#poll-cards .poll-submit").await?;
    key(ana, Key::Enter).await?;
    therapist
        .recv_until("Ana's vote", WAIT, |m| matches!(m, ServerMessage::PollResults(t) if t.total_voters == 1))
        .await
        .map_err(|e| e.to_string())?;
    save_screenshot(ana, &shot("voted")).await;

    // "I need support", by keyboard.
    tab_to(ana, "#support-button").await?;
    key(ana, Key::Enter).await?;
    therapist
        .recv_until("Ana's support request", WAIT, |m| matches!(m, ServerMessage::SupportRequested { .. }))
        .await
        .map_err(|e| e.to_string())?;
    save_screenshot(ana, &shot("support")).await;
    Ok(())
}
