//! Go-around rounds: each member of a space speaks in turn (a check-in, a check-out). The server
//! owns the order and the clock: it decides whose turn it is and when it ends, and every screen
//! shows the same order and counts down to the same end.
//!
//! A turn ends when the speaker passes (if the round allows it), when the therapist moves on,
//! or when its time is up (the room's timer, whose generation number makes a timer set for an
//! earlier turn a no-op). Someone admitted to the space during the round is added at the end;
//! someone who leaves before their turn is skipped (and un-skipped if they are back in time);
//! a speaker who leaves ends their turn. One round per space: a breakout's round is its own.
//!
//! Time is an input: every method that reads the clock takes `now`. Rounds are in the room's
//! saved state (a running turn's end as wall time), so a room that moves to another relay node
//! keeps its round and its clock. Owns only the round; who is in which space, and who may start
//! or steer a round, is the room's.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::effect::Now;
use crate::room::ParticipantId;
use crate::signal::protocol::{RoundInfo, RoundOrder};

type Space = Option<String>;

/// The shortest and longest turn a round may set, in seconds.
pub(super) const MIN_TURN_SECS: u32 = 5;
pub(super) const MAX_TURN_SECS: u32 = 900;

/// When the current turn of a space's round ends, and the generation a timer for it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TurnDeadline {
    pub at: Instant,
    pub generation: u64,
}

#[derive(Debug)]
struct Round {
    order: Vec<ParticipantId>,
    /// Index of the current speaker in `order`; `order.len()` when the round is over.
    at: usize,
    passed: Vec<ParticipantId>,
    skipped: Vec<ParticipantId>,
    allow_pass: bool,
    seconds: Option<u32>,
    turn_ends: Option<Instant>,
    /// The same end as wall time, for the saved state (fixed when the turn starts, so an
    /// unchanged round saves the same bytes).
    turn_ends_ms: Option<u64>,
    generation: u64,
}

/// A round as the room's saved state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RoundSnap {
    order: Vec<ParticipantId>,
    at: usize,
    passed: Vec<ParticipantId>,
    skipped: Vec<ParticipantId>,
    allow_pass: bool,
    seconds: Option<u32>,
    turn_ends_ms: Option<u64>,
}

/// Every space's round, keyed by space id (the main room under `""`).
pub(super) type RoundsSnap = BTreeMap<String, RoundSnap>;

impl Round {
    fn current(&self) -> Option<&ParticipantId> {
        self.order.get(self.at)
    }

    /// Moves to the next person not skipped, starting at `from`, and starts their clock.
    fn go_to(&mut self, from: usize, now: Now, generation: u64) -> Option<TurnDeadline> {
        self.at = from;
        while self.at < self.order.len() && self.skipped.contains(&self.order[self.at]) {
            self.at += 1;
        }
        self.generation = generation;
        let length = match (self.current(), self.seconds) {
            (Some(_), Some(s)) => Some(Duration::from_secs(u64::from(s))),
            _ => None,
        };
        self.turn_ends = length.map(|l| now.at + l);
        self.turn_ends_ms = length.map(|l| now.unix_ms.max(0) as u64 + l.as_millis() as u64);
        self.turn_ends.map(|at| TurnDeadline { at, generation })
    }
}

#[derive(Debug, Default)]
pub(super) struct Rounds {
    spaces: HashMap<Space, Round>,
    /// Shared by every space's rounds, so no two turns ever carry the same generation.
    generation: u64,
}

/// Why a round request was refused: a code-worthy reason the room turns into an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RoundRefusal {
    NoRound,
    NotYourTurn,
    PassNotAllowed,
}

impl Rounds {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Starts (or restarts) the round of `space` with `order`, the first speaker's turn begun.
    pub(super) fn start(
        &mut self,
        space: &Space,
        order: Vec<ParticipantId>,
        allow_pass: bool,
        seconds: Option<u32>,
        now: Now,
    ) -> Option<TurnDeadline> {
        let generation = self.next_generation();
        let mut round = Round {
            order,
            at: 0,
            passed: Vec::new(),
            skipped: Vec::new(),
            allow_pass,
            seconds,
            turn_ends: None,
            turn_ends_ms: None,
            generation,
        };
        let deadline = round.go_to(0, now, generation);
        self.spaces.insert(space.clone(), round);
        deadline
    }

