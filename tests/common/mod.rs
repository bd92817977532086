//! Shared test harness: the real server on 127.0.0.1:0, and helpers to reach it.
//!
//! Protocol tests join with [`join`] (or [`try_join`] for a refusal, [`join_media`] for a
//! webrtc-crate peer), with one deadline ([`WAIT`]) for any message the server owes, and read
//! what they wait for with [`recv!`] (or [`expect_error`] for a refusal). Browser tests use
//! [`fixture::BrowserTest`].
#![allow(dead_code, unused_macros)]

/// Reads a client's messages until one matches a pattern, skipping the others, within [`WAIT`];
/// on a timeout or a closed socket it panics naming the pattern and the types it skipped.
///
/// `recv!(alice, ServerMessage::Admitted { .. })` returns the message;
/// `recv!(alice, ServerMessage::WaitingList { waiting } if waiting.len() == 2 => waiting)` returns
/// the expression after `=>`, with the pattern's bindings (taken by value).
macro_rules! recv {
    ($client:expr, $pat:pat $(if $guard:expr)? => $then:expr) => {{
        use $crate::common::RecvBefore as _;
        let deadline = tokio::time::Instant::now() + $crate::common::WAIT;
        let mut skipped: Vec<&'static str> = Vec::new();
        loop {
            let message = $client.recv_before(deadline, stringify!($pat), &skipped).await;
            #[allow(unreachable_patterns, unused_variables)]
            match message {
                $pat $(if $guard)? => break $then,
                other => skipped.push(<&'static str>::from(&other)),
            }
        }
    }};
    ($client:expr, $pat:pat $(if $guard:expr)?) => {{
        use $crate::common::RecvBefore as _;
        let deadline = tokio::time::Instant::now() + $crate::common::WAIT;
        let mut skipped: Vec<&'static str> = Vec::new();
        loop {
            let message = $client.recv_before(deadline, stringify!($pat), &skipped).await;
            #[allow(unused_variables)]
            let hit = matches!(&message, $pat $(if $guard)?);
            if hit {
                break message;
            }
            skipped.push(<&'static str>::from(&message));
        }
    }};
}

pub mod a11y;
pub mod browser;
pub mod fixture;
pub mod netns;
pub mod redis;

use std::time::Duration;

use hearth::auth::Role;
use hearth::config::Config;
use hearth::room::RoomId;
use hearth::server::RunningServer;

/// This test process's scratch folder, `<tmp>/hearth-tests/<pid>`: test databases, configs and
/// certificates go here. A test binary has no hook at exit, so the first call of each run removes
/// the folders of runs whose process is gone; a suite run leaves at most its own behind.
pub fn test_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join("hearth-tests");
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
            if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    })
}

/// A path in [`test_dir`] no other call of this process returns.
pub fn unique_temp_path(prefix: &str, ext: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    test_dir().join(format!("{prefix}-{n}.{ext}"))
}

/// Embedded defaults fitted for tests: port 0, short grace periods, a database of its own,
/// and no per-address connection cap (every test client comes from 127.0.0.1; tests of the
/// caps set their own).
pub fn test_config() -> Config {
    let mut c = Config::from_toml_overrides("").expect("embedded defaults are valid");
    c.server.listen = "127.0.0.1:0".parse().expect("literal address");
    c.server.shutdown_grace_ms = 200;
    c.rooms.reconnect_grace_ms = 300;
    c.store.path = unique_temp_path("hearth-test", "db");
    c.limits.max_connections_per_ip = 10_000;
    // The shared media port on an ephemeral port: test servers run side by side.
    c.ice.udp_port = 0;
    c
}

pub async fn start_server() -> RunningServer {
    start_with(test_config()).await
}

pub async fn start_with(config: Config) -> RunningServer {
    init_tracing();
    hearth::server::start(config).await.expect("server starts")
}

/// Embedded defaults but without the waiting room: for tests about media and signaling.
pub async fn start_open_server() -> RunningServer {
    let mut c = test_config();
    c.rooms.waiting_room = false;
    start_with(c).await
}

/// A join token for `room`, signed by this server's secret.
pub fn token(server: &RunningServer, room: &str, role: Role, name: &str) -> String {
    let room = RoomId::new(room).expect("room id");
    server.state().tokens.mint(&room, role, name, None, Duration::from_secs(600)).expect("mint").0
}

/// A join token with a chosen participant id.
pub fn token_for(server: &RunningServer, room: &str, role: Role, name: &str, participant: &str) -> String {
    let room = RoomId::new(room).expect("room id");
    server.state().tokens.mint(&room, role, name, Some(participant), Duration::from_secs(600)).expect("mint").0
}

/// How long a protocol test waits for any one message the server owes it.
pub const WAIT: Duration = Duration::from_secs(10);

/// What a test asks of the 2-core machine it shares with the tests running beside it in this
/// process (see [`machine`]).
pub enum Load {
    /// webrtc-crate peers exchanging media: two such tests may run together.
    Media,
    /// Chromium pages (every browser test) or a dozen peers: alone among the media tests.
    Heavy,
}

/// Waits until the machine can take a test of this [`Load`], and holds its share until the
/// permit drops. All tests are one binary whose harness runs two at a time in any pairing; two
/// browser tests, or a browser test beside a dozen media peers, starved each other into
/// timeouts, while protocol tests beside either are harmless and take no share.
pub async fn machine(load: Load) -> tokio::sync::SemaphorePermit<'static> {
    static SHARES: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(2));
    let shares = match load {
        Load::Media => 1,
        Load::Heavy => 2,
    };
    SHARES.acquire_many(shares).await.expect("the semaphore is never closed")
}

