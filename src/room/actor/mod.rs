//! One room's rules: it alone owns the room's membership, admission and moderation state, and
//! decides who receives whom. Every rule about roles is checked here, whatever the client says.
//!
//! The room is a state machine. [`Room`] (this file and one file per feature) is the core: it
//! is given each input with the time it happens at ([`Now`]) and answers with [`Effect`]s (send
//! this message, subscribe that peer, set a timer, write an audit record); it never sends,
//! spawns or reads a clock. The room task (`task.rs`) reads commands from the room's channel,
//! performs the effects in order, and owns every channel, the store writers and the timers; a
//! send that finds an outbox full comes back as `Room::stalled` (see `task.rs`). Tests drive
//! the core directly in simulated time (`model_tests.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::{debug, error, info, warn};

/// The context a feature handles something in (see [`Cx`]). A macro rather than a method, so
/// the room's other fields (the feature's own state among them) stay free to borrow.
macro_rules! cx {
    ($room:expr) => {
        Cx { room: &$room.id, members: &$room.members, order: &$room.order, settings: &$room.settings, now: $room.now, out: &mut $room.out }
    };
}

mod agenda;
mod agreement;
mod alerts;
mod breakout;
mod chat;
mod door;
mod e2ee;
mod effect;
mod family;
mod group;
mod milestone;
#[cfg(test)]
mod model_tests;
mod partners;
pub mod permissions;
mod poll;
mod queue;
mod records;
mod round;
mod screen;
mod sealed;
mod snapshot;
mod space;
mod speaker;
mod talktime;
mod task;

pub use super::handle::{JoinRequest, Loaded, Outbox, RoomCommand, RoomError, RoomHandle, RoomInput, SessionEnd, Timer, OUTBOX_CAPACITY};
use super::shared::RoomSettings;
use super::{ParticipantId, RoomId};
use crate::auth::{Grant, Role};
use crate::sfu::{PeerCommand, PublishedTrack, TrackId};
use crate::signal::protocol::{
    ClientMessage, E2eeMode, EndReason, ErrorCode, MediaKind, ParticipantInfo, RoomState, ServerMessage, WaitingInfo, PROTOCOL_VERSION,
};
use effect::{Effect, Now};
pub(super) use task::spawn;

struct Member {
    info: ParticipantInfo,
    admitted: bool,
    tracks: Vec<Arc<PublishedTrack>>,
    /// Which space the member is in: `None` is the main room, otherwise a breakout.
    space: Option<String>,
    /// False while the socket is gone and the place is held for the reconnect grace period.
    connected: bool,
    /// Counts connections taking over this place, so a stale grace timer is ignored.
    epoch: u64,
    /// Family guests: the participant whose guest they are (from their token).
    sponsor: Option<ParticipantId>,
}

impl Member {
    fn is_therapist(&self) -> bool {
        self.info.role == Role::Therapist
    }

    fn hard_muted(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Audio => self.info.audio_hard_muted,
            MediaKind::Video => self.info.video_hard_muted,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Remembered {
    admitted: bool,
    audio_hard_muted: bool,
    video_hard_muted: bool,
    /// Absent in room state saved before screen sharing was remembered.
    #[serde(default)]
    can_share_screen: bool,
}

/// Whether `from`'s media goes to `to`: both admitted, `from` may publish, not oneself.
fn forwards(from: &Member, to: &Member) -> bool {
    from.admitted && to.admitted && from.info.role.publishes() && from.info.id != to.info.id && from.space == to.space
}

/// What a feature (polls, chat, ...) sees of the room while it handles something: who is in
/// (read only; membership is the room's), the settings, the time, and where its effects go.
pub(super) struct Cx<'a> {
    room: &'a RoomId,
    members: &'a HashMap<ParticipantId, Member>,
    /// Join order, so what features list is stable.
    order: &'a [ParticipantId],
    settings: &'a RoomSettings,
    now: Now,
    out: &'a mut Vec<Effect>,
}

impl Cx<'_> {
    /// Queues `msg` for a member (nobody else has an outbox).
    fn send(&mut self, to: &ParticipantId, msg: ServerMessage) {
        if self.members.contains_key(to) {
            self.out.push(Effect::Send { to: to.clone(), msg });
        }
    }

    fn error(&mut self, to: &ParticipantId, code: ErrorCode, message: impl Into<String>) {
        self.send(to, ServerMessage::Error { code, message: message.into() });
    }

    /// Hands `timer` back to the room `after` from now.
    fn schedule(&mut self, after: std::time::Duration, timer: Timer) {
        self.out.push(Effect::Timer { at: self.now.at + after, timer });
    }

    fn audit(&mut self, actor: &ParticipantId, action: &'static str, target: Option<&ParticipantId>) {
        let role = self.members.get(actor).map(|m| m.info.role);
        self.out.push(Effect::Audit { actor: actor.clone(), role, action, target: target.cloned() });
    }

    /// Admitted therapists (all spaces): they moderate the whole session.
    fn therapists(&self) -> Vec<ParticipantId> {
        self.members.values().filter(|m| m.admitted && m.is_therapist()).map(|m| m.info.id.clone()).collect()
    }

    /// Admitted staff (therapists and co-facilitators): help requests and the breakout plan
    /// reach them.
    fn facilitators(&self) -> Vec<ParticipantId> {
        facilitators(self.members)
    }

    /// Admitted members who share `id`'s space, `id` included.
    fn space_of(&self, id: &ParticipantId) -> Vec<ParticipantId> {
        space_of(self.members, self.order, id)
    }

    /// Queues `msg` for every admitted member of the group (all spaces); family guests hear
    /// nothing room-wide.
    fn send_admitted(&mut self, msg: ServerMessage) {
        let ids: Vec<_> =
            self.members.values().filter(|m| m.admitted && m.info.role != Role::FamilyGuest).map(|m| m.info.id.clone()).collect();
        for id in ids {
            self.send(&id, msg.clone());
        }
    }
}

fn facilitators(members: &HashMap<ParticipantId, Member>) -> Vec<ParticipantId> {
    members.values().filter(|m| m.admitted && m.info.role.facilitates()).map(|m| m.info.id.clone()).collect()
}

/// Admitted members who share `id`'s space (the main room or the same breakout), `id`
/// included, in join order. Chat, polls and celebrations scope to this.
fn space_of(members: &HashMap<ParticipantId, Member>, order: &[ParticipantId], id: &ParticipantId) -> Vec<ParticipantId> {
    let Some(me) = members.get(id) else { return Vec::new() };
    order.iter().filter_map(|p| members.get(p)).filter(|m| m.admitted && m.space == me.space).map(|m| m.info.id.clone()).collect()
}

pub(super) struct Room {
    id: RoomId,
    members: HashMap<ParticipantId, Member>,
    /// Join order, so rosters and waiting lists are stable.
    order: Vec<ParticipantId>,
    state: RoomState,
    banned: HashSet<ParticipantId>,
    /// What the session remembers about a participant id across reconnects: a page reload
    /// must neither send an admitted person back to the waiting room nor lift a hard mute, nor
    /// take back a permission to share the screen.
    remembered: HashMap<ParticipantId, Remembered>,
    settings: RoomSettings,
    /// When the input being handled happens.
    now: Now,
    /// Effects of the input being handled, in order.
    out: Vec<Effect>,
    breakouts: breakout::Breakouts,
    polls: poll::Polls,
    milestones: milestone::Milestones,
    chat: chat::Chat,
    speakers: speaker::Speakers,
    screens: screen::Screens,
    alerts: alerts::Alerts,
    records: records::Records,
    /// End-to-end encryption: the key relay's memory (never in the snapshot).
    e2ee: e2ee::E2eeKeys,
    queues: queue::SpeakingQueues,
    rounds: round::Rounds,
    agenda: agenda::Agenda,
    agreement: agreement::Agreement,
    talk: talktime::TalkTime,
    families: family::Families,
    /// The waiting room's welcome and what the door remembers (`door.rs`).
    door: door::Door,
    partners: partners::Partners,
    /// The store is there to read saved state from (partner groups, earlier check-ins).
    has_store: bool,
}

