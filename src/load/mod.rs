//! The load generator's engine (the `hearth-load` binary is its command line).
//!
//! It drives a running Hearth server the way real participants do: every simulated participant
//! is a [`MediaClient`] with its own websocket and `webrtc` peer connection over loopback.
//! Publishers send frame-shaped video ([`VideoProfile`]) and Opus-sized audio whose payloads
//! carry a send time and a sequence number; subscribers only receive. After everyone is
//! connected and a warm-up has passed, two snapshots bracket a measurement window, and the
//! differences give forwarding rate, loss, latency and the server's CPU and memory (from
//! `/proc/<pid>`).
//!
//! Bounded by construction: counts and duration are capped, the target must be loopback
//! ([`target`]), and every wait has a deadline.

pub mod report;
pub mod target;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::auth::{Role, TokenIssuer};
use crate::client::media::{ClientError, VideoProfile};
use crate::client::{MediaClient, MediaOptions, ReceivedTrack};
use crate::procfs;
use crate::signal::protocol::MediaKind;
use crate::vocab::RoomId;
pub use report::LoadReport;
use report::{Forwarded, Loss, MachineInfo, Percentiles, ReportConfig, ServerCost};

/// Upper bounds that keep a run from taking the machine down by mistake.
pub const MAX_ROOMS: usize = 50;
pub const MAX_PER_ROOM: usize = 50;
pub const MAX_PARTICIPANTS: usize = 200;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Audio as Opus sends it: one 20 ms frame per packet.
pub const AUDIO_PPS: u32 = 50;
/// About 48 kbit/s of Opus.
pub const AUDIO_PAYLOAD: usize = 120;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `ws://<loopback>:<port>/ws`
    pub url: String,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration: Duration,
    /// Time after everyone receives everything and before the window opens, so joins,
    /// renegotiations and first keyframes are not measured as steady state.
    pub warmup: Duration,
    pub video: VideoProfile,
    /// The server's process, for CPU and memory. `None`: not measured.
    pub server_pid: Option<u32>,
    /// The server runs inside this process (its CPU is then not separable).
    pub server_in_process: bool,
    /// Room names are `<prefix>-<n>`.
    pub room_prefix: String,
    /// The server's `auth.token_secret`, to mint each participant's join token. The server
    /// must run with `rooms.waiting_room = false`: nobody here admits anyone.
    pub token_secret: String,
    /// Relay nodes: more entry points (loopback), tried in turn when `url` cannot be reached.
    /// Participants whose node goes away during the run rejoin with their token, as browsers
    /// do; the report counts them.
    pub fallback_urls: Vec<String>,
    /// Publishers send camera video as three simulcast layers.
    pub simulcast: bool,
    /// The first `throttled_subscribers` subscribers of each room get at most this much video
    /// (kbit/s), dropped on their side before their feedback is made (a weak network).
    pub throttle_kbps: Option<u32>,
    pub throttled_subscribers: usize,
    /// A therapy group starting: a therapist joins each room first, everyone else waits in
    /// the waiting room (the server runs with it on). The publishers are admitted together,
    /// and once their media flows the subscribers are admitted together with one `admitAll`;
    /// the report says how long each admitted subscriber waited for every publisher's first
    /// keyframe ([`report::AdmitAll`]).
    pub admit_all: bool,
}

