//! End to end through a real browser, with the waiting room on (the default): a therapist opens
//! their join link, a participant joins through the development form (which mints a token at
//! /dev/token) and lands in the waiting room, the therapist sees them in the waiting list and
//! admits them, and then each page must decode the other's video and receive the other's audio
//! (Chromium's fake capture devices supply the media). Finally the therapist hard-mutes the
//! participant from the people list, and the participant's page must say so and lock its
//! unmute button.
//!
//! Written with the browser fixture (`tests/common/fixture.rs`, which says what a browser test
//! needs installed); screenshots, the chromedriver log and the pages' own logs go to
//! `target/test-artifacts/browser/`.

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::{Duration, Instant};

use hearth::auth::Role;
use serde_json::{json, Value};

const ROOM: &str = "browser-test";
const THERAPIST: &str = "Dr. Rivera";
const PARTICIPANT: &str = "Pat";
/// How long both pages get to have media flowing both ways after the admission.
const MEDIA_DEADLINE: Duration = Duration::from_secs(30);
/// Upper bound for the whole test, so a hung browser or server cannot hang CI.
const TEST_DEADLINE: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Reads inbound RTP stats and what the page shows; resolves with one JSON object.
const MEDIA_PROBE_JS: &str = r#"
const done = arguments[arguments.length - 1];
const h = window.hearth;
const tiles = Array.from(document.querySelectorAll('#tiles .tile.remote')).map((t) => ({
  name: t.querySelector('.tile-name').textContent.trim(),
  videoWidth: t.querySelector('video').videoWidth,
}));
if (!h || !h.pc) {
  done({ state: h ? h.state : 'no window.hearth', video: 0, audio: 0, tiles });
  return;
}
h.pc.getStats().then((stats) => {
  let video = 0;
  let audio = 0;
  stats.forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    if (r.kind === 'video') video = Math.max(video, r.framesDecoded || 0);
    if (r.kind === 'audio') audio = Math.max(audio, r.packetsReceived || 0);
  });
  done({
    state: h.state,
    connection: h.pc.connectionState,
    signaling: h.pc.signalingState,
    video,
    audio,
    tiles,
  });
}).catch((e) => done({ state: h.state, error: String(e), video: 0, audio: 0, tiles }));
"#;

/// The participant's page is in the waiting room: state, the calm message, the camera preview
/// and its own mic/camera toggles, and no room yet (nor a peer connection: it starts on admission).
const WAITING_JS: &str = r#"
const h = window.hearth;
const visible = (s) => { const el = document.querySelector(s); return Boolean(el && el.offsetParent !== null); };
return h.state === 'waiting' && !h.pc
  && visible('#lobby-panel') && !visible('#room-panel')
  && /will let you in shortly|you will be let in when they arrive/i.test(document.querySelector('#lobby-therapist').textContent)
  && visible('#preview-video') && document.querySelector('#preview-video').videoWidth > 0
  && visible('#mic-button') && visible('#cam-button');
"#;

/// The therapist's waiting list has a row for `arguments[0]` (participant id) named `arguments[1]`.
const WAITING_ROW_JS: &str = r#"
const row = document.querySelector(`#waiting-list li[data-participant-id="${arguments[0]}"]`);
return Boolean(row && row.offsetParent !== null
  && row.querySelector('.person-name').textContent.trim() === arguments[1]
  && document.querySelector('#waiting-count').textContent.trim() === '1');
"#;

/// The participant's page shows the hard mute: the notice, and a disabled mic button that says why.
const HARD_MUTED_JS: &str = r#"
const notice = document.querySelector('#mod-notice');
const mic = document.querySelector('#mic-button');
return Boolean(window.hearth.audioHardMuted && window.hearth.audioMuted
  && notice && !notice.hidden && /The therapist muted your microphone/.test(notice.textContent)
  && mic.disabled && mic.dataset.off === 'true' && mic.querySelector('.label').textContent === 'Muted by therapist');
"#;

/// The therapist's people list shows `arguments[0]` as muted by the therapist, with the button
/// now offering to allow unmuting.
const THERAPIST_SEES_MUTE_JS: &str = r#"
const row = document.querySelector(`#people-list li[data-participant-id="${arguments[0]}"]`);
if (!row) return false;
const mic = row.querySelector('.mic-inline');
const button = row.querySelector('button[data-action="hard-mute"] .label');
return !mic.hidden && mic.textContent === 'Muted by therapist' && button.textContent === 'Allow unmute';
"#;

