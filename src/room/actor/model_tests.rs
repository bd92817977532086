//! The room's rules driven directly, without sockets, peers or sleeps: commands go into
//! [`Room::handle`], time is tokio's paused clock moved by the test, and what the room asks of
//! each member's socket and peer is read from plain channels. A property test runs random
//! command sequences and checks after every step what must always hold: nobody waiting sees
//! the room or gets a media connection, the counts add up, a ban keeps someone out, and a
//! participant's moderator action changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::signal::protocol::ServerMessage;

/// What rooms share, for tests: no store, no cluster, rooms of six.
pub(super) fn context_with(waiting_room: bool, reconnect_grace: Duration) -> Arc<RegistryInner> {
    let settings = super::super::RoomSettings {
        max_room_size: 6,
        max_tracks_per_participant: 3,
        waiting_room,
        reconnect_grace,
        ice_servers: Vec::new(),
        ballot_secret: [7; 32],
        ban_ttl: Duration::from_secs(3600),
    };
    Arc::new(RegistryInner {
        rooms: dashmap::DashMap::new(),
        participants: Default::default(),
        by_role: Default::default(),
        settings,
        store: None,
        cluster: std::sync::OnceLock::new(),
        bans: Default::default(),
        failures: Default::default(),
    })
}

/// One connection of one person, as the room sees it: what it was sent, what its peer was
/// asked to do.
struct Conn {
    outbox: mpsc::Receiver<ServerMessage>,
    peer: mpsc::UnboundedReceiver<PeerCommand>,
    _ended: oneshot::Receiver<EndReason>,
    admitted_seen: bool,
    activated: bool,
    sent: Vec<ServerMessage>,
}

struct Model {
    room: Room,
    rx: mpsc::Receiver<RoomCommand>,
    _handle: RoomHandle,
    ctx: Arc<RegistryInner>,
    conns: HashMap<ParticipantId, Conn>,
}

/// People in the tests: 0 the therapist, 1–4 participants, 5 an observer.
fn person(i: usize) -> (ParticipantId, Role) {
    match i {
        0 => (ParticipantId::from_trusted("t"), Role::Therapist),
        5 => (ParticipantId::from_trusted("o"), Role::Observer),
        n => (ParticipantId::from_trusted(format!("p{n}")), Role::Participant),
    }
}

fn therapist() -> ParticipantId {
    person(0).0
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
    Lock(bool),
    WaitingRoom(bool),
    HardMute(usize),
    /// A participant (1–4) tries a therapist's action on someone.
    Usurp(usize, usize),
    CreateBreakout,
    Assign(usize),
    OpenBreakouts,
    CloseBreakouts,
    Chat(usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6usize).prop_map(Op::Join),
        3 => (1..6usize).prop_map(Op::Admit),
        1 => Just(Op::AdmitAll),
        1 => (1..6usize, any::<bool>()).prop_map(|(i, f)| Op::Decline(i, f)),
        1 => (1..6usize).prop_map(Op::Remove),
        1 => (0..6usize).prop_map(Op::Leave),
        1 => (0..6usize).prop_map(Op::Disconnect),
        1 => any::<bool>().prop_map(Op::Lock),
        1 => any::<bool>().prop_map(Op::WaitingRoom),
        1 => (1..5usize).prop_map(Op::HardMute),
        2 => (1..5usize, 0..6usize).prop_map(|(a, b)| Op::Usurp(a, b)),
        1 => Just(Op::CreateBreakout),
        1 => (1..5usize).prop_map(Op::Assign),
        1 => Just(Op::OpenBreakouts),
        1 => Just(Op::CloseBreakouts),
        1 => (0..5usize).prop_map(Op::Chat),
        1 => (1..60u16).prop_map(Op::Advance),
    ]
}

/// What someone who was never admitted on a connection may be sent on it.
fn allowed_while_waiting(m: &ServerMessage) -> bool {
    // The agreement is the one thing shown at the door.
    matches!(
        m,
        ServerMessage::Joined { .. } | ServerMessage::Error { .. } | ServerMessage::SessionEnded { .. } | ServerMessage::Agreement { .. }
    )
}

impl Model {
    fn new(waiting_room: bool) -> Self {
        let ctx = context_with(waiting_room, Duration::from_secs(30));
        let (room, rx, handle) = build(RoomId::new("model").expect("room id"), ctx.clone());
        Self { room, rx, _handle: handle, ctx, conns: HashMap::new() }
    }

