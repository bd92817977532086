//! Hearth's integration tests, one binary: each file here is a module that starts the real
//! server on port 0 and talks to it as a client would (`common` is the shared harness).
//!
//! One binary, not one per file: every test binary links the whole server and the media
//! stack (about 170 MB each with debug info), so fifty of them cost ten minutes of linking and
//! ten gigabytes of disk on a 2-core CI machine for nothing. Run a part of it by module path:
//! `cargo test --test suite admit_all::` or `cargo test --test suite browser_`.
//!
//! `tests/soak.rs` stays a binary of its own: it measures its own process's memory, which other
//! tests running beside it would disturb.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod active_speaker;
mod admit_all;
mod breakouts;
mod browser;
mod browser_blur;
mod browser_breakouts;
mod browser_chat;
mod browser_checkin;
mod browser_cluster;
mod browser_door;
mod browser_e2ee;
mod browser_family;
mod browser_group;
mod browser_milestones;
mod browser_observer;
mod browser_polls;
mod browser_poor_network;
mod browser_restricted_network;
mod browser_screen_share;
mod browser_security;
mod browser_simulcast;
mod browser_webux;
mod chat;
mod cluster;
mod e2ee_relay;
mod e2ee_text;
mod group;
mod hardening;
mod invites;
mod layering;
mod load;
mod media;
mod media_port;
mod metrics;
mod milestones;
mod polls;
mod protocol;
mod protocol_docs;
mod resume;
mod roles;
mod room_fuzz;
mod screen_share;
mod security_edge;
mod security_process;
mod security_room;
mod sessions;
mod simulcast;
mod startup;
mod tls_and_http;
mod turn;
mod web_client_protocol;
