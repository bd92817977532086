//! Screen sharing in real browsers, three people: the therapist shares (Chromium's fake screen
//! capture) and is told "sharing" only once the server confirms it forwards the share; both
//! participants' pages show the screen large, decoded, with the therapist's camera still in
//! its tile (with three people the therapist's `addTrack` reuses a transceiver the server
//! created, which the first share used to be lost on); when the therapist's connection drops, the share comes back by itself and moves
//! again on the participant's page; the participant has no share button until the therapist
//! allows it in one click; stopping removes the screen from the participant's page.
//!
//! The same scenario runs in an end-to-end encrypted (`required`) room too, the therapist
//! admitting both participants from the waiting room, with solid-colour cameras (therapist
//! red, participants blue). There it also checks, by content: each page sends with a key and
//! its lock is not red; the participant sees the therapist's red and the therapist the
//! participant's blue; on both participants' pages the frames of the stage's own track are
//! decrypted (the worker's counters for that receiver rise, none passed in the clear), the
//! stage carries no "no key" or "cannot decrypt" mark, and a patch of the stage is the flat
//! colour of the sharer's own captured screen (ciphertext fed to a decoder is not), again
//! after the therapist's reconnect. Last, a member the leader gives no key (its page never
//! announces one) sees the next share's stage marked "Encrypted — no key yet", its picture
//! hidden and not one of its frames opened, while Pat's stage shows the screen (the control).
//!
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots and logs go to
//! `target/test-artifacts/screen/` (`screen-e2ee/` for the encrypted room).

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use crate::browser_e2ee::{admit, colour_cameras, encryption_holds, join_with_hooks, see_colour, with_camera, Mode, BLUE, RED};
use hearth::auth::Role;
use serde_json::{json, Value};

const ROOM: &str = "browser-screen";
const TEST_DEADLINE: Duration = Duration::from_secs(120);
/// Admitting two people and the colour and decryption checks take longer.
const ENCRYPTED_DEADLINE: Duration = Duration::from_secs(360);
const MEDIA: Duration = Duration::from_secs(30);

/// The participant's page shows a decoded screen on the stage and the therapist's camera tile.
const SEES_SCREEN_JS: &str = r#"
const stage = document.querySelector('#screen-stage');
const video = stage && stage.querySelector('video');
const tile = document.querySelector(`#tiles .tile.remote[data-participant-id="${arguments[0]}"] video`);
return Boolean(stage && !stage.hidden && video.videoWidth > 0 && tile && tile.videoWidth > 0
  && /is sharing their screen/.test(stage.textContent));
"#;

/// A remote tile of `arguments[0]` shows decoded video.
const TILE_DECODED_JS: &str = r#"
const v = document.querySelector(`#tiles .tile.remote[data-participant-id="${arguments[0]}"] video`);
return Boolean(v && v.videoWidth > 0);
"#;

/// The sharer's bar says "sharing" (only after `screenShareForwarded`).
const SHARING_CONFIRMED_JS: &str = r#"
const bar = document.querySelector('#screen-sharing-bar');
return !bar.hidden && bar.dataset.state === 'sharing' && /You are sharing your screen with the group/.test(bar.textContent);
"#;

