//! Running a group, the room's side: the speaking queue, go-around rounds, the agenda, talk time,
//! the agreement at the door and accountability partners, wired to membership (admission, spaces,
//! leaving) and to the wire. The rules of each live in their own type (`queue.rs`, `round.rs`,
//! `agenda.rs`, `talktime.rs`, `agreement.rs`, `partners.rs`), which take the time as an
//! argument; this file decides who is told and turns store work into effects. Who may moderate
//! is checked in `Room::client` before any of this runs (participants get `forbidden`, nothing changes). Talk time, locations and
//! partner groups go to therapists only; a participant learns their own partners, nobody else's.

use rand::seq::SliceRandom;

use super::agenda;
use super::partners;
use super::round::{self, RoundRefusal, TurnDeadline};
use super::{Cx, Effect, Loaded, Room, Timer};
use crate::auth::Role;
use crate::room::ParticipantId;
use crate::signal::protocol::{ClientMessage, ErrorCode, RoundOrder, ServerMessage};

type Space = Option<String>;

impl Room {
    pub(super) fn on_group(&mut self, from: &ParticipantId, msg: ClientMessage) {
        let Some(space) = self.members.get(from).map(|m| m.space.clone()) else { return };
        match msg {
            ClientMessage::GiveFloor { participant_id, spotlight } => {
                let target = match participant_id {
                    Some(p) => p,
                    None => match self.queues.next(&space) {
                        Some(p) => p,
                        None => return self.error(from, ErrorCode::QueueEmpty, "nobody's hand is raised"),
                    },
                };
                if !self.members.get(&target).is_some_and(|m| m.admitted && m.space == space) {
                    return self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in your space");
                }
                let before = self.queues.floor(&space).cloned();
                self.queues.give_floor(&space, &target);
                self.publish_queue(&space);
                self.sync_hand(&target);
                // The spotlight lasts for the turn: it moves with the floor, or ends with it.
                let was_floor_spot = before.is_some() && self.state.spotlight == before;
                let publishes = self.members.get(&target).is_some_and(|m| m.info.role.publishes());
                if spotlight && publishes {
                    self.state.spotlight = Some(target.clone());
                    self.send_admitted(ServerMessage::RoomStateChanged { room: self.state.clone() });
                } else if was_floor_spot {
                    self.state.spotlight = None;
                    self.send_admitted(ServerMessage::RoomStateChanged { room: self.state.clone() });
                }
                self.audit(from, "give_floor", Some(&target));
            }
            ClientMessage::StartRound { order, seconds_per_turn, allow_pass } => {
                if seconds_per_turn.is_some_and(|s| !(round::MIN_TURN_SECS..=round::MAX_TURN_SECS).contains(&s)) {
                    return self.error(
                        from,
                        ErrorCode::InvalidRound,
                        format!("a turn is {} to {} seconds, or has no limit", round::MIN_TURN_SECS, round::MAX_TURN_SECS),
                    );
                }
                let roster: Vec<ParticipantId> = self
                    .space_of(from)
                    .into_iter()
                    .filter(|p| self.members.get(p).is_some_and(|m| m.info.role == Role::Participant))
                    .collect();
                let queue = self.queues.ids(&space);
                let mut order_ids = round::order_for(order, &roster, &queue);
                if order == RoundOrder::Random {
                    order_ids.shuffle(&mut rand::rng());
                }
                if order_ids.is_empty() {
                    return self.error(from, ErrorCode::InvalidRound, "there is nobody to go around yet");
                }
                let deadline = self.rounds.start(&space, order_ids, allow_pass, seconds_per_turn, self.now);
                self.round_changed(&space, deadline);
                self.audit(from, "start_round", None);
            }
            ClientMessage::PassTurn => match self.rounds.pass(&space, from, self.now) {
                Ok(deadline) => self.round_changed(&space, deadline),
                Err(refusal) => self.round_refused(from, refusal),
            },
            ClientMessage::NextTurn => match self.rounds.next(&space, self.now) {
                Ok(deadline) => self.round_changed(&space, deadline),
                Err(refusal) => self.round_refused(from, refusal),
            },
            ClientMessage::EndRound => {
                if !self.rounds.end(&space) {
                    return self.round_refused(from, RoundRefusal::NoRound);
                }
                self.round_changed(&space, None);
            }
            ClientMessage::SetAgreement { text, ask_location } => {
                if let Err(message) = self.agreement.set(text, ask_location) {
                    return self.error(from, ErrorCode::InvalidAgreement, message);
                }
                self.audit(from, "set_agreement", None);
                let ids: Vec<_> = self.order.clone();
                for id in ids {
                    let msg = self.agreement.message_for(&id);
                    self.send_to(&id, msg);
                }
                self.publish_agreement_statuses();
                // With the waiting room off, only the agreement holds people at the door.
                if !self.state.waiting_room {
                    for id in self.waiting_ids() {
                        if !self.agreement_pending(&id) {
                            self.admit(&id);
                        }
                    }
                }
            }
            ClientMessage::AcceptAgreement { version, location } => {
                if !self.agreement.is_set() {
                    return self.error(from, ErrorCode::AgreementChanged, "this room has no agreement to accept");
                }
                match self.agreement.accept(from, &version, location) {
                    Ok(()) => {
                        self.out.push(Effect::AuditNote { actor: from.clone(), action: "accept_agreement", note: version.clone() });
                        let msg = self.agreement.message_for(from);
                        self.send_to(from, msg);
                        self.publish_agreement_statuses();
                        let waiting = self.members.get(from).is_some_and(|m| !m.admitted);
                        if waiting && !self.state.waiting_room {
                            self.admit(from);
                        }
                    }
                    Err((true, message)) => self.error(from, ErrorCode::AgreementChanged, message),
                    Err((false, message)) => self.error(from, ErrorCode::InvalidAgreement, message),
                }
            }
            _ => {}
        }
    }

