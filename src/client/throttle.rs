//! A poor network for the headless client: an interceptor at the wire end of its chain that
//! drops inbound video RTP beyond a byte rate (a token bucket), before the receiver-report,
//! NACK and TWCC interceptors see it. The server then reads real loss in real feedback, exactly
//! as from a participant on a weak connection. Audio (payload type 111, Opus in the default
//! codecs) is let through: the throttle stands for what the network leaves for video.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Packet, TaggedPacket};

use crate::sfu::tap::Tap;

/// Registry position: wire-most (the lowest named slot is 1_000).
pub const SLOT: usize = 100;
const OPUS_PT: u8 = 111;

/// The limit, kbit/s (0: no limit); shared with the client so tests can change it live.
pub type Limit = Arc<AtomicU32>;

pub struct Throttle {
    limit: Limit,
    tokens: f64,
    last: Option<Instant>,
}

impl Throttle {
    pub fn new(limit: Limit) -> Self {
        Self { limit, tokens: 0.0, last: None }
    }

    /// Whether a video packet of `bytes` fits the bucket now.
    fn admit(&mut self, bytes: usize) -> bool {
        let kbps = self.limit.load(Ordering::Relaxed);
        if kbps == 0 {
            self.last = None;
            return true;
        }
        let now = Instant::now();
        let rate = f64::from(kbps) * 1000.0 / 8.0; // bytes per second
        let elapsed = self.last.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        self.last = Some(now);
        // A burst of at most 100 ms worth, and never less than one full packet.
        self.tokens = (self.tokens + elapsed * rate).min((rate / 10.0).max(1500.0));
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

impl Tap for Throttle {
    fn read(&mut self, msg: &mut TaggedPacket) -> bool {
        match &msg.message.packet {
            // Dropped on the "network".
            Packet::Rtp(p) => p.header.payload_type == OPUS_PT || self.admit(p.payload.len() + 40),
            _ => true,
        }
    }
}
