//! Screen sharing in real browsers, three people: the therapist shares (Chromium's fake screen
//! capture) and is told "sharing" only once the server confirms it forwards the share; both
//! participants' pages show the screen large, decoded, with the therapist's camera still in
//! its tile (with three people the therapist's `addTrack` reuses a transceiver the server
//! created, which the first share used to be lost on); when the therapist's connection drops, the share comes back by itself and moves
//! again on the participant's page; the participant has no share button until the therapist
//! allows it in one click; stopping removes the screen from the participant's page.
//!
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots and logs go to
//! `target/test-artifacts/screen/`.

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use hearth::auth::Role;
use serde_json::{json, Value};

const ROOM: &str = "browser-screen";
const TEST_DEADLINE: Duration = Duration::from_secs(120);
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
    let mut fx = BrowserTest::with_server("screen", TEST_DEADLINE, open_config()).await;
    // Headless Chromium grants getDisplayMedia and captures a fake screen with these flags.
    let sharing =
        PageSpec::desktop("therapist").arg("--auto-select-desktop-capture-source=Entire screen").arg("--auto-accept-this-tab-capture");
    let [therapist, participant, sam] = fx.open([sharing, PageSpec::desktop("participant"), PageSpec::desktop("sam")]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &participant, &sam)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, therapist: &Client, participant: &Client, sam: &Client) -> Result<(), String> {
    fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-rivera", "Dr. Rivera")).await?;
    fx.join(participant, "participant", ROOM, Role::Participant, ("p-pat", "Pat")).await?;
    fx.join(sam, "second participant", ROOM, Role::Participant, ("p-sam", "Sam")).await?;
    // Everyone sees everyone's camera first, so the therapist's connection carries the
    // server's transceivers for both participants before the share.
    for (page, who, other) in
        [(therapist, "therapist", "p-pat"), (therapist, "therapist", "p-sam"), (participant, "Pat", "p-sam"), (sam, "Sam", "p-pat")]
    {
        wait_for_within(page, &format!("{who} decoding {other}"), TILE_DECODED_JS, &[json!(other)], MEDIA).await?;
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
