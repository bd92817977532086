//! The map from room id to running room task, and what every room shares.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::actor::{self, RoomHandle};
pub use super::shared::RoomSettings;
use super::shared::{Bans, Doors, RegistryInner};
use super::RoomId;
use crate::auth::Role;
use crate::cluster::Cluster;
use crate::store::Store;

#[derive(Clone)]
pub struct RoomRegistry {
    inner: Arc<RegistryInner>,
}

impl std::fmt::Debug for RoomRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomRegistry").field("rooms", &self.room_count()).finish()
    }
}

impl RoomRegistry {
    /// `webhook`: where session summaries go when a session ends. With a store, session
    /// records are written through one ordered queue (which needs a tokio runtime).
    pub fn new(settings: RoomSettings, store: Option<Store>, webhook: Option<crate::webhook::Webhook>) -> Self {
        let recorder = store.clone().map(crate::store::Recorder::spawn);
        Self {
            inner: Arc::new(RegistryInner {
                rooms: DashMap::new(),
                participants: AtomicUsize::new(0),
                by_role: Default::default(),
                settings,
                store,
                recorder,
                webhook,
                cluster: std::sync::OnceLock::new(),
                bans: Bans::default(),
                doors: Doors::default(),
                failures: AtomicU64::new(0),
            }),
        }
    }

    /// Reads back what the store kept of the waiting rooms (group names, welcomes, when each
    /// room's last session ended), so a restarted node's waiting rooms say them again. Once, at
    /// start, before any room runs.
    pub async fn restore_doors(&self) -> Result<usize, crate::store::StoreError> {
        let Some(store) = &self.inner.store else { return Ok(0) };
        let doors = store.doors(super::shared::MAX_DOORS).await?;
        let mut restored = 0;
        // Oldest first: the memory drops the least recently changed room when full.
        for d in doors.into_iter().rev() {
            let Ok(room) = RoomId::new(&d.room) else { continue };
            let memory =
                super::shared::DoorMemory { group_name: d.group_name, welcome: d.welcome, therapist_name: None, ended_at: d.ended_at };
            self.inner.doors.set(&room, memory);
            restored += 1;
        }
        Ok(restored)
    }

    #[cfg(test)]
    pub(super) fn from_inner(inner: Arc<RegistryInner>) -> Self {
        Self { inner }
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
    pub fn participants_by_role(&self) -> [(Role, usize); Role::ALL.len()] {
        Role::ALL.map(|r| (r, self.inner.by_role[r.index()].load(Ordering::Relaxed)))
    }

    /// Room tasks that failed (panicked) and were ended, since start.
    pub fn room_failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
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