    /// Whether `id` must still accept the agreement before being admitted (therapists never).
    pub(super) fn agreement_pending(&self, id: &ParticipantId) -> bool {
        self.members.get(id).is_some_and(|m| !m.is_therapist()) && self.agreement.pending(id)
    }

    fn round_refused(&mut self, to: &ParticipantId, refusal: RoundRefusal) {
        match refusal {
            RoundRefusal::NoRound => self.error(to, ErrorCode::NoRound, "no round is running in your space"),
            RoundRefusal::NotYourTurn => self.error(to, ErrorCode::NotYourTurn, "it is not your turn"),
            RoundRefusal::PassNotAllowed => self.error(to, ErrorCode::NotYourTurn, "this round does not allow passing"),
        }
    }

    /// Sets the next turn's timer (if any) and tells the space.
    fn round_changed(&mut self, space: &Space, deadline: Option<TurnDeadline>) {
        if let Some(d) = deadline {
            let after = d.at.saturating_duration_since(self.now.at);
            self.schedule(after, Timer::RoundTurn(space.clone(), d.generation));
        }
        self.publish_round(space);
    }

    pub(super) fn round_timer(&mut self, space: &Space, generation: u64) {
        if let Some(deadline) = self.rounds.time_up(space, generation, self.now) {
            self.round_changed(space, deadline);
        }
    }

    fn round_message(&self, space: &Space) -> ServerMessage {
        ServerMessage::RoundUpdated { round: self.rounds.info(space, self.now.at) }
    }

    fn publish_round(&mut self, space: &Space) {
        let msg = self.round_message(space);
        for p in self.members_of_space(space) {
            self.send_to(&p, msg.clone());
        }
    }

    fn publish_queue(&mut self, space: &Space) {
        let msg = self.queues.view(space);
        for p in self.members_of_space(space) {
            self.send_to(&p, msg.clone());
        }
    }

    /// Admitted members of `space`, in join order.
    fn members_of_space(&self, space: &Space) -> Vec<ParticipantId> {
        self.order.iter().filter(|p| self.members.get(*p).is_some_and(|m| m.admitted && &m.space == space)).cloned().collect()
    }

    /// The hand members see follows the queue.
    fn sync_hand(&mut self, id: &ParticipantId) {
        let queued = self.queues.is_queued(id);
        let Some(m) = self.members.get_mut(id) else { return };
        if m.info.hand_raised != queued {
            m.info.hand_raised = queued;
            self.publish_update(id);
        }
    }

    /// A hand went up or down (`raiseHand`, `lowerHand`).
    pub(super) fn hand_changed(&mut self, id: &ParticipantId, raised: bool) {
        let Some(space) = self.members.get(id).map(|m| m.space.clone()) else { return };
        let changed = if raised { self.queues.raise(&space, id) } else { self.queues.lower(id).is_some() };
        if changed {
            self.publish_queue(&space);
        }
    }

    /// `id` arrived in their current space (admitted, moved, resumed): they get its queue and
    /// round, and a running round takes them in at the end.
    pub(super) fn group_arrived(&mut self, id: &ParticipantId) {
        let Some(m) = self.members.get(id).filter(|m| m.admitted) else { return };
        let (space, takes_turns) = (m.space.clone(), m.info.role == Role::Participant);
        if takes_turns && self.rounds.arrived(&space, id) {
            self.publish_round(&space);
        } else {
            let msg = self.round_message(&space);
            self.send_to(id, msg);
        }
        let msg = self.queues.view(&space);
        self.send_to(id, msg);
    }

