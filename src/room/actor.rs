//! One room's task: it alone owns the room's membership and decides who receives whom.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, info_span, Instrument};

use super::registry::RegistryInner;
use super::{ParticipantId, RoomId};
use crate::sfu::{PeerCommand, PeerHandle, PublishedTrack, TrackId};
use crate::signal::protocol::{MediaKind, ParticipantInfo, ServerMessage};

/// Where a room sends messages for one participant's socket.
pub type Outbox = mpsc::Sender<ServerMessage>;

/// Messages a room queues for one socket before it counts that socket as stalled.
pub const OUTBOX_CAPACITY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the room is full ({0} participants)")]
    Full(usize),
    #[error("this participant is already in the room")]
    AlreadyInRoom,
    #[error("the room closed; try again")]
    Closed,
}

pub struct JoinRequest {
    pub participant: ParticipantId,
    pub name: String,
    pub outbox: Outbox,
    pub peer: PeerHandle,
}

#[derive(Debug)]
pub struct Joined {
    pub participants: Vec<ParticipantInfo>,
}

pub enum RoomCommand {
    Join(JoinRequest, oneshot::Sender<Result<Joined, RoomError>>),
    Leave(ParticipantId),
    TrackPublished(ParticipantId, Arc<PublishedTrack>),
    TrackEnded(ParticipantId, TrackId),
    SetMute { participant: ParticipantId, kind: MediaKind, muted: bool },
}

#[derive(Clone)]
pub struct RoomHandle {
    tx: mpsc::Sender<RoomCommand>,
}

impl RoomHandle {
    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub(super) fn same_room(&self, other: &RoomHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    pub async fn join(&self, req: JoinRequest) -> Result<Joined, RoomError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(RoomCommand::Join(req, reply)).await.map_err(|_| RoomError::Closed)?;
        rx.await.unwrap_or(Err(RoomError::Closed))
    }

    /// Fire-and-forget commands; a room that has ended has nothing left to update.
    pub async fn send(&self, cmd: RoomCommand) {
        let _ = self.tx.send(cmd).await;
    }
}

struct Member {
    info: ParticipantInfo,
    outbox: Outbox,
    peer: PeerHandle,
    tracks: Vec<Arc<PublishedTrack>>,
}

struct Room {
    id: RoomId,
    members: HashMap<ParticipantId, Member>,
    /// Join order, so rosters are stable.
    order: Vec<ParticipantId>,
    max_size: usize,
    registry: Arc<RegistryInner>,
}

pub(super) fn spawn(id: RoomId, max_size: usize, registry: Arc<RegistryInner>) -> RoomHandle {
    let (tx, rx) = mpsc::channel(1024);
    let handle = RoomHandle { tx };
    let room = Room { id: id.clone(), members: HashMap::new(), order: Vec::new(), max_size, registry };
    tokio::spawn(room.run(rx, handle.clone()).instrument(info_span!("room", room = %id)));
    handle
}

impl Room {
    async fn run(mut self, mut rx: mpsc::Receiver<RoomCommand>, me: RoomHandle) {
        info!("room opened");
        while let Some(cmd) = rx.recv().await {
            self.handle(cmd);
            if self.members.is_empty() {
                // Leave the registry first so new joins create a fresh room, then refuse
                // whatever was already queued here (those callers retry).
                self.registry.rooms.remove_if(&self.id, |_, h| h.same_room(&me));
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if let RoomCommand::Join(_, reply) = cmd {
                        let _ = reply.send(Err(RoomError::Closed));
                    }
                }
                break;
            }
        }
        info!("room closed");
    }

    fn handle(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Join(req, reply) => {
                let result = self.join(req);
                let _ = reply.send(result);
            }
            RoomCommand::Leave(id) => self.leave(&id),
            RoomCommand::TrackPublished(id, track) => self.track_published(&id, track),
            RoomCommand::TrackEnded(id, track_id) => self.track_ended(&id, &track_id),
            RoomCommand::SetMute { participant, kind, muted } => {
                let Some(m) = self.members.get_mut(&participant) else { return };
                match kind {
                    MediaKind::Audio => m.info.audio_muted = muted,
                    MediaKind::Video => m.info.video_muted = muted,
                }
                let info = m.info.clone();
                self.broadcast(ServerMessage::ParticipantUpdated { participant: info }, None);
            }
        }
    }

    fn join(&mut self, req: JoinRequest) -> Result<Joined, RoomError> {
        if self.members.contains_key(&req.participant) {
            return Err(RoomError::AlreadyInRoom);
        }
        if self.members.len() >= self.max_size {
            return Err(RoomError::Full(self.max_size));
        }
        let info = ParticipantInfo {
            id: req.participant.clone(),
            name: req.name,
            audio_muted: false,
            video_muted: false,
        };
        self.broadcast(ServerMessage::ParticipantJoined { participant: info.clone() }, None);
        // The newcomer receives everything already published here.
        for m in self.members.values() {
            for t in &m.tracks {
                req.peer.send(PeerCommand::Subscribe(t.clone()));
            }
        }
        let participants = self.roster();
        self.members.insert(
            req.participant.clone(),
            Member { info, outbox: req.outbox, peer: req.peer, tracks: Vec::new() },
        );
        self.order.push(req.participant.clone());
        self.registry.participants.fetch_add(1, Ordering::Relaxed);
        debug!(participant = %req.participant, size = self.members.len(), "joined");
        Ok(Joined { participants })
    }

    fn leave(&mut self, id: &ParticipantId) {
        let Some(member) = self.members.remove(id) else { return };
        self.order.retain(|p| p != id);
        self.registry.participants.fetch_sub(1, Ordering::Relaxed);
        for t in &member.tracks {
            for m in self.members.values() {
                m.peer.send(PeerCommand::Unsubscribe(t.id.clone()));
            }
        }
        self.broadcast(ServerMessage::ParticipantLeft { participant_id: id.clone() }, None);
        debug!(participant = %id, size = self.members.len(), "left");
    }

    fn track_published(&mut self, id: &ParticipantId, track: Arc<PublishedTrack>) {
        let Some(member) = self.members.get_mut(id) else { return };
        member.tracks.push(track.clone());
        for (pid, m) in &self.members {
            if pid != id {
                m.peer.send(PeerCommand::Subscribe(track.clone()));
            }
        }
    }

    fn track_ended(&mut self, id: &ParticipantId, track_id: &TrackId) {
        let Some(member) = self.members.get_mut(id) else { return };
        member.tracks.retain(|t| &t.id != track_id);
        for (pid, m) in &self.members {
            if pid != id {
                m.peer.send(PeerCommand::Unsubscribe(track_id.clone()));
            }
        }
    }

    fn roster(&self) -> Vec<ParticipantInfo> {
        self.order.iter().filter_map(|id| self.members.get(id)).map(|m| m.info.clone()).collect()
    }

    /// Queues a message for every member (but `except`). A member whose outbox is full is
    /// stalled; its connection notices the closed outbox and cleans up.
    fn broadcast(&mut self, msg: ServerMessage, except: Option<&ParticipantId>) {
        let mut stalled = Vec::new();
        for (id, m) in &self.members {
            if Some(id) == except {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = m.outbox.try_send(msg.clone()) {
                stalled.push(id.clone());
            }
        }
        for id in stalled {
            tracing::warn!(participant = %id, "outbox full; disconnecting stalled client");
            self.leave(&id);
        }
    }
}