    fn client(&mut self, from: &ParticipantId, msg: ClientMessage) {
        self.room.handle(RoomCommand::Client { from: from.clone(), msg });
    }

    fn join(&mut self, i: usize) -> Result<(), RoomError> {
        let (id, role) = person(i);
        let (peer, peer_rx) = crate::sfu::PeerHandle::for_test();
        let (tx, outbox) = mpsc::channel(OUTBOX_CAPACITY);
        let (end_tx, ended) = oneshot::channel();
        let (reply, mut reply_rx) = oneshot::channel();
        let grant = Grant { participant: id.clone(), room: self.room.id.clone(), role, name: format!("Name {i}"), expires_at: u64::MAX };
        self.room.handle(RoomCommand::Join(JoinRequest { grant, outbox: tx, peer, ended: end_tx }, reply));
        let result = reply_rx.try_recv().unwrap_or(Err(RoomError::Closed));
        if result.is_ok() {
            let conn = Conn { outbox, peer: peer_rx, _ended: ended, admitted_seen: false, activated: false, sent: Vec::new() };
            self.conns.insert(id, conn);
        }
        result
    }

    fn breakout_id(&self) -> Option<String> {
        self.room.breakouts.first_id()
    }

    async fn apply(&mut self, op: &Op) {
        let t = therapist();
        match op {
            Op::Join(i) => {
                let _ = self.join(*i);
            }
            Op::Admit(i) => self.client(&t, ClientMessage::Admit { participant_id: person(*i).0 }),
            Op::AdmitAll => self.client(&t, ClientMessage::AdmitAll),
            Op::Decline(i, f) => self.client(&t, ClientMessage::Decline { participant_id: person(*i).0, r#final: *f }),
            Op::Remove(i) => self.client(&t, ClientMessage::Remove { participant_id: person(*i).0 }),
            Op::Leave(i) => {
                self.room.handle(RoomCommand::Leave(person(*i).0));
            }
            Op::Disconnect(i) => {
                self.room.handle(RoomCommand::Disconnected(person(*i).0));
            }
            Op::Lock(locked) => self.client(&t, ClientMessage::LockRoom { locked: *locked }),
            Op::WaitingRoom(enabled) => self.client(&t, ClientMessage::SetWaitingRoom { enabled: *enabled }),
            Op::HardMute(i) => self.client(&t, ClientMessage::Mute { participant_id: person(*i).0, kind: MediaKind::Audio, hard: true }),
            Op::Usurp(a, b) => {
                let (before, locked) = (self.admitted(), self.room.state.locked);
                let (who, target) = (person(*a).0, person(*b).0);
                self.client(&who, ClientMessage::Admit { participant_id: target.clone() });
                self.client(&who, ClientMessage::Remove { participant_id: target.clone() });
                self.client(&who, ClientMessage::LockRoom { locked: !locked });
                assert_eq!(self.admitted(), before, "{who}'s moderator actions changed who is in");
                assert_eq!(self.room.state.locked, locked, "{who} changed the lock");
            }
            Op::CreateBreakout => self.client(&t, ClientMessage::CreateBreakout { name: "Garden".into() }),
            Op::Assign(i) => {
                let breakout_id = self.breakout_id();
                self.client(&t, ClientMessage::AssignBreakout { participant_id: person(*i).0, breakout_id });
            }
            Op::OpenBreakouts => {
                self.client(&t, ClientMessage::OpenBreakouts { duration_secs: Some(120), warning_secs: None, allow_return: false })
            }
            Op::CloseBreakouts => self.client(&t, ClientMessage::CloseBreakouts { countdown_secs: None }),
            Op::Chat(i) => self.client(&person(*i).0, ClientMessage::Chat { text: "hello".into(), to: None }),
            Op::Advance(secs) => {
                tokio::time::advance(Duration::from_secs(u64::from(*secs))).await;
                // Timer tasks wake and post their commands; the room handles them in order.
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
                while let Ok(cmd) = self.rx.try_recv() {
                    self.room.handle(cmd);
                }
            }
        }
    }

    fn admitted(&self) -> BTreeSet<ParticipantId> {
        self.room.members.values().filter(|m| m.admitted).map(|m| m.info.id.clone()).collect()
    }

    /// What must hold after every step.
    fn check(&mut self, step: usize, op: &Op) {
        let ctx = &self.ctx;
        for (id, conn) in self.conns.iter_mut() {
            while let Ok(m) = conn.outbox.try_recv() {
                if matches!(m, ServerMessage::Admitted { .. }) {
                    conn.admitted_seen = true;
                }
                if !conn.admitted_seen {
                    assert!(allowed_while_waiting(&m), "step {step} {op:?}: {id} was sent {m:?} before being admitted");
                }
                if matches!(m, ServerMessage::WaitingList { .. }) {
                    assert_eq!(person(0).0, *id, "step {step}: only therapists see the waiting list");
                }
                conn.sent.push(m);
            }
            while let Ok(cmd) = conn.peer.try_recv() {
                // Closing a peer is always allowed (a waiting person leaves, is declined).
                if matches!(cmd, PeerCommand::Close) {
                    continue;
                }
                if matches!(cmd, PeerCommand::Activate) {
                    conn.activated = true;
                }
                assert!(conn.admitted_seen, "step {step} {op:?}: {id}'s peer was asked {cmd:?} before admission");
            }
        }
        for m in self.room.members.values() {
            let conn = self.conns.get(&m.info.id).expect("every member has a connection");
            if m.admitted && m.connected {
                assert!(conn.admitted_seen && conn.activated, "step {step} {op:?}: {} admitted without roster or media", m.info.id);
            }
            if !m.admitted {
                assert!(!conn.activated, "step {step} {op:?}: {} waits with a media connection", m.info.id);
            }
            assert!(!self.room.banned.contains(&m.info.id), "step {step} {op:?}: banned {} is in the room", m.info.id);
        }
        let counted = ctx.participants.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(counted, self.room.members.len(), "step {step} {op:?}: participant count");
        let by_role: usize = ctx.by_role.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).sum();
        assert_eq!(by_role, counted, "step {step}: counts by role add up");
        let order: BTreeSet<_> = self.room.order.iter().cloned().collect();
        let members: BTreeSet<_> = self.room.members.keys().cloned().collect();
        assert_eq!(order, members, "step {step} {op:?}: join order and members agree");
        assert_eq!(self.room.order.len(), members.len(), "step {step}: nobody twice in the join order");
        assert!(self.room.members.len() <= ctx.settings.max_room_size);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_keep_the_rooms_rules(waiting_room in any::<bool>(), ops in proptest::collection::vec(op(), 1..60)) {
        runtime().block_on(async {
            let mut model = Model::new(waiting_room);
            for (step, op) in ops.iter().enumerate() {
                model.apply(op).await;
                model.check(step, op);
            }
        });
    }
}

#[test]
fn a_removed_participant_stays_out_and_a_waiting_one_sees_nothing() {
    runtime().block_on(async {
        let mut model = Model::new(true);
        model.join(0).expect("therapist");
        model.join(1).expect("p1 waits");
        model.join(2).expect("p2 waits");
        model.check(0, &Op::Join(2));
        model.apply(&Op::Admit(1)).await;
        model.apply(&Op::Chat(1)).await;
        model.check(1, &Op::Admit(1));
        assert!(model.conns[&person(2).0].sent.iter().all(allowed_while_waiting), "p2 saw the room while waiting");
        model.apply(&Op::Remove(1)).await;
        model.check(2, &Op::Remove(1));
        assert_eq!(model.join(1), Err(RoomError::Banned));
        // Time passes (grace periods, timers): still out, still waiting.
        model.apply(&Op::Advance(45)).await;
        model.check(3, &Op::Advance(45));
        assert_eq!(model.join(1), Err(RoomError::Banned));
        assert!(!model.room.members[&person(2).0].admitted);
    });
}

#[test]
fn a_held_place_ends_when_the_grace_period_passes_in_simulated_time() {
    runtime().block_on(async {
        let mut model = Model::new(false);
        model.join(0).expect("therapist");
        model.join(1).expect("p1");
        model.apply(&Op::Disconnect(1)).await;
        assert!(model.room.members.contains_key(&person(1).0), "the place is held");
        model.apply(&Op::Advance(29)).await;
        assert!(model.room.members.contains_key(&person(1).0), "still held before the grace ends");
        model.apply(&Op::Advance(2)).await;
        assert!(!model.room.members.contains_key(&person(1).0), "gone after 30 s");
        model.check(0, &Op::Advance(2));
        let left = model.conns[&therapist()]
            .sent
            .iter()
            .any(|m| matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == person(1).0));
        assert!(left, "the therapist is told");
    });
}
