//! The room's task: the thin shell around the room core that talks to the world.
//!
//! It takes commands from the room's channel one at a time, reads the clock, hands the core an
//! input with that time, and performs the [`Effect`]s the core returns, in order. It alone owns
//! each member's outbox, peer handle and session-end signal, the store writers, the timers, the
//! registry's counters and bans, and (relay nodes) the cluster and the snapshot saver. It holds
//! no rule: every decision is the core's.
//!
//! The stall rule needs a send's result: a full outbox is a client that stopped reading. The
//! task performs effects in order and, when a send finds an outbox full, tells the core at
//! once (`Room::stalled`); the core evicts the member and the eviction's effects are performed
//! before the rest of the batch. What the rest of the batch still says about the evicted member
//! (messages or peer commands for it, others' subscriptions to its tracks) is dropped, as if it
//! had left before that command.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info, info_span, warn, Instrument};

use super::effect::{Effect, Now, Read};
use super::milestone::{spawn_store_task, StoreJobs};
use super::snapshot;
use super::{JoinRequest, Loaded, Outbox, Room, RoomCommand, RoomError, RoomHandle, RoomInput, SessionEnd, Timer};
use crate::cluster::Cluster;
use crate::room::shared::RegistryInner;
use crate::sfu::{PeerCommand, PeerHandle};
use crate::signal::protocol::{RedirectReason, ServerMessage};
use crate::store::PollRecord;
use crate::vocab::{ParticipantId, Role, RoomId};

/// One member's connection, as the task holds it.
struct Conn {
    outbox: Outbox,
    peer: PeerHandle,
    ended: Option<SessionEnd>,
}

/// Performs a room's effects.
pub(super) struct Performer {
    room: RoomId,
    registry: Arc<RegistryInner>,
    me: mpsc::WeakSender<RoomCommand>,
    conns: HashMap<ParticipantId, Conn>,
    /// The connection of the join being handled, until the core attaches it to a place.
    joining: Option<Conn>,
    poll_writer: Option<mpsc::UnboundedSender<PollRecord>>,
    partner_writer: Option<mpsc::UnboundedSender<Vec<Vec<ParticipantId>>>>,
    milestone_jobs: Option<StoreJobs>,
}

impl Performer {
    fn new(room: RoomId, registry: Arc<RegistryInner>, me: mpsc::WeakSender<RoomCommand>) -> Self {
        Self { room, registry, me, conns: HashMap::new(), joining: None, poll_writer: None, partner_writer: None, milestone_jobs: None }
    }

