//! Keeps a browser's simulcast layers mappable after a renegotiation.
//!
//! A simulcast layer has no SSRC in the SDP: the receiver learns which layer an SSRC is from the
//! `mid`/`rid` header extensions on its packets. Browsers (libwebrtc) put those extensions only
//! on a stream's packets until the first receiver-report block about that SSRC comes back, and
//! drop them from then on to save bytes. The webrtc crate (0.21) forgets the SSRC of every
//! rid-announced layer each time the peer connection is renegotiated, which in Hearth happens
//! whenever someone else starts or stops publishing, and then waits for a packet with `mid`/`rid`
//! to learn it again. Without them the layer's packets are dropped for the rest of the call.
//!
//! So this interceptor removes, from the RTCP this server sends, the report blocks about SSRCs
//! that arrived with a `rid`. The browser then keeps tagging every packet (about 8 bytes each),
//! and a renegotiation costs nothing. Its congestion control is unaffected: that runs on
//! transport-wide feedback (TWCC), which is untouched; only its RTT estimate from report blocks
//! is lost for those streams. Nothing else is changed, and audio and single-layer video keep
//! their reports.

use std::collections::HashSet;

use rtc::interceptor::{Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;

use super::tap::Tap;

/// Registry position: wire-most, so it sees the reports the default interceptors generate.
pub const SLOT: usize = 400;

const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// Simulcast layer SSRCs remembered per peer: three layers for each of a camera and a share,
/// with room for the new SSRCs a browser picks after renegotiations.
const MAX_LAYERS_KEPT: usize = 24;

#[derive(Default)]
pub struct KeepRid {
    /// The negotiated id of the rid extension, once a remote stream is bound.
    rid_extension: Option<u8>,
    /// SSRCs whose packets came with a rid: the simulcast layers.
    layers: HashSet<u32>,
}

impl KeepRid {
    /// Drops report blocks about simulcast layers from outgoing RTCP; `true` if any were.
    fn strip(&self, packets: &mut [Box<dyn rtc::rtcp::Packet>]) -> bool {
        let mut changed = false;
        for p in packets.iter_mut() {
            let any = p.as_any();
            if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                if rr.reports.iter().any(|b| self.layers.contains(&b.ssrc)) {
                    let mut rr = rr.clone();
                    rr.reports.retain(|b| !self.layers.contains(&b.ssrc));
                    *p = Box::new(rr);
                    changed = true;
                }
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                if sr.reports.iter().any(|b| self.layers.contains(&b.ssrc)) {
                    let mut sr = sr.clone();
                    sr.reports.retain(|b| !self.layers.contains(&b.ssrc));
                    *p = Box::new(sr);
                    changed = true;
                }
            }
        }
        changed
    }
}

impl Tap for KeepRid {
    fn read(&mut self, msg: &mut TaggedPacket) -> bool {
        if let (Packet::Rtp(rtp), Some(id)) = (&msg.message.packet, self.rid_extension) {
            // Bounded: SSRCs are the client's to choose, and a browser sends three layers a
            // track. Past the bound a layer just loses this workaround.
            if self.layers.len() < MAX_LAYERS_KEPT && !self.layers.contains(&rtp.header.ssrc) && rtp.header.get_extension(id).is_some() {
                self.layers.insert(rtp.header.ssrc);
            }
        }
        true
    }

    fn write(&mut self, msg: &mut TaggedPacket) {
        if !self.layers.is_empty() {
            if let Packet::Rtcp(packets) = &mut msg.message.packet {
                self.strip(packets);
            }
        }
    }

    // A layer stays listed when unbound: one report block about it, ever, and the browser stops
    // tagging it for good.
    fn bind_remote(&mut self, info: &StreamInfo) {
        if self.rid_extension.is_none() {
            self.rid_extension = info.rtp_header_extensions.iter().find(|e| e.uri == RID_URI).and_then(|e| u8::try_from(e.id).ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::reception_report::ReceptionReport;

    #[test]
    fn strips_only_blocks_about_simulcast_layers() {
        let mut keep = KeepRid::default();
        keep.layers.insert(7);
        let rr = ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport { ssrc: 7, ..Default::default() }, ReceptionReport { ssrc: 9, ..Default::default() }],
            ..Default::default()
        };
        let mut packets: Vec<Box<dyn rtc::rtcp::Packet>> = vec![Box::new(rr)];
        assert!(keep.strip(&mut packets));
        let rr = packets[0].as_any().downcast_ref::<ReceiverReport>().expect("still a receiver report");
        assert_eq!(rr.reports.iter().map(|b| b.ssrc).collect::<Vec<_>>(), vec![9]);
        // Nothing about a layer: left alone.
        assert!(!keep.strip(&mut packets));
    }
}
