//! Relay nodes sharing rooms through Redis. Owns every use of Redis: the node registry
//! (a heartbeat with a TTL), room placement (an atomic claim), the state a room must keep when
//! it moves between nodes, and draining.
//!
//! The model (docs/deploy.md): a room lives on exactly one node at a time, its owner; every
//! socket of the room is on the owner, so moderation, breakouts, polls and celebrations stay
//! messages to one room task, as on a single node. A join that reaches another node is
//! redirected to the owner. A node whose heartbeat lapses owns nothing any more: the next join
//! for its rooms claims them for a live node, which restores the room from its saved state.
//!
//! Must not touch room internals: rooms hand this module opaque JSON snapshots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::vocab::RoomId;

const NODE_PREFIX: &str = "hearth:node:";
/// Rooms claimed for a node since its last heartbeat (a counter that expires): without it a
/// burst of new rooms would all go to the node that looked least loaded a second ago.
const CLAIMS_PREFIX: &str = "hearth:claims:";
const NODES_SET: &str = "hearth:nodes";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot reach redis at {url}: {source}")]
    Connect { url: String, source: redis::RedisError },
}

/// What a node publishes about itself in Redis, refreshed every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub id: String,
    /// Base URL clients reach this node at directly (`https://relay-1.example.org`).
    pub url: String,
    /// Media addresses (ICE host candidates) this node announces.
    pub media: Vec<String>,
    pub rooms: usize,
    pub participants: usize,
    /// Share of one CPU core used since the last heartbeat, in percent.
    pub cpu_percent: f64,
    pub draining: bool,
    pub version: String,
    /// Rooms claimed for this node since its entry was written (not part of the entry).
    #[serde(default, skip_serializing)]
    pub recent_claims: usize,
}

impl NodeInfo {
    /// Lower is less loaded. Participants dominate (each is a peer connection and its
    /// forwarding); CPU breaks ties between nodes that carry different media.
    fn load_score(&self) -> f64 {
        self.participants as f64 + (self.rooms + self.recent_claims) as f64 * 0.5 + self.cpu_percent / 10.0
    }
}

pub use crate::vocab::redirect_url;

/// `http(s)://host[:port]` → `ws(s)://host[:port]/ws`.
pub fn ws_url_of(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{ws}/ws")
}

/// Where a room lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Here: create or join the local room task.
    Local,
    /// On another node: send the client there.
    Remote { node: String, ws_url: String },
}

/// What the node counts of itself for the registry.
pub trait LoadSource: Send + Sync + 'static {
    fn rooms(&self) -> usize;
    fn participants(&self) -> usize;
}

/// This node's membership in the cluster.
pub struct Cluster {
    con: ConnectionManager,
    cfg: ClusterConfig,
    me: Mutex<NodeInfo>,
    draining: AtomicBool,
    load: Box<dyn LoadSource>,
    /// Last CPU sample: when, process CPU seconds, and the share computed then.
    cpu: Mutex<Option<(Instant, f64, f64)>>,
    claim: Script,
    release: Script,
    hand_over: Script,
    touch: Script,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node_id()).finish_non_exhaustive()
    }
}

fn owner_key(room: &RoomId) -> String {
    format!("hearth:room:{}:owner", room.as_str())
}

fn state_key(room: &RoomId) -> String {
    format!("hearth:room:{}:state", room.as_str())
}