/// Frames decoded of whatever the stage shows (-1: nothing shown).
const SCREEN_FRAMES_JS: &str = r#"
const done = arguments[arguments.length - 1];
const stage = document.querySelector('#screen-stage');
const v = stage.querySelector('video');
const t = !stage.hidden && v.srcObject && v.srcObject.getVideoTracks()[0];
if (!t) { done(-1); return; }
window.hearth.pc.getStats().then((stats) => {
  let frames = -1;
  stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.trackIdentifier === t.id) frames = r.framesDecoded || 0; });
  done(frames);
}).catch(() => done(-1));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_appears_large_on_the_other_page() {
    run(Mode::Open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_is_decrypted_on_the_other_pages_in_an_encrypted_room() {
    run(Mode::Encrypted).await;
}

async fn run(mode: Mode) {
    let within = if mode.encrypted() { ENCRYPTED_DEADLINE } else { TEST_DEADLINE };
    let mut fx = BrowserTest::with_server(&mode.name("screen"), within, mode.config(open_config())).await;
    // Headless Chromium grants getDisplayMedia and captures a fake screen with these flags.
    let screen = |spec: PageSpec| spec.arg("--auto-select-desktop-capture-source=Entire screen").arg("--auto-accept-this-tab-capture");
    let specs = if mode.encrypted() {
        let (red, blue) = colour_cameras(&fx);
        [screen(with_camera("therapist", &red)), with_camera("participant", &blue), with_camera("sam", &blue)]
    } else {
        [screen(PageSpec::desktop("therapist")), PageSpec::desktop("participant"), PageSpec::desktop("sam")]
    };
    let [therapist, participant, sam] = fx.open(specs).await;
    let mut outcome = fx.within(scenario(&fx, mode, &therapist, &participant, &sam)).await;
    if mode.encrypted() && outcome.is_ok() {
        // Sam's browser opens Eve's link (a fourth browser would load the machine for nothing).
        outcome = fx.within(keyless_sees_no_screen(&fx, &therapist, &participant, &sam)).await;
        if outcome.is_ok() {
            fx.shot(&sam, "keyless-stage").await;
        }
    }
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, mode: Mode, therapist: &Client, participant: &Client, sam: &Client) -> Result<(), String> {
    fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-rivera", "Dr. Rivera")).await?;
    mode.join(fx, therapist, participant, "participant", ROOM, Role::Participant, ("p-pat", "Pat")).await?;
    mode.join(fx, therapist, sam, "second participant", ROOM, Role::Participant, ("p-sam", "Sam")).await?;
    // Everyone sees everyone's camera first, so the therapist's connection carries the
    // server's transceivers for both participants before the share.
    for (page, who, other) in
        [(therapist, "therapist", "p-pat"), (therapist, "therapist", "p-sam"), (participant, "Pat", "p-sam"), (sam, "Sam", "p-pat")]
    {
        wait_for_within(page, &format!("{who} decoding {other}"), TILE_DECODED_JS, &[json!(other)], MEDIA).await?;
    }
    if mode.encrypted() {
        for (page, who) in [(therapist, "therapist"), (participant, "participant"), (sam, "second participant")] {
            encryption_holds(page, who).await?;
        }
        see_colour(participant, "Pat", "t-rivera", RED).await?;
        see_colour(therapist, "the therapist", "p-pat", BLUE).await?;
    }
    // The participant may not share yet: no button.
    wait_for(therapist, "the therapist's share button", VISIBLE_JS, &[json!("#screen-button")]).await?;
    let hidden = participant.execute("return document.querySelector('#screen-button').hidden;", vec![]).await.map_err(|e| e.to_string())?;
    if hidden != json!(true) {
        return Err("the participant sees a share button before being allowed".into());
    }

    // Before any breakout exists, the therapist's breakout panel counts the main room from the
    // roster (it once said "Main room 0" with three people there).
    wait_for(
        therapist,
        "the main room card to list the three people",
        "const c = document.querySelector('.bo-room.main'); return Boolean(c) && /^3/.test(c.querySelector('.count-badge').textContent) && c.querySelectorAll('.bo-members li').length === 3;",
        &[],
    )
    .await?;
    click(therapist, "therapist", "#screen-button").await?;
    wait_for(therapist, "the 'you are sharing' bar", VISIBLE_JS, &[json!("#screen-sharing-bar")]).await?;
    wait_for_within(therapist, "the server's word that the share is forwarded", SHARING_CONFIRMED_JS, &[], MEDIA).await?;
    wait_for_within(participant, "the therapist's screen, large, beside the camera tile", SEES_SCREEN_JS, &[json!("t-rivera")], MEDIA)
        .await?;
    wait_for_within(sam, "the therapist's screen on Sam's page too", SEES_SCREEN_JS, &[json!("t-rivera")], MEDIA).await?;
    if mode.encrypted() {
        let reference = sharers_screen(therapist).await?;
        screen_decrypted(participant, "Pat", &reference).await?;
        screen_decrypted(sam, "Sam", &reference).await?;
    }
    fx.shot(participant, "participant-sees-share").await;
    fx.shot(therapist, "therapist-sharing").await;

    // The therapist's connection drops: once back, the share goes on by itself (the captured
    // screen is still live) and the participant sees it moving again. (The browser may reuse
    // the old receiver, and with it the old track object, so frames are what count.)
    therapist.execute("window.hearth.ws.close();", vec![]).await.map_err(|e| format!("therapist: closing the socket: {e}"))?;
    wait_for_within(
        therapist,
        "the therapist back in the room, still sharing",
        "return window.hearth.state === 'joined' && !document.querySelector('#screen-sharing-bar').hidden;",
        &[],
        MEDIA,
    )
    .await?;
    let frames = |v: Value| v.as_i64().unwrap_or(-1);
    let start = frames(participant.execute_async(SCREEN_FRAMES_JS, vec![]).await.map_err(|e| e.to_string())?);
    let deadline = std::time::Instant::now() + MEDIA;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = frames(participant.execute_async(SCREEN_FRAMES_JS, vec![]).await.map_err(|e| e.to_string())?);
        if now > start.max(0) + 10 {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the share did not come back moving on the participant's page (frames {start} -> {now})"));
        }
    }
    wait_for(participant, "the screen on the stage beside the camera tile", SEES_SCREEN_JS, &[json!("t-rivera")]).await?;
    if mode.encrypted() {
        // Re-keyed by the leader's reconnect: the share opens under the new key too.
        let reference = sharers_screen(therapist).await?;
        screen_decrypted(participant, "Pat", &reference).await?;
        fx.shot(participant, "participant-sees-share-after-reconnect").await;
    }

    // One click in the people list lets the participant share.
    open_person_menu(therapist, "therapist", "p-pat").await?;
    let allow = r#"#people-list li[data-participant-id="p-pat"] button[data-action="screen"]"#;
    click(therapist, "therapist", allow).await?;
    wait_for(participant, "the participant's share button once allowed", VISIBLE_JS, &[json!("#screen-button")]).await?;

    // Stop: the screen leaves the participant's page.
    click(therapist, "therapist", "#screen-stop").await?;
    wait_for(participant, "the screen to disappear", "return document.querySelector('#screen-stage').hidden;", &[]).await?;
    wait_for(therapist, "the sharing bar to go", "return document.querySelector('#screen-sharing-bar').hidden;", &[]).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Content checks in an encrypted room.

/// A function of a `<video>`: the mean and standard deviation of each colour channel over a
/// patch of its picture left of the centre, pixels sampled without smoothing. In Chromium's
/// fake screen that patch is flat background (the moving shape is in the middle, the counter
/// and the markers at the edges); a decoder fed ciphertext paints blocks of anything there.
const PATCH_FN: &str = r#"(v) => {
  const c = document.createElement('canvas');
  c.width = 40; c.height = 30;
  const g = c.getContext('2d');
  g.imageSmoothingEnabled = false;
  g.drawImage(v, v.videoWidth * 0.08, v.videoHeight * 0.35, v.videoWidth * 0.22, v.videoHeight * 0.3, 0, 0, 40, 30);
  const d = g.getImageData(0, 0, 40, 30).data;
  const n = d.length / 4;
  const mean = [0, 0, 0], sq = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k += 1) { mean[k] += d[i + k]; sq[k] += d[i + k] * d[i + k]; }
  for (let k = 0; k < 3; k += 1) { mean[k] /= n; sq[k] = Math.sqrt(Math.max(0, sq[k] / n - mean[k] * mean[k])); }
  return { mean, sd: sq, width: v.videoWidth, height: v.videoHeight };
}"#;

