//! The room's rules driven directly: no task, no channels, no sockets, no sleeps. Inputs go into
//! the core with a simulated time, and the effects that come back are replayed into a model of
//! the world: what each connection was sent, what each peer was asked to subscribe to, the
//! node's counters, the bans, the timers (fired in order as the simulated clock moves).
//!
//! A property test runs random sessions and checks after every step what must always hold:
//! nobody waiting is sent the room or gets media, every admitted member's subscriptions are
//! exactly what `forwards()` says, the counts add up, a ban keeps someone out, and a
//! participant's moderator action changes nothing. Unit tests below pin single rules.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::signal::protocol::{CelebrationAudience, CelebrationStyle, MilestoneKind, PollCloseReason, ServerMessage};

/// Settings for tests: rooms of six, a 30 s reconnect grace.
pub(super) fn settings(waiting_room: bool, reconnect_grace: Duration) -> RoomSettings {
    RoomSettings {
        max_room_size: 6,
        max_tracks_per_participant: 3,
        waiting_room,
        e2ee: crate::vocab::E2eeMode::Off,
        reconnect_grace,
        ice_servers: Vec::new(),
        turn: None,
        ballot_secret: [7; 32],
        ban_ttl: Duration::from_secs(3600),
        late_after: Duration::from_secs(300),
        talk_time_in_attendance: false,
        support_resources: "Call your local crisis line.".into(),
        co_facilitator_withheld: Vec::new(),
    }
}

/// What rooms share, for tests of the room task: no store, no cluster.
pub(super) fn context_with(waiting_room: bool, reconnect_grace: Duration) -> Arc<crate::room::shared::RegistryInner> {
    Arc::new(crate::room::shared::RegistryInner {
        rooms: dashmap::DashMap::new(),
        participants: Default::default(),
        by_role: Default::default(),
        settings: settings(waiting_room, reconnect_grace),
        store: None,
        recorder: None,
        webhook: None,
        cluster: std::sync::OnceLock::new(),
        bans: Default::default(),
        doors: Default::default(),
        failures: Default::default(),
    })
}

/// One connection of one person, as the effects describe it.
#[derive(Default)]
struct Conn {
    admitted_seen: bool,
    activated: bool,
    sent: Vec<ServerMessage>,
    ended: Option<EndReason>,
}

/// The core and the world its effects built.
struct Model {
    room: Room,
    start: Now,
    now: Now,
    /// Timers set and not yet fired, in the order set.
    timers: Vec<(tokio::time::Instant, Timer)>,
    /// The connection each participant id is attached to.
    conns: HashMap<ParticipantId, Conn>,
    /// Connections that ended, kept for what they were sent.
    past: Vec<(ParticipantId, Conn)>,
    /// Each peer's subscriptions, replayed from `Subscribe`/`Unsubscribe`.
    subs: HashMap<ParticipantId, BTreeSet<TrackId>>,
    counted: HashMap<Role, i64>,
    bans: HashSet<ParticipantId>,
    audits: Vec<&'static str>,
    /// Session records for the store, in order.
    records: Vec<crate::store::Record>,
    forwarding: HashMap<TrackId, bool>,
    next_track: usize,
    /// Inputs handled (joins and fired timers included).
    steps: u64,
}

/// People in the tests: 0 the therapist, 1–4 participants, 5 an observer.
fn person(i: usize) -> (ParticipantId, Role) {
    match i {
        0 => (ParticipantId::from_trusted("t"), Role::Therapist),
        5 => (ParticipantId::from_trusted("o"), Role::Observer),
        n => (ParticipantId::from_trusted(format!("p{n}")), Role::Participant),
    }
}

fn pid(i: usize) -> ParticipantId {
    person(i).0
}

