//! End to end through a real browser, with the waiting room on (the default): a therapist opens
//! their join link, a participant joins through the development form (which mints a token at
//! /dev/token) and lands in the waiting room, the therapist sees them in the waiting list and
//! admits them, and then each page must decode the other's video and receive the other's audio
//! (Chromium's fake capture devices supply the media). Finally the therapist hard-mutes the
//! participant from the people list, and the participant's page must say so and lock its
//! unmute button.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium` and
//! `chromium-driver`); `scripts/install-test-deps.sh` installs them. Without them this test
//! fails on purpose: a silently skipped browser test would hide a broken client.
//!
//! Artifacts (screenshots, chromedriver log) go to `target/test-artifacts/`. The pages' own
//! logs (`window.hearth.log`) are printed on failure, or always with `HEARTH_BROWSER_LOGS=1`.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use hearth::auth::Role;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ROOM: &str = "browser-test";
const THERAPIST: &str = "Dr. Rivera";
const PARTICIPANT: &str = "Pat";
/// How long both pages get to have media flowing both ways after the admission.
const MEDIA_DEADLINE: Duration = Duration::from_secs(30);
/// How long a state change (waiting, waiting list, mute) may take to show on a page.
const UI_DEADLINE: Duration = Duration::from_secs(10);
/// Upper bound for the whole test, so a hung browser or server cannot hang CI.
const TEST_DEADLINE: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Screenshots from this test start with this, so a new run can clear the last run's.
const SCREENSHOT_PREFIX: &str = "browser-";

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

/// True once the element `arguments[0]` exists and is rendered (not hidden, has a box).
const VISIBLE_JS: &str = r#"
const el = document.querySelector(arguments[0]);
return Boolean(el && el.offsetParent !== null);
"#;

/// The participant's page is in the waiting room: state, the calm message, the camera preview
/// and its own mic/camera toggles, and no room yet.
const WAITING_JS: &str = r#"
const h = window.hearth;
const visible = (s) => { const el = document.querySelector(s); return Boolean(el && el.offsetParent !== null); };
return h.state === 'waiting' && h.pc !== null
  && visible('#lobby-panel') && !visible('#room-panel')
  && /therapist will let you in shortly/i.test(document.querySelector('#lobby-text').textContent)
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

/// The participant's page shows the hard mute: the notice, and a pressed, disabled mic button.
const HARD_MUTED_JS: &str = r#"
const notice = document.querySelector('#mod-notice');
const mic = document.querySelector('#mic-button');
return Boolean(window.hearth.audioHardMuted && window.hearth.audioMuted
  && notice && !notice.hidden && /The therapist muted your microphone/.test(notice.textContent)
  && mic.disabled && mic.getAttribute('aria-pressed') === 'true');
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
    require_browser();
    if tokio::time::timeout(TEST_DEADLINE, run()).await.is_err() {
        panic!("browser test did not finish within {TEST_DEADLINE:?}");
    }
}

async fn run() {
    let artifacts = artifacts_dir();
    // Declared before the chromedriver guard so they are removed after the browsers are gone.
    let therapist_profile = TempDir::new("therapist");
    let participant_profile = TempDir::new("participant");

    let server = common::start_server().await;
    let health = common::health(&server).await;
    assert_eq!(health["status"], "ok", "fresh server is healthy: {health}");

    let driver = ChromeDriver::spawn(&artifacts.join("chromedriver.log")).await;
    let (therapist, participant) = tokio::join!(
        open_browser(&driver.url, therapist_profile.path()),
        open_browser(&driver.url, participant_profile.path())
    );

    let started = Instant::now();
    let outcome = scenario(&therapist, &participant, &server, &artifacts).await;
    eprintln!("scenario took {:.1?}", started.elapsed());

    for (who, client) in [("therapist", &therapist), ("participant", &participant)] {
        if outcome.is_err() {
            save_screenshot(client, &artifacts.join(format!("{SCREENSHOT_PREFIX}{who}-failure.png"))).await;
        }
        if outcome.is_err() || std::env::var_os("HEARTH_BROWSER_LOGS").is_some() {
            eprintln!("---- {who}: window.hearth.log ----\n{}", page_log(client).await);
        }
    }
    let _ = tokio::join!(therapist.close(), participant.close());
    server.shutdown().await;
    drop(driver);

    if let Err(message) = outcome {
        panic!("{message}");
    }
}

/// The whole scenario; Err says what was expected and what was last observed.
async fn scenario(
    therapist: &Client,
    participant: &Client,
    server: &hearth::server::RunningServer,
    artifacts: &Path,
) -> Result<(), String> {
    let base = format!("http://{}", server.addr());
    let shot = |name: &str| artifacts.join(format!("{SCREENSHOT_PREFIX}{name}.png"));

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
    wait_for(
        therapist,
        "the participant in the therapist's waiting list",
        WAITING_ROW_JS,
        &[json!(participant_id), json!(PARTICIPANT)],
    )
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
    let mute = format!("#people-list li[data-participant-id=\"{participant_id}\"] button[data-action=\"hard-mute\"]");
    click(therapist, "therapist", &mute).await?;
    wait_for(participant, "the participant's page to show the hard mute", HARD_MUTED_JS, &[]).await?;
    wait_for(therapist, "the therapist's list to show the mute", THERAPIST_SEES_MUTE_JS, &[json!(participant_id)]).await?;
    save_screenshot(participant, &shot("participant-muted")).await;

    // The participant raises a hand; the therapist sees it and puts them in the spotlight.
    click(participant, "participant", "#hand-button").await?;
    wait_for(
        therapist,
        "the raised hand on the therapist's page",
        THERAPIST_SEES_HAND_JS,
        &[json!(participant_id), json!(PARTICIPANT)],
    )
    .await?;
    let spotlight = format!("#people-list li[data-participant-id=\"{participant_id}\"] button[data-action=\"spotlight\"]");
    click(therapist, "therapist", &spotlight).await?;
    let on_therapist = format!("{PARTICIPANT} is in the spotlight");
    wait_for(therapist, "the spotlight on the therapist's page", SPOTLIGHT_JS, &[json!(participant_id), json!(on_therapist)])
        .await?;
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
        client.set_window_size(360, 780).await.map_err(|e| format!("{who}: resizing to phone size: {e}"))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let overflow = client
            .execute("return document.documentElement.scrollWidth > window.innerWidth;", vec![])
            .await
            .map_err(|e| format!("{who}: measuring the page: {e}"))?;
        save_screenshot(client, &shot(&format!("{who}-phone"))).await;
        if overflow != json!(false) {
            return Err(format!("the {who}'s page scrolls sideways at 360 px"));
        }
    }
    Ok(())
}