    /// The therapist's "next".
    pub(super) fn next(&mut self, space: &Space, now: Now) -> Result<Option<TurnDeadline>, RoundRefusal> {
        let generation = self.next_generation();
        let round = self.spaces.get_mut(space).ok_or(RoundRefusal::NoRound)?;
        let from = (round.at + 1).min(round.order.len());
        Ok(round.go_to(from, now, generation))
    }

    /// The speaker passes (or says they are done).
    pub(super) fn pass(&mut self, space: &Space, who: &ParticipantId, now: Now) -> Result<Option<TurnDeadline>, RoundRefusal> {
        let generation = self.next_generation();
        let round = self.spaces.get_mut(space).ok_or(RoundRefusal::NoRound)?;
        if round.current() != Some(who) {
            return Err(RoundRefusal::NotYourTurn);
        }
        if !round.allow_pass {
            return Err(RoundRefusal::PassNotAllowed);
        }
        round.passed.push(who.clone());
        let from = round.at + 1;
        Ok(round.go_to(from, now, generation))
    }

    /// A turn's timer fired: `Some(next deadline)` when it still mattered and the round moved
    /// on, `None` when the turn had already ended otherwise.
    pub(super) fn time_up(&mut self, space: &Space, generation: u64, now: Now) -> Option<Option<TurnDeadline>> {
        let next = self.next_generation();
        let round = self.spaces.get_mut(space)?;
        if round.generation != generation || round.current().is_none() {
            return None;
        }
        let from = round.at + 1;
        Some(round.go_to(from, now, next))
    }

    /// Ends the round of `space`; `false` when there was none.
    pub(super) fn end(&mut self, space: &Space) -> bool {
        self.spaces.remove(space).is_some()
    }

    /// `who` arrived in `space`: a late joiner goes to the end of a running round; someone
    /// skipped who is back before their turn is un-skipped. `true` when the round changed.
    pub(super) fn arrived(&mut self, space: &Space, who: &ParticipantId) -> bool {
        let Some(round) = self.spaces.get_mut(space) else { return false };
        if round.current().is_none() {
            return false;
        }
        match round.order.iter().position(|p| p == who) {
            None => {
                round.order.push(who.clone());
                true
            }
            Some(i) if i > round.at && round.skipped.contains(who) => {
                round.skipped.retain(|p| p != who);
                true
            }
            Some(_) => false,
        }
    }

    /// `who` left `space` (or the session). `Some(new deadline to set)` when the round
    /// changed: a later speaker is skipped; the current one's turn ends.
    pub(super) fn departed(&mut self, space: &Space, who: &ParticipantId, now: Now) -> Option<Option<TurnDeadline>> {
        let generation = self.next_generation();
        let round = self.spaces.get_mut(space)?;
        let i = round.order.iter().position(|p| p == who)?;
        if i == round.at {
            round.skipped.push(who.clone());
            let from = round.at + 1;
            return Some(round.go_to(from, now, generation));
        }
        if i > round.at && !round.skipped.contains(who) {
            round.skipped.push(who.clone());
            // The current turn's timer stands.
            return Some(None);
        }
        None
    }

    /// What everyone in `space` is sent.
    pub(super) fn info(&self, space: &Space, now: Instant) -> Option<RoundInfo> {
        let round = self.spaces.get(space)?;
        let left = round.turn_ends.map(|end| end.saturating_duration_since(now));
        Some(RoundInfo {
            order: round.order.clone(),
            current: round.current().cloned(),
            passed: round.passed.clone(),
            skipped: round.skipped.clone(),
            allow_pass: round.allow_pass,
            seconds_per_turn: round.seconds,
            turn_ends_at_ms: round.turn_ends_ms,
            seconds_left: left.map(|l| l.as_secs_f64().ceil() as u32),
        })
    }
}

impl Rounds {
    pub(super) fn snapshot(&self) -> RoundsSnap {
        self.spaces
            .iter()
            .map(|(space, r)| {
                let snap = RoundSnap {
                    order: r.order.clone(),
                    at: r.at,
                    passed: r.passed.clone(),
                    skipped: r.skipped.clone(),
                    allow_pass: r.allow_pass,
                    seconds: r.seconds,
                    turn_ends_ms: r.turn_ends_ms,
                };
                (space.clone().unwrap_or_default(), snap)
            })
            .collect()
    }

