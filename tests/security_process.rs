//! Security hardening against the real `hearth` binary (spawned with its environment, read from
//! its stderr, its SQLite file and a test Redis): log lines cannot be forged, a session leaves
//! no names, texts or tokens in logs or on disk, crafted room state in Redis neither breaks a
//! room nor redirects clients, and named polls put no names in Redis.

mod common;

use common::redis::Redis;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth::auth::{Role, TokenIssuer};
use hearth::client::SignalClient;
use hearth::config::{unique_temp_path, DEV_TOKEN_SECRET};
use hearth::room::{ParticipantId, RoomId};
use hearth::signal::protocol::{
    ClientMessage, ErrorCode, MilestoneKind, PollScope, Sdp, ServerMessage, PROTOCOL_VERSION,
};

const WAIT: Duration = Duration::from_secs(15);

/// One `hearth` process; its stderr goes to a file the test reads.
struct Node {
    child: Child,
    base: String,
    log: PathBuf,
    db: PathBuf,
}

impl Node {
    fn start(name: &str, env: &[(&str, String)]) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("security-{name}-{}.log", std::process::id()));
        let db = unique_temp_path(&format!("hearth-security-{name}"), "db");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("HEARTH_SERVER__LISTEN", "127.0.0.1:0")
            .env("HEARTH_SERVER__SHUTDOWN_GRACE_MS", "300")
            .env("HEARTH_STORE__PATH", &db)
            .env("HEARTH_ROOMS__RECONNECT_GRACE_MS", "2000")
            .env("HEARTH_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("hearth binary runs");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let base = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "node {name} did not start: {line:?}");
        Self { child, base, log, db }
    }

    fn clustered(name: &str, redis: &Redis, extra: &[(&str, String)]) -> Self {
        let mut env = vec![
            ("HEARTH_CLUSTER__REDIS_URL", redis.url()),
            ("HEARTH_CLUSTER__NODE_ID", name.to_string()),
            ("HEARTH_CLUSTER__HEARTBEAT_MS", "250".to_string()),
            ("HEARTH_CLUSTER__NODE_TTL_MS", "1000".to_string()),
            ("HEARTH_CLUSTER__DRAIN_GRACE_MS", "300".to_string()),
        ];
        env.extend(extra.iter().cloned());
        Self::start(name, &env)
    }

    fn ws(&self) -> String {
        hearth::cluster::ws_url_of(&self.base)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until the log contains `needle`.
    async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < deadline, "`{needle}` never logged:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops with SIGTERM (clean shutdown: the SQLite WAL is checkpointed or left beside it).
    fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(room: &str, role: Role, name: &str, id: &str) -> String {
    TokenIssuer::new(DEV_TOKEN_SECRET).mint(&RoomId::new(room).unwrap(), role, name, Some(id), Duration::from_secs(600)).unwrap().0
}

fn pid(s: &str) -> ParticipantId {
    ParticipantId::from_trusted(s)
}

/// Connects to `ws`, joins, and returns the client with the first answer to the join.
async fn join(ws: &str, room: &str, token: String) -> (SignalClient, ServerMessage) {
    let mut c = SignalClient::connect(ws).await.expect("connect");
    c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token }).await.unwrap();
    let first = c
        .recv_until("join answer", WAIT, |m| {
            matches!(m, ServerMessage::Joined { .. } | ServerMessage::Error { .. } | ServerMessage::Redirect { .. })
        })
        .await
        .expect("an answer to join");
    (c, first)
}

/// Joins through `ws` until the room is served there (a dead owner's lease runs out first).
async fn join_here(ws: &str, room: &str, token: &str) -> SignalClient {
    let deadline = Instant::now() + WAIT;
    loop {
        let (c, first) = join(ws, room, token.to_string()).await;
        if matches!(first, ServerMessage::Joined { .. }) {
            return c;
        }
        assert!(Instant::now() < deadline, "never joined at {ws}: {first:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sdp_error_text_cannot_forge_log_lines() {
    let node = Node::start("logs", &[]);
    let (mut t, first) = join(&node.ws(), "logs", token("logs", Role::Therapist, "T", "t-logs")).await;
    assert!(matches!(first, ServerMessage::Joined { .. }), "{first:?}");
    let forged = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\nFAKE LOG LINE level=ERROR\rFAKE\n\u{1b}[2J\u{202E}FAKE";
    t.send(&ClientMessage::Offer(Sdp { sdp: forged.into() })).await.unwrap();
    t.recv_until("negotiation error", WAIT, |m| matches!(m, ServerMessage::Error { code: ErrorCode::Negotiation, .. })).await.unwrap();
    node.wait_log("negotiation step failed").await;
    let log = node.stderr();
    for line in log.lines() {
        assert!(!line.trim_start().starts_with("FAKE"), "a forged log line: {line:?}\n{log}");
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202E}') && !line.contains('\r'),
            "a raw control or bidi character in the log: {line:?}"
        );
    }
}