fn therapist() -> ParticipantId {
    pid(0)
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Admit(usize),
    AdmitAll,
    Decline(usize, bool),
    Remove(usize),
    Leave(usize),
    Disconnect(usize),
    Stall(usize),
    Lock(bool),
    WaitingRoom(bool),
    HardMute(usize),
    Unmute(usize),
    Publish(usize, MediaKind),
    Unpublish(usize),
    /// A participant (1–4) tries a therapist's action on someone.
    Usurp(usize, usize),
    CreateBreakout,
    Assign(usize),
    OpenBreakouts,
    CloseBreakouts,
    GoBack(usize),
    Chat(usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![Just(MediaKind::Audio), Just(MediaKind::Video)];
    prop_oneof![
        4 => (0..6usize).prop_map(Op::Join),
        3 => (1..6usize).prop_map(Op::Admit),
        1 => Just(Op::AdmitAll),
        1 => (1..6usize, any::<bool>()).prop_map(|(i, f)| Op::Decline(i, f)),
        1 => (1..6usize).prop_map(Op::Remove),
        1 => (0..6usize).prop_map(Op::Leave),
        1 => (0..6usize).prop_map(Op::Disconnect),
        1 => (0..6usize).prop_map(Op::Stall),
        1 => any::<bool>().prop_map(Op::Lock),
        1 => any::<bool>().prop_map(Op::WaitingRoom),
        1 => (1..5usize).prop_map(Op::HardMute),
        1 => (1..5usize).prop_map(Op::Unmute),
        4 => (0..6usize, kind).prop_map(|(i, k)| Op::Publish(i, k)),
        1 => (0..6usize).prop_map(Op::Unpublish),
        2 => (1..5usize, 0..6usize).prop_map(|(a, b)| Op::Usurp(a, b)),
        1 => Just(Op::CreateBreakout),
        2 => (1..5usize).prop_map(Op::Assign),
        1 => Just(Op::OpenBreakouts),
        1 => Just(Op::CloseBreakouts),
        1 => (1..5usize).prop_map(Op::GoBack),
        1 => (0..5usize).prop_map(Op::Chat),
        1 => (1..60u16).prop_map(Op::Advance),
    ]
}

/// What someone who was never admitted on a connection may be sent on it.
fn allowed_while_waiting(m: &ServerMessage) -> bool {
    // Who holds the keys is told to everyone who joined (a waiting client checks it before
    // admission), and the agreement and the waiting room's welcome are what the door shows.
    matches!(
        m,
        ServerMessage::Joined { .. }
            | ServerMessage::Error { .. }
            | ServerMessage::SessionEnded { .. }
            | ServerMessage::E2eeLeader { .. }
            | ServerMessage::Agreement { .. }
            | ServerMessage::WaitingRoom { .. }
    )
}

impl Model {
    fn new(waiting_room: bool) -> Self {
        Self::with_settings(settings(waiting_room, Duration::from_secs(30)))
    }

    fn with_settings(settings: RoomSettings) -> Self {
        let start = Now { at: tokio::time::Instant::from_std(std::time::Instant::now()), unix_ms: 1_750_000_000_000 };
        let mut room = Room::new(RoomId::new("model").expect("room id"), settings, false, Vec::new(), start);
        let (_, effects) = room.with(start, Room::start);
        let mut model = Self {
            room,
            start,
            now: start,
            timers: Vec::new(),
            conns: HashMap::new(),
            past: Vec::new(),
            subs: HashMap::new(),
            counted: HashMap::new(),
            bans: HashSet::new(),
            audits: Vec::new(),
            records: Vec::new(),
            forwarding: HashMap::new(),
            next_track: 0,
            steps: 0,
        };
        model.replay(effects);
        model
    }

    fn input(&mut self, input: RoomInput) {
        self.steps += 1;
        let now = self.now;
        let (_, effects) = self.room.with(now, |r| r.handle(input));
        self.replay(effects);
    }

    /// The task found `i`'s outbox full.
    fn stalled(&mut self, i: usize) {
        self.steps += 1;
        let now = self.now;
        let (_, effects) = self.room.with(now, |r| r.stalled(&pid(i)));
        self.replay(effects);
    }

    fn client(&mut self, from: &ParticipantId, msg: ClientMessage) {
        self.input(RoomInput::Client { from: from.clone(), msg });
    }

    fn join(&mut self, i: usize) -> Result<(), RoomError> {
        self.steps += 1;
        let (id, role) = person(i);
        let grant = Grant {
            participant: id,
            room: self.room.id.clone(),
            role,
            name: format!("Name {i}"),
            expires_at: u64::MAX,
            issued_at: 0,
            sponsor: None,
        };
        let now = self.now;
        let (result, effects) = self.room.with(now, |r| r.join(grant));
        self.replay(effects);
        result
    }

    fn publish(&mut self, i: usize, kind: MediaKind) -> TrackId {
        self.next_track += 1;
        let id = format!("{}/{kind:?}/{}", pid(i), self.next_track);
        let track = crate::sfu::PublishedTrack::for_test(&id, pid(i), kind);
        self.input(RoomInput::TrackPublished(pid(i), track));
        id
    }

    /// Moves the simulated clock `d` on, firing every timer due on the way, in time order.
    fn advance(&mut self, d: Duration) {
        let until = self.now.at + d;
        loop {
            let due =
                self.timers.iter().enumerate().filter(|(_, (at, _))| *at <= until).min_by_key(|(n, (at, _))| (*at, *n)).map(|(n, _)| n);
            let Some(n) = due else { break };
            let (at, timer) = self.timers.remove(n);
            self.now = self.start.after(at - self.start.at);
            self.input(RoomInput::Timer(timer));
        }
        self.now = self.start.after(until - self.start.at);
    }

    /// Applies effects to the model of the world, checking those that must never happen.
    fn replay(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Attach(id) => {
                    if let Some(old) = self.conns.insert(id.clone(), Conn::default()) {
                        self.past.push((id.clone(), old));
                    }
                    // A new connection has a new peer, which subscribes to nothing yet.
                    self.subs.remove(&id);
                }
                Effect::Detach(id) => {
                    if let Some(old) = self.conns.remove(&id) {
                        self.past.push((id.clone(), old));
                    }
                    self.subs.remove(&id);
                }
                Effect::Send { to, msg } => {
                    let conn = self.conns.get_mut(&to).unwrap_or_else(|| panic!("{to} sent {msg:?} without a connection"));
                    if matches!(msg, ServerMessage::Admitted { .. }) {
                        conn.admitted_seen = true;
                    }
                    assert!(conn.admitted_seen || allowed_while_waiting(&msg), "{to} was sent {msg:?} before being admitted");
                    if matches!(msg, ServerMessage::WaitingList { .. }) {
                        // The role this connection joined with (the member may leave later in the batch).
                        let staff = conn.sent.iter().any(|m| matches!(m, ServerMessage::Joined { role, .. } if role.facilitates()));
                        assert!(staff, "only staff see the waiting list, not {to}");
                    }
                    conn.sent.push(msg);
                }
                Effect::End { who, msg, reason } => {
                    let conn = self.conns.get_mut(&who).unwrap_or_else(|| panic!("{who}'s session ended without a connection"));
                    conn.sent.push(msg);
                    conn.ended = Some(reason);
                }
                Effect::Peer { to, cmd } => {
                    let Some(conn) = self.conns.get_mut(&to) else {
                        panic!("{to}'s peer asked {cmd:?} without a connection");
                    };
                    match cmd {
                        // Closing a peer is always allowed (a waiting person leaves, is declined).
                        PeerCommand::Close => {
                            self.subs.remove(&to);
                        }
                        PeerCommand::Activate => {
                            assert!(conn.admitted_seen, "{to}'s peer activated before admission");
                            conn.activated = true;
                        }
                        PeerCommand::Subscribe(t) => {
                            assert!(conn.admitted_seen, "{to} subscribed to {} before admission", t.id);
                            assert!(self.subs.entry(to.clone()).or_default().insert(t.id.clone()), "{to} subscribed twice to {}", t.id);
                        }
                        PeerCommand::Unsubscribe(t) => {
                            self.subs.entry(to.clone()).or_default().remove(&t);
                        }
                        other => panic!("the room asked {to}'s peer {other:?}"),
                    }
                }
                Effect::Timer { at, timer } => {
                    assert!(at >= self.now.at, "a timer set in the past: {timer:?}");
                    self.timers.push((at, timer));
                }
                Effect::Count { role, joined } => *self.counted.entry(role).or_default() += if joined { 1 } else { -1 },
                Effect::Ban(id) => {
                    self.bans.insert(id);
                }
                Effect::Audit { action, .. } | Effect::AuditNote { action, .. } => self.audits.push(action),
                Effect::Forwarding { track, on } => {
                    self.forwarding.insert(track.id.clone(), on);
                }
                Effect::SavePoll(_)
                | Effect::Milestone(_)
                | Effect::AgendaTemplates { .. }
                | Effect::SavePartners(_)
                | Effect::Read(_)
                | Effect::SessionEnded(_)
                | Effect::RememberDoor(_) => {}
                Effect::Record(r) => self.records.push(r),
            }
        }
    }

    fn breakout_id(&self) -> Option<String> {
        self.room.breakouts.first_id()
    }

    fn apply(&mut self, op: &Op) {
        let t = therapist();
        match op {
            Op::Join(i) => {
                let _ = self.join(*i);
            }
            Op::Admit(i) => self.client(&t, ClientMessage::Admit { participant_id: pid(*i) }),
            Op::AdmitAll => self.client(&t, ClientMessage::AdmitAll),
            Op::Decline(i, f) => self.client(&t, ClientMessage::Decline { participant_id: pid(*i), r#final: *f }),
            Op::Remove(i) => self.client(&t, ClientMessage::Remove { participant_id: pid(*i) }),
            Op::Leave(i) => self.input(RoomInput::Leave(pid(*i))),
            Op::Disconnect(i) => self.input(RoomInput::Disconnected(pid(*i))),
            Op::Stall(i) => self.stalled(*i),
            Op::Lock(locked) => self.client(&t, ClientMessage::LockRoom { locked: *locked }),
            Op::WaitingRoom(enabled) => self.client(&t, ClientMessage::SetWaitingRoom { enabled: *enabled }),
            Op::HardMute(i) => self.client(&t, ClientMessage::Mute { participant_id: pid(*i), kind: MediaKind::Audio, hard: true }),
            Op::Unmute(i) => self.client(&t, ClientMessage::Unmute { participant_id: pid(*i), kind: MediaKind::Audio }),
            Op::Publish(i, kind) => {
                if self.room.members.contains_key(&pid(*i)) {
                    self.publish(*i, *kind);
                }
            }
            Op::Unpublish(i) => {
                let first = self.room.members.get(&pid(*i)).and_then(|m| m.tracks.first()).map(|t| t.id.clone());
                if let Some(track) = first {
                    self.input(RoomInput::TrackEnded(pid(*i), track));
                }
            }
            Op::Usurp(a, b) => {
                let (before, state, bans) = (self.admitted(), self.room.state.clone(), self.bans.clone());
                let (who, target) = (pid(*a), pid(*b));
                let audits = self.audits.len();
                self.client(&who, ClientMessage::Admit { participant_id: target.clone() });
                self.client(&who, ClientMessage::Remove { participant_id: target.clone() });
                self.client(&who, ClientMessage::LockRoom { locked: !state.locked });
                self.client(&who, ClientMessage::SetWaitingRoom { enabled: !state.waiting_room });
                self.client(&who, ClientMessage::Mute { participant_id: target.clone(), kind: MediaKind::Audio, hard: true });
                self.client(&who, ClientMessage::EndSession { confirm: true, closing_message: None });
                assert_eq!(self.admitted(), before, "{who}'s moderator actions changed who is in");
                assert_eq!(self.room.state, state, "{who} changed the room's state");
                assert_eq!(self.bans, bans, "{who} banned someone");
                assert_eq!(self.audits.len(), audits, "{who}'s refused actions were audited");
            }
            Op::CreateBreakout => self.client(&t, ClientMessage::CreateBreakout { name: "Garden".into() }),
            Op::Assign(i) => {
                let breakout_id = self.breakout_id();
                self.client(&t, ClientMessage::AssignBreakout { participant_id: pid(*i), breakout_id });
            }
            Op::OpenBreakouts => {
                self.client(&t, ClientMessage::OpenBreakouts { duration_secs: Some(120), warning_secs: None, allow_return: true })
            }
            Op::CloseBreakouts => self.client(&t, ClientMessage::CloseBreakouts { countdown_secs: None }),
            Op::GoBack(i) => self.client(&pid(*i), ClientMessage::GoToBreakout { breakout_id: None }),
            Op::Chat(i) => self.client(&pid(*i), ClientMessage::Chat { text: "hello".into(), to: None }),
            Op::Advance(secs) => self.advance(Duration::from_secs(u64::from(*secs))),
        }
    }

    fn admitted(&self) -> BTreeSet<ParticipantId> {
        self.room.members.values().filter(|m| m.admitted).map(|m| m.info.id.clone()).collect()
    }

    /// What `to` should receive: every track of everyone whose media `forwards()` to it.
    fn expected_subs(&self, to: &Member) -> BTreeSet<TrackId> {
        self.room.members.values().filter(|from| forwards(from, to)).flat_map(|from| from.tracks.iter().map(|t| t.id.clone())).collect()
    }

    /// What must hold after every step.
    fn check(&self, step: usize, op: &Op) {
        for m in self.room.members.values() {
            let id = &m.info.id;
            let conn = self.conns.get(id).unwrap_or_else(|| panic!("step {step} {op:?}: member {id} has no connection"));
            let subs = self.subs.get(id).cloned().unwrap_or_default();
            if m.admitted && m.connected {
                assert!(conn.admitted_seen && conn.activated, "step {step} {op:?}: {id} admitted without roster or media");
                assert_eq!(subs, self.expected_subs(m), "step {step} {op:?}: {id}'s subscriptions are not what forwards() says");
            }
            if !m.admitted {
                assert!(!conn.activated, "step {step} {op:?}: {id} waits with a media connection");
                assert!(subs.is_empty(), "step {step} {op:?}: {id} waits and receives {subs:?}");
            }
            assert!(!self.room.banned.contains(id), "step {step} {op:?}: banned {id} is in the room");
            for t in &m.tracks {
                let hard = m.hard_muted(t.kind);
                assert_eq!(self.forwarding.get(&t.id).copied().unwrap_or(true), !hard, "step {step} {op:?}: {}'s forwarding", t.id);
            }
        }
        assert!(self.conns.keys().all(|id| self.room.members.contains_key(id)), "step {step} {op:?}: a connection outlived its member");
        let counted: i64 = self.counted.values().sum();
        assert_eq!(counted, self.room.members.len() as i64, "step {step} {op:?}: participant count");
        for role in [Role::Therapist, Role::Participant, Role::Observer] {
            let n = self.room.members.values().filter(|m| m.info.role == role).count() as i64;
            assert_eq!(self.counted.get(&role).copied().unwrap_or(0), n, "step {step} {op:?}: {role:?} count");
        }
        assert_eq!(
            self.bans,
            self.room.banned.iter().cloned().collect::<HashSet<_>>(),
            "step {step} {op:?}: bans recorded beyond the room"
        );
        let order: BTreeSet<_> = self.room.order.iter().cloned().collect();
        let members: BTreeSet<_> = self.room.members.keys().cloned().collect();
        assert_eq!(order, members, "step {step} {op:?}: join order and members agree");
        assert_eq!(self.room.order.len(), members.len(), "step {step}: nobody twice in the join order");
        assert!(self.room.members.len() <= self.room.settings.max_room_size);
    }

    fn sent(&self, i: usize) -> &[ServerMessage] {
        &self.conns[&pid(i)].sent
    }

    /// Everything `i` was sent on the current connection since the last call.
    fn take_sent(&mut self, i: usize) -> Vec<ServerMessage> {
        self.conns.get_mut(&pid(i)).map(|c| std::mem::take(&mut c.sent)).unwrap_or_default()
    }

    fn last_error(&self, i: usize) -> Option<ErrorCode> {
        self.sent(i).iter().rev().find_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
    }

    fn subs_of(&self, i: usize) -> BTreeSet<TrackId> {
        self.subs.get(&pid(i)).cloned().unwrap_or_default()
    }
}

/// Inputs the property test has driven and how long it took, summed over its cases.
static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_keep_the_rooms_rules(waiting_room in any::<bool>(), ops in proptest::collection::vec(op(), 1..80)) {
        let t0 = std::time::Instant::now();
        let mut model = Model::new(waiting_room);
        for (step, op) in ops.iter().enumerate() {
            model.apply(op);
            model.check(step, op);
        }
        use std::sync::atomic::Ordering::Relaxed;
        let steps = STEPS.fetch_add(model.steps, Relaxed) + model.steps;
        let nanos = NANOS.fetch_add(t0.elapsed().as_nanos() as u64, Relaxed) + t0.elapsed().as_nanos() as u64;
        if steps > 0 && nanos > 0 {
            // Printed by every case; the last line is the run's total (`-- --nocapture`).
            println!("model: {steps} inputs in {:.3} s, {:.0} inputs/s (invariants checked after each operation)", nanos as f64 / 1e9, steps as f64 / (nanos as f64 / 1e9));
        }
    }
}

