//! End to end through a real browser: two headless Chromium pages join the same room via the
//! web client served by the real server, and each must decode the other's video and receive
//! the other's audio. Chromium's fake capture devices supply the media.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium` and
//! `chromium-driver`); `scripts/install-test-deps.sh` installs them. Without them this test
//! fails on purpose: a silently skipped browser test would hide a broken client.
//!
//! Artifacts (screenshots, chromedriver log) go to `target/test-artifacts/`.
//!
//! WebDriver is spoken directly (plain HTTP + JSON, see `mod webdriver` below) rather than
//! through `fantoccini`: with fantoccini's `rustls-tls` feature, `rustls` ends up with both the
//! `ring` (from webrtc) and `aws-lc-rs` (from hyper-rustls) providers enabled, so
//! `ClientBuilder::rustls()` panics ("Could not automatically determine the process-level
//! CryptoProvider") unless the test can call `CryptoProvider::install_default()`, which needs
//! `rustls` as a direct dev-dependency. chromedriver listens on plain HTTP, so no TLS is needed.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webdriver::Session;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ROOM: &str = "browser-test";
/// How long both pages get to have media flowing both ways after clicking "Join".
const MEDIA_DEADLINE: Duration = Duration::from_secs(30);
/// Upper bound for the whole test, so a hung browser or server cannot hang CI.
const TEST_DEADLINE: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(500);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_see_and_hear_each_other() {
    require_browser();
    match tokio::time::timeout(TEST_DEADLINE, run()).await {
        Ok(()) => {}
        Err(_) => panic!("browser test did not finish within {TEST_DEADLINE:?}"),
    }
}

async fn run() {
    let artifacts = artifacts_dir();
    // Declared before the chromedriver guard so they are removed after the browsers are gone.
    let alice_profile = TempDir::new("alice");
    let bob_profile = TempDir::new("bob");

    let server = hearth::server::start(hearth::config::Config::for_tests())
        .await
        .expect("server starts");
    let addr = server.addr();
    let health = get_json(addr, "/healthz").await;
    assert_eq!(health["status"], "ok", "fresh server is healthy: {health}");

    let driver = ChromeDriver::spawn(&artifacts.join("chromedriver.log")).await;
    let (alice, bob) = tokio::join!(
        open_browser(&driver, alice_profile.path()),
        open_browser(&driver, bob_profile.path())
    );

    let page = format!("http://{addr}/?room={ROOM}");
    let outcome = check_two_pages(&alice, &bob, &page, addr).await;

    // Screenshots and logs are most useful when something failed, so take them either way.
    for (who, session) in [("alice", &alice), ("bob", &bob)] {
        save_screenshot(session, &artifacts.join(format!("browser-two-pages-{who}.png"))).await;
        if outcome.is_err() {
            eprintln!("---- {who}: window.hearth.log ----\n{}", page_log(session).await);
        }
    }
    let _ = alice.close().await;
    let _ = bob.close().await;
    server.shutdown().await;
    drop(driver);

    if let Err(message) = outcome {
        panic!("{message}");
    }
}

/// Joins both pages and waits until media flows both ways; Err says what was last observed.
async fn check_two_pages(alice: &Session, bob: &Session, page: &str, addr: SocketAddr) -> Result<(), String> {
    join(alice, page, "Alice").await?;
    join(bob, page, "Bob").await?;

    let started = Instant::now();
    let mut last_report = Instant::now();
    let (mut a, mut b);
    loop {
        a = probe(alice).await;
        b = probe(bob).await;
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

    // Each page labels a tile with the other person's name and that tile renders video.
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

    let health = get_json(addr, "/healthz").await;
    if health["rooms"] != 1 || health["participants"] != 2 {
        return Err(format!("/healthz should count 1 room with 2 participants: {health}"));
    }
    Ok(())
}

async fn join(session: &Session, page: &str, name: &str) -> Result<(), String> {
    let err = |what: &str, e: String| format!("{name}: {what}: {e}");
    session.goto(page).await.map_err(|e| err("opening the page", e))?;
    let room = session.find("#room-input").await.map_err(|e| err("finding the room field", e))?;
    let prefilled = session.property(&room, "value").await.map_err(|e| err("reading the room field", e))?;
    if prefilled != ROOM {
        return Err(format!("{name}: room field should be prefilled from ?room=, got {prefilled}"));
    }
    let name_field = session.find("#name-input").await.map_err(|e| err("finding the name field", e))?;
    session.send_keys(&name_field, name).await.map_err(|e| err("typing the name", e))?;
    let button = session.find("#join-button").await.map_err(|e| err("finding the join button", e))?;
    session.click(&button).await.map_err(|e| err("clicking join", e))?;
    Ok(())
}

async fn probe(session: &Session) -> Value {
    session
        .execute_async(MEDIA_PROBE_JS)
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

async fn page_log(session: &Session) -> String {
    match session.execute("return (window.hearth && window.hearth.log || []).join('\\n');").await {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("(could not read the log: {e})"),
    }
}

async fn save_screenshot(session: &Session, path: &Path) {
    match session.screenshot().await {
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

async fn open_browser(driver: &ChromeDriver, profile: &Path) -> Session {
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
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        "timeouts": { "script": 10_000, "pageLoad": 20_000, "implicit": 0 },
    });
    Session::start(driver.addr, capabilities)
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"))
}

/// A chromedriver process on a free port, killed (with the browsers it started) on drop.
struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
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
        // Its own process group, so dropping the guard can also end the Chromium processes it
        // launched even if a failure kept us from closing the sessions.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}; run scripts/install-test-deps.sh"));
        let mut driver = ChromeDriver { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
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
    dir
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http::request(addr, "GET", path, None).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path} failed: {body}");
    body
}

/// Just enough HTTP/1.1 for JSON requests to local servers (no HTTP client among the
/// dev-dependencies that works here, see the module comment).
mod http {
    use std::net::SocketAddr;
    use std::time::Duration;

    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one request on a fresh connection; returns the status and the JSON body
    /// (`Value::Null` for an empty body).
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let payload = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(payload.as_bytes()).await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(response)
        };
        // Longer than any WebDriver timeout we set, so those report first and more clearly.
        let response = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| format!("{method} {path}: no response within 60 s"))?
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{method} {path}: malformed HTTP response"))?;
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let raw_body = &response[split + 4..];
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(raw_body)
        } else {
            raw_body.to_vec()
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Null));
        }
        let json = serde_json::from_slice(&body).map_err(|e| {
            format!("{method} {path}: body is not JSON ({e}): {}", String::from_utf8_lossy(&body))
        })?;
        Ok((status, json))
    }

    fn dechunk(mut body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&body[..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
                .unwrap_or(0);
            let rest = &body[line_end + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
        }
        out
    }
}

