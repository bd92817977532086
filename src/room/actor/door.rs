//! The door: what someone in the waiting room is told about what they wait for (the group's
//! name and the therapist's welcome, who the therapist is and whether they are here, and that
//! the session their link was for has ended), and what therapists learn about the door (a
//! late arrival turned away by a locked room). Only therapists set the welcome; only waiting
//! people and therapists are sent any of it, and a turned-away arrival reaches therapists alone.
//!
//! The welcome, the last therapist's name and when the last session ended outlive the room's
//! task in the registry (`shared::DoorMemory`), so the waiting room of the next session says
//! them before a therapist arrives; all but the therapist's name also go to the store (sealed)
//! and outlive a restart, and (relay nodes) into the room's snapshot ([`DoorSnap`], plain like
//! the snapshot's other room texts), so a room that moves to another node says them there
//! too. Admission stays the room's.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Cx, Effect, Room};
use crate::auth::Grant;
use crate::room::shared::DoorMemory;
use crate::signal::protocol::{ErrorCode, ServerMessage, MAX_CLOSING_CHARS, MAX_GROUP_NAME_CHARS, MAX_WELCOME_CHARS};
use crate::vocab::{is_forbidden_in_names, ParticipantId};

#[derive(Default)]
pub(super) struct Door {
    memory: DoorMemory,
    /// When each member's link was minted (seconds since the Unix epoch): a link minted before
    /// the last session ended was for that session.
    issued: HashMap<ParticipantId, u64>,
    /// The closing message of the `endSession` being carried out.
    pub(super) closing: Option<String>,
}

impl Door {
    pub(super) fn new(memory: DoorMemory) -> Self {
        Self { memory, issued: HashMap::new(), closing: None }
    }
}

/// What the room's snapshot keeps of the door: what the store keeps, never the therapist's
/// name (Redis is not where people's names go).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DoorSnap {
    pub group_name: Option<String>,
    pub welcome: Option<String>,
    /// Seconds since the Unix epoch.
    pub ended_at: Option<u64>,
}

/// Furthest in the future a saved session end may lie (clock skew between nodes).
const MAX_ENDED_AHEAD_SECS: u64 = 3600;

impl DoorSnap {
    /// Whether `setWelcome` and `endSession` could have left this (a snapshot is read like input).
    pub(super) fn valid(&self, now_secs: u64) -> bool {
        let as_set = |text: &Option<String>, max: usize, lines: bool| {
            text.as_deref().is_none_or(|t| clean(t, max, lines).is_some_and(|c| c.as_deref() == Some(t)))
        };
        as_set(&self.group_name, MAX_GROUP_NAME_CHARS, false)
            && as_set(&self.welcome, MAX_WELCOME_CHARS, true)
            && self.ended_at.is_none_or(|at| at <= now_secs.saturating_add(MAX_ENDED_AHEAD_SECS))
    }
}

/// A therapist's text for other people's screens: trimmed, at most `max` characters, no
/// control or text-direction characters (line breaks allowed where `lines`). `None` when it
/// breaks the rules; `Some(None)` when empty.
fn clean(text: &str, max: usize, lines: bool) -> Option<Option<String>> {
    let text = text.trim();
    if text.chars().count() > max || text.chars().any(|c| is_forbidden_in_names(c) && !(lines && c == '\n')) {
        return None;
    }
    Some((!text.is_empty()).then(|| text.to_string()))
}

/// The closing message of `endSession`, checked like the welcome.
pub(super) fn closing_message(text: Option<&str>) -> Result<Option<String>, String> {
    match text {
        None => Ok(None),
        Some(t) => clean(t, MAX_CLOSING_CHARS, true)
            .ok_or_else(|| format!("a closing message is at most {MAX_CLOSING_CHARS} characters, without control characters")),
    }
}

impl Room {
    /// Someone joined (or came back): remember their link's age; a therapist's name becomes
    /// the one the waiting room gives. Everyone at the door hears what changed.
    pub(super) fn door_joined(&mut self, grant: &Grant) {
        self.door.issued.insert(grant.participant.clone(), grant.issued_at);
        if grant.role == crate::auth::Role::Therapist && self.door.memory.therapist_name.as_deref() != Some(grant.name.as_str()) {
            self.door.memory.therapist_name = Some(grant.name.clone());
            self.remember_door();
        }
        self.publish_door();
    }

    /// A locked room refused `grant`: therapists (and nobody else) hear of it.
    pub(super) fn turned_away(&mut self, grant: &Grant) {
        let msg = ServerMessage::TurnedAway { participant_id: grant.participant.clone(), name: grant.name.clone(), role: grant.role };
        for t in cx!(self).therapists() {
            self.send_to(&t, msg.clone());
        }
    }

    /// A therapist ended the session: links minted before now are for a session that is over.
    pub(super) fn door_session_ended(&mut self) {
        self.door.memory.ended_at = Some((self.now.unix_ms.max(0) / 1000) as u64);
        self.remember_door();
    }