#[test]
fn a_removed_participant_stays_out_and_a_waiting_one_sees_nothing() {
    let mut model = Model::new(true);
    model.join(0).expect("therapist");
    model.join(1).expect("p1 waits");
    model.join(2).expect("p2 waits");
    model.check(0, &Op::Join(2));
    model.apply(&Op::Admit(1));
    model.apply(&Op::Chat(1));
    model.check(1, &Op::Admit(1));
    assert!(model.sent(2).iter().all(allowed_while_waiting), "p2 saw the room while waiting");
    model.apply(&Op::Remove(1));
    model.check(2, &Op::Remove(1));
    assert_eq!(model.join(1), Err(RoomError::Banned));
    // Time passes (grace periods, timers): still out, still waiting.
    model.apply(&Op::Advance(45));
    model.check(3, &Op::Advance(45));
    assert_eq!(model.join(1), Err(RoomError::Banned));
    assert!(!model.room.members[&pid(2)].admitted);
    assert!(model.bans.contains(&pid(1)), "the ban reaches the registry, beyond the room task");
}

#[test]
fn a_held_place_ends_when_the_grace_period_passes_in_simulated_time() {
    let mut model = Model::new(false);
    model.join(0).expect("therapist");
    model.join(1).expect("p1");
    model.apply(&Op::Disconnect(1));
    assert!(model.room.members.contains_key(&pid(1)), "the place is held");
    model.advance(Duration::from_secs(29));
    assert!(model.room.members.contains_key(&pid(1)), "still held before the grace ends");
    model.advance(Duration::from_secs(2));
    assert!(!model.room.members.contains_key(&pid(1)), "gone after 30 s");
    model.check(0, &Op::Advance(2));
    let left = model.sent(0).iter().any(|m| matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == pid(1)));
    assert!(left, "the therapist is told");
}

#[test]
fn admission_waits_for_the_therapist_and_brings_roster_and_media() {
    let mut model = Model::new(true);
    model.join(0).expect("therapist");
    let tmic = model.publish(0, MediaKind::Audio);
    model.join(1).expect("p1");
    assert!(!model.room.members[&pid(1)].admitted, "the waiting room holds participants");
    let waiting = model.sent(0).iter().rev().find_map(|m| match m {
        ServerMessage::WaitingList { waiting } => Some(waiting.iter().map(|w| w.id.clone()).collect::<Vec<_>>()),
        _ => None,
    });
    assert_eq!(waiting, Some(vec![pid(1)]), "the therapist sees who waits");
    // Waiting, p1 publishes: nobody receives it, and p1 receives nobody.
    let pmic = model.publish(1, MediaKind::Audio);
    assert!(model.subs_of(0).is_empty() && model.subs_of(1).is_empty());
    model.client(&pid(1), ClientMessage::RaiseHand);
    assert_eq!(model.last_error(1), Some(ErrorCode::NotAdmitted));
    model.client(&therapist(), ClientMessage::Admit { participant_id: pid(1) });
    assert!(model.room.members[&pid(1)].admitted);
    assert!(model.sent(1).iter().any(|m| matches!(m, ServerMessage::Admitted { .. })));
    assert_eq!(model.subs_of(1), BTreeSet::from([tmic]));
    assert_eq!(model.subs_of(0), BTreeSet::from([pmic]));
    assert_eq!(model.audits, ["admit"]);
    // The therapist's own token is always admitted at once; an unknown id is refused.
    model.client(&therapist(), ClientMessage::Admit { participant_id: pid(3) });
    assert_eq!(model.last_error(0), Some(ErrorCode::UnknownParticipant));
    model.check(0, &Op::Admit(1));
}

#[test]
fn a_locked_room_keeps_newcomers_out_but_not_the_therapist_or_someone_already_in() {
    let mut model = Model::new(false);
    model.join(1).expect("p1 before the lock");
    model.join(0).expect("therapist");
    model.client(&therapist(), ClientMessage::LockRoom { locked: true });
    assert_eq!(model.join(2), Err(RoomError::Locked));
    assert!(!model.room.members.contains_key(&pid(2)), "a refused join changes nothing");
    // The therapist hears of the late arrival; nobody else does.
    let turned_away = |m: &ServerMessage| matches!(m, ServerMessage::TurnedAway { participant_id, .. } if *participant_id == pid(2));
    assert!(model.sent(0).iter().any(turned_away), "the therapist is told who was turned away");
    assert!(!model.sent(1).iter().any(turned_away), "another participant is not");
    // p1's page reloads: a reconnect, not a new join.
    model.apply(&Op::Disconnect(1));
    assert_eq!(model.join(1), Ok(()));
    assert!(model.room.members[&pid(1)].admitted);
    // Another therapist tab takes over the therapist's own seat.
    assert_eq!(model.join(0), Ok(()));
    // A participant's token for the therapist's id does not take the seat.
    let grant = Grant {
        participant: therapist(),
        room: model.room.id.clone(),
        role: Role::Participant,
        name: "x".into(),
        expires_at: u64::MAX,
        sponsor: None,
        issued_at: 0,
    };
    let now = model.now;
    let (result, effects) = model.room.with(now, |r| r.join(grant));
    assert_eq!(result, Err(RoomError::SeatTaken));
    assert!(effects.is_empty(), "a refused join asks nothing of anyone: {effects:?}");
    model.client(&therapist(), ClientMessage::LockRoom { locked: false });
    assert_eq!(model.join(2), Ok(()));
    model.check(0, &Op::Lock(false));
}

#[test]
fn a_hard_mute_holds_until_the_therapist_lifts_it_even_across_a_reconnect() {
    let mut model = Model::new(false);
    model.join(0).expect("therapist");
    model.join(1).expect("p1");
    let mic = model.publish(1, MediaKind::Audio);
    model.client(&therapist(), ClientMessage::Mute { participant_id: pid(1), kind: MediaKind::Audio, hard: true });
    assert_eq!(model.forwarding.get(&mic), Some(&false), "the hard-muted microphone stops at the server");
    assert!(model.sent(1).iter().any(|m| matches!(m, ServerMessage::MutedByModerator { hard: true, .. })));
    model.client(&pid(1), ClientMessage::SetMute { kind: MediaKind::Audio, muted: false });
    assert_eq!(model.last_error(1), Some(ErrorCode::HardMuted));
    assert!(model.room.members[&pid(1)].info.audio_muted);
    // A reload does not lift it.
    model.apply(&Op::Disconnect(1));
    model.join(1).expect("back");
    let mic2 = model.publish(1, MediaKind::Audio);
    assert_eq!(model.forwarding.get(&mic2), Some(&false), "a new microphone after the reload is held too");
    model.client(&therapist(), ClientMessage::Unmute { participant_id: pid(1), kind: MediaKind::Audio });
    assert_eq!(model.forwarding.get(&mic2), Some(&true));
    // The server never turns a microphone back on: the participant's own mute stays.
    assert!(model.room.members[&pid(1)].info.audio_muted);
    model.client(&pid(1), ClientMessage::SetMute { kind: MediaKind::Audio, muted: false });
    assert!(!model.room.members[&pid(1)].info.audio_muted);
    model.check(0, &Op::Unmute(1));
}

#[test]
fn a_resume_within_grace_keeps_the_place_and_nobody_sees_a_leave() {
    let mut model = Model::new(false);
    model.join(0).expect("therapist");
    model.join(1).expect("p1");
    model.join(2).expect("p2");
    let cam = model.publish(1, MediaKind::Video);
    assert!(model.subs_of(2).contains(&cam));
    model.take_sent(2);
    model.apply(&Op::Disconnect(1));
    assert!(model.room.members[&pid(1)].info.reconnecting);
    assert!(!model.subs_of(2).contains(&cam), "a dropped connection's media stops");
    model.advance(Duration::from_secs(20));
    model.join(1).expect("resumed within grace");
    let p1 = &model.room.members[&pid(1)];
    assert!(p1.admitted && p1.connected && !p1.info.reconnecting);
    assert!(model.sent(1).iter().any(|m| matches!(m, ServerMessage::Admitted { .. })), "the roster again");
    let to_p2 = model.take_sent(2);
    assert!(
        !to_p2.iter().any(|m| matches!(m, ServerMessage::ParticipantLeft { .. } | ServerMessage::ParticipantJoined { .. })),
        "{to_p2:?}"
    );
    // The old grace timer fires later and changes nothing.
    model.advance(Duration::from_secs(30));
    assert!(model.room.members.contains_key(&pid(1)));
    let cam2 = model.publish(1, MediaKind::Video);
    assert!(model.subs_of(2).contains(&cam2));
    model.check(0, &Op::Join(1));
}

