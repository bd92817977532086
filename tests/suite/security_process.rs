//! Security hardening against the real `hearth` binary (spawned with its environment, read from
//! its stderr, its SQLite file and a test Redis): log lines cannot be forged, a session leaves
//! no names, texts or tokens in logs or on disk, crafted room state in Redis neither breaks a
//! room nor redirects clients, and named polls put no names in Redis.

use crate::common;

use common::pid;

use common::redis::Redis;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::unique_temp_path;
use hearth::auth::{Role, TokenIssuer};
use hearth::client::SignalClient;
use hearth::config::DEV_TOKEN_SECRET;
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, ErrorCode, MilestoneKind, PollScope, Sdp, ServerMessage, PROTOCOL_VERSION};

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
            .env("HEARTH_ICE__UDP_PORT", "0")
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
    for format in ["text", "json"] {
        let config = unique_temp_path("hearth-log-format", "toml");
        std::fs::write(&config, format!("[log]\nformat = \"{format}\"\n")).unwrap();
        let node = Node::start(&format!("logs-{format}"), &[("HEARTH_CONFIG", config.display().to_string())]);
        forge_a_log_line(&node).await;
        if format == "json" {
            for line in node.stderr().lines() {
                assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not one JSON event per line: {line:?}");
            }
        }
    }
}

async fn forge_a_log_line(node: &Node) {
    let (mut t, first) = join(&node.ws(), "logs", token("logs", Role::Therapist, "T", "t-logs")).await;
    assert!(matches!(first, ServerMessage::Joined { .. }), "{first:?}");
    let forged = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\nFAKE LOG LINE level=ERROR\rFAKE\n\u{1b}[2J\u{202E}FAKE";
    t.send(&ClientMessage::Offer(Sdp { sdp: forged.into() })).await.unwrap();
    recv!(t, ServerMessage::Error { code: ErrorCode::Negotiation, .. });
    node.wait_log("negotiation step failed").await;
    assert!(node.stderr().contains("FAKE LOG LINE"), "the test's text reached the log, escaped");
    let log = node.stderr();
    for line in log.lines() {
        assert!(!line.trim_start().starts_with("FAKE"), "a forged log line: {line:?}\n{log}");
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202E}') && !line.contains('\r'),
            "a raw control or bidi character in the log: {line:?}"
        );
    }
}

/// Reads (or writes) keys in the test's Redis.
async fn redis_con(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.expect("redis")
}

/// The snapshot that panicked the room task in the poll restore before snapshots were
/// validated: a named ballot for an option the poll does not have.
fn crafted_snapshot() -> String {
    r#"{"version":2,"locked":true,"waitingRoom":true,"banned":[],"remembered":{},
        "breakouts":{"rooms":[],"assignment":{},"open":false,"allowReturn":false,"closesAtMs":null,"generation":0,"nextId":0},
        "polls":[{"info":{"id":"poll-00000000000000aa","question":"Crafted?","options":[{"id":"o1","text":"A"},{"id":"o2","text":"B"}],
                  "multiple":false,"anonymous":false,"scope":"room"},
                  "space":null,"createdBy":"t","createdAtMs":1,"shared":false,"counts":[0,1],"totalVoters":1,
                  "ballots":{"kind":"named","ballots":[["p-1",[99]]]}}],
        "celebrationPrefs":{}}"#
        .to_string()
}

#[tokio::test]
async fn a_crafted_room_state_in_redis_neither_breaks_the_room_nor_leaks_into_the_log() {
    let redis = Redis::start();
    let mut con = redis_con(&redis).await;
    let _: () = redis::cmd("SET").arg("hearth:room:crafted:state").arg(crafted_snapshot()).query_async(&mut con).await.unwrap();
    let node = Node::clustered("crafted", &redis, &[]);
    // The room starts fresh: not locked, the therapist is in and the room answers.
    let (mut t, first) = join(&node.ws(), "crafted", token("crafted", Role::Therapist, "T", "t")).await;
    let ServerMessage::Joined { room, .. } = first else { panic!("join refused: {first:?}") };
    assert!(!room.locked, "the crafted state was taken over");
    t.send(&ClientMessage::LockRoom { locked: true }).await.unwrap();
    recv!(t, ServerMessage::RoomStateChanged { room } if room.locked);
    let (_p, first) = join(&node.ws(), "crafted", token("crafted", Role::Participant, "P", "p-2")).await;
    assert!(matches!(first, ServerMessage::Error { code: ErrorCode::RoomLocked, .. }), "{first:?}");
    node.wait_log("saved room state refused").await;
    assert!(!node.stderr().contains("Crafted?"), "the snapshot's content reached the log");
}

