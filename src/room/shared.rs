//! What every room of this node shares: the settings, the store, the relay cluster, the
//! participant counts, the bans and waiting-room memory that outlive a room, and the map of
//! running rooms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::handle::RoomHandle;
use crate::auth::Role;
use crate::cluster::Cluster;
use crate::store::Store;
use crate::turn::TurnIssuer;
use crate::vocab::{IceServer, ParticipantId, RoomId};

/// Settings every room reads; fixed for the server's lifetime.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub max_room_size: usize,
    /// Tracks one member may publish at once (a microphone, a camera and a screen).
    pub max_tracks_per_participant: usize,
    /// Whether new rooms start with the waiting room on.
    pub waiting_room: bool,
    /// New rooms' end-to-end encryption policy (`required` also keeps the waiting room on).
    pub e2ee: crate::vocab::E2eeMode,
    pub reconnect_grace: std::time::Duration,
    /// STUN (or TURN with fixed credentials) for every admitted client.
    pub ice_servers: Vec<IceServer>,
    /// Mints each admitted client TURN credentials of its own.
    pub turn: Option<TurnIssuer>,
    /// Keys anonymous poll ballots (see `actor/poll.rs`): random per process on a single node,
    /// derived from the shared token secret when relay nodes must carry open polls over.
    pub ballot_secret: [u8; 32],
    /// How long a removal (or final decline) keeps someone out of a room id after the room
    /// task ended: the session's bans outlive everyone leaving (`cluster.state_ttl_secs`).
    pub ban_ttl: Duration,
    /// A participant arriving this long after their session started is flagged late.
    pub late_after: Duration,
    /// Whether each participant's talk time goes into their attendance record.
    pub talk_time_in_attendance: bool,
    /// What someone who asks for support is shown at once (`support.resources_text`).
    pub support_resources: String,
    /// Rows of the permission table this deployment takes from co-facilitators
    /// (`rooms.co_facilitator_withhold`, checked at start-up).
    pub co_facilitator_withheld: Vec<&'static str>,
}

impl RoomSettings {
    /// The ICE servers for an admitted member: the configured ones and, with a TURN server,
    /// credentials for `id` that expire a TTL after `now`.
    pub fn ice_servers_for(&self, id: &ParticipantId, now: std::time::SystemTime) -> Vec<IceServer> {
        let mut servers = self.ice_servers.clone();
        servers.extend(self.turn.as_ref().map(|t| t.mint(id, now)));
        servers
    }
}

/// Room ids whose bans are kept at most, and banned ids per room: bounds that no real clinic
/// reaches, so a flood of removals cannot grow the map without limit.
const MAX_BANNED_ROOMS: usize = 10_000;
const MAX_BANS_PER_ROOM: usize = 1_000;
/// Room ids whose waiting-room texts are kept in memory (and read back from the store) at most.
pub(super) const MAX_DOORS: usize = MAX_BANNED_ROOMS;

/// Who was removed from each room id, for rooms whose task has ended (or may end): a room
/// recreated after everyone left starts from these.
#[derive(Default)]
pub(super) struct Bans {
    rooms: Mutex<HashMap<RoomId, HashMap<ParticipantId, Instant>>>,
}

impl Bans {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, HashMap<ParticipantId, Instant>>> {
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bans `who` from `room` until `until`.
    pub(super) fn insert(&self, room: &RoomId, who: &ParticipantId, until: Instant) {
        let now = Instant::now();
        let mut rooms = self.lock();
        rooms.retain(|_, ids| {
            ids.retain(|_, t| *t > now);
            !ids.is_empty()
        });
        if !rooms.contains_key(room) && rooms.len() >= MAX_BANNED_ROOMS {
            // Full: the room whose bans end soonest goes first.
            let soonest = rooms.iter().min_by_key(|(_, ids)| ids.values().max().copied()).map(|(r, _)| r.clone());
            if let Some(r) = soonest {
                rooms.remove(&r);
            }
        }
        let ids = rooms.entry(room.clone()).or_default();
        if !ids.contains_key(who) && ids.len() >= MAX_BANS_PER_ROOM {
            if let Some(oldest) = ids.iter().min_by_key(|(_, t)| **t).map(|(p, _)| p.clone()) {
                ids.remove(&oldest);
            }
        }
        ids.insert(who.clone(), until);
    }

