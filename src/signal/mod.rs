//! Signaling: the wire protocol ([`protocol`]) and the per-socket task that speaks it
//! ([`connection`]). This module turns frames into room and peer commands and back; it keeps no
//! room state of its own.

pub mod connection;
pub mod protocol;