#[test]
fn a_stalled_client_is_evicted_and_the_others_are_told() {
    let mut model = Model::new(false);
    model.join(0).expect("therapist");
    model.join(1).expect("p1");
    let mic = model.publish(1, MediaKind::Audio);
    assert!(model.subs_of(0).contains(&mic));
    model.stalled(1);
    assert!(!model.room.members.contains_key(&pid(1)));
    assert!(model.past.iter().any(|(id, c)| *id == pid(1) && c.ended == Some(EndReason::Stalled)));
    assert!(!model.subs_of(0).contains(&mic), "its media is cut");
    assert!(model.sent(0).iter().any(|m| matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == pid(1))));
    assert_eq!(model.join(1), Ok(()), "a stall is no ban");
}

#[test]
fn in_breakouts_media_follows_the_room() {
    let mut model = Model::new(false);
    for i in 0..4 {
        model.join(i).expect("joined");
    }
    let mics: Vec<TrackId> = (0..4).map(|i| model.publish(i, MediaKind::Audio)).collect();
    model.client(&therapist(), ClientMessage::CreateBreakout { name: "Garden".into() });
    let garden = model.breakout_id().expect("a breakout");
    for i in [1, 2] {
        model.client(&therapist(), ClientMessage::AssignBreakout { participant_id: pid(i), breakout_id: Some(garden.clone()) });
    }
    assert_eq!(model.subs_of(1).len(), 3, "assigned, not yet moved: everyone hears everyone");
    model.client(&therapist(), ClientMessage::OpenBreakouts { duration_secs: Some(600), warning_secs: Some(60), allow_return: false });
    assert_eq!(model.subs_of(1), BTreeSet::from([mics[2].clone()]), "p1 hears only p2 in the garden");
    assert_eq!(model.subs_of(0), BTreeSet::from([mics[3].clone()]), "the main room hears only itself");
    model.check(0, &Op::OpenBreakouts);
    // Staying is the rule: p1 may not go back.
    model.client(&pid(1), ClientMessage::GoToBreakout { breakout_id: None });
    assert_eq!(model.last_error(1), Some(ErrorCode::ReturnNotAllowed));
    // The warning comes at 540 s, everyone is back at 600 s: all in simulated time.
    model.advance(Duration::from_secs(539));
    assert!(!model.sent(1).iter().any(|m| matches!(m, ServerMessage::BreakoutWarning { .. })));
    model.advance(Duration::from_secs(1));
    assert!(model.sent(1).iter().any(|m| matches!(m, ServerMessage::BreakoutWarning { seconds_left: 60 })));
    model.advance(Duration::from_secs(60));
    assert!(model.room.members.values().all(|m| m.space.is_none()), "everyone is back");
    assert_eq!(model.subs_of(1).len(), 3, "and hears everyone again");
    model.check(1, &Op::Advance(60));
}

#[test]
fn poll_rules_votes_scope_and_the_time_limit() {
    let mut model = Model::new(false);
    model.join(0).expect("therapist");
    model.join(1).expect("p1");
    model.join(5).expect("observer");
    let create = |duration_secs| ClientMessage::CreatePoll {
        question: "How are you?".into(),
        options: vec!["Fine".into(), "Tired".into()],
        multiple: false,
        anonymous: false,
        duration_secs,
        scope: None,
    };
    model.client(&pid(1), create(None));
    assert_eq!(model.last_error(1), Some(ErrorCode::Forbidden), "participants do not run polls");
    model.client(&therapist(), create(Some(30)));
    let poll = model
        .sent(1)
        .iter()
        .find_map(|m| match m {
            ServerMessage::PollStarted { poll } => Some(poll.clone()),
            _ => None,
        })
        .expect("p1 sees the poll");
    let option = poll.options[0].id.clone();
    model.client(&pid(5), ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![option.clone()] });
    assert_eq!(model.last_error(5), Some(ErrorCode::Forbidden), "observers do not vote");
    model.client(&pid(1), ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![option.clone()] });
    assert!(model.sent(1).iter().any(|m| matches!(m, ServerMessage::VoteAccepted { .. })));
    model.advance(Duration::from_secs(29));
    assert!(!model.sent(1).iter().any(|m| matches!(m, ServerMessage::PollClosed { .. })));
    model.advance(Duration::from_secs(1));
    let closed = model.sent(0).iter().find_map(|m| match m {
        ServerMessage::PollClosed { reason, results, .. } => Some((*reason, results.as_ref().map(|r| r.total_voters))),
        _ => None,
    });
    assert_eq!(closed, Some((PollCloseReason::Timer, Some(1))), "closed by its timer after 30 s with one voter");
    model.client(&pid(1), ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![option] });
    assert_eq!(model.last_error(1), Some(ErrorCode::PollClosed));
}

#[test]
fn a_celebration_reaches_only_the_audience_its_participant_chose() {
    let mut model = Model::new(false);
    for i in 0..3 {
        model.join(i).expect("joined");
    }
    let celebrate = |who: usize| ClientMessage::Celebrate {
        participant_id: pid(who),
        kind: MilestoneKind::SessionsAttended,
        value: Some(10),
        label: None,
        message: None,
    };
    let celebrated = |m: &Model, i: usize| m.sent(i).iter().any(|m| matches!(m, ServerMessage::Celebration { .. }));
    // Nobody chose yet: the therapists and the participant only.
    model.client(&therapist(), celebrate(1));
    assert!(celebrated(&model, 1) && celebrated(&model, 0));
    assert!(!celebrated(&model, 2), "the default audience is the therapists only");
    model.client(&pid(2), ClientMessage::SetCelebrationPreferences { style: CelebrationStyle::Big, audience: CelebrationAudience::Group });
    model.take_sent(1);
    model.client(&therapist(), celebrate(2));
    assert!(celebrated(&model, 1), "p2 chose the group");
    model.client(&pid(1), celebrate(2));
    assert_eq!(model.last_error(1), Some(ErrorCode::Forbidden), "only a therapist celebrates");
}

#[test]
fn e2ee_wraps_reach_only_their_member_and_no_key_reaches_the_snapshot() {
    use crate::signal::protocol::E2eeWrap;
    let mut s = settings(false, Duration::from_secs(30));
    s.e2ee = crate::vocab::E2eeMode::Required;
    let mut m = Model::with_settings(s);
    for i in 0..3 {
        m.join(i).expect("joins");
    }
    assert!(m.sent(1).iter().all(|msg| !matches!(msg, ServerMessage::Admitted { .. })), "a required room keeps its waiting room on");
    let hello = |key: &str, identity: bool| ClientMessage::E2eeHello {
        ecdh_pub: key.into(),
        identity_key: identity.then(|| format!("{key}IDENTITY")),
        identity_sig: identity.then(|| format!("{key}SIGNATURE")),
    };
    m.client(&therapist(), hello("THERAPISTPUB", true));
    m.client(&pid(1), hello("ONEPUB", false));
    m.client(&pid(2), hello("TWOPUB", false));
    for i in 1..3 {
        m.client(&therapist(), ClientMessage::Admit { participant_id: pid(i) });
    }
    let wrap = |i: usize, w: &str| E2eeWrap { participant_id: pid(i), wrap: w.into() };
    m.client(
        &therapist(),
        ClientMessage::E2eeKeyBundle {
            space: "main".into(),
            epoch: 3,
            bundle: "SIGNEDBUNDLE".into(),
            signature: "BUNDLESIG".into(),
            wraps: vec![wrap(1, "WRAPFORONE"), wrap(2, "WRAPFORTWO")],
        },
    );
    let seen = |i: usize| serde_json::to_string(m.sent(i)).expect("json");
    assert!(seen(1).contains("WRAPFORONE") && !seen(1).contains("WRAPFORTWO"), "{}", seen(1));
    assert!(seen(2).contains("WRAPFORTWO") && !seen(2).contains("WRAPFORONE"), "{}", seen(2));
    assert!(seen(0).contains("ONEPUB") && seen(0).contains("TWOPUB"), "the leader learns the members' keys");
    assert!(!seen(1).contains("TWOPUB"), "members do not learn each other's keys through the server");
    let snapshot = serde_json::to_string(&m.room.snapshot()).expect("snapshot json");
    for secret in ["THERAPISTPUB", "IDENTITY", "SIGNATURE", "ONEPUB", "WRAPFOR", "SIGNEDBUNDLE", "BUNDLESIG"] {
        assert!(!snapshot.contains(secret), "{secret} in the room's saved state: {snapshot}");
    }
}

