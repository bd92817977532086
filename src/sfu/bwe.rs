//! How much video each subscriber's connection can take, from its own feedback.
//!
//! [`FeedbackTap`] sits wire-most in a peer's interceptor chain and, without changing anything,
//! notes every receiver report block (fraction lost) and REMB the subscriber sends about the
//! streams we send it, keyed by our SSRC. Each subscription's forward task turns those notes
//! into an estimate with a loss-based controller in the style of GCC's (RFC draft
//! draft-ietf-rmcat-gcc): above 10 % loss the rate drops in proportion, below 2 % it grows by
//! a quarter a report (GCC grows by 8 %, but it also has a delay-based probe, which this has
//! not; without one, 8 % takes a quarter of a minute to climb back from the lowest layer), and
//! a REMB caps it. The forward task then picks the simulcast layer that fits,
//! or pauses video (never audio) when not even the lowest layer does, and probes back up.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Tokio's clock, so the pause and probe timeline can be tested in simulated time.
use tokio::time::Instant;

use rtc::interceptor::{Packet, TaggedPacket};
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

use super::tap::Tap;
use super::SfuStats;

/// Registry position: before every default interceptor, so it sees reports they consume.
pub const SLOT: usize = 500;

/// What a subscriber last said about one stream we send it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Feedback {
    /// Receiver reports so far (a new one is a new loss figure).
    pub reports: u64,
    /// Fraction lost in the last report, 0.0..=1.0.
    pub loss: f64,
    /// The last REMB, bits per second.
    pub remb_bps: Option<f64>,
    /// The receiver's highest sequence number did not move since its previous report: nothing
    /// got through at all (which a fraction lost of 0 would hide).
    pub stalled: bool,
    highest: Option<u32>,
}

/// Feedback per SSRC of ours, shared by a peer's tap and its forward tasks. Only SSRCs a leg
/// registered are kept: report blocks and REMB entries name SSRCs the client chooses, and a
/// client naming random ones must not grow the map.
#[derive(Debug, Default)]
pub struct FeedbackSink(Mutex<HashMap<u32, Feedback>>);

impl FeedbackSink {
    pub fn get(&self, ssrc: u32) -> Feedback {
        self.0.lock().ok().and_then(|m| m.get(&ssrc).copied()).unwrap_or_default()
    }

    /// A leg starts sending on `ssrc`: feedback about it is kept from now on.
    pub fn register(&self, ssrc: u32) {
        if let Ok(mut map) = self.0.lock() {
            map.entry(ssrc).or_default();
        }
    }

    /// The leg on `ssrc` ended.
    pub fn forget(&self, ssrc: u32) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&ssrc);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn note(&self, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        let Ok(mut map) = self.0.lock() else { return };
        for p in packets {
            let any = p.as_any();
            if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                for block in &rr.reports {
                    let Some(f) = map.get_mut(&block.ssrc) else { continue };
                    f.reports += 1;
                    f.loss = f64::from(block.fraction_lost) / 256.0;
                    f.stalled = f.highest == Some(block.last_sequence_number);
                    f.highest = Some(block.last_sequence_number);
                }
            } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                for ssrc in &remb.ssrcs {
                    if let Some(f) = map.get_mut(ssrc) {
                        f.remb_bps = Some(f64::from(remb.bitrate));
                    }
                }
            }
        }
    }
}

/// The interceptor: notes feedback and passes everything on unchanged. It also counts NACKed
/// packets both ways for `/metrics` (it sits where it sees them all).
pub struct FeedbackTap {
    sink: Arc<FeedbackSink>,
    stats: Arc<SfuStats>,
}

impl FeedbackTap {
    pub fn new(sink: Arc<FeedbackSink>, stats: Arc<SfuStats>) -> Self {
        Self { sink, stats }
    }
}

/// Packets a batch of RTCP asks to have sent again.
fn nacked(packets: &[Box<dyn rtc::rtcp::Packet>]) -> u64 {
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
        .flat_map(|n| n.nacks.iter())
        .map(|pair| pair.packet_list().len() as u64)
        .sum()
}

