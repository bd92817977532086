//! Simulcast from a real browser: the therapist's page publishes its camera as rid layers, and
//! what the participant's page receives follows the size of the therapist's tile on it.
//!
//! - The therapist's Chromium encodes three layers (180, 360 and 720 lines from the fake 720p
//!   camera).
//! - Pat's page is phone-sized: the therapist's tile is small, the server forwards a lower layer
//!   (`videoState` names it) and Pat decodes a picture shorter than the top layer's.
//! - Then a headless participant joins and publishes, which renegotiates the therapist's
//!   connection. Before `sfu::keep_rid` the webrtc crate lost the layers' SSRCs at this point
//!   and the therapist's video stopped for everyone; here Pat keeps decoding new frames.
//! - Pat's window grows to desktop size: the server switches to a taller layer, Pat decodes a
//!   taller picture with no stall; shrinking again switches back down.
//!
//! The same scenario runs in an end-to-end encrypted (`required`) room, where each layer
//! carries its own encrypted frames: the therapist's camera is a solid red 720p file (three
//! layers) and Pat's a blue one; the therapist's page admits Pat and Alex (a webrtc-crate
//! client without a key, whose frames the pages never play); both pages send with a key and
//! show no red lock, and Pat's tile of the therapist is red on the lower layer and again on the
//! taller one: frames of both layers were decrypted, not a decoder's guess at ciphertext.
//!
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots and logs go to
//! `target/test-artifacts/simulcast/` (`simulcast-e2ee/` for the encrypted room).

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::{Duration, Instant};

use crate::browser_e2ee::{admit_when_waiting, encryption_holds, see_colour, write_solid_y4m, write_solid_y4m_sized, Mode, BLUE, RED};
use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use serde_json::{json, Value};

const ROOM: &str = "browser-simulcast";
const THERAPIST: (&str, &str) = ("t-rivera", "Dr. Rivera");
const PAT: (&str, &str) = ("p-pat", "Pat");
const ALEX: (&str, &str) = ("p-alex", "Alex");
const MEDIA_DEADLINE: Duration = Duration::from_secs(20);
const TEST_DEADLINE: Duration = Duration::from_secs(120);
/// Admitting two people and the colour checks take longer.
const ENCRYPTED_DEADLINE: Duration = Duration::from_secs(240);

/// The publisher's side: every video layer it sends (rid, picture height, frames encoded).
const OUTBOUND_JS: &str = r#"
const done = arguments[arguments.length - 1];
window.hearth.pc.getStats().then((stats) => {
  const layers = [];
  stats.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') {
      layers.push({ rid: r.rid || '', height: r.frameHeight || 0, frames: r.framesEncoded || 0,
                    limited: r.qualityLimitationReason || '' });
    }
  });
  layers.sort((a, b) => a.height - b.height);
  done({ layers });
}).catch((e) => done({ error: String(e), layers: [] }));
"#;

/// The subscriber's side, for the tile of participant `arguments[0]`: the tile's height, the
/// decoded picture's, frames decoded so far, and the last `videoState` the server sent for it.
const INBOUND_JS: &str = r#"
const done = arguments[arguments.length - 1];
const h = window.hearth;
const tile = document.querySelector(`#tiles .tile.remote[data-participant-id="${arguments[0]}"]`);
const video = tile && tile.querySelector('video');
const track = video && video.srcObject && video.srcObject.getVideoTracks()[0];
const out = {
  state: h.state,
  tileHeight: tile ? Math.round(tile.getBoundingClientRect().height) : 0,
  videoHeight: video ? video.videoHeight : 0,
  layer: (window.__videoStates || []).filter((m) => !m.paused).map((m) => m.layer).pop() || null,
  frames: 0,
};
if (!track || !h.pc) { done(out); return; }
h.pc.getStats().then((stats) => {
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video' && r.trackIdentifier === track.id) {
      out.frames = r.framesDecoded || 0;
      out.packets = r.packetsReceived || 0;
      out.frameHeight = r.frameHeight || 0;
    }
  });
  done(out);
}).catch((e) => { out.error = String(e); done(out); });
"#;

