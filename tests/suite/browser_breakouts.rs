//! Breakout rooms end to end through real browsers: a therapist page and two participant pages
//! (Ana and Ben), plus a headless participant (Alex, `hearth::client::MediaClient`) so that one
//! breakout has two members without a fourth browser.
//!
//! The therapist creates "Garden" and "Library" in the breakout panel, assigns Ana and Alex to
//! Garden and Ben to Library with the per-person selects, sets a 5 minute duration and opens the
//! rooms. Then:
//! - Ana's page says "You are in breakout: Garden" with a countdown, shows exactly one remote
//!   tile (Alex, whose video packets arrive) and no tile for Ben or the therapist; Ben's page
//!   says Library and shows only his own tile; the therapist's panel shows who is where.
//! - A broadcast reaches both breakouts as a banner; Ana asks for help, her page confirms, the
//!   therapist's page raises the alert and its "Go to their room" button takes the therapist
//!   into Garden, where Ana decodes the therapist's video.
//! - Ana's websocket drops: her page keeps its tiles (dimmed) and says "Reconnecting…", then
//!   comes back in Garden with the same people.
//! - "Close all" with a 1 s countdown: every page sees the closing countdown and returns to the
//!   main room; Ana again sees everyone (decoding Ben's and the therapist's video).
//! - Alex's connection drops without leaving: the others' pages keep Alex's tile, marked
//!   "Reconnecting…".
//!
//! The same scenario runs in an end-to-end encrypted (`required`) room, with solid-colour
//! cameras (the therapist red, Ana and Ben blue): the therapist's page admits everyone; each
//! page sends with a key and shows no red lock; Ana sees the therapist's red and Ben's blue in
//! the main room, in Garden her signed list of who can hear names her and neither Ben nor
//! Alex (who holds no key, so his tile says "no key"), she sees the visiting therapist's red
//! there (the leader holds Garden's key) and again after her reconnect, and back in the main
//! room the therapist's red and Ben's blue again (the main room re-keyed for her).
//!
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots and logs go to
//! `target/test-artifacts/breakouts/` (`breakouts-e2ee/` for the encrypted room).

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::{Duration, Instant};

use crate::browser_e2ee::{admit_when_waiting, colour_cameras, encryption_holds, js, see_colour, with_camera, Mode, BLUE, RED};
use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::room::ParticipantId;
use hearth::signal::protocol::MediaKind;
use serde_json::{json, Value};

const ROOM: &str = "browser-breakouts";
const THERAPIST: (&str, &str) = ("t-rivera", "Dr. Rivera");
const ANA: (&str, &str) = ("p-ana", "Ana");
const BEN: (&str, &str) = ("p-ben", "Ben");
const ALEX: (&str, &str) = ("p-alex", "Alex");
const GARDEN: &str = "Garden";
const LIBRARY: &str = "Library";
const BROADCAST: &str = "Two minutes left: please start wrapping up.";
/// How long media may take after a (re)negotiation.
const MEDIA_DEADLINE: Duration = Duration::from_secs(20);
const TEST_DEADLINE: Duration = Duration::from_secs(120);
/// Admitting everyone and the colour checks take longer.
const ENCRYPTED_DEADLINE: Duration = Duration::from_secs(300);

