//! How loud each published audio track is, from the ssrc-audio-level RTP header extension
//! (RFC 6464) that browsers put on every Opus packet. Read in the track's pump before the
//! extensions are stripped for fan-out; nothing is decoded. The room reads the levels to
//! decide who is speaking; this module only measures.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// A level older than this counts as silence (the sender stopped, muted or uses DTX).
const STALE_MS: u64 = 400;

/// The extension id a session description maps to the audio-level URI (`a=extmap:<id> URI`),
/// if any. The offerer chooses ids; the answer repeats them.
pub fn extmap_id(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        // `<id>[/<direction>] <uri> [attributes]`
        let id = id.split('/').next()?.parse::<u8>().ok()?;
        (uri.split_whitespace().next()? == URI && (1..=14).contains(&id)).then_some(id)
    })
}

/// The extension id in use on one peer's incoming packets (0: none negotiated yet).
#[derive(Debug, Default)]
pub struct ExtensionId(AtomicU8);

impl ExtensionId {
    pub fn set(&self, id: Option<u8>) {
        self.0.store(id.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<u8> {
        Some(self.0.load(Ordering::Relaxed)).filter(|id| *id != 0)
    }
}

/// A track's smoothed loudness: 0 (silence) to 127 (loudest), i.e. 127 − the −dBov level.
#[derive(Debug, Default)]
pub struct Loudness {
    /// Exponential moving average, times 16 for precision without floats.
    smoothed_x16: AtomicU32,
    last_ms: AtomicU64,
}

impl Loudness {
    /// Records the level byte of one packet's extension (V bit and 7-bit −dBov level).
    pub fn record(&self, extension: &[u8]) {
        let Some(&byte) = extension.first() else { return };
        let loudness = 127 - u32::from(byte & 0x7f);
        let now = now_ms();
        let last = self.last_ms.swap(now, Ordering::Relaxed);
        let old = if now.saturating_sub(last) > STALE_MS { 0 } else { self.smoothed_x16.load(Ordering::Relaxed) };
        // About 1/4 new each packet (20 ms): follows speech onsets within ~100 ms.
        let new = (old * 3 + loudness * 16) / 4;
        self.smoothed_x16.store(new, Ordering::Relaxed);
    }

    /// The current loudness, 0 when nothing arrived recently.
    pub fn current(&self) -> u8 {
        if now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed)) > STALE_MS {
            return 0;
        }
        (self.smoothed_x16.load(Ordering::Relaxed) / 16).min(127) as u8
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_audio_level_extmap() {
        let sdp = "v=0\r\na=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
                   a=extmap:1/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level vad=on\r\n";
        assert_eq!(extmap_id(sdp), Some(1));
        assert_eq!(extmap_id("a=extmap:3 urn:ietf:params:rtp-hdrext:toffset\r\n"), None);
        assert_eq!(extmap_id("a=extmap:x urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"), None);
    }

    #[test]
    fn loudness_follows_the_level_and_goes_stale() {
        let l = Loudness::default();
        assert_eq!(l.current(), 0);
        for _ in 0..30 {
            l.record(&[0x80 | 20]); // voice, −20 dBov
        }
        assert!((105..=107).contains(&l.current()), "{}", l.current());
        for _ in 0..30 {
            l.record(&[127]);
        }
        assert!(l.current() <= 1, "{}", l.current());
    }
}