    /// A saved round is read like client input (see `snapshot.rs`): valid ids, nobody twice,
    /// the speaker within the order, passes and skips from it, limits kept, a turn's end no
    /// further ahead than a turn lasts.
    pub(super) fn valid_snapshot(snap: &RoundsSnap, now_ms: u64, max_entries: usize) -> bool {
        snap.len() <= max_entries
            && snap.values().all(|r| {
                let mut seen = std::collections::HashSet::new();
                r.order.len() <= max_entries
                    && r.order.iter().all(|p| crate::room::valid_participant_id(p.as_str()) && seen.insert(p))
                    && r.at <= r.order.len()
                    && r.passed.len() <= r.order.len()
                    && r.skipped.len() <= r.order.len()
                    && r.passed.iter().chain(&r.skipped).all(|p| r.order.contains(p))
                    && r.seconds.is_none_or(|s| (MIN_TURN_SECS..=MAX_TURN_SECS).contains(&s))
                    && r.turn_ends_ms.is_some() == (r.seconds.is_some() && r.at < r.order.len())
                    && r.turn_ends_ms.is_none_or(|e| e <= now_ms + u64::from(MAX_TURN_SECS) * 1000 + 60_000)
            })
    }

    /// Takes over validated rounds; the turn timers to set again (a turn whose end passed while
    /// the room moved ends at once).
    pub(super) fn restore(&mut self, snap: RoundsSnap, now: Now) -> Vec<(Space, TurnDeadline)> {
        let mut timers = Vec::new();
        for (key, r) in snap {
            let space = (!key.is_empty()).then_some(key);
            let generation = self.next_generation();
            let now_ms = now.unix_ms.max(0) as u64;
            let turn_ends = r.turn_ends_ms.map(|e| now.at + Duration::from_millis(e.saturating_sub(now_ms)));
            if let Some(at) = turn_ends {
                timers.push((space.clone(), TurnDeadline { at, generation }));
            }
            let round = Round {
                order: r.order,
                at: r.at,
                passed: r.passed,
                skipped: r.skipped,
                allow_pass: r.allow_pass,
                seconds: r.seconds,
                turn_ends,
                turn_ends_ms: r.turn_ends_ms,
                generation,
            };
            self.spaces.insert(space, round);
        }
        timers
    }

    /// Spaces that no longer exist lose their round (a restored breakout plan may have fewer).
    pub(super) fn retain_spaces(&mut self, exists: impl Fn(&Space) -> bool) {
        self.spaces.retain(|s, _| exists(s));
    }
}