impl LoadConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            rooms: 1,
            publishers: 2,
            subscribers: 0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            video: VideoProfile::camera(1000),
            server_pid: None,
            server_in_process: false,
            room_prefix: "load".into(),
            token_secret: crate::config::DEV_TOKEN_SECRET.into(),
            fallback_urls: Vec::new(),
            simulcast: false,
            throttle_kbps: None,
            throttled_subscribers: 0,
            admit_all: false,
        }
    }

    pub fn participants(&self) -> usize {
        self.rooms * (self.publishers + self.subscribers + usize::from(self.admit_all))
    }

    fn validate(&self) -> Result<(), LoadError> {
        target::check_loopback(&self.url)?;
        for url in &self.fallback_urls {
            target::check_loopback(url)?;
        }
        let bad = |what: String| Err(LoadError::Bounds(what));
        if self.rooms == 0 || self.rooms > MAX_ROOMS {
            return bad(format!("rooms must be 1..={MAX_ROOMS}"));
        }
        if self.publishers == 0 || self.publishers + self.subscribers + usize::from(self.admit_all) > MAX_PER_ROOM {
            return bad(format!("need at least one publisher and at most {MAX_PER_ROOM} participants per room"));
        }
        if self.participants() > MAX_PARTICIPANTS {
            return bad(format!("at most {MAX_PARTICIPANTS} participants in all"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION || self.warmup > MAX_DURATION {
            return bad(format!("duration must be between 1 s and {} s", MAX_DURATION.as_secs()));
        }
        if !(16..=20_000).contains(&self.video.kbps) || !(1..=60).contains(&self.video.fps) {
            return bad("video must be 16..=20000 kbit/s at 1..=60 frames/s".into());
        }
        if !(100..=1400).contains(&self.video.max_packet) {
            return bad("video packets must be 100..=1400 bytes".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Target(#[from] target::TargetError),
    #[error("out of bounds: {0}")]
    Bounds(String),
    /// Boxed: a client error is large, and every other path returns this type too.
    #[error("participant {name} could not join: {source}")]
    Join { name: String, source: Box<ClientError> },
    #[error("cannot mint a join token: {0}")]
    Token(#[from] crate::auth::AuthError),
    #[error("participant {0} was put in the waiting room; run the server with rooms.waiting_room = false")]
    Waiting(String),
    #[error("participant {0} was not put in the waiting room; --admit-all needs a server with rooms.waiting_room = true")]
    NotWaiting(String),
    #[error(transparent)]
    Proc(#[from] procfs::ProcError),
}

struct Participant {
    client: MediaClient,
    /// Someone in the room was already publishing when this one joined (join time is meaningful).
    joined_into_media: bool,
    /// Remote tracks this participant should receive.
    expects: usize,
}

/// Tracks a publisher sends (audio + video).
const TRACKS_PER_PUBLISHER: usize = 2;

/// Runs one bounded load test against the server at `cfg.url` and measures it.
pub async fn run(cfg: &LoadConfig) -> Result<LoadReport, LoadError> {
    cfg.validate()?;
    let server_idle = cfg.server_pid.map(|pid| procfs::sample(Some(pid))).transpose()?;

    let mut people: Vec<Participant> = Vec::with_capacity(cfg.participants());
    let result = async {
        let admitted = if cfg.admit_all {
            Some(join_admitting_all(cfg, &mut people).await?)
        } else {
            join_all(cfg, &mut people).await.map(|_| None)?
        };
        let mut rejoins = report::Rejoins::default();
        wait_until_flowing(cfg, &mut people, &mut rejoins).await?;
        keep_connected(&mut people, cfg.warmup, &mut rejoins).await?;
        let mut report = measure(cfg, &mut people, server_idle, rejoins).await?;
        report.admit_all = admitted;
        Ok(report)
    }
    .await;
    // Leave even when measuring failed, so the server is left empty.
    for p in people {
        p.client.close().await;
    }
    result
}

async fn join_all(cfg: &LoadConfig, people: &mut Vec<Participant>) -> Result<(), LoadError> {
    let latency_cap = latency_cap(cfg);
    let issuer = TokenIssuer::new(&cfg.token_secret);
    for room in 0..cfg.rooms {
        let room_name = format!("{}-{room}", cfg.room_prefix);
        let room_id = RoomId::new(room_name.clone()).map_err(|e| LoadError::Bounds(e.to_string()))?;
        // Publishers first, so every subscriber's join time is measured against live media.
        for i in 0..cfg.publishers + cfg.subscribers {
            let publisher = i < cfg.publishers;
            let opts = participant_options(cfg, &issuer, &room_id, i, latency_cap)?;
            let name = opts.name.clone();
            let client = MediaClient::join_any(opts, REJOIN_PATIENCE)
                .await
                .map_err(|source| LoadError::Join { name: format!("{room_name}/{name}"), source: Box::new(source) })?;
            if !client.admitted {
                let id = format!("{room_name}/{name}");
                client.close().await;
                return Err(LoadError::Waiting(id));
            }
            let others = if publisher { cfg.publishers - 1 } else { cfg.publishers };
            people.push(Participant { client, joined_into_media: i > 0, expects: others * TRACKS_PER_PUBLISHER });
        }
        info!(room = %room_name, participants = cfg.publishers + cfg.subscribers, "room joined");
    }
    Ok(())
}

/// Latency samples are kept per remote track from the start of the window; bound them to about
/// 20 million in all (160 MB) however many tracks and seconds a run has.
fn latency_cap(cfg: &LoadConfig) -> usize {
    let tracks = (cfg.participants() * cfg.publishers * TRACKS_PER_PUBLISHER).max(1);
    (20_000_000 / tracks).clamp(100, 200_000)
}

/// Valid for the whole run, however long the setup takes.
fn token_ttl(cfg: &LoadConfig) -> Duration {
    cfg.duration + cfg.warmup + Duration::from_secs(3600)
}

/// How participant `i` of a room joins: the first `cfg.publishers` publish audio and video,
/// the rest join as observers (the role that receives and never publishes).
fn participant_options(
    cfg: &LoadConfig,
    issuer: &TokenIssuer,
    room: &RoomId,
    i: usize,
    latency_cap: usize,
) -> Result<MediaOptions, LoadError> {
    let publisher = i < cfg.publishers;
    let name = if publisher { format!("pub{i}") } else { format!("sub{}", i - cfg.publishers) };
    let role = if publisher { Role::Participant } else { Role::Observer };
    let (token, _) = issuer.mint(room, role, &name, None, token_ttl(cfg))?;
    let mut opts = MediaOptions::light(&cfg.url, room.as_str(), &name).with_token(token);
    opts.publish_audio = publisher;
    opts.publish_video = publisher;
    opts.audio_pps = AUDIO_PPS;
    opts.audio_payload = AUDIO_PAYLOAD;
    opts.video_profile = Some(cfg.video.clone());
    opts.latency_samples = latency_cap;
    opts.fallback_urls = cfg.fallback_urls.clone();
    opts.simulcast = publisher && cfg.simulcast;
    if !publisher && i - cfg.publishers < cfg.throttled_subscribers {
        opts.throttle_kbps = cfg.throttle_kbps;
    }
    Ok(opts)
}

/// How long the admitted subscribers may take to see every publisher before the run gives up
/// waiting and reports who is missing.
const ADMISSION_PATIENCE: Duration = Duration::from_secs(20);

/// The `admit_all` setup: per room a therapist, then the publishers (waiting, admitted
/// together), their media flowing, then the subscribers (waiting, admitted together). Measures
/// from the therapist's `admitAll` to each subscriber's first complete keyframe of each
/// publisher's video.
async fn join_admitting_all(cfg: &LoadConfig, people: &mut Vec<Participant>) -> Result<report::AdmitAll, LoadError> {
    let issuer = TokenIssuer::new(&cfg.token_secret);
    let latency_cap = latency_cap(cfg);
    let mut last_publisher = Vec::new();
    let mut pairs = Vec::new();
    let mut server_offers = Vec::new();
    let mut keyframe_requests = Vec::new();
    let mut stages: [Vec<u64>; 4] = Default::default();
    let mut subscribers = 0;
    let mut complete = 0;
    for room in 0..cfg.rooms {
        let room_name = format!("{}-{room}", cfg.room_prefix);
        let room_id = RoomId::new(room_name.clone()).map_err(|e| LoadError::Bounds(e.to_string()))?;
        let (token, _) = issuer.mint(&room_id, Role::Therapist, "host", None, token_ttl(cfg))?;
        let mut host_opts = MediaOptions::light(&cfg.url, &room_name, "host").with_token(token);
        host_opts.publish_audio = false;
        host_opts.publish_video = false;
        host_opts.fallback_urls = cfg.fallback_urls.clone();
        let host = MediaClient::join_any(host_opts, REJOIN_PATIENCE)
            .await
            .map_err(|source| LoadError::Join { name: format!("{room_name}/host"), source: Box::new(source) })?;
        let first = people.len();
        people.push(Participant { client: host, joined_into_media: false, expects: cfg.publishers * TRACKS_PER_PUBLISHER });
        admit_group(cfg, &issuer, &room_id, people, first, 0..cfg.publishers, latency_cap).await?;
        let publishers = first + 1..first + 1 + cfg.publishers;
        // Publishers see each other (and the host sees them) before anyone else is let in, so
        // the subscribers meet a session whose video is already flowing.
        let deadline = Instant::now() + ADMISSION_PATIENCE;
        while Instant::now() < deadline && !people[first..publishers.end].iter().all(|p| video_from_all(&p.client, p.expects)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let requests_before: Vec<u64> = people[publishers.clone()].iter().map(|p| p.client.keyframe_requests_received()).collect();
        let admitted_at =
            admit_group(cfg, &issuer, &room_id, people, first, cfg.publishers..cfg.publishers + cfg.subscribers, latency_cap).await?;
        let subs = publishers.end..people.len();
        let publisher_ids: Vec<String> = people[publishers.clone()].iter().map(|p| p.client.participant_id.to_string()).collect();
        let deadline = admitted_at + ADMISSION_PATIENCE;
        loop {
            let done = people[subs.clone()].iter().all(|p| first_keyframes(&p.client, &publisher_ids).iter().all(Option::is_some));
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (p, before) in people[publishers.clone()].iter().zip(requests_before) {
            keyframe_requests.push(p.client.keyframe_requests_received().saturating_sub(before));
        }
        for p in &people[subs] {
            subscribers += 1;
            server_offers.push(u64::from(p.client.server_offers()));
            let times = first_keyframes(&p.client, &publisher_ids);
            let ms = |t: Instant| t.saturating_duration_since(admitted_at).as_micros() as u64;
            let m = p.client.milestones();
            for (stage, at) in stages.iter_mut().zip([m.answered, m.server_offer_answered, m.ice_connected, m.connected]) {
                stage.extend(at.map(ms));
            }
            pairs.extend(times.iter().flatten().map(|t| ms(*t)));
            if times.iter().all(Option::is_some) {
                complete += 1;
                last_publisher.extend(times.iter().flatten().max().map(|t| ms(*t)));
            }
        }
        info!(room = %room_name, subscribers = cfg.subscribers, "admitted together");
    }
    let [answered, tracks_answered, ice_connected, connected] = stages;
    Ok(report::AdmitAll {
        subscribers,
        complete,
        last_publisher_ms: Percentiles::of(last_publisher, 1e-3),
        pairs_ms: Percentiles::of(pairs, 1e-3),
        server_offers: Percentiles::of(server_offers, 1.0),
        keyframe_requests: Percentiles::of(keyframe_requests, 1.0),
        stages: report::AdmitStages {
            answered_ms: Percentiles::of(answered, 1e-3),
            tracks_answered_ms: Percentiles::of(tracks_answered, 1e-3),
            ice_connected_ms: Percentiles::of(ice_connected, 1e-3),
            connected_ms: Percentiles::of(connected, 1e-3),
        },
    })
}

/// Joins participants `range` of a room (they wait), then has the room's therapist (at
/// `people[host]`) admit them all with one `admitAll`; returns when that was sent.
async fn admit_group(
    cfg: &LoadConfig,
    issuer: &TokenIssuer,
    room: &RoomId,
    people: &mut Vec<Participant>,
    host: usize,
    range: std::ops::Range<usize>,
    latency_cap: usize,
) -> Result<Instant, LoadError> {
    for i in range {
        let opts = participant_options(cfg, issuer, room, i, latency_cap)?;
        let name = format!("{room}/{}", opts.name);
        let client = MediaClient::join_any(opts, REJOIN_PATIENCE)
            .await
            .map_err(|source| LoadError::Join { name: name.clone(), source: Box::new(source) })?;
        if client.admitted {
            client.close().await;
            return Err(LoadError::NotWaiting(name));
        }
        let others = if i < cfg.publishers { cfg.publishers - 1 } else { cfg.publishers };
        people.push(Participant { client, joined_into_media: false, expects: others * TRACKS_PER_PUBLISHER });
    }
    // Their offers went out right after `joined`; give the last one a moment to reach the
    // server, as a therapist glancing at the waiting list would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    people[host].client.send(crate::signal::protocol::ClientMessage::AdmitAll);
    Ok(Instant::now())
}

/// Whether `client` receives video from as many remote tracks as half of `expects` (a video
/// per publisher).
fn video_from_all(client: &MediaClient, expects: usize) -> bool {
    client.received().values().filter(|t| t.kind == MediaKind::Video && t.first_keyframe_at.is_some()).count()
        >= expects / TRACKS_PER_PUBLISHER
}

/// Per publisher (by participant id), when `client` completed its first keyframe of that
/// publisher's video.
fn first_keyframes(client: &MediaClient, publishers: &[String]) -> Vec<Option<Instant>> {
    let received = client.received();
    publishers
        .iter()
        .map(|id| {
            received.values().filter(|t| t.kind == MediaKind::Video && &t.participant == id).filter_map(|t| t.first_keyframe_at).min()
        })
        .collect()
}

/// Waits (bounded) until every participant receives every track it should.
async fn wait_until_flowing(cfg: &LoadConfig, people: &mut Vec<Participant>, rejoins: &mut report::Rejoins) -> Result<(), LoadError> {
    let limit = Duration::from_secs(20) + Duration::from_millis(300) * cfg.participants() as u32;
    let deadline = Instant::now() + limit;
    loop {
        let missing: usize =
            people.iter().map(|p| p.expects.saturating_sub(p.client.received().values().filter(|t| t.packets > 0).count())).sum();
        if missing == 0 {
            info!("every participant receives every track");
            return Ok(());
        }
        if Instant::now() >= deadline {
            let short: Vec<String> = people
                .iter()
                .filter_map(|p| {
                    let got = p.client.received().values().filter(|t| t.packets > 0).count();
                    let kinds: Vec<String> =
                        p.client.received().values().map(|t| format!("{}:{:?}:{}", t.participant, t.kind, t.packets)).collect();
                    (got < p.expects).then(|| format!("{} got {got} of {} [{}]", p.client.participant_id, p.expects, kinds.join(" ")))
                })
                .collect();
            warn!(missing, short = ?short, "not every track arrived before the deadline; measuring anyway");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        rejoin_lost(people, rejoins).await?;
    }
}

struct Snapshot {
    at: Instant,
    received: Vec<HashMap<String, ReceivedTrack>>,
    server: Option<procfs::ProcessSample>,
    own: procfs::ProcessSample,
    machine: procfs::MachineSample,
    udp: procfs::UdpCounters,
    server_socket_drops: Option<u64>,
    own_socket_drops: u64,
}

fn snapshot(cfg: &LoadConfig, people: &[Participant]) -> Result<Snapshot, LoadError> {
    Ok(Snapshot {
        at: Instant::now(),
        received: people.iter().map(|p| p.client.received()).collect(),
        server: cfg.server_pid.map(|pid| procfs::sample(Some(pid))).transpose()?,
        own: procfs::sample(None)?,
        machine: procfs::machine()?,
        udp: procfs::udp()?,
        server_socket_drops: match cfg.server_pid {
            Some(pid) if !cfg.server_in_process => Some(procfs::udp_socket_drops(Some(pid))?),
            _ => None,
        },
        own_socket_drops: procfs::udp_socket_drops(None)?,
    })
}

/// How long a participant whose node went away keeps trying to rejoin.
const REJOIN_PATIENCE: Duration = Duration::from_secs(15);

/// Waits `span`, rejoining (with the same token) every participant whose signaling socket
/// closed: its node died or drained. Received counts carry over, so the window's figures
/// include what a move cost.
async fn keep_connected(people: &mut Vec<Participant>, span: Duration, rejoins: &mut report::Rejoins) -> Result<(), LoadError> {
    let deadline = Instant::now() + span;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now()))).await;
        rejoin_lost(people, rejoins).await?;
    }
    Ok(())
}

/// Rejoins, together, every participant whose signaling socket closed.
async fn rejoin_lost(people: &mut Vec<Participant>, rejoins: &mut report::Rejoins) -> Result<(), LoadError> {
    let lost: Vec<usize> = (0..people.len()).filter(|&i| !people[i].client.is_connected()).collect();
    if lost.is_empty() {
        return Ok(());
    }
    {
        let started = Instant::now();
        info!(participants = lost.len(), "signaling lost; rejoining");
        // Out of the list back to front (indexes stay valid), rejoined together, put back in
        // place: snapshots are matched to participants by position.
        let taken: Vec<(usize, Participant)> = lost.iter().rev().map(|&i| (i, people.remove(i))).collect();
        let back = futures::future::join_all(taken.into_iter().map(|(i, p)| async move {
            let Participant { client, joined_into_media, expects } = p;
            let client = client.rejoin(REJOIN_PATIENCE).await;
            (i, client.map(|client| Participant { client, joined_into_media, expects }))
        }))
        .await;
        let mut back: Vec<_> = back.into_iter().collect();
        back.sort_by_key(|(i, _)| *i);
        for (i, p) in back {
            let p = p.map_err(|source| LoadError::Join { name: format!("participant #{i} (rejoining)"), source: Box::new(source) })?;
            people.insert(i, p);
        }
        rejoins.count += lost.len();
        rejoins.max_ms = rejoins.max_ms.max(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}

async fn measure(
    cfg: &LoadConfig,
    people: &mut Vec<Participant>,
    server_idle: Option<procfs::ProcessSample>,
    mut rejoins: report::Rejoins,
) -> Result<LoadReport, LoadError> {
    for p in people.iter() {
        p.client.drain_latencies(); // warm-up samples are not steady state
    }
    let a = snapshot(cfg, people)?;
    info!(seconds = cfg.duration.as_secs_f64(), "measuring");
    keep_connected(people, cfg.duration, &mut rejoins).await?;
    // Whose video the server has paused right now: the last videoState each one heard.
    let mut paused = 0;
    for p in people.iter_mut() {
        let mut last = false;
        while let Ok(m) = p.client.events.try_recv() {
            if let crate::signal::protocol::ServerMessage::VideoState { paused, .. } = m {
                last = paused;
            }
        }
        paused += usize::from(last);
    }
    let people: &[Participant] = people;
    let b = snapshot(cfg, people)?;
    let latencies: Vec<u64> = people.iter().flat_map(|p| p.client.drain_latencies()).collect();
    let window = b.at.duration_since(a.at).as_secs_f64();

    let mut fwd = Forwarded::default();
    let mut loss = Loss::default();
    let (mut lost_by_kind, mut expected_by_kind) = ([0u64; 2], [0u64; 2]);
    // Per publisher track: the most probes any receiver saw advance (what was actually sent).
    let mut sent: HashMap<&str, (MediaKind, u64)> = HashMap::new();
    for (before, after) in a.received.iter().zip(&b.received) {
        for (key, t) in after {
            let prev = before.get(key);
            let packets = t.packets - prev.map_or(0, |p| p.packets);
            let duplicates = t.duplicates - prev.map_or(0, |p| p.duplicates);
            fwd.packets += packets;
            fwd.duplicates += duplicates;
            fwd.late += t.late - prev.map_or(0, |p| p.late);
            fwd.bytes += t.bytes - prev.map_or(0, |p| p.bytes);
            fwd.seq_regressions += t.seq_regressions - prev.map_or(0, |p| p.seq_regressions);
            for (i, n) in t.layers.iter().enumerate() {
                fwd.video_layer_packets[i] += n - prev.map_or(0, |p| p.layers[i]);
            }
            if t.packets > 0 {
                fwd.streams += 1;
            }
            // Probes are consecutive per publisher track, so the advance of the highest one is
            // what was sent in the window; a track new in the window starts at its lowest.
            let expected = match prev.filter(|p| p.packets > 0) {
                Some(p) => t.probe_max.saturating_sub(p.probe_max),
                None if t.packets > 0 => t.probe_max - t.probe_min + 1,
                None => 0,
            };
            let lost = expected.saturating_sub(packets - duplicates);
            loss.lost += lost;
            loss.expected += expected;
            let k = usize::from(t.kind == MediaKind::Video);
            lost_by_kind[k] += lost;
            expected_by_kind[k] += expected;
            if expected > 0 {
                loss.worst_track_fraction = loss.worst_track_fraction.max(lost as f64 / expected as f64);
            }
            let entry = sent.entry(key.as_str()).or_insert((t.kind, 0));
            entry.1 = entry.1.max(expected);
        }
    }
    let ratio = |num: u64, den: u64| if den == 0 { 0.0 } else { num as f64 / den as f64 };
    loss.fraction = ratio(loss.lost, loss.expected);
    loss.audio_fraction = ratio(lost_by_kind[0], expected_by_kind[0]);
    loss.video_fraction = ratio(lost_by_kind[1], expected_by_kind[1]);
    fwd.expected_streams = people.iter().map(|p| p.expects).sum();
    fwd.packets_per_s = fwd.packets as f64 / window;
    fwd.bytes_per_s = fwd.bytes as f64 / window;
    fwd.mbit_per_s = fwd.bytes_per_s * 8.0 / 1e6;
    let nominal_per_publisher = (f64::from(AUDIO_PPS) + cfg.video.packets_per_second()) * window;
    let sent_total: u64 = sent.values().map(|(_, n)| n).sum();
    let publishers = (cfg.rooms * cfg.publishers) as f64;
    fwd.publisher_send_ratio = sent_total as f64 / (nominal_per_publisher * publishers);

    let mut join = Vec::new();
    let mut join_video = Vec::new();
    for (p, received) in people.iter().zip(&b.received) {
        if !p.joined_into_media {
            continue;
        }
        let first = |kind: Option<MediaKind>| {
            received
                .values()
                .filter(|t| kind.is_none_or(|k| t.kind == k))
                .filter_map(|t| t.first_at)
                // A participant who rejoined keeps the tracks of its first node beside the new
                // ones: its join time is the rejoin's.
                .filter(|t| *t >= p.client.joined_at)
                .min()
                .map(|t| t.saturating_duration_since(p.client.joined_at).as_micros() as u64)
        };
        join.extend(first(None));
        join_video.extend(first(Some(MediaKind::Video)));
    }

    let participants = people.len();
    let mut server = ServerCost { pid: cfg.server_pid, in_process: cfg.server_in_process, ..Default::default() };
    if let (Some(sa), Some(sb)) = (a.server, b.server) {
        let cpu = sb.cpu_seconds - sa.cpu_seconds;
        server.cpu_s = Some(cpu);
        server.cores = Some(cpu / window);
        if fwd.packets > 0 {
            server.cpu_s_per_million_packets = Some(cpu / (fwd.packets as f64 / 1e6));
            server.cpu_us_per_packet = Some(cpu * 1e6 / fwd.packets as f64);
        }
        server.rss_end_kib = Some(sb.rss_kib);
        server.peak_rss_kib = Some(sb.peak_rss_kib);
        if let Some(idle) = server_idle {
            server.rss_idle_kib = Some(idle.rss_kib);
            server.rss_per_participant_kib = Some(sb.rss_kib.saturating_sub(idle.rss_kib) as f64 / participants.max(1) as f64);
        }
    }

    Ok(LoadReport {
        config: ReportConfig {
            url: cfg.url.clone(),
            rooms: cfg.rooms,
            publishers_per_room: cfg.publishers,
            subscribers_per_room: cfg.subscribers,
            participants,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            video_kbps: cfg.video.kbps,
            video_fps: cfg.video.fps,
            video_max_packet: cfg.video.max_packet,
            keyframe_interval_frames: cfg.video.keyframe_interval,
            audio_pps: AUDIO_PPS,
            audio_payload: AUDIO_PAYLOAD,
        },
        machine: machine_info(),
        window_s: window,
        forwarded: fwd,
        loss,
        latency_ms: Percentiles::of(latencies, 1e-3),
        join_ms: Percentiles::of(join, 1e-3),
        join_video_ms: Percentiles::of(join_video, 1e-3),
        server,
        load_generator_cpu_s: b.own.cpu_seconds - a.own.cpu_seconds,
        machine_busy: a.machine.busy_fraction_until(&b.machine),
        rejoins,
        admit_all: None,
        throttled_subscribers: if cfg.throttle_kbps.is_some() { cfg.rooms * cfg.throttled_subscribers.min(cfg.subscribers) } else { 0 },
        video_paused_subscribers: paused,
        udp: report::Udp {
            datagrams_sent: b.udp.out_datagrams.saturating_sub(a.udp.out_datagrams),
            rcvbuf_drops: b.udp.rcvbuf_errors.saturating_sub(a.udp.rcvbuf_errors),
            sndbuf_drops: b.udp.sndbuf_errors.saturating_sub(a.udp.sndbuf_errors),
            server_socket_drops: a.server_socket_drops.zip(b.server_socket_drops).map(|(a, b)| b.saturating_sub(a)),
            client_socket_drops: b.own_socket_drops.saturating_sub(a.own_socket_drops),
        },
    })
}

fn machine_info() -> MachineInfo {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    MachineInfo { cpus: std::thread::available_parallelism().map_or(1, |n| n.get()), cpu_model }
}
