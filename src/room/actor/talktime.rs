//! Talk-time balance, for therapists only: seconds of speech per member in this session, from
//! the same audio levels the active speaker reads (`speaker.rs` feeds each tick in). Someone
//! hard-muted or self-muted counts zero whatever their browser sends. The totals live in the
//! room's memory only: never in the snapshot or a log, never sent to a participant; they end
//! with the session. Only when the clinic turns on `rooms.talk_time_in_attendance` does each
//! participant's total go into their attendance record (when they leave, and in the room's
//! saved state so that it survives a move to another relay node), and from there to the store,
//! the export and the webhook.
//!
//! Owns only the counting; who is a therapist and who is told is the room's.

use std::collections::HashMap;
use std::time::Duration;

use crate::room::ParticipantId;
use crate::signal::protocol::TalkTimeEntry;

/// The totals go to therapists at most this often (in speaker ticks), and only when they changed.
pub(super) const PUBLISH_EVERY_TICKS: u32 = 8;

#[derive(Debug, Default)]
pub(super) struct TalkTime {
    spoken: HashMap<ParticipantId, Duration>,
    ticks: u32,
    changed: bool,
}

impl TalkTime {
    /// One tick of `tick` length: `speaking` are the members whose voice was above the speech
    /// threshold (the caller leaves out anyone muted). `true` when the totals are due to go out.
    pub(super) fn tick<'a>(&mut self, speaking: impl IntoIterator<Item = &'a ParticipantId>, tick: Duration) -> bool {
        for id in speaking {
            *self.spoken.entry(id.clone()).or_default() += tick;
            self.changed = true;
        }
        self.ticks += 1;
        if self.ticks >= PUBLISH_EVERY_TICKS && self.changed {
            self.ticks = 0;
            self.changed = false;
            return true;
        }
        false
    }

    /// Counting goes on from `seconds` for `id` (a room that moved nodes, with the clinic
    /// keeping talk time in the records).
    pub(super) fn resume(&mut self, id: ParticipantId, seconds: u32) {
        self.spoken.insert(id, Duration::from_secs(u64::from(seconds)));
    }

    /// `id`'s total so far, in whole seconds.
    pub(super) fn seconds(&self, id: &ParticipantId) -> u32 {
        self.spoken.get(id).map_or(0, |d| d.as_secs() as u32)
    }

    /// The totals of `people`, in their order (zero for those who have not spoken).
    pub(super) fn entries(&self, people: &[ParticipantId]) -> Vec<TalkTimeEntry> {
        people.iter().map(|p| TalkTimeEntry { participant_id: p.clone(), seconds: self.seconds(p) }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_adds_up_and_goes_out_only_when_it_changed() {
        let (a, b) = (ParticipantId::from_trusted("a"), ParticipantId::from_trusted("b"));
        let mut t = TalkTime::default();
        let tick = Duration::from_millis(250);
        let mut due = 0;
        for _ in 0..PUBLISH_EVERY_TICKS * 2 {
            due += u32::from(t.tick([&a], tick));
        }
        assert_eq!(due, 2);
        assert_eq!(t.entries(&[a.clone(), b.clone()]).iter().map(|e| e.seconds).collect::<Vec<_>>(), vec![4, 0]);
        for _ in 0..PUBLISH_EVERY_TICKS * 2 {
            assert!(!t.tick([], tick), "silence changes nothing, so nothing is sent");
        }
    }
}
