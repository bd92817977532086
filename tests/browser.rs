//! End to end through a real browser: two headless Chromium pages join the same room via the
//! web client served by the real server, and each must decode the other's video and receive
//! the other's audio (Chromium's fake capture devices supply the media). Then one mutes and
//! leaves, and the other page must show it.
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

use fantoccini::error::CmdError;
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ROOM: &str = "browser-test";
/// How long both pages get to have media flowing both ways after clicking "Join".
const MEDIA_DEADLINE: Duration = Duration::from_secs(30);
/// How long a roster change (mute, leave) may take to show on the other page.
const UI_DEADLINE: Duration = Duration::from_secs(10);
/// Upper bound for the whole test, so a hung browser or server cannot hang CI.
const TEST_DEADLINE: Duration = Duration::from_secs(120);
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

/// True once the remote tile named `arguments[0]` shows its "Mic off" badge.
const TILE_MIC_OFF_JS: &str = r#"
const tile = Array.from(document.querySelectorAll('#tiles .tile.remote'))
  .find((t) => t.querySelector('.tile-name').textContent.trim() === arguments[0]);
return Boolean(tile && !tile.querySelector('.mic-off').hidden);
"#;

/// True once no remote tile is named `arguments[0]`.
const TILE_GONE_JS: &str = r#"
return !Array.from(document.querySelectorAll('#tiles .tile.remote'))
  .some((t) => t.querySelector('.tile-name').textContent.trim() === arguments[0]);
"#;

/// True once the page has left: state 'left', join form shown, peer connection gone.
const LEFT_JS: &str = r#"
return window.hearth.state === 'left' && window.hearth.pc === null
  && !document.querySelector('#join-view').hidden && document.querySelector('#room-view').hidden;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_see_and_hear_each_other() {
    require_browser();
    if tokio::time::timeout(TEST_DEADLINE, run()).await.is_err() {
        panic!("browser test did not finish within {TEST_DEADLINE:?}");
    }
}

async fn run() {
    let artifacts = artifacts_dir();
    // Declared before the chromedriver guard so they are removed after the browsers are gone.
    let alice_profile = TempDir::new("alice");
    let bob_profile = TempDir::new("bob");

    let server = common::start_server().await;
    let addr = server.addr();
    let health = common::health(&server).await;
    assert_eq!(health["status"], "ok", "fresh server is healthy: {health}");

    let driver = ChromeDriver::spawn(&artifacts.join("chromedriver.log")).await;
    let (alice, bob) = tokio::join!(
        open_browser(&driver.url, alice_profile.path()),
        open_browser(&driver.url, bob_profile.path())
    );

    let page = format!("http://{addr}/?room={ROOM}");
    let outcome = check_two_pages(&alice, &bob, &page, &server, &artifacts).await;

    for (who, client) in [("alice", &alice), ("bob", &bob)] {
        if outcome.is_err() {
            save_screenshot(client, &artifacts.join(format!("browser-two-pages-{who}-failure.png"))).await;
        }
        if outcome.is_err() || std::env::var_os("HEARTH_BROWSER_LOGS").is_some() {
            eprintln!("---- {who}: window.hearth.log ----\n{}", page_log(client).await);
        }
    }
    let _ = tokio::join!(alice.close(), bob.close());
    server.shutdown().await;
    drop(driver);

    if let Err(message) = outcome {
        panic!("{message}");
    }
}

