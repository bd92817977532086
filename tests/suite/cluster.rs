//! Relay nodes: a real redis-server and two real `hearth` processes on loopback.
//! Participants join the same room through different nodes and meet on its owner; killing the
//! owner with SIGKILL moves the room, with its breakouts and open poll, to the other node; a
//! drain (SIGTERM) moves everyone without losing anyone.

use crate::common;

use common::pid;

use common::redis::Redis;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::unique_temp_path;
use hearth::auth::{Role, TokenIssuer};
use hearth::client::{MediaClient, MediaOptions};
use hearth::config::DEV_TOKEN_SECRET;
use hearth::room::RoomId;
use hearth::signal::protocol::{
    CelebrationAudience, CelebrationStyle, ClientMessage, MediaKind, PollId, PollScope, RedirectReason, ServerMessage,
};

const WAIT: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// One `hearth` process in the cluster.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    fn start(id: &str, redis: &Redis) -> Self {
        let log_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        let _ = std::fs::create_dir_all(&log_dir);
        let log = std::fs::File::create(log_dir.join(format!("cluster-{id}.log"))).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("HEARTH_SERVER__LISTEN", "127.0.0.1:0")
            .env("HEARTH_ICE__UDP_PORT", "0")
            .env("HEARTH_SERVER__SHUTDOWN_GRACE_MS", "300")
            .env("HEARTH_STORE__PATH", unique_temp_path(&format!("hearth-cluster-{id}"), "db"))
            .env("HEARTH_ROOMS__RECONNECT_GRACE_MS", "2000")
            .env("HEARTH_CLUSTER__REDIS_URL", redis.url())
            .env("HEARTH_CLUSTER__NODE_ID", id)
            .env("HEARTH_CLUSTER__HEARTBEAT_MS", "250")
            .env("HEARTH_CLUSTER__NODE_TTL_MS", "1000")
            .env("HEARTH_CLUSTER__DRAIN_GRACE_MS", "300")
            .env("HEARTH_LOG", "info,rtc=error,webrtc=error,webrtc::peer_connection::driver=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("hearth binary runs");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let base = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "node {id} did not start: {line:?}");
        Self { child, base }
    }

    fn ws(&self) -> String {
        hearth::cluster::ws_url_of(&self.base)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tokens() -> TokenIssuer {
    TokenIssuer::new(DEV_TOKEN_SECRET)
}

fn opts(room: &str, role: Role, id: &str, entries: [&str; 2]) -> MediaOptions {
    let token = tokens().mint(&RoomId::new(room).unwrap(), role, id, Some(id), Duration::from_secs(600)).unwrap().0;
    let mut o = MediaOptions::light(entries[0], room, id).with_token(token);
    o.fallback_urls = vec![entries[1].to_string()];
    o
}

async fn admit(t: &MediaClient, ids: &[&str]) {
    for id in ids {
        t.send(ClientMessage::Admit { participant_id: pid(id) });
    }
}

async fn wait_admitted(c: &mut MediaClient) {
    if !c.admitted {
        c.wait_for("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.expect("admitted");
        c.admitted = true;
    }
}

/// Waits until `c` receives fresh audio from `from` (more than it had), up to `wait`.
async fn hears(c: &MediaClient, from: &str, wait: Duration) -> bool {
    let before = c.packets_from(&pid(from), MediaKind::Audio);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if c.packets_from(&pid(from), MediaKind::Audio) > before + 5 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn wait_disconnected(c: &MediaClient) {
    let deadline = Instant::now() + WAIT;
    while c.is_connected() {
        assert!(Instant::now() < deadline, "client never noticed its node went away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_survives_its_node_being_killed() {
    let _machine = common::machine(common::Load::Media).await;
    let redis = Redis::start();
    let a = Node::start("node-a", &redis);
    let b = Node::start("node-b", &redis);
    let (wa, wb) = (a.ws(), b.ws());
    let room = "failover";

    // The therapist comes in through A, the participants through B and A: whichever node owns
    // the room, someone's join went through the other one and was redirected.
    let t = MediaClient::join_any(opts(room, Role::Therapist, "t1", [&wa, &wb]), WAIT).await.expect("therapist joins");
    let mut p1 = MediaClient::join_any(opts(room, Role::Participant, "p1", [&wb, &wa]), WAIT).await.expect("p1 joins");
    let mut p2 = MediaClient::join_any(opts(room, Role::Participant, "p2", [&wa, &wb]), WAIT).await.expect("p2 joins");
    let owner = t.node_url.clone();
    assert_eq!(p1.node_url, owner, "everyone meets on the room's owner");
    assert_eq!(p2.node_url, owner);
    let (killed, survivor) = if owner == wa { (a, b) } else { (b, a) };
    assert_eq!(owner, killed.ws());
    assert!(!p1.admitted && !p2.admitted, "the waiting room holds new participants");
    admit(&t, &["p1", "p2"]).await;
    wait_admitted(&mut p1).await;
    wait_admitted(&mut p2).await;
    let mut t = t;

    // A breakout with both participants, and an open anonymous poll with one vote.
    t.send(ClientMessage::CreateBreakout { name: "Pairs".into() });
    let breakout = match t
        .wait_for("plan", WAIT, |m| matches!(m, ServerMessage::BreakoutsUpdated { breakouts } if !breakouts.rooms.is_empty()))
        .await
        .expect("plan")
    {
        ServerMessage::BreakoutsUpdated { breakouts } => breakouts.rooms[0].id.clone(),
        _ => unreachable!(),
    };
    for p in ["p1", "p2"] {
        t.send(ClientMessage::AssignBreakout { participant_id: pid(p), breakout_id: Some(breakout.clone()) });
    }
    t.send(ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: false });
    for c in [&mut p1, &mut p2] {
        c.wait_for("spaceChanged", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { breakout: Some(_), .. })).await.expect("moved");
    }
    t.send(ClientMessage::CreatePoll {
        question: "How is the pace?".into(),
        options: vec!["Good".into(), "Too fast".into()],
        multiple: false,
        anonymous: true,
        duration_secs: None,
        scope: Some(PollScope::AllBreakouts),
    });
    let poll = match p1.wait_for("pollStarted", WAIT, |m| matches!(m, ServerMessage::PollStarted { .. })).await.expect("poll") {
        ServerMessage::PollStarted { poll } => poll,
        _ => unreachable!(),
    };
    p1.send(ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![poll.options[1].id.clone()] });
    p1.wait_for("voteAccepted", WAIT, |m| matches!(m, ServerMessage::VoteAccepted { .. })).await.expect("vote");
    assert!(hears(&p1, "p2", WAIT).await, "p1 hears p2 in the breakout before the failure");
    // p1's celebration preference and permission to share the screen; p4 joins and is removed
    // (banned); then the room is locked.
    p1.send(ClientMessage::SetCelebrationPreferences { style: CelebrationStyle::Big, audience: CelebrationAudience::Group });
    p1.wait_for("prefs", WAIT, |m| matches!(m, ServerMessage::CelebrationPreferences { chosen: true, .. })).await.expect("prefs saved");
    t.send(ClientMessage::AllowScreenShare { participant_id: pid("p1"), allowed: true });
    p1.wait_for(
        "allowed",
        WAIT,
        |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == pid("p1") && participant.can_share_screen),
    )
    .await
    .expect("p1 may share");
    let mut p4_opts = opts(room, Role::Participant, "p4", [&wb, &wa]);
    p4_opts.publish_audio = false;
    p4_opts.publish_video = false;
    let p4 = MediaClient::join_any(p4_opts.clone(), WAIT).await.expect("p4 joins");
    t.send(ClientMessage::Remove { participant_id: pid("p4") });
    wait_disconnected(&p4).await;
    p4.close().await;
    t.send(ClientMessage::LockRoom { locked: true });
    t.wait_for("locked", WAIT, |m| matches!(m, ServerMessage::RoomStateChanged { room } if room.locked)).await.expect("locked");
    // Give the room's state write a moment to reach Redis (it is written on every change).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SIGKILL the owner: no drain, no goodbye.
    let mut killed = killed;
    killed.child.kill().expect("kill -9");
    let _ = killed.child.wait();
    let killed_at = Instant::now();
    for c in [&t, &p1, &p2] {
        wait_disconnected(c).await;
    }
    let (t, p1, p2) = tokio::join!(t.rejoin(WAIT), p1.rejoin(WAIT), p2.rejoin(WAIT));
    let (mut t, mut p1, mut p2) = (t.expect("t back"), p1.expect("p1 back"), p2.expect("p2 back"));
    for c in [&t, &p1, &p2] {
        assert_eq!(c.node_url, survivor.ws(), "everyone is on the surviving node");
        assert!(c.admitted, "admission survived: nobody is sent back to the waiting room");
    }
    let p1_info = p1.roster.iter().find(|i| i.id == pid("p1")).cloned();
    assert!(p1_info.as_ref().is_some_and(|i| i.can_share_screen), "the screen-share permission survived: {p1_info:?}");
    // Media resumes in the restored breakout.
    assert!(hears(&p1, "p2", WAIT).await && hears(&p2, "p1", WAIT).await, "media resumes between p1 and p2");
    let resumed = killed_at.elapsed();
    println!("media resumed {} ms after the owner was killed", resumed.as_millis());
    assert!(resumed < Duration::from_secs(5), "media resumed only after {resumed:?}");

    // The breakout assignment came back with the room...
    for c in [&mut p1, &mut p2] {
        let m = c
            .wait_for("spaceChanged", WAIT, |m| matches!(m, ServerMessage::SpaceChanged { breakout: Some(_), .. }))
            .await
            .expect("back in the breakout");
        let ServerMessage::SpaceChanged { breakout: Some(b), .. } = m else { unreachable!() };
        assert_eq!(b.id, breakout);
    }
    // ... and media still follows it: the therapist in the main room hears neither.
    let before = t.packets_from(&pid("p1"), MediaKind::Audio) + t.packets_from(&pid("p2"), MediaKind::Audio);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = t.packets_from(&pid("p1"), MediaKind::Audio) + t.packets_from(&pid("p2"), MediaKind::Audio);
    assert_eq!(before, after, "the main room hears nothing from the breakout");

    // The open poll came back with its vote, and p1's ballot is still recognised: voting again
    // changes the choice instead of adding a voter.
    let tally = |m: &ServerMessage, id: &PollId| matches!(m, ServerMessage::PollResults(t) if &t.poll_id == id);
    let m = t.wait_for("pollResults", WAIT, |m| tally(m, &poll.id)).await.expect("results after the move");
    let ServerMessage::PollResults(r) = m else { unreachable!() };
    assert_eq!((r.total_voters, r.counts[1].count), (1, 1), "the vote survived the node");
    p2.wait_for("open poll", WAIT, |m| matches!(m, ServerMessage::PollStarted { poll: p } if p.id == poll.id))
        .await
        .expect("p2 sees the poll");
    p1.send(ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![poll.options[0].id.clone()] });
    let m = t
        .wait_for("changed vote", WAIT, |m| matches!(m, ServerMessage::PollResults(r) if r.poll_id == poll.id && r.counts[0].count == 1))
        .await
        .expect("results after the changed vote");
    let ServerMessage::PollResults(r) = m else { unreachable!() };
    assert_eq!(r.total_voters, 1, "the same voter, recognised on the new node");
    assert_eq!(r.counts[1].count, 0);

    // The preference chosen on the dead node is known on this one.
    p1.send(ClientMessage::GetCelebrationPreferences);
    let m = p1.wait_for("prefs", WAIT, |m| matches!(m, ServerMessage::CelebrationPreferences { .. })).await.expect("prefs");
    assert_eq!(
        m,
        ServerMessage::CelebrationPreferences { style: CelebrationStyle::Big, audience: CelebrationAudience::Group, chosen: true }
    );
    // The ban and the lock came back too: the removed participant and a newcomer are refused.
    match MediaClient::join_any(p4_opts, WAIT).await {
        Err(e) => assert!(e.to_string().contains("banned"), "{e}"),
        Ok(_) => panic!("a removed participant got back in after the move"),
    }
    let mut p5 = opts(room, Role::Participant, "p5", [&survivor.ws(), &survivor.ws()]);
    p5.publish_audio = false;
    p5.publish_video = false;
    match MediaClient::join_any(p5, WAIT).await {
        Err(e) => assert!(e.to_string().contains("room_locked"), "{e}"),
        Ok(_) => panic!("a newcomer got into the locked room after the move"),
    }
    for c in [t, p1, p2] {
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_node_moves_everyone() {
    let _machine = common::machine(common::Load::Media).await;
    let redis = Redis::start();
    let a = Node::start("drain-a", &redis);
    let b = Node::start("drain-b", &redis);
    let (wa, wb) = (a.ws(), b.ws());
    let room = "drain";
    let ids = ["t1", "p1", "p2", "p3"];
    let mut clients = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let role = if i == 0 { Role::Therapist } else { Role::Participant };
        let entries = if i % 2 == 0 { [wa.as_str(), wb.as_str()] } else { [wb.as_str(), wa.as_str()] };
        let mut c = MediaClient::join_any(opts(room, role, id, entries), WAIT).await.expect("joins");
        if i == 0 {
            clients.push(c);
            continue;
        }
        admit(&clients[0], &[id]).await;
        wait_admitted(&mut c).await;
        clients.push(c);
    }
    let owner = clients[0].node_url.clone();
    assert!(clients.iter().all(|c| c.node_url == owner));
    assert!(hears(&clients[1], "p2", WAIT).await);
    let mut a = a;
    let mut b = b;
    let (draining, other_ws) = if owner == wa { (&mut a, b.ws()) } else { (&mut b, a.ws()) };

    // SIGTERM: the node drains (no new rooms, then moves its rooms) before it exits.
    let status = Command::new("kill").args(["-TERM", &draining.pid().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    let mut moved = Vec::new();
    for mut c in clients {
        let m = c.wait_for("redirect", WAIT, |m| matches!(m, ServerMessage::Redirect { .. })).await.expect("told to move");
        let ServerMessage::Redirect { url, reason } = m else { unreachable!() };
        assert_eq!(reason, RedirectReason::Draining);
        assert_eq!(url, other_ws, "sent straight to the node that took the room");
        wait_disconnected(&c).await;
        moved.push(c.rejoin(WAIT));
    }
    let mut back = Vec::new();
    for f in moved {
        back.push(f.await.expect("rejoined"));
    }
    for c in &back {
        assert_eq!(c.node_url, other_ws);
        assert!(c.admitted, "nobody goes back to the waiting room");
    }
    // Everyone is there: the therapist's roster after the move has all four people.
    let roster: Vec<_> = back[0].roster.iter().map(|p| p.id.to_string()).collect();
    let mut t = back.remove(0);
    let mut seen: std::collections::HashSet<String> = roster.into_iter().collect();
    let deadline = Instant::now() + WAIT;
    while seen.len() < ids.len() && Instant::now() < deadline {
        if let Ok(ServerMessage::ParticipantJoined { participant }) =
            t.wait_for("joined", Duration::from_millis(500), |m| matches!(m, ServerMessage::ParticipantJoined { .. })).await
        {
            seen.insert(participant.id.to_string());
        }
    }
    assert_eq!(seen.len(), ids.len(), "no participant lost: {seen:?}");
    assert!(hears(&back[0], "p2", WAIT).await, "media flows on the new node");
    // The drained node exits by itself once its rooms have moved.
    let deadline = Instant::now() + WAIT;
    loop {
        match draining.child.try_wait().expect("wait") {
            Some(status) => {
                assert!(status.success(), "a drained node exits cleanly: {status}");
                break;
            }
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            None => panic!("the drained node did not exit"),
        }
    }
    t.close().await;
    for c in back {
        c.close().await;
    }
}

#[tokio::test]
async fn admin_endpoints_need_the_key_and_a_cluster() {
    const KEY: &str = "an-api-key-of-at-least-24-characters";
    // A node that runs alone has nothing to drain.
    let mut alone = common::test_config();
    alone.auth.api_key = KEY.into();
    let alone = common::start_with(alone).await;
    let auth = format!("Bearer {KEY}");
    let (status, body) = common::http(alone.addr(), "POST", "/api/admin/drain", &[("Authorization", &auth)], "").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("not_clustered"));

    let redis = Redis::start();
    let mut cfg = common::test_config();
    cfg.auth.api_key = KEY.into();
    cfg.cluster.redis_url = redis.url();
    cfg.cluster.node_id = "admin-node".into();
    cfg.cluster.drain_grace_ms = 60_000;
    let node = common::start_with(cfg).await;
    for (headers, expect) in [(vec![], 401), (vec![("Authorization", "Bearer wrong-key-wrong-key-wrong-key")], 401)] {
        let (status, _) = common::http(node.addr(), "POST", "/api/admin/drain", &headers, "").await;
        assert_eq!(status, expect);
    }
    let health = common::health(&node).await;
    assert_eq!(health["status"], "ok", "a refused drain changes nothing");
    assert_eq!(health["node"], "admin-node");
    let (status, body) = common::http(node.addr(), "GET", "/api/admin/cluster", &[("Authorization", &auth)], "").await;
    assert_eq!(status, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listing["nodes"][0]["id"], "admin-node");
    assert_eq!(listing["nodes"][0]["draining"], false);

    let (status, body) = common::http(node.addr(), "POST", "/api/admin/drain", &[("Authorization", &auth)], "").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(common::health(&node).await["status"], "draining");
    let (_, body) = common::http(node.addr(), "GET", "/api/admin/cluster", &[("Authorization", &auth)], "").await;
    assert!(body.contains(r#""draining":true"#), "the registry says so too: {body}");
    // A draining node takes no new rooms; with no other node, it still serves the join
    // rather than refuse it.
    let mut c = hearth::client::SignalClient::connect(&common::ws_url(&node)).await.unwrap();
    let token = common::token(&node, "late", Role::Therapist, "T");
    c.send(&ClientMessage::Join {
        protocol_version: hearth::signal::protocol::PROTOCOL_VERSION,
        room_id: RoomId::new("late").unwrap(),
        token,
    })
    .await
    .unwrap();
    recv!(c, ServerMessage::Joined { .. });
    node.shutdown().await;
    alone.shutdown().await;
}

#[tokio::test]
async fn unreachable_redis_stops_start_up_with_a_clear_error() {
    let mut cfg = common::test_config();
    cfg.cluster.redis_url = format!("redis://127.0.0.1:{}/0", free_port());
    cfg.cluster.heartbeat_ms = 200;
    cfg.cluster.node_ttl_ms = 600;
    let err = match hearth::server::start(cfg).await {
        Ok(_) => panic!("a relay node without its Redis must not start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cluster") && err.contains("redis://127.0.0.1"), "{err}");
}

/// The load generator's participants survive a drain: they rejoin with their tokens on the
/// other node, media flows there, and the report counts the rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_rejoins_when_its_node_drains() {
    let _machine = common::machine(common::Load::Media).await;
    let redis = Redis::start();
    let node = |id: &str| {
        let mut c = common::test_config();
        c.rooms.waiting_room = false;
        c.cluster.redis_url = redis.url();
        c.cluster.node_id = id.into();
        c.cluster.heartbeat_ms = 250;
        c.cluster.node_ttl_ms = 1000;
        c.cluster.drain_grace_ms = 0;
        c
    };
    let a = common::start_with(node("load-a")).await;
    let b = common::start_with(node("load-b")).await;
    let mut cfg = hearth::load::LoadConfig::new(common::ws_url(&a));
    cfg.fallback_urls = vec![common::ws_url(&b)];
    cfg.publishers = 2;
    cfg.subscribers = 2;
    cfg.duration = Duration::from_secs(5);
    cfg.warmup = Duration::from_millis(300);
    cfg.video = hearth::client::media::VideoProfile::camera(300);
    let run = tokio::spawn(async move { hearth::load::run(&cfg).await });
    // Once media flows (the window is open), drain whichever node owns the room.
    let owner_has_room = common::eventually(WAIT, || a.state().rooms.room_count() + b.state().rooms.room_count() == 1).await;
    assert!(owner_has_room);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (owner, other) = if a.state().rooms.room_count() == 1 { (&a, &b) } else { (&b, &a) };
    owner.drain().await;
    assert_eq!(owner.state().rooms.room_count(), 0, "the drained node let its room go");
    let report = tokio::time::timeout(Duration::from_secs(60), run).await.expect("bounded").expect("joined").expect("run succeeds");
    eprintln!("{}", report.summary());
    assert_eq!(report.rejoins.count, 4, "every participant rejoined");
    assert!(common::eventually(WAIT, || other.state().rooms.room_count() == 0).await, "and left at the end");
    // Tracks received on the new node count as streams of their own: more than one node's worth.
    assert!(report.forwarded.streams > report.forwarded.expected_streams, "media flowed after the move: {:?}", report.forwarded);
    a.shutdown().await;
    b.shutdown().await;
}

/// New rooms spread over the nodes even when they arrive faster than heartbeats refresh the
/// nodes' load, and a join that reaches the wrong node follows the redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_rooms_spreads_over_the_nodes() {
    let redis = Redis::start();
    let node = |id: &str| {
        let mut c = common::test_config();
        c.cluster.redis_url = redis.url();
        c.cluster.node_id = id.into();
        // One heartbeat only (at start, CPU 0): placement then depends on claims alone.
        c.cluster.heartbeat_ms = 60_000;
        c.cluster.node_ttl_ms = 120_000;
        c
    };
    let a = common::start_with(node("spread-a")).await;
    let b = common::start_with(node("spread-b")).await;
    let mut sockets = Vec::new();
    let mut redirected = 0;
    for i in 0..6 {
        let room = format!("burst-{i}");
        let token = common::token(&a, &room, Role::Therapist, "T");
        let mut url = common::ws_url(&a);
        loop {
            let mut c = hearth::client::SignalClient::connect(&url).await.unwrap();
            c.send(&ClientMessage::Join {
                protocol_version: hearth::signal::protocol::PROTOCOL_VERSION,
                room_id: RoomId::new(room.clone()).unwrap(),
                token: token.clone(),
            })
            .await
            .unwrap();
            match recv!(c, ServerMessage::Joined { .. } | ServerMessage::Redirect { .. }) {
                ServerMessage::Redirect { url: next, reason } => {
                    assert_eq!(reason, RedirectReason::RoomElsewhere);
                    assert_eq!(next, common::ws_url(&b), "sent to the other node's own address");
                    redirected += 1;
                    url = next;
                }
                _ => {
                    sockets.push(c);
                    break;
                }
            }
        }
    }
    let (on_a, on_b) = (a.state().rooms.room_count(), b.state().rooms.room_count());
    assert_eq!(on_a + on_b, 6);
    assert_eq!((on_a, on_b), (3, 3), "rooms alternate between the two nodes");
    assert_eq!(redirected, on_b, "every room placed on B was reached by a redirect from A");
    let metrics = common::http(a.addr(), "GET", "/metrics", &[], "").await.1;
    assert!(metrics.contains(&format!("hearth_cluster_redirects_total {redirected}")), "{metrics}");
    drop(sockets);
    a.shutdown().await;
    b.shutdown().await;
}

/// A room drained to another node keeps its go-around round (speaker, skips, the turn's clock)
/// and stays one session: the new node's attendance export has everyone, those who left before
/// the move included, each with one interval and the move counted as a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_room_keeps_its_round_and_one_sessions_attendance() {
    use hearth::client::SignalClient;
    use hearth::signal::protocol::{RoundOrder, PROTOCOL_VERSION};
    const KEY: &str = "an-api-key-of-at-least-24-characters";
    let redis = Redis::start();
    let node = |id: &str| {
        let mut cfg = common::test_config();
        cfg.auth.api_key = KEY.into();
        cfg.rooms.waiting_room = false;
        cfg.rooms.reconnect_grace_ms = 5_000;
        cfg.cluster.redis_url = redis.url();
        cfg.cluster.node_id = id.into();
        cfg.cluster.heartbeat_ms = 250;
        // Generous: a busy machine must not make the other node look dead during the drain.
        cfg.cluster.node_ttl_ms = 5000;
        cfg.cluster.drain_grace_ms = 200;
        common::start_with(cfg)
    };
    let a = node("records-a").await;
    let b = node("records-b").await;
    let room = "moving-records";
    let token = |role, id: &str| tokens().mint(&RoomId::new(room).unwrap(), role, id, Some(id), Duration::from_secs(600)).unwrap().0;
    /// Joins at `ws` (following redirects to the room's owner) and waits until admitted.
    async fn enter(ws: &str, room: &str, token: String) -> (SignalClient, ServerMessage) {
        let deadline = Instant::now() + WAIT;
        let mut ws = ws.to_string();
        loop {
            let mut c = SignalClient::connect(&ws).await.unwrap();
            let join =
                ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token: token.clone() };
            c.send(&join).await.unwrap();
            let m = c
                .recv_until("admitted", WAIT, |m| {
                    matches!(m, ServerMessage::Admitted { .. } | ServerMessage::Redirect { .. } | ServerMessage::Error { .. })
                })
                .await
                .expect("an answer to join");
            match m {
                ServerMessage::Admitted { .. } => return (c, m),
                ServerMessage::Redirect { url, .. } => ws = url,
                other => assert!(Instant::now() < deadline, "never admitted at {ws}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let people = [(Role::Therapist, "t-1"), (Role::Participant, "p-1"), (Role::Participant, "p-2"), (Role::Participant, "p-3")];
    let mut clients = Vec::new();
    let mut session = None;
    for (role, id) in people {
        let (c, m) = enter(&common::ws_url(&a), room, token(role, id)).await;
        if let ServerMessage::Admitted { session_id, .. } = m {
            session = session.or(session_id);
        }
        clients.push(c);
    }
    let session = session.expect("a session runs");
    clients[0].send(&ClientMessage::StartRound { order: RoundOrder::Roster, seconds_per_turn: Some(120), allow_pass: true }).await.unwrap();
    recv!(clients[1], ServerMessage::RoundUpdated { round: Some(r) } if r.current == Some(pid("p-1")));
    clients[1].send(&ClientMessage::PassTurn).await.unwrap();
    let mut p3 = clients.pop().expect("p-3");
    p3.send(&ClientMessage::Leave).await.unwrap();
    let before = clients[0]
        .recv_until("p-3 skipped", WAIT, |m| {
            matches!(m, ServerMessage::RoundUpdated { round: Some(r) } if r.current == Some(pid("p-2")) && r.skipped == vec![pid("p-3")])
        })
        .await
        .unwrap();
    let ServerMessage::RoundUpdated { round: Some(before) } = before else { unreachable!() };

    // Drain: everyone is sent to the other node (or, if it could not be handed over at once,
    // told goodbye) and comes back with the same token through it.
    let auth = format!("Bearer {KEY}");
    let (status, body) = common::http(a.addr(), "POST", "/api/admin/drain", &[("Authorization", &auth)], "").await;
    assert_eq!(status, 202, "{body}");
    let mut back = Vec::new();
    for (c, (role, id)) in clients.iter_mut().zip(people) {
        let told = c.recv_until("told to move", WAIT, |m| matches!(m, ServerMessage::Redirect { .. } | ServerMessage::Goodbye { .. }));
        let url = match told.await.expect("told to move") {
            ServerMessage::Redirect { url, .. } => url,
            _ => common::ws_url(&b),
        };
        back.push(enter(&url, room, token(role, id)).await.0);
    }
    let after = recv!(back[0], ServerMessage::RoundUpdated { round: Some(_) });
    let ServerMessage::RoundUpdated { round: Some(after) } = after else { unreachable!() };
    assert_eq!(
        (&after.order, &after.current, &after.passed, &after.skipped),
        (&before.order, &before.current, &before.passed, &before.skipped)
    );
    assert_eq!(after.turn_ends_at_ms, before.turn_ends_at_ms, "the same turn, on the same clock");
    assert!(after.seconds_left.is_some_and(|s| s <= before.seconds_left.unwrap_or(0) && s > 60), "{after:?}");

    // One session, read whole on the node that ended it.
    back[0].send(&ClientMessage::EndSession { confirm: true, closing_message: None }).await.unwrap();
    recv!(back[1], ServerMessage::SessionEnded { .. });
    let path = format!("/api/rooms/{room}/sessions/{session}/attendance");
    let deadline = Instant::now() + WAIT;
    let attendance = loop {
        let (status, body) = common::http(b.addr(), "GET", &path, &[("Authorization", &auth)], "").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status == 200 && v["session"]["endReason"] == "ended" && v["attendance"].as_array().is_some_and(|a| a.len() == 4) {
            break v;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, list) = common::http(b.addr(), "GET", &format!("/api/rooms/{room}/sessions"), &[("Authorization", &auth)], "").await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().map(|l| l.len()), Some(1), "one session: {list}");
    for p in attendance["attendance"].as_array().unwrap() {
        let id = p["participantId"].as_str().unwrap();
        let spaces: Vec<_> = p["intervals"].as_array().unwrap().iter().map(|i| i["space"].as_str().unwrap()).collect();
        assert_eq!(spaces, ["main"], "{id}: one interval across the move: {p}");
        let (reconnects, outcome) = if id == "p-3" { (0, "left") } else { (1, "ended") };
        assert_eq!((p["reconnects"].as_u64(), p["outcome"].as_str()), (Some(reconnects), Some(outcome)), "{p}");
    }
    b.shutdown().await;
    a.shutdown().await;
}

/// The waiting room's texts move with a drained room: the therapist sets the group's name and
/// welcome on node A and leaves; A drains; on node B, a newcomer waiting before any therapist is
/// there is told the group's name and welcome. The snapshot carries them (never the therapist's
/// name), and B keeps them in its own store for the room's next session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_rooms_waiting_room_keeps_its_welcome() {
    use hearth::client::SignalClient;
    use hearth::signal::protocol::PROTOCOL_VERSION;
    const KEY: &str = "an-api-key-of-at-least-24-characters";
    const GROUP: &str = "Tuesday evening group";
    const WELCOME: &str = "Welcome. Take a seat;\nwe start at seven.";
    let redis = Redis::start();
    let node = |id: &str| {
        let mut cfg = common::test_config();
        cfg.auth.api_key = KEY.into();
        cfg.rooms.waiting_room = true;
        cfg.cluster.redis_url = redis.url();
        cfg.cluster.node_id = id.into();
        cfg.cluster.heartbeat_ms = 250;
        // Generous: a busy machine must not make the other node look dead during the drain.
        cfg.cluster.node_ttl_ms = 5000;
        cfg.cluster.drain_grace_ms = 200;
        common::start_with(cfg)
    };
    let a = node("door-a").await;
    let b = node("door-b").await;
    let room = "moving-door";
    let room_id = RoomId::new(room).unwrap();
    let token = |role, id: &str| tokens().mint(&room_id, role, id, Some(id), Duration::from_secs(600)).unwrap().0;
    /// Joins at `ws`, following redirects to the room's owner, until `done` says so.
    async fn enter(ws: &str, room: &str, token: String, done: fn(&ServerMessage) -> bool) -> (SignalClient, ServerMessage) {
        let deadline = Instant::now() + WAIT;
        let mut ws = ws.to_string();
        loop {
            let mut c = SignalClient::connect(&ws).await.unwrap();
            let join =
                ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token: token.clone() };
            c.send(&join).await.unwrap();
            let m = c
                .recv_until("an answer to join", WAIT, |m| {
                    done(m) || matches!(m, ServerMessage::Redirect { .. } | ServerMessage::Error { .. })
                })
                .await
                .expect("an answer to join");
            match m {
                ServerMessage::Redirect { url, .. } => ws = url,
                m if done(&m) => return (c, m),
                other => assert!(Instant::now() < deadline, "never in at {ws}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let admitted = |m: &ServerMessage| matches!(m, ServerMessage::Admitted { .. });
    let waiting = |m: &ServerMessage| matches!(m, ServerMessage::WaitingRoom { .. });

    // On A: the therapist sets the door and leaves; Pat waits (the room lives on).
    let lee = tokens().mint(&room_id, Role::Therapist, "Dr Lee", Some("t-lee"), Duration::from_secs(600)).unwrap().0;
    let (mut t, _) = enter(&common::ws_url(&a), room, lee, admitted).await;
    t.send(&ClientMessage::SetWelcome { group_name: GROUP.into(), message: WELCOME.into() }).await.unwrap();
    let welcomed = |m: &ServerMessage| matches!(m, ServerMessage::WaitingRoom { welcome: Some(_), .. });
    let (mut pat, _) = enter(&common::ws_url(&a), room, token(Role::Participant, "p-pat"), welcomed).await;
    t.send(&ClientMessage::Leave).await.unwrap();
    pat.recv_until("the therapist gone", WAIT, |m| matches!(m, ServerMessage::WaitingRoom { therapist_here: false, .. }))
        .await
        .expect("the therapist gone");
    assert!(a.state().rooms.room_count() == 1 && b.state().rooms.room_count() == 0, "the room runs on A");

    // A drains: Pat is sent to B.
    let auth = format!("Bearer {KEY}");
    let (status, body) = common::http(a.addr(), "POST", "/api/admin/drain", &[("Authorization", &auth)], "").await;
    assert_eq!(status, 202, "{body}");
    let told = pat.recv_until("told to move", WAIT, |m| matches!(m, ServerMessage::Redirect { .. } | ServerMessage::Goodbye { .. }));
    let url = match told.await.expect("told to move") {
        ServerMessage::Redirect { url, .. } => url,
        _ => common::ws_url(&b),
    };
    let (_pat, _) = enter(&url, room, token(Role::Participant, "p-pat"), waiting).await;

    // On B, before any therapist: a newcomer is told the group's name and the welcome.
    let (_sam, m) = enter(&common::ws_url(&b), room, token(Role::Participant, "p-sam"), waiting).await;
    assert_eq!(
        m,
        ServerMessage::WaitingRoom {
            group_name: Some(GROUP.into()),
            therapist_name: None,
            therapist_here: false,
            welcome: Some(WELCOME.into()),
            session_ended: false,
        },
        "the waiting room on B"
    );
    assert_eq!(b.state().rooms.room_count(), 1, "the room runs on B");
    let cluster = b.state().rooms.cluster().expect("B is a relay node").clone();
    let saved = cluster.load_state(&room_id).await.expect("redis answers").expect("the room's snapshot");
    assert!(saved.contains(GROUP) && !saved.contains("Dr Lee"), "the snapshot has the door, not the therapist's name: {saved}");

    // B's store has them for the room's next session there.
    let config = &b.state().config;
    let store = hearth::store::Store::open(&config.store.path)
        .expect("B's store opens")
        .with_text_key(hearth::store::TextKey::derive(&config.auth.token_secret));
    let deadline = Instant::now() + WAIT;
    loop {
        let doors = store.doors(10).await.expect("doors read");
        if doors.iter().any(|d| d.room == room && d.welcome.as_deref() == Some(WELCOME) && d.group_name.as_deref() == Some(GROUP)) {
            break;
        }
        assert!(Instant::now() < deadline, "the door did not reach B's store: {doors:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.shutdown().await;
    a.shutdown().await;
}