/// The therapist sees `arguments[0]`'s raised hand at a glance: the summary line names them and
/// their row offers "Lower hand".
const THERAPIST_SEES_HAND_JS: &str = r#"
const summary = document.querySelector('#hands-summary');
const row = document.querySelector(`#people-list li[data-participant-id="${arguments[0]}"]`);
const lower = row && row.querySelector('button[data-action="lower-hand"]');
return Boolean(summary && !summary.hidden && summary.textContent.includes(arguments[1])
  && lower && !lower.hidden && row.classList.contains('hand-raised'));
"#;

/// Both sides agree `arguments[0]` is in the spotlight: their tile is pinned first and the room
/// header says so (`arguments[1]` is the expected chip text).
const SPOTLIGHT_JS: &str = r#"
const tile = document.querySelector(`#tiles .tile[data-participant-id="${arguments[0]}"]`);
const chip = document.querySelector('#spotlight-chip');
return Boolean(tile && tile.classList.contains('spotlit')
  && document.querySelector('#tiles').classList.contains('spotlight-mode')
  && chip && !chip.hidden && chip.textContent === arguments[1]);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn therapist_admits_a_waiting_participant_then_mutes_them() {
    let mut fx = BrowserTest::with_server("browser", TEST_DEADLINE, common::test_config()).await;
    let health = common::health(fx.server()).await;
    assert_eq!(health["status"], "ok", "fresh server is healthy: {health}");
    // The participant's microphone plays a steady tone: clearly speaking (active speaker).
    let voice = fx.artifacts().join("voice.wav");
    write_tone_wav(&voice, 10, 0.3);
    let speaking = PageSpec::desktop("participant").arg(format!("--use-file-for-fake-audio-capture={}", voice.display()));
    let [therapist, participant] = fx.open([PageSpec::desktop("therapist"), speaking]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &participant)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, therapist: &Client, participant: &Client) -> Result<(), String> {
    let server = fx.server();
    let base = fx.base_url();
    let shot = |name: &str| fx.shot_path(name);

    // The therapist opens their personal join link: the page greets them, one click joins.
    let token = common::token(server, ROOM, Role::Therapist, THERAPIST);
    therapist.goto(&format!("{base}/#token={token}")).await.map_err(|e| format!("therapist: opening the link: {e}"))?;
    wait_for(therapist, "the therapist's link page", VISIBLE_JS, &[json!("#link-join-button")]).await?;
    let greeting = text_of(therapist, "#link-heading").await?;
    if !greeting.contains(THERAPIST) {
        return Err(format!("the link page should greet {THERAPIST:?} from the token, shows {greeting:?}"));
    }
    click(therapist, "therapist", "#link-join-button").await?;
    wait_for(therapist, "the therapist to be in the room", "return window.hearth.state === 'joined';", &[]).await?;

    // The participant has no link: the development form mints a token at /dev/token.
    participant.goto(&format!("{base}/")).await.map_err(|e| format!("participant: opening the page: {e}"))?;
    wait_for(participant, "the development join form", VISIBLE_JS, &[json!("#join-form")]).await?;
    let banner = text_of(participant, ".dev-banner").await?;
    if !banner.contains("Development mode") {
        return Err(format!("the join form should be marked as development mode, banner says {banner:?}"));
    }
    fill(participant, "#room-input", ROOM).await?;
    fill(participant, "#name-input", PARTICIPANT).await?;
    participant
        .find(Locator::Css("#role-input"))
        .await
        .map_err(|e| format!("participant: finding the role select: {e}"))?
        .select_by_value("participant")
        .await
        .map_err(|e| format!("participant: choosing the role: {e}"))?;
    click(participant, "participant", "#join-button").await?;

    // Waiting room: a calm waiting screen on one side, a named entry on the other.
    wait_for(participant, "the participant's waiting screen (with camera preview)", WAITING_JS, &[]).await?;
    let participant_id = match participant.execute("return window.hearth.participantId;", vec![]).await {
        Ok(Value::String(id)) => id,
        other => return Err(format!("participant page has no participant id: {other:?}")),
    };
    wait_for(therapist, "the participant in the therapist's waiting list", WAITING_ROW_JS, &[json!(participant_id), json!(PARTICIPANT)])
        .await?;
    save_screenshot(therapist, &shot("therapist-waiting-list")).await;
    save_screenshot(participant, &shot("participant-waiting")).await;

    // Admit; then media both ways: decoded video frames, received audio packets, a visible tile.
    let admit = format!("#waiting-list li[data-participant-id=\"{participant_id}\"] button[data-action=\"admit\"]");
    click(therapist, "therapist", &admit).await?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let (mut t, mut p);
    loop {
        (t, p) = tokio::join!(probe(therapist), probe(participant));
        if media_flowing(&t, PARTICIPANT) && media_flowing(&p, THERAPIST) {
            break;
        }
        if started.elapsed() > MEDIA_DEADLINE {
            return Err(format!(
                "media did not flow both ways within {MEDIA_DEADLINE:?} of admission\n  therapist's page: {t}\n  participant's page: {p}"
            ));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("waiting for media ({:.0?}): therapist={t} participant={p}", started.elapsed());
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    eprintln!("media flowing {:.1?} after admission: therapist={t} participant={p}", started.elapsed());
    save_screenshot(therapist, &shot("therapist-admitted")).await;
    save_screenshot(participant, &shot("participant-admitted")).await;

    // Active speaker: the participant's browser puts its microphone level in the audio-level
    // header extension; the server picks the participant, and both pages mark the
    // participant's tile (ring and "Speaking" badge), the participant's own tile included.
    let speaking = r#"
        const t = document.querySelector(`#tiles .tile.speaking[data-participant-id="${arguments[0]}"]`);
        return Boolean(t && !t.querySelector('.badge.speaking').hidden)
            && document.querySelectorAll('#tiles .tile.speaking').length === 1;"#;
    wait_for(therapist, "the participant's tile marked speaking on the therapist's page", speaking, &[json!(participant_id)]).await?;
    wait_for(participant, "the participant's own tile marked speaking", speaking, &[json!(participant_id)]).await?;

    for (who, stats) in [("therapist", &t), ("participant", &p)] {
        if stats["state"] != "joined" {
            return Err(format!("the {who}'s page is not in state 'joined': {stats}"));
        }
    }
    let waiting_empty = therapist
        .execute("return document.querySelectorAll('#waiting-list li').length === 0;", vec![])
        .await
        .map_err(|e| format!("therapist: reading the waiting list: {e}"))?;
    if waiting_empty != json!(true) {
        return Err("the therapist's waiting list should be empty after admitting".into());
    }
    let health = common::health(server).await;
    if health["rooms"] != 1 || health["participants"] != 2 {
        return Err(format!("/healthz should count 1 room with 2 participants: {health}"));
    }

    // The therapist hard-mutes the participant's microphone from the people list.
    open_person_menu(therapist, "therapist", &participant_id).await?;
    let mute = format!("#people-list li[data-participant-id=\"{participant_id}\"] button[data-action=\"hard-mute\"]");
    click(therapist, "therapist", &mute).await?;
    wait_for(participant, "the participant's page to show the hard mute", HARD_MUTED_JS, &[]).await?;
    wait_for(therapist, "the therapist's list to show the mute", THERAPIST_SEES_MUTE_JS, &[json!(participant_id)]).await?;
    save_screenshot(participant, &shot("participant-muted")).await;

    // The participant raises a hand; the therapist sees it and puts them in the spotlight.
    click(participant, "participant", "#hand-button").await?;
    wait_for(therapist, "the raised hand on the therapist's page", THERAPIST_SEES_HAND_JS, &[json!(participant_id), json!(PARTICIPANT)])
        .await?;
    open_person_menu(therapist, "therapist", &participant_id).await?;
    let spotlight = format!("#people-list li[data-participant-id=\"{participant_id}\"] button[data-action=\"spotlight\"]");
    click(therapist, "therapist", &spotlight).await?;
    let on_therapist = format!("{PARTICIPANT} is in the spotlight");
    wait_for(therapist, "the spotlight on the therapist's page", SPOTLIGHT_JS, &[json!(participant_id), json!(on_therapist)]).await?;
    wait_for(
        participant,
        "the spotlight on the participant's page",
        SPOTLIGHT_JS,
        &[json!(participant_id), json!("You are in the spotlight")],
    )
    .await?;
    save_screenshot(therapist, &shot("therapist-hand-spotlight")).await;

    // Phones: the same pages at 360 px wide.
    for (who, client) in [("therapist", therapist), ("participant", participant)] {
        fx.fits_narrow_phone(client, who).await?;
    }
    Ok(())
}

async fn probe(client: &Client) -> Value {
    client.execute_async(MEDIA_PROBE_JS, vec![]).await.unwrap_or_else(|e| json!({ "error": format!("probe script failed: {e}") }))
}

fn media_flowing(stats: &Value, other: &str) -> bool {
    stats["video"].as_u64().unwrap_or(0) > 0
        && stats["audio"].as_u64().unwrap_or(0) > 0
        && remote_tile(stats, other).is_some_and(|t| t["videoWidth"].as_u64().unwrap_or(0) > 0)
}

fn remote_tile<'a>(stats: &'a Value, name: &str) -> Option<&'a Value> {
    stats["tiles"].as_array()?.iter().find(|t| t["name"] == name)
}

// ---------------------------------------------------------------------------------------------
// Browser plumbing.