    pub(super) fn on_set_welcome(&mut self, from: &ParticipantId, group_name: &str, message: &str) {
        let Some(group_name) = clean(group_name, MAX_GROUP_NAME_CHARS, false) else {
            return self.error(
                from,
                ErrorCode::InvalidField,
                format!("a group name is at most {MAX_GROUP_NAME_CHARS} characters, on one line, without control characters"),
            );
        };
        let Some(welcome) = clean(message, MAX_WELCOME_CHARS, true) else {
            return self.error(
                from,
                ErrorCode::InvalidField,
                format!("a welcome message is at most {MAX_WELCOME_CHARS} characters, without control characters"),
            );
        };
        self.door.memory.group_name = group_name;
        self.door.memory.welcome = welcome;
        self.audit(from, "set_welcome", None);
        self.remember_door();
        self.publish_door();
    }

    /// The memory outlives this task (see the module comment).
    fn remember_door(&mut self) {
        self.out.push(Effect::RememberDoor(self.door.memory.clone()));
    }

    /// Tells everyone waiting, and every therapist, what the waiting room says now.
    pub(super) fn publish_door(&mut self) {
        let therapist_here = self.members.values().any(|m| m.is_therapist() && m.admitted && m.connected);
        let here_name = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id))
            .find(|m| m.is_therapist() && m.admitted && m.connected)
            .map(|m| m.info.name.clone());
        let memory = &self.door.memory;
        let told: Vec<(ParticipantId, bool)> = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| !m.admitted || m.is_therapist())
            .map(|m| {
                let issued = self.door.issued.get(&m.info.id).copied().unwrap_or(u64::MAX);
                let ended = !m.admitted && !therapist_here && memory.ended_at.is_some_and(|end| issued < end);
                (m.info.id.clone(), ended)
            })
            .collect();
        for (id, session_ended) in told {
            let msg = ServerMessage::WaitingRoom {
                group_name: self.door.memory.group_name.clone(),
                therapist_name: here_name.clone().or_else(|| self.door.memory.therapist_name.clone()),
                therapist_here,
                welcome: self.door.memory.welcome.clone(),
                session_ended,
            };
            self.send_to(&id, msg);
        }
    }

    pub(super) fn door_snapshot(&self) -> DoorSnap {
        let m = &self.door.memory;
        DoorSnap { group_name: m.group_name.clone(), welcome: m.welcome.clone(), ended_at: m.ended_at }
    }

    /// The door as the room's previous node left it: its texts replace what this node
    /// remembered (they are the newer), and go to this node's memory and store.
    pub(super) fn restore_door(&mut self, snap: DoorSnap) {
        let m = &mut self.door.memory;
        m.group_name = snap.group_name;
        m.welcome = snap.welcome;
        m.ended_at = m.ended_at.max(snap.ended_at);
        self.remember_door();
    }

    /// `id` left the room: its link no longer matters.
    pub(super) fn door_left(&mut self, id: &ParticipantId) {
        self.door.issued.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_for_others_are_trimmed_bounded_and_plain() {
        assert_eq!(clean("  Tuesday group ", 80, false), Some(Some("Tuesday group".into())));
        assert_eq!(clean("   ", 80, false), Some(None));
        assert_eq!(clean(&"x".repeat(81), 80, false), None);
        assert_eq!(clean("two\nlines", 80, false), None);
        assert_eq!(clean("two\nlines", 80, true), Some(Some("two\nlines".into())));
        assert_eq!(clean("evil\u{202E}txt", 80, true), None);
        assert!(closing_message(Some(&"y".repeat(601))).is_err());
    }

    #[test]
    fn a_saved_door_is_one_a_therapist_could_have_set() {
        let now = 1_800_000_000;
        let door = |group: &str, welcome: &str, ended_at| DoorSnap {
            group_name: Some(group.into()),
            welcome: Some(welcome.into()),
            ended_at: Some(ended_at),
        };
        assert!(DoorSnap::default().valid(now));
        assert!(door("Tuesday group", "Welcome.\nTake a seat.", now - 60).valid(now));
        assert!(!door("Two\nlines", "Welcome.", now).valid(now), "a group name is one line");
        assert!(!door(" Tuesday", "Welcome.", now).valid(now), "texts are saved trimmed");
        assert!(!door("Tuesday", "", now).valid(now), "an empty text is saved as none");
        assert!(!door("Tuesday", "evil\u{202E}txt", now).valid(now));
        assert!(!door("Tuesday", &"w".repeat(MAX_WELCOME_CHARS + 1), now).valid(now));
        assert!(!door("Tuesday", "Welcome.", now + 2 * MAX_ENDED_AHEAD_SECS).valid(now), "a session cannot end in the future");
        assert_eq!(closing_message(None), Ok(None));
    }
}
