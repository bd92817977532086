//! Rooms: membership, roster and who receives whose media.
//!
//! Each room is one task ([`actor`]) that owns its state and takes commands over a channel, so
//! moderation, breakouts and relay nodes add commands rather than locks. Inside, the room's
//! rules are a state machine that returns effects, and a thin task performs them (see
//! `actor/task.rs`). The [`RoomRegistry`] maps room ids to running room tasks. Nothing here
//! touches sockets or the webrtc crate: the task sends protocol messages to each member's
//! outbox and subscribe/unsubscribe commands to each member's peer.

pub mod actor;
pub mod attendance;
pub mod checkin;
mod handle;
mod registry;
mod shared;
pub mod support;

pub use crate::vocab::{
    is_forbidden_in_names, valid_participant_id, validate_display_name, InvalidId, InvalidName, ParticipantId, RoomId, MAX_NAME_CHARS,
};
pub use actor::permissions;
pub use actor::{JoinRequest, RoomCommand, RoomError, RoomHandle, RoomInput, SessionEnd};
pub use registry::{RoomRegistry, RoomSettings};