impl Room {
    fn new(id: RoomId, settings: RoomSettings, has_store: bool, banned: impl IntoIterator<Item = ParticipantId>, now: Now) -> Self {
        // `required` encryption keeps the waiting room on: the key leader admits everyone.
        let e2ee = settings.e2ee;
        let state = RoomState { locked: false, waiting_room: settings.waiting_room || e2ee == E2eeMode::Required, spotlight: None, e2ee };
        Self {
            id,
            members: HashMap::new(),
            order: Vec::new(),
            state,
            banned: banned.into_iter().collect(),
            remembered: HashMap::new(),
            settings,
            now,
            out: Vec::new(),
            breakouts: breakout::Breakouts::default(),
            polls: poll::Polls::default(),
            milestones: milestone::Milestones::new(has_store),
            chat: chat::Chat::default(),
            speakers: speaker::Speakers::default(),
            screens: screen::Screens::default(),
            alerts: alerts::Alerts::default(),
            records: records::Records::default(),
            e2ee: e2ee::E2eeKeys::default(),
            queues: queue::SpeakingQueues::default(),
            rounds: round::Rounds::default(),
            agenda: agenda::Agenda::default(),
            agreement: agreement::Agreement::default(),
            talk: talktime::TalkTime::default(),
            families: family::Families::default(),
            door: door::Door::default(),
            partners: partners::Partners::default(),
            has_store,
        }
    }

    fn id(&self) -> &RoomId {
        &self.id
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn has_bans(&self) -> bool {
        !self.banned.is_empty()
    }

    /// Runs `f` on the room at time `now` and returns what it returned with the effects it
    /// asked for. Every entry into the core goes through here.
    fn with<R>(&mut self, now: Now, f: impl FnOnce(&mut Room) -> R) -> (R, Vec<Effect>) {
        self.now = now;
        self.out.clear();
        let result = f(self);
        if self.state.e2ee != E2eeMode::Off {
            self.e2ee.after_input(&mut cx!(self));
        }
        (result, std::mem::take(&mut self.out))
    }

    /// The room starts: the active-speaker clock begins ticking.
    fn start(&mut self) {
        self.schedule(speaker::TICK, Timer::Speakers);
        if self.has_store {
            self.out.push(Effect::Read(effect::Read::Partners));
        }
    }

    fn handle(&mut self, input: RoomInput) {
        match input {
            RoomInput::Leave(id) => self.remove_member(&id, None),
            RoomInput::Disconnected(id) => self.disconnected(&id),
            RoomInput::TrackPublished(id, track) => self.track_published(&id, track),
            RoomInput::TrackEnded(id, track_id) => self.track_ended(&id, &track_id),
            RoomInput::Client { from, msg } => self.client(&from, msg),
            RoomInput::Timer(timer) => self.on_timer(timer),
            RoomInput::Loaded(loaded) => self.loaded(loaded),
        }
    }

    /// A message to this member found its outbox full: a client that stopped reading. Only the
    /// task knows (see `task.rs`).
    fn stalled(&mut self, id: &ParticipantId) {
        warn!(participant = %id, "outbox full; disconnecting stalled client");
        self.remove_member(id, Some(EndReason::Stalled));
    }

    // ---- effects ----

    fn send_to(&mut self, id: &ParticipantId, msg: ServerMessage) {
        cx!(self).send(id, msg);
    }

    fn peer(&mut self, to: &ParticipantId, cmd: PeerCommand) {
        self.out.push(Effect::Peer { to: to.clone(), cmd });
    }

    /// Hands `timer` back to the room `after` from now.
    fn schedule(&mut self, after: std::time::Duration, timer: Timer) {
        cx!(self).schedule(after, timer);
    }

    fn audit(&mut self, actor: &ParticipantId, action: &'static str, target: Option<&ParticipantId>) {
        cx!(self).audit(actor, action, target);
    }

    /// The session is over (everyone left): open polls close with the counts they have.
    fn close_all_polls(&mut self) {
        self.polls.close_all(&mut cx!(self));
    }

    /// Sends every member to the room's next node (`msg`: a redirect or a goodbye) and empties
    /// the room. Nobody is told that anyone left: they all meet again there.
    fn evacuate(&mut self, msg: ServerMessage) {
        info!(members = self.members.len(), "room leaves this node");
        for id in std::mem::take(&mut self.order) {
            let Some(m) = self.members.remove(&id) else { continue };
            self.out.push(Effect::Count { role: m.info.role, joined: false });
            self.out.push(Effect::End { who: id.clone(), msg: msg.clone(), reason: EndReason::Moved });
            self.out.push(Effect::Detach(id));
        }
    }

    /// After a failed restore: the state of a fresh room, keeping only `banned`.
    fn reset(&mut self, banned: Vec<ParticipantId>) {
        let door = std::mem::take(&mut self.door);
        *self = Room::new(self.id.clone(), self.settings.clone(), self.milestones.has_store(), banned, self.now);
        self.door = door;
    }

    /// A command panicked: the room's state can no longer be trusted, so every member's session
    /// ends with a `goodbye` (clients reconnect, as after a node restart) and the room task ends;
    /// the next join makes a fresh room. Counted in `hearth_room_failures_total` by the task.
    fn fail(&mut self) {
        error!(members = self.members.len(), "room failed; ending every session so clients rejoin a fresh room");
        self.order.clear();
        let goodbye = ServerMessage::Goodbye { reason: "the session had a problem on the server; reconnecting you".into() };
        for (id, m) in std::mem::take(&mut self.members) {
            self.out.push(Effect::Count { role: m.info.role, joined: false });
            self.out.push(Effect::End { who: id.clone(), msg: goodbye.clone(), reason: EndReason::Moved });
            self.out.push(Effect::Peer { to: id.clone(), cmd: PeerCommand::Close });
            self.out.push(Effect::Detach(id));
        }
    }

    /// Bans `id` for the rest of the session: in this room, and in the registry (and, on relay
    /// nodes, the room's saved state) so that it holds after the room task ends.
    fn ban(&mut self, id: &ParticipantId) {
        self.banned.insert(id.clone());
        self.out.push(Effect::Ban(id.clone()));
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::BreakoutWarning(generation) => self.breakouts.on_warning(&mut cx!(self), generation),
            Timer::BreakoutClose(generation) => {
                if let Some(change) = self.breakouts.on_close(&cx!(self), generation) {
                    self.breakout_change(change);
                }
            }
            Timer::Grace(id, epoch) => {
                if self.members.get(&id).is_some_and(|m| !m.connected && m.epoch == epoch) {
                    self.remove_member(&id, None);
                }
            }
            Timer::PollClose(poll) => self.polls.on_timer(&mut cx!(self), &poll),
            Timer::Speakers => {
                let levels = speaker::Speakers::levels(&cx!(self));
                self.talk_tick(&speaker::Speakers::speaking(&levels));
                self.speakers.tick(&mut cx!(self), levels);
            }
            Timer::ScreenArrival(id, seq) => self.screens.arrival_check(&mut cx!(self), &id, seq),
            Timer::RoundTurn(space, generation) => self.round_timer(&space, generation),
            Timer::AgendaWarning(generation) => self.agenda_timer(generation),
            Timer::GuestExpiry(id) => self.guest_expiry(&id),
        }
    }

