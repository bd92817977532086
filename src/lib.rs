//! Hearth: a real-time video server for group therapy.
//!
//! # Layout
//! - [`vocab`]: the ground floor: ids (rooms, participants, polls, …), roles, media kinds and
//!   the rules for names; imports nothing of Hearth's.
//! - [`config`]: typed configuration (embedded defaults, file, `HEARTH_*` environment).
//! - [`server`]: the HTTP edge (static web client, `/healthz`, `/ws`), start and shutdown.
//! - [`signal`]: the wire protocol and the per-websocket task that speaks it.
//! - [`room`]: rooms as tasks: membership, roster, who receives whose media.
//! - [`sfu`]: the media relay; every use of the `webrtc` crate on the server lives here.
//! - [`cluster`]: relay nodes sharing rooms through Redis (placement, heartbeat, drain).
//! - [`webhook`]: the signed session summary posted to the operator's records system.
//! - [`log_escape`]: the log writer that escapes control and bidi characters in every event.
//! - [`client`]: a headless participant (signaling + webrtc peer + synthetic media) for tests
//!   and the load generator.
//!
//! Data flows one way through the layers: a socket's task turns frames into room and peer
//! commands; a room tells peers what to subscribe to; peers forward RTP between themselves.

pub mod auth;
pub mod badge;
pub mod client;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod load;
pub mod log_escape;
pub mod log_limit;
pub mod metrics;
pub mod procfs;
pub mod room;
pub mod server;
pub mod sfu;
pub mod signal;
pub mod state;
pub mod store;
pub mod turn;
pub mod vocab;
pub mod webhook;
