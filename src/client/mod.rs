//! A headless Hearth participant: the real signaling protocol over a websocket and a real
//! `webrtc` peer connection that publishes synthetic Opus and VP8 RTP and counts what it
//! receives. Integration tests and the load generator (`hearth-load`) both drive the server
//! through it, so they exercise exactly what a browser does.
//!
//! Synthetic payloads carry a probe (send time and sequence) so a receiver can measure loss and
//! forwarding latency. Video payloads start with a VP8 payload descriptor whose keyframe bit is
//! honest, because the server starts each subscription on a keyframe.

pub mod media;
pub mod signaling;
pub mod throttle;

pub use media::{CapturedPacket, MediaClient, MediaOptions, ReceivedTrack, VideoCodec};
pub use signaling::{SignalClient, SignalError};