    // ---- end-to-end encryption ----

    /// `setE2ee` is the room's policy; hellos and bundles go to the key relay (`e2ee.rs`).
    fn on_e2ee(&mut self, from: &ParticipantId, msg: ClientMessage) {
        let ClientMessage::SetE2ee { mode } = msg else {
            if self.state.e2ee == E2eeMode::Off {
                return self.error(from, ErrorCode::Forbidden, "this room is not end-to-end encrypted");
            }
            return self.e2ee.on_message(&mut cx!(self), from, msg);
        };
        if !self.members.get(from).is_some_and(|m| m.is_therapist() && m.admitted) {
            return self.error(from, ErrorCode::Forbidden, "only a therapist can set the encryption policy");
        }
        if self.members.values().any(|m| m.admitted && !m.is_therapist()) {
            return self.error(
                from,
                ErrorCode::E2eeSettingLocked,
                "the encryption policy changes only before anyone but therapists is admitted",
            );
        }
        self.state.e2ee = mode;
        if mode == E2eeMode::Required {
            self.state.waiting_room = true;
        }
        if mode == E2eeMode::Off {
            self.e2ee.reset();
        }
        self.audit(from, "set_e2ee", None);
        // Everyone, waiting people too: their client must know before it sends any media.
        for id in self.order.clone() {
            let room = self.state_for(&id);
            self.send_to(&id, ServerMessage::RoomStateChanged { room });
        }
    }

    // ---- membership ----

    /// Someone asks to join. On success the joining connection is attached to the place
    /// (`Effect::Attach`) and `joined` is queued on it.
    fn join(&mut self, grant: Grant) -> Result<(), RoomError> {
        let id = grant.participant.clone();
        if self.banned.contains(&id) {
            return Err(RoomError::Banned);
        }
        let remembered = self.remembered.get(&id).copied().unwrap_or_default();
        // Therapists may always enter, so a locked room cannot lock out its own moderator; and
        // someone already admitted who reconnects is not a new join.
        if self.state.locked && !grant.role.facilitates() && !remembered.admitted && !self.members.contains_key(&id) {
            self.turned_away(&grant);
            return Err(RoomError::Locked);
        }
        // The same participant on a new connection (a reconnect, a second tab) takes over
        // their place: same space, mutes, hand, votes; the others see no leave or join. Only
        // with the same role: a token for the same id with another role (minted by mistake,
        // or by someone who learned the id) must not turn a participant's seat into a
        // therapist's, nor end the session of whoever sits there.
        if let Some(m) = self.members.get(&id) {
            if m.info.role != grant.role {
                warn!(participant = %id, "join for a seat held in another role refused");
                return Err(RoomError::SeatTaken);
            }
            // Keys announced by the previous connection are not this one's.
            self.e2ee.joined(&id);
            if grant.role == Role::FamilyGuest {
                self.guest_arrived(&id, grant.expires_at);
            }
            self.resume(grant);
            return Ok(());
        }
        let max = self.settings.max_room_size;
        if self.members.len() >= max {
            return Err(RoomError::Full(max));
        }
        // An agreement not yet accepted holds everyone but therapists at the door, even with the
        // waiting room off; someone admitted earlier this session is not asked again.
        let at_door = !grant.role.facilitates() && self.agreement.pending(&id);
        // Staff enter at once; a family guest always waits, to be admitted into their family
        // space and nowhere else.
        let admitted =
            grant.role != Role::FamilyGuest && (remembered.admitted || grant.role.facilitates() || (!self.state.waiting_room && !at_door));
        let info = ParticipantInfo {
            id: id.clone(),
            name: grant.name.clone(),
            role: grant.role,
            audio_muted: remembered.audio_hard_muted,
            video_muted: remembered.video_hard_muted,
            audio_hard_muted: remembered.audio_hard_muted,
            video_hard_muted: remembered.video_hard_muted,
            hand_raised: false,
            reconnecting: false,
            screen_sharing: false,
            can_share_screen: grant.role.facilitates() || remembered.can_share_screen,
        };
        let sponsor = grant.sponsor.clone();
        let member = Member { info, admitted: false, tracks: Vec::new(), space: None, connected: true, epoch: 0, sponsor };
        self.members.insert(id.clone(), member);
        self.order.push(id.clone());
        self.out.push(Effect::Attach(id.clone()));
        self.out.push(Effect::Count { role: grant.role, joined: true });
        self.send_to(
            &id,
            ServerMessage::Joined {
                protocol_version: PROTOCOL_VERSION,
                room_id: self.id.clone(),
                participant_id: id.clone(),
                name: grant.name.clone(),
                role: grant.role,
                // When true, `admitted` with the roster follows at once.
                admitted,
                participants: Vec::new(),
                room: self.state_for(&id),
                session_id: self.records.session_id(),
            },
        );
        if grant.role == Role::FamilyGuest {
            self.guest_arrived(&id, grant.expires_at);
        }
        if admitted {
            self.admit(&id);
        } else {
            self.records.knocked(&mut cx!(self), &id);
            self.publish_waiting_list();
        }
        self.agreement_on_join(&id);
        if grant.role.facilitates() {
            self.send_to(&id, ServerMessage::WaitingList { waiting: self.waiting_list() });
        }
        self.door_joined(&grant);
        debug!(participant = %id, size = self.members.len(), admitted, "joined");
        Ok(())
    }

    /// A known participant id connected again: the new connection takes over the place.
    fn resume(&mut self, grant: Grant) {
        let id = grant.participant.clone();
        let Some(m) = self.members.get_mut(&id) else { return };
        if m.connected {
            // Another live connection (a second tab): it ends, this one takes over.
            let msg = ServerMessage::SessionEnded {
                reason: EndReason::Replaced,
                message: "You joined from another window or device.".into(),
                closing_message: None,
            };
            self.out.push(Effect::End { who: id.clone(), msg, reason: EndReason::Replaced });
        }
        self.out.push(Effect::Peer { to: id.clone(), cmd: PeerCommand::Close });
        self.out.push(Effect::Attach(id.clone()));
        let old_tracks = std::mem::take(&mut m.tracks);
        // A share does not survive its peer connection; the client shares again if it wants.
        m.info.screen_sharing = false;
        m.connected = true;
        m.epoch += 1;
        m.info.reconnecting = false;
        let (admitted, space, role) = (m.admitted, m.space.clone(), m.info.role);
        self.screens.forget(&id);
        self.unsubscribe_all(&id, &old_tracks);
        self.send_to(
            &id,
            ServerMessage::Joined {
                protocol_version: PROTOCOL_VERSION,
                room_id: self.id.clone(),
                participant_id: id.clone(),
                name: grant.name.clone(),
                role,
                admitted,
                participants: Vec::new(),
                room: self.state_for(&id),
                session_id: self.records.session_id(),
            },
        );
        if admitted {
            self.send_admission(&id);
            // In a breakout, `announce_space` also sends that space's open polls.
            if space.is_some() {
                self.announce_space(&id);
            } else {
                self.polls.catch_up(&mut cx!(self), &id);
            }
            self.connect_media(&id);
            self.publish_update(&id);
            self.chat.resumed(&mut cx!(self), &id);
            if space.is_none() {
                self.group_arrived(&id);
            }
            if role != Role::FamilyGuest {
                let agenda = self.agenda_message();
                self.send_to(&id, agenda);
                self.partners_on_admission(&id);
            }
        }
        self.agreement_on_join(&id);
        if role.facilitates() {
            self.send_to(&id, ServerMessage::WaitingList { waiting: self.waiting_list() });
            if !self.breakouts.is_empty() {
                self.publish_breakout_plan();
            }
        } else if !self.breakouts.is_empty() {
            // Therapists in every space see that this member is back.
            self.publish_breakout_plan();
        }
        self.records.resumed(&mut cx!(self), &id);
        self.door_joined(&grant);
        debug!(participant = %id, "resumed");
    }

