//! The one fixture every browser test is written with: it owns the chromedriver, the pages (each
//! a headless Chromium with its own throw-away profile and window size), the server when the test
//! lets it start one, the test's deadline and its artifacts folder, and the wrap-up.
//!
//! A test reads:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn chat_in_the_browser() {
//!     let mut fx = BrowserTest::with_server("chat", Duration::from_secs(90), open_config()).await;
//!     let [therapist, pat] = fx.open([PageSpec::desktop("therapist"), PageSpec::phone("pat")]).await;
//!     let outcome = fx.within(scenario(&fx, &therapist, &pat)).await;
//!     fx.finish(outcome).await;
//! }
//!
//! async fn scenario(fx: &BrowserTest, therapist: &Client, pat: &Client) -> Result<(), String> {
//!     fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-rivera", "Dr. Rivera")).await?;
//!     wait_for(pat, "the chat button", VISIBLE_JS, &[json!("#chat-button")]).await?;
//!     fx.shot(pat, "joined").await;
//!     Ok(())
//! }
//! ```
//!
//! - **Artifacts** go to `target/test-artifacts/<test>/`: screenshots `<name>.png` (from
//!   [`BrowserTest::shot`] and [`BrowserTest::shot_of`]), `chromedriver.log`, each page's own log
//!   `<who>.log` (`window.hearth.log`, written at the wrap-up), and `<who>-failure.png` when the
//!   test failed. The folder is emptied when the test starts, so what is there is the last run's.
//! - **Windows:** [`PageSpec::desktop`] is 1280×800, [`PageSpec::phone`] 390×844 (emulated);
//!   `sized`, `reduced_motion` and `arg` (more Chromium flags) adjust a spec. [`resize`] changes a page's
//!   window and waits until the page has laid itself out; [`BrowserTest::fits_narrow_phone`]
//!   checks a page does not scroll sideways at 360 px.
//! - **Joining:** [`BrowserTest::join`] opens a personal link and waits for the room;
//!   [`BrowserTest::enter`] only presses the link's button (a page that is to wait);
//!   [`BrowserTest::link`] is the link itself. [`BrowserTest::open_on`] opens pages through a
//!   chromedriver the test started (inside a network namespace, say).
//! - **Timeline:** [`BrowserTest::step`] prints seconds since the test started, to read a slow
//!   run from.
//! - **Waiting:** every wait has a deadline ([`wait_for`] and friends in `browser.rs`, [`UI_DEADLINE`]
//!   by default); the whole test has one too: [`BrowserTest::within`] turns running out of it
//!   into an ordinary failure, so the wrap-up still runs.
//! - **Wrap-up** ([`BrowserTest::finish`]): on failure a screenshot of every page and every page's
//!   log printed (always printed with `HEARTH_BROWSER_LOGS=1`); then the pages close, the server
//!   shuts down, chromedriver and every Chromium it started are killed, the profiles are removed,
//!   and a failure panics with its message.
//! - **Camera:** every page films a light picture ([`LIGHT_CAMERA`], `camera.y4m` in the
//!   artifacts) unless the test passes its own file (made with [`write_moving_y4m`] at the size
//!   and rate it needs, say) or asks for [`PageSpec::device_camera`]
//!   (`HEARTH_BROWSER_CAMERA=device` gives every page the device's, for comparisons).
//! - **Scripts:** [`inject_script`] runs a script file in a page (for tools such as an
//!   accessibility checker vendored under `tests/`).
//!
//! It must not know any feature of the web client: what a test checks on a page lives in the test.
#![allow(dead_code)]

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth::auth::Role;
use hearth::config::Config;
use hearth::server::RunningServer;
use serde_json::json;

use super::browser::*;

/// The desktop window every test uses unless it needs another.
pub const DESKTOP: (u32, u32) = (1280, 800);
/// A phone-sized window (an iPhone 12–15 viewport).
pub const PHONE: (u32, u32) = (390, 844);
/// The narrowest phone the web client is laid out for (what [`BrowserTest::fits_narrow_phone`] checks).
pub const NARROW_PHONE: (u32, u32) = (360, 780);
/// The pages' camera unless a test asks for the device's ([`PageSpec::device_camera`]): 640×360
/// at 15 fps, a block moving across a grey picture. 360 lines still make the web client
/// publish simulcast (two layers), so the path every real camera takes stays exercised.
pub const LIGHT_CAMERA: (u32, u32, u32) = (640, 360, 15);

