//! The figures a load run produces, as JSON (for scripts and docs) and as a human summary.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub config: ReportConfig,
    pub machine: MachineInfo,
    /// Seconds between the two snapshots the rates are computed over.
    pub window_s: f64,
    pub forwarded: Forwarded,
    pub loss: Loss,
    /// Send time in the publisher's payload to arrival at a subscriber's track reader: the
    /// server's forwarding plus both clients' webrtc stacks, all on this machine's clock.
    pub latency_ms: Percentiles,
    /// From starting the websocket connect to the first remote RTP (any kind / video), for
    /// clients that joined while someone in their room was already publishing.
    pub join_ms: Percentiles,
    pub join_video_ms: Percentiles,
    pub server: ServerCost,
    /// This process's CPU during the window (clients' webrtc stacks; plus the server when it
    /// runs in-process).
    pub load_generator_cpu_s: f64,
    /// Fraction of all cores busy during the window, from /proc/stat.
    pub machine_busy: f64,
    pub udp: Udp,
    /// Relay nodes: participants who lost their node during the run and rejoined.
    pub rejoins: Rejoins,
    /// The `admit_all` run: how long subscribers admitted together waited for video.
    pub admit_all: Option<AdmitAll>,
    /// Poor networks: subscribers given a throttle, and those whose video the server had
    /// paused (to keep their audio) when the window closed.
    pub throttled_subscribers: usize,
    pub video_paused_subscribers: usize,
}

/// Subscribers admitted together with one `admitAll`, from that message to each one's first
/// complete keyframe of each publisher's video (what a decoder needs for a first picture).
#[derive(Debug, Clone, Serialize, Default)]
pub struct AdmitAll {
    pub subscribers: usize,
    /// Subscribers who got a first keyframe from every publisher within the run's patience.
    pub complete: usize,
    /// Per complete subscriber, the last publisher's first keyframe: its max is the last of
    /// everyone admitted together.
    pub last_publisher_ms: Percentiles,
    /// Every (subscriber, publisher) pair.
    pub pairs_ms: Percentiles,
    /// Per subscriber, the offers the server made it before it saw every publisher: each is a
    /// renegotiation round trip (one carries every track when subscriptions are batched).
    pub server_offers: Percentiles,
    /// Per publisher, the keyframe requests it received from the admission until every
    /// subscriber saw it: one per subscriber would mean the server does not coalesce.
    pub keyframe_requests: Percentiles,
    /// Where the time went: per subscriber, ms from the `admitAll` to each step of its setup.
    pub stages: AdmitStages,
}

/// Steps of a subscriber's setup after an `admitAll`, in ms on the load generator's clock
/// (see `client::media::Milestones`), over the subscribers admitted together.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AdmitStages {
    /// The server's answer to the offer the subscriber made while waiting was applied.
    pub answered_ms: Percentiles,
    /// The subscriber answered the server's offer of the others' tracks.
    pub tracks_answered_ms: Percentiles,
    /// ICE nominated a pair.
    pub ice_connected_ms: Percentiles,
    /// DTLS finished: media can flow.
    pub connected_ms: Percentiles,
}

/// Rejoins during the window, and the longest one (socket lost noticed → joined again).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Rejoins {
    pub count: usize,
    pub max_ms: f64,
}