/// What the page shows: its state, the visible remote tiles (with per-tile video statistics),
/// the space banner and the people list. Resolves with one JSON object.
const PAGE_PROBE_JS: &str = r#"
const done = arguments[arguments.length - 1];
const h = window.hearth;
const shown = (el) => Boolean(el && !el.hidden && el.offsetParent !== null);
const tiles = [...document.querySelectorAll('#tiles .tile.remote')].filter(shown).map((t) => {
  const video = t.querySelector('video');
  const track = video.srcObject && video.srcObject.getVideoTracks()[0];
  const badge = t.querySelector('.connecting');
  const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
  return {
    id: t.dataset.participantId,
    name: t.querySelector('.tile-name').textContent.trim(),
    badge: badge.hidden ? '' : badge.textContent.trim(),
    reconnecting: t.classList.contains('reconnecting'),
    e2ee: t.dataset.e2ee || '',
    track: track ? track.id : null,
    shownFrames: quality ? quality.totalVideoFrames : 0,
    width: video.videoWidth,
  };
});
// A track shown in two tiles would show one person under another's name.
const streams = [...document.querySelectorAll('#tiles .tile.remote video')].map((v) => (v.srcObject ? v.srcObject.getTracks() : []));
const sharedTracks = streams.flatMap((a, i) => streams.slice(i + 1).flatMap((b) => a.filter((t) => b.includes(t)).map((t) => t.id)));
const banner = document.querySelector('#space-banner');
const page = {
  state: h ? h.state : 'no window.hearth',
  status: document.querySelector('#status').textContent.trim(),
  tiles,
  names: tiles.map((t) => t.name).sort(),
  banner: shown(banner) ? document.querySelector('#space-title').textContent.trim() : null,
  time: shown(document.querySelector('#space-time')) ? document.querySelector('#space-time').textContent.trim() : null,
  closing: shown(document.querySelector('#space-closing')) ? document.querySelector('#space-closing').textContent.trim() : null,
  people: [...document.querySelectorAll('#people-list .person-name')].map((n) => n.textContent.trim()),
  peopleCount: document.querySelector('#people-count').textContent.trim(),
  gridReconnecting: document.querySelector('#tiles').classList.contains('reconnecting'),
  sharedTracks,
  events: h && h.breakouts ? h.breakouts.events : [],
};
if (!h || !h.pc) { done(page); return; }
h.pc.getStats().then((stats) => {
  const byTrack = {};
  stats.forEach((r) => {
    if (r.type !== 'inbound-rtp' || r.kind !== 'video' || !r.trackIdentifier) return;
    const s = byTrack[r.trackIdentifier] || { packets: 0, frames: 0 };
    s.packets += r.packetsReceived || 0;
    s.frames += r.framesDecoded || 0;
    byTrack[r.trackIdentifier] = s;
  });
  for (const t of tiles) {
    const s = (t.track && byTrack[t.track]) || { packets: 0, frames: 0 };
    t.packets = s.packets;
    t.frames = s.frames;
  }
  done(page);
}).catch((e) => { page.error = String(e); done(page); });
"#;