/// A socket that joined a room, and the participant id the server gave it.
pub struct Joined {
    pub client: hearth::client::SignalClient,
    pub id: hearth::room::ParticipantId,
}

/// Connects, joins `room` as `role` named `name` (with participant id `id`, or one the token
/// issuer picks), and reads up to the first message of type `upto`: `"joined"` for a seat in
/// the room or its waiting list, `"admitted"` for admission, `"chatSettings"` for everything the
/// room sends on admission but its chat history. A refusal on the way is returned as its code.
pub async fn try_join(
    server: &RunningServer,
    room: &str,
    role: Role,
    name: &str,
    id: Option<&str>,
    upto: &str,
) -> Result<Joined, hearth::signal::protocol::ErrorCode> {
    use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
    let mut client = hearth::client::SignalClient::connect(&ws_url(server)).await.expect("connect");
    let token = match id {
        Some(id) => token_for(server, room, role, name, id),
        None => token(server, room, role, name),
    };
    client
        .send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).expect("room id"), token })
        .await
        .expect("send join");
    let id = match client.recv_until("joined", WAIT, |m| matches!(m, ServerMessage::Joined { .. } | ServerMessage::Error { .. })).await {
        Ok(ServerMessage::Joined { participant_id, .. }) => participant_id,
        Ok(ServerMessage::Error { code, .. }) => return Err(code),
        other => panic!("{name}: no reply to join: {other:?}"),
    };
    if upto != "joined" {
        assert!(<ServerMessage as strum::VariantNames>::VARIANTS.contains(&upto), "`{upto}` is not a server message type");
        let reply = client.recv_until(upto, WAIT, |m| <&'static str>::from(m) == upto || matches!(m, ServerMessage::Error { .. })).await;
        match reply {
            Ok(ServerMessage::Error { code, .. }) => return Err(code),
            Ok(_) => {}
            Err(e) => panic!("{name}: waiting for `{upto}` after joining: {e}"),
        }
    }
    Ok(Joined { client, id })
}

/// Joins `room` with participant id `id` and waits until admitted; panics on a refusal.
pub async fn join(server: &RunningServer, room: &str, role: Role, name: &str, id: &str) -> hearth::client::SignalClient {
    join_upto(server, room, role, name, id, "admitted").await
}

/// As [`join`], reading up to the first message of type `upto` (see [`try_join`]).
pub async fn join_upto(server: &RunningServer, room: &str, role: Role, name: &str, id: &str, upto: &str) -> hearth::client::SignalClient {
    match try_join(server, room, role, name, Some(id), upto).await {
        Ok(joined) => joined.client,
        Err(code) => panic!("{name}: join refused with {code:?}"),
    }
}

/// A webrtc-crate peer (light synthetic media) that joined `room` as participant `id` (also its name).
pub async fn join_media(server: &RunningServer, room: &str, role: Role, id: &str) -> hearth::client::MediaClient {
    let options = hearth::client::MediaOptions::light(ws_url(server), room, id).with_token(token_for(server, room, role, id, id));
    hearth::client::MediaClient::join(options).await.unwrap_or_else(|e| panic!("{id} joins: {e}"))
}
/// A participant id in a test (ids in tests are chosen, never minted).
pub fn pid(s: &str) -> hearth::room::ParticipantId {
    hearth::room::ParticipantId::from_trusted(s)
}

/// The next message before a deadline, for [`recv!`] (a method, so that the macro takes a client
/// and a `&mut` to one alike): panics, naming what it waited for and what it skipped, on a timeout
/// or a closed socket.
pub trait RecvBefore {
    async fn recv_before(
        &mut self,
        deadline: tokio::time::Instant,
        what: &str,
        skipped: &[&'static str],
    ) -> hearth::signal::protocol::ServerMessage;
}

impl RecvBefore for hearth::client::SignalClient {
    async fn recv_before(
        &mut self,
        deadline: tokio::time::Instant,
        what: &str,
        skipped: &[&'static str],
    ) -> hearth::signal::protocol::ServerMessage {
        match tokio::time::timeout_at(deadline, self.recv()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => panic!("the socket closed while waiting for `{what}` (skipped {skipped:?})"),
            Ok(Err(e)) => panic!("the socket failed while waiting for `{what}`: {e} (skipped {skipped:?})"),
            Err(_) => panic!("no `{what}` within {WAIT:?} (skipped {skipped:?})"),
        }
    }
}

/// Waits (bounded) for the next `error` on `c`, asserts its code and returns its message.
pub async fn expect_error(c: &mut hearth::client::SignalClient, code: hearth::signal::protocol::ErrorCode) -> String {
    use hearth::signal::protocol::ServerMessage;
    match c.recv_until("error", Duration::from_secs(10), |m| matches!(m, ServerMessage::Error { .. })).await {
        Ok(ServerMessage::Error { code: got, message }) => {
            assert_eq!(got, code, "{message}");
            message
        }
        other => panic!("expected an error {code:?}, got {other:?}"),
    }
}

pub fn ws_url(server: &RunningServer) -> String {
    format!("ws://{}/ws", server.addr())
}

/// GET /healthz as JSON.
pub async fn health(server: &RunningServer) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let body = buf.split("\r\n\r\n").nth(1).expect("body");
    serde_json::from_str(body).expect("json health")
}

/// Polls `f` every 50 ms until it is true or `wait` passes; returns the last value.
pub async fn eventually<F: FnMut() -> bool>(wait: Duration, mut f: F) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
                .unwrap_or_else(|_| "warn,rtc=error,webrtc=error,webrtc::peer_connection::driver=off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A bare HTTP/1.1 request; returns (status, body).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}