/// In a `required` room the texts people type reach the room only sealed: a plain one is refused
/// with nothing relayed or kept (not in the saved state either), a sealed one is relayed as it
/// came, and a sealed poll survives a move to another node.
#[test]
fn a_required_room_relays_sealed_texts_and_refuses_plain_ones() {
    use crate::signal::protocol::{SealedText, Text};
    let mut s = settings(false, Duration::from_secs(30));
    s.e2ee = crate::vocab::E2eeMode::Required;
    let mut m = Model::with_settings(s);
    for i in 0..3 {
        m.join(i).expect("joins");
    }
    for i in 1..3 {
        m.client(&therapist(), ClientMessage::Admit { participant_id: pid(i) });
    }
    let sealed = |ct: &str| Text::Sealed {
        sealed: vec![SealedText { space: "main".into(), epoch: 9, iv: "AAECAwQFBgcICQoL".into(), ct: ct.into() }],
    };
    for i in 0..3 {
        m.take_sent(i);
    }
    let marker = "MARIGOLDMARKER";
    m.client(&pid(1), ClientMessage::Chat { text: marker.into(), to: None });
    assert_eq!(m.last_error(1), Some(ErrorCode::SealedTextRequired));
    m.client(
        &therapist(),
        ClientMessage::CreatePoll {
            question: sealed("Q2lwaGVydGV4dE9mVGhlUXVlc3Rpb24"),
            options: vec![sealed("T3B0aW9uT25lQ2lwaGVydGV4dA"), marker.into()],
            multiple: false,
            anonymous: true,
            duration_secs: None,
            scope: None,
        },
    );
    assert_eq!(m.last_error(0), Some(ErrorCode::SealedTextRequired), "every option is a text");
    m.client(
        &therapist(),
        ClientMessage::Celebrate {
            participant_id: pid(1),
            kind: MilestoneKind::SessionsAttended,
            value: Some(3),
            label: None,
            message: Some(marker.into()),
        },
    );
    assert_eq!(m.last_error(0), Some(ErrorCode::SealedTextRequired));
    for i in 0..3 {
        let seen = serde_json::to_string(m.sent(i)).expect("json");
        assert!(!seen.contains(marker), "a refused text reached member {i}: {seen}");
    }

    let ct = "U2VhbGVkQ2hhdENpcGhlcnRleHRBbmRUYWc";
    m.client(&pid(1), ClientMessage::Chat { text: sealed(ct), to: None });
    let relayed = m.sent(2).iter().find_map(|msg| match msg {
        ServerMessage::ChatMessage(entry) => Some(entry.text.clone()),
        _ => None,
    });
    assert_eq!(relayed, Some(sealed(ct)), "relayed as it came");
    m.client(
        &therapist(),
        ClientMessage::CreatePoll {
            question: sealed("Q2lwaGVydGV4dE9mVGhlUXVlc3Rpb24"),
            options: vec![sealed("T3B0aW9uT25lQ2lwaGVydGV4dA"), sealed("T3B0aW9uVHdvQ2lwaGVydGV4dA")],
            multiple: false,
            anonymous: true,
            duration_secs: None,
            scope: None,
        },
    );
    let poll = m
        .sent(2)
        .iter()
        .find_map(|msg| match msg {
            ServerMessage::PollStarted { poll } => Some(poll.clone()),
            _ => None,
        })
        .expect("the sealed poll starts");
    assert_eq!(poll.question, sealed("Q2lwaGVydGV4dE9mVGhlUXVlc3Rpb24"));
    m.client(&pid(2), ClientMessage::Vote { poll_id: poll.id.clone(), option_ids: vec![poll.options[1].id.clone()] });
    assert!(m.sent(2).iter().any(|msg| matches!(msg, ServerMessage::VoteAccepted { .. })), "votes count by option id");

    let json = serde_json::to_string(&m.room.snapshot()).expect("snapshot json");
    assert!(!json.contains(marker), "a refused text in the saved state: {json}");
    let snap = super::snapshot::parse(&json).expect("a snapshot with a sealed poll parses");
    let mut after = Model::new(false);
    let now = after.room.now;
    let ((), _) = after.room.with(now, |r| r.restore(snap));
    assert_eq!(after.room.polls.snapshot()[0].info.question, sealed("Q2lwaGVydGV4dE9mVGhlUXVlc3Rpb24"), "the sealed poll moved as it was");
}

/// A room that moves to another relay node keeps its encryption policy, whatever that node's
/// default: an encrypted group does not come back in the clear, and keeps its waiting room.
#[test]
fn a_moved_room_keeps_its_encryption_policy_and_nothing_more() {
    use crate::vocab::E2eeMode;
    let mut s = settings(false, Duration::from_secs(30));
    s.e2ee = E2eeMode::Required;
    let mut before = Model::with_settings(s);
    before.join(0).expect("joins");
    before.client(
        &therapist(),
        ClientMessage::E2eeHello { ecdh_pub: "PUB".into(), identity_key: Some("ID".into()), identity_sig: Some("SIG".into()) },
    );
    let json = serde_json::to_string(&before.room.snapshot()).expect("snapshot json");
    for secret in ["PUB", "\"ID\"", "SIG"] {
        assert!(!json.contains(secret), "{secret} in the saved state: {json}");
    }
    let snap = super::snapshot::parse(&json).expect("a node's own snapshot parses");
    assert_eq!(snap.e2ee, Some(E2eeMode::Required));

    // The next node's default is no encryption and no waiting room.
    let mut after = Model::new(false);
    assert_eq!(after.room.state.e2ee, E2eeMode::Off);
    let now = after.room.now;
    let ((), _) = after.room.with(now, |r| r.restore(snap));
    assert_eq!(after.room.state.e2ee, E2eeMode::Required, "the policy moved with the room");
    assert!(after.room.state.waiting_room, "a required room keeps its waiting room");
    after.join(1).expect("joins");
    assert!(
        after.sent(1).iter().all(|m| !matches!(m, ServerMessage::Admitted { .. })),
        "a participant arriving at the new node waits, as in any encrypted room"
    );

    // Snapshots saved before the policy was kept leave the new node's default.
    let mut old = serde_json::to_value(before.room.snapshot()).expect("value");
    old.as_object_mut().expect("object").remove("e2ee");
    let old = super::snapshot::parse(&old.to_string()).expect("an older snapshot parses");
    let mut fresh = Model::new(false);
    let now = fresh.room.now;
    let ((), _) = fresh.room.with(now, |r| r.restore(old));
    assert_eq!(fresh.room.state.e2ee, E2eeMode::Off);
}

/// The last round everyone in the main room was sent.
fn last_round(model: &Model, i: usize) -> Option<crate::signal::protocol::RoundInfo> {
    model.sent(i).iter().rev().find_map(|m| match m {
        ServerMessage::RoundUpdated { round } => Some(round.clone()),
        _ => None,
    })?
}

#[test]
fn a_round_moves_on_by_the_rooms_clock_and_participants_cannot_steer_it() {
    use crate::signal::protocol::RoundOrder;
    let mut model = Model::new(false);
    for i in [0, 1, 2, 5] {
        model.join(i).expect("joined");
    }
    let start = ClientMessage::StartRound { order: RoundOrder::Roster, seconds_per_turn: Some(60), allow_pass: false };
    model.client(&pid(1), start.clone());
    assert_eq!(model.last_error(1), Some(ErrorCode::Forbidden));
    assert_eq!(last_round(&model, 1), None, "nothing changed");
    model.client(&therapist(), start);
    let r = last_round(&model, 2).expect("round");
    assert_eq!((r.order.clone(), r.current.clone(), r.seconds_left), (vec![pid(1), pid(2)], Some(pid(1)), Some(60)), "participants only");
    model.client(&pid(1), ClientMessage::PassTurn);
    assert_eq!(model.last_error(1), Some(ErrorCode::NotYourTurn), "this round does not allow passing");
    model.advance(Duration::from_secs(59));
    assert_eq!(last_round(&model, 2).and_then(|r| r.current), Some(pid(1)));
    model.advance(Duration::from_secs(1));
    let r = last_round(&model, 5).expect("the observer sees it too");
    assert_eq!((r.current, r.seconds_left), (Some(pid(2)), Some(60)), "the server's clock ended p1's turn");
    // p2 drops out during their turn: the round is complete, and a timer left over does nothing.
    model.input(RoomInput::Leave(pid(2)));
    assert_eq!(last_round(&model, 1).and_then(|r| r.current), None);
    let before = model.sent(1).len();
    model.advance(Duration::from_secs(120));
    assert!(!model.sent(1)[before..].iter().any(|m| matches!(m, ServerMessage::RoundUpdated { .. })));
}

#[test]
fn the_agenda_warns_a_minute_before_the_end_in_simulated_time() {
    use crate::signal::protocol::AgendaItem;
    let mut model = Model::new(false);
    model.join(0).expect("therapist");
    model.join(1).expect("p1");
    model.client(&therapist(), ClientMessage::SetAgenda { items: vec![AgendaItem { title: "Check-in".into(), minutes: 5 }] });
    model.client(&therapist(), ClientMessage::StartSegment { index: 0 });
    model.client(&therapist(), ClientMessage::ExtendSegment { minutes: 1 });
    let warned = |m: &Model| m.sent(1).iter().any(|m| matches!(m, ServerMessage::AgendaWarning { .. }));
    model.advance(Duration::from_secs(4 * 60 + 59));
    assert!(!warned(&model), "the first warning time passed with the extension");
    model.advance(Duration::from_secs(61));
    assert!(model.sent(1).iter().any(|m| matches!(m, ServerMessage::AgendaWarning { seconds_left: 60 })));
    model.client(&pid(1), ClientMessage::EndSegment);
    assert_eq!(model.last_error(1), Some(ErrorCode::Forbidden));
}

#[test]
fn the_agreement_holds_people_at_the_door_until_they_accept() {
    let mut model = Model::new(false);
    model.join(0).expect("therapist");
    model.client(&therapist(), ClientMessage::SetAgreement { text: Some("Stay private.".into()), ask_location: false });
    model.join(1).expect("p1");
    assert!(!model.admitted().contains(&pid(1)), "the waiting room is off, but the agreement holds");
    let version = model
        .sent(1)
        .iter()
        .find_map(|m| match m {
            ServerMessage::Agreement { version, .. } => version.clone(),
            _ => None,
        })
        .expect("shown the agreement");
    model.client(&therapist(), ClientMessage::Admit { participant_id: pid(1) });
    assert_eq!(model.last_error(0), Some(ErrorCode::AgreementPending));
    model.client(&pid(1), ClientMessage::AcceptAgreement { version, location: None });
    assert!(model.admitted().contains(&pid(1)), "accepted with the waiting room off: in");
    assert!(model.audits.contains(&"accept_agreement"));
}