/// The whole scenario; Err says what was expected and what was last observed.
async fn check_two_pages(
    alice: &Client,
    bob: &Client,
    page: &str,
    server: &hearth::server::RunningServer,
    artifacts: &Path,
) -> Result<(), String> {
    join(alice, page, "Alice").await?;
    join(bob, page, "Bob").await?;

    // Media both ways: decoded video frames, received audio packets, a visible remote video.
    let started = Instant::now();
    let mut last_report = Instant::now();
    let (mut a, mut b);
    loop {
        (a, b) = tokio::join!(probe(alice), probe(bob));
        if media_flowing(&a, "Bob") && media_flowing(&b, "Alice") {
            break;
        }
        if started.elapsed() > MEDIA_DEADLINE {
            return Err(format!(
                "media did not flow both ways within {MEDIA_DEADLINE:?}\n  Alice's page: {a}\n  Bob's page: {b}"
            ));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("waiting for media ({:.0?}): alice={a} bob={b}", started.elapsed());
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    eprintln!("media flowing after {:.1?}: alice={a} bob={b}", started.elapsed());
    for (who, client) in [("alice", alice), ("bob", bob)] {
        save_screenshot(client, &artifacts.join(format!("browser-two-pages-{who}.png"))).await;
    }

    // Each page labels a tile with the other person's name, and that tile renders video.
    for (who, stats, other) in [("Alice", &a, "Bob"), ("Bob", &b, "Alice")] {
        let tile = remote_tile(stats, other)
            .ok_or_else(|| format!("{who}'s page has no tile labelled {other:?}: {stats}"))?;
        if tile["videoWidth"].as_u64().unwrap_or(0) == 0 {
            return Err(format!("{who}'s tile for {other} shows no video: {stats}"));
        }
        if stats["state"] != "joined" {
            return Err(format!("{who}'s page is not in state 'joined': {stats}"));
        }
    }
    let health = common::health(server).await;
    if health["rooms"] != 1 || health["participants"] != 2 {
        return Err(format!("/healthz should count 1 room with 2 participants: {health}"));
    }

    // Bob mutes his microphone: his button says so and Alice sees it on his tile.
    click(bob, "Bob", "#mic-button").await?;
    let pressed = bob
        .execute("return document.querySelector('#mic-button').getAttribute('aria-pressed');", vec![])
        .await
        .map_err(|e| format!("Bob: reading aria-pressed: {e}"))?;
    if pressed != json!("true") {
        return Err(format!("Bob's mic button should have aria-pressed=true after muting, got {pressed}"));
    }
    wait_for(alice, "Bob's tile to show 'Mic off' on Alice's page", TILE_MIC_OFF_JS, "Bob").await?;
    save_screenshot(alice, &artifacts.join("browser-two-pages-alice-sees-bob-muted.png")).await;

    // Bob leaves: he is back at the join form and his tile disappears from Alice's page.
    click(bob, "Bob", "#leave-button").await?;
    wait_for(bob, "Bob's page to return to the join form", LEFT_JS, "").await?;
    wait_for(alice, "Bob's tile to go from Alice's page", TILE_GONE_JS, "Bob").await?;
    let health = common::health(server).await;
    if health["participants"] != 1 {
        return Err(format!("/healthz should count 1 participant after Bob left: {health}"));
    }
    Ok(())
}

async fn join(client: &Client, page: &str, name: &str) -> Result<(), String> {
    let err = |what: &str, e: CmdError| format!("{name}: {what}: {e}");
    client.goto(page).await.map_err(|e| err("opening the page", e))?;
    let room = client.find(Locator::Css("#room-input")).await.map_err(|e| err("finding the room field", e))?;
    let prefilled = room.prop("value").await.map_err(|e| err("reading the room field", e))?;
    if prefilled.as_deref() != Some(ROOM) {
        return Err(format!("{name}: room field should be prefilled from ?room=, got {prefilled:?}"));
    }
    client
        .find(Locator::Css("#name-input"))
        .await
        .map_err(|e| err("finding the name field", e))?
        .send_keys(name)
        .await
        .map_err(|e| err("typing the name", e))?;
    click(client, name, "#join-button").await
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

/// Polls a synchronous script (given `arg` as `arguments[0]`) until it returns true.
async fn wait_for(client: &Client, what: &str, script: &str, arg: &str) -> Result<(), String> {
    let deadline = Instant::now() + UI_DEADLINE;
    loop {
        let result = client.execute(script, vec![json!(arg)]).await;
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
            if name.starts_with("browser-two-pages-") && name.ends_with(".png") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    dir
}