impl Cluster {
    /// Connects to Redis and registers this node. `base_url` is this node's own URL.
    pub async fn connect(
        cfg: ClusterConfig,
        base_url: String,
        media: Vec<String>,
        load: Box<dyn LoadSource>,
    ) -> Result<Arc<Self>, ClusterError> {
        let url = cfg.redis_url.trim().to_string();
        let client = redis::Client::open(url.as_str()).map_err(|source| ClusterError::Connect { url: redact(&url), source })?;
        let timeout = Duration::from_millis(cfg.heartbeat_ms.max(500));
        let mgr = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(cfg.heartbeat_ms.max(100)));
        let con =
            client.get_connection_manager_with_config(mgr).await.map_err(|source| ClusterError::Connect { url: redact(&url), source })?;
        let id = if cfg.node_id.trim().is_empty() { format!("node-{:08x}", rand::random::<u32>()) } else { cfg.node_id.trim().to_string() };
        let me = NodeInfo {
            id,
            url: base_url.trim_end_matches('/').to_string(),
            media,
            rooms: 0,
            participants: 0,
            cpu_percent: 0.0,
            draining: false,
            version: env!("CARGO_PKG_VERSION").to_string(),
            recent_claims: 0,
        };
        let cluster = Arc::new(Self {
            con,
            cfg,
            me: Mutex::new(me),
            draining: AtomicBool::new(false),
            load,
            cpu: Mutex::new(None),
            // The owner stays if its node is alive; otherwise the candidate takes the room.
            claim: Script::new(
                r"local owner = redis.call('GET', KEYS[1])
                  if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then return owner end
                  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
                  redis.call('INCR', ARGV[4])
                  redis.call('PEXPIRE', ARGV[4], ARGV[5])
                  return ARGV[1]",
            ),
            release: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
                  return 0",
            ),
            hand_over: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end
                  return 0",
            ),
            // Owners of rooms running here: refreshes the TTL of those we own, claims those
            // nobody owns (a room re-created here in the instant after it was released).
            touch: Script::new(
                r"local out = {}
                  for i, key in ipairs(KEYS) do
                    local owner = redis.call('GET', key)
                    if not owner then
                      redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
                      owner = ARGV[1]
                    elseif owner == ARGV[1] then
                      redis.call('EXPIRE', key, ARGV[2])
                    end
                    out[i] = owner
                  end
                  return out",
            ),
        });
        cluster.heartbeat().await?;
        info!(node = %cluster.node_id(), "joined the cluster");
        Ok(cluster)
    }

    pub fn node_id(&self) -> String {
        self.me.lock().map(|m| m.id.clone()).unwrap_or_default()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn state_ttl(&self) -> u64 {
        self.cfg.state_ttl_secs.max(60)
    }

    /// Where a client goes to reach `node`, if its registered URL may be sent to clients.
    fn redirect_to(&self, node: &NodeInfo) -> Option<String> {
        redirect_url(&node.url, &self.cfg.node_urls)
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// Publishes this node's entry (with a TTL) and its current load.
    pub async fn heartbeat(&self) -> Result<(), ClusterError> {
        let cpu = self.cpu_percent();
        let info = {
            let Ok(mut me) = self.me.lock() else { return Ok(()) };
            me.rooms = self.load.rooms();
            me.participants = self.load.participants();
            me.cpu_percent = cpu;
            me.draining = self.is_draining();
            me.clone()
        };
        let json = serde_json::to_string(&info).unwrap_or_default();
        let mut con = self.con();
        redis::pipe()
            .cmd("SET")
            .arg(format!("{NODE_PREFIX}{}", info.id))
            .arg(json)
            .arg("PX")
            .arg(self.cfg.node_ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(NODES_SET)
            .arg(&info.id)
            .ignore()
            .query_async::<()>(&mut con)
            .await?;
        Ok(())
    }

    fn cpu_percent(&self) -> f64 {
        let Ok(sample) = crate::procfs::sample(None) else { return 0.0 };
        let now = Instant::now();
        let Ok(mut last) = self.cpu.lock() else { return 0.0 };
        let Some((t, cpu, pct)) = *last else {
            *last = Some((now, sample.cpu_seconds, 0.0));
            return 0.0;
        };
        // CPU time ticks in 10 ms steps: a short window says more about rounding than load.
        let wall = now.duration_since(t).as_secs_f64();
        if wall < 0.5 {
            return pct;
        }
        let pct = ((sample.cpu_seconds - cpu) / wall * 100.0).max(0.0);
        *last = Some((now, sample.cpu_seconds, pct));
        pct
    }

    /// Every live node (entries whose TTL has not lapsed). Ids whose entry is gone are pruned
    /// from the set.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut con = self.con();
        let ids: Vec<String> = con.smembers(NODES_SET).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| format!("{NODE_PREFIX}{id}")).collect();
        let claim_keys: Vec<String> = ids.iter().map(|id| format!("{CLAIMS_PREFIX}{id}")).collect();
        let (values, claims): (Vec<Option<String>>, Vec<Option<usize>>) =
            redis::pipe().cmd("MGET").arg(&keys).cmd("MGET").arg(&claim_keys).query_async(&mut con).await?;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for ((id, v), recent) in ids.into_iter().zip(values).zip(claims) {
            match v.and_then(|v| serde_json::from_str::<NodeInfo>(&v).ok()) {
                Some(mut n) => {
                    n.recent_claims = recent.unwrap_or(0);
                    live.push(n);
                }
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: Result<(), _> = con.srem(NODES_SET, gone).await;
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    /// The least-loaded live node that takes new rooms, other than `except`.
    async fn least_loaded(&self, except: Option<&str>) -> Result<Option<NodeInfo>, ClusterError> {
        let nodes = self.nodes().await?;
        let me = self.node_id();
        Ok(nodes
            .into_iter()
            // A node clients may not be sent to takes no rooms (see `redirect_url`).
            .filter(|n| n.id == me || self.redirect_to(n).is_some())
            .filter(|n| !n.draining && Some(n.id.as_str()) != except)
            .min_by(|a, b| a.load_score().total_cmp(&b.load_score()).then_with(|| a.id.cmp(&b.id))))
    }

    /// Where `room` lives, claiming it for the least-loaded live node if nobody (alive) owns it.
    pub async fn place(&self, room: &RoomId) -> Result<Placement, ClusterError> {
        let me = self.node_id();
        let mut con = self.con();
        // Fast path: the owner is alive (most joins of a running room).
        let current: Option<String> = con.get(owner_key(room)).await?;
        let candidate = match current {
            Some(owner) if owner == me && !self.is_draining() => return Ok(Placement::Local),
            _ => match self.least_loaded(None).await? {
                Some(n) => n.id,
                // Nobody else is registered (or everyone drains): a node that is not draining
                // serves its own joins rather than refuse them.
                None => me.clone(),
            },
        };
        let candidate = if candidate == me && self.is_draining() { String::new() } else { candidate };
        if candidate.is_empty() {
            // Draining with no live node to take the room: keep serving it here.
            let owner: Option<String> = con.get(owner_key(room)).await?;
            return match owner {
                Some(o) if o != me => self.placement_for(&o).await,
                _ => Ok(Placement::Local),
            };
        }
        let owner: String = self
            .claim
            .key(owner_key(room))
            .arg(&candidate)
            .arg(NODE_PREFIX)
            .arg(self.state_ttl())
            .arg(format!("{CLAIMS_PREFIX}{candidate}"))
            .arg(self.cfg.heartbeat_ms.saturating_mul(2))
            .invoke_async(&mut con)
            .await?;
        if owner != candidate {
            debug!(room = %room, %owner, "room already owned");
        }
        self.placement_for(&owner).await
    }

    async fn placement_for(&self, owner: &str) -> Result<Placement, ClusterError> {
        if owner == self.node_id() {
            return Ok(Placement::Local);
        }
        let mut con = self.con();
        let entry: Option<String> = con.get(format!("{NODE_PREFIX}{owner}")).await?;
        match entry.and_then(|e| serde_json::from_str::<NodeInfo>(&e).ok()) {
            Some(node) => match self.redirect_to(&node) {
                Some(ws_url) => Ok(Placement::Remote { node: node.id.clone(), ws_url }),
                // Nobody is sent there: clients are told to retry, as for a lapsed owner.
                None => {
                    warn!(node = %owner, "a room's owner is registered with a URL clients may not be sent to");
                    Ok(Placement::Remote { node: owner.to_string(), ws_url: String::new() })
                }
            },
            // It lapsed between the claim and now: the client retries and the next claim wins.
            None => Ok(Placement::Remote { node: owner.to_string(), ws_url: String::new() }),
        }
    }

    /// Moves `room` to the least-loaded other live node (a drain). Returns that node's
    /// websocket URL, or `None` when no other node can take it.
    pub async fn hand_over(&self, room: &RoomId) -> Result<Option<String>, ClusterError> {
        let me = self.node_id();
        let Some(target) = self.least_loaded(Some(&me)).await? else { return Ok(None) };
        let mut con = self.con();
        let moved: i64 = self.hand_over.key(owner_key(room)).arg(&me).arg(&target.id).arg(self.state_ttl()).invoke_async(&mut con).await?;
        if moved == 1 {
            info!(room = %room, to = %target.id, "room handed over");
            Ok(self.redirect_to(&target))
        } else {
            // Someone else owns it already; joins will find them.
            Ok(self.placement_for(&con.get::<_, Option<String>>(owner_key(room)).await?.unwrap_or_default()).await.ok().and_then(
                |p| match p {
                    Placement::Remote { ws_url, .. } if !ws_url.is_empty() => Some(ws_url),
                    _ => None,
                },
            ))
        }
    }

    /// Gives up ownership of `room` (if still ours) but keeps its state for the next owner.
    pub async fn release(&self, room: &RoomId) -> Result<(), ClusterError> {
        let mut con = self.con();
        let _: i64 = self.release.key(owner_key(room)).arg(self.node_id()).invoke_async(&mut con).await?;
        Ok(())
    }

    /// The room ended here for good: its state and ownership go.
    pub async fn forget(&self, room: &RoomId) -> Result<(), ClusterError> {
        self.release(room).await?;
        let mut con = self.con();
        let _: () = con.del(state_key(room)).await?;
        Ok(())
    }

    pub async fn load_state(&self, room: &RoomId) -> Result<Option<String>, ClusterError> {
        let mut con = self.con();
        Ok(con.get(state_key(room)).await?)
    }

    pub async fn save_state(&self, room: &RoomId, json: &str) -> Result<(), ClusterError> {
        let mut con = self.con();
        let _: () = con.set_ex(state_key(room), json, self.state_ttl()).await?;
        Ok(())
    }

    /// Of `rooms` (running here), those another node owns now: after a lapse of our
    /// heartbeat, a live node may have claimed them. Refreshes the TTL of the rest.
    pub async fn rooms_owned_elsewhere(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, String)>, ClusterError> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.node_id();
        let mut invocation = self.touch.prepare_invoke();
        for r in rooms {
            invocation.key(owner_key(r));
        }
        invocation.arg(&me).arg(self.state_ttl());
        let mut con = self.con();
        let owners: Vec<String> = invocation.invoke_async(&mut con).await?;
        Ok(rooms.iter().cloned().zip(owners).filter(|(_, o)| !o.is_empty() && o != &me).collect())
    }

    /// Starts draining: this node takes no new rooms from now on. False if it already was.
    pub async fn start_drain(&self) -> bool {
        if self.draining.swap(true, Ordering::Relaxed) {
            return false;
        }
        info!("draining: no new rooms from now on");
        if let Err(e) = self.heartbeat().await {
            warn!(error = %e, "could not announce the drain");
        }
        true
    }

    pub fn drain_grace(&self) -> Duration {
        Duration::from_millis(self.cfg.drain_grace_ms)
    }

    /// Takes this node out of the registry at once (a clean stop after a drain).
    pub async fn deregister(&self) {
        let id = self.node_id();
        let mut con = self.con();
        let _: Result<(), _> =
            redis::pipe().del(format!("{NODE_PREFIX}{id}")).ignore().srem(NODES_SET, &id).ignore().query_async(&mut con).await;
    }

    /// Refreshes the entry every `heartbeat_ms` until `stop`; hands rooms another node owns
    /// now to `moved` (room, new owner's websocket URL).
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        stop: CancellationToken,
        rooms: impl Fn() -> Vec<RoomId> + Send + 'static,
        moved: impl Fn(RoomId, Option<String>) + Send + 'static,
    ) {
        let cluster = self.clone();
        let every = Duration::from_millis(cluster.cfg.heartbeat_ms);
        tokio::spawn(async move {
            // `connect` has just beaten once.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing_since: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match cluster.heartbeat().await {
                    Ok(()) => {
                        if failing_since.take().is_some() {
                            info!("redis reachable again");
                        }
                    }
                    Err(e) => {
                        if failing_since.is_none() {
                            warn!(error = %e, "heartbeat failed; rooms here keep running");
                            failing_since = Some(Instant::now());
                        }
                        continue;
                    }
                }
                match cluster.rooms_owned_elsewhere(&rooms()).await {
                    Ok(lost) => {
                        for (room, owner) in lost {
                            warn!(room = %room, %owner, "another node owns this room now; moving its clients there");
                            let url = match cluster.placement_for(&owner).await {
                                Ok(Placement::Remote { ws_url, .. }) if !ws_url.is_empty() => Some(ws_url),
                                _ => None,
                            };
                            moved(room, url);
                        }
                    }
                    Err(e) => debug!(error = %e, "ownership check failed"),
                }
            }
        });
    }
}

