//! The headless-browser plumbing under the browser fixture (`fixture.rs`, which tests use): a
//! chromedriver of our own on a free port, Debian's Chromium with fake camera and microphone,
//! throw-away profiles, and small page helpers (wait for a script to say true, click, type,
//! press a key, screenshots, the page's own log).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium` and
//! `chromium-driver`); `scripts/install-test-deps.sh` installs them. Without them a browser
//! test fails on purpose: a silently skipped browser test would hide a broken client.
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use fantoccini::key::Key;
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
pub use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a state change may take to show on a page.
pub const UI_DEADLINE: Duration = Duration::from_secs(10);

/// True once the element `arguments[0]` exists and is rendered (not hidden, has a box).
pub const VISIBLE_JS: &str = r#"
const el = document.querySelector(arguments[0]);
return Boolean(el && el.offsetParent !== null);
"#;

pub fn require_browser() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "the browser test needs {} but it is missing; run scripts/install-test-deps.sh \
         (installs the Debian packages chromium and chromium-driver)",
        missing.join(" and ")
    );
}

/// How a browser window is opened.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    pub width: u32,
    pub height: u32,
    pub reduced_motion: bool,
    /// More Chromium flags (screen capture, ...).
    pub extra_args: Vec<String>,
    /// Emulate a phone's screen of exactly `width`×`height` CSS pixels (a headless window is
    /// never narrower than 500 px, so a plain window size cannot make a 390 px viewport).
    pub phone: bool,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self { width: 1280, height: 900, reduced_motion: false, extra_args: Vec::new(), phone: false }
    }
}

impl BrowserOptions {
    pub fn size(width: u32, height: u32) -> Self {
        Self { width, height, ..Self::default() }
    }

    /// A phone's viewport of exactly `width`×`height` (see [`BrowserOptions::phone`]).
    pub fn phone(width: u32, height: u32) -> Self {
        Self { width, height, phone: true, ..Self::default() }
    }
}

/// A headless Chromium with fake media devices, opened through `webdriver` with `opts`.
pub async fn open_browser_with(webdriver: &str, profile: &Path, opts: &BrowserOptions) -> Client {
    // Both rustls providers are compiled in (webrtc and hyper-rustls each enable one), so it
    // cannot pick a default itself and fantoccini's TLS setup would panic; chromedriver is
    // plain HTTP anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = vec![
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
        format!("--window-size={},{}", opts.width, opts.height),
    ];
    if opts.reduced_motion {
        args.push("--force-prefers-reduced-motion".to_string());
    }
    args.extend(opts.extra_args.iter().cloned());
    let mut caps = Capabilities::new();
    let mut chrome = json!({ "binary": CHROMIUM, "args": args });
    if opts.phone {
        chrome["mobileEmulation"] = json!({ "deviceMetrics": { "width": opts.width, "height": opts.height, "pixelRatio": 1.0 } });
    }
    caps.insert("goog:chromeOptions".into(), chrome);
    let client = ClientBuilder::rustls()
        .expect("TLS setup for the webdriver client")
        .capabilities(caps)
        .connect(webdriver)
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"));
    client
        .update_timeouts(TimeoutConfiguration::new(Some(Duration::from_secs(10)), Some(Duration::from_secs(20)), Some(Duration::ZERO)))
        .await
        .expect("set webdriver timeouts");
    client
}

/// A chromedriver process on a free port, killed (with the browsers it started) on drop.
pub struct ChromeDriver {
    child: Child,
    pub url: String,
}