    /// `id` left `space` (moved elsewhere, or left the session): no hand, no floor there, and
    /// their turn is skipped.
    pub(super) fn group_departed(&mut self, id: &ParticipantId, space: &Space) {
        for s in self.queues.left(id) {
            self.publish_queue(&s);
        }
        if let Some(deadline) = self.rounds.departed(space, id, self.now) {
            self.round_changed(space, deadline);
        }
    }

    /// What someone who just joined is told about the agreement: everyone but therapists get
    /// the text when there is one; therapists get it and where everyone stands.
    pub(super) fn agreement_on_join(&mut self, id: &ParticipantId) {
        let therapist = self.members.get(id).is_some_and(|m| m.is_therapist());
        if self.agreement.is_set() || therapist {
            let msg = self.agreement.message_for(id);
            self.send_to(id, msg);
        }
        if therapist {
            let msg = self.agreement_statuses();
            self.send_to(id, msg);
        } else if self.agreement.is_set() {
            self.publish_agreement_statuses();
        }
    }

    fn agreement_statuses(&self) -> ServerMessage {
        let people: Vec<_> = self.order.iter().filter(|p| self.members.get(*p).is_some_and(|m| !m.is_therapist())).cloned().collect();
        ServerMessage::AgreementStatuses { people: self.agreement.statuses(&people) }
    }

    pub(super) fn publish_agreement_statuses(&mut self) {
        let msg = self.agreement_statuses();
        let therapists: Vec<_> = self.members.values().filter(|m| m.is_therapist()).map(|m| m.info.id.clone()).collect();
        for t in therapists {
            self.send_to(&t, msg.clone());
        }
    }
}

impl Room {
    /// One speaker tick's speech (`speaker.rs` leaves out anyone muted): counted, and sent to
    /// therapists when due.
    pub(super) fn talk_tick(&mut self, speaking: &[ParticipantId]) {
        if self.talk.tick(speaking, super::speaker::TICK) {
            let people: Vec<_> = self
                .order
                .iter()
                .filter(|p| self.members.get(*p).is_some_and(|m| m.admitted && m.info.role == Role::Participant))
                .cloned()
                .collect();
            let msg = ServerMessage::TalkTime { people: self.talk.entries(&people) };
            for t in self.therapists() {
                self.send_to(&t, msg.clone());
            }
        }
    }
}

impl Room {
    /// The agenda messages (therapist only; checked in `Room::client`).
    pub(super) fn on_agenda(&mut self, from: &ParticipantId, msg: ClientMessage) {
        let now = self.now.at;
        match msg {
            ClientMessage::SetAgenda { items } => {
                let items: Vec<_> = items
                    .into_iter()
                    .map(|mut i| {
                        i.title = i.title.trim().to_string();
                        i
                    })
                    .collect();
                if let Err(message) = agenda::check_items(&items) {
                    return self.error(from, ErrorCode::InvalidAgenda, message);
                }
                self.agenda.set(items);
                self.publish_agenda();
            }
            ClientMessage::StartSegment { index } => match self.agenda.start(index, now, self.now.unix_ms as u64) {
                Some(warning) => self.agenda_changed(warning),
                None => self.error(from, ErrorCode::InvalidAgenda, "the agenda has no item with that number"),
            },
            ClientMessage::ExtendSegment { minutes } => {
                if minutes == 0 || minutes > agenda::MAX_EXTEND_MINUTES {
                    return self.error(from, ErrorCode::InvalidAgenda, format!("extend by 1 to {} minutes", agenda::MAX_EXTEND_MINUTES));
                }
                match self.agenda.extend(minutes, now, self.now.unix_ms as u64) {
                    Some(warning) => self.agenda_changed(warning),
                    None => self.error(from, ErrorCode::InvalidAgenda, "no agenda item is running"),
                }
            }
            ClientMessage::EndSegment => {
                if !self.agenda.end() {
                    return self.error(from, ErrorCode::InvalidAgenda, "no agenda item is running");
                }
                self.publish_agenda();
            }
            ClientMessage::SaveAgendaTemplate { name } => {
                let name = name.trim().to_string();
                let n = name.chars().count();
                if n == 0 || n > agenda::MAX_TEMPLATE_NAME_CHARS || name.chars().any(crate::room::is_forbidden_in_names) {
                    return self.error(
                        from,
                        ErrorCode::InvalidAgenda,
                        format!("a template's name is 1 to {} characters", agenda::MAX_TEMPLATE_NAME_CHARS),
                    );
                }
                if self.agenda.items().is_empty() {
                    return self.error(from, ErrorCode::InvalidAgenda, "set an agenda before saving it as a template");
                }
                let items = self.agenda.items().to_vec();
                self.templates_reply(from, Some((name, items)));
            }
            ClientMessage::GetAgendaTemplates => self.templates_reply(from, None),
            _ => {}
        }
    }

