//! Family spaces: part of a session with a member's relatives. A therapist opens one for a
//! participant (the sponsor): a space (`family-N`, like a breakout for media and chat) that the
//! sponsor and the therapist move into. The sponsor's family guests (tokens with role
//! `familyGuest` and claim `sponsor`) wait, listed as guests of their sponsor, until a therapist
//! admits them, and admission puts them there and nowhere else. Closing the space (or a guest's
//! token running out) ends the guests' sessions; the others return where they belong.
//!
//! Owns which family spaces are open. Keeping guests away from the group is the room's rule
//! everywhere a message or media goes (`Room::admit` places them, the roster, room state,
//! polls and celebrations leave them out); this file must not move anyone but the people of
//! the space it opens or closes.

use super::Room;
use crate::auth::Role;
use crate::room::ParticipantId;
use crate::signal::protocol::{ClientMessage, EndReason, ErrorCode};

/// Prefix of family space ids; breakouts are `b1`, private rooms `private-1`.
const FAMILY_PREFIX: &str = "family-";
const FAMILY_SPACE_NAME: &str = "Family space";

#[derive(Default)]
pub(super) struct Families {
    /// Open family spaces: (sponsor, space id).
    open: Vec<(ParticipantId, String)>,
    next: u32,
}

impl Families {
    /// The open family space of `sponsor`.
    pub(super) fn space_of_sponsor(&self, sponsor: &ParticipantId) -> Option<String> {
        self.open.iter().find(|(s, _)| s == sponsor).map(|(_, space)| space.clone())
    }

    pub(super) fn name_of(&self, space: &str) -> Option<&'static str> {
        self.open.iter().any(|(_, s)| s == space).then_some(FAMILY_SPACE_NAME)
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

    /// Guests in the space leave (admitted or still waiting for it); everyone else there returns
    /// where the breakout plan puts them.
    fn close_family_space(&mut self, sponsor: &ParticipantId, space: &str) {
        self.families.open.retain(|(s, _)| s != sponsor);
        let guests: Vec<_> = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| m.info.role == Role::FamilyGuest && m.info.sponsor.as_ref() == Some(sponsor))
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
        if !self.breakouts.is_empty() {
            self.publish_breakout_plan();
        }
    }

    /// A family guest's token ran out: their session ends, wherever they are.
    pub(super) fn guest_expired(&mut self, id: &ParticipantId) {
        if self.members.get(id).is_some_and(|m| m.info.role == Role::FamilyGuest) {
            self.remove_member_saying(id, EndReason::Ended, "Your guest link has expired. Thank you for coming.");
        }
    }
}