/// One page to open: who it is (names its screenshots and log) and its window.
#[derive(Debug, Clone)]
pub struct PageSpec {
    pub who: String,
    pub options: BrowserOptions,
    /// Chromium's own fake camera (1280×720 at 30 fps: three simulcast layers) instead of the
    /// fixture's light one; see [`PageSpec::device_camera`].
    pub device_camera: bool,
}

impl PageSpec {
    pub fn desktop(who: &str) -> Self {
        Self::sized(who, DESKTOP)
    }

    /// A phone's screen, emulated: a headless window is never narrower than 500 px, so only
    /// emulation gives a 390 px viewport from the start.
    pub fn phone(who: &str) -> Self {
        Self::with(who, BrowserOptions::phone(PHONE.0, PHONE.1))
    }

    /// A window of this size (its viewport is what [`resize`] waits for).
    pub fn sized(who: &str, (width, height): (u32, u32)) -> Self {
        Self::with(who, BrowserOptions::size(width, height))
    }

    /// A page opened with these options exactly.
    pub fn with(who: &str, options: BrowserOptions) -> Self {
        Self { who: who.to_string(), options, device_camera: false }
    }

    /// Chromium's own fake camera, for tests about video itself (simulcast layers, bandwidth).
    /// Every other page films [`LIGHT_CAMERA`]: encoding three 720p layers at 30 fps in every
    /// page is most of what a 2-core machine does during a browser test, and a page whose main
    /// thread waits for the CPU answers each webdriver command late.
    pub fn device_camera(mut self) -> Self {
        self.device_camera = true;
        self
    }

    /// Asks the page for less motion (`prefers-reduced-motion: reduce`).
    pub fn reduced_motion(mut self) -> Self {
        self.options.reduced_motion = true;
        self
    }

    /// One more Chromium flag (screen capture, a fake microphone file, ...).
    pub fn arg(mut self, flag: impl Into<String>) -> Self {
        self.options.extra_args.push(flag.into());
        self
    }
}

struct Page {
    who: String,
    client: Client,
    // Removed only after the browser is gone (the fixture's drop order).
    _profile: TempDir,
}

/// A browser test in progress; see the module docs.
pub struct BrowserTest {
    name: String,
    artifacts: PathBuf,
    started: Instant,
    deadline: Instant,
    within: Duration,
    // Dropped in this order, also when a panic skips the wrap-up: every Chromium, then profiles.
    driver: ChromeDriver,
    pages: Vec<Page>,
    server: Option<RunningServer>,
    // Last: the machine is shared again once everything above is gone.
    _machine: tokio::sync::SemaphorePermit<'static>,
}

/// Embedded test defaults without the waiting room (most browser tests start in the room).
pub fn open_config() -> Config {
    let mut c = super::test_config();
    c.rooms.waiting_room = false;
    c
}

impl BrowserTest {
    /// A test that brings its own server(s): the driver and the artifacts folder, no server.
    /// `within` bounds the whole test, from now.
    pub async fn new(name: &str, within: Duration) -> Self {
        require_browser();
        let machine = super::machine(super::Load::Heavy).await;
        let started = Instant::now();
        let deadline = started + within;
        let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts").join(name);
        let _ = fs::remove_dir_all(&artifacts);
        fs::create_dir_all(&artifacts).unwrap_or_else(|e| panic!("cannot create {}: {e}", artifacts.display()));
        let driver = ChromeDriver::spawn(&artifacts.join("chromedriver.log")).await;
        Self { name: name.to_string(), artifacts, started, deadline, within, driver, pages: Vec::new(), server: None, _machine: machine }
    }

    /// A test against one Hearth server started from `config` (see [`super::test_config`] and
    /// [`open_config`]).
    pub async fn with_server(name: &str, within: Duration, config: Config) -> Self {
        let mut fx = Self::new(name, within).await;
        fx.server = Some(super::start_with(config).await);
        fx
    }

    /// Hands a server the test started itself (a cluster node, say) to the fixture: it is then
    /// [`Self::server`] and the wrap-up shuts it down.
    pub fn adopt(&mut self, server: RunningServer) {
        self.server = Some(server);
    }

