//! `hearth-load`: drive a Hearth server on this machine with simulated participants and
//! measure how it forwards media. The engine is `hearth::load`; this file is the command line,
//! and starting the server as a child process so its CPU and memory can be read from `/proc`
//! apart from the load generator's own.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use hearth::client::media::VideoProfile;
use hearth::load::{self, LoadConfig};
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(
    name = "hearth-load",
    version,
    about = "Load generator for Hearth: real signaling and webrtc peers over loopback",
    after_help = "Environment: HEARTH_LOAD_LOG sets this tool's log filter, HEARTH_SERVER_LOG the started server's.\n\
                  Figures and method: docs/performance.md"
)]
struct Cli {
    /// Target an already running server (loopback only: localhost, 127.0.0.0/8, ::1), e.g.
    /// ws://127.0.0.1:8080/ws. Without it, a server is started from --server-bin.
    #[arg(long, conflicts_with = "server_bin")]
    url: Option<String>,
    /// With --url, relay nodes: another node's websocket URL (loopback), tried when --url
    /// cannot be reached; participants whose node goes away rejoin through these. Repeatable.
    #[arg(long = "fallback-url", requires = "url")]
    fallback_urls: Vec<String>,
    /// With --url: the server's pid, to measure its CPU and memory.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// With --url: the server's auth.token_secret, to mint join tokens (the server must also
    /// run with rooms.waiting_room = false, and limits.max_connections_per_ip above the number
    /// of simulated participants: they all come from this machine's address). Defaults to the
    /// development secret.
    #[arg(long, env = "HEARTH_AUTH__TOKEN_SECRET", hide_env_values = true, requires = "url")]
    token_secret: Option<String>,
    /// The `hearth` binary to start as a child process on 127.0.0.1 (build it with --release).
    #[arg(long, default_value = "target/release/hearth")]
    server_bin: PathBuf,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    rooms: u16,
    /// Publishers per room (each sends audio and video).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=50))]
    publishers: u16,
    /// Receive-only participants per room.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=49))]
    subscribers: u16,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// Seconds after everyone receives everything before the window opens.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60))]
    warmup: u64,
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(16..=20_000))]
    video_kbps: u32,
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
    video_fps: u32,
    /// Largest video RTP payload, bytes.
    #[arg(long, default_value_t = 1100, value_parser = clap::value_parser!(u16).range(100..=1400))]
    packet_bytes: u16,
    /// Publishers send their camera as three simulcast layers (quarter, half, full).
    #[arg(long)]
    simulcast: bool,
    /// Give the first --throttled-subscribers subscribers of each room at most this much video
    /// (kbit/s), as a weak network would; the server should switch them down or pause their video.
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=100_000))]
    throttle_kbps: Option<u32>,
    #[arg(long, default_value_t = 1, requires = "throttle_kbps")]
    throttled_subscribers: usize,
    /// A group starting together: a therapist joins each room first, everyone else waits in
    /// the waiting room; the publishers are admitted together, then all subscribers with one
    /// admitAll. Reports the time from that admitAll to each subscriber's first keyframe of
    /// every publisher. With --url the server must run with rooms.waiting_room = true.
    #[arg(long)]
    admit_all: bool,
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where the started server's output goes [default: <temp dir>/hearth-load-server.log].
    #[arg(long)]
    server_log: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("hearth=info,webrtc=error,rtc=error")),
        )
        .init();

    // The server insists on a web root and a store; the load run needs neither, so it gets
    // throw-away ones rather than the working directory's.
    let scratch = std::env::temp_dir().join(format!("hearth-load-{}", std::process::id()));
    let server_log = cli.server_log.clone().unwrap_or_else(|| std::env::temp_dir().join("hearth-load-server.log"));
    let (url, server_pid, child) = match &cli.url {
        Some(url) => {
            load::target::check_loopback(url)?;
            (url.clone(), cli.server_pid, None)
        }
        None => {
            let (child, addr) = spawn_server(&cli.server_bin, &server_log, &scratch, cli.admit_all).await?;
            (format!("ws://{addr}/ws"), child.id(), Some(child))
        }
    };

    let mut cfg = LoadConfig::new(url);
    cfg.rooms = cli.rooms.into();
    cfg.publishers = cli.publishers.into();
    cfg.subscribers = cli.subscribers.into();
    cfg.duration = Duration::from_secs(cli.duration);
    cfg.warmup = Duration::from_secs(cli.warmup);
    cfg.video = VideoProfile {
        kbps: cli.video_kbps,
        fps: cli.video_fps,
        max_packet: cli.packet_bytes.into(),
        ..VideoProfile::camera(cli.video_kbps)
    };
    cfg.server_pid = server_pid;
    cfg.fallback_urls = cli.fallback_urls.clone();
    cfg.simulcast = cli.simulcast;
    cfg.throttle_kbps = cli.throttle_kbps;
    cfg.throttled_subscribers = cli.throttled_subscribers;
    cfg.admit_all = cli.admit_all;
    if let Some(secret) = &cli.token_secret {
        cfg.token_secret = secret.clone();
    }
    // Bounds the whole run, whatever happens inside it: setup waits + warm-up + window + slack.
    let limit = Duration::from_secs(120 + cli.warmup + cli.duration) + Duration::from_millis(300) * cfg.participants() as u32;
    let outcome = tokio::time::timeout(limit, load::run(&cfg)).await;
    if let Some(mut child) = child {
        // Our own child: no graceful shutdown needed, its state is thrown away.
        let _ = child.start_kill();
        let _ = child.wait().await;
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let report = outcome.context("the run exceeded its time limit")??;
    print!("{}", report.summary());
    if cli.url.is_none() {
        let log = std::fs::read_to_string(&server_log).unwrap_or_default();
        let (warn, error) = (log.matches(" WARN ").count(), log.matches(" ERROR ").count());
        println!("  server log     {} ({warn} warnings, {error} errors)", server_log.display());
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

/// Starts `bin` on a free loopback port and waits until it accepts connections.
async fn spawn_server(bin: &PathBuf, log: &PathBuf, scratch: &Path, waiting_room: bool) -> anyhow::Result<(Child, SocketAddr)> {
    if !bin.is_file() {
        bail!("{} not found: build it with `cargo build --release --bin hearth`, or pass --server-bin or --url", bin.display());
    }
    // Asking the OS for a free port and handing it over has a tiny race; a clash fails the
    // readiness wait below loudly rather than measuring the wrong process.
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let web_root = scratch.join("web");
    std::fs::create_dir_all(&web_root)?;
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(bin)
        .env("HEARTH_SERVER__LISTEN", addr.to_string())
        .env("HEARTH_SERVER__WEB_ROOT", &web_root)
        .env("HEARTH_ICE__BIND_IP", "127.0.0.1")
        // Beside a development server that may hold the default media port.
        .env("HEARTH_ICE__UDP_PORT", "0")
        .env("HEARTH_STORE__PATH", scratch.join("hearth.db"))
        // Development secret (the load generator mints tokens with it), a waiting room only
        // when a simulated therapist admits people, and every simulated participant comes
        // from 127.0.0.1.
        .env("HEARTH_SERVER__PRODUCTION", "false")
        .env("HEARTH_AUTH__TOKEN_SECRET", hearth::config::DEV_TOKEN_SECRET)
        .env("HEARTH_ROOMS__WAITING_ROOM", waiting_room.to_string())
        .env("HEARTH_LIMITS__JOINS_PER_MINUTE_PER_IP", "100000")
        .env("HEARTH_LIMITS__MAX_CONNECTIONS_PER_IP", "100000")
        .env("HEARTH_LIMITS__MAX_CONNECTIONS", "100000")
        // The server's own default log filter, whatever filter this shell set for other uses;
        // `HEARTH_SERVER_LOG` chooses one for the measured server.
        .env_remove("HEARTH_LOG")
        // Read here, not by the server, whose configuration would take it for a setting.
        .env_remove("HEARTH_SERVER_LOG")
        .env_remove("HEARTH_LOAD_LOG")
        .env("NO_COLOR", "1")
        .envs(std::env::var("HEARTH_SERVER_LOG").ok().map(|f| ("HEARTH_LOG", f)))
        .stdin(Stdio::null())
        // The server logs to stdout, at times a line per packet: keep it out of the report.
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{} exited during start-up: {status}", bin.display());
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            eprintln!("server {} (pid {}) listening on {addr}", bin.display(), child.id().unwrap_or(0));
            return Ok((child, addr));
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{} did not listen on {addr} within 15 s", bin.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
