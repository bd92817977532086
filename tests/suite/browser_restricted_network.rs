//! Joining from a network that blocks video calls, in a real browser. Pat's Chromium runs in a
//! network namespace this test creates, whose outbound traffic `iptables` restricts like a
//! hospital's or hotel's Wi-Fi; the therapist's Chromium, the Hearth server and a coturn of the
//! test's own run outside, on the namespace link's outer address. In turn, Pat's network:
//!
//! 1. lets everything out: media goes straight to the server (the direct baseline, measured);
//! 2. drops all UDP and lets TCP out only to the web page and coturn's TCP port: Pat joins and
//!    decodes the therapist through TURN over TCP, the page says it is on a relay, `/metrics`
//!    counts a relayed peer (measured against the baseline: round trip, server and coturn CPU);
//! 3. lets out only TCP to the page and coturn's TLS port: TURN over TLS (`turns:`);
//! 4. drops UDP but lets TCP reach the server: ICE over TCP to the server's own listener;
//! 5. lets out only the page: nothing connects, and within 10 s the page says so plainly.
//!
//! Needs root (`ip netns`, `iptables`), Debian's `chromium`, `chromium-driver` and `coturn`
//! (`scripts/install-test-deps.sh`); fails with a clear message without them. Written with the
//! browser fixture (`tests/common/fixture.rs`) and `tests/common/netns.rs`; logs (the server's,
//! coturn's, both chromedrivers') and screenshots go to `target/test-artifacts/restricted/`.

use crate::common;

use common::browser::*;
use common::fixture::*;
use common::netns::{rule, start_hearth, Netns, Proc};

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth::auth::{Role, TokenIssuer};
use hearth::room::RoomId;
use serde_json::{json, Value};

const TOKEN_SECRET: &str = "restricted-network-test-secret-not-the-development-one";
const TURN_SECRET: &str = "restricted-network-coturn-secret-0123456789";
const ROOM: &str = "restricted";
/// Generous: other tests build and run beside this one on two cores.
const MEDIA_DEADLINE: Duration = Duration::from_secs(45);
const TEST_DEADLINE: Duration = Duration::from_secs(420);
/// The page gives up on a connection after 10 s; the test allows for a busy machine.
const STUCK_DEADLINE: Duration = Duration::from_secs(20);
/// How long each path is measured.
const MEASURE: Duration = Duration::from_secs(10);

/// Pat's view: frames of the therapist's video decoded, the path the page reports (and its
/// note), and the selected pair's round trip.
const VIEW_JS: &str = r#"
const done = arguments[arguments.length - 1];
const h = window.hearth;
const note = document.getElementById('network-note');
const stuck = document.getElementById('network-stuck');
const out = {
  state: h.state,
  network: h.network || null,
  note: note && !note.hidden ? note.textContent.trim() : null,
  stuck: stuck && !stuck.hidden ? stuck.textContent.trim() : null,
  frames: 0,
  rttMs: null,
};
if (!h.pc) { done(out); return; }
h.pc.getStats().then((stats) => {
  let pair = null;
  stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
  if (pair && pair.currentRoundTripTime !== undefined) out.rttMs = pair.currentRoundTripTime * 1000;
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') out.frames = Math.max(out.frames, r.framesDecoded || 0);
  });
  done(out);
}).catch((e) => { out.error = String(e); done(out); });
"#;