    /// The socket dropped: the place is held (others see `reconnecting`) until the grace
    /// period ends. Someone still waiting simply leaves.
    fn disconnected(&mut self, id: &ParticipantId) {
        let grace = self.settings.reconnect_grace;
        let Some(m) = self.members.get_mut(id) else { return };
        if !m.admitted || grace.is_zero() {
            return self.remove_member(id, None);
        }
        m.connected = false;
        m.info.reconnecting = true;
        m.info.screen_sharing = false;
        let epoch = m.epoch;
        let old_tracks = std::mem::take(&mut m.tracks);
        self.screens.forget(id);
        self.unsubscribe_all(id, &old_tracks);
        self.publish_update(id);
        // Therapists in every space see that this member is reconnecting, not only their own.
        if !self.breakouts.is_empty() {
            self.publish_breakout_plan();
        }
        self.records.dropped(&mut cx!(self), id);
        self.schedule(grace, Timer::Grace(id.clone(), epoch));
        if self.members.get(id).is_some_and(Member::is_therapist) {
            self.publish_door();
        }
        debug!(participant = %id, "disconnected; holding the place");
    }

    /// Admits someone waiting. A family guest goes into their sponsor's open family space and
    /// nowhere else: without one they stay waiting (false).
    fn admit(&mut self, id: &ParticipantId) -> bool {
        let Some(member) = self.members.get(id) else { return false };
        if member.admitted {
            return false;
        }
        let family = match member.info.role {
            Role::FamilyGuest => match member.sponsor.as_ref().and_then(|s| self.families.space_of_sponsor(s)) {
                Some(space) => Some(space),
                None => return false,
            },
            _ => None,
        };
        let Some(member) = self.members.get_mut(id) else { return false };
        member.admitted = true;
        if family.is_some() {
            // Placed before anyone is told or media flows, so nothing of the group reaches them.
            member.space = family.clone();
        }
        let info = member.info.clone();
        self.remembered.entry(id.clone()).or_default().admitted = true;
        for other in self.space_of(id).into_iter().filter(|p| p != id) {
            self.send_to(&other, ServerMessage::ParticipantJoined { participant: info.clone() });
        }
        // The session (a new one if none runs) counts them from here.
        self.records.admitted(&mut cx!(self), id);
        self.send_admission(id);
        self.records.caught_up(&mut cx!(self), id);
        self.connect_media(id);
        self.publish_waiting_list();
        if family.is_some() {
            self.announce_space(id);
            self.chat.admitted(&mut cx!(self), id);
            return true;
        }
        self.place_admitted(id);
        self.polls.catch_up(&mut cx!(self), id);
        self.chat.admitted(&mut cx!(self), id);
        if self.members.get(id).is_some_and(|m| m.space.is_none()) {
            self.group_arrived(id);
        }
        let agenda = self.agenda_message();
        self.send_to(id, agenda);
        self.partners_on_admission(id);
        if self.agreement.is_set() {
            self.publish_agreement_statuses();
        }
        true
    }

    /// The room state as `id` may see it: a family guest is not told who is spotlighted.
    fn state_for(&self, id: &ParticipantId) -> RoomState {
        let mut state = self.state.clone();
        if self.role_of(id) == Some(Role::FamilyGuest) {
            state.spotlight = None;
        }
        state
    }

    /// The role of someone in the room.
    pub(super) fn role_of(&self, id: &ParticipantId) -> Option<Role> {
        self.members.get(id).map(|m| m.info.role)
    }

