//! The web client with relay nodes: a redis-server and two nodes on loopback (in this process).
//! A therapist (headless client) opens the room on one node; a participant's browser opens
//! the join link on the OTHER node, is redirected by the server to the room's node and receives
//! the therapist's video there. Then the room's node goes away: the page goes back through the
//! node it was served from (its entry point), the room comes back there, and the page receives
//! the therapist's video arriving again, without any click.
//!
//! Needs Chromium, chromedriver (`scripts/install-test-deps.sh`) and redis-server.
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots and logs go to
//! `target/test-artifacts/cluster/`.

use crate::common;

use common::browser::*;
use common::fixture::*;
use common::redis::Redis;

use std::time::{Duration, Instant};

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::room::RoomId;
use hearth::server::RunningServer;
use serde_json::{json, Value};

const ROOM: &str = "browser-cluster";
const MEDIA_DEADLINE: Duration = Duration::from_secs(30);
const TEST_DEADLINE: Duration = Duration::from_secs(120);

/// The page's state, the websocket it uses, and RTP packets received. (The therapist is a
/// headless client whose synthetic VP8 is not decodable; arriving packets prove the route.)
const PROBE_JS: &str = r#"
const done = arguments[arguments.length - 1];
const h = window.hearth;
if (!h) { done({ state: 'no window.hearth', tiles: [] }); return; }
const tiles = [...document.querySelectorAll('#tiles .tile.remote')].map((t) => {
  const v = t.querySelector('video');
  return { id: t.dataset.participantId, width: v ? v.videoWidth : 0 };
});
const base = { state: h.state, ws: h.ws ? h.ws.url : null, tiles };
if (!h.pc) { done({ ...base, packets: 0 }); return; }
h.pc.getStats().then((stats) => {
  let packets = 0;
  stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') packets = Math.max(packets, r.packetsReceived || 0); });
  done({ ...base, packets, connection: h.pc.connectionState });
}).catch((e) => done({ ...base, packets: 0, error: String(e) }));
"#;

async fn node(redis: &Redis, id: &str) -> RunningServer {
    let mut c = common::test_config();
    c.rooms.waiting_room = false;
    c.rooms.reconnect_grace_ms = 5_000;
    c.cluster.redis_url = redis.url();
    c.cluster.node_id = id.into();
    c.cluster.heartbeat_ms = 250;
    c.cluster.node_ttl_ms = 1_000;
    common::start_with(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_client_follows_its_room_between_nodes() {
    let mut fx = BrowserTest::new("cluster", TEST_DEADLINE).await;
    let redis = Redis::start();
    let a = node(&redis, "web-a").await;
    let b = node(&redis, "web-b").await;
    let (wa, wb) = (common::ws_url(&a), common::ws_url(&b));

    // The therapist opens the room; whichever node it lands on is the owner.
    let token = common::token_for(&a, ROOM, Role::Therapist, "Dr. Rivera", "t-rivera");
    let mut opts = MediaOptions::light(&wa, ROOM, "therapist").with_token(token);
    opts.fallback_urls = vec![wb.clone()];
    let therapist = MediaClient::join_any(opts, Duration::from_secs(15)).await.expect("therapist joins");
    let owner_is_a = therapist.node_url == wa;
    let (owner, entry) = if owner_is_a { (a, b) } else { (b, a) };
    // The entry node outlives the scenario; the wrap-up shuts it down.
    fx.adopt(entry);

    let [page] = fx.open([PageSpec::desktop("pat")]).await;
    let outcome = fx.within(scenario(&fx, &page, therapist, owner)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, page: &Client, therapist: MediaClient, owner: RunningServer) -> Result<(), String> {
    let entry = fx.server();
    let owner_ws = common::ws_url(&owner);
    let entry_ws = common::ws_url(entry);
    // The link is served by the node that does NOT run the room.
    let token = common::token_for(entry, ROOM, Role::Participant, "Pat", "p-pat");
    page.goto(&format!("http://{}/#token={token}", entry.addr())).await.map_err(|e| format!("opening the link: {e}"))?;
    wait_for(page, "the link page", VISIBLE_JS, &[json!("#link-join-button")]).await?;
    click(page, "pat", "#link-join-button").await?;
    let seen = until(page, "the therapist's video arriving on the room's node", |p| {
        p["state"] == "joined" && p["ws"] == owner_ws.as_str() && p["packets"].as_u64().unwrap_or(0) > 10
    })
    .await?;
    eprintln!("joined through the redirect: {seen}");
    let log = page_log(page).await;
    if !log.contains("redirected to") {
        return Err(format!("the page did not follow a redirect:\n{log}"));
    }
    fx.shot(page, "joined").await;

    // The room's node goes away. Its clients are told goodbye; the page returns through its
    // entry point, the room is placed there and restored, and the therapist rejoins too.
    owner.shutdown().await;
    let moved =
        until(page, "the page back in the room on the other node", |p| p["state"] == "joined" && p["ws"] == entry_ws.as_str()).await?;
    eprintln!("back after the node left: {moved}");
    let therapist = therapist.rejoin(Duration::from_secs(15)).await.map_err(|e| format!("the therapist could not rejoin: {e}"))?;
    if therapist.node_url != entry_ws {
        return Err(format!("the therapist rejoined on {} instead of {entry_ws}", therapist.node_url));
    }
    until(page, "the therapist's video arriving again", |p| {
        p["state"] == "joined" && p["packets"].as_u64().unwrap_or(0) > 10 && p["tiles"].as_array().is_some_and(|t| t.len() == 1)
    })
    .await?;
    fx.shot(page, "after-move").await;
    let room = RoomId::new(ROOM).map_err(|e| e.to_string())?;
    if !entry.state().rooms.is_running(&room) {
        return Err("the room is not running on the remaining node".into());
    }
    therapist.close().await;
    Ok(())
}

/// Probes the page until `ok` says yes (up to the media deadline).
async fn until(page: &Client, what: &str, ok: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let deadline = Instant::now() + MEDIA_DEADLINE;
    loop {
        let probe = page.execute_async(PROBE_JS, vec![]).await.unwrap_or_else(|e| json!({ "error": e.to_string() }));
        if ok(&probe) {
            return Ok(probe);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}; the page shows {probe}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