/// The therapist's panel: each room card's name and the names listed in it, and the chip.
const PANEL_JS: &str = r#"
const cards = [...document.querySelectorAll('#bo-rooms li.bo-room')].map((li) => ({
  id: li.dataset.breakoutId,
  name: li.querySelector('.bo-room-name').textContent.trim(),
  members: [...li.querySelectorAll('ul.bo-members li')].map((m) => m.textContent.trim()).sort(),
  here: li.classList.contains('here'),
}));
const chip = document.querySelector('#bo-state');
return { cards, state: chip.hidden ? '' : chip.textContent.trim() };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakout_rooms_in_the_browser() {
    run(Mode::Open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakout_rooms_in_the_browser_in_an_encrypted_room() {
    run(Mode::Encrypted).await;
}

async fn run(mode: Mode) {
    // No waiting room in the open room (this test is about breakouts), and a reconnect grace
    // long enough that a dropped connection is held (the test default is 300 ms).
    let mut config = open_config();
    config.rooms.reconnect_grace_ms = 20_000;
    let within = if mode.encrypted() { ENCRYPTED_DEADLINE } else { TEST_DEADLINE };
    let mut fx = BrowserTest::with_server(&mode.name("breakouts"), within, mode.config(config)).await;
    let specs = if mode.encrypted() {
        let (red, blue) = colour_cameras(&fx);
        [with_camera("therapist", &red), with_camera("ana", &blue), with_camera("ben", &blue)]
    } else {
        [PageSpec::desktop("therapist"), PageSpec::desktop("ana"), PageSpec::desktop("ben")]
    };
    let [therapist, ana, ben] = fx.open(specs).await;
    let outcome = fx.within(scenario(&fx, mode, &therapist, &ana, &ben)).await;
    fx.finish(outcome).await;
}

/// Encrypted rooms: Ana's tiles of the therapist (red) and, if `with_ben`, Ben (blue) show
/// their colour, decrypted.
async fn ana_sees_colours(mode: Mode, ana: &Client, when: &str, with_ben: bool) -> Result<(), String> {
    if !mode.encrypted() {
        return Ok(());
    }
    see_colour(ana, &format!("Ana ({when})"), THERAPIST.0, RED).await?;
    if with_ben {
        see_colour(ana, &format!("Ana ({when})"), BEN.0, BLUE).await?;
    }
    Ok(())
}

async fn scenario(fx: &BrowserTest, mode: Mode, therapist: &Client, ana: &Client, ben: &Client) -> Result<(), String> {
    let server = fx.server();
    let shot = |name: &str| fx.shot_path(name);
    let step = |what: &str| fx.step(what);

    // Everyone joins with their link (in an encrypted room the therapist first, to admit the
    // others); Alex joins headless.
    if mode.encrypted() {
        fx.join(therapist, "therapist", ROOM, Role::Therapist, THERAPIST).await?;
        mode.join(fx, therapist, ana, "ana", ROOM, Role::Participant, ANA).await?;
        mode.join(fx, therapist, ben, "ben", ROOM, Role::Participant, BEN).await?;
    } else {
        let (t, a, b) = tokio::join!(
            fx.join(therapist, "therapist", ROOM, Role::Therapist, THERAPIST),
            fx.join(ana, "ana", ROOM, Role::Participant, ANA),
            fx.join(ben, "ben", ROOM, Role::Participant, BEN)
        );
        t?;
        a?;
        b?;
    }
    let url = common::ws_url(server);
    let token = common::token_for(server, ROOM, Role::Participant, ALEX.1, ALEX.0);
    let alex_join = tokio::spawn(MediaClient::join(MediaOptions::light(&url, ROOM, ALEX.1).with_token(token)));
    if mode.encrypted() {
        admit_when_waiting(therapist, ALEX.0).await?;
    }
    let alex = alex_join.await.map_err(|e| e.to_string())?.map_err(|e| format!("alex (headless) could not join: {e}"))?;
    let everyone_but_ana = sorted(&[ALEX.1, BEN.1, THERAPIST.1]);
    until(ana, "Ana to see everyone's tile", UI_DEADLINE, |p| names(p) == everyone_but_ana).await?;
    if mode.encrypted() {
        for (page, who) in [(therapist, "therapist"), (ana, "Ana"), (ben, "Ben")] {
            encryption_holds(page, who).await?;
        }
        ana_sees_colours(mode, ana, "in the main room", true).await?;
    }
    step("everyone joined");

    // The therapist creates two rooms from the panel (typing, Enter).
    wait_for(therapist, "the breakout panel", VISIBLE_JS, &[json!("#breakouts-section")]).await?;
    for name in [GARDEN, LIBRARY] {
        fill(therapist, "#bo-name", name).await?;
        press(therapist, "therapist", "#bo-name", Key::Enter).await?;
    }
    wait_for(
        therapist,
        "two room cards and a select per person",
        "return document.querySelectorAll('#bo-rooms li.bo-room:not(.main)').length === 2 \
         && document.querySelectorAll('#bo-people select').length === 3;",
        &[],
    )
    .await?;
    let panel = therapist.execute(PANEL_JS, vec![]).await.map_err(|e| format!("therapist: reading the panel: {e}"))?;
    let id_of = |name: &str| -> Result<String, String> {
        panel["cards"]
            .as_array()
            .and_then(|cards| cards.iter().find(|c| c["name"] == name))
            .and_then(|c| c["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("no room card named {name}: {panel}"))
    };
    let (garden, library) = (id_of(GARDEN)?, id_of(LIBRARY)?);

    // Who goes where, with the per-person selects (what keyboard users use).
    for ((id, _), room) in [(ANA, &garden), (BEN, &library), (ALEX, &garden)] {
        therapist
            .find(Locator::Css(&format!("#bo-people select[data-participant-id=\"{id}\"]")))
            .await
            .map_err(|e| format!("therapist: finding the select for {id}: {e}"))?
            .select_by_value(room)
            .await
            .map_err(|e| format!("therapist: choosing {room} for {id}: {e}"))?;
    }
    let planned = |p: &Value| {
        card(p, GARDEN) == sorted(&[ALEX.1, ANA.1]) && card(p, LIBRARY) == sorted(&[BEN.1]) && card(p, "Main room") == sorted(&["You"])
    };
    until_sync(therapist, "the plan on the therapist's panel", PANEL_JS, planned).await?;
    step("rooms created and assigned");

    // Options: 5 minutes; open.
    fill(therapist, "#bo-duration", "5").await?;
    dismiss_toasts(therapist).await;
    resize(therapist, "therapist", (1280, 1800)).await?;
    save_screenshot_of(therapist, "#breakouts-section", &shot("therapist-plan")).await;
    resize(therapist, "therapist", DESKTOP).await?;
    press(therapist, "therapist", "#bo-open", Key::Enter).await?;
    let opened = Instant::now();

    // Ana: in Garden, with a countdown, sees Alex only, and Alex's video arrives.
    let in_garden = format!("You are in breakout: {GARDEN}");
    let ana_in_garden = until(ana, "Ana's page in Garden with only Alex", UI_DEADLINE, |p| {
        p["banner"] == in_garden.as_str() && countdown_near(p, 300, opened) && names(p) == sorted(&[ALEX.1])
    })
    .await?;
    for hidden in [BEN.0, THERAPIST.0] {
        if ana_in_garden["tiles"].as_array().is_some_and(|t| t.iter().any(|t| t["id"] == hidden)) {
            return Err(format!("Ana's page shows a tile for {hidden}, who is not in Garden: {ana_in_garden}"));
        }
    }
    if ana_in_garden["people"] != json!(["Ana (you)", "Alex"]) || ana_in_garden["peopleCount"] != "2 people in this room, including you." {
        return Err(format!("Ana's people list should hold only Garden: {ana_in_garden}"));
    }
    let first = tile_stat(&ana_in_garden, ALEX.0, "packets");
    let ana_alex =
        until(ana, "Alex's video packets on Ana's page", MEDIA_DEADLINE, |p| tile_stat(p, ALEX.0, "packets") > first + 30).await?;
    eprintln!("Ana receives Alex in Garden: {}", tile_of(&ana_alex, ALEX.0));
    if mode.encrypted() {
        // Garden's signed list names Ana, not Ben (in Library) nor Alex (no key): Alex's
        // packets arrive, and his tile says there is no key for them.
        let hear =
            js(ana, "const w = window.hearth.e2ee.whoCanHear; return w && { space: w.space, ids: w.members.map((m) => m.id) };").await?;
        let ids = hear["ids"].as_array().cloned().unwrap_or_default();
        if hear["space"] != garden.as_str() || !ids.contains(&json!(ANA.0)) || ids.contains(&json!(BEN.0)) || ids.contains(&json!(ALEX.0)) {
            return Err(format!("who can hear Garden, on Ana's page: {hear}"));
        }
        until(ana, "Alex's tile saying there is no key", UI_DEADLINE, |p| tile_of(p, ALEX.0)["e2ee"] == "nokey").await?;
    }
    step("Ana in Garden, receiving Alex");
    // Ben: in Library, alone: the grid shows just his own tile.
    let in_library = format!("You are in breakout: {LIBRARY}");
    until(ben, "Ben's page in Library, alone", UI_DEADLINE, |p| {
        p["banner"] == in_library.as_str()
            && countdown_near(p, 300, opened)
            && names(p).is_empty()
            && p["peopleCount"] == "Just you in this room right now."
    })
    .await?;
    // The therapist: who is where, and the rooms open with the time left.
    let open = |p: &Value| planned(p) && p["state"].as_str().is_some_and(|s| s.starts_with("Open · 4:") || s.starts_with("Open · 5:"));
    until_sync(therapist, "the whereabouts on the therapist's panel", PANEL_JS, open).await?;
    until(therapist, "the therapist alone in the main room", UI_DEADLINE, |p| {
        names(p).is_empty() && p["banner"] == "You are in the main room"
    })
    .await?;
    // Alex (headless) hears Ana, and not Ben.
    let (ana_id, ben_id) = (ParticipantId::from_trusted(ANA.0), ParticipantId::from_trusted(BEN.0));
    let heard = common::eventually(MEDIA_DEADLINE, || alex.packets_from(&ana_id, MediaKind::Audio) > 0).await;
    if !heard {
        return Err("Alex should receive Ana's audio in Garden".into());
    }
    let ben_before = alex.packets_from(&ben_id, MediaKind::Audio);
    tokio::time::sleep(Duration::from_millis(600)).await;
    if alex.packets_from(&ben_id, MediaKind::Audio) > ben_before + 2 {
        return Err("Alex, in Garden, still receives Ben's audio from Library".into());
    }
    until(therapist, "the therapist's count", UI_DEADLINE, |p| p["peopleCount"] == "Just you in the main room right now.").await?;
    for client in [therapist, ana, ben] {
        dismiss_toasts(client).await;
    }
    save_screenshot(ana, &shot("participant")).await;
    step("breakouts open and checked");
    // The whole panel: a window tall enough that the sidebar does not scroll.
    resize(therapist, "therapist", (1280, 1800)).await?;
    save_screenshot_of(therapist, "#breakouts-section", &shot("therapist")).await;
    resize(therapist, "therapist", DESKTOP).await?;

    // Phones: the banner and the panel fit 360 px.
    for (who, client) in [("therapist", therapist), ("participant", ana)] {
        fx.fits_narrow_phone(client, who).await?;
    }

    // A broadcast reaches every room as a banner; the therapist's panel confirms it.
    fill(therapist, "#bo-broadcast", BROADCAST).await?;
    press(therapist, "therapist", "#bo-broadcast", Key::Enter).await?;
    let broadcast_js = "const b = document.querySelector('#breakout-broadcast'); \
        return Boolean(b && !b.hidden && b.querySelector('.bb-text').textContent === arguments[0] \
        && b.querySelector('.bb-from').textContent === 'Message to all rooms from Dr. Rivera');";
    for (who, client) in [("Ana", ana), ("Ben", ben)] {
        wait_for(client, &format!("the broadcast on {who}'s page"), broadcast_js, &[json!(BROADCAST)]).await?;
    }
    wait_for(
        therapist,
        "the therapist's confirmation",
        "return document.querySelector('#bo-broadcast-status').textContent === 'Sent to every room.';",
        &[],
    )
    .await?;
    save_screenshot(ben, &shot("participant-broadcast")).await;
    press(ana, "ana", "#breakout-broadcast-ok", Key::Enter).await?;
    step("broadcast received");

    // Ana asks for help: her page confirms; the therapist's alert takes them to Garden.
    press(ana, "ana", "#space-help", Key::Enter).await?;
    wait_for(
        ana,
        "Ana's confirmation",
        "const b = document.querySelector('#space-help'); \
         return b.disabled && b.textContent.trim() === 'Help requested' \
         && /The therapist has been asked to come to Garden/.test(document.querySelector('#space-status').textContent);",
        &[],
    )
    .await?;
    let alert_js = "const a = document.querySelector('#help-alerts .help-alert'); \
        if (!a || document.querySelector('#help-alerts').getAttribute('role') !== 'alert') return false; \
        const r = a.getBoundingClientRect(); \
        return r.top >= 0 && r.height > 60 && a.querySelector('.help-alert-title').textContent === 'Ana asks for help' \
        && a.querySelector('.help-alert-detail').textContent === 'In Garden.' \
        && Boolean(a.querySelector('button[data-action=\"go-to-room\"]'));";
    wait_for(therapist, "the help alert on the therapist's page", alert_js, &[]).await?;
    save_screenshot(therapist, &shot("therapist-help")).await;
    press(therapist, "therapist", "#help-alerts button[data-action=\"go-to-room\"]", Key::Enter).await?;
    let visiting = format!("You are visiting breakout: {GARDEN}");
    until(therapist, "the therapist visiting Garden", UI_DEADLINE, |p| {
        p["banner"] == visiting.as_str() && names(p) == sorted(&[ALEX.1, ANA.1])
    })
    .await?;
    wait_for(therapist, "the help alert to go", "return !document.querySelector('#help-alerts .help-alert');", &[]).await?;
    let ana_sees_therapist = until(ana, "Ana decoding the visiting therapist's video", MEDIA_DEADLINE, |p| {
        names(p) == sorted(&[ALEX.1, THERAPIST.1]) && decoding(p, THERAPIST.0)
    })
    .await?;
    eprintln!("Ana sees the therapist in Garden: {}", tile_of(&ana_sees_therapist, THERAPIST.0));
    ana_sees_colours(mode, ana, "the therapist visiting Garden", false).await?;
    step("help answered: the therapist visits Garden");

    // Ana's connection drops: the page keeps the tiles, dimmed, says "Reconnecting…", and comes
    // back in Garden with the same people.
    ana.execute("window.hearth.ws.close();", vec![]).await.map_err(|e| format!("ana: closing the socket: {e}"))?;
    let reconnecting = until(ana, "Ana's page reconnecting with its tiles", UI_DEADLINE, |p| {
        p["state"] == "reconnecting"
            && p["gridReconnecting"] == true
            && names(p) == sorted(&[ALEX.1, THERAPIST.1])
            && p["banner"] == in_garden.as_str()
    })
    .await?;
    // Read in the same probe as the state: the page may be back before another command runs.
    if reconnecting["status"] != "Reconnecting…" {
        return Err(format!("Ana's status should say Reconnecting…, says {} ({reconnecting})", reconnecting["status"]));
    }
    save_screenshot(ana, &shot("participant-reconnecting")).await;
    until(ana, "Ana back in Garden after reconnecting", MEDIA_DEADLINE, |p| {
        p["state"] == "joined"
            && p["gridReconnecting"] == false
            && p["banner"] == in_garden.as_str()
            && names(p) == sorted(&[ALEX.1, THERAPIST.1])
            && decoding(p, THERAPIST.0)
    })
    .await?;
    ana_sees_colours(mode, ana, "back in Garden after reconnecting", false).await?;

    step("Ana reconnected");
    // The therapist goes back to the main room, then closes all rooms with a 1 s countdown.
    press(therapist, "therapist", "#space-return", Key::Enter).await?;
    until(therapist, "the therapist back in the main room", UI_DEADLINE, |p| {
        p["banner"] == "You are in the main room" && names(p).is_empty()
    })
    .await?;
    fill(therapist, "#bo-close-secs", "1").await?;
    press(therapist, "therapist", "#bo-close", Key::Enter).await?;
    until(ana, "the closing countdown on Ana's page", UI_DEADLINE, |p| {
        p["closing"].as_str().is_some_and(|c| c.starts_with("The breakout rooms are closing"))
    })
    .await?;
    let back = "You are back in the main room";
    let everyone_but_ben = sorted(&[ALEX.1, ANA.1, THERAPIST.1]);
    let returned = |others: Vec<String>| {
        move |p: &Value| {
            p["banner"] == back && names(p) == others && p["events"].as_array().is_some_and(|e| e.iter().any(|t| t == "breakoutsClosing"))
        }
    };
    until(ben, "Ben back in the main room with everyone", UI_DEADLINE, returned(everyone_but_ben)).await?;
    until(ana, "Ana back in the main room with everyone", UI_DEADLINE, returned(everyone_but_ana.clone())).await?;
    until_sync(therapist, "the panel closed", PANEL_JS, |p| p["state"] == "Not open yet").await?;
    let ana_back = until(ana, "Ana decoding Ben's and the therapist's video again", MEDIA_DEADLINE, |p| {
        decoding(p, BEN.0) && decoding(p, THERAPIST.0) && p["peopleCount"] == "4 people in the main room, including you."
    })
    .await?;
    eprintln!("Ana back in the main room: {}", ana_back["tiles"]);
    ana_sees_colours(mode, ana, "back in the main room", true).await?;
    save_screenshot(ana, &shot("participant-back")).await;
    step("closed: everyone back in the main room");

    // Alex drops without leaving: the place is held, and the pages say so on Alex's tile.
    alex.close().await;
    for (who, client) in [("Ana", ana), ("Ben", ben), ("the therapist", therapist)] {
        until(client, &format!("Alex's tile reconnecting on {who}'s page"), UI_DEADLINE, |p| {
            p["tiles"]
                .as_array()
                .is_some_and(|tiles| tiles.iter().any(|t| t["id"] == ALEX.0 && t["badge"] == "Reconnecting…" && t["reconnecting"] == true))
        })
        .await?;
    }
    wait_for(
        ana,
        "Alex marked reconnecting in Ana's people list",
        "const row = document.querySelector('#people-list li[data-participant-id=\"p-alex\"]'); \
         return Boolean(row && !row.querySelector('.away-inline').hidden);",
        &[],
    )
    .await?;
    save_screenshot(ana, &shot("participant-peer-reconnecting")).await;
    step("Alex shown reconnecting");
    Ok(())
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn names(page: &Value) -> Vec<String> {
    // Each tile holds only its own person's tracks (or the page would show someone under
    // another's name); a probe where two tiles share a track matches nothing.
    if page["sharedTracks"].as_array().is_some_and(|s| !s.is_empty()) {
        eprintln!("two tiles share a track: {page}");
        return vec!["(tiles share a track)".into()];
    }
    page["names"].as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn card(panel: &Value, name: &str) -> Vec<String> {
    panel["cards"]
        .as_array()
        .and_then(|cards| cards.iter().find(|c| c["name"] == name))
        .and_then(|c| c["members"].as_array())
        .map(|m| m.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn tile_of<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["tiles"].as_array().and_then(|t| t.iter().find(|t| t["id"] == id)).unwrap_or(&Value::Null)
}

fn tile_stat(page: &Value, id: &str, key: &str) -> u64 {
    tile_of(page, id)[key].as_u64().unwrap_or(0)
}

/// That person's tile shows decoded video: frames decoded on its track and painted in its
/// own video element.
fn decoding(page: &Value, id: &str) -> bool {
    tile_stat(page, id, "frames") > 0 && tile_stat(page, id, "shownFrames") > 0 && tile_stat(page, id, "width") > 0
}

/// The countdown reads m:ss left, `secs` counted down from `since` (give or take 5 s): on a
/// busy machine the checks before this one can take a while.
fn countdown_near(page: &Value, secs: u64, since: Instant) -> bool {
    let Some(text) = page["time"].as_str() else { return false };
    let Some(clock) = text.strip_suffix(" left") else { return false };
    let Some((m, s)) = clock.split_once(':') else { return false };
    let (Ok(m), Ok(s)) = (m.parse::<u64>(), s.parse::<u64>()) else { return false };
    let left = m * 60 + s;
    left <= secs && left + since.elapsed().as_secs() + 5 >= secs
}

/// Closes other features' floating toasts (the milestones question), so they do not cover
/// the page in screenshots.
async fn dismiss_toasts(client: &Client) {
    let _ = client.execute("document.querySelectorAll('.ms-toast').forEach((t) => t.remove());", vec![]).await;
}

/// Polls the page probe until `ok` holds; returns the last probe.
async fn until(client: &Client, what: &str, wait: Duration, ok: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let deadline = Instant::now() + wait;
    loop {
        let probe = client.execute_async(PAGE_PROBE_JS, vec![]).await.unwrap_or_else(|e| json!({ "error": e.to_string() }));
        if ok(&probe) {
            return Ok(probe);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {wait:?} waiting for {what}; the page shows {probe}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a synchronous script returning a JSON value until `ok` holds.
async fn until_sync(client: &Client, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let deadline = Instant::now() + UI_DEADLINE;
    loop {
        let value = client.execute(script, vec![]).await.unwrap_or_else(|e| json!({ "error": e.to_string() }));
        if ok(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {UI_DEADLINE:?} waiting for {what}; last: {value}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Browser plumbing (as in tests/suite/browser.rs).
