//! One room's task: it alone owns the room's membership, admission and moderation state, and
//! decides who receives whom. Every rule about roles is checked here, whatever the client says.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, error, info, info_span, warn, Instrument};

mod agenda;
mod agreement;
mod alerts;
mod breakout;
mod chat;
mod group;
mod milestone;
#[cfg(test)]
mod model_tests;
mod poll;
mod queue;
mod round;
mod screen;
mod snapshot;
mod speaker;
mod talktime;

pub use super::handle::{JoinRequest, Outbox, RoomCommand, RoomError, RoomHandle, SessionEnd, Timer, OUTBOX_CAPACITY};
use super::shared::RegistryInner;
use super::{ParticipantId, RoomId};
use crate::auth::{Grant, Role};
use crate::cluster::Cluster;
use crate::sfu::{PeerCommand, PeerHandle, PublishedTrack, TrackId};
use crate::signal::protocol::{
    ClientMessage, EndReason, ErrorCode, MediaKind, ParticipantInfo, RedirectReason, RoomState, ServerMessage, WaitingInfo,
    PROTOCOL_VERSION,
};

struct Member {
    info: ParticipantInfo,
    admitted: bool,
    outbox: Outbox,
    peer: PeerHandle,
    tracks: Vec<Arc<PublishedTrack>>,
    ended: Option<SessionEnd>,
    /// Which space the member is in: `None` is the main room, otherwise a breakout.
    space: Option<String>,
    /// False while the socket is gone and the place is held for the reconnect grace period.
    connected: bool,
    /// Counts connections taking over this place, so a stale grace timer is ignored.
    epoch: u64,
    /// The screen share the client announced, until it ends.
    screen: Option<screen::Announced>,
    /// Video tracks held back: unannounced beside a camera (see `screen.rs`).
    extra_video: Vec<Arc<PublishedTrack>>,
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
    registry: Arc<RegistryInner>,
    /// Our own command channel, weak so that it does not keep the room alive.
    me: mpsc::WeakSender<RoomCommand>,
    breakouts: breakout::Breakouts,
    polls: poll::Polls,
    milestones: milestone::Milestones,
    chat: chat::Chat,
    speakers: speaker::Speakers,
    alerts: alerts::Alerts,
    queues: queue::SpeakingQueues,
    rounds: round::Rounds,
    agenda: agenda::Agenda,
    agreement: agreement::Agreement,
    talk: talktime::TalkTime,
}

pub(super) fn spawn(id: RoomId, registry: Arc<RegistryInner>) -> RoomHandle {
    let (room, rx, handle) = build(id, registry);
    start(room, rx, handle)
}

/// A room and its channel, not yet running.
fn build(id: RoomId, registry: Arc<RegistryInner>) -> (Room, mpsc::Receiver<RoomCommand>, RoomHandle) {
    let (tx, rx) = mpsc::channel(1024);
    let handle = RoomHandle { tx };
    let state = RoomState { locked: false, waiting_room: registry.settings.waiting_room, spotlight: None };
    let room = Room {
        id: id.clone(),
        members: HashMap::new(),
        order: Vec::new(),
        state,
        // Bans outlive the room's task: someone removed earlier in the session stays out
        // after everyone left and the room is made again.
        banned: registry.bans.of(&id).into_iter().collect(),
        remembered: HashMap::new(),
        registry: registry.clone(),
        me: handle.tx.downgrade(),
        breakouts: breakout::Breakouts::default(),
        polls: poll::Polls::default(),
        milestones: milestone::Milestones::default(),
        chat: chat::Chat::default(),
        speakers: speaker::Speakers::default(),
        alerts: alerts::Alerts::default(),
        queues: queue::SpeakingQueues::default(),
        rounds: round::Rounds::default(),
        agenda: agenda::Agenda::default(),
        agreement: agreement::Agreement::default(),
        talk: talktime::TalkTime::default(),
    };
    (room, rx, handle)
}

/// Runs a built room under its watcher (see [`watch`]).
fn start(room: Room, rx: mpsc::Receiver<RoomCommand>, handle: RoomHandle) -> RoomHandle {
    let (id, registry) = (room.id.clone(), room.registry.clone());
    let task = tokio::spawn(room.run(rx, handle.clone()).instrument(info_span!("room", room = %id)));
    tokio::spawn(watch(id, registry, handle.clone(), task));
    handle
}