/// The sharer's own captured screen (the sender track the page marked `detail`), as PATCH_FN
/// sees it in a video element of its own.
async fn sharers_screen(sharer: &Client) -> Result<Value, String> {
    let script = format!(
        r#"
const done = arguments[arguments.length - 1];
const patch = {PATCH_FN};
const sender = window.hearth.pc.getSenders().find((s) => s.track && s.track.kind === 'video' && s.track.contentHint === 'detail');
if (!sender) {{ done({{ error: 'no screen track on the sharer' }}); return; }}
const v = document.createElement('video');
v.muted = true;
v.srcObject = new MediaStream([sender.track]);
v.play().catch(() => {{}});
const started = Date.now();
const poll = () => {{
  if (v.videoWidth > 0 && v.readyState >= 2) {{ done(patch(v)); v.srcObject = null; return; }}
  if (Date.now() - started > 5000) {{ done({{ error: 'the captured screen shows no picture' }}); return; }}
  setTimeout(poll, 100);
}};
poll();
"#
    );
    let got = sharer.execute_async(&script, vec![]).await.map_err(|e| format!("the sharer's screen: {e}"))?;
    if got.get("error").is_some() || got["sd"].as_array().is_none_or(|sd| sd.iter().any(|x| x.as_f64().unwrap_or(99.0) > 12.0)) {
        return Err(format!("the sharer's own screen should be flat where it is sampled: {got}"));
    }
    Ok(got)
}