/// The order a round goes in. `roster` is the space's members who take turns, in join order;
/// `queue` the speaking queue's order. Shuffling is the caller's (it holds the randomness).
pub(super) fn order_for(order: RoundOrder, roster: &[ParticipantId], queue: &[ParticipantId]) -> Vec<ParticipantId> {
    match order {
        RoundOrder::Roster | RoundOrder::Random => roster.to_vec(),
        RoundOrder::Queue => {
            let mut out: Vec<ParticipantId> = queue.iter().filter(|p| roster.contains(p)).cloned().collect();
            out.extend(roster.iter().filter(|p| !queue.contains(p)).cloned());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParticipantId {
        ParticipantId::from_trusted(s)
    }

    #[test]
    fn turns_advance_on_pass_next_and_time_and_skip_leavers() {
        let t0 = Instant::now();
        let n0 = Now { at: t0, unix_ms: 0 };
        let mut r = Rounds::default();
        let d = r.start(&None, vec![p("a"), p("b"), p("c")], true, Some(30), n0).expect("timed");
        assert_eq!(d.at, t0 + Duration::from_secs(30));
        let info = r.info(&None, t0 + Duration::from_millis(10_500)).expect("running");
        assert_eq!((info.current, info.seconds_left, info.turn_ends_at_ms), (Some(p("a")), Some(20), Some(30_000)));
        assert_eq!(r.pass(&None, &p("b"), n0), Err(RoundRefusal::NotYourTurn));
        // Time up: b's turn.
        let d2 = r.time_up(&None, d.generation, n0.after(Duration::from_secs(30))).expect("mattered").expect("timed");
        assert_eq!(r.time_up(&None, d.generation, n0.after(Duration::from_secs(31))), None, "a stale timer changes nothing");
        // c leaves before their turn; b passes; the round is over.
        assert!(r.departed(&None, &p("c"), n0).is_some());
        r.pass(&None, &p("b"), n0.after(Duration::from_secs(40))).expect("b may pass");
        assert_eq!(r.time_up(&None, d2.generation, n0.after(Duration::from_secs(60))), None);
        let info = r.info(&None, t0).expect("still shown");
        assert_eq!((info.current, info.passed, info.skipped), (None, vec![p("b")], vec![p("c")]));
        assert!(!r.arrived(&None, &p("d")), "nobody is added to a finished round");
        assert!(r.end(&None));
        assert_eq!(r.next(&None, n0), Err(RoundRefusal::NoRound));
    }

    #[test]
    fn late_joiners_go_last_and_the_queue_order_comes_first() {
        let t0 = Instant::now();
        let n0 = Now { at: t0, unix_ms: 0 };
        let mut r = Rounds::default();
        assert_eq!(r.start(&None, order_for(RoundOrder::Queue, &[p("a"), p("b"), p("c")], &[p("c")]), false, None, n0), None);
        assert!(r.arrived(&None, &p("d")));
        assert_eq!(r.pass(&None, &p("c"), n0), Err(RoundRefusal::PassNotAllowed));
        r.next(&None, n0).expect("running");
        let info = r.info(&None, t0).expect("running");
        assert_eq!(info.order, vec![p("c"), p("a"), p("b"), p("d")]);
        assert_eq!(info.current, Some(p("a")));
        assert_eq!(info.seconds_left, None);
    }

    #[test]
    fn a_saved_round_comes_back_with_its_speaker_and_clock() {
        let t0 = Instant::now();
        let n0 = Now { at: t0, unix_ms: 1_000_000 };
        let b1 = Some("b1".to_string());
        let mut r = Rounds::default();
        r.start(&None, vec![p("a"), p("b"), p("c")], true, Some(60), n0);
        r.pass(&None, &p("a"), n0.after(Duration::from_secs(10))).expect("a passes");
        r.start(&b1, vec![p("x"), p("y")], false, None, n0);
        let snap = r.snapshot();
        assert_eq!(snap, r.snapshot(), "an unchanged round saves the same state");
        assert!(Rounds::valid_snapshot(&snap, 1_000_000, 100));
        assert_eq!(snap[""].turn_ends_ms, Some(1_070_000), "b's turn started at 10 s and lasts 60 s");
        // Another node, 20 s later by both clocks.
        let n1 = Now { at: t0 + Duration::from_secs(500), unix_ms: 1_030_000 };
        let mut moved = Rounds::default();
        let timers = moved.restore(snap.clone(), n1);
        assert_eq!(timers.len(), 1, "only the timed round has a timer");
        assert_eq!(timers[0].1.at, n1.at + Duration::from_secs(40));
        let info = moved.info(&None, n1.at).expect("restored");
        assert_eq!((info.current, info.passed, info.seconds_left), (Some(p("b")), vec![p("a")], Some(40)));
        assert!(moved.time_up(&None, timers[0].1.generation, n1.after(Duration::from_secs(40))).is_some(), "the restored timer counts");
        assert_eq!(moved.info(&None, n1.at).and_then(|i| i.current), Some(p("c")));
        moved.retain_spaces(|s| s.is_none());
        assert!(moved.info(&b1, n1.at).is_none(), "a breakout that did not come back loses its round");
        // Read like client input.
        let mut bad = snap.clone();
        bad.get_mut("").unwrap().at = 9;
        assert!(!Rounds::valid_snapshot(&bad, 1_000_000, 100));
        let mut bad = snap.clone();
        bad.get_mut("").unwrap().passed = vec![p("stranger")];
        assert!(!Rounds::valid_snapshot(&bad, 1_000_000, 100));
        let mut bad = snap;
        bad.get_mut("").unwrap().turn_ends_ms = Some(u64::MAX / 2);
        assert!(!Rounds::valid_snapshot(&bad, 1_000_000, 100));
    }
}