#[tokio::test]
async fn clients_are_never_redirected_to_a_node_url_outside_the_cluster() {
    let redis = Redis::start();
    let mut con = redis_con(&redis).await;
    // A node entry someone wrote into Redis, owning a room and looking idle.
    let evil = r#"{"id":"evil","url":"https://evil.example.org","media":[],"rooms":0,"participants":0,"cpuPercent":0.0,"draining":false,"version":"0"}"#;
    let _: () = redis::cmd("SET").arg("hearth:node:evil").arg(evil).arg("PX").arg(600_000).query_async(&mut con).await.unwrap();
    let _: () = redis::cmd("SADD").arg("hearth:nodes").arg("evil").query_async(&mut con).await.unwrap();
    let _: () = redis::cmd("SET").arg("hearth:room:owned-by-evil:owner").arg("evil").query_async(&mut con).await.unwrap();
    let node = Node::clustered("node-a", &redis, &[("HEARTH_CLUSTER__NODE_URLS", r#"["http://127.0.0.1"]"#.to_string())]);
    let (_c, first) = join(&node.ws(), "owned-by-evil", token("owned-by-evil", Role::Therapist, "T", "t")).await;
    assert!(!matches!(first, ServerMessage::Redirect { .. }), "redirected: {first:?}");
    assert!(matches!(first, ServerMessage::Error { code: ErrorCode::ClusterUnavailable, .. }), "{first:?}");
    // New rooms are never placed on it either (it looks less loaded and sorts first).
    for i in 0..3 {
        let room = format!("new-room-{i}");
        let (_c, first) = join(&node.ws(), &room, token(&room, Role::Therapist, "T", "t")).await;
        assert!(matches!(first, ServerMessage::Joined { .. }), "{room}: {first:?}");
    }
}

#[tokio::test]
async fn named_poll_ballots_in_redis_hold_ids_not_names() {
    let redis = Redis::start();
    let mut con = redis_con(&redis).await;
    let a = Node::clustered("node-a", &redis, &[]);
    let room = "named";
    let (t_tok, p_tok) = (token(room, Role::Therapist, "Dr Thalia", "t"), token(room, Role::Participant, "Wendeline Sprocket", "p-w"));
    let mut t = join_here(&a.ws(), room, &t_tok).await;
    let mut p = join_here(&a.ws(), room, &p_tok).await;
    t.send(&ClientMessage::Admit { participant_id: pid("p-w") }).await.unwrap();
    recv!(p, ServerMessage::Admitted { .. });
    t.send(&ClientMessage::CreatePoll {
        question: "Who comes next week?".into(),
        options: vec!["Me".into(), "Not me".into()],
        multiple: false,
        anonymous: false,
        duration_secs: None,
        scope: Some(PollScope::Room),
    })
    .await
    .unwrap();
    let poll = match recv!(p, ServerMessage::PollStarted { .. }) {
        ServerMessage::PollStarted { poll } => poll,
        _ => unreachable!(),
    };
    p.send(&ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![poll.options[0].id.clone()] }).await.unwrap();
    recv!(p, ServerMessage::VoteAccepted { .. });
    let key = format!("hearth:room:{room}:state");
    let deadline = Instant::now() + WAIT;
    let state = loop {
        let state: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap();
        if let Some(s) = state.filter(|s| s.contains("p-w")) {
            break s;
        }
        assert!(Instant::now() < deadline, "the vote never reached Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!state.contains("Wendeline") && !state.contains("Sprocket") && !state.contains("Thalia"), "a name in Redis: {state}");

    // The poll still moves to another node with its ballot; the name comes from the live member.
    let b = Node::clustered("node-b", &redis, &[]);
    let mut a = a;
    let _ = a.child.kill();
    let _ = a.child.wait();
    drop((t, p));
    let mut t = join_here(&b.ws(), room, &t_tok).await;
    let mut p = join_here(&b.ws(), room, &p_tok).await;
    recv!(p, ServerMessage::Admitted { .. });
    recv!(p, ServerMessage::VoteAccepted { poll_id, .. } if *poll_id == poll.id);
    p.send(&ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![poll.options[0].id.clone()] }).await.unwrap();
    let m = recv!(t, ServerMessage::PollResults(r) if r.poll_id == poll.id && r.by_option.as_ref().is_some_and(|b| !b[0].voters.is_empty() && !b[0].voters[0].name.is_empty()));
    let ServerMessage::PollResults(r) = m else { unreachable!() };
    assert_eq!(r.total_voters, 1, "the ballot was restored, not added again");
    let voters = &r.by_option.unwrap()[0].voters;
    assert_eq!((voters[0].participant_id.as_str(), voters[0].name.as_str()), ("p-w", "Wendeline Sprocket"));
}

#[tokio::test]
async fn a_full_session_leaves_no_names_texts_or_tokens_in_logs_or_on_disk() {
    let mut node = Node::start("session", &[]);
    let room = "confidential";
    let (t_name, p_name) = ("Thalia Quenby", "Wendeline Sprocket");
    let (t_tok, p_tok) = (token(room, Role::Therapist, t_name, "t-1"), token(room, Role::Participant, p_name, "p-1"));
    let (chat, question, options) =
        ("zebra forty two said in confidence", "How heliotrope is your week?", ["Marigold answer", "Periwinkle answer"]);
    let (label, note) = ("Tamarind milestone label", "Quokka celebration note");
    let mut t = join_here(&node.ws(), room, &t_tok).await;
    let mut p = join_here(&node.ws(), room, &p_tok).await;
    t.send(&ClientMessage::Admit { participant_id: pid("p-1") }).await.unwrap();
    recv!(p, ServerMessage::Admitted { .. });
    p.send(&ClientMessage::Chat { text: chat.into(), to: None }).await.unwrap();
    recv!(t, ServerMessage::ChatMessage(e) if e.text == chat);
    t.send(&ClientMessage::CreatePoll {
        question: question.into(),
        options: options.iter().map(|o| (*o).into()).collect(),
        multiple: false,
        anonymous: false,
        duration_secs: None,
        scope: None,
    })
    .await
    .unwrap();
    let poll = match recv!(p, ServerMessage::PollStarted { .. }) {
        ServerMessage::PollStarted { poll } => poll,
        _ => unreachable!(),
    };
    p.send(&ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![poll.options[1].id.clone()] }).await.unwrap();
    recv!(t, ServerMessage::PollResults(r) if r.total_voters == 1);
    t.send(&ClientMessage::ClosePoll { poll_id: poll.id.clone() }).await.unwrap();
    recv!(t, ServerMessage::PollClosed { .. });
    t.send(&ClientMessage::Celebrate {
        participant_id: pid("p-1"),
        kind: MilestoneKind::Custom,
        value: None,
        label: Some(label.into()),
        message: Some(note.into()),
    })
    .await
    .unwrap();
    recv!(t, ServerMessage::Celebration { .. });
    p.send(&ClientMessage::RequestSupport).await.unwrap();
    recv!(t, ServerMessage::SupportRequested { .. });
    p.send(&ClientMessage::Leave).await.unwrap();
    t.send(&ClientMessage::Leave).await.unwrap();
    node.wait_log("room closed").await;
    node.stop();

    let log = node.stderr();
    assert!(log.contains("DEBUG"), "the session ran with debug logging");
    let signature = |tok: &str| tok.rsplit('.').next().unwrap_or_default().to_string();
    let mut secret: Vec<String> = vec![
        t_name.into(),
        p_name.into(),
        chat.into(),
        question.into(),
        label.into(),
        note.into(),
        t_tok.clone(),
        p_tok.clone(),
        signature(&t_tok),
        signature(&p_tok),
    ];
    secret.extend(options.iter().map(|o| o.to_string()));
    for s in &secret {
        assert!(!log.contains(s.as_str()), "`{s}` is in the log");
    }
    // On disk: the SQLite file and its write-ahead log. The poll's question and options and the
    // milestone's label are kept for the summary and the history, but sealed (store.rs).
    let mut disk = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", node.db.display()));
        disk.extend(std::fs::read(&path).unwrap_or_default());
    }
    assert!(!disk.is_empty(), "the store was written at {}", node.db.display());
    let disk = String::from_utf8_lossy(&disk);
    for s in &secret {
        assert!(!disk.contains(s.as_str()), "`{s}` is in the SQLite store");
    }
}

#[tokio::test]
async fn a_ban_outlasts_the_room_and_its_node() {
    let redis = Redis::start();
    let room = "banned-across-nodes";
    let (t_tok, p_tok) = (token(room, Role::Therapist, "T", "t"), token(room, Role::Participant, "P", "p-gone"));
    let mut a = Node::clustered("node-a", &redis, &[]);
    let mut t = join_here(&a.ws(), room, &t_tok).await;
    let mut p = join_here(&a.ws(), room, &p_tok).await;
    t.send(&ClientMessage::Admit { participant_id: pid("p-gone") }).await.unwrap();
    recv!(p, ServerMessage::Admitted { .. });
    t.send(&ClientMessage::Remove { participant_id: pid("p-gone") }).await.unwrap();
    recv!(p, ServerMessage::SessionEnded { .. });
    t.send(&ClientMessage::Leave).await.unwrap();
    a.wait_log("room closed").await;
    a.stop();
    // Another node makes the room again from what Redis kept: the bans.
    let b = Node::clustered("node-b", &redis, &[]);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_c, first) = join(&b.ws(), room, p_tok.clone()).await;
        match first {
            ServerMessage::Error { code: ErrorCode::Banned, .. } => break,
            ServerMessage::Error { code: ErrorCode::ClusterUnavailable, .. } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("the removed participant got back in: {other:?}"),
        }
    }
    let (_t, first) = join(&b.ws(), room, t_tok).await;
    assert!(matches!(first, ServerMessage::Joined { .. }), "{first:?}");
}

