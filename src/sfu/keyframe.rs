//! An interceptor that lets subscribers' keyframe requests (PLI, FIR) reach Hearth.
//!
//! The webrtc crate stops inbound RTCP at the end of its interceptor chain unless an interceptor
//! marks a packet for the application. A forwarding server must answer a subscriber's keyframe
//! request by asking the publisher, so this marks exactly those packets and drops the rest
//! (receiver reports, NACKs, TWCC are consumed by the default interceptors before this one).

use rtc::interceptor::{Attribute, Packet, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

use super::tap::Tap;

/// Registry position: after every default interceptor, so they all see the full RTCP first.
pub const SLOT: usize = 14_000;

#[derive(Default)]
pub struct KeyframeRequestTap;

fn wants_keyframe(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Tap for KeyframeRequestTap {
    fn read(&mut self, msg: &mut TaggedPacket) -> bool {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<_> = packets.iter().filter(|p| wants_keyframe(p.as_ref())).cloned().collect();
            if requests.is_empty() {
                return false;
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        true
    }
}
