//! Simulcast: a publisher sends one video in up to three encodings (layers), told apart by
//! their RTP stream ids (rids); each subscriber gets one layer at a time, the one that fits the
//! tile it shows the video in. Switching happens on a keyframe of the new layer, and the
//! subscriber's sequence numbers and timestamps are rewritten so its decoder sees one
//! continuous stream. This module holds the decisions and the arithmetic; `track` and `peer`
//! do the I/O.

use crate::vocab::SimulcastLayer;

/// Most layers a track may have.
pub const MAX_LAYERS: usize = 3;

/// The layer index of a rid. Browsers and SFUs use q/h/f, l/m/h or 0/1/2 for quarter, half
/// and full resolution; anything else takes the next free index in arrival order.
pub fn layer_of_rid(rid: &str) -> Option<usize> {
    match rid {
        "q" | "l" | "low" | "0" => Some(0),
        "h" | "m" | "mid" | "medium" | "1" => Some(1),
        "f" | "hi" | "high" | "2" => Some(2),
        _ => None,
    }
}

pub fn layer_name(index: usize) -> SimulcastLayer {
    match index {
        0 => SimulcastLayer::Low,
        1 => SimulcastLayer::Medium,
        _ => SimulcastLayer::High,
    }
}

/// The layer a subscriber should get for a tile `max_height` pixels high: the lowest layer at
/// least that tall, else the tallest there is. `heights[i]` is layer i's picture height when
/// known (from its keyframes), `available[i]` whether the layer sends at all. Without
/// heights, the usual ratios of quarter/half/full resolution are assumed: 180/360/720.
/// `None` when nothing is available.
pub fn choose_layer(available: [bool; MAX_LAYERS], heights: [Option<u32>; MAX_LAYERS], max_height: u32) -> Option<usize> {
    const ASSUMED: [u32; MAX_LAYERS] = [180, 360, 720];
    let mut best = None;
    for i in 0..MAX_LAYERS {
        if !available[i] {
            continue;
        }
        best = Some(i);
        if heights[i].unwrap_or(ASSUMED[i]) >= max_height {
            return Some(i);
        }
    }
    best
}

/// Picture size of a VP8 keyframe (RFC 7741 descriptor, then RFC 6386 frame header), if this
/// payload starts one.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let first = *payload.first()?;
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return None;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let x = *payload.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    let frame = payload.get(i..i + 10)?;
    if frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// Rewrites one subscriber's sequence numbers and timestamps across layer switches: the
/// subscriber's sequence advances by exactly the publisher layer's own steps, and a switch
/// continues right after the last packet sent.
#[derive(Debug, Default)]
pub struct Rewriter {
    seq_offset: u16,
    ts_offset: u32,
    last: Option<(u16, u32)>,
}

/// Timestamp step assumed between the last frame of the old layer and the first of the new
/// one: one frame at 30 fps on the 90 kHz video clock.
const SWITCH_TS_STEP: u32 = 3000;

impl Rewriter {
    /// The next packet (a keyframe start) comes from another layer: continue after the last
    /// packet sent.
    pub fn switch_to(&mut self, seq: u16, timestamp: u32) {
        if let Some((last_seq, last_ts)) = self.last {
            self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
            self.ts_offset = last_ts.wrapping_add(SWITCH_TS_STEP).wrapping_sub(timestamp);
        }
    }

    /// The subscriber's sequence number and timestamp for a packet of the current layer.
    pub fn rewrite(&mut self, seq: u16, timestamp: u32) -> (u16, u32) {
        let out = (seq.wrapping_add(self.seq_offset), timestamp.wrapping_add(self.ts_offset));
        // Remember the newest (not a late retransmission) as the point to continue from.
        match self.last {
            Some((s, _)) if out.0.wrapping_sub(s) >= 0x8000 => {}
            _ => self.last = Some(out),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rids_and_layer_choice() {
        assert_eq!((layer_of_rid("q"), layer_of_rid("h"), layer_of_rid("f"), layer_of_rid("x")), (Some(0), Some(1), Some(2), None));
        let all = [true; 3];
        assert_eq!(choose_layer(all, [None; 3], 90), Some(0));
        assert_eq!(choose_layer(all, [None; 3], 300), Some(1));
        assert_eq!(choose_layer(all, [None; 3], 1080), Some(2), "nothing tall enough: the tallest");
        assert_eq!(choose_layer(all, [Some(120), Some(240), Some(480)], 200), Some(1));
        assert_eq!(choose_layer([false, true, true], [None; 3], 90), Some(1), "the low layer is missing");
        assert_eq!(choose_layer([false; 3], [None; 3], 90), None);
    }

    #[test]
    fn switches_keep_the_sequence_continuous() {
        let mut r = Rewriter::default();
        // Layer A from 100: passed through unchanged until the first switch.
        assert_eq!(r.rewrite(100, 9000), (100, 9000));
        assert_eq!(r.rewrite(101, 9000), (101, 9000));
        // Switch to layer B whose numbers are elsewhere.
        r.switch_to(40_000, 500);
        assert_eq!(r.rewrite(40_000, 500), (102, 12_000));
        assert_eq!(r.rewrite(40_001, 3500), (103, 15_000));
        // A late retransmission keeps its place and does not move the continuation point.
        assert_eq!(r.rewrite(39_999, 500), (101, 12_000));
        r.switch_to(7, 100);
        assert_eq!(r.rewrite(7, 100).0, 104);
    }

    #[test]
    fn wraps_around() {
        let mut r = Rewriter::default();
        assert_eq!(r.rewrite(65_535, u32::MAX).0, 65_535);
        r.switch_to(10, 0);
        assert_eq!(r.rewrite(10, 0), (0, 2999));
        assert_eq!(r.rewrite(11, 3000), (1, 5999));
    }

    #[test]
    fn keyframe_size() {
        // Descriptor S=1, frame tag (P=0), start code, 640x360.
        let mut p = vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
        p.extend_from_slice(&640u16.to_le_bytes());
        p.extend_from_slice(&360u16.to_le_bytes());
        assert_eq!(vp8_keyframe_size(&p), Some((640, 360)));
        p[1] = 0x01; // interframe
        assert_eq!(vp8_keyframe_size(&p), None);
    }
}