    /// `admitted` carries the ICE servers: TURN credentials go to admitted members only, minted
    /// afresh each time.
    fn send_admission(&mut self, id: &ParticipantId) {
        let ice_servers =
            self.settings.ice_servers_for(id, std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.now.unix_ms.max(0) as u64));
        let session_id = self.records.session_id();
        // A guest's roster is their family space's, never the main room's.
        let space = self.members.get(id).filter(|m| m.info.role == Role::FamilyGuest).and_then(|m| m.space.clone());
        let permissions =
            self.role_of(id).map(|role| permissions::granted(role, &self.settings.co_facilitator_withheld)).unwrap_or_default();
        let msg = ServerMessage::Admitted {
            participants: self.roster_of_space(&space),
            room: self.state_for(id),
            ice_servers,
            session_id,
            permissions,
        };
        self.send_to(id, msg);
    }

    /// Subscribes `id` to everyone it should receive, and everyone who should receive it to `id`.
    /// The member's peer connection exists from here on: nobody waiting has one.
    fn connect_media(&mut self, id: &ParticipantId) {
        let Some(member) = self.members.get(id) else { return };
        let out = &mut self.out;
        out.push(Effect::Peer { to: id.clone(), cmd: PeerCommand::Activate });
        for other in self.members.values() {
            if forwards(other, member) {
                for t in &other.tracks {
                    out.push(Effect::Peer { to: id.clone(), cmd: PeerCommand::Subscribe(t.clone()) });
                }
            }
            if forwards(member, other) {
                for t in &member.tracks {
                    out.push(Effect::Peer { to: other.info.id.clone(), cmd: PeerCommand::Subscribe(t.clone()) });
                }
            }
        }
    }

    /// Everyone but `publisher` stops receiving `tracks`.
    fn unsubscribe_all(&mut self, publisher: &ParticipantId, tracks: &[Arc<PublishedTrack>]) {
        for t in tracks {
            for other in self.members.values().filter(|o| &o.info.id != publisher) {
                self.out.push(Effect::Peer { to: other.info.id.clone(), cmd: PeerCommand::Unsubscribe(t.id.clone()) });
            }
        }
    }

    /// Removes a member: for a plain leave `reason` is `None`; otherwise the member is told why
    /// and its connection is ended.
    fn remove_member(&mut self, id: &ParticipantId, reason: Option<EndReason>) {
        let message = reason.map(|reason| match reason {
            EndReason::Declined => "The therapist did not admit you to this session.",
            EndReason::Removed => "The therapist removed you from this session.",
            EndReason::Ended => "The therapist ended the session. Thank you for being here.",
            EndReason::Replaced => "You joined from another window or device.",
            EndReason::Stalled => "Your connection could not keep up.",
            EndReason::Moved => "The session moved to another server; reconnecting you.",
        });
        self.remove_member_with(id, reason.zip(message));
    }

    /// Removes a member whose session ends for `reason`, told in `message`.
    fn remove_member_saying(&mut self, id: &ParticipantId, reason: EndReason, message: &'static str) {
        self.remove_member_with(id, Some((reason, message)));
    }

    fn remove_member_with(&mut self, id: &ParticipantId, end: Option<(EndReason, &'static str)>) {
        let reason = end.map(|(r, _)| r);
        let Some(member) = self.members.remove(id) else { return };
        self.order.retain(|p| p != id);
        self.screens.forget(id);
        self.families.forget(id);
        self.out.push(Effect::Count { role: member.info.role, joined: false });
        // The room cuts the media itself, whatever the member's connection task is doing (a
        // client that floods its socket and never reads can hold that task up): its peer
        // closes, and with it every subscription to and from it.
        self.peer(id, PeerCommand::Close);
        self.unsubscribe_all(id, &member.tracks);
        if let Some((reason, message)) = end {
            let closing_message = if reason == EndReason::Ended { self.door.closing.clone() } else { None };
            let msg = ServerMessage::SessionEnded { reason, message: message.into(), closing_message };
            self.out.push(Effect::End { who: id.clone(), msg, reason });
        }
        self.out.push(Effect::Detach(id.clone()));
        if member.admitted && reason != Some(EndReason::Replaced) {
            if self.state.spotlight.as_ref() == Some(id) {
                self.state.spotlight = None;
                self.send_admitted(ServerMessage::RoomStateChanged { room: self.state.clone() });
            }
            // Those who could see them, and the therapists, who keep track of everyone.
            let space = member.space.clone();
            let mut told: Vec<_> = self.roster_of_space(&space).into_iter().map(|p| p.id).collect();
            told.extend(self.therapists().into_iter().filter(|t| !told.contains(t)).collect::<Vec<_>>());
            for p in told {
                self.send_to(&p, ServerMessage::ParticipantLeft { participant_id: id.clone() });
            }
            if !self.breakouts.is_empty() {
                self.publish_breakout_plan();
            }
        } else if !member.admitted {
            self.publish_waiting_list();
        }
        for moves in self.chat.member_left(&cx!(self), id) {
            self.private_room_moves(moves);
        }
        let talk =
            (self.settings.talk_time_in_attendance && member.admitted && member.info.role.takes_part()).then(|| self.talk.seconds(id));
        let session = self.records.session_id();
        self.records.left(&mut cx!(self), &member, reason, talk);
        if session.is_some() && self.records.session_id().is_none() {
            // The session ended: its talk time with it.
            self.talk = talktime::TalkTime::default();
        }
        if member.admitted && reason != Some(EndReason::Replaced) {
            self.group_departed(id, &member.space);
        }
        self.agreement.left(id);
        if self.agreement.is_set() {
            self.publish_agreement_statuses();
        }
        self.door_left(id);
        if member.is_therapist() {
            self.publish_door();
        }
        debug!(participant = %id, size = self.members.len(), "left");
    }

    fn track_published(&mut self, id: &ParticipantId, track: Arc<PublishedTrack>) {
        let max = self.settings.max_tracks_per_participant;
        if self.members.get(id).is_some_and(|m| m.tracks.len() >= max) {
            warn!(participant = %id, max, "track over the per-participant limit not forwarded");
            return self.error(
                id,
                ErrorCode::TooManyTracks,
                format!("at most {max} tracks (a microphone, a camera and a screen) reach the group; this one does not"),
            );
        }
        if self.state.e2ee == E2eeMode::Required && !track.e2ee_codec() {
            warn!(participant = %id, "track in a codec that cannot be end-to-end encrypted not forwarded");
            return self.error(id, ErrorCode::E2eeCodec, "this room is end-to-end encrypted: only VP8 video and Opus audio are forwarded");
        }
        if !self.admit_track(id, &track) {
            return;
        }
        let screen = track.source() == crate::signal::protocol::TrackSource::Screen;
        let Some(member) = self.members.get_mut(id) else { return };
        let muted = member.hard_muted(track.kind);
        member.tracks.push(track.clone());
        if muted {
            self.out.push(Effect::Forwarding { track: track.clone(), on: false });
        }
        let Some(member) = self.members.get(id) else { return };
        for other in self.members.values() {
            if forwards(member, other) {
                self.out.push(Effect::Peer { to: other.info.id.clone(), cmd: PeerCommand::Subscribe(track.clone()) });
            }
        }
        if screen {
            self.publish_update(id);
            screen::Screens::forwarded(&mut cx!(self), id, &track);
        }
    }

    /// Whether a newly published track of `id` is forwarded (see `screen.rs`).
    fn admit_track(&mut self, id: &ParticipantId, track: &Arc<PublishedTrack>) -> bool {
        let Some(m) = self.members.get_mut(id) else { return false };
        match self.screens.admit_track(m, track) {
            screen::Admission::Forward => true,
            screen::Admission::Screen => {
                m.info.screen_sharing = true;
                true
            }
            screen::Admission::HoldBack => false,
        }
    }

    /// Applies what the screen-share rules asked for (see `screen.rs`).
    fn screen_change(&mut self, change: screen::Change) {
        match change {
            screen::Change::Forward(id, track) => self.track_published(&id, track),
            screen::Change::Stop(id) => self.stop_screen(&id),
            screen::Change::Permission { by, participant_id, allowed } => {
                let Some(m) = self.members.get_mut(&participant_id) else { return };
                m.info.can_share_screen = allowed;
                self.remembered.entry(participant_id.clone()).or_default().can_share_screen = allowed;
                if !allowed {
                    self.stop_screen(&participant_id);
                }
                self.audit(&by, if allowed { "allow_screen_share" } else { "revoke_screen_share" }, Some(&participant_id));
                self.publish_update(&participant_id);
            }
        }
    }

    /// Ends `id`'s screen share: nobody receives it any more.
    fn stop_screen(&mut self, id: &ParticipantId) {
        self.screens.stopped(id);
        let Some(m) = self.members.get_mut(id) else { return };
        let (screens, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut m.tracks).into_iter().partition(|t| t.source() == crate::signal::protocol::TrackSource::Screen);
        m.tracks = keep;
        let was_sharing = std::mem::replace(&mut m.info.screen_sharing, false);
        for t in &screens {
            for other in self.members.values().filter(|o| &o.info.id != id) {
                self.out.push(Effect::Peer { to: other.info.id.clone(), cmd: PeerCommand::Unsubscribe(t.id.clone()) });
            }
        }
        if was_sharing || !screens.is_empty() {
            self.publish_update(id);
        }
    }

    fn track_ended(&mut self, id: &ParticipantId, track_id: &TrackId) {
        let Some(member) = self.members.get_mut(id) else { return };
        let ended_screen = member.tracks.iter().any(|t| &t.id == track_id && t.source() == crate::signal::protocol::TrackSource::Screen);
        member.tracks.retain(|t| &t.id != track_id);
        if ended_screen {
            // The browser's own "Stop sharing" ends the track without a message.
            member.info.screen_sharing = false;
        }
        self.screens.track_ended(id, track_id, ended_screen);
        for pid in self.members.keys() {
            if pid != id {
                self.out.push(Effect::Peer { to: pid.clone(), cmd: PeerCommand::Unsubscribe(track_id.clone()) });
            }
        }
        if ended_screen {
            self.publish_update(id);
        }
    }

    // ---- what clients ask for ----

    fn client(&mut self, from: &ParticipantId, msg: ClientMessage) {
        let Some(sender) = self.members.get(from) else { return };
        let (role, admitted) = (sender.info.role, sender.admitted);
        // The one place role rules live: the permission table, before anything else.
        let action = permissions::action(&msg, from, |p| self.role_of(p));
        if !permissions::allows(action, role, &self.settings.co_facilitator_withheld) {
            let case = action.split_once(' ').map(|(_, case)| format!(" {case}")).unwrap_or_default();
            return self.error(from, ErrorCode::Forbidden, format!("the role {} may not use `{}`{case}", role.as_str(), msg.kind()));
        }
        // Keys are announced from the waiting room too, and the policy is set before admitting.
        if let msg @ (ClientMessage::SetE2ee { .. } | ClientMessage::E2eeHello { .. } | ClientMessage::E2eeKeyBundle { .. }) = msg {
            return self.on_e2ee(from, msg);
        }
        // The agreement is accepted at the door, before admission.
        if let msg @ ClientMessage::AcceptAgreement { .. } = msg {
            return self.on_group(from, msg);
        }
        if !admitted {
            return self.error(from, ErrorCode::NotAdmitted, "you are in the waiting room; the therapist will let you in");
        }
        if let Err((code, message)) = sealed::check(&msg, self.state.e2ee) {
            return self.error(from, code, message);
        }
        match msg {
            ClientMessage::SetMute { kind, muted } => self.set_own_mute(from, kind, muted),
            ClientMessage::RaiseHand => self.set_hand(from, from, true),
            ClientMessage::LowerHand { participant_id } => {
                let target = participant_id.unwrap_or_else(|| from.clone());
                self.set_hand(from, &target, false)
            }
            ClientMessage::Admit { participant_id } => {
                if self.agreement_pending(&participant_id) && self.members.get(&participant_id).is_some_and(|m| !m.admitted) {
                    return self.error(from, ErrorCode::AgreementPending, "they have not accepted the group's agreement yet");
                }
                if self.members.get(&participant_id).is_some_and(|m| !m.admitted) {
                    if !self.admit(&participant_id) {
                        return self.error(
                            from,
                            ErrorCode::InvalidField,
                            "a family guest is admitted into their sponsor's family space: open it first",
                        );
                    }
                    self.audit(from, "admit", Some(&participant_id));
                } else {
                    self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is waiting");
                }
            }
            ClientMessage::AdmitAll => {
                // Only those who accepted the agreement (everyone, when there is none); family
                // guests are admitted one by one, into their family space.
                for id in self.waiting_ids() {
                    if !self.agreement_pending(&id) && self.role_of(&id) != Some(Role::FamilyGuest) {
                        self.admit(&id);
                    }
                }
                self.audit(from, "admit_all", None);
            }
            ClientMessage::Decline { participant_id, r#final } => {
                if self.members.get(&participant_id).is_some_and(|m| !m.admitted) {
                    // A final decline is a ban: `banned` on every later knock this session.
                    if r#final {
                        self.ban(&participant_id);
                    }
                    self.remove_member(&participant_id, Some(EndReason::Declined));
                    self.audit(from, if r#final { "decline_final" } else { "decline" }, Some(&participant_id));
                } else {
                    self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is waiting");
                }
            }
            ClientMessage::Mute { participant_id, kind, hard } => {
                if !self.members.get(&participant_id).is_some_and(|m| m.admitted) {
                    return self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room");
                }
                self.moderator_mute(&participant_id, kind, hard);
                self.audit(from, mute_action(kind, hard), Some(&participant_id));
            }
            ClientMessage::Unmute { participant_id, kind } => {
                if !self.members.get(&participant_id).is_some_and(|m| m.admitted) {
                    return self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room");
                }
                self.moderator_unmute(&participant_id, kind);
                self.audit(from, if kind == MediaKind::Audio { "unmute_audio" } else { "unmute_video" }, Some(&participant_id));
            }
            ClientMessage::MuteAll { kind, hard } => {
                let targets: Vec<_> = self
                    .order
                    .iter()
                    .filter(|id| self.members.get(*id).is_some_and(|m| m.admitted && m.info.role.takes_part()))
                    .cloned()
                    .collect();
                for id in targets {
                    self.moderator_mute(&id, kind, hard);
                }
                self.audit(from, if kind == MediaKind::Audio { "mute_all_audio" } else { "mute_all_video" }, None);
            }
            ClientMessage::Remove { participant_id } => match self.members.get(&participant_id) {
                None => self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room"),
                Some(m) if m.is_therapist() => self.error(from, ErrorCode::Forbidden, "a therapist cannot be removed"),
                Some(_) => {
                    self.ban(&participant_id);
                    self.remove_member(&participant_id, Some(EndReason::Removed));
                    self.audit(from, "remove", Some(&participant_id));
                }
            },
            ClientMessage::LockRoom { locked } => {
                self.state.locked = locked;
                self.send_admitted(ServerMessage::RoomStateChanged { room: self.state.clone() });
                self.audit(from, if locked { "lock" } else { "unlock" }, None);
            }
            ClientMessage::SetWaitingRoom { enabled } => {
                if !enabled && self.state.e2ee == E2eeMode::Required {
                    return self.error(from, ErrorCode::E2eeSettingLocked, "an end-to-end encrypted room keeps its waiting room on");
                }
                self.state.waiting_room = enabled;
                if !enabled {
                    for id in self.waiting_ids() {
                        if !self.agreement_pending(&id) && self.role_of(&id) != Some(Role::FamilyGuest) {
                            self.admit(&id);
                        }
                    }
                }
                self.send_admitted(ServerMessage::RoomStateChanged { room: self.state.clone() });
                self.audit(from, if enabled { "waiting_room_on" } else { "waiting_room_off" }, None);
            }
            ClientMessage::Spotlight { participant_id } => {
                if let Some(p) = &participant_id {
                    match self.members.get(p) {
                        Some(m) if m.admitted && m.info.role == Role::FamilyGuest => {
                            return self.error(from, ErrorCode::InvalidField, "a family guest is seen only in their family space");
                        }
                        Some(m) if m.admitted && m.info.role.publishes() => {}
                        Some(m) if m.admitted => {
                            return self.error(from, ErrorCode::InvalidField, "an observer has no video to spotlight");
                        }
                        _ => return self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room"),
                    }
                }
                self.audit(from, "spotlight", participant_id.as_ref());
                self.state.spotlight = participant_id;
                self.send_admitted(ServerMessage::RoomStateChanged { room: self.state.clone() });
            }
            ClientMessage::EndSession { confirm, closing_message } => {
                let closing = match door::closing_message(closing_message.as_deref()) {
                    Ok(text) => text,
                    Err(why) => return self.error(from, ErrorCode::InvalidField, why),
                };
                if !self.records.may_end(&mut cx!(self), from, confirm) {
                    return;
                }
                self.audit(from, "end_session", None);
                self.door_session_ended();
                self.door.closing = closing;
                for id in self.order.clone() {
                    self.remove_member(&id, Some(EndReason::Ended));
                }
                self.door.closing = None;
            }
            ClientMessage::SetWelcome { group_name, message } => self.on_set_welcome(from, &group_name, &message),
            // ---- feature handlers (one submodule each) ----
            msg @ (ClientMessage::CreateBreakout { .. }
            | ClientMessage::DeleteBreakout { .. }
            | ClientMessage::AssignBreakout { .. }
            | ClientMessage::AutoAssignBreakouts
            | ClientMessage::OpenBreakouts { .. }
            | ClientMessage::BroadcastToBreakouts { .. }
            | ClientMessage::CloseBreakouts { .. }
            | ClientMessage::GoToBreakout { .. }
            | ClientMessage::AskForHelp) => {
                if let Some(change) = self.breakouts.on_message(&mut cx!(self), &mut self.alerts, from, msg) {
                    self.breakout_change(change);
                }
            }
            msg @ (ClientMessage::CreatePoll { .. }
            | ClientMessage::Vote { .. }
            | ClientMessage::ClosePoll { .. }
            | ClientMessage::ResealPoll { .. }
            | ClientMessage::SharePollResults { .. }) => self.polls.on_message(&mut cx!(self), from, msg),
            msg @ (ClientMessage::SetCelebrationPreferences { .. }
            | ClientMessage::GetCelebrationPreferences
            | ClientMessage::Celebrate { .. }
            | ClientMessage::ShareMilestone { .. }
            | ClientMessage::ApproveMilestone { .. }
            | ClientMessage::DeclineMilestone { .. }
            | ClientMessage::Congratulate { .. }
            | ClientMessage::GetMilestoneHistory { .. }) => self.milestones.on_message(&mut cx!(self), &mut self.alerts, from, msg),
            msg @ (ClientMessage::Chat { .. }
            | ClientMessage::SetChatSettings { .. }
            | ClientMessage::DeleteChatMessage { .. }
            | ClientMessage::OpenPrivateRoom { .. }
            | ClientMessage::ClosePrivateRoom { .. }) => {
                if let Some(moves) = self.chat.on_message(&mut cx!(self), from, msg) {
                    self.private_room_moves(moves);
                }
            }
            msg @ (ClientMessage::ScreenShare { .. } | ClientMessage::AllowScreenShare { .. }) => {
                if let Some(change) = self.screens.on_message(&mut cx!(self), from, msg) {
                    self.screen_change(change);
                }
            }
            msg @ (ClientMessage::RequestSupport
            | ClientMessage::AcknowledgeSupport { .. }
            | ClientMessage::ResolveSupport { .. }
            | ClientMessage::RouteSupport { .. }
            | ClientMessage::StartCheckIn { .. }
            | ClientMessage::AnswerCheckIn { .. }
            | ClientMessage::CloseCheckIn { .. }) => self.records.on_message(&mut cx!(self), &mut self.alerts, from, msg),
            msg @ (ClientMessage::OpenFamilySpace { .. } | ClientMessage::CloseFamilySpace { .. }) => self.on_family(from, msg),
            msg @ (ClientMessage::GiveFloor { .. }
            | ClientMessage::StartRound { .. }
            | ClientMessage::PassTurn
            | ClientMessage::NextTurn
            | ClientMessage::EndRound
            | ClientMessage::SetAgreement { .. }
            | ClientMessage::AcceptAgreement { .. }) => self.on_group(from, msg),
            msg @ (ClientMessage::SetAgenda { .. }
            | ClientMessage::StartSegment { .. }
            | ClientMessage::ExtendSegment { .. }
            | ClientMessage::EndSegment
            | ClientMessage::SaveAgendaTemplate { .. }
            | ClientMessage::GetAgendaTemplates) => self.on_agenda(from, msg),
            msg @ (ClientMessage::SavePartners { .. } | ClientMessage::OpenPartnerBreakouts { .. }) => self.on_partners(from, msg),
            // Connection-level messages never reach the room.
            ClientMessage::Join { .. }
            | ClientMessage::Leave
            | ClientMessage::Offer(_)
            | ClientMessage::Answer(_)
            | ClientMessage::IceCandidate { .. }
            | ClientMessage::SetVideoPreference { .. }
            | ClientMessage::Ping { .. } => {}
            // Handled before the admission check above.
            ClientMessage::SetE2ee { .. } | ClientMessage::E2eeHello { .. } | ClientMessage::E2eeKeyBundle { .. } => {}
        }
    }

    fn set_own_mute(&mut self, id: &ParticipantId, kind: MediaKind, muted: bool) {
        let Some(m) = self.members.get_mut(id) else { return };
        if !muted && m.hard_muted(kind) {
            return self.error(id, ErrorCode::HardMuted, "the therapist muted this; only they can unmute it");
        }
        match kind {
            MediaKind::Audio => m.info.audio_muted = muted,
            MediaKind::Video => m.info.video_muted = muted,
        }
        self.publish_update(id);
    }

    fn set_hand(&mut self, _by: &ParticipantId, target: &ParticipantId, raised: bool) {
        let Some(m) = self.members.get_mut(target).filter(|m| m.admitted) else {
            return self.error(_by, ErrorCode::UnknownParticipant, "nobody with that id is in the room");
        };
        if m.info.hand_raised != raised {
            // Raising one's own hand alerts the therapists: limited like the other alerts.
            if raised && _by == target && !self.alerts.permit(&mut cx!(self), target, alerts::Alert::RaiseHand) {
                return;
            }
            let Some(m) = self.members.get_mut(target) else { return };
            m.info.hand_raised = raised;
            self.publish_update(target);
            self.hand_changed(target, raised);
        }
    }

    fn moderator_mute(&mut self, id: &ParticipantId, kind: MediaKind, hard: bool) {
        let Some(m) = self.members.get_mut(id) else { return };
        match kind {
            MediaKind::Audio => {
                m.info.audio_muted = true;
                m.info.audio_hard_muted |= hard;
            }
            MediaKind::Video => {
                m.info.video_muted = true;
                m.info.video_hard_muted |= hard;
            }
        }
        if hard {
            for t in m.tracks.iter().filter(|t| t.kind == kind) {
                self.out.push(Effect::Forwarding { track: t.clone(), on: false });
            }
            let r = self.remembered.entry(id.clone()).or_default();
            match kind {
                MediaKind::Audio => r.audio_hard_muted = true,
                MediaKind::Video => r.video_hard_muted = true,
            }
        }
        self.send_to(id, ServerMessage::MutedByModerator { kind, hard });
        self.publish_update(id);
    }

    fn moderator_unmute(&mut self, id: &ParticipantId, kind: MediaKind) {
        let Some(m) = self.members.get_mut(id) else { return };
        match kind {
            MediaKind::Audio => m.info.audio_hard_muted = false,
            MediaKind::Video => m.info.video_hard_muted = false,
        }
        // Forwarding resumes, but the participant's own mute stays until they lift it: the
        // server never turns someone's microphone or camera back on for them.
        for t in m.tracks.iter().filter(|t| t.kind == kind) {
            self.out.push(Effect::Forwarding { track: t.clone(), on: true });
        }
        let r = self.remembered.entry(id.clone()).or_default();
        match kind {
            MediaKind::Audio => r.audio_hard_muted = false,
            MediaKind::Video => r.video_hard_muted = false,
        }
        self.send_to(id, ServerMessage::UnmutedByModerator { kind });
        self.publish_update(id);
    }

    // ---- outgoing ----

    fn waiting_ids(&self) -> Vec<ParticipantId> {
        self.order.iter().filter(|id| self.members.get(*id).is_some_and(|m| !m.admitted)).cloned().collect()
    }

    fn waiting_list(&self) -> Vec<WaitingInfo> {
        self.waiting_ids()
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| WaitingInfo {
                id: m.info.id.clone(),
                name: m.info.name.clone(),
                role: m.info.role,
                sponsor: m.sponsor.clone(),
                sponsor_name: m.sponsor.as_ref().and_then(|s| self.members.get(s)).map(|s| s.info.name.clone()),
            })
            .collect()
    }

    /// The waiting list goes to staff (therapists and co-facilitators), who admit.
    fn publish_waiting_list(&mut self) {
        let msg = ServerMessage::WaitingList { waiting: self.waiting_list() };
        let staff: Vec<_> = self.members.values().filter(|m| m.info.role.facilitates()).map(|m| m.info.id.clone()).collect();
        for id in staff {
            self.send_to(&id, msg.clone());
        }
    }

    fn publish_update(&mut self, id: &ParticipantId) {
        let Some(m) = self.members.get(id) else { return };
        if m.admitted {
            let participant = m.info.clone();
            for p in self.space_of(id) {
                self.send_to(&p, ServerMessage::ParticipantUpdated { participant: participant.clone() });
            }
        }
    }

    fn error(&mut self, to: &ParticipantId, code: ErrorCode, message: impl Into<String>) {
        self.send_to(to, ServerMessage::Error { code, message: message.into() });
    }

    fn send_admitted(&mut self, msg: ServerMessage) {
        cx!(self).send_admitted(msg);
    }

    /// Admitted members who share `id`'s space (the main room or the same breakout), `id`
    /// included. Chat, polls and celebrations scope to this.
    fn space_of(&self, id: &ParticipantId) -> Vec<ParticipantId> {
        space_of(&self.members, &self.order, id)
    }

    /// Moves people into or out of a private room, as the chat asked.
    fn private_room_moves(&mut self, moves: chat::Moves) {
        let moves = moves
            .into_iter()
            .map(|(id, dest)| {
                let space = match dest {
                    chat::Dest::Space(space) => space,
                    chat::Dest::Home => self.breakouts.space_for(&id),
                };
                (id, space)
            })
            .collect();
        self.move_many(moves);
        if !self.breakouts.is_empty() {
            self.publish_breakout_plan();
        }
    }

    /// The name members see for a space id: a breakout's, or a private room's.
    pub(super) fn space_name(&self, space: &str) -> Option<String> {
        self.breakouts
            .name_of(space)
            .or_else(|| self.chat.private_room_name(space))
            .or_else(|| self.families.name_of(space))
            .map(str::to_string)
    }

    /// Admitted therapists (all spaces): they moderate the whole session.
    fn therapists(&self) -> Vec<ParticipantId> {
        self.members.values().filter(|m| m.admitted && m.is_therapist()).map(|m| m.info.id.clone()).collect()
    }
}