impl ChromeDriver {
    pub async fn spawn(log: &Path) -> Self {
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
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}; run scripts/install-test-deps.sh"));
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
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hearth-browser-{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    // Bind to port 0, read the port, release it: racy in theory, fine for a local test.
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free local port").port()
}

/// The page's own log (`window.hearth.log`), for failure reports.
pub async fn page_log(client: &Client) -> String {
    match client.execute("return (window.hearth && window.hearth.log || []).join('\\n');", vec![]).await {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("(could not read the log: {e})"),
    }
}

pub async fn save_screenshot(client: &Client, path: &Path) {
    match client.screenshot().await {
        Ok(png) => match fs::write(path, png) {
            Ok(()) => eprintln!("screenshot: {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        },
        Err(e) => eprintln!("could not take screenshot {}: {e}", path.display()),
    }
}

/// A screenshot of one element (scrolled into view first).
pub async fn save_screenshot_of(client: &Client, css: &str, path: &Path) {
    let _ = client.execute("document.querySelector(arguments[0]).scrollIntoView({block: 'start'});", vec![json!(css)]).await;
    let png = match client.find(Locator::Css(css)).await {
        Ok(element) => element.screenshot().await,
        Err(e) => {
            eprintln!("could not find {css} for {}: {e}", path.display());
            return;
        }
    };
    match png {
        Ok(png) => match fs::write(path, png) {
            Ok(()) => eprintln!("screenshot: {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        },
        Err(e) => eprintln!("could not take screenshot {}: {e}", path.display()),
    }
}

pub async fn fill(client: &Client, css: &str, text: &str) -> Result<(), String> {
    let field = client.find(Locator::Css(css)).await.map_err(|e| format!("finding {css}: {e}"))?;
    field.clear().await.map_err(|e| format!("clearing {css}: {e}"))?;
    field.send_keys(text).await.map_err(|e| format!("typing into {css}: {e}"))
}

pub async fn click(client: &Client, who: &str, css: &str) -> Result<(), String> {
    let element = client.find(Locator::Css(css)).await.map_err(|e| format!("{who}: finding {css}: {e}"))?;
    element.click().await.map_err(|e| format!("{who}: clicking {css}: {e}"))
}

/// Focuses `css` and presses `key` on it, as a keyboard user would. Unlike a click, this is
/// not intercepted by another feature's floating panel that happens to cover the element.
pub async fn press(client: &Client, who: &str, css: &str, key: Key) -> Result<(), String> {
    let focused = client
        .execute(
            "const el = document.querySelector(arguments[0]); if (!el) return false; \
             el.scrollIntoView({block: 'center'}); el.focus(); return document.activeElement === el;",
            vec![json!(css)],
        )
        .await
        .map_err(|e| format!("{who}: focusing {css}: {e}"))?;
    if focused != json!(true) {
        return Err(format!("{who}: {css} cannot take keyboard focus"));
    }
    let element = client.active_element().await.map_err(|e| format!("{who}: reading the focused element: {e}"))?;
    element.send_keys(&key.to_string()).await.map_err(|e| format!("{who}: pressing a key on {css}: {e}"))
}

/// Polls a synchronous script (given `args`) until it returns true, for up to [`UI_DEADLINE`].
pub async fn wait_for(client: &Client, what: &str, script: &str, args: &[Value]) -> Result<(), String> {
    wait_for_within(client, what, script, args, UI_DEADLINE).await
}

pub async fn wait_for_within(client: &Client, what: &str, script: &str, args: &[Value], within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let result = client.execute(script, args.to_vec()).await;
        if matches!(result, Ok(Value::Bool(true))) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let last = result.map_or_else(|e| e.to_string(), |v| v.to_string());
            return Err(format!("timed out after {within:?} waiting for {what} (last result: {last})"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn text_of(client: &Client, css: &str) -> Result<String, String> {
    let element = client.find(Locator::Css(css)).await.map_err(|e| format!("finding {css}: {e}"))?;
    element.text().await.map(|t| t.trim().to_string()).map_err(|e| format!("reading {css}: {e}"))
}

/// Writes a WAV file Chromium can use as its fake microphone (`--use-file-for-fake-audio-capture`):
/// 48 kHz mono, a steady 440 Hz tone at `amplitude` (0..1) — a voice that is clearly speaking,
/// unlike the default fake device's quiet beep.
pub fn write_tone_wav(path: &Path, seconds: u32, amplitude: f64) {
    let rate = 48_000u32;
    let samples = rate * seconds;
    let mut data = Vec::with_capacity(44 + 2 * samples as usize);
    data.extend_from_slice(b"RIFF");
    data.extend_from_slice(&(36 + 2 * samples).to_le_bytes());
    data.extend_from_slice(b"WAVEfmt ");
    data.extend_from_slice(&16u32.to_le_bytes());
    data.extend_from_slice(&1u16.to_le_bytes()); // PCM
    data.extend_from_slice(&1u16.to_le_bytes()); // mono
    data.extend_from_slice(&rate.to_le_bytes());
    data.extend_from_slice(&(rate * 2).to_le_bytes());
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&16u16.to_le_bytes());
    data.extend_from_slice(b"data");
    data.extend_from_slice(&(2 * samples).to_le_bytes());
    for i in 0..samples {
        let v = (std::f64::consts::TAU * 440.0 * f64::from(i) / f64::from(rate)).sin() * amplitude * f64::from(i16::MAX);
        data.extend_from_slice(&(v as i16).to_le_bytes());
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Opens a personal join link (`#token=...`) and joins with its one button.
pub async fn join_with_link(client: &Client, who: &str, base: &str, token: &str) -> Result<(), String> {
    enter_with_link(client, who, base, token).await?;
    wait_for(client, &format!("the {who} to be in the room"), "return window.hearth.state === 'joined';", &[]).await
}

/// Opens a personal join link and presses its one button, without waiting for the outcome.
pub async fn enter_with_link(client: &Client, who: &str, base: &str, token: &str) -> Result<(), String> {
    client.goto(&format!("{base}/#token={token}")).await.map_err(|e| format!("{who}: opening the link: {e}"))?;
    wait_for(client, &format!("the {who}'s link page"), VISIBLE_JS, &[json!("#link-join-button")]).await?;
    click(client, who, "#link-join-button").await
}

/// Therapists: opens the "…" menu of `participant_id`'s row in the people list (if it is not
/// open already), where the row's actions (mute, spotlight, celebrate, remove…) are.
pub async fn open_person_menu(client: &Client, who: &str, participant_id: &str) -> Result<(), String> {
    let more = format!("#people-list li[data-participant-id=\"{participant_id}\"] button.person-more");
    wait_for(client, &format!("{who}: the … button of {participant_id}'s row"), VISIBLE_JS, &[json!(more)]).await?;
    let open = client
        .execute("return document.querySelector(arguments[0]).getAttribute('aria-expanded') === 'true';", vec![json!(more)])
        .await
        .map_err(|e| format!("{who}: reading the … button: {e}"))?;
    if open != json!(true) {
        click(client, who, &more).await?;
    }
    let actions = format!("#people-list li[data-participant-id=\"{participant_id}\"] .person-actions");
    wait_for(client, &format!("{who}: the actions of {participant_id}'s row"), VISIBLE_JS, &[json!(actions)]).await
}
