//! The door: what someone in the waiting room is told about what they wait for (the group's
//! name and the therapist's welcome, who the therapist is and whether they are here, and that
//! the session their link was for has ended), and what therapists learn about the door (a
//! late arrival turned away by a locked room). Only therapists set the welcome; only waiting
//! people and therapists are sent any of it, and a turned-away arrival reaches therapists alone.
//!
//! The welcome, the last therapist's name and when the last session ended outlive the room's
//! task in the registry (`shared::DoorMemory`), so the waiting room of the next session says
//! them before a therapist arrives; all but the therapist's name also go to the store (sealed)
//! and outlive a restart. Admission stays the room's.

use std::collections::HashMap;

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
        assert_eq!(closing_message(None), Ok(None));
    }
}
