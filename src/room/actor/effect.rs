//! What the room's rules ask of the world, and the time they are told.
//!
//! The room core (`Room`) never sends, spawns, sleeps or reads a clock: each input comes with a
//! [`Now`], and handling it yields [`Effect`]s in order. The room task (`task.rs`) performs them:
//! it owns every member's outbox, peer handle and session-end signal, the store writers, the
//! registry's counters and bans, and the timers. Tests drive the core directly and read the
//! effects (`model_tests.rs`).

use std::sync::Arc;

use tokio::time::Instant;

use super::milestone::Job;
use super::Timer;
use crate::auth::Role;
use crate::sfu::{PeerCommand, PublishedTrack};
use crate::signal::protocol::{AgendaItem, EndReason, ServerMessage};
use crate::store::{PollRecord, Record};
use crate::vocab::ParticipantId;

/// The time an input happens at: the monotonic instant timers are measured from, and the wall
/// clock for what members see (breakout end times, poll and chat timestamps).
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub at: Instant,
    pub unix_ms: i64,
}

impl Now {
    /// The real time, read by the room task (never by the core).
    pub(super) fn real() -> Self {
        Self { at: Instant::now(), unix_ms: crate::store::now_ms() }
    }

    /// `d` later, on both clocks.
    #[cfg(test)]
    pub(super) fn after(self, d: std::time::Duration) -> Self {
        Self { at: self.at + d, unix_ms: self.unix_ms.saturating_add(d.as_millis() as i64) }
    }
}

/// One thing the room decided should happen. Effects are performed in the order given.
#[derive(Debug)]
pub(super) enum Effect {
    /// Queue `msg` on `to`'s outbox. A full outbox means a client that stopped reading: the
    /// task tells the room at once (`Room::stalled`), before the next effect.
    Send { to: ParticipantId, msg: ServerMessage },
    /// `to`'s session is over: `msg` is queued if there is room (never counted as a stall),
    /// then the connection is told `reason`.
    End { who: ParticipantId, msg: ServerMessage, reason: EndReason },
    /// A command for `to`'s peer connection (activate, subscribe, unsubscribe, close).
    Peer { to: ParticipantId, cmd: PeerCommand },
    /// Start or stop forwarding a track to everyone (a moderator's hard mute).
    Forwarding { track: Arc<PublishedTrack>, on: bool },
    /// The connection that is joining now takes over `id`'s place: later effects for `id` go
    /// to its outbox and peer (the previous connection's are dropped).
    Attach(ParticipantId),
    /// `id` left the room: its outbox, peer handle and session-end signal are dropped.
    Detach(ParticipantId),
    /// Hand `timer` back to the room at `at`.
    Timer { at: Instant, timer: Timer },
    /// The node's participant counters: one of `role` joined (or left).
    Count { role: Role, joined: bool },
    /// `id` is banned from this room id beyond the room task's life.
    Ban(ParticipantId),
    /// A moderation record for the audit log; `role` is the actor's, while they are in the room.
    Audit { actor: ParticipantId, role: Option<Role>, action: &'static str, target: Option<ParticipantId> },
    /// An audit record whose target is not a participant: the agreement version someone
    /// accepted.
    AuditNote { actor: ParticipantId, role: Option<Role>, action: &'static str, note: String },
    /// A therapist's agenda templates (store work, in order): keep `save` (name, items) when
    /// given, then send the therapist their list.
    AgendaTemplates { therapist: ParticipantId, save: Option<(String, Vec<AgendaItem>)> },
    /// The room's accountability partner groups, for the store (written in order).
    SavePartners(Vec<Vec<ParticipantId>>),
    /// Read this from the store and hand it back as `RoomInput::Loaded`.
    Read(Read),
    /// A poll's current record, for the store (written in order).
    SavePoll(Box<PollRecord>),
    /// Milestone store work (preferences, celebrations, history), done in order.
    Milestone(Job),
    /// A session record (session, attendance, check-in, support request) for the store's
    /// ordered queue.
    Record(Record),
    /// The session ended: its summary for the webhook (when one is configured).
    SessionEnded(Box<crate::webhook::SessionSummary>),
    /// What this room id's waiting room should say after the room's task ends (`door.rs`).
    RememberDoor(crate::room::shared::DoorMemory),
}

/// A store read the room asks the task for (answered with `RoomInput::Loaded`).
#[derive(Debug)]
pub(super) enum Read {
    /// The room's saved partner groups.
    Partners,
    /// Everyone's previous check-in, for the open check-in `0` of session `1`.
    PreviousCheckIns(crate::vocab::CheckInId, crate::vocab::SessionId),
}