/// A Redis URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        assert_eq!(ws_url_of("https://relay.example.org/"), "wss://relay.example.org/ws");
        assert_eq!(ws_url_of("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
    }

    #[test]
    fn redirects_only_to_plain_http_base_urls() {
        assert_eq!(redirect_url("https://relay.example.org/", &[]).as_deref(), Some("wss://relay.example.org/ws"));
        assert_eq!(redirect_url("http://127.0.0.1:8080", &[]).as_deref(), Some("ws://127.0.0.1:8080/ws"));
        assert_eq!(redirect_url("https://example.org/hearth/", &[]).as_deref(), Some("wss://example.org/hearth/ws"));
        for bad in [
            "javascript:alert(1)",
            "wss://relay.example.org",
            "ftp://relay.example.org",
            "https://user:pw@relay.example.org",
            "https://user@relay.example.org",
            "https://relay.example.org/#x",
            "https://relay.example.org/?next=evil",
            "relay.example.org",
            "",
        ] {
            assert_eq!(redirect_url(bad, &[]), None, "{bad}");
        }
        let allowed = vec!["https://relay-1.example.org".to_string(), "https://example.org/hearth".to_string()];
        assert!(redirect_url("https://relay-1.example.org", &allowed).is_some());
        assert!(redirect_url("https://example.org/hearth/eu", &allowed).is_some());
        for bad in [
            "https://relay-1.example.org.evil.com",
            "http://relay-1.example.org",
            "https://relay-1.example.org:8443",
            "https://example.org/hearthx",
            "https://evil.example.org",
        ] {
            assert_eq!(redirect_url(bad, &allowed), None, "{bad}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:secret@10.0.0.5:6379/0"), "redis://***@10.0.0.5:6379/0");
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
    }

    #[test]
    fn load_score_orders_by_participants_then_cpu() {
        let node = |p, cpu| NodeInfo {
            id: "n".into(),
            url: String::new(),
            media: Vec::new(),
            rooms: 1,
            participants: p,
            cpu_percent: cpu,
            draining: false,
            version: String::new(),
            recent_claims: 0,
        };
        assert!(node(2, 0.0).load_score() < node(3, 0.0).load_score());
        assert!(node(2, 5.0).load_score() < node(2, 50.0).load_score());
    }
}