    /// Saves (when asked) and then sends `to` their templates: store work, for the task.
    fn templates_reply(&mut self, to: &ParticipantId, save: Option<(String, Vec<crate::signal::protocol::AgendaItem>)>) {
        self.out.push(Effect::AgendaTemplates { therapist: to.clone(), save });
    }

    fn agenda_changed(&mut self, warning: Option<agenda::Warning>) {
        if let Some(w) = warning {
            let after = w.at.saturating_duration_since(self.now.at);
            self.schedule(after, Timer::AgendaWarning(w.generation));
        }
        self.publish_agenda();
    }

    pub(super) fn agenda_timer(&mut self, generation: u64) {
        if let Some(seconds_left) = self.agenda.warning_due(generation, self.now.at) {
            self.send_admitted(ServerMessage::AgendaWarning { seconds_left });
        }
    }

    pub(super) fn agenda_message(&self) -> ServerMessage {
        ServerMessage::AgendaUpdated { agenda: self.agenda.info(self.now.at) }
    }

    fn publish_agenda(&mut self) {
        let msg = self.agenda_message();
        self.send_admitted(msg);
    }
}

impl Room {
    /// Accountability partners (therapist only; checked in `Room::client`).
    pub(super) fn on_partners(&mut self, from: &ParticipantId, msg: ClientMessage) {
        match msg {
            ClientMessage::SavePartners { groups } => {
                if let Err(message) = partners::check(&groups) {
                    return self.error(from, ErrorCode::InvalidPartners, message);
                }
                if groups.iter().flatten().any(|p| self.members.get(p).is_some_and(|m| m.info.role != Role::Participant)) {
                    return self.error(
                        from,
                        ErrorCode::InvalidPartners,
                        "partner groups are for participants, not therapists or observers",
                    );
                }
                let before = self.partner_lists();
                self.partners.set(groups.clone());
                self.out.push(Effect::SavePartners(groups));
                self.audit(from, "save_partners", None);
                self.publish_partners(before);
            }
            ClientMessage::OpenPartnerBreakouts { absent, duration_secs, allow_return } => {
                if self.partners.groups().is_empty() {
                    return self.error(from, ErrorCode::InvalidPartners, "save partner groups first");
                }
                let present: Vec<_> = self
                    .order
                    .iter()
                    .filter(|p| self.members.get(*p).is_some_and(|m| m.admitted && m.info.role == Role::Participant))
                    .cloned()
                    .collect();
                let groups = self.partners.plan(&present, absent);
                if let Some(change) = self.breakouts.open_groups(&mut cx!(self), from, groups, duration_secs, allow_return) {
                    self.breakout_change(change);
                }
            }
            _ => {}
        }
    }

    /// Each admitted participant's partners, to tell only those whose list changes.
    fn partner_lists(&self) -> Vec<(ParticipantId, Vec<ParticipantId>)> {
        self.order
            .iter()
            .filter(|p| self.members.get(*p).is_some_and(|m| m.admitted && m.info.role == Role::Participant))
            .map(|p| (p.clone(), self.partners.of(p)))
            .collect()
    }

    /// Therapists get the groups; each participant whose partners changed gets theirs alone.
    fn publish_partners(&mut self, before: Vec<(ParticipantId, Vec<ParticipantId>)>) {
        let msg = ServerMessage::Partners { groups: self.partners.groups().to_vec() };
        for t in self.therapists() {
            self.send_to(&t, msg.clone());
        }
        for (p, old) in before {
            let now = self.partners.of(&p);
            if now != old {
                self.send_to(&p, ServerMessage::YourPartners { partner_ids: now });
            }
        }
    }

    /// `id` was admitted or came back: a therapist gets the groups, a participant with partners
    /// learns who they are.
    pub(super) fn partners_on_admission(&mut self, id: &ParticipantId) {
        let Some(m) = self.members.get(id) else { return };
        if m.is_therapist() {
            let msg = ServerMessage::Partners { groups: self.partners.groups().to_vec() };
            self.send_to(id, msg);
        } else if m.info.role == Role::Participant {
            let partner_ids = self.partners.of(id);
            if !partner_ids.is_empty() {
                self.send_to(id, ServerMessage::YourPartners { partner_ids });
            }
        }
    }

    /// A store read the room asked for came back.
    pub(super) fn loaded(&mut self, loaded: Loaded) {
        match loaded {
            Loaded::Partners(groups) => {
                let before = self.partner_lists();
                if self.partners.loaded(groups) {
                    self.publish_partners(before);
                }
            }
            Loaded::PreviousCheckIns(check_in, values) => self.records.previous_check_ins(&mut cx!(self), &check_in, values),
        }
    }
}
