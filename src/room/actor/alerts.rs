//! Rate limits on what a participant can do that alerts the therapists or writes the audit log:
//! "ask for help" in a breakout, "I need support", sharing a milestone for approval, and raising
//! a hand (the therapist's client announces each raise). Each pings the therapists (and the
//! first two leave an audit row), so one person repeating them could drown out everyone else's
//! calls and fill the clinic's records.
//!
//! At most [`ALERTS_PER_WINDOW`] of each kind per [`ALERT_WINDOW`] per participant; beyond that
//! the sender gets `rate_limited` and nothing else happens (no alert, no audit row). Counted by
//! participant id in the room, so a reconnect (a new socket, the same id) does not reset it.
//!
//! [`Alerts`] owns only the counts; each feature asks [`Alerts::permit`] before it alerts.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Cx;
use crate::room::ParticipantId;
use crate::signal::protocol::ErrorCode;

/// Alerts of one kind one participant may raise per [`ALERT_WINDOW`].
pub const ALERTS_PER_WINDOW: usize = 3;
pub const ALERT_WINDOW: Duration = Duration::from_secs(60);

/// The kinds of alert, each with its own budget: asking for help must not use up the budget
/// for "I need support".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Alert {
    AskForHelp,
    RequestSupport,
    ShareMilestone,
    RaiseHand,
}

#[derive(Default)]
pub(super) struct Alerts {
    sent: HashMap<(ParticipantId, Alert), VecDeque<Instant>>,
}

impl Alerts {
    /// Counts an alert against `from`'s window; `false` (and nothing counted) when over it.
    pub(super) fn allow(&mut self, from: &ParticipantId, kind: Alert, now: Instant) -> bool {
        // Forget windows that have fully passed, so the map holds only recent senders.
        self.sent.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < ALERT_WINDOW));
        let times = self.sent.entry((from.clone(), kind)).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= ALERT_WINDOW) {
            times.pop_front();
        }
        if times.len() >= ALERTS_PER_WINDOW {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Counts an alert of `kind` from `from` at the context's time; over the limit, `from` is
    /// told `rate_limited` with [`refusal`], nothing is counted, and this returns `false`.
    pub(super) fn permit(&mut self, cx: &mut Cx, from: &ParticipantId, kind: Alert) -> bool {
        if self.allow(from, kind, cx.now.at) {
            return true;
        }
        cx.error(from, ErrorCode::RateLimited, refusal(kind));
        false
    }
}

/// The refusal people read. A call for help that is refused must say honestly that the
/// earlier ones reached the therapists, and where to turn now.
pub(super) fn refusal(kind: Alert) -> String {
    match kind {
        Alert::AskForHelp | Alert::RequestSupport => format!(
            "you asked {ALERTS_PER_WINDOW} times in the last minute and the therapists were alerted each time; they will come to you. If you are in danger, call your local emergency number now"
        ),
        Alert::ShareMilestone => format!("at most {ALERTS_PER_WINDOW} milestones a minute; your therapist will see the ones you shared"),
        Alert::RaiseHand => format!("you raised your hand {ALERTS_PER_WINDOW} times in the last minute; wait a moment before raising it again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_per_minute_per_person_and_kind() {
        let mut a = Alerts::default();
        let p = ParticipantId::from_trusted("p");
        let t0 = Instant::now();
        for i in 0..ALERTS_PER_WINDOW {
            assert!(a.allow(&p, Alert::RequestSupport, t0 + Duration::from_secs(i as u64)));
        }
        assert!(!a.allow(&p, Alert::RequestSupport, t0 + Duration::from_secs(10)));
        assert!(a.allow(&p, Alert::AskForHelp, t0 + Duration::from_secs(10)), "another kind has its own budget");
        assert!(a.allow(&ParticipantId::from_trusted("q"), Alert::RequestSupport, t0), "per participant");
        assert!(a.allow(&p, Alert::RequestSupport, t0 + ALERT_WINDOW), "the window slides");
    }

    #[test]
    fn a_refused_alert_tells_the_sender_why_and_counts_nothing() {
        let mut w = super::super::World::new();
        let p = w.admit("p", crate::auth::Role::Participant, None);
        let mut a = Alerts::default();
        for _ in 0..ALERTS_PER_WINDOW {
            assert!(a.permit(&mut w.cx(), &p, Alert::AskForHelp));
        }
        assert!(w.take().is_empty(), "a permitted alert asks for nothing itself");
        w.advance(ALERT_WINDOW / 2);
        assert!(!a.permit(&mut w.cx(), &p, Alert::AskForHelp));
        let sent = w.sent_to(&p);
        assert!(
            matches!(&sent[..], [crate::signal::protocol::ServerMessage::Error { code: ErrorCode::RateLimited, message }] if *message == refusal(Alert::AskForHelp)),
            "{sent:?}"
        );
        w.take();
        // The refusal was not counted: once the first three leave the window, the whole
        // budget is back (a counted refusal would still hold one place).
        w.advance(ALERT_WINDOW / 2);
        for _ in 0..ALERTS_PER_WINDOW {
            assert!(a.permit(&mut w.cx(), &p, Alert::AskForHelp));
        }
        assert!(w.take().is_empty());
    }
}