async fn fill(client: &Client, css: &str, text: &str) -> Result<(), String> {
    let field = client.find(Locator::Css(css)).await.map_err(|e| format!("finding {css}: {e}"))?;
    field.clear().await.map_err(|e| format!("clearing {css}: {e}"))?;
    field.send_keys(text).await.map_err(|e| format!("typing into {css}: {e}"))
}

async fn text_of(client: &Client, css: &str) -> Result<String, String> {
    let element = client.find(Locator::Css(css)).await.map_err(|e| format!("finding {css}: {e}"))?;
    element.text().await.map_err(|e| format!("reading {css}: {e}"))
}

async fn click(client: &Client, who: &str, css: &str) -> Result<(), String> {
    let element = client.find(Locator::Css(css)).await.map_err(|e| format!("{who}: finding {css}: {e}"))?;
    element.click().await.map_err(|e| format!("{who}: clicking {css}: {e}"))
}

async fn probe(client: &Client) -> Value {
    client
        .execute_async(MEDIA_PROBE_JS, vec![])
        .await
        .unwrap_or_else(|e| json!({ "error": format!("probe script failed: {e}") }))
}

fn media_flowing(stats: &Value, other: &str) -> bool {
    stats["video"].as_u64().unwrap_or(0) > 0
        && stats["audio"].as_u64().unwrap_or(0) > 0
        && remote_tile(stats, other).is_some_and(|t| t["videoWidth"].as_u64().unwrap_or(0) > 0)
}

fn remote_tile<'a>(stats: &'a Value, name: &str) -> Option<&'a Value> {
    stats["tiles"].as_array()?.iter().find(|t| t["name"] == name)
}

/// Polls a synchronous script (given `args`) until it returns true.
async fn wait_for(client: &Client, what: &str, script: &str, args: &[Value]) -> Result<(), String> {
    let deadline = Instant::now() + UI_DEADLINE;
    loop {
        let result = client.execute(script, args.to_vec()).await;
        if matches!(result, Ok(Value::Bool(true))) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let last = result.map_or_else(|e| e.to_string(), |v| v.to_string());
            return Err(format!("timed out after {UI_DEADLINE:?} waiting for {what} (last result: {last})"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn page_log(client: &Client) -> String {
    match client.execute("return (window.hearth && window.hearth.log || []).join('\\n');", vec![]).await {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("(could not read the log: {e})"),
    }
}

async fn save_screenshot(client: &Client, path: &Path) {
    match client.screenshot().await {
        Ok(png) => match fs::write(path, png) {
            Ok(()) => eprintln!("screenshot: {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        },
        Err(e) => eprintln!("could not take screenshot {}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// Browser plumbing.

fn require_browser() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "the browser test needs {} but it is missing; run scripts/install-test-deps.sh \
         (installs the Debian packages chromium and chromium-driver)",
        missing.join(" and ")
    );
}

async fn open_browser(webdriver: &str, profile: &Path) -> Client {
    // rustls has both the ring and aws-lc-rs providers compiled in (webrtc and hyper-rustls
    // each enable one), so it cannot pick a default itself; fantoccini's TLS setup would panic.
    // chromedriver is plain HTTP anyway; any provider will do.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = vec![
        "--use-fake-device-for-media-stream".to_string(),
        "--use-fake-ui-for-media-stream".to_string(),
        "--headless=new".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=1280,800".to_string(),
    ];
    let mut caps = Capabilities::new();
    caps.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
    let client = ClientBuilder::rustls()
        .expect("TLS setup for the webdriver client")
        .capabilities(caps)
        .connect(webdriver)
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"));
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(20)),
            Some(Duration::ZERO),
        ))
        .await
        .expect("set webdriver timeouts");
    client
}

/// A chromedriver process on a free port, killed (with the browsers it started) on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn spawn(log: &Path) -> Self {
        let port = free_port();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so dropping the guard also ends the Chromium processes it
        // launched, even when a failure kept us from closing the sessions.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}; run scripts/install-test-deps.sh"));
        let mut driver = ChromeDriver { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await.is_ok() {
                return driver;
            }
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited at start ({status}); see {}", log.display());
            }
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0) above): only what we started.
        let group = format!("-{}", self.child.id());
        let killed_group = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !killed_group {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A fresh browser profile directory (the `tempfile` crate is not a dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hearth-browser-{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    // Bind to port 0, read the port, release it: racy in theory, fine for a local test.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    // Screenshots from an earlier run would be mistaken for this run's.
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(SCREENSHOT_PREFIX) && name.ends_with(".png") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    dir
}