impl Tap for FeedbackTap {
    fn read(&mut self, msg: &mut TaggedPacket) -> bool {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            self.sink.note(packets);
            self.stats.nack_received.fetch_add(nacked(packets), Ordering::Relaxed);
        }
        true
    }

    fn write(&mut self, msg: &mut TaggedPacket) {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            self.stats.nack_sent.fetch_add(nacked(packets), Ordering::Relaxed);
        }
    }
}

/// A subscription's bandwidth estimate for its video.
#[derive(Debug)]
pub struct Estimator {
    /// Bits per second; `None` until feedback says anything (no cap).
    estimate: Option<f64>,
    seen_reports: u64,
    /// Since the last layer change or probe.
    last_probe: Instant,
    /// How long to wait between probes; doubles after a probe that met loss.
    probe_every: Duration,
    /// A probe is on trial: when it started.
    probing_since: Option<Instant>,
    /// Reports in a row with low loss.
    clean_reports: u32,
}

/// Above this loss the estimate drops.
const HIGH_LOSS: f64 = 0.10;
/// Below this loss it grows, by this factor a report.
const LOW_LOSS: f64 = 0.02;
const GROWTH: f64 = 1.25;
/// The growth ceiling while sending little or nothing (paused, or a thin layer).
const MIN_CEILING_BPS: f64 = 150_000.0;
/// Paused for bandwidth, or held below the tile's layer: try one step up this often.
pub const PROBE_EVERY: Duration = Duration::from_secs(3);
/// The longest wait between probes on a link where they keep failing.
const MAX_PROBE_EVERY: Duration = Duration::from_secs(12);
/// Clean reports in a row (while sending) after which failed probes are forgotten: several
/// seconds, so a link that carries one layer but not the next is not probed every 3 s.
const CLEAN_TO_RECOVER: u32 = 8;
/// A probe that meets high loss within this is a failed one.
const PROBE_VERDICT: Duration = Duration::from_secs(3);

impl Default for Estimator {
    fn default() -> Self {
        Self {
            estimate: None,
            seen_reports: 0,
            last_probe: Instant::now(),
            probe_every: PROBE_EVERY,
            probing_since: None,
            clean_reports: 0,
        }
    }
}

impl Estimator {
    /// Takes in the latest feedback; `sending_bps` is what this leg has been sending, and
    /// `upstream` what never reached this server in the first place.
    pub fn update(&mut self, feedback: Feedback, sending_bps: f64, upstream: &mut UpstreamGaps) {
        if feedback.reports != self.seen_reports {
            self.seen_reports = feedback.reports;
            let base = self.estimate.unwrap_or(f64::MAX).min(sending_bps.max(1.0));
            // Sending, and nothing arrived: as bad as it gets. Packets lost before they reached
            // us count as lost in the subscriber's report too, but say nothing about its link.
            let (upstream_loss, sent) = upstream.take();
            let loss = if feedback.stalled && sent > 0 { 1.0 } else { (feedback.loss - upstream_loss).max(0.0) };
            if loss > HIGH_LOSS {
                self.estimate = Some(base * (1.0 - 0.5 * loss));
                self.clean_reports = 0;
                if self.probing_since.take().is_some_and(|t| t.elapsed() < PROBE_VERDICT) {
                    self.probe_every = (self.probe_every * 2).min(MAX_PROBE_EVERY);
                }
            } else if loss < LOW_LOSS && sent > 0 {
                // Clean while carrying video. A report about nothing (paused) says nothing
                // about the link: growing on those resumed a paused leg within a report or
                // two, only for the next loss to pause it again (a receiver short of CPU
                // flapped 8-12 times in 10 s). A paused leg comes back by a probe only.
                self.clean_reports += 1;
                // A link clean for a few reports in a row has recovered: probes may come
                // quickly again, whatever they met before.
                if self.clean_reports >= CLEAN_TO_RECOVER {
                    self.probe_every = PROBE_EVERY;
                }
                if self.probing_since.is_some_and(|t| t.elapsed() >= PROBE_VERDICT) {
                    self.probing_since = None;
                    self.probe_every = PROBE_EVERY;
                }
                if let Some(e) = self.estimate {
                    // Never far above what the leg has shown it can carry, so the next loss
                    // brings it down in one step.
                    let ceiling = 2.0 * sending_bps.max(MIN_CEILING_BPS);
                    self.estimate = Some((e.max(sending_bps) * GROWTH).min(ceiling.max(e)));
                }
            }
        }
        // A receiver's REMB follows what it receives (at most about half as much again), so it
        // would hold a probe down before the probe had a chance: a probe on trial ignores it.
        let on_trial = self.probing_since.is_some_and(|t| t.elapsed() < PROBE_VERDICT);
        if let (Some(remb), Some(e)) = (feedback.remb_bps, self.estimate) {
            if !on_trial {
                self.estimate = Some(e.min(remb));
            }
        } else if let Some(remb) = feedback.remb_bps {
            self.estimate = Some(remb);
        }
    }

