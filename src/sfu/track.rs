//! A published track and the fan-out of its RTP to subscribers.
//!
//! A publisher's incoming track becomes one [`PublishedTrack`]: a reader task pulls RTP from the
//! webrtc crate and puts it on a broadcast channel; each subscription is a task that takes from
//! that channel and writes into the subscriber's own local track. No decoding, no mixing: only
//! the SSRC and payload type are rewritten for the subscriber's leg, and header extensions
//! (whose ids were negotiated on the publisher's leg) are stripped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use tokio::sync::broadcast;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::audio_level::{ExtensionId, Loudness};
use super::simulcast::{layer_of_rid, vp8_keyframe_size, MAX_LAYERS};
use super::SfuStats;
use crate::vocab::ParticipantId;
use crate::vocab::{MediaKind, TrackSource};

/// Packets buffered per track before a slow subscriber starts losing them (about 1 s of video).
const FANOUT_CAPACITY: usize = 512;
/// Keyframe requests to one publisher are coalesced to at most one per this interval.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Requests for a keyframe after the last one arrived wait this long at most, so a burst of
/// joiners is served by one keyframe instead of one each.
const KEYFRAME_BATCH: Duration = Duration::from_millis(100);

/// What to do with a keyframe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyframeRequest {
    Now,
    /// A request is out and unanswered: its keyframe will serve this subscriber too.
    Skip,
    /// Send one request after this long (a keyframe came very recently).
    After(Duration),
}

/// The coalescing rule for keyframe requests, given when the last request went out and whether
/// a keyframe has arrived since a given instant. An unanswered request is repeated after
/// [`KEYFRAME_REQUEST_INTERVAL`] (the publisher may have missed it); an answered one no longer
/// serves new subscribers, so the next request goes out at once, batched by [`KEYFRAME_BATCH`].
fn keyframe_request(now: Instant, last: Option<Instant>, keyframe_since: impl Fn(Instant) -> bool) -> KeyframeRequest {
    let Some(last) = last else { return KeyframeRequest::Now };
    let since = now.duration_since(last);
    if !keyframe_since(last) {
        return if since >= KEYFRAME_REQUEST_INTERVAL { KeyframeRequest::Now } else { KeyframeRequest::Skip };
    }
    if since >= KEYFRAME_BATCH {
        KeyframeRequest::Now
    } else {
        KeyframeRequest::After(KEYFRAME_BATCH - since)
    }
}

/// Identifies a published track: `<participant>/<kind>/<n>`; also the msid track id.
pub type TrackId = String;

pub struct PublishedTrack {
    pub id: TrackId,
    pub publisher: ParticipantId,
    pub kind: MediaKind,
    pub(super) codec: RTCRtpCodec,
    media_ssrc: u32,
    /// `None` only for tracks made by tests of the room's rules, which carry no media.
    remote: Option<Arc<dyn TrackRemote>>,
    packets: broadcast::Sender<Fanned>,
    /// Cleared by a moderator's hard mute: packets are dropped at the source.
    forwarding: AtomicBool,
    last_keyframe_request: Mutex<Option<Instant>>,
    /// When the last keyframe (any layer) arrived: ms since `born` plus one (0: never).
    last_keyframe_ms: AtomicU64,
    /// A batched keyframe request is scheduled.
    keyframe_request_pending: AtomicBool,
    /// Server-wide counters.
    stats: Arc<SfuStats>,
    /// Audio: how loud the publisher is, from the audio-level header extension.
    pub loudness: Loudness,
    /// The audio-level extension id negotiated on the publisher's peer.
    audio_level_id: Arc<ExtensionId>,
    /// The msid of this track in the publisher's SDP (track id and stream id), which a
    /// `screenShare` message names.
    pub client_track_id: String,
    pub client_stream_id: String,
    /// Set by the room when the publisher announced this track as a screen share.
    screen: AtomicBool,
    /// Simulcast: the publisher sends rid-tagged layers.
    simulcast: AtomicBool,
    /// Each layer's SSRC (0: not seen) and picture height from its keyframes (0: unknown).
    layer_ssrc: [AtomicU32; MAX_LAYERS],
    layer_height: [AtomicU32; MAX_LAYERS],
    /// When each layer last sent, ms since `born`: a browser stops sending its upper layers
    /// when its own estimate drops, and nobody must wait for a layer that stopped.
    layer_last_ms: [AtomicU64; MAX_LAYERS],
    born: Instant,
    /// Video: what each subscriber's leg (by its SSRC) estimates it can carry (`None`: no
    /// limit known), for the REMB sent to the publisher ([`PublishedTrack::regulate_publisher`]).
    downlinks: Mutex<HashMap<u32, Option<f64>>>,
}