impl Model {
    /// Joins someone with any role (and a sponsor, for a family guest) under id `id`; their
    /// token expires an hour from now.
    fn join_as(&mut self, id: &str, role: Role, sponsor: Option<&str>) -> ParticipantId {
        let participant = ParticipantId::from_trusted(id);
        let grant = Grant {
            participant: participant.clone(),
            room: self.room.id.clone(),
            role,
            name: format!("Name {id}"),
            expires_at: (self.now.unix_ms as u64) / 1000 + 3600,
            issued_at: 0,
            sponsor: sponsor.map(ParticipantId::from_trusted),
        };
        let now = self.now;
        let (result, effects) = self.room.with(now, |r| r.join(grant));
        self.replay(effects);
        result.expect("joined");
        participant
    }

    /// Everything `id` was sent, on every connection they had.
    fn sent_to(&self, id: &ParticipantId) -> Vec<ServerMessage> {
        let past = self.past.iter().filter(|(p, _)| p == id).flat_map(|(_, c)| c.sent.clone());
        past.chain(self.conns.get(id).map(|c| c.sent.clone()).unwrap_or_default()).collect()
    }

    /// The room as a member sees it and as a relay node saves it, for "nothing changed".
    fn state_dump(&self) -> String {
        let snapshot = serde_json::to_string(&self.room.snapshot()).expect("snapshot");
        let mut members: Vec<_> =
            self.room.members.values().map(|m| format!("{:?} {} {:?} {}", m.info, m.admitted, m.space, m.tracks.len())).collect();
        members.sort();
        format!("{snapshot}\n{members:?}\n{:?}\n{:?}", self.room.state, self.room.order)
    }
}