/// Members without a room, for the features' own unit tests: a [`Cx`] over them, and what the
/// feature asked for.
#[cfg(test)]
struct World {
    id: RoomId,
    members: HashMap<ParticipantId, Member>,
    order: Vec<ParticipantId>,
    settings: RoomSettings,
    now: Now,
    out: Vec<Effect>,
}

#[cfg(test)]
impl World {
    fn new() -> Self {
        let settings = model_tests::settings(false, std::time::Duration::ZERO);
        let now = Now { at: tokio::time::Instant::now(), unix_ms: 1_700_000_000_000 };
        Self { id: RoomId::new("r").expect("a valid id"), members: HashMap::new(), order: Vec::new(), settings, now, out: Vec::new() }
    }

    /// Someone admitted into `space` (`None`: the main room).
    fn admit(&mut self, id: &str, role: Role, space: Option<&str>) -> ParticipantId {
        let pid = ParticipantId::from_trusted(id);
        let info = ParticipantInfo {
            id: pid.clone(),
            name: format!("{id} name"),
            role,
            audio_muted: false,
            video_muted: false,
            audio_hard_muted: false,
            video_hard_muted: false,
            hand_raised: false,
            reconnecting: false,
            screen_sharing: false,
            can_share_screen: role.facilitates(),
        };
        let member =
            Member { info, admitted: true, tracks: Vec::new(), space: space.map(str::to_string), connected: true, epoch: 0, sponsor: None };
        self.members.insert(pid.clone(), member);
        self.order.push(pid.clone());
        pid
    }