    /// Everyone still banned from `room`.
    pub(super) fn of(&self, room: &RoomId) -> Vec<ParticipantId> {
        let now = Instant::now();
        self.lock().get(room).map(|ids| ids.iter().filter(|(_, t)| **t > now).map(|(p, _)| p.clone()).collect()).unwrap_or_default()
    }
}

/// What a room id remembers on this node beyond its task, for the waiting room of the next
/// session (see `actor/door.rs`): the therapist's group name and welcome, the last therapist's
/// name, and when the last session was ended. All but the therapist's name is also kept by the
/// store ([`DoorMemory::record`], read back at start by `RoomRegistry::restore_doors`), so a
/// restart forgets only who the therapist was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DoorMemory {
    pub(super) group_name: Option<String>,
    pub(super) welcome: Option<String>,
    pub(super) therapist_name: Option<String>,
    /// When a therapist last ended a session here, seconds since the Unix epoch.
    pub(super) ended_at: Option<u64>,
}

impl DoorMemory {
    /// What the store keeps of it: no names of people.
    pub(super) fn record(&self, room: &RoomId) -> crate::store::DoorRecord {
        crate::store::DoorRecord {
            room: room.as_str().to_string(),
            group_name: self.group_name.clone(),
            welcome: self.welcome.clone(),
            ended_at: self.ended_at,
        }
    }
}

/// [`DoorMemory`] per room id, bounded like [`Bans`]: the least recently changed room goes first.
#[derive(Default)]
pub(super) struct Doors {
    rooms: Mutex<HashMap<RoomId, (DoorMemory, Instant)>>,
}

impl Doors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, (DoorMemory, Instant)>> {
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn of(&self, room: &RoomId) -> DoorMemory {
        self.lock().get(room).map(|(m, _)| m.clone()).unwrap_or_default()
    }

    pub(super) fn set(&self, room: &RoomId, memory: DoorMemory) {
        let mut rooms = self.lock();
        if !rooms.contains_key(room) && rooms.len() >= MAX_DOORS {
            if let Some(oldest) = rooms.iter().min_by_key(|(_, (_, t))| *t).map(|(r, _)| r.clone()) {
                rooms.remove(&oldest);
            }
        }
        rooms.insert(room.clone(), (memory, Instant::now()));
    }
}

pub(super) struct RegistryInner {
    pub(super) rooms: DashMap<RoomId, RoomHandle>,
    pub(super) participants: AtomicUsize,
    /// Participants by role, in the order of `Role::ALL`.
    pub(super) by_role: [AtomicUsize; Role::ALL.len()],
    pub(super) settings: RoomSettings,
    pub(super) store: Option<Store>,
    /// The ordered queue of session records (with a store).
    pub(super) recorder: Option<crate::store::Recorder>,
    /// Where session summaries go when a session ends (`webhook.url`).
    pub(super) webhook: Option<crate::webhook::Webhook>,
    /// Relay nodes: where rooms save the state that must outlive this node.
    pub(super) cluster: std::sync::OnceLock<Arc<Cluster>>,
    /// Bans that outlive a room's task (see [`Bans`]).
    pub(super) bans: Bans,
    /// What each room id's waiting room says between sessions (see [`DoorMemory`]).
    pub(super) doors: Doors,
    /// Room tasks that panicked and were ended (`hearth_room_failures_total`).
    pub(super) failures: AtomicU64,
}

impl RegistryInner {
    /// Counts a participant in (`joined`) or out.
    pub(super) fn count(&self, role: Role, joined: bool) {
        let i = role.index();
        if joined {
            self.participants.fetch_add(1, Ordering::Relaxed);
            self.by_role[i].fetch_add(1, Ordering::Relaxed);
        } else {
            self.participants.fetch_sub(1, Ordering::Relaxed);
            self.by_role[i].fetch_sub(1, Ordering::Relaxed);
        }
    }
}
