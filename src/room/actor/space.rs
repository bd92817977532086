//! Spaces: the main room, each breakout and each private room. Who is in which space decides
//! who sees and hears whom (`forwards`), so moving members between spaces is the room's own
//! work, not a feature's: the features that ask for moves (breakouts, chat's private rooms)
//! answer with the moves and the room makes them here, re-routing media and telling each
//! feature about the arrival.

use super::{breakout, forwards, Cx, Effect, Room};
use crate::room::ParticipantId;
use crate::sfu::PeerCommand;
use crate::signal::protocol::{BreakoutRef, ServerMessage};

impl Room {
    /// Makes what a breakout rule asked for (see [`breakout::Change`]), then tells the
    /// therapists the new plan.
    pub(super) fn breakout_change(&mut self, change: breakout::Change) {
        let breakout::Change { ended, moves, audit } = change;
        if !ended.is_empty() {
            // Their polls close while their members are still there to hear it.
            self.polls.close_spaces(&mut cx!(self), &ended);
        }
        self.move_many(moves);
        if !ended.is_empty() {
            self.forget_spaces(&ended);
        }
        self.out.extend(audit.map(|a| match a {
            Effect::Audit { actor, role: None, action, target } => Effect::Audit { role: self.role_of(&actor), actor, action, target },
            other => other,
        }));
        self.publish_breakout_plan();
    }

    pub(super) fn publish_breakout_plan(&mut self) {
        self.breakouts.publish_plan(&mut cx!(self));
    }

    /// The breakouts `spaces` ended and everyone has left them: nothing said or shown there
    /// outlives them (see `breakout.rs`). Private rooms emptied by the moves go too.
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
        if !self.breakouts.is_empty() {
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
            self.records.moved(&mut cx!(self), &id, &space);
            self.group_departed(&id, &old);
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
        let closes_at_ms = self.breakouts.closes_at_ms(&space);
        let msg = ServerMessage::SpaceChanged {
            breakout,
            participants: self.roster_of_space(&space),
            closes_at_ms,
            allow_return: self.breakouts.allow_return(),
        };
        self.send_to(id, msg);
        self.chat.send_history(&mut cx!(self), id);
        self.polls.catch_up(&mut cx!(self), id);
        self.group_arrived(id);
    }

    pub(super) fn roster_of_space(&self, space: &Option<String>) -> Vec<crate::signal::protocol::ParticipantInfo> {
        self.order
            .iter()
            .filter_map(|id| self.members.get(id))
            .filter(|m| m.admitted && &m.space == space)
            .map(|m| m.info.clone())
            .collect()
    }
}