    fn member(&mut self, id: &ParticipantId) -> &mut Member {
        self.members.get_mut(id).expect("a member of this world")
    }

    fn cx(&mut self) -> Cx<'_> {
        cx!(self)
    }

    /// Moves the clock on by `d`.
    fn advance(&mut self, d: std::time::Duration) {
        self.now = self.now.after(d);
    }

    /// The effects asked for since the last call.
    fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    /// Of the effects asked for since the last [`World::take`], the messages sent to `to`.
    fn sent_to(&self, to: &ParticipantId) -> Vec<ServerMessage> {
        self.out
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to: t, msg } if t == to => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    /// Of the effects asked for since the last [`World::take`], the error codes sent to `to`.
    fn errors_to(&self, to: &ParticipantId) -> Vec<ErrorCode> {
        self.sent_to(to)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Error { code, .. } => Some(code),
                _ => None,
            })
            .collect()
    }
}

fn mute_action(kind: MediaKind, hard: bool) -> &'static str {
    match (kind, hard) {
        (MediaKind::Audio, true) => "hard_mute_audio",
        (MediaKind::Audio, false) => "ask_mute_audio",
        (MediaKind::Video, true) => "hard_mute_video",
        (MediaKind::Video, false) => "ask_mute_video",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::shared::RegistryInner;
    use crate::signal::protocol::ServerMessage;
    use tokio::sync::{mpsc, oneshot};

    fn registry() -> Arc<RegistryInner> {
        super::model_tests::context_with(false, std::time::Duration::ZERO)
    }

    struct Client {
        outbox: mpsc::Receiver<ServerMessage>,
        ended: oneshot::Receiver<EndReason>,
    }

    async fn join(room: &RoomHandle, sfu: &Arc<crate::sfu::SfuEngine>, id: &str, role: Role) -> Client {
        let participant = ParticipantId::from_trusted(id);
        let (events, _) = mpsc::unbounded_channel();
        let peer = sfu.create_peer(participant.clone(), events, true);
        let (tx, outbox) = mpsc::channel(OUTBOX_CAPACITY);
        let (end_tx, ended) = oneshot::channel();
        let grant = Grant {
            participant,
            room: RoomId::new("r").unwrap(),
            role,
            name: id.into(),
            expires_at: u64::MAX,
            issued_at: 0,
            sponsor: None,
        };
        room.join(JoinRequest { grant, outbox: tx, peer, ended: end_tx }).await.expect("joined");
        Client { outbox, ended }
    }

    /// A bug in a command (here an overflow from state no valid input reaches: the breakout id
    /// counter at its maximum) ends every session with `goodbye`, takes the room out of the
    /// registry, counts the failure, and the next join gets a fresh room.
    #[tokio::test]
    async fn a_panicking_command_ends_every_session_and_the_next_join_gets_a_fresh_room() {
        let registry = registry();
        let sfu = crate::sfu::SfuEngine::new(crate::config::Config::from_toml_overrides("").expect("embedded defaults").ice);
        let id = RoomId::new("r").unwrap();
        let (mut room, rx, handle) = task::build(id.clone(), registry.clone());
        room.breakouts.set_next_id_for_test(u32::MAX);
        let handle = task::start(room, registry.clone(), rx, handle);
        registry.rooms.insert(id.clone(), handle.clone());
        let mut t = join(&handle, &sfu, "t", Role::Therapist).await;
        let mut p = join(&handle, &sfu, "p", Role::Participant).await;
        assert_eq!(registry.participants.load(std::sync::atomic::Ordering::Relaxed), 2);

        let from = ParticipantId::from_trusted("t");
        handle.send(RoomInput::Client { from, msg: ClientMessage::CreateBreakout { name: "Pairs".into() } }).await;
        for c in [&mut t, &mut p] {
            let ended = tokio::time::timeout(std::time::Duration::from_secs(5), &mut c.ended).await.expect("session ended");
            assert_eq!(ended, Ok(EndReason::Moved));
            let mut last = None;
            while let Ok(m) = c.outbox.try_recv() {
                last = Some(m);
            }
            assert!(matches!(last, Some(ServerMessage::Goodbye { .. })), "told to reconnect: {last:?}");
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while registry.rooms.contains_key(&id) || !handle.is_closed() {
            assert!(tokio::time::Instant::now() < deadline, "the failed room is still registered or open");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(registry.failures.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(registry.participants.load(std::sync::atomic::Ordering::Relaxed), 0, "members counted out");

        let fresh = crate::room::RoomRegistry::from_inner(registry.clone()).get_or_create(&id);
        assert!(!fresh.same_room(&handle));
        let mut again = join(&fresh, &sfu, "t", Role::Therapist).await;
        let joined = again.outbox.recv().await;
        assert!(matches!(joined, Some(ServerMessage::Joined { .. })), "{joined:?}");
    }
}