    /// The server this fixture started or adopted.
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("this browser test was started without a server of the fixture's")
    }

    /// `http://<the server's address>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server().addr())
    }

    /// `target/test-artifacts/<test>/`.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// Opens the pages at once (each a Chromium of its own) and returns their drivers, in order.
    pub async fn open<const N: usize>(&mut self, specs: [PageSpec; N]) -> [Client; N] {
        let webdriver = self.driver.url.clone();
        self.open_on(&webdriver, specs).await
    }

    /// As [`Self::open`], through another chromedriver the test started (one inside a network
    /// namespace, say); the test keeps that driver running until after [`Self::finish`].
    pub async fn open_on<const N: usize>(&mut self, webdriver: &str, specs: [PageSpec; N]) -> [Client; N] {
        let profiles: Vec<TempDir> = specs.iter().map(|s| TempDir::new(&format!("{}-{}", self.name, s.who))).collect();
        let camera = self.artifacts.join("camera.y4m");
        let options: Vec<BrowserOptions> = specs
            .iter()
            .map(|spec| {
                let mut options = spec.options.clone();
                let own_file = options.extra_args.iter().any(|a| a.starts_with("--use-file-for-fake-video-capture"));
                if !spec.device_camera && !own_file && !device_camera_for_all() {
                    if !camera.exists() {
                        let (width, height, fps) = LIGHT_CAMERA;
                        write_moving_y4m(&camera, width, height, fps);
                    }
                    options.extra_args.push(format!("--use-file-for-fake-video-capture={}", camera.display()));
                }
                options
            })
            .collect();
        let opening = futures::future::join_all(
            options.iter().zip(&profiles).map(|(options, profile)| open_browser_with(webdriver, profile.path(), options)),
        );
        let clients = match tokio::time::timeout(self.remaining(), opening).await {
            Ok(clients) => clients,
            Err(_) => panic!("{}: the browsers did not open within the test's {:?}", self.name, self.within),
        };
        for ((spec, client), profile) in specs.iter().zip(&clients).zip(profiles) {
            self.pages.push(Page { who: spec.who.clone(), client: client.clone(), _profile: profile });
        }
        clients.try_into().unwrap_or_else(|_| unreachable!("one client per spec"))
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs the scenario within what is left of the test's deadline; running out is a failure
    /// like any other (so [`Self::finish`] still takes screenshots and prints logs).
    pub async fn within(&self, scenario: impl Future<Output = Result<(), String>>) -> Result<(), String> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.remaining(), scenario)
            .await
            .unwrap_or_else(|_| Err(format!("{} did not finish within {:?}", self.name, self.within)));
        eprintln!("{}: scenario took {:.1?}", self.name, started.elapsed());
        outcome
    }

    /// `target/test-artifacts/<test>/<name>.png`.
    pub fn shot_path(&self, name: &str) -> PathBuf {
        self.artifacts.join(format!("{name}.png"))
    }

    /// A screenshot of the page, kept as `<name>.png`.
    pub async fn shot(&self, client: &Client, name: &str) {
        save_screenshot(client, &self.shot_path(name)).await;
    }

    /// A screenshot of one element of the page, kept as `<name>.png`.
    pub async fn shot_of(&self, client: &Client, css: &str, name: &str) {
        save_screenshot_of(client, css, &self.shot_path(name)).await;
    }

    /// The personal join link for `(participant id, display name)` in `room` on the fixture's server.
    pub fn link(&self, room: &str, role: Role, (id, name): (&str, &str)) -> String {
        format!("{}/#token={}", self.base_url(), super::token_for(self.server(), room, role, name, id))
    }

    /// Joins through a personal link for `(participant id, display name)` in `room` on the
    /// fixture's server, and waits until the page is in the room.
    pub async fn join(&self, client: &Client, who: &str, room: &str, role: Role, (id, name): (&str, &str)) -> Result<(), String> {
        let token = super::token_for(self.server(), room, role, name, id);
        join_with_link(client, who, &self.base_url(), &token).await
    }

    /// Opens the personal link and presses its join button, without waiting for the room (for
    /// a page that is to wait, or be refused).
    pub async fn enter(&self, client: &Client, who: &str, room: &str, role: Role, (id, name): (&str, &str)) -> Result<(), String> {
        let token = super::token_for(self.server(), room, role, name, id);
        enter_with_link(client, who, &self.base_url(), &token).await
    }

    /// Prints `[seconds since the test started] what` to stderr: the timeline a slow run is
    /// read from.
    pub fn step(&self, what: &str) {
        eprintln!("[{:>6.1?}] {}: {what}", self.started.elapsed(), self.name);
    }

    /// Resizes the page to a narrow phone, fails if it scrolls sideways there, keeps a screenshot
    /// (`<who>-phone.png`) and restores the desktop window.
    pub async fn fits_narrow_phone(&self, client: &Client, who: &str) -> Result<(), String> {
        resize(client, who, NARROW_PHONE).await?;
        let overflow = client
            .execute("return document.documentElement.scrollWidth > window.innerWidth;", vec![])
            .await
            .map_err(|e| format!("{who}: measuring the page: {e}"))?;
        self.shot(client, &format!("{who}-phone")).await;
        resize(client, who, DESKTOP).await?;
        if overflow != json!(false) {
            return Err(format!("the {who}'s page scrolls sideways at {} px", NARROW_PHONE.0));
        }
        Ok(())
    }

    /// The wrap-up: see the module docs. Panics with the scenario's message when it failed.
    pub async fn finish(mut self, outcome: Result<(), String>) {
        let failed = outcome.is_err();
        for page in &self.pages {
            if failed {
                save_screenshot(&page.client, &self.artifacts.join(format!("{}-failure.png", page.who))).await;
            }
            let log = page_log(&page.client).await;
            let _ = fs::write(self.artifacts.join(format!("{}.log", page.who)), &log);
            if failed || std::env::var_os("HEARTH_BROWSER_LOGS").is_some() {
                eprintln!("---- {}: window.hearth.log ----\n{log}", page.who);
            }
        }
        for page in &self.pages {
            let _ = page.client.clone().close().await;
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        // The driver's drop kills every Chromium it started; then the pages' profiles go.
        let Self { driver, pages, artifacts, .. } = self;
        drop(driver);
        drop(pages);
        if let Err(message) = outcome {
            panic!("{message} (artifacts: {})", artifacts.display());
        }
    }
}