/// A port free for UDP and TCP on `ip`.
fn free_port_on(ip: &str) -> u16 {
    loop {
        let udp = UdpSocket::bind((ip, 0)).expect("a UDP port");
        let port = udp.local_addr().expect("bound").port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// CPU seconds a process has used (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // After the command: state is field 3, utime 14 and stime 15 (1-based), in clock ticks.
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

struct Turn {
    proc: Proc,
    port: u16,
    tls_port: u16,
}

fn start_coturn(ip: &str, dir: &Path, artifacts: &Path) -> Result<Turn, String> {
    let turnserver = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("this test needs coturn (`turnserver`); run scripts/install-test-deps.sh (Debian package coturn)")?;
    let cert = rcgen::generate_simple_self_signed(vec![ip.to_string()]).map_err(|e| e.to_string())?;
    let (cert_path, key_path) = (dir.join("turn-cert.pem"), dir.join("turn-key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
    let (port, tls_port) = (free_port_on(ip), free_port_on(ip));
    let conf = format!(
        "listening-ip={ip}\nrelay-ip={ip}\nlistening-port={port}\ntls-listening-port={tls_port}\n\
         alt-listening-port={alt}\nalt-tls-listening-port={alt_tls}\nno-dtls\n\
         cert={cert}\npkey={key}\nmin-port=40000\nmax-port=60000\n\
         use-auth-secret\nstatic-auth-secret={TURN_SECRET}\nrealm=hearth.test\n\
         allowed-peer-ip={ip}\nfingerprint\nno-cli\nno-multicast-peers\nsimple-log\nlog-file=stdout\n\
         pidfile={pid}\nuserdb={db}\n",
        alt = free_port_on(ip),
        alt_tls = free_port_on(ip),
        cert = cert_path.display(),
        key = key_path.display(),
        pid = dir.join("turnserver.pid").display(),
        db = dir.join("turndb").display(),
    );
    let conf_path = dir.join("turnserver.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(artifacts.join("coturn.log")).map_err(|e| e.to_string())?;
    let child = Command::new(turnserver)
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {turnserver}: {e}"))?;
    Ok(Turn { proc: Proc::new(child), port, tls_port })
}

struct Server {
    proc: Proc,
    base: String,
    port: u16,
}

/// The `hearth` binary outside the namespace, on its gateway address, with ICE over TCP and coturn.
fn start_hearth_outside(ip: &str, turn: &Turn, dir: &Path, artifacts: &Path) -> Result<Server, String> {
    let config = format!(
        "[server]\nlisten = \"{ip}:0\"\nshutdown_grace_ms = 300\n\
         [auth]\ntoken_secret = \"{TOKEN_SECRET}\"\n\
         [rooms]\nwaiting_room = false\nreconnect_grace_ms = 500\n\
         [store]\npath = \"{db}\"\n\
         [ice]\nbind_ip = \"{ip}\"\ntcp = true\n\
         [turn]\nurls = [\"turn:{ip}:{p}?transport=udp\", \"turn:{ip}:{p}?transport=tcp\", \"turns:{ip}:{t}?transport=tcp\"]\n\
         secret = \"{TURN_SECRET}\"\ncredential_ttl_secs = 600\n",
        db = dir.join("hearth.db").display(),
        p = turn.port,
        t = turn.tls_port,
    );
    let config_path = dir.join("hearth.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    command
        .arg("--config")
        .arg(&config_path)
        .env("HEARTH_LOG", "info,hearth::sfu=debug,rtc=error,webrtc=error,webrtc::peer_connection::driver=off");
    let (proc, base) = start_hearth(command, &artifacts.join("server.log"))?;
    let port = base.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| format!("no port in {base:?}"))?;
    Ok(Server { proc, base, port })
}

/// Chromedriver inside the namespace, reachable from the test on the namespace's address; its
/// process group (the browsers it started) is killed on drop.
struct NsDriver {
    _proc: Proc,
    url: String,
    port: u16,
}

async fn ns_driver(ns: &Netns, log: &Path) -> Result<NsDriver, String> {
    let port = free_port();
    let mut command = ns.command(CHROMEDRIVER);
    command
        .arg(format!("--port={port}"))
        .arg(format!("--allowed-ips={}", ns.outer_ip))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Proc::spawn_group(command).map_err(|e| format!("cannot run chromedriver in the namespace: {e}"))?;
    let driver = NsDriver { _proc: proc, url: format!("http://{}:{port}", ns.inner_ip), port };
    let addr: SocketAddr = format!("{}:{port}", ns.inner_ip).parse().map_err(|e| format!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() >= deadline {
            return Err("chromedriver in the namespace did not listen within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(driver)
}

fn token(id: &str, name: &str, role: Role) -> String {
    let room = RoomId::new(ROOM).expect("room id");
    TokenIssuer::new(TOKEN_SECRET).mint(&room, role, name, Some(id), Duration::from_secs(600)).expect("token").0
}

async fn view(client: &Client) -> Value {
    client.execute_async(VIEW_JS, vec![]).await.unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

async fn poll(client: &Client, what: &str, wait: Duration, ok: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let deadline = Instant::now() + wait;
    loop {
        let value = view(client).await;
        if ok(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {wait:?} waiting for {what}; last: {value}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `hearth_peers_by_path{path="<path>"}` from the server's /metrics.
async fn peers_on_path(base: &str, path: &str) -> i64 {
    let addr = base.trim_start_matches("http://").parse().expect("the server's address");
    let out = common::http(addr, "GET", "/metrics", &[], "").await.1;
    let prefix = format!("hearth_peers_by_path{{path=\"{path}\"}} ");
    out.lines().find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok())).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_through_turn_over_tcp_and_tls_and_ice_tcp_and_says_when_nothing_connects() {
    let ns = Netns::create("rn", 232).unwrap_or_else(|e| panic!("this test needs root, iproute2 and iptables: {e}"));
    let mut fx = BrowserTest::new("restricted", TEST_DEADLINE).await;
    let dir = TempDir::new("restricted");
    let turn = start_coturn(&ns.outer_ip, dir.path(), fx.artifacts()).unwrap_or_else(|e| panic!("{e}"));
    let server = start_hearth_outside(&ns.outer_ip, &turn, dir.path(), fx.artifacts()).unwrap_or_else(|e| panic!("{e}"));
    let secure = format!("--unsafely-treat-insecure-origin-as-secure={}", server.base);
    let pat_driver = ns_driver(&ns, &fx.artifacts().join("pat-chromedriver.log")).await.unwrap_or_else(|e| panic!("{e}"));
    // coturn's TLS certificate is self-signed, as a test's must be.
    let [pat] = fx
        .open_on(&pat_driver.url, [PageSpec::sized("pat", PHONE).arg(secure.clone()).arg("--ignore-certificate-errors").device_camera()])
        .await;
    let [therapist] = fx.open([PageSpec::desktop("therapist").arg(secure).device_camera()]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &pat, &server, &turn, &ns, pat_driver.port)).await;
    // Pat's driver, the server, coturn and the namespace go after the browsers.
    let _keep = (pat_driver, server, turn, ns, dir);
    fx.finish(outcome).await;
}

/// Pat joins afresh (a new participant each time, so no reconnection is resumed) and waits
/// until the therapist's video decodes on `expect_path`; returns Pat's view then.
async fn pat_joins(pat: &Client, n: usize, base: &str, expect_path: &str) -> Result<Value, String> {
    fresh_join(pat, n, base).await?;
    let seen = poll(pat, &format!("Pat to decode the therapist on path {expect_path}"), MEDIA_DEADLINE, |v| {
        v["frames"].as_u64().unwrap_or(0) > 1 && v["network"]["path"] == expect_path
    })
    .await?;
    Ok(seen)
}

/// Leaves the page (a link that differs only after `#` would not load it again) and joins with
/// a new token.
async fn fresh_join(pat: &Client, n: usize, base: &str) -> Result<(), String> {
    pat.goto("about:blank").await.map_err(|e| format!("pat: leaving the page: {e}"))?;
    join_with_link(pat, "pat", base, &token(&format!("p-pat-{n}"), "Pat", Role::Participant)).await
}

/// Median of Pat's round trips over [`MEASURE`], and the server's and coturn's CPU seconds.
async fn measure(pat: &Client, server: &Server, turn: &Turn) -> (f64, f64, f64) {
    let (server_cpu, turn_cpu) = (cpu_seconds(server.proc.pid()), cpu_seconds(turn.proc.pid()));
    let end = Instant::now() + MEASURE;
    let mut rtts = Vec::new();
    while Instant::now() < end {
        if let Some(ms) = view(pat).await["rttMs"].as_f64() {
            rtts.push(ms);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rtts.sort_by(f64::total_cmp);
    let median = rtts.get(rtts.len() / 2).copied().unwrap_or(f64::NAN);
    (median, cpu_seconds(server.proc.pid()) - server_cpu, cpu_seconds(turn.proc.pid()) - turn_cpu)
}

async fn scenario(
    fx: &BrowserTest,
    therapist: &Client,
    pat: &Client,
    server: &Server,
    turn: &Turn,
    ns: &Netns,
    driver_port: u16,
) -> Result<(), String> {
    let step = |what: &str| fx.step(what);
    join_with_link(therapist, "therapist", &server.base, &token("t-rivera", "Dr. Rivera", Role::Therapist)).await?;
    let page = format!("-p tcp --dport {}", server.port);

    // 1. An open network: straight to the server, and the page says nothing about it.
    ns.firewall(driver_port, &[], true)?;
    let direct = pat_joins(pat, 1, &server.base, "host").await?;
    if direct["note"] != Value::Null {
        return Err(format!("a direct connection needs no note: {direct}"));
    }
    step(&format!("direct: {direct}"));
    let (direct_rtt, direct_cpu, _) = measure(pat, server, turn).await;

    // 2. UDP dropped, TCP only to the page and coturn's TCP port: TURN over TCP.
    ns.firewall(driver_port, &[rule(&page), rule(&format!("-p tcp --dport {}", turn.port))], false)?;
    let relayed = pat_joins(pat, 2, &server.base, "relay").await?;
    step(&format!("TURN over TCP: {relayed}"));
    if relayed["network"]["relayProtocol"] != "tcp" {
        return Err(format!("the relay should be reached over TCP: {relayed}"));
    }
    if relayed["note"] != "Connected through a relay: video may be lower quality." {
        return Err(format!("a relayed connection is said, calmly: {relayed}"));
    }
    fx.shot(pat, "pat-relay").await;
    let (relay_rtt, relay_cpu, turn_cpu) = measure(pat, server, turn).await;
    eprintln!(
        "MEASURED over {MEASURE:?}, one participant receiving the therapist: direct rtt {direct_rtt:.1} ms, server cpu {direct_cpu:.2} s; \
         TURN/TCP rtt {relay_rtt:.1} ms, server cpu {relay_cpu:.2} s, coturn cpu {turn_cpu:.2} s"
    );
    // The server sees the relay's address; when its first check beat Pat's trickled relay
    // candidate, the webrtc crate reports that address as peer-reflexive and it counts as
    // `srflx` (src/sfu/path.rs). Either way it is not counted as a direct peer.
    let (on_relay, on_srflx) = (peers_on_path(&server.base, "relay").await, peers_on_path(&server.base, "srflx").await);
    if on_relay + on_srflx < 1 {
        return Err(format!("/metrics should count the relayed peer: relay {on_relay}, srflx {on_srflx}"));
    }
    step(&format!("/metrics: relay {on_relay}, srflx {on_srflx}"));

    // 3. Only the page and coturn's TLS port: TURN over TLS.
    ns.firewall(driver_port, &[rule(&page), rule(&format!("-p tcp --dport {}", turn.tls_port))], false)?;
    let tls = pat_joins(pat, 3, &server.base, "relay").await?;
    step(&format!("TURN over TLS: {tls}"));
    if tls["network"]["relayProtocol"] != "tls" {
        return Err(format!("the relay should be reached over TLS: {tls}"));
    }

    // 4. UDP dropped, TCP to the server (but not to coturn): ICE over TCP.
    let no_turn = [
        rule(&format!("-p tcp --dport {} -j DROP", turn.port)),
        rule(&format!("-p tcp --dport {} -j DROP", turn.tls_port)),
        rule(&format!("-p tcp -d {}", ns.outer_ip)),
    ];
    ns.firewall(driver_port, &no_turn, false)?;
    let tcp = pat_joins(pat, 4, &server.base, "tcp").await?;
    step(&format!("ICE over TCP: {tcp}"));
    let on_tcp = peers_on_path(&server.base, "tcp").await;
    if on_tcp < 1 {
        return Err(format!("/metrics should count an ICE-TCP peer: {on_tcp}"));
    }

    // 5. Only the page: no media path at all. The page says so within 10 s.
    ns.firewall(driver_port, &[rule(&page)], false)?;
    fresh_join(pat, 5, &server.base).await?;
    let stuck = poll(pat, "the page to say nothing connects", STUCK_DEADLINE, |v| v["stuck"].is_string()).await?;
    step(&format!("nothing connects: {stuck}"));
    let text = stuck["stuck"].as_str().unwrap_or_default();
    if !text.contains("cannot connect your audio and video") || !text.contains("mobile data") {
        return Err(format!("the page should say plainly what happened and what to try: {text}"));
    }
    fx.shot(pat, "pat-stuck").await;
    Ok(())
}