/// The handful of W3C WebDriver commands this test needs, over plain HTTP to chromedriver.
mod webdriver {
    use std::net::SocketAddr;

    use serde_json::{json, Value};

    use super::http;

    /// The key under which W3C WebDriver returns element references.
    const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

    pub struct Session {
        driver: SocketAddr,
        id: String,
    }

    pub struct Element(String);

    impl Session {
        pub async fn start(driver: SocketAddr, always_match: Value) -> Result<Session, String> {
            let body = json!({ "capabilities": { "alwaysMatch": always_match } });
            let value = call(driver, "POST", "/session".into(), Some(body)).await?;
            let id = value["sessionId"].as_str().ok_or_else(|| format!("no sessionId in {value}"))?;
            Ok(Session { driver, id: id.to_string() })
        }

        async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
            call(self.driver, method, format!("/session/{}{path}", self.id), body).await
        }

        pub async fn goto(&self, url: &str) -> Result<(), String> {
            self.cmd("POST", "/url", Some(json!({ "url": url }))).await.map(drop)
        }

        pub async fn find(&self, css: &str) -> Result<Element, String> {
            let value = self
                .cmd("POST", "/element", Some(json!({ "using": "css selector", "value": css })))
                .await?;
            let id = value[ELEMENT_KEY].as_str().ok_or_else(|| format!("no element for {css}: {value}"))?;
            Ok(Element(id.to_string()))
        }

        pub async fn property(&self, element: &Element, name: &str) -> Result<Value, String> {
            self.cmd("GET", &format!("/element/{}/property/{name}", element.0), None).await
        }

        pub async fn send_keys(&self, element: &Element, text: &str) -> Result<(), String> {
            let path = format!("/element/{}/value", element.0);
            self.cmd("POST", &path, Some(json!({ "text": text }))).await.map(drop)
        }

        pub async fn click(&self, element: &Element) -> Result<(), String> {
            self.cmd("POST", &format!("/element/{}/click", element.0), Some(json!({}))).await.map(drop)
        }

        pub async fn execute(&self, script: &str) -> Result<Value, String> {
            self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
        }

        /// `script` finishes by calling `arguments[arguments.length - 1](result)`.
        pub async fn execute_async(&self, script: &str) -> Result<Value, String> {
            self.cmd("POST", "/execute/async", Some(json!({ "script": script, "args": [] }))).await
        }

        /// The viewport as PNG bytes.
        pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
            let value = self.cmd("GET", "/screenshot", None).await?;
            let encoded = value.as_str().ok_or_else(|| format!("screenshot is not a string: {value}"))?;
            base64_decode(encoded)
        }

        pub async fn close(&self) -> Result<(), String> {
            self.cmd("DELETE", "", None).await.map(drop)
        }
    }

    /// One WebDriver call; unwraps `value` or turns a WebDriver error into a readable message.
    async fn call(driver: SocketAddr, method: &str, path: String, body: Option<Value>) -> Result<Value, String> {
        let (status, mut response) = http::request(driver, method, &path, body.as_ref()).await?;
        let value = response["value"].take();
        if status != 200 {
            return Err(format!(
                "{method} {path}: {} {}: {}",
                status,
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("").lines().next().unwrap_or("")
            ));
        }
        Ok(value)
    }

    fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(text.len() / 4 * 3);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return Err(format!("invalid base64 byte {c}")),
            };
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        Ok(out)
    }
}
