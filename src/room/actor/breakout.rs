//! Breakout rooms: a therapist splits the group into smaller spaces and calls everyone back.
//!
//! A breakout is a space inside the room: members in different spaces neither see nor hear each
//! other (media routing follows `Member::space`), and chat, polls and celebrations scope to the
//! sender's space. Assignments are kept by participant id, so someone who reconnects while
//! breakouts are open lands back in their breakout. The room task is the clock: durations,
//! warnings and the close-all countdown are timers it sets for itself.
//!
//! What is said in a breakout ends with it: when breakouts close (or one is deleted), the
//! breakout's chat transcript, its polls, its active-speaker state and any private room left
//! empty by the moves are dropped, so a breakout reopened with the same id starts empty. A
//! raised hand belongs to the space it was raised in: moving to another space lowers it (the
//! therapist in the main room would otherwise see a hand that was meant for the breakout).

use std::collections::HashMap;
use std::time::Duration;

use rand::seq::SliceRandom;

use super::snapshot::BreakoutsSnap;
use super::{forwards, Cx, Effect, Room, Timer};
use crate::auth::Role;
use crate::room::ParticipantId;
use crate::sfu::PeerCommand;
use crate::signal::protocol::{BreakoutInfo, BreakoutPlan, BreakoutRef, ClientMessage, ErrorCode, ServerMessage, Whereabouts};

/// Most breakout rooms one session may have.
pub(super) const MAX_BREAKOUTS: usize = 50;
/// Longest breakout name, in characters.
pub(super) const MAX_NAME_CHARS: usize = 60;
const DEFAULT_CLOSE_COUNTDOWN_SECS: u32 = 10;
const DEFAULT_WARNING_SECS: u32 = 60;
pub(super) const MAX_DURATION_SECS: u32 = 4 * 3600;

#[derive(Default)]
pub(super) struct Breakouts {
    /// (id, name), in creation order.
    rooms: Vec<(String, String)>,
    /// Where each participant is assigned; survives their reconnecting.
    assignment: HashMap<ParticipantId, String>,
    open: bool,
    allow_return: bool,
    closes_at_ms: Option<u64>,
    /// Bumped on every open and close, so timers from an earlier opening are ignored.
    generation: u64,
    next_id: u32,
}

impl Breakouts {
    pub(super) fn snapshot(&self) -> BreakoutsSnap {
        BreakoutsSnap {
            rooms: self.rooms.clone(),
            assignment: self.assignment.iter().map(|(p, b)| (p.clone(), b.clone())).collect(),
            open: self.open,
            allow_return: self.allow_return,
            closes_at_ms: self.closes_at_ms,
            generation: self.generation,
            next_id: self.next_id,
        }
    }

    /// Takes over the plan from a previous node. Returns the close timer still to run
    /// (generation, milliseconds left); the warning is not repeated.
    pub(super) fn restore(&mut self, snap: BreakoutsSnap, now_ms: u64) -> Option<(u64, u64)> {
        *self = Self {
            rooms: snap.rooms,
            assignment: snap.assignment.into_iter().collect(),
            open: snap.open,
            allow_return: snap.allow_return,
            closes_at_ms: snap.closes_at_ms,
            generation: snap.generation,
            next_id: snap.next_id,
        };
        match (self.open, self.closes_at_ms) {
            (true, Some(at)) => Some((self.generation, at.saturating_sub(now_ms))),
            _ => None,
        }
    }

    #[cfg(test)]
    pub(super) fn set_next_id_for_test(&mut self, next: u32) {
        self.next_id = next;
    }

    #[cfg(test)]
    pub(super) fn first_id(&self) -> Option<String> {
        self.rooms.first().map(|(id, _)| id.clone())
    }

    pub(super) fn name_of(&self, id: &str) -> Option<&str> {
        self.rooms.iter().find(|(b, _)| b == id).map(|(_, n)| n.as_str())
    }

