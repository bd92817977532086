//! The session's agenda and its segment timer: items with minutes, one running segment whose
//! end the server sets (started, extended, ended by a therapist), and one warning before the
//! end. Everyone admitted sees the same item and the same time left; late joiners and
//! reconnects are sent the state as it is. The agenda is in the room snapshot (its titles are
//! the therapist's words, like breakout names), so a relay-node move keeps it.
//!
//! Time is an input: the methods that read the clock take `now`. Saved templates are the
//! store's (per therapist); this type only checks an agenda's limits. Owns the agenda and the
//! segment clock; who may change them is the room's.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::signal::protocol::{AgendaInfo, AgendaItem};

pub(super) const MAX_ITEMS: usize = 20;
pub(super) const MAX_TITLE_CHARS: usize = 80;
pub(super) const MAX_MINUTES: u32 = 240;
pub(super) const MAX_EXTEND_MINUTES: u32 = 60;
pub(super) const MAX_TEMPLATE_NAME_CHARS: usize = 60;
/// The warning comes this long before a segment ends (or halfway through a shorter one).
pub(super) const WARNING: Duration = Duration::from_secs(60);

/// When the room should warn, and the generation a timer for it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Warning {
    pub at: Instant,
    pub generation: u64,
}

#[derive(Debug, Default)]
pub(super) struct Agenda {
    items: Vec<AgendaItem>,
    current: Option<u32>,
    done: Vec<u32>,
    ends: Option<Instant>,
    /// The same end on the wall clock, fixed when set (so snapshots of an unchanged agenda are
    /// identical).
    ends_at_ms: Option<u64>,
    generation: u64,
}

/// What the snapshot keeps: the items and which are done; a running segment's end as wall time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AgendaSnap {
    pub items: Vec<AgendaItem>,
    pub current: Option<u32>,
    pub done: Vec<u32>,
    pub ends_at_ms: Option<u64>,
}

/// Every item within the limits; the message people read otherwise.
pub(super) fn check_items(items: &[AgendaItem]) -> Result<(), String> {
    if items.len() > MAX_ITEMS {
        return Err(format!("an agenda has at most {MAX_ITEMS} items"));
    }
    for item in items {
        let n = item.title.chars().count();
        if n == 0 || n > MAX_TITLE_CHARS || item.title.trim() != item.title || item.title.chars().any(crate::room::is_forbidden_in_names) {
            return Err(format!("each item needs a title of 1 to {MAX_TITLE_CHARS} characters"));
        }
        if item.minutes == 0 || item.minutes > MAX_MINUTES {
            return Err(format!("each item lasts 1 to {MAX_MINUTES} minutes"));
        }
    }
    Ok(())
}

impl Agenda {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// A new agenda; a running segment stops. Check the items with [`check_items`] first.
    pub(super) fn set(&mut self, items: Vec<AgendaItem>) {
        self.next_generation();
        *self = Self { items, generation: self.generation, ..Self::default() };
    }

    pub(super) fn items(&self) -> &[AgendaItem] {
        &self.items
    }

    /// Starts item `index`, ending the running one. `None` when there is no such item.
    pub(super) fn start(&mut self, index: u32, now: Instant, now_ms: u64) -> Option<Option<Warning>> {
        let minutes = self.items.get(index as usize)?.minutes;
        self.finish_current();
        self.current = Some(index);
        self.done.retain(|d| *d != index);
        let length = Duration::from_secs(u64::from(minutes) * 60);
        self.ends = Some(now + length);
        self.ends_at_ms = Some(now_ms + length.as_millis() as u64);
        Some(self.warning(now))
    }

    /// `minutes` more for the running segment; `None` when none runs.
    pub(super) fn extend(&mut self, minutes: u32, now: Instant, now_ms: u64) -> Option<Option<Warning>> {
        self.current?;
        let more = Duration::from_secs(u64::from(minutes) * 60);
        let ends = self.ends?;
        // Over time: the extension counts from now.
        let (ends, ends_ms) = if ends < now { (now, now_ms) } else { (ends, self.ends_at_ms.unwrap_or(now_ms)) };
        self.ends = Some(ends + more);
        self.ends_at_ms = Some(ends_ms + more.as_millis() as u64);
        Some(self.warning(now))
    }

    /// Ends the running segment; `false` when none runs.
    pub(super) fn end(&mut self) -> bool {
        if self.current.is_none() {
            return false;
        }
        self.finish_current();
        self.next_generation();
        true
    }