    /// Performs `effects` in order (see the module comment for a full outbox).
    fn perform(&mut self, core: &mut Room, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut evicted: HashSet<ParticipantId> = HashSet::new();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Send { to, msg } => {
                    if evicted.contains(&to) {
                        continue;
                    }
                    let Some(conn) = self.conns.get(&to) else { continue };
                    if let Err(mpsc::error::TrySendError::Full(_)) = conn.outbox.try_send(msg) {
                        warn!(participant = %to, "outbox full; disconnecting stalled client");
                        evicted.insert(to.clone());
                        let (_, more) = core.with(Now::real(), |r| r.stalled(&to));
                        for e in more.into_iter().rev() {
                            queue.push_front(e);
                        }
                    }
                }
                Effect::End { who, msg, reason } => {
                    if let Some(conn) = self.conns.get_mut(&who) {
                        let _ = conn.outbox.try_send(msg);
                        if let Some(ended) = conn.ended.take() {
                            let _ = ended.send(reason);
                        }
                    }
                }
                Effect::Peer { to, cmd } => {
                    let about_evicted = match &cmd {
                        PeerCommand::Subscribe(t) => evicted.contains(&t.publisher),
                        PeerCommand::Close => false,
                        _ => evicted.contains(&to),
                    };
                    if about_evicted {
                        continue;
                    }
                    if let Some(conn) = self.conns.get(&to) {
                        conn.peer.send(cmd);
                    }
                }
                Effect::Forwarding { track, on } => track.set_forwarding(on),
                Effect::Attach(id) => {
                    if let Some(conn) = self.joining.take() {
                        self.conns.insert(id, conn);
                    }
                }
                Effect::Detach(id) => {
                    self.conns.remove(&id);
                }
                Effect::Timer { at, timer } => self.set_timer(at, timer),
                Effect::Count { role, joined } => self.registry.count(role, joined),
                Effect::Ban(id) => self.registry.bans.insert(&self.room, &id, snapshot::ban_until(self.registry.settings.ban_ttl)),
                Effect::Audit { actor, role, action, target } => self.audit(actor, role, action, target.map(|t| t.to_string())),
                Effect::AuditNote { actor, role, action, note } => self.audit(actor, role, action, Some(note)),
                Effect::AgendaTemplates { therapist, save } => self.agenda_templates(therapist, save),
                Effect::SavePartners(groups) => {
                    let Some(store) = &self.registry.store else { continue };
                    let writer = self.partner_writer.get_or_insert_with(|| spawn_partner_writer(store.clone(), self.room.clone()));
                    let _ = writer.send(groups);
                }
                Effect::Read(read) => self.read(read),
                Effect::SavePoll(record) => {
                    let Some(store) = &self.registry.store else { continue };
                    let writer = self.poll_writer.get_or_insert_with(|| super::poll::spawn_writer(store.clone()));
                    let _ = writer.send(*record);
                }
                Effect::Milestone(job) => {
                    let Some(store) = &self.registry.store else { continue };
                    let reply_to = job.reply_to().and_then(|id| self.conns.get(id)).map(|c| c.outbox.clone());
                    let prefs = core.milestones.shared_prefs();
                    let jobs = self.milestone_jobs.get_or_insert_with(|| spawn_store_task(store.clone(), prefs, self.me.clone()));
                    let _ = jobs.send((job, reply_to));
                }
                Effect::Record(record) => {
                    if let Some(recorder) = &self.registry.recorder {
                        recorder.record(record);
                    }
                }
                Effect::RememberDoor(memory) => {
                    if let Some(recorder) = &self.registry.recorder {
                        recorder.record(crate::store::Record::Door(memory.record(&self.room)));
                    }
                    self.registry.doors.set(&self.room, memory);
                }
                Effect::SessionEnded(summary) => {
                    if let Some(webhook) = &self.registry.webhook {
                        webhook.deliver(*summary);
                    }
                }
            }
        }
    }

    /// Sends `timer` back to the room at `at`.
    fn set_timer(&self, at: tokio::time::Instant, timer: Timer) {
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(tx) = me.upgrade() {
                let _ = tx.send(RoomInput::Timer(timer).into()).await;
            }
        });
    }

    /// Reads from the store off the room task and hands the result back as an input. A read
    /// that fails is logged and the room carries on without it.
    fn read(&self, read: Read) {
        let Some(store) = self.registry.store.clone() else { return };
        let (me, room) = (self.me.clone(), self.room.clone());
        tokio::spawn(async move {
            let loaded = match read {
                Read::Partners => store.partners(room.as_str()).await.map(Loaded::Partners),
                Read::PreviousCheckIns(check_in, session) => store.previous_check_ins(room.as_str(), session.as_str()).await.map(|rows| {
                    let values = rows.into_iter().map(|(p, v)| (ParticipantId::from_trusted(p), v)).collect();
                    Loaded::PreviousCheckIns(check_in, values)
                }),
            };
            match loaded {
                Ok(loaded) => {
                    if let Some(tx) = me.upgrade() {
                        let _ = tx.send(RoomInput::Loaded(loaded).into()).await;
                    }
                }
                Err(e) => warn!(error = %e, "saved room data not read"),
            }
        });
    }

    fn audit(&self, actor: ParticipantId, role: Option<Role>, action: &'static str, target: Option<String>) {
        let role = role.map(Role::as_str);
        info!(actor = %actor, role, action, target = target.as_deref(), "moderation");
        let Some(store) = self.registry.store.clone() else { return };
        let room = self.room.to_string();
        tokio::spawn(async move {
            if let Err(e) = store.audit(&room, actor.as_str(), role, action, target.as_deref()).await {
                warn!(error = %e, "audit record not written");
            }
        });
    }

    /// Saves a template (when asked), then sends the therapist their templates, off the room
    /// task. The reply goes straight to their outbox: a full one just misses it.
    fn agenda_templates(&self, therapist: ParticipantId, save: Option<(String, Vec<crate::signal::protocol::AgendaItem>)>) {
        let Some(outbox) = self.conns.get(&therapist).map(|c| c.outbox.clone()) else { return };
        let Some(store) = self.registry.store.clone() else {
            let _ = outbox.try_send(ServerMessage::AgendaTemplates { templates: Vec::new() });
            return;
        };
        tokio::spawn(async move {
            if let Some((name, items)) = save {
                if let Err(e) = store.save_agenda_template(therapist.as_str(), &name, &items).await {
                    warn!(error = %e, "agenda template not saved");
                    let message = "the template could not be saved; try again".to_string();
                    let _ = outbox.try_send(ServerMessage::Error { code: crate::signal::protocol::ErrorCode::Internal, message });
                    return;
                }
            }
            match store.agenda_templates(therapist.as_str()).await {
                Ok(templates) => {
                    let _ = outbox.try_send(ServerMessage::AgendaTemplates { templates });
                }
                Err(e) => warn!(error = %e, "agenda templates not read"),
            }
        });
    }
}