    /// Bits per second this leg may use; `None`: no limit known.
    pub fn estimate(&self) -> Option<f64> {
        self.estimate
    }

    /// While paused for bandwidth: time to try again (raises the estimate to `to_bps`).
    pub fn probe_due(&mut self, to_bps: f64) -> bool {
        if self.last_probe.elapsed() < self.probe_every {
            return false;
        }
        self.last_probe = Instant::now();
        self.probing_since = Some(self.last_probe);
        self.estimate = Some(self.estimate.unwrap_or(0.0).max(to_bps));
        true
    }

    /// Held on a layer below the one the tile wants, with clean reports: time to try the next
    /// one up (raises the estimate to `to_bps`). A loss-based estimate cannot otherwise learn
    /// that the link has room for more than it carries.
    pub fn up_probe_due(&mut self, to_bps: f64) -> bool {
        self.clean_reports >= 2 && self.probe_due(to_bps)
    }

    /// The layer changed: the next probe waits a full interval from now.
    pub fn reset_probe_timer(&mut self) {
        self.last_probe = Instant::now();
    }
}

/// The layer a video leg should forward next (`None`: paused), given the layer the tile wants
/// (`preferred`, `None`: not shown), each layer's bitrate as it arrives (`None` until a first
/// window is measured), which layers send, and the layer wanted until now. Held below the
/// tile's layer, it now and then tries the next one up; paused for bandwidth, it tries the
/// lowest layer again every [`PROBE_EVERY`] (longer while tries fail), and at no other time.
pub fn want_layer(
    estimator: &mut Estimator,
    preferred: Option<usize>,
    layer_bps: Option<&[f64; 3]>,
    available: &[bool; 3],
    was: Option<usize>,
) -> Option<usize> {
    let mut fitted = match (preferred, layer_bps) {
        (Some(p), Some(bps)) => fit_layer(p, bps, available, estimator.estimate()),
        (other, _) => other,
    };
    let bps = |i: usize| layer_bps.map_or(0.0, |b| b[i]);
    if let (Some(p), Some(f)) = (preferred, fitted) {
        if let Some(up) = (f + 1..=p).find(|&i| available[i]) {
            if estimator.up_probe_due(bps(up) * 1.2) {
                fitted = Some(up);
            }
        }
    }
    let wanted = match (preferred, fitted) {
        (Some(_), None) => match available.iter().position(|a| *a) {
            Some(lowest) if estimator.probe_due(bps(lowest) * 1.3) => Some(lowest),
            _ => None,
        },
        (_, fitted) => fitted,
    };
    if wanted != was {
        estimator.reset_probe_timer();
    }
    wanted
}