/// One example of every client message: each documented one (docs/protocol.md), and the cases
/// whose arguments or recipient change who may send them. `t` is a therapist, `p` a
/// participant, `g` a family guest.
fn every_client_message(t: &ParticipantId, p: &ParticipantId, g: &ParticipantId) -> Vec<ClientMessage> {
    let docs = include_str!("../../../docs/protocol.md");
    let mut out: Vec<ClientMessage> = Vec::new();
    for span in docs.split('`').skip(1).step_by(2).filter(|s| s.starts_with("{\"type\":\"")) {
        if let Ok(msg) = serde_json::from_str::<ClientMessage>(span) {
            if !out.iter().any(|m| m.kind() == msg.kind()) {
                out.push(msg);
            }
        }
    }
    out.extend([
        ClientMessage::LowerHand { participant_id: Some(p.clone()) },
        ClientMessage::LowerHand { participant_id: None },
        ClientMessage::Decline { participant_id: p.clone(), r#final: true },
        ClientMessage::Decline { participant_id: p.clone(), r#final: false },
        ClientMessage::Mute { participant_id: p.clone(), kind: MediaKind::Audio, hard: true },
        ClientMessage::Mute { participant_id: p.clone(), kind: MediaKind::Audio, hard: false },
        ClientMessage::MuteAll { kind: MediaKind::Audio, hard: true },
        ClientMessage::MuteAll { kind: MediaKind::Audio, hard: false },
        ClientMessage::GetMilestoneHistory { participant_id: None, group: true },
        ClientMessage::GetMilestoneHistory { participant_id: Some(p.clone()), group: false },
        ClientMessage::GetMilestoneHistory { participant_id: None, group: false },
        ClientMessage::Chat { text: "hi".into(), to: None },
        ClientMessage::Chat { text: "hi".into(), to: Some(t.clone()) },
        ClientMessage::Chat { text: "hi".into(), to: Some(p.clone()) },
        ClientMessage::Chat { text: "hi".into(), to: Some(g.clone()) },
        ClientMessage::Remove { participant_id: p.clone() },
        ClientMessage::OpenFamilySpace { sponsor_id: p.clone() },
    ]);
    out
}

/// What a feature may still refuse as `forbidden` when the table allows the role: a rule of
/// its own state, not of the role (a screen share nobody allowed yet, encryption keys in a room
/// that is not encrypted, a key bundle from someone who is not the key leader).
fn refused_by_state(msg: &ClientMessage) -> bool {
    matches!(msg, ClientMessage::ScreenShare { .. } | ClientMessage::E2eeHello { .. } | ClientMessage::E2eeKeyBundle { .. })
}

/// Every client message type from every role: what the permission table allows is not
/// refused as `forbidden` (but for a feature's own state); what it does not allow is refused
/// with `forbidden` alone, and the room is exactly what it was. The list of messages comes from
/// the protocol: a message type without an example, or a row no example reaches, fails here.
#[test]
fn every_message_from_every_role_is_allowed_or_forbidden_with_nothing_changed() {
    let (t, p, g) = (ParticipantId::from_trusted("t"), ParticipantId::from_trusted("p1"), ParticipantId::from_trusted("g"));
    let messages = every_client_message(&t, &p, &g);
    for kind in ClientMessage::TYPES {
        assert!(messages.iter().any(|m| m.kind() == *kind), "no example of `{kind}` (document one in docs/protocol.md)");
    }
    let mut rows_reached = HashSet::new();
    let (mut allowed, mut refused) = (0, 0);
    for role in Role::ALL {
        for msg in &messages {
            let mut model = Model::new(true);
            model.join_as("t", Role::Therapist, None);
            model.join_as("p1", Role::Participant, None);
            model.client(&t, ClientMessage::Admit { participant_id: p.clone() });
            model.join_as("g", Role::FamilyGuest, Some("p1"));
            // The sender: the guest of p1 inside p1's family space, or a member in the main room.
            let x = if role == Role::FamilyGuest {
                model.client(&t, ClientMessage::OpenFamilySpace { sponsor_id: p.clone() });
                model.client(&t, ClientMessage::Admit { participant_id: g.clone() });
                g.clone()
            } else {
                let x = model.join_as("x", role, None);
                model.client(&t, ClientMessage::Admit { participant_id: x.clone() });
                x
            };
            assert!(model.room.members[&x].admitted, "{role:?} admitted");
            let action = permissions::action(msg, &x, |id| model.room.role_of(id));
            rows_reached.insert(action);
            let before = model.state_dump();
            let now = model.now;
            let (_, effects) = model.room.with(now, |r| r.handle(RoomInput::Client { from: x.clone(), msg: msg.clone() }));
            let forbidden =
                |e: &Effect| matches!(e, Effect::Send { to, msg: ServerMessage::Error { code: ErrorCode::Forbidden, .. } } if to == &x);
            if permissions::allows(action, role, &[]) {
                assert!(refused_by_state(msg) || !effects.iter().any(forbidden), "{role:?} may send {action}, yet: {effects:?}");
                allowed += 1;
            } else {
                assert_eq!(effects.len(), 1, "{role:?} {action}: one effect, the refusal: {effects:?}");
                assert!(forbidden(&effects[0]), "{role:?} {action}: refused as forbidden: {effects:?}");
                assert_eq!(before, model.state_dump(), "{role:?} {action} changed the room");
                refused += 1;
            }
            model.replay(effects);
        }
    }
    for row in permissions::TABLE {
        assert!(rows_reached.contains(row.action), "no example reaches the row `{}`", row.action);
    }
    assert_eq!(allowed + refused, messages.len() * Role::ALL.len());
    assert!(allowed > 0 && refused > 0);
}

/// A deployment that withholds a row from co-facilitators: refused to them, still the
/// therapist's.
#[test]
fn a_deployment_can_withhold_a_row_from_co_facilitators() {
    let mut settings = settings(true, Duration::from_secs(30));
    settings.co_facilitator_withheld = permissions::co_facilitator_withheld(&["admit".into()]).expect("theirs to lose");
    let mut model = Model::with_settings(settings);
    let t = model.join_as("t", Role::Therapist, None);
    let c = model.join_as("c", Role::CoFacilitator, None);
    let p = model.join_as("p", Role::Participant, None);
    model.client(&c, ClientMessage::Admit { participant_id: p.clone() });
    assert!(!model.room.members[&p].admitted);
    assert!(matches!(model.sent_to(&c).last(), Some(ServerMessage::Error { code: ErrorCode::Forbidden, .. })));
    model.client(&t, ClientMessage::Admit { participant_id: p.clone() });
    assert!(model.room.members[&p].admitted);
}

/// A family guest waits until their sponsor's family space is open, is admitted into it and
/// nowhere else, and over everything they are sent never meets another member: no id, name,
/// track or message of theirs. Closing the space ends the guest's session.
#[test]
fn a_family_guest_meets_only_their_family_space() {
    let mut model = Model::new(true);
    let t = model.join_as("t", Role::Therapist, None);
    let sponsor = model.join_as("sponsor-1", Role::Participant, None);
    let other = model.join_as("other-2", Role::Participant, None);
    for p in [&sponsor, &other] {
        model.client(&t, ClientMessage::Admit { participant_id: p.clone() });
    }
    let g = model.join_as("guest-3", Role::FamilyGuest, Some("sponsor-1"));
    let waiting = model.sent_to(&t).into_iter().rev().find_map(|m| match m {
        ServerMessage::WaitingList { waiting } => Some(waiting),
        _ => None,
    });
    let entry = waiting.expect("waiting list").into_iter().find(|w| w.id == g).expect("the guest waits");
    assert_eq!(entry.sponsor_name.as_deref(), Some("Name sponsor-1"), "listed as the sponsor's guest");
    // Not before the family space is open, and not by admitting everyone.
    model.client(&t, ClientMessage::Admit { participant_id: g.clone() });
    model.client(&t, ClientMessage::AdmitAll);
    model.client(&t, ClientMessage::SetWaitingRoom { enabled: false });
    assert!(!model.room.members[&g].admitted, "no family space: the guest keeps waiting");
    model.client(&t, ClientMessage::SetWaitingRoom { enabled: true });
    let track = {
        model.next_track += 1;
        let id = format!("other-2/audio/{}", model.next_track);
        model.input(RoomInput::TrackPublished(other.clone(), crate::sfu::PublishedTrack::for_test(&id, other.clone(), MediaKind::Audio)));
        id
    };
    model.client(&t, ClientMessage::OpenFamilySpace { sponsor_id: sponsor.clone() });
    model.client(&t, ClientMessage::Admit { participant_id: g.clone() });
    assert!(model.room.members[&g].admitted);
    assert_eq!(model.room.members[&g].space, model.room.members[&sponsor].space, "with their sponsor");
    assert_ne!(model.room.members[&g].space, model.room.members[&other].space);
    // The group goes on: the other member speaks up, is spotlighted, polled, celebrated.
    model.client(&other, ClientMessage::Chat { text: "my news".into(), to: None });
    model.client(&other, ClientMessage::RaiseHand);
    model.client(&t, ClientMessage::Spotlight { participant_id: Some(other.clone()) });
    model.client(&t, ClientMessage::Spotlight { participant_id: Some(g.clone()) });
    model.client(&other, ClientMessage::SetCelebrationPreferences { style: CelebrationStyle::Big, audience: CelebrationAudience::Group });
    model.client(
        &t,
        ClientMessage::Celebrate {
            participant_id: sponsor.clone(),
            kind: MilestoneKind::SessionsAttended,
            value: Some(3),
            label: None,
            message: None,
        },
    );
    model.client(
        &t,
        ClientMessage::CreatePoll {
            question: "How is everyone?".into(),
            options: vec!["Good".into(), "Tired".into()],
            multiple: false,
            anonymous: false,
            duration_secs: None,
            scope: Some(crate::signal::protocol::PollScope::AllBreakouts),
        },
    );
    model.client(&t, ClientMessage::LockRoom { locked: true });
    model.client(&other, ClientMessage::Chat { text: "to the guest".into(), to: Some(g.clone()) });
    model.client(&g, ClientMessage::Chat { text: "hello family".into(), to: None });
    model.client(&g, ClientMessage::Chat { text: "to them".into(), to: Some(other.clone()) });
    model.client(&g, ClientMessage::Vote { poll_id: crate::signal::protocol::PollId::random(), option_ids: vec![] });
    assert!(!model.subs.get(&g).is_some_and(|s| s.contains(&track)), "no media of the other member");
    model.client(&t, ClientMessage::CloseFamilySpace { sponsor_id: sponsor.clone() });
    assert!(!model.room.members.contains_key(&g), "closing the space ends the guest's session");
    assert_eq!(model.room.members[&sponsor].space, None, "the sponsor is back with the group");
    let frames = model.sent_to(&g);
    assert!(frames.iter().any(|m| matches!(m, ServerMessage::SpaceChanged { .. })), "the guest was placed in the family space");
    assert!(frames.iter().any(|m| matches!(m, ServerMessage::SessionEnded { .. })));
    for m in &frames {
        let json = serde_json::to_string(m).expect("json");
        for secret in ["other-2", "Name other-2", "my news", "How is everyone?", &track] {
            assert!(!json.contains(secret), "the guest received `{secret}`: {json}");
        }
    }
    assert!(model.audits.contains(&"family_space_open") && model.audits.contains(&"family_space_close"));
}

/// A guest's token runs out: their session ends even inside an open family space.
#[test]
fn a_family_guest_leaves_when_their_token_expires() {
    let mut model = Model::new(true);
    let t = model.join_as("t", Role::Therapist, None);
    let sponsor = model.join_as("s", Role::Participant, None);
    model.client(&t, ClientMessage::Admit { participant_id: sponsor.clone() });
    let g = model.join_as("g", Role::FamilyGuest, Some("s"));
    model.client(&t, ClientMessage::OpenFamilySpace { sponsor_id: sponsor.clone() });
    model.client(&t, ClientMessage::Admit { participant_id: g.clone() });
    model.advance(Duration::from_secs(3598));
    assert!(model.room.members.contains_key(&g));
    model.advance(Duration::from_secs(3));
    assert!(!model.room.members.contains_key(&g), "ended at expiry");
    assert!(model.room.members.contains_key(&sponsor));
}

/// A co-facilitator runs admission, asks to mute and receives help and support requests, but
/// cannot remove or hard-mute; the audit records carry who acted in which role.
#[test]
fn a_co_facilitator_admits_and_is_audited_as_one() {
    let mut model = Model::new(true);
    let c = model.join_as("c", Role::CoFacilitator, None);
    assert!(model.room.members[&c].admitted, "staff do not wait");
    let p = model.join_as("p", Role::Participant, None);
    assert!(model.sent_to(&c).iter().any(|m| matches!(m, ServerMessage::WaitingList { waiting } if waiting.iter().any(|w| w.id == p))));
    let now = model.now;
    let (_, effects) =
        model.room.with(now, |r| r.handle(RoomInput::Client { from: c.clone(), msg: ClientMessage::Admit { participant_id: p.clone() } }));
    assert!(effects.iter().any(|e| matches!(e, Effect::Audit { role: Some(Role::CoFacilitator), action: "admit", .. })), "{effects:?}");
    model.replay(effects);
    model.client(&c, ClientMessage::Remove { participant_id: p.clone() });
    model.client(&c, ClientMessage::Mute { participant_id: p.clone(), kind: MediaKind::Audio, hard: true });
    assert!(model.room.members.contains_key(&p) && !model.room.members[&p].info.audio_hard_muted);
    model.client(&c, ClientMessage::Mute { participant_id: p.clone(), kind: MediaKind::Audio, hard: false });
    assert!(model.room.members[&p].info.audio_muted, "asked to mute");
    model.client(&p, ClientMessage::RequestSupport);
    assert!(model.sent_to(&c).iter().any(|m| matches!(m, ServerMessage::SupportRequested { .. })), "support reaches the co-facilitator");
}

/// Partner groups with the roles: only the therapist saves them, and only for members who take
/// part; a co-facilitator is shown them and opens their breakouts; a member with their family
/// stays in the family space (their partner joins another group), and the family guest is
/// neither told of partners nor placed.
#[test]
fn partners_with_co_facilitators_and_family_guests() {
    use crate::signal::protocol::AbsentPartners;
    let mut settings = settings(true, Duration::from_secs(30));
    settings.max_room_size = 8;
    let mut model = Model::with_settings(settings);
    let t = model.join_as("t", Role::Therapist, None);
    let c = model.join_as("c", Role::CoFacilitator, None);
    let ps: Vec<_> = ["p1", "p2", "p3", "p4"].into_iter().map(|id| model.join_as(id, Role::Participant, None)).collect();
    for p in &ps {
        model.client(&t, ClientMessage::Admit { participant_id: p.clone() });
    }
    let g = model.join_as("g", Role::FamilyGuest, Some("p2"));
    model.client(&t, ClientMessage::OpenFamilySpace { sponsor_id: ps[1].clone() });
    model.client(&t, ClientMessage::Admit { participant_id: g.clone() });
    let family = model.room.members[&g].space.clone();
    assert!(family.is_some() && model.room.members[&ps[1]].space == family);

    let groups = vec![vec![ps[0].clone(), ps[1].clone()], vec![ps[2].clone(), ps[3].clone()]];
    model.client(&c, ClientMessage::SavePartners { groups: groups.clone() });
    assert!(matches!(model.sent_to(&c).last(), Some(ServerMessage::Error { code: ErrorCode::Forbidden, .. })), "saving is the therapist's");
    assert!(model.room.partners.groups().is_empty());
    model.client(&t, ClientMessage::SavePartners { groups: vec![vec![ps[0].clone(), g.clone()]] });
    assert!(matches!(model.sent_to(&t).last(), Some(ServerMessage::Error { code: ErrorCode::InvalidPartners, .. })), "no guest in a group");
    model.client(&t, ClientMessage::SavePartners { groups: vec![vec![ps[0].clone(), c.clone()]] });
    assert!(matches!(model.sent_to(&t).last(), Some(ServerMessage::Error { code: ErrorCode::InvalidPartners, .. })), "no staff in a group");
    model.client(&t, ClientMessage::SavePartners { groups: groups.clone() });
    assert!(
        model.sent_to(&c).iter().any(|m| matches!(m, ServerMessage::Partners { groups: got } if *got == groups)),
        "staff see the groups"
    );
    assert!(model
        .sent_to(&ps[1])
        .iter()
        .any(|m| matches!(m, ServerMessage::YourPartners { partner_ids } if *partner_ids == vec![ps[0].clone()])));

    model.client(&c, ClientMessage::OpenPartnerBreakouts { absent: AbsentPartners::JoinAnother, duration_secs: None, allow_return: false });
    assert!(!model.room.breakouts.is_empty(), "a co-facilitator opens partner breakouts");
    assert_eq!(model.room.members[&ps[1]].space, family, "the sponsor stays with their family");
    assert_eq!(model.room.members[&g].space, family, "the guest is not placed");
    let p3 = model.room.members[&ps[2]].space.clone();
    assert!(p3.is_some() && model.room.members[&ps[0]].space == p3, "p1, whose partner is away, joins the other group");
    assert!(model.audits.contains(&"partner_breakouts_open"));
    for m in model.sent_to(&g) {
        assert!(!matches!(m, ServerMessage::Partners { .. } | ServerMessage::YourPartners { .. }), "the guest was told of partners: {m:?}");
    }
}

/// Peer-support staff receive support requests only while a therapist routes them there.
#[test]
fn support_requests_reach_peer_support_staff_only_when_routed() {
    let mut model = Model::new(false);
    let t = model.join_as("t", Role::Therapist, None);
    let s = model.join_as("s", Role::PeerSupport, None);
    let p = model.join_as("p", Role::Participant, None);
    let q = model.join_as("q", Role::Participant, None);
    model.client(&p, ClientMessage::RequestSupport);
    assert!(!model.sent_to(&s).iter().any(|m| matches!(m, ServerMessage::SupportRequested { .. })), "not routed yet");
    model.client(&t, ClientMessage::RouteSupport { peer_support: true });
    model.client(&q, ClientMessage::RequestSupport);
    assert!(model.sent_to(&s).iter().any(|m| matches!(m, ServerMessage::SupportRequested { .. })), "routed to peer support");
    assert!(model.sent_to(&t).iter().filter(|m| matches!(m, ServerMessage::SupportRequested { .. })).count() >= 2, "the therapist still");
}

#[test]
fn the_door_says_a_links_session_ended_until_a_therapist_starts_the_next_and_ending_carries_the_closing_message() {
    let mut model = Model::new(true);
    let memory = crate::room::shared::DoorMemory {
        group_name: Some("Tuesday group".into()),
        welcome: None,
        therapist_name: Some("Dr Lee".into()),
        ended_at: Some(1_000),
    };
    model.room.door = super::door::Door::new(memory);
    let door = |m: &ServerMessage| match m {
        ServerMessage::WaitingRoom { group_name, therapist_name, therapist_here, session_ended, .. } => {
            Some((group_name.clone(), therapist_name.clone(), *therapist_here, *session_ended))
        }
        _ => None,
    };
    // The model's links are minted at 0, before that end: the session they were for is over.
    model.join(1).expect("p1 waits");
    let said = model.sent(1).iter().filter_map(door).next_back();
    assert_eq!(said, Some((Some("Tuesday group".into()), Some("Dr Lee".into()), false, true)));
    model.join(0).expect("therapist");
    assert_eq!(
        model.sent(1).iter().filter_map(door).next_back().map(|d| (d.2, d.3)),
        Some((true, false)),
        "a new session admits old links"
    );
    // A closing message outside the rules ends nothing.
    model.client(&therapist(), ClientMessage::EndSession { confirm: true, closing_message: Some("x".repeat(601)) });
    assert_eq!(model.last_error(0), Some(ErrorCode::InvalidField));
    assert!(model.room.members.contains_key(&pid(1)));
    model.client(&therapist(), ClientMessage::EndSession { confirm: true, closing_message: Some(" Thank you. ".into()) });
    let (_, gone) = model.past.iter().rev().find(|(id, _)| *id == pid(1)).expect("p1's ended connection");
    let ended = gone.sent.iter().find_map(|m| match m {
        ServerMessage::SessionEnded { reason: EndReason::Ended, closing_message, .. } => Some(closing_message.clone()),
        _ => None,
    });
    assert_eq!(ended, Some(Some("Thank you.".into())));
}

/// The last attendance record written for `id`.
fn last_attendance(model: &Model, id: &ParticipantId) -> crate::store::AttendanceRecord {
    model
        .records
        .iter()
        .rev()
        .find_map(|r| match r {
            crate::store::Record::Attendance(a) if a.participant_id == id.as_str() => Some(a.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no attendance record for {id}"))
}

/// The records rules with the room, in simulated time: A is admitted, drops and comes back
/// within the grace, then leaves; B arrives late; C is declined; D is removed; the therapist
/// ends the session. The last record written for each person says exactly that, and with talk
/// time kept, each participant admitted has a total (nobody spoke: zero) and the therapist none.
#[test]
fn a_scripted_session_writes_exactly_its_records() {
    let mut s = settings(true, Duration::from_secs(30));
    s.talk_time_in_attendance = true;
    let mut model = Model::with_settings(s);
    model.join(0).expect("therapist");
    let session = model.room.records.session_id().expect("the therapist's admission starts the session");
    model.join(1).expect("A knocks");
    model.client(&therapist(), ClientMessage::Admit { participant_id: pid(1) });
    model.advance(Duration::from_secs(400));
    model.join(2).expect("B knocks, late");
    model.client(&therapist(), ClientMessage::Admit { participant_id: pid(2) });
    model.join(3).expect("C knocks");
    model.client(&therapist(), ClientMessage::Decline { participant_id: pid(3), r#final: false });
    model.join(4).expect("D knocks");
    model.client(&therapist(), ClientMessage::Admit { participant_id: pid(4) });
    model.client(&therapist(), ClientMessage::Remove { participant_id: pid(4) });
    model.input(RoomInput::Disconnected(pid(1)));
    model.advance(Duration::from_secs(10));
    model.join(1).expect("A is back within the grace");
    model.advance(Duration::from_secs(60));
    model.input(RoomInput::Leave(pid(1)));
    model.client(&therapist(), ClientMessage::EndSession { confirm: false, closing_message: None });
    assert_eq!(model.room.records.session_id(), None, "the session ended");

    let a = last_attendance(&model, &pid(1));
    let spaces: Vec<_> = a.intervals.iter().map(|i| i.space.as_str()).collect();
    assert_eq!((a.late, a.reconnects, spaces, a.outcome.as_deref(), a.talk_seconds), (false, 1, vec!["main"], Some("left"), Some(0)));
    assert_eq!(a.intervals[0].to_ms.map(|to| to - a.intervals[0].from_ms), Some(470_000), "one interval through the drop");
    let b = last_attendance(&model, &pid(2));
    assert_eq!((b.late, b.outcome.as_deref(), b.talk_seconds), (true, Some("ended"), Some(0)));
    let c = last_attendance(&model, &pid(3));
    assert_eq!((c.admitted_ms, c.intervals.len(), c.outcome.as_deref(), c.talk_seconds), (None, 0, Some("declined"), None));
    let d = last_attendance(&model, &pid(4));
    assert_eq!((d.outcome.as_deref(), d.intervals.len()), (Some("removed"), 1));
    let t = last_attendance(&model, &therapist());
    assert_eq!((t.role.as_str(), t.outcome.as_deref(), t.talk_seconds), ("therapist", Some("ended"), None));
    let ended = model.records.iter().rev().find_map(|r| match r {
        crate::store::Record::Session(s) if s.id == session.as_str() => Some(s.clone()),
        _ => None,
    });
    assert_eq!(ended.and_then(|s| s.end_reason), Some("ended".to_string()));
    assert!(model.records.iter().all(|r| !matches!(r, crate::store::Record::Attendance(a) if a.session_id != session.as_str())));
}

/// A room's round and session move to another node with its saved state: the turn ends at the
/// same time there, and the new node writes the whole session to its own store.
#[test]
fn a_moved_room_keeps_its_round_and_rewrites_its_session() {
    use crate::signal::protocol::RoundOrder;
    let mut before = Model::new(false);
    for i in [0, 1, 2] {
        before.join(i).expect("joined");
    }
    before.client(&therapist(), ClientMessage::StartRound { order: RoundOrder::Roster, seconds_per_turn: Some(60), allow_pass: true });
    before.advance(Duration::from_secs(20));
    before.input(RoomInput::Leave(pid(2)));
    let was = last_round(&before, 0).expect("a round");
    let json = serde_json::to_string(&before.room.snapshot()).expect("snapshot");
    let snap = super::snapshot::parse(&json).expect("a node's own snapshot parses");

    let mut after = Model::new(false);
    let now = after.room.now;
    let ((), effects) = after.room.with(now, |r| r.restore(snap));
    after.replay(effects);
    let written: Vec<_> = after
        .records
        .iter()
        .filter_map(|r| match r {
            crate::store::Record::Attendance(a) => Some((a.participant_id.clone(), a.outcome.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(written.len(), 3, "everyone so far, the one who left included: {written:?}");
    assert!(written.contains(&(pid(2).to_string(), Some("left".to_string()))));
    after.join(0).expect("the therapist comes back");
    let r = last_round(&after, 0).expect("the round came along");
    assert_eq!((r.order, r.current, r.skipped, r.turn_ends_at_ms), (was.order, was.current, was.skipped, was.turn_ends_at_ms));
    after.advance(Duration::from_secs(60));
    let r = last_round(&after, 0).expect("still there");
    assert_eq!(r.current, None, "p1's turn ended on the new node's timer, and p2 had left");
}

/// With the clinic keeping talk time, a participant's total so far moves with the room's saved
/// state and the new node counts on from it; without, the saved state holds none.
#[test]
fn kept_talk_time_moves_with_the_room_and_only_then() {
    for keep in [true, false] {
        let mut s = settings(false, Duration::from_secs(30));
        s.talk_time_in_attendance = keep;
        let mut before = Model::with_settings(s.clone());
        before.join(0).expect("therapist");
        before.join(1).expect("p1");
        before.room.talk.tick([&pid(1)], Duration::from_secs(42));
        let json = serde_json::to_string(&before.room.snapshot()).expect("snapshot");
        assert_eq!(json.contains("talkSeconds"), keep, "{json}");
        let mut after = Model::with_settings(s);
        let now = after.room.now;
        let snap = super::snapshot::parse(&json).expect("parses");
        let ((), effects) = after.room.with(now, |r| r.restore(snap));
        after.replay(effects);
        assert_eq!(after.room.talk.seconds(&pid(1)), if keep { 42 } else { 0 });
        after.join(1).expect("p1 is back");
        after.input(RoomInput::Leave(pid(1)));
        assert_eq!(last_attendance(&after, &pid(1)).talk_seconds, keep.then_some(42));
    }
}