/// The room's partner-group saves, written in order (the last one wins).
fn spawn_partner_writer(store: crate::store::Store, room: RoomId) -> mpsc::UnboundedSender<Vec<Vec<ParticipantId>>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Vec<ParticipantId>>>();
    tokio::spawn(async move {
        while let Some(mut groups) = rx.recv().await {
            while let Ok(newer) = rx.try_recv() {
                groups = newer;
            }
            if let Err(e) = store.save_partners(room.as_str(), &groups).await {
                warn!(error = %e, "partner groups not saved");
            }
        }
    });
    tx
}

pub(in crate::room) fn spawn(id: RoomId, registry: Arc<RegistryInner>) -> RoomHandle {
    let (room, rx, handle) = build(id, registry.clone());
    start(room, registry, rx, handle)
}

/// A room and its channel, not yet running.
pub(super) fn build(id: RoomId, registry: Arc<RegistryInner>) -> (Room, mpsc::Receiver<RoomCommand>, RoomHandle) {
    let (tx, rx) = mpsc::channel(1024);
    let handle = RoomHandle { tx };
    // Bans outlive the room's task: someone removed earlier in the session stays out after
    // everyone left and the room is made again.
    let banned = registry.bans.of(&id);
    let mut room = Room::new(id.clone(), registry.settings.clone(), registry.store.is_some(), banned, Now::real());
    // The waiting room of a new session says what the last one left (see `door.rs`).
    room.door = super::door::Door::new(registry.doors.of(&id));
    (room, rx, handle)
}

/// Runs a built room under its watcher (see [`watch`]).
pub(super) fn start(room: Room, registry: Arc<RegistryInner>, rx: mpsc::Receiver<RoomCommand>, handle: RoomHandle) -> RoomHandle {
    let id = room.id().clone();
    let performer = Performer::new(id.clone(), registry.clone(), handle.tx.downgrade());
    let task = tokio::spawn(run(room, performer, rx, handle.clone()).instrument(info_span!("room", room = %id)));
    tokio::spawn(watch(id, registry, handle.clone(), task));
    handle
}

/// The backstop for a room task that panicked outside the guarded command handling: it leaves
/// the registry, so the next join makes a fresh room instead of queueing on a dead one, and is
/// counted.
async fn watch(id: RoomId, registry: Arc<RegistryInner>, me: RoomHandle, task: tokio::task::JoinHandle<()>) {
    if let Err(e) = task.await {
        if e.is_panic() {
            registry.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            error!(room = %id, "room task panicked; removed so the next join starts a fresh room");
            registry.rooms.remove_if(&id, |_, h| h.same_room(&me));
        }
    }
}

async fn run(mut room: Room, mut io: Performer, mut rx: mpsc::Receiver<RoomCommand>, me: RoomHandle) {
    info!("room opened");
    let id = room.id().clone();
    let registry = io.registry.clone();
    let cluster = registry.cluster.get().cloned();
    let mut saver = None;
    if let Some(c) = &cluster {
        let mut last = None;
        match c.load_state(&id).await {
            // Anyone who can write to Redis can write this: it is checked like client input.
            Ok(Some(json)) => match snapshot::parse(&json) {
                Ok(snap) => {
                    if restore_guarded(&mut room, &mut io, snap) {
                        last = Some(json);
                    }
                }
                Err(e) => warn!(error = %e, "saved room state refused; starting fresh"),
            },
            Ok(None) => {}
            Err(e) => warn!(error = %e, "saved room state not loaded; starting fresh"),
        }
        saver = Some(StateSaver::spawn(c.clone(), id.clone(), last));
    }
    let mut evacuated = false;
    let mut failed = false;
    let (_, effects) = room.with(Now::real(), Room::start);
    io.perform(&mut room, effects);
    while let Some(cmd) = rx.recv().await {
        let now = Now::real();
        // A store read the room asked for when it started may come back before the first
        // join: the room is empty then, but not over (closing it would drop its saved state).
        let mut may_close = true;
        match cmd {
            RoomCommand::Evacuate(to) => {
                evacuate(&mut room, &mut io, to, cluster.as_deref(), saver.take()).await;
                evacuated = true;
            }
            RoomCommand::Join(req, reply) => {
                let JoinRequest { grant, outbox, peer, ended } = req;
                io.joining = Some(Conn { outbox, peer, ended: Some(ended) });
                let result = guarded(&mut room, &mut io, now, |r| r.join(grant), &mut failed).unwrap_or(Err(RoomError::Closed));
                io.joining = None;
                // Only now: the room has queued `joined` (and more) on the outbox.
                let _ = reply.send(result);
            }
            RoomCommand::Input(input) => {
                may_close = !matches!(input, RoomInput::Loaded(_));
                guarded(&mut room, &mut io, now, |r| r.handle(input), &mut failed);
            }
        }
        if let (Some(saver), false, false) = (saver.as_mut(), evacuated, failed) {
            saver.offer(&room.snapshot());
        }
        if room.is_empty() && (may_close || evacuated || failed) {
            if !evacuated && !failed {
                let (_, effects) = room.with(Now::real(), Room::close_all_polls);
                io.perform(&mut room, effects);
            }
            if let (Some(c), Some(saver)) = (&cluster, saver.take()) {
                saver.finish().await;
                if !evacuated {
                    // The session is over here: only its bans and its door outlive it (for
                    // `cluster.state_ttl_secs`), so a removed person cannot come back once
                    // everyone has left, and the next session's waiting room says what this
                    // one's did, whichever node makes the room again.
                    let keep = room.has_bans() || room.door_snapshot() != super::door::DoorSnap::default();
                    let result = if keep { keep_for_next_session(&room, c).await } else { c.forget(&id).await };
                    if let Err(e) = result {
                        warn!(error = %e, "room state not cleared in the cluster");
                    }
                }
            }
            // Leave the registry first so new joins create a fresh room, then refuse
            // whatever was already queued here (those callers retry).
            registry.rooms.remove_if(&id, |_, h| h.same_room(&me));
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

/// Runs one input through the core and performs its effects. A bug in one command must not
/// leave a room that accepts commands and does nothing: the room ends every session (clients
/// rejoin a fresh room) instead. `None` when the command panicked.
fn guarded<R>(room: &mut Room, io: &mut Performer, now: Now, f: impl FnOnce(&mut Room) -> R, failed: &mut bool) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| room.with(now, f))) {
        Ok((result, effects)) => {
            io.perform(room, effects);
            Some(result)
        }
        Err(_) => {
            io.registry.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (_, effects) = room.with(now, Room::fail);
            io.perform(room, effects);
            *failed = true;
            None
        }
    }
}

