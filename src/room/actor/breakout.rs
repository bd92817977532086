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
//!
//! [`Breakouts`] owns the plan: the breakouts, the assignments, whether they are open, the
//! timers' generation. Its rules answer with a [`Change`]; moving members (their media, their
//! hand, what each feature tells them on arrival) is the room's (`space.rs`).

use std::collections::HashMap;
use std::time::Duration;

use rand::seq::SliceRandom;

use super::alerts::{Alert, Alerts};
use super::snapshot::BreakoutsSnap;
use super::{Cx, Effect, Timer};
use crate::auth::Role;
use crate::room::ParticipantId;
use crate::signal::protocol::{BreakoutInfo, BreakoutPlan, ClientMessage, ErrorCode, ServerMessage, Whereabouts};

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

    pub(super) fn exists(&self, id: &str) -> bool {
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

/// What a breakout rule asks of the room, which alone moves members between spaces. The room
/// closes the polls of the `ended` breakouts (while their members are still there to hear it),
/// makes the `moves` in order, forgets what was said in the `ended` breakouts, writes `audit`,
/// and tells the therapists the new plan.
#[derive(Debug, Default)]
pub(super) struct Change {
    pub(super) ended: Vec<String>,
    /// Who goes where (`None`: the main room).
    pub(super) moves: Vec<(ParticipantId, Option<String>)>,
    pub(super) audit: Option<Effect>,
}

impl Change {
    fn audited(actor: &ParticipantId, action: &'static str, target: Option<&ParticipantId>) -> Self {
        Self { audit: Some(Effect::Audit { actor: actor.clone(), action, target: target.cloned() }), ..Self::default() }
    }

    fn with_moves(mut self, moves: Vec<(ParticipantId, Option<String>)>) -> Self {
        self.moves = moves;
        self
    }
}

/// Answers a refused request: `to` is told why and nothing changes.
fn refuse(cx: &mut Cx, to: &ParticipantId, code: ErrorCode, message: impl Into<String>) -> Option<Change> {
    cx.error(to, code, message);
    None
}

impl Breakouts {
    /// The breakout messages (moderator-only ones are checked in `Room::client`).
    pub(super) fn on_message(&mut self, cx: &mut Cx, alerts: &mut Alerts, from: &ParticipantId, msg: ClientMessage) -> Option<Change> {
        match msg {
            ClientMessage::CreateBreakout { name } => {
                let name = name.trim().to_string();
                if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                    return refuse(cx, from, ErrorCode::InvalidField, "a breakout name is 1 to 60 characters");
                }
                if name.chars().any(crate::room::is_forbidden_in_names) {
                    return refuse(
                        cx,
                        from,
                        ErrorCode::InvalidField,
                        "a breakout name must not contain control or text-direction characters",
                    );
                }
                if self.rooms.len() >= MAX_BREAKOUTS {
                    return refuse(cx, from, ErrorCode::InvalidField, format!("at most {MAX_BREAKOUTS} breakout rooms"));
                }
                self.next_id += 1;
                let id = format!("b{}", self.next_id);
                self.rooms.push((id, name));
                Some(Change::audited(from, "breakout_create", None))
            }
            ClientMessage::DeleteBreakout { breakout_id } => {
                if !self.exists(&breakout_id) {
                    return refuse(cx, from, ErrorCode::UnknownBreakout, "no breakout with that id");
                }
                self.rooms.retain(|(b, _)| b != &breakout_id);
                self.assignment.retain(|_, b| b != &breakout_id);
                let inside: Vec<_> =
                    cx.members.values().filter(|m| m.space.as_deref() == Some(&breakout_id)).map(|m| (m.info.id.clone(), None)).collect();
                Some(Change { ended: vec![breakout_id], ..Change::audited(from, "breakout_delete", None) }.with_moves(inside))
            }
            ClientMessage::AssignBreakout { participant_id, breakout_id } => {
                if !cx.members.get(&participant_id).is_some_and(|m| m.admitted) {
                    return refuse(cx, from, ErrorCode::UnknownParticipant, "nobody with that id is in the room");
                }
                match &breakout_id {
                    Some(b) if !self.exists(b) => {
                        return refuse(cx, from, ErrorCode::UnknownBreakout, "no breakout with that id");
                    }
                    Some(b) => {
                        self.assignment.insert(participant_id.clone(), b.clone());
                    }
                    None => {
                        self.assignment.remove(&participant_id);
                    }
                }
                let change = Change::audited(from, "breakout_assign", Some(&participant_id));
                if self.open {
                    return Some(change.with_moves(vec![(participant_id, breakout_id)]));
                }
                Some(change)
            }
            ClientMessage::AutoAssignBreakouts => {
                if self.rooms.is_empty() {
                    return refuse(cx, from, ErrorCode::UnknownBreakout, "create breakout rooms first");
                }
                let mut people: Vec<_> = cx
                    .order
                    .iter()
                    .filter(|id| cx.members.get(*id).is_some_and(|m| m.admitted && m.info.role != Role::Therapist))
                    .cloned()
                    .collect();
                people.shuffle(&mut rand::rng());
                let rooms: Vec<String> = self.rooms.iter().map(|(b, _)| b.clone()).collect();
                let mut moves = Vec::new();
                for (i, id) in people.into_iter().enumerate() {
                    let b = rooms[i % rooms.len()].clone();
                    self.assignment.insert(id.clone(), b.clone());
                    moves.push((id, Some(b)));
                }
                let change = Change::audited(from, "breakout_auto_assign", None);
                if self.open {
                    return Some(change.with_moves(moves));
                }
                Some(change)
            }
            ClientMessage::OpenBreakouts { duration_secs, warning_secs, allow_return } => {
                if self.rooms.is_empty() {
                    return refuse(cx, from, ErrorCode::UnknownBreakout, "create breakout rooms first");
                }
                if duration_secs.is_some_and(|d| d == 0 || d > MAX_DURATION_SECS) {
                    return refuse(cx, from, ErrorCode::InvalidField, format!("duration is 1 to {MAX_DURATION_SECS} seconds"));
                }
                let moves = self.open(cx, duration_secs, warning_secs, allow_return);
                Some(Change::audited(from, "breakout_open", None).with_moves(moves))
            }
            ClientMessage::BroadcastToBreakouts { text } => {
                let text = text.trim().to_string();
                if text.is_empty() || text.chars().count() > 500 {
                    return refuse(cx, from, ErrorCode::InvalidField, "a broadcast is 1 to 500 characters");
                }
                let name = cx.members.get(from).map(|m| m.info.name.clone()).unwrap_or_default();
                cx.send_admitted(ServerMessage::BreakoutBroadcast { from: name, text });
                cx.audit(from, "breakout_broadcast", None);
                None
            }
            ClientMessage::CloseBreakouts { countdown_secs } => {
                if !self.open {
                    return refuse(cx, from, ErrorCode::UnknownBreakout, "the breakouts are not open");
                }
                let secs = countdown_secs.unwrap_or(DEFAULT_CLOSE_COUNTDOWN_SECS).min(300);
                self.generation += 1;
                let generation = self.generation;
                self.closes_at_ms = Some(cx.now.unix_ms as u64 + u64::from(secs) * 1000);
                cx.send_admitted(ServerMessage::BreakoutsClosing { seconds_left: secs });
                cx.schedule(Duration::from_secs(u64::from(secs)), Timer::BreakoutClose(generation));
                Some(Change::audited(from, "breakout_close", None))
            }
            ClientMessage::GoToBreakout { breakout_id } => self.go_to(cx, from, breakout_id),
            ClientMessage::AskForHelp => {
                if !alerts.permit(cx, from, Alert::AskForHelp) {
                    return None;
                }
                let m = cx.members.get(from)?;
                let msg =
                    ServerMessage::HelpRequested { participant_id: from.clone(), name: m.info.name.clone(), breakout_id: m.space.clone() };
                for t in cx.therapists() {
                    cx.send(&t, msg.clone());
                }
                cx.audit(from, "ask_for_help", None);
                None
            }
            _ => None,
        }
    }

    /// Opens the breakouts: timers set, and everyone assigned moves.
    fn open(
        &mut self,
        cx: &mut Cx,
        duration_secs: Option<u32>,
        warning_secs: Option<u32>,
        allow_return: bool,
    ) -> Vec<(ParticipantId, Option<String>)> {
        self.open = true;
        self.allow_return = allow_return;
        self.generation += 1;
        let generation = self.generation;
        self.closes_at_ms = duration_secs.map(|d| cx.now.unix_ms as u64 + u64::from(d) * 1000);
        if let Some(d) = duration_secs {
            let warn = warning_secs.unwrap_or(DEFAULT_WARNING_SECS).min(d);
            if warn > 0 && warn < d {
                cx.schedule(Duration::from_secs(u64::from(d - warn)), Timer::BreakoutWarning(generation));
            }
            cx.schedule(Duration::from_secs(u64::from(d)), Timer::BreakoutClose(generation));
        }
        cx.order.iter().filter_map(|id| self.assignment.get(id).map(|b| (id.clone(), Some(b.clone())))).collect()
    }

    /// Opens one breakout per group (`Partners 1`, `Partners 2`, …) in place of the breakouts
    /// there were (closed: refused while open). The groups come from the room, already checked.
    pub(super) fn open_groups(
        &mut self,
        cx: &mut Cx,
        from: &ParticipantId,
        groups: Vec<Vec<ParticipantId>>,
        duration_secs: Option<u32>,
        allow_return: bool,
    ) -> Option<Change> {
        if self.open {
            return refuse(cx, from, ErrorCode::InvalidPartners, "close the open breakouts first");
        }
        if duration_secs.is_some_and(|d| d == 0 || d > MAX_DURATION_SECS) {
            return refuse(cx, from, ErrorCode::InvalidField, format!("duration is 1 to {MAX_DURATION_SECS} seconds"));
        }
        if groups.is_empty() || groups.len() > MAX_BREAKOUTS {
            return refuse(cx, from, ErrorCode::InvalidPartners, "none of the saved partner groups can meet with who is here");
        }
        let ended: Vec<String> = self.rooms.drain(..).map(|(b, _)| b).collect();
        self.assignment.clear();
        for (n, group) in groups.into_iter().enumerate() {
            self.next_id += 1;
            let id = format!("b{}", self.next_id);
            self.rooms.push((id.clone(), format!("Partners {}", n + 1)));
            for p in group {
                self.assignment.insert(p, id.clone());
            }
        }
        let moves = self.open(cx, duration_secs, None, allow_return);
        Some(Change { ended, ..Change::audited(from, "partner_breakouts_open", None) }.with_moves(moves))
    }

    fn go_to(&mut self, cx: &mut Cx, from: &ParticipantId, target: Option<String>) -> Option<Change> {
        let m = cx.members.get(from)?;
        let is_therapist = m.is_therapist();
        if let Some(b) = &target {
            if !self.exists(b) {
                return refuse(cx, from, ErrorCode::UnknownBreakout, "no breakout with that id");
            }
        }
        if !self.open && target.is_some() {
            return refuse(cx, from, ErrorCode::UnknownBreakout, "the breakouts are not open");
        }
        if !is_therapist {
            let assigned = self.assignment.get(from).cloned();
            let allowed = match &target {
                // Back to the main room only when the therapist allowed it.
                None => self.allow_return,
                // Only to one's own breakout (after stepping out of it).
                Some(b) => assigned.as_ref() == Some(b),
            };
            if !allowed {
                let why = if target.is_none() {
                    "the therapist asked everyone to stay in their breakout"
                } else {
                    "you can only go to the breakout you were assigned to"
                };
                return refuse(cx, from, ErrorCode::ReturnNotAllowed, why);
            }
        }
        Some(Change::default().with_moves(vec![(from.clone(), target)]))
    }

    /// The warning timer of opening `generation` fired.
    pub(super) fn on_warning(&self, cx: &mut Cx, generation: u64) {
        if generation != self.generation || !self.open {
            return;
        }
        let left = self.closes_at_ms.map(|t| t.saturating_sub(cx.now.unix_ms as u64).div_ceil(1000) as u32).unwrap_or(0);
        cx.send_admitted(ServerMessage::BreakoutWarning { seconds_left: left });
    }

    /// The duration ran out or the close-all countdown ended: everyone returns.
    pub(super) fn on_close(&mut self, cx: &Cx, generation: u64) -> Option<Change> {
        if generation != self.generation || !self.open {
            return None;
        }
        self.open = false;
        self.closes_at_ms = None;
        self.generation += 1;
        let ended: Vec<String> = self.rooms.iter().map(|(b, _)| b.clone()).collect();
        let away: Vec<_> =
            cx.order.iter().filter(|id| cx.members.get(*id).is_some_and(|m| m.space.is_some())).map(|id| (id.clone(), None)).collect();
        Some(Change { ended, moves: away, audit: None })
    }

    /// When `space` (a breakout) closes, if a time is set; `None` for any other space.
    pub(super) fn closes_at_ms(&self, space: &Option<String>) -> Option<u64> {
        if space.as_deref().is_some_and(|b| self.exists(b)) {
            self.closes_at_ms
        } else {
            None
        }
    }

    /// Whether people may go back to the main room on their own.
    pub(super) fn allow_return(&self) -> bool {
        self.allow_return
    }

    /// Tells the therapists the plan: the breakouts, who is (or will be) in each, and where
    /// everyone admitted is.
    pub(super) fn publish_plan(&self, cx: &mut Cx) {
        let rooms = self
            .rooms
            .iter()
            .map(|(id, name)| {
                let members = cx
                    .order
                    .iter()
                    .filter(|p| {
                        let here = cx.members.get(*p).and_then(|m| m.space.as_ref()) == Some(id);
                        here || (!self.open && self.assignment.get(*p) == Some(id))
                    })
                    .cloned()
                    .collect();
                BreakoutInfo { id: id.clone(), name: name.clone(), members }
            })
            .collect();
        let whereabouts = cx
            .order
            .iter()
            .filter_map(|id| cx.members.get(id))
            .filter(|m| m.admitted)
            .map(|m| Whereabouts {
                participant_id: m.info.id.clone(),
                name: m.info.name.clone(),
                role: m.info.role,
                breakout_id: m.space.clone(),
                reconnecting: !m.connected,
            })
            .collect();
        let plan = BreakoutPlan { open: self.open, rooms, closes_at_ms: self.closes_at_ms, allow_return: self.allow_return, whereabouts };
        for t in cx.therapists() {
            cx.send(&t, ServerMessage::BreakoutsUpdated { breakouts: plan.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::World;
    use super::*;

    fn ask(b: &mut Breakouts, w: &mut World, from: &ParticipantId, msg: ClientMessage) -> Option<Change> {
        b.on_message(&mut w.cx(), &mut Alerts::default(), from, msg)
    }

    fn audited(c: &Option<Change>) -> Option<&'static str> {
        match c.as_ref().and_then(|c| c.audit.as_ref()) {
            Some(Effect::Audit { action, .. }) => Some(action),
            _ => None,
        }
    }

    /// The plan's rules, without a room: what is refused, what moves are asked for and when,
    /// and the timers of an opening.
    #[test]
    fn the_plan_answers_with_the_moves_the_room_makes() {
        let mut w = World::new();
        let t = w.admit("t", Role::Therapist, None);
        let p1 = w.admit("p1", Role::Participant, None);
        let p2 = w.admit("p2", Role::Participant, None);
        let mut b = Breakouts::default();

        assert!(ask(&mut b, &mut w, &t, ClientMessage::CreateBreakout { name: "  ".into() }).is_none());
        assert_eq!(w.errors_to(&t), vec![ErrorCode::InvalidField]);
        w.take();
        let created = ask(&mut b, &mut w, &t, ClientMessage::CreateBreakout { name: " Pairs ".into() });
        assert_eq!(audited(&created), Some("breakout_create"));
        assert_eq!((b.first_id().as_deref(), b.name_of("b1")), (Some("b1"), Some("Pairs")));

        // Assigned while closed: remembered, nobody moves yet.
        let assign = |who: &ParticipantId| ClientMessage::AssignBreakout { participant_id: who.clone(), breakout_id: Some("b1".into()) };
        let c = ask(&mut b, &mut w, &t, assign(&p1));
        assert_eq!(audited(&c), Some("breakout_assign"));
        assert!(c.is_some_and(|c| c.moves.is_empty()));
        assert_eq!(b.space_for(&p1), None, "closed: everyone is in the main room");
        let stranger = ParticipantId::from_trusted("nobody");
        assert!(ask(&mut b, &mut w, &t, assign(&stranger)).is_none());
        assert_eq!(w.errors_to(&t), vec![ErrorCode::UnknownParticipant]);
        w.take();
        assert!(ask(&mut b, &mut w, &p1, ClientMessage::GoToBreakout { breakout_id: Some("b1".into()) }).is_none());
        assert_eq!(w.errors_to(&p1), vec![ErrorCode::UnknownBreakout], "not open yet");
        w.take();

        // Opening for ten minutes: the assigned move, a warning a minute before, then the close.
        let open = ClientMessage::OpenBreakouts { duration_secs: Some(600), warning_secs: None, allow_return: false };
        let c = ask(&mut b, &mut w, &t, open);
        assert_eq!(audited(&c), Some("breakout_open"));
        assert_eq!(c.map(|c| c.moves), Some(vec![(p1.clone(), Some("b1".to_string()))]));
        let start = w.now;
        let timers: Vec<_> = w
            .take()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Timer { at, timer } => Some((at - start.at, timer)),
                _ => None,
            })
            .collect();
        let generation = match &timers[..] {
            [(warn_after, Timer::BreakoutWarning(g)), (close_after, Timer::BreakoutClose(h))] if g == h => {
                assert_eq!((warn_after.as_secs(), close_after.as_secs()), (540, 600));
                *g
            }
            other => panic!("a warning and a close: {other:?}"),
        };
        w.member(&p1).space = Some("b1".into());
        assert_eq!(b.space_for(&p1).as_deref(), Some("b1"));

        // Nobody leaves their breakout or enters another's unless allowed; a therapist goes anywhere.
        assert!(ask(&mut b, &mut w, &p1, ClientMessage::GoToBreakout { breakout_id: None }).is_none());
        assert!(ask(&mut b, &mut w, &p2, ClientMessage::GoToBreakout { breakout_id: Some("b1".into()) }).is_none());
        assert_eq!((w.errors_to(&p1), w.errors_to(&p2)), (vec![ErrorCode::ReturnNotAllowed], vec![ErrorCode::ReturnNotAllowed]));
        w.take();
        let c = ask(&mut b, &mut w, &t, ClientMessage::GoToBreakout { breakout_id: Some("b1".into()) });
        assert_eq!(c.map(|c| c.moves), Some(vec![(t.clone(), Some("b1".to_string()))]));

        // The warning says what is left by the room's clock; a stale close changes nothing.
        w.advance(Duration::from_secs(540));
        b.on_warning(&mut w.cx(), generation);
        assert!(matches!(w.sent_to(&p2)[..], [ServerMessage::BreakoutWarning { seconds_left: 60 }]));
        w.take();
        assert!(b.on_close(&w.cx(), generation - 1).is_none());
        w.advance(Duration::from_secs(60));
        let closed = b.on_close(&w.cx(), generation).expect("the opening's close");
        assert_eq!(closed.ended, vec!["b1".to_string()]);
        assert_eq!(closed.moves, vec![(p1.clone(), None)], "everyone away comes back, in join order");
        assert!(closed.audit.is_none(), "the clock closed them, not a person");
        assert!(b.on_close(&w.cx(), generation).is_none(), "once");
        assert_eq!(b.space_for(&p1), None);
    }

    /// Only therapists are told the plan; before opening it lists who is assigned where.
    #[test]
    fn the_plan_goes_to_therapists_with_assignments_before_opening() {
        let mut w = World::new();
        let t = w.admit("t", Role::Therapist, None);
        let p = w.admit("p", Role::Participant, None);
        let mut b = Breakouts::default();
        ask(&mut b, &mut w, &t, ClientMessage::CreateBreakout { name: "Pairs".into() });
        ask(&mut b, &mut w, &t, ClientMessage::AssignBreakout { participant_id: p.clone(), breakout_id: Some("b1".into()) });
        w.take();
        b.publish_plan(&mut w.cx());
        assert!(w.sent_to(&p).is_empty());
        match &w.sent_to(&t)[..] {
            [ServerMessage::BreakoutsUpdated { breakouts }] => {
                assert!(!breakouts.open);
                assert_eq!(breakouts.rooms[0].members, vec![p.clone()]);
                assert_eq!(breakouts.whereabouts.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }
}