/// The stage's track, its mark, and the worker's decrypt counters for that receiver.
const STAGE_JS: &str = r#"
const done = arguments[arguments.length - 1];
const patch = PATCH_FN;
const stage = document.querySelector('#screen-stage');
const v = stage.querySelector('video');
const t = !stage.hidden && v.srcObject && v.srcObject.getVideoTracks()[0];
if (!t || v.videoWidth === 0) { done(null); return; }
const badge = stage.querySelector('.e2ee-badge');
Promise.all([window.hearth.e2ee.stats(), window.hearth.pc.getStats()]).then(([stats, rtc]) => {
  const row = stats.find((s) => s.op === 'decrypt' && s.track === t.id);
  let inbound = null;
  rtc.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.trackIdentifier === t.id) {
      inbound = { received: r.framesReceived, decoded: r.framesDecoded, keyframes: r.keyFramesDecoded, lost: r.packetsLost, plis: r.pliCount, freezes: r.freezeCount };
    }
  });
  done({
    mark: stage.dataset.e2ee || '', badge: badge && !badge.hidden ? badge.textContent : '', sharer: stage.dataset.participantId || '',
    ok: row ? row.ok : -1, passed: row ? row.passed : -1, dropped: row ? row.dropped : null, patch: patch(v), inbound,
  });
}).catch((e) => done({ error: String(e) }));
"#;

