//! Milestone celebrations in a real browser. A therapist (browser) celebrates Ana (a headless
//! participant whose preferences the test sets) from the people list, once per style; Ben, a
//! peer (browser), must see the overlay drawn over the video grid in that style, announced, with
//! a dismiss button and reactions, and his reaction must reach Ana. Ana then shares a milestone
//! and the therapist approves it from the page. Cy's browser asks for reduced motion: the big
//! celebration reaches him without confetti or animation. Last, Ben's own timeline (badges and
//! a chart) after the therapist celebrates him.
//!
//! The same scenario runs in an end-to-end encrypted (`required`) room: the therapist's page
//! admits everyone (Ana too) from the waiting room; each page sends with a key, decrypts the
//! others' video and shows no red lock; the therapist's notes are sealed in the page (Ana, a
//! member without a key, receives them sealed, none of the words in the clear) and Ben's page
//! shows them opened. Ana's own milestone goes without a note there: a keyless client cannot
//! seal one, and the server refuses plain notes in such a room (its custom label stays plain
//! by decision, see docs/threat-model.md).
//!
//! Written with the browser fixture (`tests/common/fixture.rs`). Screenshots of the overlay in
//! each style as seen by a peer, and of the therapist's and the participant's dialogs, go to
//! `target/test-artifacts/milestones/` (`milestones-e2ee/` for the encrypted room).

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::{Duration, Instant};

use crate::browser_e2ee::{admit_when_waiting, encryption_holds, Mode};
use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{
    CelebrationAudience, CelebrationStyle, ClientMessage, MilestoneKind, Reaction, ServerMessage, Text, PROTOCOL_VERSION,
};
use serde_json::{json, Value};

const ROOM: &str = "milestones-browser";
const TEST_DEADLINE: Duration = Duration::from_secs(240);
/// Admitting everyone and the encryption checks take longer.
const ENCRYPTED_DEADLINE: Duration = Duration::from_secs(360);
const WAIT: Duration = Duration::from_secs(5);