    fn exists(&self, id: &str) -> bool {
        self.name_of(id).is_some()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The space a participant belongs in right now, per the plan.
    pub(super) fn space_for(&self, id: &ParticipantId) -> Option<String> {
        if self.open {
            self.assignment.get(id).cloned()
        } else {
            None
        }
    }
}

impl Room {
    pub(super) fn on_breakout(&mut self, from: &ParticipantId, msg: ClientMessage) {
        match msg {
            ClientMessage::CreateBreakout { name } => {
                let name = name.trim().to_string();
                if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                    return self.error(from, ErrorCode::InvalidField, "a breakout name is 1 to 60 characters");
                }
                if name.chars().any(crate::room::is_forbidden_in_names) {
                    return self.error(
                        from,
                        ErrorCode::InvalidField,
                        "a breakout name must not contain control or text-direction characters",
                    );
                }
                if self.breakouts.rooms.len() >= MAX_BREAKOUTS {
                    return self.error(from, ErrorCode::InvalidField, format!("at most {MAX_BREAKOUTS} breakout rooms"));
                }
                self.breakouts.next_id += 1;
                let id = format!("b{}", self.breakouts.next_id);
                self.breakouts.rooms.push((id, name));
                self.audit(from, "breakout_create", None);
                self.publish_breakout_plan();
            }
            ClientMessage::DeleteBreakout { breakout_id } => {
                if !self.breakouts.exists(&breakout_id) {
                    return self.error(from, ErrorCode::UnknownBreakout, "no breakout with that id");
                }
                self.breakouts.rooms.retain(|(b, _)| b != &breakout_id);
                self.breakouts.assignment.retain(|_, b| b != &breakout_id);
                // Its polls close while its members are still there to hear it.
                self.polls.close_spaces(&mut cx!(self), std::slice::from_ref(&breakout_id));
                let inside: Vec<_> =
                    self.members.values().filter(|m| m.space.as_deref() == Some(&breakout_id)).map(|m| (m.info.id.clone(), None)).collect();
                self.move_many(inside);
                self.forget_spaces(std::slice::from_ref(&breakout_id));
                self.audit(from, "breakout_delete", None);
                self.publish_breakout_plan();
            }
            ClientMessage::AssignBreakout { participant_id, breakout_id } => {
                match self.members.get(&participant_id) {
                    Some(m) if m.admitted && m.info.role == Role::FamilyGuest => {
                        return self.error(from, ErrorCode::Forbidden, "a family guest stays in their family space");
                    }
                    Some(m) if m.admitted => {}
                    _ => return self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room"),
                }
                match &breakout_id {
                    Some(b) if !self.breakouts.exists(b) => {
                        return self.error(from, ErrorCode::UnknownBreakout, "no breakout with that id");
                    }
                    Some(b) => {
                        self.breakouts.assignment.insert(participant_id.clone(), b.clone());
                    }
                    None => {
                        self.breakouts.assignment.remove(&participant_id);
                    }
                }
                if self.breakouts.open {
                    self.move_to_space(&participant_id, breakout_id);
                }
                self.audit(from, "breakout_assign", Some(&participant_id));
                self.publish_breakout_plan();
            }
            ClientMessage::AutoAssignBreakouts => {
                if self.breakouts.rooms.is_empty() {
                    return self.error(from, ErrorCode::UnknownBreakout, "create breakout rooms first");
                }
                let mut people: Vec<_> = self
                    .order
                    .iter()
                    .filter(|id| {
                        self.members.get(*id).is_some_and(|m| m.admitted && !m.info.role.facilitates() && m.info.role != Role::FamilyGuest)
                    })
                    .cloned()
                    .collect();
                people.shuffle(&mut rand::rng());
                let rooms: Vec<String> = self.breakouts.rooms.iter().map(|(b, _)| b.clone()).collect();
                let mut moves = Vec::new();
                for (i, id) in people.into_iter().enumerate() {
                    let b = rooms[i % rooms.len()].clone();
                    self.breakouts.assignment.insert(id.clone(), b.clone());
                    moves.push((id, Some(b)));
                }
                if self.breakouts.open {
                    self.move_many(moves);
                }
                self.audit(from, "breakout_auto_assign", None);
                self.publish_breakout_plan();
            }
            ClientMessage::OpenBreakouts { duration_secs, warning_secs, allow_return } => {
                if self.breakouts.rooms.is_empty() {
                    return self.error(from, ErrorCode::UnknownBreakout, "create breakout rooms first");
                }
                if duration_secs.is_some_and(|d| d == 0 || d > MAX_DURATION_SECS) {
                    return self.error(from, ErrorCode::InvalidField, format!("duration is 1 to {MAX_DURATION_SECS} seconds"));
                }
                self.breakouts.open = true;
                self.breakouts.allow_return = allow_return;
                self.breakouts.generation += 1;
                let generation = self.breakouts.generation;
                self.breakouts.closes_at_ms = duration_secs.map(|d| self.now.unix_ms as u64 + u64::from(d) * 1000);
                if let Some(d) = duration_secs {
                    let warn = warning_secs.unwrap_or(DEFAULT_WARNING_SECS).min(d);
                    if warn > 0 && warn < d {
                        self.schedule(Duration::from_secs(u64::from(d - warn)), Timer::BreakoutWarning(generation));
                    }
                    self.schedule(Duration::from_secs(u64::from(d)), Timer::BreakoutClose(generation));
                }
                let moves: Vec<_> =
                    self.order.iter().filter_map(|id| self.breakouts.assignment.get(id).map(|b| (id.clone(), Some(b.clone())))).collect();
                self.move_many(moves);
                self.audit(from, "breakout_open", None);
                self.publish_breakout_plan();
            }
            ClientMessage::BroadcastToBreakouts { text } => {
                let text = text.trim().to_string();
                if text.is_empty() || text.chars().count() > 500 {
                    return self.error(from, ErrorCode::InvalidField, "a broadcast is 1 to 500 characters");
                }
                let name = self.members.get(from).map(|m| m.info.name.clone()).unwrap_or_default();
                self.send_admitted(ServerMessage::BreakoutBroadcast { from: name, text });
                self.audit(from, "breakout_broadcast", None);
            }
            ClientMessage::CloseBreakouts { countdown_secs } => {
                if !self.breakouts.open {
                    return self.error(from, ErrorCode::UnknownBreakout, "the breakouts are not open");
                }
                let secs = countdown_secs.unwrap_or(DEFAULT_CLOSE_COUNTDOWN_SECS).min(300);
                self.breakouts.generation += 1;
                let generation = self.breakouts.generation;
                self.breakouts.closes_at_ms = Some(self.now.unix_ms as u64 + u64::from(secs) * 1000);
                self.send_admitted(ServerMessage::BreakoutsClosing { seconds_left: secs });
                self.schedule(Duration::from_secs(u64::from(secs)), Timer::BreakoutClose(generation));
                self.audit(from, "breakout_close", None);
                self.publish_breakout_plan();
            }
            ClientMessage::GoToBreakout { breakout_id } => self.go_to_breakout(from, breakout_id),
            ClientMessage::AskForHelp => {
                if !self.alerts.allow(from, super::alerts::Alert::AskForHelp, self.now.at) {
                    return self.error(from, ErrorCode::RateLimited, super::alerts::refusal(super::alerts::Alert::AskForHelp));
                }
                let Some(m) = self.members.get(from) else { return };
                let msg =
                    ServerMessage::HelpRequested { participant_id: from.clone(), name: m.info.name.clone(), breakout_id: m.space.clone() };
                for t in self.facilitators() {
                    self.send_to(&t, msg.clone());
                }
                self.audit(from, "ask_for_help", None);
            }
            _ => {}
        }
    }

