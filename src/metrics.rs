//! Prometheus metrics at `/metrics` (the `prometheus-client` crate, one registry per server).
//!
//! Counters on the media path are plain atomics in [`SfuStats`], read at scrape time, so
//! forwarding pays one relaxed add per packet. Labels carry message types and error codes,
//! never ids, names or contents.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::room::RoomRegistry;
use crate::sfu::SfuStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Websocket messages received, by `type`.
    pub ws_messages: Family<TypeLabel, Counter>,
    /// Error replies sent, by `code`.
    pub errors: Family<CodeLabel, Counter>,
    /// Seconds from a `join` message to the room accepting it (token check, peer set-up).
    pub join_seconds: Histogram,
    /// Relay nodes: joins sent to the node that owns the room.
    pub redirects: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Reads the live state at scrape time.
#[derive(Debug)]
struct StateCollector {
    sfu: Arc<SfuStats>,
    rooms: RoomRegistry,
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.sfu;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        gauge(&mut e, "hearth_rooms", "Rooms with at least one participant", self.rooms.room_count() as i64)?;
        {
            let g = ConstGauge::new(0i64);
            let mut family = e.encode_descriptor("hearth_participants", "Connected participants by role", None, g.metric_type())?;
            for (role, n) in self.rooms.participants_by_role() {
                let labels = [("role", role.as_str())];
                ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(&mut e, "hearth_peer_connections", "Server-side peer connections", s.peers.load(Ordering::Relaxed) as i64)?;
        {
            let g = ConstGauge::new(0i64);
            let mut family = e.encode_descriptor(
                "hearth_peers_by_path",
                "Connected peers by the path their media takes: host (UDP straight to the server), srflx (through the client's NAT), relay (through TURN), tcp (ICE over TCP)",
                None,
                g.metric_type(),
            )?;
            for path in crate::sfu::path::MediaPath::ALL {
                let labels = [("path", path.as_str())];
                ConstGauge::new(s.peers_by_path[path as usize].load(Ordering::Relaxed) as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(&mut e, "hearth_published_tracks", "Tracks participants publish", s.published_tracks.load(Ordering::Relaxed) as i64)?;
        gauge(
            &mut e,
            "hearth_forwarded_tracks",
            "Subscriptions: published tracks forwarded to a subscriber",
            s.subscriptions.load(Ordering::Relaxed) as i64,
        )?;
        counter(&mut e, "hearth_rtp_packets_in", "RTP packets received from publishers", load(&s.rtp_packets_in))?;
        counter(&mut e, "hearth_rtp_bytes_in", "RTP payload bytes received from publishers", load(&s.rtp_bytes_in))?;
        counter(&mut e, "hearth_rtp_packets_out", "RTP packets forwarded to subscribers", load(&s.rtp_packets_out))?;
        counter(&mut e, "hearth_rtp_bytes_out", "RTP payload bytes forwarded to subscribers", load(&s.rtp_bytes_out))?;
        counter(&mut e, "hearth_rtp_duplicates_dropped", "Duplicate RTP packets dropped before fan-out", load(&s.rtp_duplicates_dropped))?;
        counter(&mut e, "hearth_pli_sent", "Keyframe requests (PLI) sent to publishers", load(&s.keyframe_requests_sent))?;
        counter(
            &mut e,
            "hearth_pli_received",
            "Keyframe requests (PLI/FIR) received from subscribers",
            load(&s.keyframe_requests_received),
        )?;
        counter(
            &mut e,
            "hearth_nack_received",
            "Packets subscribers asked to have sent again (loss on the way to them)",
            load(&s.nack_received),
        )?;
        counter(
            &mut e,
            "hearth_nack_sent",
            "Packets the server asked publishers to send again (loss on the way to it)",
            load(&s.nack_sent),
        )?;
        counter(&mut e, "hearth_simulcast_layer_switches", "Simulcast layer switches made for subscribers", load(&s.layer_switches))?;
        gauge(
            &mut e,
            "hearth_video_paused_for_bandwidth",
            "Video subscriptions paused because the subscriber's connection cannot carry the lowest layer",
            s.bandwidth_paused.load(Ordering::Relaxed) as i64,
        )?;
        counter(
            &mut e,
            "hearth_media_port_unrouted",
            "Datagrams on the shared media port that belonged to no connection (dropped)",
            load(&s.media_port_unrouted),
        )?;
        gauge(
            &mut e,
            "hearth_media_port_buffer_bytes",
            "Receive buffer of the shared media socket as the kernel granted it (ice.socket_buffer_bytes, capped by net.core.rmem_max)",
            s.media_port_buffer_bytes.load(Ordering::Relaxed) as i64,
        )?;
        counter(
            &mut e,
            "hearth_media_port_overflow",
            "Datagrams on the shared media port dropped because a connection's queue was full",
            load(&s.media_port_overflow),
        )?;
        counter(
            &mut e,
            "hearth_log_lines_suppressed",
            "Repeated warning and error lines not written (summarised every 10 s instead)",
            crate::log_limit::suppressed_total(),
        )?;
        counter(
            &mut e,
            "hearth_room_failures",
            "Room tasks that failed and were ended (members reconnect to a fresh room)",
            self.rooms.room_failures(),
        )?;
        if let Some(c) = self.rooms.cluster() {
            gauge(&mut e, "hearth_cluster_draining", "1 while this relay node drains", i64::from(c.is_draining()))?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(sfu: Arc<SfuStats>, rooms: RoomRegistry) -> Arc<Self> {
        let mut registry = Registry::default();
        let ws_messages = Family::<TypeLabel, Counter>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let join_seconds = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        registry.register("hearth_ws_messages", "Websocket messages received, by type", ws_messages.clone());
        registry.register("hearth_errors", "Error replies sent, by code", errors.clone());
        registry.register("hearth_join_seconds", "Time from join to the room accepting it", join_seconds.clone());
        let redirects = Counter::default();
        registry.register("hearth_cluster_redirects", "Joins redirected to the relay node that owns the room", redirects.clone());
        registry.register_collector(Box::new(StateCollector { sfu, rooms }));
        Arc::new(Self { registry, ws_messages, errors, join_seconds, redirects })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}