/// How often a video publisher is told (REMB) how much its subscribers can take.
const REMB_EVERY: Duration = Duration::from_secs(1);
/// The REMB a publisher gets is never below this: a subscriber who cannot carry even this much
/// has its video paused (its audio kept) rather than dragging everyone's picture down with it.
pub const REMB_FLOOR_BPS: f64 = 150_000.0;
/// Nor above this: a camera's full layer (browsers cap simulcast's top layer at 1.5 Mbit/s)
/// with room for its lower layers.
pub const REMB_CEILING_BPS: f64 = 2_500_000.0;

/// The bitrate to offer a video publisher, from what its subscribers' legs estimate (`None`
/// for a leg: no limit known). Without simulcast the one stream must fit the weakest downlink
/// (the minimum); with simulcast lower layers serve weaker downlinks, so the strongest decides
/// (the maximum). Bounded by [`REMB_FLOOR_BPS`] and [`REMB_CEILING_BPS`]; no subscriber, or
/// none with a limit, gives the ceiling.
pub fn publisher_bitrate(legs: impl IntoIterator<Item = Option<f64>>, simulcast: bool) -> f64 {
    let mut known = Vec::new();
    for leg in legs {
        match leg {
            Some(bps) => known.push(bps),
            // A leg without a limit can take anything: with simulcast it decides alone.
            None if simulcast => return REMB_CEILING_BPS,
            None => {}
        }
    }
    let pick = if simulcast { known.iter().copied().reduce(f64::max) } else { known.iter().copied().reduce(f64::min) };
    pick.unwrap_or(REMB_CEILING_BPS).clamp(REMB_FLOOR_BPS, REMB_CEILING_BPS)
}

/// A simulcast layer silent this long is not switched to.
const LAYER_IDLE_MS: u64 = 1000;

/// What a track's pump remembers between packets.
#[derive(Default)]
struct PumpState {
    /// Sequence numbers are per layer, so duplicates are too.
    seen: [SeqWindow; MAX_LAYERS],
    /// Simulcast: which layer each SSRC carries (from the rids the track announced).
    layers: HashMap<u32, usize>,
}

/// What the fan-out carries: the simulcast layer (0 without simulcast) and the packet.
pub type Fanned = (u8, rtp::Packet);