/// Sequence numbers a leg skipped because the packets never reached this server (a lossy
/// uplink on the publisher's side): counted as they are forwarded, read per receiver report.
#[derive(Debug, Default)]
pub struct UpstreamGaps {
    highest: Option<u16>,
    sent: u64,
    skipped: u64,
}

impl UpstreamGaps {
    /// A packet forwarded with (rewritten) sequence number `seq`.
    pub fn forwarded(&mut self, seq: u16) {
        self.sent += 1;
        match self.highest {
            Some(h) => {
                let step = seq.wrapping_sub(h);
                // Forward within a window; anything else is a late or reordered packet.
                if (1..1000).contains(&step) {
                    self.skipped += u64::from(step - 1);
                    self.highest = Some(seq);
                }
            }
            None => self.highest = Some(seq),
        }
    }

    /// Since the last call: the fraction of sequence numbers skipped, and packets forwarded (a
    /// receiver whose highest sequence number did not move has lost something only if we sent).
    fn take(&mut self) -> (f64, u64) {
        let (sent, skipped) = (std::mem::take(&mut self.sent), std::mem::take(&mut self.skipped));
        (if sent + skipped == 0 { 0.0 } else { skipped as f64 / (sent + skipped) as f64 }, sent)
    }
}

/// The best layer at most `preferred` whose bitrate fits `estimate` (with 15 % headroom);
/// `None` when not even the lowest sending layer fits.
pub fn fit_layer(preferred: usize, bitrates: &[f64], available: &[bool], estimate: Option<f64>) -> Option<usize> {
    let Some(estimate) = estimate else { return Some(preferred) };
    (0..=preferred)
        .rev()
        .find(|&i| available.get(i).copied().unwrap_or(false) && bitrates.get(i).copied().unwrap_or(0.0) * 1.15 <= estimate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_about_ssrcs_we_do_not_send_is_not_kept() {
        use rtc::rtcp::receiver_report::ReceiverReport;
        use rtc::rtcp::reception_report::ReceptionReport;
        let sink = FeedbackSink::default();
        sink.register(42);
        // A client naming a thousand random SSRCs in its reports and REMB.
        let reports = (0..1000u32).map(|ssrc| ReceptionReport { ssrc: ssrc + 1000, fraction_lost: 128, ..Default::default() });
        let mut reports: Vec<_> = reports.collect();
        reports.push(ReceptionReport { ssrc: 42, fraction_lost: 64, last_sequence_number: 9, ..Default::default() });
        let remb = ReceiverEstimatedMaximumBitrate { bitrate: 300_000.0, ssrcs: (5000..6000).chain([42]).collect(), ..Default::default() };
        sink.note(&[Box::new(ReceiverReport { ssrc: 1, reports, ..Default::default() }), Box::new(remb)]);
        assert_eq!(sink.len(), 1, "only our own SSRC is kept");
        let ours = sink.get(42);
        assert_eq!((ours.reports, ours.loss, ours.remb_bps), (1, 0.25, Some(300_000.0)));
        sink.forget(42);
        assert_eq!(sink.len(), 0);
    }

    #[test]
    fn loss_lowers_and_clean_reports_raise_the_estimate() {
        let mut e = Estimator::default();
        assert_eq!(e.estimate(), None, "no feedback, no cap");
        e.update(Feedback { reports: 1, loss: 0.5, ..Default::default() }, 1_000_000.0, &mut UpstreamGaps::default());
        assert_eq!(e.estimate(), Some(750_000.0));
        e.update(Feedback { reports: 1, loss: 0.5, ..Default::default() }, 1_000_000.0, &mut UpstreamGaps::default());
        assert_eq!(e.estimate(), Some(750_000.0), "the same report counts once");
        let mut sending = UpstreamGaps::default();
        sending.forwarded(1);
        e.update(Feedback { reports: 2, loss: 0.0, ..Default::default() }, 700_000.0, &mut sending);
        assert_eq!(e.estimate(), Some(937_500.0));
        e.update(Feedback { reports: 3, loss: 0.0, ..Default::default() }, 0.0, &mut UpstreamGaps::default());
        assert_eq!(e.estimate(), Some(937_500.0), "a clean report about nothing sent (paused) says nothing");
        e.update(
            Feedback { reports: 4, loss: 0.05, remb_bps: Some(300_000.0), ..Default::default() },
            700_000.0,
            &mut UpstreamGaps::default(),
        );
        assert_eq!(e.estimate(), Some(300_000.0), "a REMB caps it");
    }

    #[test]
    fn a_probe_up_needs_clean_reports_and_backs_off_when_it_meets_loss() {
        let mut e = Estimator::default();
        e.update(Feedback { reports: 1, loss: 0.5, ..Default::default() }, 400_000.0, &mut UpstreamGaps::default());
        e.last_probe -= PROBE_EVERY;
        assert!(!e.up_probe_due(500_000.0), "not right after loss");
        let sending = || {
            let mut g = UpstreamGaps::default();
            g.forwarded(1);
            g
        };
        e.update(Feedback { reports: 2, loss: 0.0, ..Default::default() }, 150_000.0, &mut UpstreamGaps::default());
        assert!(!e.up_probe_due(500_000.0), "a clean report about nothing sent does not count");
        e.update(Feedback { reports: 3, loss: 0.0, ..Default::default() }, 150_000.0, &mut sending());
        e.update(Feedback { reports: 4, loss: 0.0, ..Default::default() }, 150_000.0, &mut sending());
        assert!(e.up_probe_due(500_000.0));
        assert_eq!(e.estimate(), Some(500_000.0));
        assert!(!e.up_probe_due(500_000.0), "one probe an interval");
        // The probe meets loss at once: the next one waits twice as long.
        e.update(Feedback { reports: 5, loss: 0.3, ..Default::default() }, 500_000.0, &mut sending());
        assert_eq!(e.probe_every, PROBE_EVERY * 2);
        // Clean reports while sending, long enough: the link has recovered, the back-off is
        // forgotten.
        for r in 6..6 + u64::from(CLEAN_TO_RECOVER) {
            e.update(Feedback { reports: r, loss: 0.0, ..Default::default() }, 150_000.0, &mut sending());
        }
        assert_eq!(e.probe_every, PROBE_EVERY);
    }

    /// A receiver whose process is short of CPU: its socket overflows whenever video reaches
    /// it (30 % lost), and its reports are clean while nothing is sent. The leg looks at its
    /// feedback every 200 ms (as `forward` does) and gets a report each time. Video must pause
    /// and stay paused until a probe, probes 3 s apart and then further apart while they fail,
    /// never the pause-and-resume-within-a-quarter-second that flapped 8-12 times in 10 s.
    /// Once the receiver has its CPU back, video returns by itself and stays.
    #[tokio::test(start_paused = true)]
    async fn a_starved_receiver_is_paused_and_probed_not_flapped() {
        const TICK: Duration = Duration::from_millis(200);
        let layer_bps = [150_000.0, 500_000.0, 1_500_000.0];
        let available = [true; 3];
        let start = Instant::now();
        let mut e = Estimator::default();
        let mut wanted = Some(2);
        let mut reports = 0;
        let mut seq = 0u16;
        let mut paused_at: Option<Instant> = None;
        let mut first_pause: Option<Duration> = None;
        let mut resumes: Vec<(Duration, Duration)> = Vec::new(); // (when, after how long paused)
        let starved_for = Duration::from_secs(20);
        while start.elapsed() < Duration::from_secs(40) {
            tokio::time::advance(TICK).await;
            let starved = start.elapsed() <= starved_for;
            let mut upstream = UpstreamGaps::default();
            let sending_bps = wanted.map_or(0.0, |l| layer_bps[l]);
            if wanted.is_some() {
                for _ in 0..10 {
                    seq = seq.wrapping_add(1);
                    upstream.forwarded(seq);
                }
            }
            reports += 1;
            let loss = if starved && wanted.is_some() { 0.3 } else { 0.0 };
            e.update(Feedback { reports, loss, ..Default::default() }, sending_bps, &mut upstream);
            let was = wanted;
            wanted = want_layer(&mut e, Some(2), Some(&layer_bps), &available, was);
            match (was, wanted) {
                (Some(_), None) => {
                    paused_at = Some(Instant::now());
                    first_pause.get_or_insert(start.elapsed());
                }
                (None, Some(_)) => {
                    let paused = paused_at.map_or(Duration::ZERO, |p| Instant::now() - p);
                    resumes.push((start.elapsed(), paused));
                }
                _ => {}
            }
        }
        assert!(first_pause.is_some_and(|p| p < Duration::from_secs(2)), "video paused soon: {first_pause:?}");
        let while_starved: Vec<_> = resumes.iter().filter(|(at, _)| *at <= starved_for).collect();
        assert!(
            while_starved.iter().all(|(_, paused)| *paused >= PROBE_EVERY),
            "every resume while starved is a probe, at least {PROBE_EVERY:?} after the pause: {resumes:?}"
        );
        assert!(while_starved.len() <= 3, "probes back off while they fail (3 s, 6 s, 12 s): {resumes:?}");
        assert!(!while_starved.is_empty(), "the lowest layer is tried again while paused: {resumes:?}");
        assert!(wanted.is_some(), "video is back once the receiver has its CPU again: {resumes:?}");
        let last_resume = resumes.last().map_or(Duration::ZERO, |(at, _)| *at);
        assert!(last_resume <= starved_for + MAX_PROBE_EVERY + TICK, "back within one longest probe interval: {resumes:?}");
    }

    #[test]
    fn nacked_packets_are_counted_one_by_one() {
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;
        // 100 and, from the bitmask, 101 and 103.
        let nack = TransportLayerNack { sender_ssrc: 1, media_ssrc: 2, nacks: vec![NackPair { packet_id: 100, lost_packets: 0b101 }] };
        let packets: Vec<Box<dyn rtc::rtcp::Packet>> = vec![Box::new(nack), Box::new(ReceiverReport::default())];
        assert_eq!(nacked(&packets), 3);
    }

    #[test]
    fn loss_before_the_server_is_not_the_subscribers() {
        let mut gaps = UpstreamGaps::default();
        for seq in [10u16, 11, 13, 14, 16, 17, 18, 19, 20, 21] {
            gaps.forwarded(seq);
        }
        gaps.forwarded(12); // a late retransmission: not a step forward
                            // 2 of 13 sequence numbers never reached us; the subscriber reports about that much.
        let mut e = Estimator::default();
        e.update(Feedback { reports: 1, loss: 0.5, ..Default::default() }, 400_000.0, &mut UpstreamGaps::default());
        let before = e.estimate();
        let mut plain = Estimator { estimate: before, seen_reports: 1, ..Estimator::default() };
        e.update(Feedback { reports: 2, loss: 0.2, ..Default::default() }, 400_000.0, &mut gaps);
        assert!(e.estimate() >= before, "upstream loss did not lower the estimate: {:?} -> {:?}", before, e.estimate());
        plain.update(Feedback { reports: 2, loss: 0.2, ..Default::default() }, 400_000.0, &mut UpstreamGaps::default());
        assert!(plain.estimate() < before, "the same report without upstream gaps does");
        assert_eq!(gaps.take(), (0.0, 0), "read once");
    }

    #[test]
    fn layers_fit_the_estimate() {
        let rates = [100_000.0, 300_000.0, 1_000_000.0];
        let all = [true; 3];
        assert_eq!(fit_layer(2, &rates, &all, None), Some(2));
        assert_eq!(fit_layer(2, &rates, &all, Some(400_000.0)), Some(1));
        assert_eq!(fit_layer(0, &rates, &all, Some(5_000_000.0)), Some(0), "never above the preference");
        assert_eq!(fit_layer(2, &rates, &all, Some(50_000.0)), None, "pause");
    }
}
