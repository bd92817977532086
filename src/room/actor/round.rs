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
//! Time is an input: every method that reads the clock takes `now`. Owns only the round; who
//! is in which space, and who may start or steer a round, is the room's.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

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
    generation: u64,
}

impl Round {
    fn current(&self) -> Option<&ParticipantId> {
        self.order.get(self.at)
    }

    /// Moves to the next person not skipped, starting at `from`, and starts their clock.
    fn go_to(&mut self, from: usize, now: Instant, generation: u64) -> Option<TurnDeadline> {
        self.at = from;
        while self.at < self.order.len() && self.skipped.contains(&self.order[self.at]) {
            self.at += 1;
        }
        self.generation = generation;
        self.turn_ends = match (self.current(), self.seconds) {
            (Some(_), Some(s)) => Some(now + Duration::from_secs(u64::from(s))),
            _ => None,
        };
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
        now: Instant,
    ) -> Option<TurnDeadline> {
        let generation = self.next_generation();
        let mut round = Round { order, at: 0, passed: Vec::new(), skipped: Vec::new(), allow_pass, seconds, turn_ends: None, generation };
        let deadline = round.go_to(0, now, generation);
        self.spaces.insert(space.clone(), round);
        deadline
    }

    /// The therapist's "next".
    pub(super) fn next(&mut self, space: &Space, now: Instant) -> Result<Option<TurnDeadline>, RoundRefusal> {
        let generation = self.next_generation();
        let round = self.spaces.get_mut(space).ok_or(RoundRefusal::NoRound)?;
        let from = (round.at + 1).min(round.order.len());
        Ok(round.go_to(from, now, generation))
    }

    /// The speaker passes (or says they are done).
    pub(super) fn pass(&mut self, space: &Space, who: &ParticipantId, now: Instant) -> Result<Option<TurnDeadline>, RoundRefusal> {
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
    pub(super) fn time_up(&mut self, space: &Space, generation: u64, now: Instant) -> Option<Option<TurnDeadline>> {
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
    pub(super) fn departed(&mut self, space: &Space, who: &ParticipantId, now: Instant) -> Option<Option<TurnDeadline>> {
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

    /// What everyone in `space` is sent. `now_ms` is the wall clock, for `turnEndsAtMs`.
    pub(super) fn info(&self, space: &Space, now: Instant, now_ms: u64) -> Option<RoundInfo> {
        let round = self.spaces.get(space)?;
        let left = round.turn_ends.map(|end| end.saturating_duration_since(now));
        Some(RoundInfo {
            order: round.order.clone(),
            current: round.current().cloned(),
            passed: round.passed.clone(),
            skipped: round.skipped.clone(),
            allow_pass: round.allow_pass,
            seconds_per_turn: round.seconds,
            turn_ends_at_ms: left.map(|l| now_ms + l.as_millis() as u64),
            seconds_left: left.map(|l| l.as_secs_f64().ceil() as u32),
        })
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
        let mut r = Rounds::default();
        let d = r.start(&None, vec![p("a"), p("b"), p("c")], true, Some(30), t0).expect("timed");
        assert_eq!(d.at, t0 + Duration::from_secs(30));
        let info = r.info(&None, t0 + Duration::from_millis(10_500), 1_000).expect("running");
        assert_eq!((info.current, info.seconds_left, info.turn_ends_at_ms), (Some(p("a")), Some(20), Some(20_500)));
        assert_eq!(r.pass(&None, &p("b"), t0), Err(RoundRefusal::NotYourTurn));
        // Time up: b's turn.
        let d2 = r.time_up(&None, d.generation, t0 + Duration::from_secs(30)).expect("mattered").expect("timed");
        assert_eq!(r.time_up(&None, d.generation, t0 + Duration::from_secs(31)), None, "a stale timer changes nothing");
        // c leaves before their turn; b passes; the round is over.
        assert!(r.departed(&None, &p("c"), t0).is_some());
        r.pass(&None, &p("b"), t0 + Duration::from_secs(40)).expect("b may pass");
        assert_eq!(r.time_up(&None, d2.generation, t0 + Duration::from_secs(60)), None);
        let info = r.info(&None, t0, 0).expect("still shown");
        assert_eq!((info.current, info.passed, info.skipped), (None, vec![p("b")], vec![p("c")]));
        assert!(!r.arrived(&None, &p("d")), "nobody is added to a finished round");
        assert!(r.end(&None));
        assert_eq!(r.next(&None, t0), Err(RoundRefusal::NoRound));
    }

    #[test]
    fn late_joiners_go_last_and_the_queue_order_comes_first() {
        let t0 = Instant::now();
        let mut r = Rounds::default();
        assert_eq!(r.start(&None, order_for(RoundOrder::Queue, &[p("a"), p("b"), p("c")], &[p("c")]), false, None, t0), None);
        assert!(r.arrived(&None, &p("d")));
        assert_eq!(r.pass(&None, &p("c"), t0), Err(RoundRefusal::PassNotAllowed));
        r.next(&None, t0).expect("running");
        let info = r.info(&None, t0, 0).expect("running");
        assert_eq!(info.order, vec![p("c"), p("a"), p("b"), p("d")]);
        assert_eq!(info.current, Some(p("a")));
        assert_eq!(info.seconds_left, None);
    }
}