    fn go_to_breakout(&mut self, from: &ParticipantId, target: Option<String>) {
        let Some(m) = self.members.get(from) else { return };
        // Staff visit any breakout.
        let is_therapist = m.info.role.facilitates();
        if let Some(b) = &target {
            if !self.breakouts.exists(b) {
                return self.error(from, ErrorCode::UnknownBreakout, "no breakout with that id");
            }
        }
        if !self.breakouts.open && target.is_some() {
            return self.error(from, ErrorCode::UnknownBreakout, "the breakouts are not open");
        }
        if !is_therapist {
            let assigned = self.breakouts.assignment.get(from).cloned();
            let allowed = match &target {
                // Back to the main room only when the therapist allowed it.
                None => self.breakouts.allow_return,
                // Only to one's own breakout (after stepping out of it).
                Some(b) => assigned.as_ref() == Some(b),
            };
            if !allowed {
                let why = if target.is_none() {
                    "the therapist asked everyone to stay in their breakout"
                } else {
                    "you can only go to the breakout you were assigned to"
                };
                return self.error(from, ErrorCode::ReturnNotAllowed, why);
            }
        }
        self.move_to_space(from, target);
        self.publish_breakout_plan();
    }

    pub(super) fn breakout_warning(&mut self, generation: u64) {
        if generation != self.breakouts.generation || !self.breakouts.open {
            return;
        }
        let left = self.breakouts.closes_at_ms.map(|t| t.saturating_sub(self.now.unix_ms as u64).div_ceil(1000) as u32).unwrap_or(0);
        self.send_admitted(ServerMessage::BreakoutWarning { seconds_left: left });
    }

    /// The duration ran out or the close-all countdown ended: everyone returns.
    pub(super) fn breakout_timer_close(&mut self, generation: u64) {
        if generation != self.breakouts.generation || !self.breakouts.open {
            return;
        }
        self.breakouts.open = false;
        self.breakouts.closes_at_ms = None;
        self.breakouts.generation += 1;
        let spaces: Vec<String> = self.breakouts.rooms.iter().map(|(b, _)| b.clone()).collect();
        self.polls.close_spaces(&mut cx!(self), &spaces);
        let away: Vec<_> =
            self.order.iter().filter(|id| self.members.get(*id).is_some_and(|m| m.space.is_some())).map(|id| (id.clone(), None)).collect();
        self.move_many(away);
        self.forget_spaces(&spaces);
        self.publish_breakout_plan();
    }

    /// The breakouts `spaces` ended and everyone has left them: nothing said or shown there
    /// outlives them (see the module comment). Private rooms emptied by the moves go too.
    fn forget_spaces(&mut self, spaces: &[String]) {
        for b in spaces {
            self.chat.forget_space(b);
            self.speakers.forget_space(b);
        }
        self.chat.forget_empty_private_rooms(&self.members);
    }

