//! The part of a room's state that must outlive the node it runs on (relay nodes, issue 8):
//! admissions and hard mutes, bans, lock and waiting room, breakouts and assignments, open
//! polls with their ballots, and the celebration preferences people chose here.
//!
//! The room serialises this after every change and the cluster keeps it in Redis; a room
//! re-created on another node starts from it. Members, media and chat are not in it: people
//! reconnect and bring those back. Everything is kept in sorted order so that two snapshots of
//! the same state are byte-identical and an unchanged room writes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Remembered, Room, Timer};
use crate::room::ParticipantId;
use crate::signal::protocol::{CelebrationPreferences, PollId, PollInfo};
use crate::store::now_ms;

pub(super) const SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RoomSnapshot {
    pub version: u32,
    pub locked: bool,
    pub waiting_room: bool,
    pub banned: Vec<ParticipantId>,
    pub remembered: BTreeMap<ParticipantId, Remembered>,
    pub breakouts: BreakoutsSnap,
    pub polls: Vec<PollSnap>,
    pub celebration_prefs: BTreeMap<ParticipantId, CelebrationPreferences>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BreakoutsSnap {
    /// (id, name) in creation order.
    pub rooms: Vec<(String, String)>,
    pub assignment: BTreeMap<ParticipantId, String>,
    pub open: bool,
    pub allow_return: bool,
    pub closes_at_ms: Option<u64>,
    pub generation: u64,
    pub next_id: u32,
}

/// An open poll. Closed polls are final and already in the store of the node that closed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PollSnap {
    pub info: PollInfo,
    /// `None`: every space; `Some(space)`: one space (`None` inside = the main room).
    pub space: Option<Option<String>>,
    pub created_by: ParticipantId,
    pub created_at_ms: i64,
    pub shared: bool,
    pub counts: Vec<u32>,
    pub total_voters: u32,
    pub ballots: BallotsSnap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub(super) enum BallotsSnap {
    /// (participant, name shown to therapists, option indexes).
    Named { ballots: Vec<(ParticipantId, String, Vec<usize>)> },
    /// The poll's salt and, per ballot, its HMAC tag (hex) and option indexes. The HMAC key is
    /// derived from the salt and a secret only the nodes hold (docs/polls.md), so these tags
    /// tie to no participant for anyone who reads Redis alone.
    Anonymous { salt: String, choices: BTreeMap<String, Vec<usize>> },
}

impl Room {
    pub(super) fn snapshot(&self) -> RoomSnapshot {
        let mut banned: Vec<_> = self.banned.iter().cloned().collect();
        banned.sort();
        RoomSnapshot {
            version: SNAPSHOT_VERSION,
            locked: self.state.locked,
            waiting_room: self.state.waiting_room,
            banned,
            remembered: self.remembered.iter().map(|(id, r)| (id.clone(), *r)).collect(),
            breakouts: self.breakouts.snapshot(),
            polls: self.polls.snapshot(),
            celebration_prefs: self.milestones.chosen_prefs(),
        }
    }

    /// Takes over a snapshot saved by this room's previous node, before anyone joins.
    pub(super) fn restore(&mut self, snap: RoomSnapshot) {
        if snap.version != SNAPSHOT_VERSION {
            tracing::warn!(version = snap.version, "room state from an unknown version ignored");
            return;
        }
        self.state.locked = snap.locked;
        self.state.waiting_room = snap.waiting_room;
        self.banned = snap.banned.into_iter().collect();
        self.remembered = snap.remembered.into_iter().collect();
        let now = now_ms() as u64;
        if let Some((generation, left_ms)) = self.breakouts.restore(snap.breakouts, now) {
            self.schedule(std::time::Duration::from_millis(left_ms), Timer::BreakoutClose(generation));
        }
        let store = self.registry.store.clone();
        let secret = self.registry.settings.ballot_secret;
        for (id, left_ms) in self.polls.restore(snap.polls, &secret, store.as_ref(), self.id.as_str(), now) {
            self.schedule(std::time::Duration::from_millis(left_ms), Timer::PollClose(id));
        }
        for (who, prefs) in snap.celebration_prefs {
            self.restore_prefs(who, prefs);
        }
        tracing::info!("room state restored from the cluster");
    }
}

/// Poll ids restored with a timer still to run.
pub(super) type PollTimers = Vec<(PollId, u64)>;