impl PublishedTrack {
    // Called from one place (the peer's `on_track`), which has every piece at hand.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: TrackId,
        publisher: ParticipantId,
        kind: MediaKind,
        codec: RTCRtpCodec,
        media_ssrc: u32,
        remote: Arc<dyn TrackRemote>,
        stats: Arc<SfuStats>,
        audio_level_id: Arc<ExtensionId>,
        client_track_id: String,
        client_stream_id: String,
    ) -> Arc<Self> {
        let mut track = Self::bare(id, publisher, kind, FANOUT_CAPACITY);
        track.codec = codec;
        track.media_ssrc = media_ssrc;
        track.remote = Some(remote);
        track.stats = stats;
        track.audio_level_id = audio_level_id;
        track.client_track_id = client_track_id;
        track.client_stream_id = client_stream_id;
        Arc::new(track)
    }

    /// A track without media, for tests of the room's rules (who subscribes to what).
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, publisher: ParticipantId, kind: MediaKind) -> Arc<Self> {
        Arc::new(Self::bare(id.to_string(), publisher, kind, 1))
    }

    /// A track with nothing attached yet: no remote, default codec, its own counters.
    fn bare(id: TrackId, publisher: ParticipantId, kind: MediaKind, capacity: usize) -> Self {
        let (packets, _) = broadcast::channel(capacity);
        Self {
            client_track_id: id.clone(),
            id,
            publisher,
            kind,
            codec: RTCRtpCodec::default(),
            media_ssrc: 0,
            remote: None,
            packets,
            forwarding: AtomicBool::new(true),
            last_keyframe_request: Mutex::new(None),
            last_keyframe_ms: AtomicU64::new(0),
            keyframe_request_pending: AtomicBool::new(false),
            stats: Arc::default(),
            loudness: Loudness::default(),
            audio_level_id: Arc::default(),
            client_stream_id: String::new(),
            screen: AtomicBool::new(false),
            simulcast: AtomicBool::new(false),
            layer_ssrc: Default::default(),
            layer_height: Default::default(),
            layer_last_ms: Default::default(),
            born: Instant::now(),
            downlinks: Mutex::default(),
        }
    }

    /// Reads RTP from the publisher until the track ends. Runs as the track's own task.
    /// `prelude` holds events already taken from the track (by [`first_packet_codec`]) before
    /// this task could start; they are handled first, in order.
    pub(crate) async fn pump(self: Arc<Self>, prelude: Vec<TrackRemoteEvent>) {
        let mut state = PumpState::default();
        let Some(remote) = self.remote.clone() else { return };
        for event in prelude {
            if !self.on_event(&mut state, event) {
                return;
            }
        }
        while let Some(event) = remote.poll().await {
            if !self.on_event(&mut state, event) {
                return;
            }
        }
    }

    /// One event of the publisher's track; false once the track ended.
    fn on_event(&self, state: &mut PumpState, event: TrackRemoteEvent) -> bool {
        match event {
            TrackRemoteEvent::OnOpen(init) => {
                if let Some(rid) = init.rid.as_deref().filter(|r| !r.is_empty()) {
                    self.simulcast.store(true, Ordering::Relaxed);
                    let taken = |i: usize| self.layer_ssrc[i].load(Ordering::Relaxed) != 0;
                    let index = layer_of_rid(rid).or_else(|| (0..MAX_LAYERS).find(|i| !taken(*i)));
                    if let Some(index) = index {
                        self.layer_ssrc[index].store(init.ssrc, Ordering::Relaxed);
                        state.layers.insert(init.ssrc, index);
                    }
                }
            }
            TrackRemoteEvent::OnRtpPacket(packet) => self.on_packet(state, packet),
            TrackRemoteEvent::OnEnded => return false,
            _ => {}
        }
        true
    }

    fn on_packet(&self, state: &mut PumpState, mut packet: rtp::Packet) {
        self.stats.rtp_packets_in.fetch_add(1, Ordering::Relaxed);
        self.stats.rtp_bytes_in.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        let layer = match state.layers.get(&packet.header.ssrc) {
            Some(&l) => l,
            None if !self.simulcast.load(Ordering::Relaxed) => 0,
            // A simulcast stream we have no rid for: nobody could be switched to it.
            None => return,
        };
        if self.kind == MediaKind::Video {
            self.layer_last_ms[layer].store(self.born.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
            if let Some((_, height)) = vp8_keyframe_size(&packet.payload) {
                self.layer_height[layer].store(u32::from(height), Ordering::Relaxed);
            }
            if is_vp8_keyframe(&packet.payload) {
                self.last_keyframe_ms.store(self.born.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
            }
        }
        // A retransmission that arrives after the original would otherwise be multiplied by
        // every subscriber.
        if !state.seen[layer].first_time(packet.header.sequence_number) {
            self.stats.rtp_duplicates_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.kind == MediaKind::Audio {
            if let Some(level) = self.audio_level_id.get().and_then(|id| packet.header.get_extension(id)) {
                self.loudness.record(&level);
            }
        }
        strip_for_fanout(&mut packet);
        if self.forwarding.load(Ordering::Relaxed) {
            // An error only means nobody subscribes right now.
            let _ = self.packets.send((layer as u8, packet));
        }
    }

    /// Marks this video track as a screen share (before anyone subscribes to it).
    pub fn mark_screen(&self) {
        self.screen.store(self.kind == MediaKind::Video, Ordering::Relaxed);
    }

    pub fn source(&self) -> TrackSource {
        match (self.kind, self.screen.load(Ordering::Relaxed)) {
            (MediaKind::Audio, _) => TrackSource::Microphone,
            (MediaKind::Video, false) => TrackSource::Camera,
            (MediaKind::Video, true) => TrackSource::Screen,
        }
    }

    /// The stream id subscribers see: the publisher's id, or `<id>~screen` for a screen share,
    /// so a client can tell the share from the camera by its stream alone.
    pub fn stream_id(&self) -> String {
        match self.source() {
            TrackSource::Screen => format!("{}~screen", self.publisher),
            _ => self.publisher.to_string(),
        }
    }

    /// Whether the frames can be end-to-end encrypted the way Hearth's browsers do it: the
    /// clear codec bytes the relay reads are defined for VP8 video and Opus audio only.
    pub fn e2ee_codec(&self) -> bool {
        let mime = &self.codec.mime_type;
        mime.eq_ignore_ascii_case("video/vp8") || mime.eq_ignore_ascii_case("audio/opus")
    }

    pub fn is_simulcast(&self) -> bool {
        self.simulcast.load(Ordering::Relaxed)
    }

    /// Which layers send (sent within the last second), and their heights when known.
    pub fn layers(&self) -> ([bool; MAX_LAYERS], [Option<u32>; MAX_LAYERS]) {
        let now = self.born.elapsed().as_millis() as u64;
        let available = std::array::from_fn(|i| {
            let last = self.layer_last_ms[i].load(Ordering::Relaxed);
            self.layer_ssrc[i].load(Ordering::Relaxed) != 0 && last != 0 && now.saturating_sub(last) < LAYER_IDLE_MS
        });
        let heights = std::array::from_fn(|i| Some(self.layer_height[i].load(Ordering::Relaxed)).filter(|h| *h != 0));
        (available, heights)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Fanned> {
        self.packets.subscribe()
    }

    pub fn subscriber_count(&self) -> usize {
        self.packets.receiver_count()
    }

    /// Starts or stops forwarding this track to everyone (a moderator's hard mute).
    pub fn set_forwarding(self: &Arc<Self>, on: bool) {
        let was = self.forwarding.swap(on, Ordering::Relaxed);
        if on && !was && self.kind == MediaKind::Video {
            self.request_keyframe();
        }
    }

    pub fn is_forwarding(&self) -> bool {
        self.forwarding.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> &Arc<SfuStats> {
        &self.stats
    }

    /// Counts one packet of `bytes` forwarded to a subscriber.
    pub(crate) fn count_forwarded(&self, bytes: usize) {
        self.stats.rtp_packets_out.fetch_add(1, Ordering::Relaxed);
        self.stats.rtp_bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A subscriber asked for a keyframe.
    pub(crate) fn keyframe_requested_by_subscriber(self: &Arc<Self>) {
        self.stats.keyframe_requests_received.fetch_add(1, Ordering::Relaxed);
        self.request_keyframe();
    }

    /// Asks the publisher for a keyframe (PLI), coalescing bursts from many subscribers: a
    /// request still unanswered serves everyone who asks after it (they are subscribed before
    /// its keyframe arrives); once its keyframe has come, someone who asks next needs a new
    /// one, which goes out at once, or within [`KEYFRAME_BATCH`] so a burst of joiners shares it.
    pub fn request_keyframe(self: &Arc<Self>) {
        if self.kind != MediaKind::Video {
            return;
        }
        let now = Instant::now();
        let decision = {
            let Ok(mut last) = self.last_keyframe_request.lock() else { return };
            let keyframe_after = |t: Instant| {
                let at = self.last_keyframe_ms.load(Ordering::Relaxed);
                at != 0 && self.born + Duration::from_millis(at - 1) >= t
            };
            let d = keyframe_request(now, *last, keyframe_after);
            if d == KeyframeRequest::Now {
                *last = Some(now);
            }
            d
        };
        match decision {
            KeyframeRequest::Now => self.send_pli(),
            KeyframeRequest::Skip => {}
            KeyframeRequest::After(wait) => {
                if !self.keyframe_request_pending.swap(true, Ordering::Relaxed) {
                    let track = Arc::downgrade(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        if let Some(track) = track.upgrade() {
                            track.keyframe_request_pending.store(false, Ordering::Relaxed);
                            track.request_keyframe();
                        }
                    });
                }
            }
        }
    }

    /// A subscriber's leg (our SSRC `leg` towards it) can carry about `estimate` bits per
    /// second of this video (`None`: no limit known).
    pub(crate) fn report_downlink(&self, leg: u32, estimate: Option<f64>) {
        if let Ok(mut map) = self.downlinks.lock() {
            map.insert(leg, estimate);
        }
    }

    /// The leg on `leg` ended.
    pub(crate) fn forget_downlink(&self, leg: u32) {
        if let Ok(mut map) = self.downlinks.lock() {
            map.remove(&leg);
        }
    }

    /// What this video's publisher is told it may send now.
    pub fn publisher_bitrate(&self) -> f64 {
        let legs: Vec<Option<f64>> = self.downlinks.lock().map(|m| m.values().copied().collect()).unwrap_or_default();
        publisher_bitrate(legs, self.is_simulcast())
    }

    /// Tells the publisher (REMB, every [`REMB_EVERY`]) how much its subscribers can take, so
    /// its encoder follows the downlinks instead of its own default. Runs beside `pump` for
    /// video and ends with it.
    pub(crate) async fn regulate_publisher(self: Arc<Self>) {
        let mut tick = tokio::time::interval(REMB_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A simulcast publisher is left to its own estimate: a REMB below the sum of its
            // layers makes Chromium drop the top ones for every subscriber, while each
            // subscriber's layer choice already fits its own downlink.
            if self.layer_ssrcs().next().is_some() {
                continue;
            }
            let ssrcs = self.ssrcs();
            let remb = ReceiverEstimatedMaximumBitrate { sender_ssrc: 0, bitrate: self.publisher_bitrate() as f32, ssrcs };
            let Some(remote) = &self.remote else { return };
            if let Err(e) = remote.write_rtcp(vec![Box::new(remb)]).await {
                tracing::debug!(error = %e, "REMB not sent");
            }
        }
    }

    /// The publisher's SSRCs for this track: every simulcast layer's, or the one stream's.
    fn ssrcs(&self) -> Vec<u32> {
        let mut ssrcs: Vec<u32> = self.layer_ssrcs().collect();
        if ssrcs.is_empty() {
            ssrcs.push(self.media_ssrc);
        }
        ssrcs
    }

    /// The SSRCs of the simulcast layers seen so far (none without simulcast).
    fn layer_ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.layer_ssrc.iter().map(|s| s.load(Ordering::Relaxed)).filter(|s| *s != 0)
    }

    fn send_pli(&self) {
        self.stats.keyframe_requests_sent.fetch_add(1, Ordering::Relaxed);
        let Some(remote) = self.remote.clone() else { return };
        // Every simulcast layer has its own SSRC and its own keyframes.
        let ssrcs = self.ssrcs();
        tokio::spawn(async move {
            let plis: Vec<Box<dyn rtc::rtcp::Packet>> = ssrcs
                .into_iter()
                .map(|media_ssrc| Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc }) as Box<dyn rtc::rtcp::Packet>)
                .collect();
            if let Err(e) = remote.write_rtcp(plis).await {
                tracing::debug!(error = %e, "keyframe request not sent");
            }
        });
    }
}

/// Rewrites a packet (already through [`strip_for_fanout`]) for one subscriber's leg: that
/// leg's SSRC and negotiated payload type. Runs once per packet per subscriber.
pub fn rewrite_for_subscriber(packet: &mut rtp::Packet, ssrc: u32, payload_type: u8) {
    packet.header.ssrc = ssrc;
    packet.header.payload_type = payload_type;
}

/// Removes what no subscriber leg can use, once per packet before fan-out: header extensions
/// carry ids negotiated on the publisher's leg. Done here rather than per subscriber, every
/// clone on the broadcast channel copies an empty extension list (no allocation) instead of
/// the publisher's.
pub fn strip_for_fanout(packet: &mut rtp::Packet) {
    packet.header.extension = false;
    packet.header.extensions = Vec::new();
    packet.header.extensions_padding = 0;
}

/// Remembers which of the last 1024 RTP sequence numbers were seen, to drop duplicates.
#[derive(Default)]
pub struct SeqWindow {
    highest: Option<u16>,
    /// Bit i: `highest - i` was seen.
    bits: [u64; 16],
}

impl SeqWindow {
    const SIZE: u16 = 1024;

    /// True the first time `seq` is offered; false for a duplicate. Packets older than the
    /// window are let through (they cannot be told apart and are rare).
    pub fn first_time(&mut self, seq: u16) -> bool {
        let Some(high) = self.highest else {
            self.highest = Some(seq);
            self.set(0);
            return true;
        };
        let ahead = seq.wrapping_sub(high);
        if ahead != 0 && ahead < 0x8000 {
            self.shift(ahead);
            self.highest = Some(seq);
            self.set(0);
            return true;
        }
        let behind = high.wrapping_sub(seq);
        if behind >= Self::SIZE {
            return true;
        }
        if self.get(behind) {
            return false;
        }
        self.set(behind);
        true
    }

    fn get(&self, i: u16) -> bool {
        self.bits[usize::from(i / 64)] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u16) {
        self.bits[usize::from(i / 64)] |= 1 << (i % 64);
    }

    fn shift(&mut self, by: u16) {
        if by >= Self::SIZE {
            self.bits = [0; 16];
            return;
        }
        let (words, rem) = (usize::from(by / 64), u32::from(by % 64));
        for i in (0..16usize).rev() {
            let src = i.checked_sub(words);
            let mut v = src.map_or(0, |s| self.bits[s] << rem);
            if rem > 0 {
                if let Some(lower) = src.and_then(|s| s.checked_sub(1)) {
                    v |= self.bits[lower] >> (64 - rem);
                }
            }
            self.bits[i] = v;
        }
    }
}

/// Whether an RTP payload starts a VP8 keyframe (RFC 7741 payload descriptor + frame header).
pub fn is_vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    // S bit and partition id 0: only the first packet of a frame carries the frame header.
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&x) = payload.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: one or two bytes.
            let Some(&pid) = payload.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    // P bit of the VP8 frame header: 0 means keyframe.
    payload.get(i).is_some_and(|b| b & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_requests_are_coalesced_not_dropped() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let never = |_: Instant| false;
        let answered = |_: Instant| true;
        assert_eq!(keyframe_request(t0, None, never), KeyframeRequest::Now, "the first request goes out");
        // Unanswered: later subscribers wait for the same keyframe; repeated after 500 ms.
        assert_eq!(keyframe_request(ms(100), Some(t0), never), KeyframeRequest::Skip);
        assert_eq!(keyframe_request(ms(499), Some(t0), never), KeyframeRequest::Skip);
        assert_eq!(keyframe_request(ms(500), Some(t0), never), KeyframeRequest::Now);
        // Answered: a subscriber who comes after the keyframe gets a new one soon, batched
        // with whoever else comes within 100 ms of the last request.
        assert_eq!(keyframe_request(ms(150), Some(t0), answered), KeyframeRequest::Now);
        assert_eq!(keyframe_request(ms(40), Some(t0), answered), KeyframeRequest::After(Duration::from_millis(60)));
    }

    #[test]
    fn the_publisher_is_offered_what_its_subscribers_can_carry() {
        assert_eq!(publisher_bitrate([], false), REMB_CEILING_BPS, "nobody watching: no limit of ours");
        assert_eq!(publisher_bitrate([None, None], false), REMB_CEILING_BPS);
        // One stream: the weakest downlink decides, but never below the floor.
        assert_eq!(publisher_bitrate([None, Some(800_000.0), Some(400_000.0)], false), 400_000.0);
        assert_eq!(publisher_bitrate([Some(800_000.0), Some(20_000.0)], false), REMB_FLOOR_BPS);
        // Simulcast: lower layers serve the weak, the strongest decides.
        assert_eq!(publisher_bitrate([Some(800_000.0), Some(400_000.0)], true), 800_000.0);
        assert_eq!(publisher_bitrate([Some(400_000.0), None], true), REMB_CEILING_BPS);
        assert_eq!(publisher_bitrate([Some(9e9)], false), REMB_CEILING_BPS, "bounded above");
    }

    #[test]
    fn seq_window_drops_duplicates_only() {
        let mut w = SeqWindow::default();
        assert!(w.first_time(65530));
        assert!(w.first_time(65532)); // a gap
        assert!(!w.first_time(65532)); // duplicate
        assert!(w.first_time(65531)); // late, first time
        assert!(!w.first_time(65531));
        assert!(w.first_time(3)); // wrapped forward
        assert!(!w.first_time(65530), "still inside the window after wrapping");
        assert!(w.first_time(200));
        for s in 201..1300u16 {
            assert!(w.first_time(s));
        }
        assert!(!w.first_time(1000));
        assert!(w.first_time(100), "older than the window: let through");
    }

    #[test]
    fn vp8_keyframe_detection() {
        // Minimal descriptor (S=1, no X), frame header with P=0.
        assert!(is_vp8_keyframe(&[0x10, 0x00, 0x00, 0x00]));
        // Interframe: P=1.
        assert!(!is_vp8_keyframe(&[0x10, 0x01]));
        // Not the start of a partition.
        assert!(!is_vp8_keyframe(&[0x00, 0x00]));
        // Extended descriptor with a 15-bit picture id, keyframe.
        assert!(is_vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!is_vp8_keyframe(&[]));
    }
}