/// The overlay on this page: its style, the texts it shows, what was announced, whether it
/// has a dismiss button, reactions, confetti, and whether it lies over the video grid.
const OVERLAY_JS: &str = r#"
const o = document.querySelector('.ms-overlay');
if (!o) return null;
const text = (s) => { const e = o.querySelector(s); return e ? e.textContent.trim() : null; };
const grid = document.querySelector('#tiles').getBoundingClientRect();
const stage = o.parentElement.getBoundingClientRect();
const card = o.querySelector('.ms-card').getBoundingClientRect();
const badge = o.querySelector('img.ms-badge');
return {
  style: o.dataset.style,
  name: text('.ms-name'),
  what: text('.ms-what'),
  message: text('.ms-message'),
  dismiss: Boolean(o.querySelector('button.ms-dismiss[aria-label]')),
  reactions: o.querySelectorAll('button.ms-reaction').length,
  confetti: o.querySelectorAll('.ms-confetti i').length,
  still: o.classList.contains('ms-still'),
  badgeLoaded: Boolean(badge && badge.complete && badge.naturalWidth > 0),
  // Inside the video area (the grid's container) and lying over the grid itself.
  overGrid: card.left >= stage.left - 1 && card.right <= stage.right + 1 && card.top >= stage.top - 1
    && card.bottom <= stage.bottom + 1 && card.top < grid.bottom && card.bottom > grid.top,
  congrats: Array.from(o.querySelectorAll('.ms-congrat')).map((li) => li.textContent.trim()),
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celebrations_in_the_browser() {
    run(Mode::Open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celebrations_in_the_browser_in_an_encrypted_room() {
    run(Mode::Encrypted).await;
}

async fn run(mode: Mode) {
    let within = if mode.encrypted() { ENCRYPTED_DEADLINE } else { TEST_DEADLINE };
    let mut fx = BrowserTest::with_server(&mode.name("milestones"), within, mode.config(open_config())).await;
    // Cy's browser asks for reduced motion.
    let pages = [PageSpec::desktop("therapist"), PageSpec::desktop("ben"), PageSpec::desktop("cy").reduced_motion()];
    let [therapist, ben, cy] = fx.open(pages).await;
    let outcome = fx.within(scenario(&fx, mode, &therapist, &ben, &cy)).await;
    fx.finish(outcome).await;
}

async fn join_page(
    fx: &BrowserTest,
    mode: Mode,
    therapist: &Client,
    client: &Client,
    role: Role,
    name: &str,
    id: &str,
) -> Result<(), String> {
    mode.join(fx, therapist, client, name, ROOM, role, (id, name)).await?;
    wait_for(client, &format!("{name} admitted"), "return window.hearth.admitted;", &[]).await?;
    wait_for(
        client,
        &format!("{name}'s Milestones item in the More menu"),
        "const b = document.querySelector('#more-menu #ms-open-button'); const m = document.querySelector('#more-button'); \
         return Boolean(b && !b.hidden && m && m.offsetParent);",
        &[],
    )
    .await
}

/// Opens the Milestones dialog from the control bar's More menu.
async fn open_milestones(client: &Client, who: &str) -> Result<(), String> {
    click(client, who, "#more-button").await?;
    wait_for(client, "the More menu", "const b = document.querySelector('#ms-open-button'); return Boolean(b && b.offsetParent);", &[])
        .await?;
    click(client, who, "#ms-open-button").await
}

/// A participant without a browser; in an encrypted room the therapist's page admits them
/// (they never announce a key, so the leader gives them none).
async fn headless(server: &RunningServer, mode: Mode, therapist: &Client, name: &str, id: &str) -> Result<SignalClient, String> {
    let mut c = SignalClient::connect(&common::ws_url(server)).await.map_err(|e| format!("{name}: {e}"))?;
    let token = common::token_for(server, ROOM, Role::Participant, name, id);
    let room = RoomId::new(ROOM).map_err(|e| e.to_string())?;
    c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: room, token }).await.map_err(|e| format!("{name}: {e}"))?;
    if mode.encrypted() {
        admit_when_waiting(therapist, id).await?;
    }
    c.recv_until("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.map_err(|e| format!("{name}: {e:?}"))?;
    Ok(c)
}

async fn set_prefs(c: &mut SignalClient, style: CelebrationStyle, audience: CelebrationAudience) -> Result<(), String> {
    c.send(&ClientMessage::SetCelebrationPreferences { style, audience }).await.map_err(|e| e.to_string())?;
    c.recv_until("prefs", WAIT, |m| matches!(m, ServerMessage::CelebrationPreferences { .. })).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The therapist celebrates `id` from the people list with the dialog.
async fn celebrate_from_people_list(t: &Client, id: &str, kind: &str, value: Option<u32>, message: &str) -> Result<(), String> {
    open_person_menu(t, "therapist", id).await?;
    let button = format!("#people-list li[data-participant-id=\"{id}\"] button.ms-celebrate");
    wait_for(
        t,
        "the Celebrate button in the people list",
        "const b = document.querySelector(arguments[0]); return Boolean(b && b.offsetParent);",
        &[json!(button)],
    )
    .await?;
    click(t, "therapist", &button).await?;
    wait_for(t, "the celebrate dialog", "const d = document.querySelector('#ms-celebrate-dialog'); return Boolean(d && d.open);", &[])
        .await?;
    t.find(Locator::Css("#ms-cel-kind"))
        .await
        .map_err(|e| format!("kind select: {e}"))?
        .select_by_value(kind)
        .await
        .map_err(|e| format!("choosing {kind}: {e}"))?;
    if let Some(v) = value {
        fill(t, "#ms-cel-value", &v.to_string()).await?;
    }
    fill(t, "#ms-cel-message", message).await?;
    click(t, "therapist", "#ms-celebrate-dialog button[type=submit]").await?;
    wait_for(t, "the dialog to close", "return !document.querySelector('#ms-celebrate-dialog').open;", &[]).await
}

/// Waits for an overlay of `style` on `client` and returns what it shows.
async fn overlay(client: &Client, who: &str, style: &str) -> Result<Value, String> {
    let deadline = Instant::now() + UI_DEADLINE;
    loop {
        let v = client.execute(OVERLAY_JS, vec![]).await.map_err(|e| format!("{who}: reading the overlay: {e}"))?;
        if v["style"] == style && v["badgeLoaded"] == true {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("{who}: no {style} overlay within {UI_DEADLINE:?} (last: {v})"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check(cond: bool, what: &str, seen: &Value) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}; overlay: {seen}"))
    }
}

/// Dismisses the overlay with its button (it may have gone by itself already), and waits until
/// nothing is queued behind it.
async fn dismiss(client: &Client, who: &str) -> Result<(), String> {
    let deadline = Instant::now() + UI_DEADLINE;
    loop {
        if let Ok(button) = client.find(Locator::Css(".ms-overlay button.ms-dismiss")).await {
            let _ = button.click().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // the next queued one shows after 400 ms
        let gone = client.execute("return !document.querySelector('.ms-overlay');", vec![]).await;
        if matches!(gone, Ok(Value::Bool(true))) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{who}: the overlay did not go when dismissed"));
        }
    }
}

async fn scenario(fx: &BrowserTest, mode: Mode, therapist: &Client, ben: &Client, cy: &Client) -> Result<(), String> {
    let server = fx.server();
    let shot = |name: &str| fx.shot_path(name);
    join_page(fx, mode, therapist, therapist, Role::Therapist, "Dr. Rivera", "t-rivera").await?;
    join_page(fx, mode, therapist, ben, Role::Participant, "Ben", "p-ben").await?;
    join_page(fx, mode, therapist, cy, Role::Participant, "Cy", "p-cy").await?;
    if mode.encrypted() {
        for (page, who) in [(therapist, "therapist"), (ben, "Ben"), (cy, "Cy")] {
            encryption_holds(page, who).await?;
        }
    }
    // Ben has never chosen: nothing pops up to ask him (it covered the controls), but the
    // Milestones item in the More menu says there is a choice to make.
    wait_for(ben, "the quiet hint to choose", "return Boolean(document.querySelector('#ms-open-button .ms-ask'));", &[]).await?;
    let asked = ben.execute("return Boolean(document.querySelector('#ms-prompt, .ms-toast'));", vec![]).await.map_err(|e| e.to_string())?;
    if asked != json!(false) {
        return Err("nothing may ask Ben unprompted on arrival".into());
    }
    fx.step("everyone joined");
    let mut ana = headless(server, mode, therapist, "Ana", "p-ana").await?;

    // Quiet: a small banner over the top of the grid.
    set_prefs(&mut ana, CelebrationStyle::Quiet, CelebrationAudience::Group).await?;
    celebrate_from_people_list(therapist, "p-ana", "daysSober", Some(30), "A month. We see you.").await?;
    overlay(ben, "ben", "quiet").await?;
    tokio::time::sleep(Duration::from_millis(600)).await; // let the entrance finish
    let v = overlay(ben, "ben", "quiet").await?;
    save_screenshot(ben, &shot("peer-quiet")).await;
    check(v["name"] == "Ana" && v["what"] == "30 days sober", "the quiet banner should name Ana and the milestone", &v)?;
    check(v["dismiss"] == true && v["reactions"] == 5 && v["overGrid"] == true, "a dismiss button, five reactions, over the grid", &v)?;
    wait_for(
        ben,
        "the announcement for screen readers",
        "return document.querySelector('#announcer').textContent.startsWith('Celebrating Ana: 30 days sober');",
        &[],
    )
    .await?;
    // Ben reacts: Ana hears it, and Ben's overlay shows it.
    click(ben, "ben", ".ms-overlay button.ms-reaction[data-reaction=\"heart\"]").await?;
    let got =
        ana.recv_until("congratulation", WAIT, |m| matches!(m, ServerMessage::Congratulation { .. })).await.map_err(|e| e.to_string())?;
    match got {
        ServerMessage::Congratulation { from_name, reaction: Reaction::Heart, .. } if from_name == "Ben" => {}
        other => return Err(format!("Ana should get Ben's heart, got {other:?}")),
    }
    wait_for(
        ben,
        "the congratulation on Ben's overlay",
        "return Array.from(document.querySelectorAll('.ms-congrat')).some((li) => li.textContent.includes('You'));",
        &[],
    )
    .await?;
    dismiss(ben, "ben").await?;
    dismiss(cy, "cy").await?;
    dismiss(therapist, "therapist").await?;
    fx.step("quiet");

    // Standard: a card over the grid, with the therapist's message and a message box.
    set_prefs(&mut ana, CelebrationStyle::Standard, CelebrationAudience::Group).await?;
    celebrate_from_people_list(therapist, "p-ana", "sessionsAttended", Some(12), "Twelve Tuesdays in a row.").await?;
    overlay(ben, "ben", "standard").await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let v = overlay(ben, "ben", "standard").await?; // still up: nothing earlier takes it down
    save_screenshot(ben, &shot("peer-standard")).await;
    check(
        v["what"] == "12 sessions attended" && v["message"].as_str().is_some_and(|m| m.contains("Twelve Tuesdays")),
        "the standard card",
        &v,
    )?;
    check(v["confetti"] == 0, "no confetti for standard", &v)?;
    if mode.encrypted() {
        // Ben's page opened the note; what reached Ana, who holds no key, is sealed.
        let got = ana
            .recv_until("the standard celebration", WAIT, |m| {
                matches!(m, ServerMessage::Celebration { style: CelebrationStyle::Standard, .. })
            })
            .await
            .map_err(|e| format!("Ana: {e:?}"))?;
        let text = serde_json::to_string(&got).map_err(|e| e.to_string())?;
        if !matches!(&got, ServerMessage::Celebration { message: Some(Text::Sealed { .. }), .. }) || text.contains("Tuesdays") {
            return Err(format!("the therapist's note must cross the server sealed: {text}"));
        }
    }
    save_screenshot(therapist, &shot("therapist-standard")).await;
    for (c, who) in [(ben, "ben"), (cy, "cy"), (therapist, "therapist")] {
        dismiss(c, who).await?;
    }
    fx.step("standard");

    // Big, through the approval flow: Ana shares, the therapist approves on the page.
    set_prefs(&mut ana, CelebrationStyle::Big, CelebrationAudience::Group).await?;
    ana.send(&ClientMessage::ShareMilestone {
        kind: MilestoneKind::Custom,
        value: None,
        label: Some("First public talk".into()),
        // Ana holds no key to seal a note with, and a required room refuses plain ones.
        message: if mode.encrypted() { None } else { Some("I spoke at the library!".into()) },
    })
    .await
    .map_err(|e| e.to_string())?;
    let approve = "#ms-proposals-section button[data-milestone-action=\"approve\"]";
    wait_for(
        therapist,
        "the shared milestone on the therapist's page",
        "return Boolean(document.querySelector(arguments[0]));",
        &[json!(approve)],
    )
    .await?;
    therapist.execute("document.querySelector('#ms-proposals-section').scrollIntoView();", vec![]).await.map_err(|e| e.to_string())?;
    save_screenshot(therapist, &shot("therapist-proposal")).await;
    let none_yet = ben.execute("return document.querySelector('.ms-overlay') === null;", vec![]).await.map_err(|e| e.to_string())?;
    if none_yet != json!(true) {
        return Err("Ben must see nothing before the therapist approves".into());
    }
    click(therapist, "therapist", approve).await?;
    overlay(ben, "ben", "big").await?;
    tokio::time::sleep(Duration::from_millis(900)).await; // confetti mid-fall
    let v = overlay(ben, "ben", "big").await?;
    save_screenshot(ben, &shot("peer-big")).await;
    check(
        v["what"] == "First public talk" && v["confetti"].as_u64().unwrap_or(0) > 20 && v["still"] == false,
        "big: the label and confetti",
        &v,
    )?;
    // Cy asked for reduced motion: the same celebration, without confetti or animation.
    let c = overlay(cy, "cy", "big").await?;
    save_screenshot(cy, &shot("peer-big-reduced-motion")).await;
    check(c["confetti"] == 0 && c["still"] == true, "reduced motion: no confetti, no animation", &c)?;
    let anim = cy
        .execute("return getComputedStyle(document.querySelector('.ms-overlay .ms-card')).animationName;", vec![])
        .await
        .map_err(|e| e.to_string())?;
    if anim != json!("none") {
        return Err(format!("reduced motion: the card should not animate, animation-name is {anim}"));
    }
    for (c, who) in [(ben, "ben"), (cy, "cy"), (therapist, "therapist")] {
        dismiss(c, who).await?;
    }
    fx.step("big, approved; reduced motion");

    // Ben's own timeline. He never chose, so his celebrations reach only him and therapists.
    celebrate_from_people_list(therapist, "p-ben", "daysSober", Some(10), "Ten days.").await?;
    let v = overlay(ben, "ben", "standard").await?;
    check(
        v["name"].as_str().is_some_and(|n| n.contains("Congratulations, Ben")) && v["reactions"] == 0,
        "Ben's own overlay, no reactions to himself",
        &v,
    )?;
    let cy_sees = cy.execute("return document.querySelector('.ms-overlay') === null;", vec![]).await.map_err(|e| e.to_string())?;
    if cy_sees != json!(true) {
        return Err("Cy must not see Ben's celebration (Ben never chose a wider audience)".into());
    }
    dismiss(ben, "ben").await?;
    dismiss(therapist, "therapist").await?;
    celebrate_from_people_list(therapist, "p-ben", "daysSober", Some(45), "Forty-five.").await?;
    overlay(ben, "ben", "standard").await?;
    dismiss(ben, "ben").await?;
    dismiss(therapist, "therapist").await?;
    open_milestones(ben, "ben").await?;
    wait_for(ben, "Ben's timeline", "return document.querySelectorAll('#ms-timeline .ms-entry').length === 2 && Boolean(document.querySelector('#ms-timeline svg.ms-chart polyline'));", &[]).await?;
    save_screenshot(ben, &shot("peer-timeline")).await;
    // He chooses: big, for the group; the page confirms.
    click(ben, "ben", "input[name=\"ms-style\"][value=\"big\"]").await?;
    click(ben, "ben", "input[name=\"ms-audience\"][value=\"group\"]").await?;
    click(ben, "ben", "#ms-prefs-section button[type=submit]").await?;
    wait_for(ben, "the saved preferences", "return document.querySelector('#ms-prefs-section .ms-status').textContent === 'Saved.';", &[])
        .await?;
    ben.execute("document.querySelector('#ms-prefs-section').scrollIntoView();", vec![]).await.map_err(|e| e.to_string())?;
    save_screenshot(ben, &shot("peer-preferences")).await;
    fx.step("Ben's timeline and preferences");
    // The therapist's group timeline lists everyone's.
    open_milestones(therapist, "therapist").await?;
    wait_for(therapist, "the group timeline", "return document.querySelectorAll('#ms-group-timeline .ms-entry').length === 5;", &[])
        .await?;
    save_screenshot(therapist, &shot("therapist-group-timeline")).await;

    fx.step("the group timeline");
    // On a phone the card fits the screen: nothing scrolls sideways.
    click(therapist, "therapist", "#ms-dialog .ms-dialog-close").await?;
    click(ben, "ben", "#ms-dialog .ms-dialog-close").await?;
    resize(ben, "ben", NARROW_PHONE).await?;
    celebrate_from_people_list(therapist, "p-ana", "daysSober", Some(60), "Two months!").await?;
    overlay(ben, "ben", "big").await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let overflow =
        ben.execute("return document.documentElement.scrollWidth > window.innerWidth;", vec![]).await.map_err(|e| e.to_string())?;
    save_screenshot(ben, &shot("peer-phone-big")).await;
    if overflow != json!(false) {
        return Err("the big overlay makes the page scroll sideways at 360 px".into());
    }
    fx.step("big on a phone");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Browser plumbing (as in tests/suite/browser.rs).
