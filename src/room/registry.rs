//! The map from room id to running room task, and what every room shares.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::actor::{self, RoomHandle};
use super::RoomId;
use crate::signal::protocol::IceServer;
use crate::store::Store;

/// Settings every room reads; fixed for the server's lifetime.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub max_room_size: usize,
    /// Whether new rooms start with the waiting room on.
    pub waiting_room: bool,
    pub ice_servers: Vec<IceServer>,
}

pub(super) struct RegistryInner {
    pub(super) rooms: DashMap<RoomId, RoomHandle>,
    pub(super) participants: AtomicUsize,
    pub(super) settings: RoomSettings,
    pub(super) store: Option<Store>,
}

#[derive(Clone)]
pub struct RoomRegistry {
    inner: Arc<RegistryInner>,
}

impl RoomRegistry {
    pub fn new(settings: RoomSettings, store: Option<Store>) -> Self {
        Self {
            inner: Arc::new(RegistryInner { rooms: DashMap::new(), participants: AtomicUsize::new(0), settings, store }),
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

    pub fn room_count(&self) -> usize {
        self.inner.rooms.len()
    }

    pub fn participant_count(&self) -> usize {
        self.inner.participants.load(Ordering::Relaxed)
    }
}