/// The kernel's UDP counters over the window (the whole machine, not only this run).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Udp {
    pub datagrams_sent: u64,
    /// Datagrams the kernel dropped because the receiving socket's buffer was full: loss that
    /// happens before any process sees the packet (a receiver that did not get the CPU in time).
    pub rcvbuf_drops: u64,
    pub sndbuf_drops: u64,
    /// The same drops counted at the server's sockets and at the simulated clients' sockets
    /// (sockets closed during the window are not counted).
    pub server_socket_drops: Option<u64>,
    pub client_socket_drops: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportConfig {
    pub url: String,
    pub rooms: usize,
    pub publishers_per_room: usize,
    pub subscribers_per_room: usize,
    pub participants: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub video_kbps: u32,
    pub video_fps: u32,
    pub video_max_packet: usize,
    pub keyframe_interval_frames: u32,
    pub audio_pps: u32,
    pub audio_payload: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub cpus: usize,
    pub cpu_model: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Forwarded {
    /// Packets and payload bytes received by all clients together during the window
    /// (retransmitted duplicates included: they cost the server as much as originals).
    pub packets: u64,
    pub bytes: u64,
    pub packets_per_s: f64,
    pub bytes_per_s: f64,
    pub mbit_per_s: f64,
    /// Remote tracks that delivered anything / that should exist given the room layout.
    pub streams: usize,
    pub expected_streams: usize,
    /// Packets the publishers actually sent (from probe sequences) over what they should have
    /// sent; well below 1 means the load generator itself could not keep up.
    pub publisher_send_ratio: f64,
    pub seq_regressions: u64,
    /// Packets whose probe had already arrived (NACK retransmissions of packets not lost).
    pub duplicates: u64,
    /// First arrivals after a later packet (reordered, or recovered by a retransmission).
    pub late: u64,
    /// Video packets received in the window by simulcast layer (low, medium, high; video
    /// without simulcast counts as low).
    pub video_layer_packets: [u64; 3],
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Loss {
    /// Lost over expected, all remote tracks together, from probe sequences.
    pub fraction: f64,
    pub lost: u64,
    pub expected: u64,
    /// The worst single remote track.
    pub worst_track_fraction: f64,
    pub audio_fraction: f64,
    pub video_fraction: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (any unit), reported after `scale`.
    pub fn of(mut values: Vec<u64>, scale: f64) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[i] as f64 * scale
        };
        Self { samples: values.len(), p50: Some(rank(0.50)), p99: Some(rank(0.99)), max: Some(rank(1.0)) }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ServerCost {
    pub pid: Option<u32>,
    /// The server runs inside the load generator, so its CPU cannot be told apart.
    pub in_process: bool,
    pub cpu_s: Option<f64>,
    /// Server CPU utilisation during the window, in cores (1.0 = one core busy).
    pub cores: Option<f64>,
    pub cpu_s_per_million_packets: Option<f64>,
    /// Microseconds of server CPU per forwarded packet (the same figure, another unit).
    pub cpu_us_per_packet: Option<f64>,
    pub rss_idle_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    /// (RSS at the end of the window - RSS before anyone joined) / participants.
    pub rss_per_participant_kib: Option<f64>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn count(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

impl LoadReport {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let f = &self.forwarded;
        let s = &self.server;
        let mut out = String::new();
        out += &format!(
            "hearth-load: {} room(s) x ({} publishers + {} subscribers) = {} participants, {:.0} s window, video {} kbit/s @ {} fps\n",
            c.rooms, c.publishers_per_room, c.subscribers_per_room, c.participants, self.window_s, c.video_kbps, c.video_fps
        );
        out += &format!(
            "  machine        {} cpus ({}), {:.0}% busy during the window\n",
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine_busy * 100.0
        );
        out += &format!(
            "  forwarded      {:.0} packets/s, {:.1} Mbit/s, {}/{} streams, publishers sent {:.1}% of nominal\n",
            f.packets_per_s,
            f.mbit_per_s,
            f.streams,
            f.expected_streams,
            f.publisher_send_ratio * 100.0
        );
        out += &format!(
            "  loss           {:.3}% ({} of {}; audio {:.3}%, video {:.3}%, worst track {:.3}%)\n",
            self.loss.fraction * 100.0,
            self.loss.lost,
            self.loss.expected,
            self.loss.audio_fraction * 100.0,
            self.loss.video_fraction * 100.0,
            self.loss.worst_track_fraction * 100.0,
        );
        out += &format!("  order          {} duplicates, {} late, {} seq regressions\n", f.duplicates, f.late, f.seq_regressions);
        out += &format!(
            "  kernel UDP     {} receive-buffer drops of {} datagrams sent (server sockets {}, client sockets {})\n",
            self.udp.rcvbuf_drops,
            self.udp.datagrams_sent,
            self.udp.server_socket_drops.map_or("-".into(), |d| d.to_string()),
            self.udp.client_socket_drops
        );
        let l = &self.latency_ms;
        out += &format!("  latency ms     p50 {}  p99 {}  max {}  ({} samples)\n", ms(l.p50), ms(l.p99), ms(l.max), l.samples);
        let j = &self.join_ms;
        let jv = &self.join_video_ms;
        out += &format!(
            "  join ms        first RTP p50 {} max {}; first video p50 {} max {} ({} clients)\n",
            ms(j.p50),
            ms(j.max),
            ms(jv.p50),
            ms(jv.max),
            j.samples
        );
        if let Some(a) = &self.admit_all {
            out += &format!(
                "  admit all      {}/{} admitted together saw every publisher; last publisher's first keyframe p50 {} max {} ms; all pairs p50 {} max {} ms\n",
                a.complete,
                a.subscribers,
                ms(a.last_publisher_ms.p50),
                ms(a.last_publisher_ms.max),
                ms(a.pairs_ms.p50),
                ms(a.pairs_ms.max)
            );
            out += &format!(
                "                 server offers per subscriber p50 {} max {}; keyframe requests per publisher p50 {} max {}\n",
                count(a.server_offers.p50),
                count(a.server_offers.max),
                count(a.keyframe_requests.p50),
                count(a.keyframe_requests.max)
            );
            let st = &a.stages;
            out += &format!(
                "                 stages p50/max ms: answer {}/{}, tracks answered {}/{}, ICE connected {}/{}, DTLS connected {}/{}\n",
                ms(st.answered_ms.p50),
                ms(st.answered_ms.max),
                ms(st.tracks_answered_ms.p50),
                ms(st.tracks_answered_ms.max),
                ms(st.ice_connected_ms.p50),
                ms(st.ice_connected_ms.max),
                ms(st.connected_ms.p50),
                ms(st.connected_ms.max)
            );
        }
        let l = &f.video_layer_packets;
        if l[1] + l[2] > 0 || self.throttled_subscribers > 0 {
            out += &format!(
                "  video layers   low {} / medium {} / high {} packets; {} throttled subscribers, {} with video paused at the end\n",
                l[0], l[1], l[2], self.throttled_subscribers, self.video_paused_subscribers
            );
        }
        if self.rejoins.count > 0 {
            out += &format!(
                "  rejoins        {} participants lost their node and rejoined (longest {:.0} ms)\n",
                self.rejoins.count, self.rejoins.max_ms
            );
        }
        if s.in_process {
            out += "  server         in-process: its CPU is inside the load generator's figure\n";
        }
        if let (Some(cpu), Some(per_m)) = (s.cpu_s, s.cpu_s_per_million_packets) {
            out += &format!(
                "  server CPU     {:.2} s ({:.2} cores), {:.2} s per million forwarded packets ({:.2} us/packet)\n",
                cpu,
                s.cores.unwrap_or(0.0),
                per_m,
                s.cpu_us_per_packet.unwrap_or(0.0)
            );
        }
        if let (Some(idle), Some(end)) = (s.rss_idle_kib, s.rss_end_kib) {
            out += &format!(
                "  server RSS     {:.1} MiB idle -> {:.1} MiB, {:.0} KiB per participant (peak {:.1} MiB)\n",
                idle as f64 / 1024.0,
                end as f64 / 1024.0,
                s.rss_per_participant_kib.unwrap_or(0.0),
                s.peak_rss_kib.unwrap_or(0) as f64 / 1024.0
            );
        }
        out += &format!("  load generator {:.2} CPU s in the window\n", self.load_generator_cpu_s);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).collect(), 1.0);
        assert_eq!((p.p50, p.p99, p.max), (Some(50.0), Some(99.0), Some(100.0)));
        let p = Percentiles::of(vec![7], 0.001);
        assert_eq!(p.p99, Some(0.007));
        assert_eq!(Percentiles::of(vec![], 1.0).p50, None);
    }
}