    fn finish_current(&mut self) {
        if let Some(c) = self.current.take() {
            if !self.done.contains(&c) {
                self.done.push(c);
            }
        }
        self.ends = None;
        self.ends_at_ms = None;
    }

    /// The warning for the running segment's current end (a new generation: earlier warning
    /// timers become no-ops).
    fn warning(&mut self, now: Instant) -> Option<Warning> {
        let generation = self.next_generation();
        let ends = self.ends?;
        let left = ends.saturating_duration_since(now);
        let lead = WARNING.min(left / 2);
        (!lead.is_zero()).then(|| Warning { at: ends - lead, generation })
    }

    /// A warning timer fired: the seconds left to announce, if it still matters.
    pub(super) fn warning_due(&self, generation: u64, now: Instant) -> Option<u32> {
        if generation != self.generation || self.current.is_none() {
            return None;
        }
        self.ends.map(|e| e.saturating_duration_since(now).as_secs_f64().round() as u32)
    }

    pub(super) fn info(&self, now: Instant) -> AgendaInfo {
        let left = self.ends.map(|e| e.saturating_duration_since(now));
        AgendaInfo {
            items: self.items.clone(),
            current: self.current,
            done: self.done.clone(),
            ends_at_ms: self.ends_at_ms,
            seconds_left: left.map(|l| l.as_secs_f64().ceil() as u32),
        }
    }

    pub(super) fn snapshot(&self) -> AgendaSnap {
        AgendaSnap { items: self.items.clone(), current: self.current, done: self.done.clone(), ends_at_ms: self.ends_at_ms }
    }

    /// A saved agenda is read like client input (see `snapshot.rs`).
    pub(super) fn valid_snapshot(snap: &AgendaSnap, now_ms: u64, max_ahead_ms: u64) -> bool {
        let n = snap.items.len() as u32;
        check_items(&snap.items).is_ok()
            && snap.current.is_none_or(|c| c < n)
            && snap.done.iter().all(|d| *d < n)
            && snap.done.len() <= snap.items.len()
            && snap.ends_at_ms.is_none_or(|e| e <= now_ms + max_ahead_ms)
            && snap.current.is_some() == snap.ends_at_ms.is_some()
    }

    /// Restores a validated snapshot; the warning to set again, if the segment still runs.
    pub(super) fn restore(snap: AgendaSnap, now: Instant, now_ms: u64) -> (Self, Option<Warning>) {
        let ends = snap.ends_at_ms.map(|e| now + Duration::from_millis(e.saturating_sub(now_ms)));
        let mut agenda =
            Self { items: snap.items, current: snap.current, done: snap.done, ends, ends_at_ms: snap.ends_at_ms, generation: 0 };
        let warning = agenda.warning(now);
        (agenda, warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(title: &str, minutes: u32) -> AgendaItem {
        AgendaItem { title: title.into(), minutes }
    }

    #[test]
    fn segments_start_extend_warn_and_end_on_the_given_clock() {
        let t0 = Instant::now();
        let mut a = Agenda::default();
        assert!(check_items(&[item("", 5)]).is_err());
        assert!(check_items(&[item("Check-in", 0)]).is_err());
        a.set(vec![item("Check-in", 10), item("Skills", 2)]);
        assert_eq!(a.start(5, t0, 0), None, "no such item");
        let w = a.start(0, t0, 1_000).expect("started").expect("warned");
        assert_eq!(w.at, t0 + Duration::from_secs(540));
        let info = a.info(t0 + Duration::from_secs(60));
        assert_eq!((info.current, info.seconds_left, info.ends_at_ms), (Some(0), Some(540), Some(601_000)));
        let w2 = a.extend(5, t0 + Duration::from_secs(60), 61_000).expect("running").expect("warned");
        assert_eq!(a.info(t0).ends_at_ms, Some(901_000));
        assert_eq!(a.warning_due(w.generation, w.at), None, "the earlier warning no longer applies");
        assert_eq!(a.warning_due(w2.generation, w2.at), Some(60));
        // The next item ends this one; a 2-minute item warns at half time.
        let w3 = a.start(1, t0 + Duration::from_secs(100), 0).expect("started").expect("warned");
        assert_eq!(w3.at, t0 + Duration::from_secs(160));
        assert!(a.end());
        assert!(!a.end());
        let info = a.info(t0);
        assert_eq!((info.current, info.done), (None, vec![0, 1]));
        assert!(Agenda::valid_snapshot(&a.snapshot(), 0, 1000));
    }
}