/// Resizes the window and waits until the page has its new width and has drawn two frames
/// since (so layout scripts reacting to the resize have run).
pub async fn resize(client: &Client, who: &str, (width, height): (u32, u32)) -> Result<(), String> {
    client.set_window_size(width, height).await.map_err(|e| format!("{who}: resizing to {width}×{height}: {e}"))?;
    // The viewport, not the window: headless Chromium keeps a narrow window 500 px wide outside
    // while its viewport takes the width asked for.
    wait_for(
        client,
        &format!("{who}'s page {width} px wide"),
        "return window.innerWidth === arguments[0] || `inner ${window.innerWidth}, outer ${window.outerWidth}`;",
        &[json!(width)],
    )
    .await?;
    client
        .execute_async("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));", vec![])
        .await
        .map(|_| ())
        .map_err(|e| format!("{who}: waiting for a frame after resizing: {e}"))
}

/// `HEARTH_BROWSER_CAMERA=device` gives every page Chromium's own camera, to compare a test's
/// wall time with and without the light one.
fn device_camera_for_all() -> bool {
    std::env::var("HEARTH_BROWSER_CAMERA").is_ok_and(|v| v == "device")
}

/// Writes a YUV4MPEG2 file Chromium plays in a loop as its camera
/// (`--use-file-for-fake-video-capture`): one second of a light block crossing a grey picture.
pub fn write_moving_y4m(path: &Path, width: u32, height: u32, fps: u32) {
    let (w, h) = (width as usize, height as usize);
    let mut data = format!("YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n").into_bytes();
    let block = h / 3;
    for frame in 0..fps as usize {
        data.extend_from_slice(b"FRAME\n");
        let left = (w - block) * frame / fps as usize;
        for y in 0..h {
            for x in 0..w {
                let inside = (h / 3..h / 3 + block).contains(&y) && (left..left + block).contains(&x);
                data.push(if inside { 200 } else { 110 });
            }
        }
        // Neutral chroma: a grey picture.
        data.extend(std::iter::repeat_n(128u8, w * h / 2));
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Runs the script file at `path` in the page, as the body of a function: through the driver,
/// so the page's Content-Security-Policy does not stop it. A library such as axe-core attaches
/// itself to `window` and is then there for the test's later scripts (until the page navigates).
pub async fn inject_script(client: &Client, path: &Path) -> Result<(), String> {
    let source = fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    client.execute(&source, vec![]).await.map(|_| ()).map_err(|e| format!("running {} in the page: {e}", path.display()))
}

/// True once `window[arguments[0]]` is defined.
pub const GLOBAL_DEFINED_JS: &str = "return typeof window[arguments[0]] !== 'undefined';";

/// Waits until an injected script's global `name` is there.
pub async fn wait_for_global(client: &Client, name: &str) -> Result<(), String> {
    wait_for(client, &format!("window.{name}"), GLOBAL_DEFINED_JS, &[json!(name)]).await
}