/// Remembers every `videoState` the page is sent (the server says which layer it forwards).
const RECORD_VIDEO_STATES_JS: &str = r#"
window.__videoStates = [];
window.hearth.onMessage('videoState', (m) => window.__videoStates.push(m));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_publishes_simulcast_and_the_layer_follows_the_tile() {
    run(Mode::Open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layers_are_each_decrypted_in_an_encrypted_room() {
    run(Mode::Encrypted).await;
}

async fn run(mode: Mode) {
    let within = if mode.encrypted() { ENCRYPTED_DEADLINE } else { TEST_DEADLINE };
    let mut fx = BrowserTest::with_server(&mode.name("simulcast"), within, mode.config(open_config())).await;
    let specs = if mode.encrypted() {
        // A 720p camera, so the page publishes three layers; five frames, looped.
        let (red, blue) = (fx.artifacts().join("red-720p.y4m"), fx.artifacts().join("blue.y4m"));
        write_solid_y4m_sized(&red, (RED[0], RED[1], RED[2]), (1280, 720), 5);
        write_solid_y4m(&blue, (BLUE[0], BLUE[1], BLUE[2]));
        let camera = |y4m: &std::path::Path| format!("--use-file-for-fake-video-capture={}", y4m.display());
        [PageSpec::desktop("therapist").arg(camera(&red)), PageSpec::sized("pat", (360, 780)).arg(camera(&blue))]
    } else {
        [PageSpec::desktop("therapist").device_camera(), PageSpec::sized("pat", (360, 780)).device_camera()]
    };
    let [therapist, pat] = fx.open(specs).await;
    let outcome = fx.within(scenario(&fx, mode, &therapist, &pat)).await;
    fx.finish(outcome).await;
}

/// Encrypted rooms: Pat's tile of the therapist shows red, decrypted frames of the layer the
/// server forwards now.
async fn pat_sees_red(mode: Mode, pat: &Client, layer: &str) -> Result<(), String> {
    if !mode.encrypted() {
        return Ok(());
    }
    see_colour(pat, &format!("Pat, on the {layer} layer,"), THERAPIST.0, RED).await
}

async fn scenario(fx: &BrowserTest, mode: Mode, therapist: &Client, pat: &Client) -> Result<(), String> {
    let server = fx.server();
    let shot = |name: &str| fx.shot_path(name);
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1?}] {what}", t0.elapsed());

    let token = |role, (id, name): (&str, &str)| common::token_for(server, ROOM, role, name, id);
    fx.join(therapist, "therapist", ROOM, Role::Therapist, THERAPIST).await?;
    mode.join(fx, therapist, pat, "pat", ROOM, Role::Participant, PAT).await?;
    pat.execute(RECORD_VIDEO_STATES_JS, vec![]).await.map_err(|e| format!("pat: recording videoState: {e}"))?;
    let (tid, pid) = (json!(THERAPIST.0), json!(PAT.0));
    if mode.encrypted() {
        encryption_holds(therapist, "therapist").await?;
        encryption_holds(pat, "pat").await?;
    }

    // The therapist's browser sends three layers: the fake camera gives the 720p the page asks
    // for, and from 540 lines up the page publishes quarter, half and full size.
    let sent =
        poll(therapist, "the therapist's browser to send three layers", OUTBOUND_JS, &[], MEDIA_DEADLINE, |s| sending_layers(s).len() == 3)
            .await?;
    let heights: Vec<u64> = sending_layers(&sent).iter().map(|l| l["height"].as_u64().unwrap_or(0)).collect();
    // (Not exact ratios: a browser short of CPU scales its layers down.)
    if !(heights[0] > 0 && heights[0] < heights[1] && heights[1] < heights[2]) {
        return Err(format!("the layers should be three different sizes: {sent}"));
    }
    let top = heights[2];
    step(&format!("therapist sends three layers: {}", sent["layers"]));

    // Phone-sized: the tile is small, so Pat gets a layer shorter than the top one.
    let small = poll(pat, "Pat to decode the therapist on a lower layer", INBOUND_JS, std::slice::from_ref(&tid), MEDIA_DEADLINE, |p| {
        p["frames"].as_u64().unwrap_or(0) > 0 && height(p) > 0 && height(p) < top && p["layer"].is_string()
    })
    .await?;
    step(&format!("phone-sized tile: {small}"));
    pat_sees_red(mode, pat, "lower").await?;
    save_screenshot(pat, &shot("pat-phone")).await;

    // Someone new publishes: the therapist's connection is renegotiated. Waiting a few
    // seconds first lets the browser get (and, before `keep_rid`, act on) receiver reports.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let alex_join = tokio::spawn(MediaClient::join(
        MediaOptions::light(common::ws_url(server), ROOM, ALEX.1).with_token(token(Role::Participant, ALEX)),
    ));
    if mode.encrypted() {
        admit_when_waiting(therapist, ALEX.0).await?;
    }
    let alex = alex_join.await.map_err(|e| e.to_string())?.map_err(|e| format!("alex (headless) could not join: {e}"))?;
    // (The headless client's video is synthetic, not decodable: packets are the proof.)
    poll(
        therapist,
        "the therapist's page to receive Alex's video (its connection renegotiated)",
        INBOUND_JS,
        &[json!(ALEX.0)],
        MEDIA_DEADLINE,
        |p| p["packets"].as_u64().unwrap_or(0) > 0,
    )
    .await?;
    step("Alex joined; the therapist's connection was renegotiated");
    // Frames counted from here: before `keep_rid`, this is where the therapist's video froze.
    let renegotiated = poll(pat, "Pat's view of the therapist", INBOUND_JS, std::slice::from_ref(&tid), MEDIA_DEADLINE, |_| true).await?;
    let frames = renegotiated["frames"].as_u64().unwrap_or(0);
    let phone = poll(
        pat,
        "Pat to keep decoding the therapist after the renegotiation",
        INBOUND_JS,
        std::slice::from_ref(&tid),
        MEDIA_DEADLINE,
        |p| p["frames"].as_u64().unwrap_or(0) > frames + 40 && height(p) > 0 && height(p) < top,
    )
    .await?;
    step(&format!("still flowing on a lower layer: {phone}"));
    alex.leave().await;
    step("Alex left");

    // Desktop-sized: the tile grows, the server moves Pat to a taller layer.
    pat.set_window_size(1280, 900).await.map_err(|e| format!("pat: resizing: {e}"))?;
    let large = poll(pat, "Pat to decode the therapist on a taller layer", INBOUND_JS, std::slice::from_ref(&tid), MEDIA_DEADLINE, |p| {
        height(p) > height(&phone) && p["layer"].is_string() && p["layer"] != phone["layer"]
    })
    .await?;
    step(&format!("desktop-sized tile: {large}"));
    pat_sees_red(mode, pat, "taller").await?;
    save_screenshot(pat, &shot("pat-desktop")).await;
    // No stall after the switch.
    let frames = large["frames"].as_u64().unwrap_or(0);
    poll(pat, "Pat's frames to keep coming after the switch", INBOUND_JS, std::slice::from_ref(&tid), MEDIA_DEADLINE, |p| {
        p["frames"].as_u64().unwrap_or(0) > frames + 40
    })
    .await?;

    // And back down.
    pat.set_window_size(360, 780).await.map_err(|e| format!("pat: resizing back: {e}"))?;
    poll(pat, "Pat to be switched back down", INBOUND_JS, &[tid], MEDIA_DEADLINE, |p| height(p) < height(&large)).await?;
    step("back on a lower layer");

    // The therapist receives Pat's video too (Pat publishes simulcast as well).
    poll(therapist, "the therapist to decode Pat", INBOUND_JS, &[pid], MEDIA_DEADLINE, |p| p["frames"].as_u64().unwrap_or(0) > 0).await?;
    let metrics = common::http(server.addr(), "GET", "/metrics", &[], "").await.1;
    let switches = metric(&metrics, "hearth_simulcast_layer_switches_total");
    if switches < 2.0 {
        return Err(format!("/metrics should count at least two layer switches, says {switches}"));
    }
    Ok(())
}

/// Layers the publisher is actually encoding.
fn sending_layers(stats: &Value) -> Vec<Value> {
    stats["layers"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|l| l["rid"].as_str().is_some_and(|r| !r.is_empty()) && l["frames"].as_u64().unwrap_or(0) > 0)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn height(p: &Value) -> u64 {
    p["frameHeight"].as_u64().unwrap_or(0)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// Polls an asynchronous script until `ok` holds; the last value otherwise, in the error.
async fn poll(
    client: &Client,
    what: &str,
    script: &str,
    args: &[Value],
    wait: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + wait;
    loop {
        let value = client.execute_async(script, args.to_vec()).await.unwrap_or_else(|e| json!({ "error": e.to_string() }));
        if ok(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {wait:?} waiting for {what}; last: {value}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
