//! How the rest of the server talks to a room: its handle and the commands it takes. Only
//! types here, so the registry, the room task and the connection name them without importing
//! one another.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::auth::Grant;
use crate::sfu::{PeerHandle, PublishedTrack, TrackId};
use crate::signal::protocol::{ClientMessage, EndReason, ServerMessage};
use crate::vocab::{CheckInId, ParticipantId};

/// Where a room sends messages for one participant's socket.
pub type Outbox = mpsc::Sender<ServerMessage>;

/// Messages a room queues for one socket before it counts that socket as stalled.
pub const OUTBOX_CAPACITY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the room is full ({0} participants)")]
    Full(usize),
    #[error("the room is locked; no one new can join")]
    Locked,
    #[error("you were removed from this session")]
    Banned,
    #[error("the room closed; try again")]
    Closed,
    #[error("someone with another role holds this participant id's place in the room")]
    SeatTaken,
}

/// How a connection learns that the room ended its session (removed, declined, ended, ...).
pub type SessionEnd = oneshot::Sender<EndReason>;

pub struct JoinRequest {
    pub grant: Grant,
    pub outbox: Outbox,
    pub peer: PeerHandle,
    pub ended: SessionEnd,
}

pub enum RoomCommand {
    Join(JoinRequest, oneshot::Sender<Result<(), RoomError>>),
    /// Anything else that happens in the room: the room core takes it as it is.
    Input(RoomInput),
    /// Relay nodes: move this room off this node. `None`: this node drains, so save the state
    /// and hand the room to another node; `Some(url)`: another node owns it already (its
    /// websocket URL, if known). Every member is sent there and the room task ends here.
    Evacuate(Option<String>),
}

/// What happens in a room besides joins (which bring a connection along) and evacuation
/// (which needs the cluster): the room core's inputs, sent by members' connections and by the
/// room's own timers and store task.
#[derive(Debug)]
pub enum RoomInput {
    Leave(ParticipantId),
    /// The socket dropped without `leave`: hold the place for the reconnect grace period.
    Disconnected(ParticipantId),
    TrackPublished(ParticipantId, Arc<PublishedTrack>),
    TrackEnded(ParticipantId, TrackId),
    /// Anything else a member's client asked for; the room checks who may do what.
    Client {
        from: ParticipantId,
        msg: ClientMessage,
    },
    /// A timer the room set for itself fired (the room task is the session's clock).
    Timer(Timer),
    /// What the room's task read from the store for the room, when the room asked.
    Loaded(Loaded),
}

/// A store read the room asked for, as the task hands it back.
#[derive(Debug)]
pub enum Loaded {
    /// The room's saved accountability partner groups.
    Partners(Vec<Vec<ParticipantId>>),
    /// For the check-in now open: each person's value at their latest earlier session's
    /// check-in.
    PreviousCheckIns(CheckInId, Vec<(ParticipantId, u8)>),
}

impl From<RoomInput> for RoomCommand {
    fn from(input: RoomInput) -> Self {
        RoomCommand::Input(input)
    }
}

/// Timers a room sets for itself with [`Room::schedule`]. Each feature adds its variant and
/// checks on arrival that the timer still matters (a generation number or an id).
#[derive(Debug, Clone)]
pub enum Timer {
    /// Breakouts: warn before closing (generation of the opening it belongs to).
    BreakoutWarning(u64),
    /// Breakouts: the duration ran out, or the close-all countdown ended.
    BreakoutClose(u64),
    /// A disconnected member's grace period ended (the epoch it was set for).
    Grace(ParticipantId, u64),
    /// Polls: a poll's time limit ran out.
    PollClose(crate::signal::protocol::PollId),
    /// Active speaker: look at the audio levels again.
    Speakers,
    /// Screen sharing: the announced share (its announcement number) should have arrived.
    ScreenArrival(ParticipantId, u64),
    /// Rounds: a turn's time is up (the space, and the turn's generation).
    RoundTurn(Option<String>, u64),
    /// Agenda: warn before the running item ends (the warning's generation).
    AgendaWarning(u64),
}

#[derive(Clone)]
pub struct RoomHandle {
    pub(super) tx: mpsc::Sender<RoomCommand>,
}

impl RoomHandle {
    pub(in crate::room) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub(in crate::room) fn same_room(&self, other: &RoomHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Joins; on success the room has already queued `joined` on the outbox.
    pub async fn join(&self, req: JoinRequest) -> Result<(), RoomError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(RoomCommand::Join(req, reply)).await.map_err(|_| RoomError::Closed)?;
        rx.await.unwrap_or(Err(RoomError::Closed))
    }

    /// Fire-and-forget commands; a room that has ended has nothing left to update.
    pub async fn send(&self, cmd: impl Into<RoomCommand>) {
        let _ = self.tx.send(cmd.into()).await;
    }
}