#[tokio::test]
async fn a_location_given_at_the_door_stays_out_of_redis_disk_and_logs_and_the_queue_moves_nodes() {
    let redis = Redis::start();
    let mut con = redis_con(&redis).await;
    let room = "door-and-queue";
    let location = "Quillback Lane 42, back bedroom";
    let (t_tok, p_tok) = (token(room, Role::Therapist, "T", "t-1"), token(room, Role::Participant, "P", "p-1"));
    let mut a = Node::clustered("door-a", &redis, &[]);
    let mut t = join_here(&a.ws(), room, &t_tok).await;
    t.send(&ClientMessage::SetAgreement { text: Some("Stay private.".into()), ask_location: true }).await.unwrap();
    let mut p = join_here(&a.ws(), room, &p_tok).await;
    let version = match recv!(p, ServerMessage::Agreement { version: Some(_), .. }) {
        ServerMessage::Agreement { version: Some(v), .. } => v,
        _ => unreachable!(),
    };
    p.send(&ClientMessage::AcceptAgreement { version, location: Some(location.into()) }).await.unwrap();
    t.recv_until(
        "location",
        WAIT,
        |m| matches!(m, ServerMessage::AgreementStatuses { people } if people.iter().any(|s| s.location.as_deref() == Some(location))),
    )
    .await
    .unwrap();
    t.send(&ClientMessage::Admit { participant_id: pid("p-1") }).await.unwrap();
    recv!(p, ServerMessage::Admitted { .. });
    p.send(&ClientMessage::RaiseHand).await.unwrap();
    let key = format!("hearth:room:{room}:state");
    let deadline = Instant::now() + WAIT;
    let state = loop {
        let state: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap();
        if let Some(s) = state.filter(|s| s.contains("speakingQueue") && s.contains("\"p-1\"")) {
            break s;
        }
        assert!(Instant::now() < deadline, "the queue never reached Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!state.contains("Quillback"), "the location is in Redis: {state}");

    // The room moves to another node: the hand keeps its place there.
    let b = Node::clustered("door-b", &redis, &[]);
    let _ = a.child.kill();
    let _ = a.child.wait();
    drop((t, p));
    let mut t = join_here(&b.ws(), room, &t_tok).await;
    let mut p = join_here(&b.ws(), room, &p_tok).await;
    recv!(p, ServerMessage::Admitted { .. });
    t.recv_until(
        "queue",
        WAIT,
        |m| matches!(m, ServerMessage::SpeakingQueue { queue, .. } if queue.len() == 1 && queue[0].participant_id == pid("p-1")),
    )
    .await
    .unwrap();
    let mut b = b;
    p.send(&ClientMessage::Leave).await.unwrap();
    t.send(&ClientMessage::Leave).await.unwrap();
    b.wait_log("room closed").await;
    b.stop();
    a.stop();

    let mut seen = a.stderr() + &b.stderr();
    for db in [&a.db, &b.db] {
        for suffix in ["", "-wal", "-shm"] {
            seen.push_str(&String::from_utf8_lossy(&std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default()));
        }
    }
    assert!(seen.contains("DEBUG"), "the nodes ran with debug logging");
    assert!(!seen.contains("Quillback"), "the location is in a log or a database");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.unwrap();
    for k in keys {
        let v: Option<String> = redis::cmd("GET").arg(&k).query_async(&mut con).await.unwrap_or(None);
        assert!(!v.unwrap_or_default().contains("Quillback"), "the location is in Redis under {k}");
    }
}
