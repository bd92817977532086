//! Family spaces: the part of a session a member spends with their relatives. A therapist opens
//! one for a participant (the sponsor): a space of its own (`family-N`, named "Family space",
//! like a breakout for media, chat and rosters) that the sponsor and that therapist move into.
//! The sponsor's family guests (tokens with role `familyGuest` and claim `sponsor`) wait, listed
//! as their sponsor's guests, until someone admits them, and admission puts them there and
//! nowhere else. Closing the space, or a guest's token running out, ends the guest's session;
//! the others return where they belong.
//!
//! Owns which family spaces are open and when each guest's token expires. Keeping guests away
//! from the group everywhere else is the room's rule where a message or media goes (`admit`
//! places them, room-wide messages and the room state skip them, polls and celebrations leave
//! them out); this file must not move anyone but the people of the space it opens or closes.

use std::collections::HashMap;

use super::Room;
use crate::auth::Role;
use crate::room::ParticipantId;
use crate::signal::protocol::{ClientMessage, EndReason, ErrorCode};

/// Prefix of family space ids; breakouts are `b1`, private rooms `private-1`.
pub(super) const FAMILY_PREFIX: &str = "family-";
const FAMILY_SPACE_NAME: &str = "Family space";

#[derive(Default)]
pub(super) struct Families {
    /// Open family spaces: (sponsor, space id).
    open: Vec<(ParticipantId, String)>,
    next: u32,
    /// Each guest's token expiry (Unix seconds), from their latest connection.
    expires: HashMap<ParticipantId, u64>,
}

impl Families {
    /// The open family space of `sponsor`.
    pub(super) fn space_of_sponsor(&self, sponsor: &ParticipantId) -> Option<String> {
        self.open.iter().find(|(s, _)| s == sponsor).map(|(_, space)| space.clone())
    }

    pub(super) fn name_of(&self, space: &str) -> Option<&'static str> {
        self.open.iter().any(|(_, s)| s == space).then_some(FAMILY_SPACE_NAME)
    }

    /// `id` left the room: nothing of theirs is kept.
    pub(super) fn forget(&mut self, id: &ParticipantId) {
        self.expires.remove(id);
    }
}

impl Room {
    pub(super) fn on_family(&mut self, from: &ParticipantId, msg: ClientMessage) {
        match msg {
            ClientMessage::OpenFamilySpace { sponsor_id } => {
                if !self.members.get(&sponsor_id).is_some_and(|m| m.admitted && m.info.role.takes_part()) {
                    return self.error(from, ErrorCode::UnknownParticipant, "no participant with that id is in the room");
                }
                if self.families.space_of_sponsor(&sponsor_id).is_some() {
                    return self.error(from, ErrorCode::InvalidField, "their family space is open already");
                }
                self.families.next += 1;
                let space = format!("{FAMILY_PREFIX}{}", self.families.next);
                self.families.open.push((sponsor_id.clone(), space.clone()));
                self.move_many(vec![(sponsor_id.clone(), Some(space.clone())), (from.clone(), Some(space))]);
                self.audit(from, "family_space_open", Some(&sponsor_id));
                self.publish_waiting_list();
                if !self.breakouts.is_empty() {
                    self.publish_breakout_plan();
                }
            }
            ClientMessage::CloseFamilySpace { sponsor_id } => {
                let Some(space) = self.families.space_of_sponsor(&sponsor_id) else {
                    return self.error(from, ErrorCode::InvalidField, "they have no family space open");
                };
                self.close_family_space(&sponsor_id, &space);
                self.audit(from, "family_space_close", Some(&sponsor_id));
            }
            _ => {}
        }
    }

    /// The sponsor's guests leave (admitted or still waiting); everyone else in the space
    /// returns where the breakout plan puts them.
    fn close_family_space(&mut self, sponsor: &ParticipantId, space: &str) {
        self.families.open.retain(|(s, _)| s != sponsor);
        let guests: Vec<_> = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| m.info.role == Role::FamilyGuest && m.sponsor.as_ref() == Some(sponsor))
            .map(|m| m.info.id.clone())
            .collect();
        for g in guests {
            self.remove_member_saying(&g, EndReason::Ended, "The family part of the session has ended. Thank you for coming.");
        }
        let back: Vec<_> = self
            .order
            .iter()
            .filter(|id| self.members.get(*id).is_some_and(|m| m.space.as_deref() == Some(space)))
            .map(|id| (id.clone(), self.breakouts.space_for(id)))
            .collect();
        self.move_many(back);
        self.chat.forget_space(space);
        self.speakers.forget_space(space);
        self.publish_waiting_list();
        if !self.breakouts.is_empty() {
            self.publish_breakout_plan();
        }
    }

    /// A family guest connected with a token expiring at `expires_at` (Unix seconds): their
    /// session ends then.
    pub(super) fn guest_arrived(&mut self, id: &ParticipantId, expires_at: u64) {
        self.families.expires.insert(id.clone(), expires_at);
        let left_ms = expires_at.saturating_mul(1000).saturating_sub(self.now.unix_ms.max(0) as u64);
        self.schedule(std::time::Duration::from_millis(left_ms), super::Timer::GuestExpiry(id.clone()));
    }

    /// A guest's expiry timer fired: their session ends unless a later token moved it on.
    pub(super) fn guest_expiry(&mut self, id: &ParticipantId) {
        let due = self.families.expires.get(id).is_some_and(|exp| exp.saturating_mul(1000) <= self.now.unix_ms.max(0) as u64);
        if due && self.members.get(id).is_some_and(|m| m.info.role == Role::FamilyGuest) {
            self.families.expires.remove(id);
            self.remove_member_saying(id, EndReason::Ended, "Your guest link has expired. Thank you for coming.");
        }
    }
}