/// The backstop for a room task that panicked outside the guarded command handling (see
/// [`Room::fail`]): it leaves the registry, so the next join makes a fresh room instead of
/// queueing on a dead one, and is counted.
async fn watch(id: RoomId, registry: Arc<RegistryInner>, me: RoomHandle, task: tokio::task::JoinHandle<()>) {
    if let Err(e) = task.await {
        if e.is_panic() {
            registry.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            error!(room = %id, "room task panicked; removed so the next join starts a fresh room");
            registry.rooms.remove_if(&id, |_, h| h.same_room(&me));
        }
    }
}

impl Room {
    async fn run(mut self, mut rx: mpsc::Receiver<RoomCommand>, me: RoomHandle) {
        info!("room opened");
        let cluster = self.registry.cluster.get().cloned();
        let mut saver = None;
        if let Some(c) = &cluster {
            let mut last = None;
            match c.load_state(&self.id).await {
                // Anyone who can write to Redis can write this: it is checked like client input.
                Ok(Some(json)) => match snapshot::parse(&json) {
                    Ok(snap) => {
                        if self.restore_guarded(snap) {
                            last = Some(json);
                        }
                    }
                    Err(e) => warn!(error = %e, "saved room state refused; starting fresh"),
                },
                Ok(None) => {}
                Err(e) => warn!(error = %e, "saved room state not loaded; starting fresh"),
            }
            saver = Some(StateSaver::spawn(c.clone(), self.id.clone(), last));
        }
        let mut evacuated = false;
        let mut failed = false;
        self.schedule(speaker::TICK, Timer::Speakers);
        while let Some(cmd) = rx.recv().await {
            match cmd {
                RoomCommand::Evacuate(to) => {
                    self.evacuate(to, cluster.as_deref(), saver.take()).await;
                    evacuated = true;
                }
                // A bug in one command must not leave a room that accepts commands and does
                // nothing: the room ends every session (clients rejoin a fresh room) instead.
                cmd => {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(cmd))).is_err() {
                        self.fail();
                        failed = true;
                    }
                }
            }
            if let (Some(saver), false, false) = (saver.as_mut(), evacuated, failed) {
                saver.offer(&self.snapshot());
            }
            if self.members.is_empty() {
                if !evacuated && !failed {
                    self.close_all_polls();
                }
                if let (Some(c), Some(saver)) = (&cluster, saver.take()) {
                    saver.finish().await;
                    if !evacuated {
                        // The session is over here: only its bans outlive it (for
                        // `cluster.state_ttl_secs`), so a removed person cannot come back once
                        // everyone has left, whichever node makes the room again.
                        let result = if self.banned.is_empty() { c.forget(&self.id).await } else { self.keep_only_bans(c).await };
                        if let Err(e) = result {
                            warn!(error = %e, "room state not cleared in the cluster");
                        }
                    }
                }
                // Leave the registry first so new joins create a fresh room, then refuse
                // whatever was already queued here (those callers retry).
                self.registry.rooms.remove_if(&self.id, |_, h| h.same_room(&me));
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if let RoomCommand::Join(_, reply) = cmd {
                        let _ = reply.send(Err(RoomError::Closed));
                    }
                }
                break;
            }
        }
        info!("room closed");
    }

    fn handle(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Join(req, reply) => {
                let result = self.join(req);
                let _ = reply.send(result);
            }
            RoomCommand::Leave(id) => self.remove_member(&id, None),
            RoomCommand::Disconnected(id) => self.disconnected(&id),
            RoomCommand::TrackPublished(id, track) => self.track_published(&id, track),
            RoomCommand::TrackEnded(id, track_id) => self.track_ended(&id, &track_id),
            RoomCommand::Client { from, msg } => self.client(&from, msg),
            RoomCommand::Timer(timer) => self.on_timer(timer),
            // Handled in `run`: it awaits the cluster.
            RoomCommand::Evacuate(_) => {}
        }
    }

    /// Sends every member to the room's next node and empties the room (see
    /// [`RoomCommand::Evacuate`]). Nobody is told that anyone left: they all meet again there.
    async fn evacuate(&mut self, to: Option<String>, cluster: Option<&Cluster>, saver: Option<StateSaver>) {
        // No write of this node's may land after the next owner has started.
        if let Some(saver) = saver {
            saver.finish().await;
        }
        let (url, reason) = match (to, cluster) {
            (Some(url), _) if !url.is_empty() => (Some(url), RedirectReason::Moved),
            // Owned elsewhere, address unknown: clients reconnect through their entry point.
            (Some(_), _) => (None, RedirectReason::Moved),
            (None, Some(c)) => {
                match serde_json::to_string(&self.snapshot()) {
                    Ok(json) => {
                        if let Err(e) = c.save_state(&self.id, &json).await {
                            warn!(error = %e, "room state not saved before the hand-over");
                        }
                    }
                    Err(e) => warn!(error = %e, "room state not serialisable"),
                }
                let url = match c.hand_over(&self.id).await {
                    Ok(url) => url,
                    Err(e) => {
                        warn!(error = %e, "room not handed over");
                        None
                    }
                };
                if url.is_none() {
                    // Nobody to hand it to: whoever joins first claims it again.
                    let _ = c.release(&self.id).await;
                }
                (url, RedirectReason::Draining)
            }
            (None, None) => (None, RedirectReason::Draining),
        };
        info!(moved = url.is_some(), members = self.members.len(), "room leaves this node");
        for id in std::mem::take(&mut self.order) {
            let Some(mut m) = self.members.remove(&id) else { continue };
            self.registry.count(m.info.role, false);
            let msg = match &url {
                Some(url) => ServerMessage::Redirect { url: url.clone(), reason },
                None => ServerMessage::Goodbye { reason: "this relay node is going offline; reconnecting you".into() },
            };
            let _ = m.outbox.try_send(msg);
            if let Some(ended) = m.ended.take() {
                let _ = ended.send(EndReason::Moved);
            }
        }
    }

    /// Restores a validated snapshot; if restoring still fails (a bug), the room starts fresh
    /// rather than half-restored. Returns whether the snapshot was taken.
    fn restore_guarded(&mut self, snap: snapshot::RoomSnapshot) -> bool {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.restore(snap))).is_ok() {
            return true;
        }
        self.registry.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        error!("restoring the saved room state failed; starting fresh");
        self.state = RoomState { locked: false, waiting_room: self.registry.settings.waiting_room, spotlight: None };
        self.banned = self.registry.bans.of(&self.id).into_iter().collect();
        self.remembered.clear();
        self.breakouts = breakout::Breakouts::default();
        self.polls = poll::Polls::default();
        self.milestones = milestone::Milestones::default();
        self.chat = chat::Chat::default();
        self.speakers = speaker::Speakers::default();
        self.queues = queue::SpeakingQueues::default();
        self.agenda = agenda::Agenda::default();
        self.agreement = agreement::Agreement::default();
        false
    }

    /// A command panicked: the room's state can no longer be trusted, so every member's session
    /// ends with a `goodbye` (clients reconnect, as after a node restart) and the room task ends;
    /// the next join makes a fresh room. Counted in `hearth_room_failures_total`.
    fn fail(&mut self) {
        self.registry.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        error!(members = self.members.len(), "room failed; ending every session so clients rejoin a fresh room");
        self.order.clear();
        for (_, mut m) in self.members.drain() {
            self.registry.count(m.info.role, false);
            let _ =
                m.outbox.try_send(ServerMessage::Goodbye { reason: "the session had a problem on the server; reconnecting you".into() });
            if let Some(ended) = m.ended.take() {
                let _ = ended.send(EndReason::Moved);
            }
            m.peer.send(PeerCommand::Close);
        }
    }

    /// Bans `id` for the rest of the session: in this room, and in the registry (and, on relay
    /// nodes, the room's saved state) so that it holds after the room task ends.
    fn ban(&mut self, id: &ParticipantId) {
        self.banned.insert(id.clone());
        self.registry.bans.insert(&self.id, id, snapshot::ban_until(self.registry.settings.ban_ttl));
    }

    /// Relay nodes, the room ended: what stays in Redis is its bans and nothing else.
    async fn keep_only_bans(&self, c: &Cluster) -> Result<(), crate::cluster::ClusterError> {
        let snap = self.bans_only_snapshot();
        if let Ok(json) = serde_json::to_string(&snap) {
            c.save_state(&self.id, &json).await?;
        }
        c.release(&self.id).await
    }

    /// Sends `timer` back to this room after `after`.
    fn schedule(&self, after: std::time::Duration, timer: Timer) {
        let me = self.me.clone();
        // The deadline is taken now, not when the timer task first runs (on a busy machine, or
        // under a test's paused clock, that can be later).
        let deadline = tokio::time::Instant::now() + after;
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(tx) = me.upgrade() {
                let _ = tx.send(RoomCommand::Timer(timer)).await;
            }
        });
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::BreakoutWarning(generation) => self.breakout_warning(generation),
            Timer::BreakoutClose(generation) => self.breakout_timer_close(generation),
            Timer::Grace(id, epoch) => {
                if self.members.get(&id).is_some_and(|m| !m.connected && m.epoch == epoch) {
                    self.remove_member(&id, None);
                }
            }
            Timer::PollClose(poll) => self.poll_timer(&poll),
            Timer::Speakers => self.speaker_tick(),
            Timer::ScreenArrival(id, seq) => self.screen_arrival_check(&id, seq),
            Timer::RoundTurn(space, generation) => self.round_timer(&space, generation),
            Timer::AgendaWarning(generation) => self.agenda_timer(generation),
        }
    }

    // ---- membership ----

    fn join(&mut self, req: JoinRequest) -> Result<(), RoomError> {
        let grant = req.grant;
        let id = grant.participant.clone();
        if self.banned.contains(&id) {
            return Err(RoomError::Banned);
        }
        let remembered = self.remembered.get(&id).copied().unwrap_or_default();
        // Therapists may always enter, so a locked room cannot lock out its own moderator; and
        // someone already admitted who reconnects is not a new join.
        if self.state.locked && grant.role != Role::Therapist && !remembered.admitted && !self.members.contains_key(&id) {
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
            self.resume(grant, req.outbox, req.peer, req.ended);
            return Ok(());
        }
        let max = self.registry.settings.max_room_size;
        if self.members.len() >= max {
            return Err(RoomError::Full(max));
        }
        // An agreement not yet accepted holds everyone but therapists at the door, even with the
        // waiting room off; someone admitted earlier this session is not asked again.
        let at_door = grant.role != Role::Therapist && self.agreement.pending(&id);
        let admitted = remembered.admitted || grant.role == Role::Therapist || (!self.state.waiting_room && !at_door);
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
            can_share_screen: grant.role == Role::Therapist || remembered.can_share_screen,
        };
        let member = Member {
            info,
            admitted: false,
            outbox: req.outbox,
            peer: req.peer,
            tracks: Vec::new(),
            ended: Some(req.ended),
            space: None,
            connected: true,
            epoch: 0,
            screen: None,
            extra_video: Vec::new(),
        };
        self.members.insert(id.clone(), member);
        self.order.push(id.clone());
        self.registry.count(grant.role, true);
        self.send_to(
            &id,
            ServerMessage::Joined {
                protocol_version: PROTOCOL_VERSION,
                room_id: self.id.clone(),
                participant_id: id.clone(),
                name: grant.name,
                role: grant.role,
                // When true, `admitted` with the roster follows at once.
                admitted,
                participants: Vec::new(),
                room: self.state.clone(),
                ice_servers: self.registry.settings.ice_servers.clone(),
            },
        );
        if admitted {
            self.admit(&id);
        } else {
            self.publish_waiting_list();
        }
        self.agreement_on_join(&id);
        if grant.role == Role::Therapist {
            self.send_to(&id, ServerMessage::WaitingList { waiting: self.waiting_list() });
        }
        debug!(participant = %id, size = self.members.len(), admitted, "joined");
        Ok(())
    }

    /// A known participant id connected again: the new connection takes over the place.
    fn resume(&mut self, grant: Grant, outbox: Outbox, peer: PeerHandle, ended: SessionEnd) {
        let id = grant.participant.clone();
        let Some(m) = self.members.get_mut(&id) else { return };
        if m.connected {
            // Another live connection (a second tab): it ends, this one takes over.
            let _ = m.outbox.try_send(ServerMessage::SessionEnded {
                reason: EndReason::Replaced,
                message: "You joined from another window or device.".into(),
            });
            if let Some(old) = m.ended.take() {
                let _ = old.send(EndReason::Replaced);
            }
        }
        m.peer.send(PeerCommand::Close);
        let old_tracks = std::mem::take(&mut m.tracks);
        // A share does not survive its peer connection; the client shares again if it wants.
        m.extra_video.clear();
        m.screen = None;
        m.info.screen_sharing = false;
        m.outbox = outbox;
        m.peer = peer;
        m.ended = Some(ended);
        m.connected = true;
        m.epoch += 1;
        m.info.reconnecting = false;
        let (admitted, space, role) = (m.admitted, m.space.clone(), m.info.role);
        for t in &old_tracks {
            for other in self.members.values().filter(|o| o.info.id != id) {
                other.peer.send(PeerCommand::Unsubscribe(t.id.clone()));
            }
        }
        self.send_to(
            &id,
            ServerMessage::Joined {
                protocol_version: PROTOCOL_VERSION,
                room_id: self.id.clone(),
                participant_id: id.clone(),
                name: grant.name,
                role,
                admitted,
                participants: Vec::new(),
                room: self.state.clone(),
                ice_servers: self.registry.settings.ice_servers.clone(),
            },
        );
        if admitted {
            self.send_to(&id, ServerMessage::Admitted { participants: self.roster_of_space(&None), room: self.state.clone() });
            // In a breakout, `announce_space` also sends that space's open polls.
            if space.is_some() {
                self.announce_space(&id);
            } else {
                self.send_open_polls(&id);
            }
            self.connect_media(&id);
            self.publish_update(&id);
            self.chat_resumed(&id);
            if space.is_none() {
                self.group_arrived(&id);
            }
            let agenda = self.agenda_message();
            self.send_to(&id, agenda);
        }
        self.agreement_on_join(&id);
        if role == Role::Therapist {
            self.send_to(&id, ServerMessage::WaitingList { waiting: self.waiting_list() });
            if !self.breakouts.is_empty() {
                self.publish_breakout_plan();
            }
        }
        debug!(participant = %id, "resumed");
    }

    /// The socket dropped: the place is held (others see `reconnecting`) until the grace
    /// period ends. Someone still waiting simply leaves.
    fn disconnected(&mut self, id: &ParticipantId) {
        let grace = self.registry.settings.reconnect_grace;
        let Some(m) = self.members.get_mut(id) else { return };
        if !m.admitted || grace.is_zero() {
            return self.remove_member(id, None);
        }
        m.connected = false;
        m.info.reconnecting = true;
        m.extra_video.clear();
        m.screen = None;
        m.info.screen_sharing = false;
        let epoch = m.epoch;
        let old_tracks = std::mem::take(&mut m.tracks);
        for t in &old_tracks {
            for other in self.members.values().filter(|o| &o.info.id != id) {
                other.peer.send(PeerCommand::Unsubscribe(t.id.clone()));
            }
        }
        self.publish_update(id);
        self.schedule(grace, Timer::Grace(id.clone(), epoch));
        debug!(participant = %id, "disconnected; holding the place");
    }

    fn admit(&mut self, id: &ParticipantId) {
        let Some(member) = self.members.get_mut(id) else { return };
        if member.admitted {
            return;
        }
        member.admitted = true;
        let info = member.info.clone();
        self.remembered.entry(id.clone()).or_default().admitted = true;
        for other in self.space_of(id).into_iter().filter(|p| p != id) {
            self.send_to(&other, ServerMessage::ParticipantJoined { participant: info.clone() });
        }
        self.send_to(id, ServerMessage::Admitted { participants: self.roster_of_space(&None), room: self.state.clone() });
        self.connect_media(id);
        self.publish_waiting_list();
        self.place_admitted(id);
        self.send_open_polls(id);
        self.chat_admitted(id);
        if self.members.get(id).is_some_and(|m| m.space.is_none()) {
            self.group_arrived(id);
        }
        let agenda = self.agenda_message();
        self.send_to(id, agenda);
        if self.agreement.is_set() {
            self.publish_agreement_statuses();
        }
    }

    /// Subscribes `id` to everyone it should receive, and everyone who should receive it to `id`.
    /// The member's peer connection exists from here on: nobody waiting has one.
    fn connect_media(&self, id: &ParticipantId) {
        let Some(member) = self.members.get(id) else { return };
        member.peer.send(PeerCommand::Activate);
        for other in self.members.values() {
            if forwards(other, member) {
                for t in &other.tracks {
                    member.peer.send(PeerCommand::Subscribe(t.clone()));
                }
            }
            if forwards(member, other) {
                for t in &member.tracks {
                    other.peer.send(PeerCommand::Subscribe(t.clone()));
                }
            }
        }
    }

    /// Removes a member: for a plain leave `reason` is `None`; otherwise the member is told why
    /// and its connection is ended.
    fn remove_member(&mut self, id: &ParticipantId, reason: Option<EndReason>) {
        let Some(mut member) = self.members.remove(id) else { return };
        self.order.retain(|p| p != id);
        self.registry.count(member.info.role, false);
        // The room cuts the media itself, whatever the member's connection task is doing (a
        // client that floods its socket and never reads can hold that task up): its peer
        // closes, and with it every subscription to and from it.
        member.peer.send(PeerCommand::Close);
        for t in &member.tracks {
            for m in self.members.values() {
                m.peer.send(PeerCommand::Unsubscribe(t.id.clone()));
            }
        }
        if let Some(reason) = reason {
            let message = match reason {
                EndReason::Declined => "The therapist did not admit you to this session.",
                EndReason::Removed => "The therapist removed you from this session.",
                EndReason::Ended => "The therapist ended the session. Thank you for being here.",
                EndReason::Replaced => "You joined from another window or device.",
                EndReason::Stalled => "Your connection could not keep up.",
                EndReason::Moved => "The session moved to another server; reconnecting you.",
            };
            let _ = member.outbox.try_send(ServerMessage::SessionEnded { reason, message: message.into() });
            if let Some(ended) = member.ended.take() {
                let _ = ended.send(reason);
            }
        }
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
        self.chat_member_left(id);
        if member.admitted && reason != Some(EndReason::Replaced) {
            self.group_departed(id, &member.space);
        }
        self.agreement.left(id);
        if self.agreement.is_set() {
            self.publish_agreement_statuses();
        }
        debug!(participant = %id, size = self.members.len(), "left");
    }

    fn track_published(&mut self, id: &ParticipantId, track: Arc<PublishedTrack>) {
        let max = self.registry.settings.max_tracks_per_participant;
        if self.members.get(id).is_some_and(|m| m.tracks.len() >= max) {
            warn!(participant = %id, max, "track over the per-participant limit not forwarded");
            return self.error(
                id,
                ErrorCode::TooManyTracks,
                format!("at most {max} tracks (a microphone, a camera and a screen) reach the group; this one does not"),
            );
        }
        if !self.admit_track(id, &track) {
            return;
        }
        let screen = track.source() == crate::signal::protocol::TrackSource::Screen;
        let Some(member) = self.members.get_mut(id) else { return };
        if member.hard_muted(track.kind) {
            track.set_forwarding(false);
        }
        member.tracks.push(track.clone());
        let Some(member) = self.members.get(id) else { return };
        for other in self.members.values() {
            if forwards(member, other) {
                other.peer.send(PeerCommand::Subscribe(track.clone()));
            }
        }
        if screen {
            self.publish_update(id);
            self.screen_forwarded(id, &track);
        }
    }

    fn track_ended(&mut self, id: &ParticipantId, track_id: &TrackId) {
        let Some(member) = self.members.get_mut(id) else { return };
        member.extra_video.retain(|t| &t.id != track_id);
        let ended_screen = member.tracks.iter().any(|t| &t.id == track_id && t.source() == crate::signal::protocol::TrackSource::Screen);
        member.tracks.retain(|t| &t.id != track_id);
        if ended_screen {
            // The browser's own "Stop sharing" ends the track without a message.
            member.info.screen_sharing = false;
            member.screen = None;
        }
        for (pid, m) in &self.members {
            if pid != id {
                m.peer.send(PeerCommand::Unsubscribe(track_id.clone()));
            }
        }
        if ended_screen {
            self.publish_update(id);
        }
    }

    // ---- what clients ask for ----

    fn client(&mut self, from: &ParticipantId, msg: ClientMessage) {
        let Some(sender) = self.members.get(from) else { return };
        let is_therapist = sender.is_therapist();
        let admitted = sender.admitted;
        let kind = msg.kind();
        let moderator_only = matches!(
            msg,
            ClientMessage::Admit { .. }
                | ClientMessage::AdmitAll
                | ClientMessage::Decline { .. }
                | ClientMessage::Mute { .. }
                | ClientMessage::Unmute { .. }
                | ClientMessage::MuteAll { .. }
                | ClientMessage::Remove { .. }
                | ClientMessage::LockRoom { .. }
                | ClientMessage::SetWaitingRoom { .. }
                | ClientMessage::Spotlight { .. }
                | ClientMessage::EndSession
                | ClientMessage::CreateBreakout { .. }
                | ClientMessage::DeleteBreakout { .. }
                | ClientMessage::AssignBreakout { .. }
                | ClientMessage::AutoAssignBreakouts
                | ClientMessage::OpenBreakouts { .. }
                | ClientMessage::BroadcastToBreakouts { .. }
                | ClientMessage::CloseBreakouts { .. }
                | ClientMessage::AllowScreenShare { .. }
                | ClientMessage::GiveFloor { .. }
                | ClientMessage::StartRound { .. }
                | ClientMessage::NextTurn
                | ClientMessage::EndRound
                | ClientMessage::SetAgenda { .. }
                | ClientMessage::StartSegment { .. }
                | ClientMessage::ExtendSegment { .. }
                | ClientMessage::EndSegment
                | ClientMessage::SaveAgendaTemplate { .. }
                | ClientMessage::GetAgendaTemplates
                | ClientMessage::SetAgreement { .. }
        ) || matches!(&msg, ClientMessage::LowerHand { participant_id: Some(p) } if p != from);
        if moderator_only && !is_therapist {
            return self.error(from, ErrorCode::Forbidden, format!("only a therapist can use `{kind}`"));
        }
        // The agreement is accepted at the door, before admission.
        if let msg @ ClientMessage::AcceptAgreement { .. } = msg {
            return self.on_group(from, msg);
        }
        if !admitted {
            return self.error(from, ErrorCode::NotAdmitted, "you are in the waiting room; the therapist will let you in");
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
                    self.admit(&participant_id);
                    self.audit(from, "admit", Some(&participant_id));
                } else {
                    self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is waiting");
                }
            }
            ClientMessage::AdmitAll => {
                // Only those who accepted the agreement (everyone, when there is none).
                for id in self.waiting_ids() {
                    if !self.agreement_pending(&id) {
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
                    .filter(|id| self.members.get(*id).is_some_and(|m| m.admitted && m.info.role == Role::Participant))
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
                self.state.waiting_room = enabled;
                if !enabled {
                    for id in self.waiting_ids() {
                        if !self.agreement_pending(&id) {
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
            ClientMessage::EndSession => {
                self.audit(from, "end_session", None);
                for id in self.order.clone() {
                    self.remove_member(&id, Some(EndReason::Ended));
                }
            }
            // ---- feature handlers (one submodule each) ----
            msg @ (ClientMessage::CreateBreakout { .. }
            | ClientMessage::DeleteBreakout { .. }
            | ClientMessage::AssignBreakout { .. }
            | ClientMessage::AutoAssignBreakouts
            | ClientMessage::OpenBreakouts { .. }
            | ClientMessage::BroadcastToBreakouts { .. }
            | ClientMessage::CloseBreakouts { .. }
            | ClientMessage::GoToBreakout { .. }
            | ClientMessage::AskForHelp) => self.on_breakout(from, msg),
            msg @ (ClientMessage::CreatePoll { .. }
            | ClientMessage::Vote { .. }
            | ClientMessage::ClosePoll { .. }
            | ClientMessage::SharePollResults { .. }) => self.on_poll(from, msg),
            msg @ (ClientMessage::SetCelebrationPreferences { .. }
            | ClientMessage::GetCelebrationPreferences
            | ClientMessage::Celebrate { .. }
            | ClientMessage::ShareMilestone { .. }
            | ClientMessage::ApproveMilestone { .. }
            | ClientMessage::DeclineMilestone { .. }
            | ClientMessage::Congratulate { .. }
            | ClientMessage::GetMilestoneHistory { .. }) => self.on_milestone(from, msg),
            msg @ (ClientMessage::Chat { .. }
            | ClientMessage::SetChatSettings { .. }
            | ClientMessage::DeleteChatMessage { .. }
            | ClientMessage::RequestSupport
            | ClientMessage::OpenPrivateRoom { .. }
            | ClientMessage::ClosePrivateRoom { .. }) => self.on_chat(from, msg),
            msg @ (ClientMessage::ScreenShare { .. } | ClientMessage::AllowScreenShare { .. }) => self.on_screen(from, msg),
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
            // Connection-level messages never reach the room.
            ClientMessage::Join { .. }
            | ClientMessage::Leave
            | ClientMessage::Offer(_)
            | ClientMessage::Answer(_)
            | ClientMessage::IceCandidate { .. }
            | ClientMessage::SetVideoPreference { .. }
            | ClientMessage::Ping { .. } => {}
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
            if raised && _by == target && !self.alerts.allow(target, alerts::Alert::RaiseHand, tokio::time::Instant::now()) {
                return self.error(_by, ErrorCode::RateLimited, alerts::refusal(alerts::Alert::RaiseHand));
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
                t.set_forwarding(false);
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
            t.set_forwarding(true);
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
            .map(|m| WaitingInfo { id: m.info.id.clone(), name: m.info.name.clone(), role: m.info.role })
            .collect()
    }

    fn publish_waiting_list(&mut self) {
        let msg = ServerMessage::WaitingList { waiting: self.waiting_list() };
        let therapists: Vec<_> = self.members.values().filter(|m| m.is_therapist()).map(|m| m.info.id.clone()).collect();
        for id in therapists {
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

    fn audit(&self, actor: &ParticipantId, action: &'static str, target: Option<&ParticipantId>) {
        self.audit_record(actor, action, target.map(|t| t.as_str()));
    }

    /// An audit row whose target is not a participant (the agreement version someone accepted).
    fn audit_detail(&self, actor: &ParticipantId, action: &'static str, detail: &str) {
        self.audit_record(actor, action, Some(detail));
    }

    fn audit_record(&self, actor: &ParticipantId, action: &'static str, target: Option<&str>) {
        info!(actor = %actor, action, target, "moderation");
        let Some(store) = self.registry.store.clone() else { return };
        let (room, actor, target) = (self.id.to_string(), actor.to_string(), target.map(str::to_string));
        tokio::spawn(async move {
            if let Err(e) = store.audit(&room, &actor, action, target.as_deref()).await {
                warn!(error = %e, "audit record not written");
            }
        });
    }

    fn send_to(&mut self, id: &ParticipantId, msg: ServerMessage) {
        let stalled = match self.members.get(id) {
            Some(m) => matches!(m.outbox.try_send(msg), Err(mpsc::error::TrySendError::Full(_))),
            None => false,
        };
        if stalled {
            warn!(participant = %id, "outbox full; disconnecting stalled client");
            self.remove_member(id, Some(EndReason::Stalled));
        }
    }

    fn send_admitted(&mut self, msg: ServerMessage) {
        let ids: Vec<_> = self.members.values().filter(|m| m.admitted).map(|m| m.info.id.clone()).collect();
        for id in ids {
            self.send_to(&id, msg.clone());
        }
    }

    /// Admitted members who share `id`'s space (the main room or the same breakout), `id`
    /// included. Chat, polls and celebrations scope to this.
    fn space_of(&self, id: &ParticipantId) -> Vec<ParticipantId> {
        let Some(me) = self.members.get(id) else { return Vec::new() };
        self.order
            .iter()
            .filter_map(|p| self.members.get(p))
            .filter(|m| m.admitted && m.space == me.space)
            .map(|m| m.info.id.clone())
            .collect()
    }

    /// The name members see for a space id: a breakout's, or a private room's.
    pub(super) fn space_name(&self, space: &str) -> Option<String> {
        self.breakouts.name_of(space).or_else(|| self.chat.private_room_name(space)).map(str::to_string)
    }

    /// Admitted therapists (all spaces): they moderate the whole session.
    fn therapists(&self) -> Vec<ParticipantId> {
        self.members.values().filter(|m| m.admitted && m.is_therapist()).map(|m| m.info.id.clone()).collect()
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

/// Writes the room's snapshot to the cluster when it changes, off the room task: the newest
/// snapshot wins, and an unchanged room writes nothing.
struct StateSaver {
    tx: tokio::sync::watch::Sender<Option<String>>,
    last: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl StateSaver {
    fn spawn(cluster: Arc<Cluster>, room: RoomId, last: Option<String>) -> Self {
        let (tx, mut rx) = tokio::sync::watch::channel::<Option<String>>(None);
        let (c, r) = (cluster, room);
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(json) = rx.borrow_and_update().clone() else { continue };
                if let Err(e) = c.save_state(&r, &json).await {
                    warn!(error = %e, "room state not saved to the cluster");
                }
            }
        });
        Self { tx, last, task }
    }

    fn offer(&mut self, snap: &snapshot::RoomSnapshot) {
        let Ok(json) = serde_json::to_string(snap) else { return };
        if self.last.as_deref() != Some(json.as_str()) {
            self.last = Some(json.clone());
            let _ = self.tx.send(Some(json));
        }
    }

    /// Waits for the last offered snapshot to be written.
    async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::protocol::ServerMessage;
    use tokio::sync::oneshot;

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
        let grant = Grant { participant, room: RoomId::new("r").unwrap(), role, name: id.into(), expires_at: u64::MAX };
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
        let (mut room, rx, handle) = build(id.clone(), registry.clone());
        room.breakouts.set_next_id_for_test(u32::MAX);
        let handle = start(room, rx, handle);
        registry.rooms.insert(id.clone(), handle.clone());
        let mut t = join(&handle, &sfu, "t", Role::Therapist).await;
        let mut p = join(&handle, &sfu, "p", Role::Participant).await;
        assert_eq!(registry.participants.load(std::sync::atomic::Ordering::Relaxed), 2);

        let from = ParticipantId::from_trusted("t");
        handle.send(RoomCommand::Client { from, msg: ClientMessage::CreateBreakout { name: "Pairs".into() } }).await;
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