    /// Where a newly admitted (or reconnected) member belongs.
    pub(super) fn place_admitted(&mut self, id: &ParticipantId) {
        if let Some(b) = self.breakouts.space_for(id) {
            self.move_to_space(id, Some(b));
        }
        if !self.breakouts.rooms.is_empty() {
            self.publish_breakout_plan();
        }
    }

    /// Moves one member to another space and tells everyone concerned.
    pub(super) fn move_to_space(&mut self, id: &ParticipantId, space: Option<String>) {
        self.move_many(vec![(id.clone(), space)]);
    }

    /// Moves members between spaces: media is re-routed (each peer renegotiates), then each
    /// moved member gets its new space's roster and everyone left behind or joined gets theirs,
    /// once, after all the moves (so nobody sees a half-filled breakout).
    pub(super) fn move_many(&mut self, moves: Vec<(ParticipantId, Option<String>)>) {
        let mut moved = Vec::new();
        let mut touched: Vec<Option<String>> = Vec::new();
        for (id, space) in moves {
            let Some(member) = self.members.get(&id) else { continue };
            if member.space == space || !member.admitted {
                continue;
            }
            let old = member.space.clone();
            for other in self.members.values() {
                if forwards(other, member) {
                    for t in &other.tracks {
                        self.out.push(Effect::Peer { to: id.clone(), cmd: PeerCommand::Unsubscribe(t.id.clone()) });
                    }
                }
                if forwards(member, other) {
                    for t in &member.tracks {
                        self.out.push(Effect::Peer { to: other.info.id.clone(), cmd: PeerCommand::Unsubscribe(t.id.clone()) });
                    }
                }
            }
            if let Some(m) = self.members.get_mut(&id) {
                m.space = space.clone();
                // The hand was raised for the space they left; the rosters below carry this.
                m.info.hand_raised = false;
            }
            self.connect_media(&id);
            for s in [old, space] {
                if !touched.contains(&s) {
                    touched.push(s);
                }
            }
            moved.push(id);
        }
        for id in &moved {
            self.announce_space(id);
        }
        for s in touched {
            let roster = self.roster_of_space(&s);
            let msg = ServerMessage::SpaceRoster { participants: roster.clone() };
            for p in roster.into_iter().map(|p| p.id).filter(|p| !moved.contains(p)) {
                self.send_to(&p, msg.clone());
            }
        }
    }

    /// Tells a member which space they are in, who is there, and (when the room keeps a
    /// transcript) what was said there.
    pub(super) fn announce_space(&mut self, id: &ParticipantId) {
        let Some(space) = self.members.get(id).map(|m| m.space.clone()) else { return };
        let breakout = space.as_ref().and_then(|b| self.space_name(b).map(|name| BreakoutRef { id: b.clone(), name }));
        let closes_at_ms = if space.as_deref().is_some_and(|b| self.breakouts.exists(b)) { self.breakouts.closes_at_ms } else { None };
        let msg = ServerMessage::SpaceChanged {
            breakout,
            participants: self.roster_of_space(&space),
            closes_at_ms,
            allow_return: self.breakouts.allow_return,
        };
        self.send_to(id, msg);
        self.chat.send_history(&mut cx!(self), id);
        self.polls.catch_up(&mut cx!(self), id);
    }

    pub(super) fn roster_of_space(&self, space: &Option<String>) -> Vec<crate::signal::protocol::ParticipantInfo> {
        self.order
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| m.admitted && &m.space == space)
            .map(|m| m.info.clone())
            .collect()
    }

    pub(super) fn publish_breakout_plan(&mut self) {
        let b = &self.breakouts;
        let rooms = b
            .rooms
            .iter()
            .map(|(id, name)| {
                let members = self
                    .order
                    .iter()
                    .filter(|p| {
                        let here = self.members.get(*p).and_then(|m| m.space.as_ref()) == Some(id);
                        here || (!b.open && b.assignment.get(*p) == Some(id))
                    })
                    .cloned()
                    .collect();
                BreakoutInfo { id: id.clone(), name: name.clone(), members }
            })
            .collect();
        let whereabouts = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| m.admitted)
            .map(|m| Whereabouts {
                participant_id: m.info.id.clone(),
                name: m.info.name.clone(),
                role: m.info.role,
                breakout_id: m.space.clone(),
            })
            .collect();
        let plan = BreakoutPlan { open: b.open, rooms, closes_at_ms: b.closes_at_ms, allow_return: b.allow_return, whereabouts };
        for t in self.facilitators() {
            self.send_to(&t, ServerMessage::BreakoutsUpdated { breakouts: plan.clone() });
        }
    }
}
