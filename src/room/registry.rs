//! The map from room id to running room task, and what every room shares.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::actor::{self, RoomHandle};
use super::RoomId;
use crate::auth::Role;
use crate::cluster::Cluster;
use crate::signal::protocol::IceServer;
use crate::store::Store;

/// Settings every room reads; fixed for the server's lifetime.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub max_room_size: usize,
    /// Tracks one member may publish at once (a microphone, a camera and a screen).
    pub max_tracks_per_participant: usize,
    /// Whether new rooms start with the waiting room on.
    pub waiting_room: bool,
    pub reconnect_grace: std::time::Duration,
    pub ice_servers: Vec<IceServer>,
    /// Keys anonymous poll ballots (see `actor/poll.rs`): random per process on a single node,
    /// derived from the shared token secret when relay nodes must carry open polls over.
    pub ballot_secret: [u8; 32],
}

pub(super) struct RegistryInner {
    pub(super) rooms: DashMap<RoomId, RoomHandle>,
    pub(super) participants: AtomicUsize,
    /// Participants by role: therapist, participant, observer.
    pub(super) by_role: [AtomicUsize; 3],
    pub(super) settings: RoomSettings,
    pub(super) store: Option<Store>,
    /// Relay nodes: where rooms save the state that must outlive this node.
    pub(super) cluster: std::sync::OnceLock<Arc<Cluster>>,
}

#[derive(Clone)]
pub struct RoomRegistry {
    inner: Arc<RegistryInner>,
}

impl std::fmt::Debug for RoomRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomRegistry").field("rooms", &self.room_count()).finish()
    }
}

impl RegistryInner {
    /// Counts a participant in (`joined`) or out.
    pub(super) fn count(&self, role: Role, joined: bool) {
        let i = match role {
            Role::Therapist => 0,
            Role::Participant => 1,
            Role::Observer => 2,
        };
        if joined {
            self.participants.fetch_add(1, Ordering::Relaxed);
            self.by_role[i].fetch_add(1, Ordering::Relaxed);
        } else {
            self.participants.fetch_sub(1, Ordering::Relaxed);
            self.by_role[i].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl RoomRegistry {
    pub fn new(settings: RoomSettings, store: Option<Store>) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                rooms: DashMap::new(),
                participants: AtomicUsize::new(0),
                by_role: Default::default(),
                settings,
                store,
                cluster: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The running room with this id, started if there is none.
    pub fn get_or_create(&self, id: &RoomId) -> RoomHandle {
        let mut entry = self.inner.rooms.entry(id.clone()).or_insert_with(|| actor::spawn(id.clone(), self.inner.clone()));
        if entry.is_closed() {
            *entry = actor::spawn(id.clone(), self.inner.clone());
        }
        entry.clone()
    }

    /// Joins this node to a cluster; rooms started from now on keep their state there.
    pub fn attach_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.inner.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.get()
    }

    /// Whether a room task for `id` runs on this node.
    pub fn is_running(&self, id: &RoomId) -> bool {
        self.inner.rooms.get(id).is_some_and(|h| !h.is_closed())
    }

    /// The rooms running on this node.
    pub fn running(&self) -> Vec<(RoomId, RoomHandle)> {
        self.inner.rooms.iter().map(|e| (e.key().clone(), e.value().clone())).collect()
    }

    pub fn room_count(&self) -> usize {
        self.inner.rooms.len()
    }

    /// Connected participants of each role.
    pub fn participants_by_role(&self) -> [(Role, usize); 3] {
        let n = |i: usize| self.inner.by_role[i].load(Ordering::Relaxed);
        [(Role::Therapist, n(0)), (Role::Participant, n(1)), (Role::Observer, n(2))]
    }

    pub fn participant_count(&self) -> usize {
        self.inner.participants.load(Ordering::Relaxed)
    }
}

impl crate::cluster::LoadSource for RoomRegistry {
    fn rooms(&self) -> usize {
        self.room_count()
    }

    fn participants(&self) -> usize {
        self.participant_count()
    }
}
