//! The one shape of interceptor Hearth has: something that looks at packets going past (and may
//! change or drop one) but never makes packets of its own. [`Tap`] is that behaviour;
//! [`TapInterceptor`] is the queueing and trait plumbing the webrtc crate's chain needs, written
//! once. The taps themselves live with what they serve (`bwe`, `keyframe`, `keep_rid`, and the
//! headless client's throttle).

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Interceptor, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

pub trait Tap: Send + Sync {
    /// An inbound packet (wire to application); `false` drops it.
    fn read(&mut self, _msg: &mut TaggedPacket) -> bool {
        true
    }

    /// An outbound packet (application to wire).
    fn write(&mut self, _msg: &mut TaggedPacket) {}

    /// A stream from the remote side was bound (its negotiated extensions are in `info`).
    fn bind_remote(&mut self, _info: &StreamInfo) {}
}

pub struct TapInterceptor<T> {
    tap: T,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl<T: Tap> TapInterceptor<T> {
    pub fn new(tap: T) -> Self {
        Self { tap, read: VecDeque::new(), write: VecDeque::new() }
    }
}

impl<T: Tap> Protocol<TaggedPacket, TaggedPacket, ()> for TapInterceptor<T> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if self.tap.read(&mut msg) {
            self.read.push_back(msg);
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        self.tap.write(&mut msg);
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl<T: Tap> Interceptor for TapInterceptor<T> {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.tap.bind_remote(info);
    }
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