/// Restores a validated snapshot; if restoring still fails (a bug), the room starts fresh
/// rather than half-restored. Returns whether the snapshot was taken.
fn restore_guarded(room: &mut Room, io: &mut Performer, snap: snapshot::RoomSnapshot) -> bool {
    let now = Now::real();
    if let Ok(((), effects)) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| room.with(now, |r| r.restore(snap)))) {
        io.perform(room, effects);
        return true;
    }
    io.registry.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    error!("restoring the saved room state failed; starting fresh");
    room.reset(io.registry.bans.of(&io.room));
    false
}

/// Sends every member to the room's next node and empties the room (see
/// [`RoomCommand::Evacuate`]). Nobody is told that anyone left: they all meet again there.
async fn evacuate(room: &mut Room, io: &mut Performer, to: Option<String>, cluster: Option<&Cluster>, saver: Option<StateSaver>) {
    // No write of this node's may land after the next owner has started.
    if let Some(saver) = saver {
        saver.finish().await;
    }
    let id = room.id().clone();
    let (url, reason) = match (to, cluster) {
        (Some(url), _) if !url.is_empty() => (Some(url), RedirectReason::Moved),
        // Owned elsewhere, address unknown: clients reconnect through their entry point.
        (Some(_), _) => (None, RedirectReason::Moved),
        (None, Some(c)) => {
            match serde_json::to_string(&room.snapshot()) {
                Ok(json) => {
                    if let Err(e) = c.save_state(&id, &json).await {
                        warn!(error = %e, "room state not saved before the hand-over");
                    }
                }
                Err(e) => warn!(error = %e, "room state not serialisable"),
            }
            let url = match c.hand_over(&id).await {
                Ok(url) => url,
                Err(e) => {
                    warn!(error = %e, "room not handed over");
                    None
                }
            };
            if url.is_none() {
                // Nobody to hand it to: whoever joins first claims it again.
                let _ = c.release(&id).await;
            }
            (url, RedirectReason::Draining)
        }
        (None, None) => (None, RedirectReason::Draining),
    };
    let msg = match &url {
        Some(url) => ServerMessage::Redirect { url: url.clone(), reason },
        None => ServerMessage::Goodbye { reason: "this relay node is going offline; reconnecting you".into() },
    };
    let (_, effects) = room.with(Now::real(), |r| r.evacuate(msg));
    io.perform(room, effects);
}

/// Relay nodes, the room ended: what stays in Redis is its bans and its door, nothing else.
async fn keep_for_next_session(room: &Room, c: &Cluster) -> Result<(), crate::cluster::ClusterError> {
    let snap = room.next_session_snapshot();
    if let Ok(json) = serde_json::to_string(&snap) {
        c.save_state(room.id(), &json).await?;
    }
    c.release(room.id()).await
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