/// On `page`: the stage's frames are decrypted (its receiver's ok count rises, nothing played
/// in the clear), it carries no encryption mark, and its patch is flat and of the sharer's
/// colour in at least 8 of 10 samples in a row. (A fake screen of flat colour is sent at a few
/// frames a second, fewer on a loaded machine: a handful of new frames is the proof.)
async fn screen_decrypted(page: &Client, who: &str, reference: &Value) -> Result<(), String> {
    let script = STAGE_JS.replace("PATCH_FN", PATCH_FN);
    let want: Vec<f64> = reference["mean"].as_array().map(|m| m.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    let deadline = std::time::Instant::now() + MEDIA;
    let mut first_ok: Option<i64> = None;
    let mut recent: std::collections::VecDeque<(bool, Value)> = std::collections::VecDeque::new();
    loop {
        let got = page.execute_async(&script, vec![]).await.map_err(|e| format!("{who}: reading the stage: {e}"))?;
        if got.get("error").is_some() {
            return Err(format!("{who}: reading the stage: {got}"));
        }
        if !got.is_null() {
            if got["mark"] != "" || got["badge"] != "" {
                return Err(format!("{who}'s stage must show the screen without an encryption mark: {got}"));
            }
            let ok = got["ok"].as_i64().unwrap_or(-1);
            if got["passed"] != 0 || ok < 0 {
                return Err(format!("{who}: the stage's frames must come through the worker, decrypted, none in the clear: {got}"));
            }
            let flat = got["patch"]["sd"].as_array().is_some_and(|sd| sd.iter().all(|x| x.as_f64().is_some_and(|x| x <= 12.0)));
            let like = got["patch"]["mean"]
                .as_array()
                .is_some_and(|m| m.len() == 3 && m.iter().zip(&want).all(|(g, w)| g.as_f64().is_some_and(|g| (g - w).abs() <= 30.0)));
            recent.push_back((flat && like, got));
            if recent.len() > 10 {
                recent.pop_front();
            }
            let start = *first_ok.get_or_insert(ok);
            if recent.iter().filter(|(good, _)| *good).count() >= 8 && ok >= start + 5 {
                eprintln!("{who}'s stage: {}", recent.back().map(|(_, v)| v.to_string()).unwrap_or_default());
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            let last: Vec<&Value> = recent.iter().rev().take(3).map(|(_, v)| v).collect();
            return Err(format!(
                "{who}'s stage should show the sharer's screen ({reference}), decrypted (count from {first_ok:?}); last samples: {last:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Encrypted rooms: Eve (in the browser Sam had), whose page never announces a key (the
/// leader gives her none), is admitted and the therapist shares again: her stage names the sharer, says there is no key,
/// hides the picture and opens none of its frames; Pat's stage shows the screen meanwhile.
async fn keyless_sees_no_screen(fx: &BrowserTest, therapist: &Client, participant: &Client, eve: &Client) -> Result<(), String> {
    // A new document, not a hash change on Sam's page.
    eve.goto("about:blank").await.map_err(|e| format!("leaving Sam's page: {e}"))?;
    join_with_hooks(eve, "keyless member", &fx.link(ROOM, Role::Participant, ("p-eve", "Eve")), false, "{ announce: false }").await?;
    admit(therapist, "p-eve").await?;
    wait_for_within(eve, "the keyless member admitted", "return window.hearth.state === 'joined';", &[], MEDIA).await?;
    click(therapist, "therapist", "#screen-button").await?;
    wait_for_within(therapist, "the server's word that the share is forwarded", SHARING_CONFIRMED_JS, &[], MEDIA).await?;
    let reference = sharers_screen(therapist).await?;
    screen_decrypted(participant, "Pat", &reference).await?;
    wait_for_within(
        eve,
        "the stage marked 'no key' on the keyless member's page",
        "const s = document.querySelector('#screen-stage'); const b = s.querySelector('.e2ee-badge'); \
         return !s.hidden && s.dataset.participantId === 't-rivera' && s.dataset.e2ee === 'nokey' \
         && Boolean(b) && !b.hidden && b.textContent === 'Encrypted — no key yet' \
         && getComputedStyle(s.querySelector('video')).visibility === 'hidden';",
        &[],
        MEDIA,
    )
    .await?;
    let opened = eve
        .execute_async(
            "const done = arguments[arguments.length - 1]; const v = document.querySelector('#screen-stage video'); \
             const t = v.srcObject && v.srcObject.getVideoTracks()[0]; \
             window.hearth.e2ee.stats().then((s) => done(s.filter((r) => r.op === 'decrypt' && (r.kind === 'video' || (t && r.track === t.id))).map((r) => ({ track: r.track, ok: r.ok, passed: r.passed, seen: r.seen, dropped: r.dropped }))));",
            vec![],
        )
        .await
        .map_err(|e| format!("eve: reading the worker's counters: {e}"))?;
    let rows = opened.as_array().cloned().unwrap_or_default();
    if rows.iter().any(|r| r["ok"] != 0 || r["passed"] != 0) {
        return Err(format!("without a key no frame may open or pass on the keyless member's page: {opened}"));
    }
    Ok(())
}
