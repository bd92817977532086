//! The map from room id to running room task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::actor::{self, RoomHandle};
use super::RoomId;

pub(super) struct RegistryInner {
    pub(super) rooms: DashMap<RoomId, RoomHandle>,
    pub(super) participants: AtomicUsize,
}

#[derive(Clone)]
pub struct RoomRegistry {
    inner: Arc<RegistryInner>,
    max_room_size: usize,
}

impl RoomRegistry {
    pub fn new(max_room_size: usize) -> Self {
        Self {
            inner: Arc::new(RegistryInner { rooms: DashMap::new(), participants: AtomicUsize::new(0) }),
            max_room_size,
        }
    }

    /// The running room with this id, started if there is none.
    pub fn get_or_create(&self, id: &RoomId) -> RoomHandle {
        let mut entry = self.inner.rooms.entry(id.clone()).or_insert_with(|| {
            actor::spawn(id.clone(), self.max_room_size, self.inner.clone())
        });
        if entry.is_closed() {
            *entry = actor::spawn(id.clone(), self.max_room_size, self.inner.clone());
        }
        entry.clone()
    }

    pub fn room_count(&self) -> usize {
        self.inner.rooms.len()
    }

    pub fn participant_count(&self) -> usize {
        self.inner.participants.load(Ordering::Relaxed)
    }
}
