//! The speaking queue: raised hands in the order the server received them, one queue per space
//! (the main room and each breakout), and who has the floor there.
//!
//! The server stamps each raise with the space's next sequence number, so every screen shows the
//! same order whatever order the messages reached the clients in (meeting tools that sort by
//! the client's own arrival order show different queues to different people). Giving the floor
//! lowers that hand; it never touches anyone's microphone: the speaker unmutes themselves.
//!
//! A hand belongs to its space: leaving the space (a breakout move, leaving the session) takes
//! it out of the queue. A dropped connection does not: the place is held through the reconnect
//! grace period like the rest of the member's state, and the queue is in the room snapshot, so
//! it survives a move to another relay node. Owns only the order; the hand flag members see in
//! `participantUpdated` follows it (the room sets it from [`SpeakingQueues::is_queued`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::room::ParticipantId;
use crate::signal::protocol::{QueuedHand, ServerMessage};

/// Space key: `None` is the main room, `Some(id)` a breakout or private room.
type Space = Option<String>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpaceQueue {
    /// The next hand's sequence number; only grows, so a re-raised hand goes to the back.
    next_seq: u64,
    hands: Vec<QueuedHand>,
    floor: Option<ParticipantId>,
}

/// Every space's queue. Serialisable as it is: it holds participant ids and numbers only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct SpeakingQueues {
    /// Keyed by space id, the main room under `""` (JSON map keys are strings).
    spaces: BTreeMap<String, SpaceQueue>,
}

fn key(space: &Space) -> String {
    space.clone().unwrap_or_default()
}

impl SpeakingQueues {
    /// Queues `id` in `space`; `false` when the hand was already up (it keeps its place).
    pub(super) fn raise(&mut self, space: &Space, id: &ParticipantId) -> bool {
        let q = self.spaces.entry(key(space)).or_default();
        if q.hands.iter().any(|h| &h.participant_id == id) {
            return false;
        }
        q.next_seq += 1;
        q.hands.push(QueuedHand { participant_id: id.clone(), seq: q.next_seq });
        true
    }

    /// Takes `id`'s hand down, wherever it is; the space it was in, if it was up.
    pub(super) fn lower(&mut self, id: &ParticipantId) -> Option<Space> {
        for (k, q) in self.spaces.iter_mut() {
            if let Some(i) = q.hands.iter().position(|h| &h.participant_id == id) {
                q.hands.remove(i);
                return Some(space_of_key(k));
            }
        }
        None
    }

    /// `id` left its space (or the session): no hand, no floor. The spaces whose queue changed.
    pub(super) fn left(&mut self, id: &ParticipantId) -> Vec<Space> {
        let mut changed = Vec::new();
        for (k, q) in self.spaces.iter_mut() {
            let before = (q.hands.len(), q.floor.clone());
            q.hands.retain(|h| &h.participant_id != id);
            if q.floor.as_ref() == Some(id) {
                q.floor = None;
            }
            if before != (q.hands.len(), q.floor.clone()) {
                changed.push(space_of_key(k));
            }
        }
        changed
    }

    pub(super) fn is_queued(&self, id: &ParticipantId) -> bool {
        self.spaces.values().any(|q| q.hands.iter().any(|h| &h.participant_id == id))
    }

    /// The hands of `space`, in order.
    pub(super) fn ids(&self, space: &Space) -> Vec<ParticipantId> {
        self.spaces.get(&key(space)).map(|q| q.hands.iter().map(|h| h.participant_id.clone()).collect()).unwrap_or_default()
    }

    /// The first hand in `space`'s queue.
    pub(super) fn next(&self, space: &Space) -> Option<ParticipantId> {
        self.spaces.get(&key(space)).and_then(|q| q.hands.first()).map(|h| h.participant_id.clone())
    }

    /// Gives `id` the floor in `space`, lowering their hand if it was up.
    pub(super) fn give_floor(&mut self, space: &Space, id: &ParticipantId) {
        let q = self.spaces.entry(key(space)).or_default();
        q.hands.retain(|h| &h.participant_id != id);
        q.floor = Some(id.clone());
    }

    /// Who has the floor in `space`.
    pub(super) fn floor(&self, space: &Space) -> Option<&ParticipantId> {
        self.spaces.get(&key(space)).and_then(|q| q.floor.as_ref())
    }

    /// What everyone in `space` is sent.
    pub(super) fn view(&self, space: &Space) -> ServerMessage {
        let q = self.spaces.get(&key(space));
        ServerMessage::SpeakingQueue { queue: q.map(|q| q.hands.clone()).unwrap_or_default(), floor: q.and_then(|q| q.floor.clone()) }
    }

    /// A saved queue is read like client input (see `snapshot.rs`): valid ids, no one twice,
    /// sequence numbers rising and below the space's counter.
    pub(super) fn valid(&self, max_entries: usize) -> bool {
        let mut seen = std::collections::HashSet::new();
        self.spaces.len() <= max_entries
            && self.spaces.values().all(|q| {
                q.hands.len() <= max_entries
                    && q.hands.windows(2).all(|w| w[0].seq < w[1].seq)
                    && q.hands.last().is_none_or(|h| h.seq <= q.next_seq)
                    && q.hands.iter().all(|h| crate::room::valid_participant_id(h.participant_id.as_str()))
                    && q.floor.as_ref().is_none_or(|f| crate::room::valid_participant_id(f.as_str()))
            })
            && self.spaces.values().flat_map(|q| &q.hands).all(|h| seen.insert(h.participant_id.clone()))
    }

    /// Spaces that no longer exist lose their queue (a restored breakout plan may have fewer).
    pub(super) fn retain_spaces(&mut self, exists: impl Fn(&Space) -> bool) {
        self.spaces.retain(|k, _| exists(&space_of_key(k)));
    }
}

fn space_of_key(k: &str) -> Space {
    (!k.is_empty()).then(|| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParticipantId {
        ParticipantId::from_trusted(s)
    }

    #[test]
    fn hands_are_ordered_by_the_servers_stamp_per_space() {
        let mut q = SpeakingQueues::default();
        let b = Some("b1".to_string());
        assert!(q.raise(&None, &p("a")));
        assert!(q.raise(&b, &p("x")));
        assert!(q.raise(&None, &p("c")));
        assert!(!q.raise(&None, &p("a")), "a raised hand keeps its place");
        let ServerMessage::SpeakingQueue { queue, floor } = q.view(&None) else { unreachable!() };
        assert_eq!(queue, vec![QueuedHand { participant_id: p("a"), seq: 1 }, QueuedHand { participant_id: p("c"), seq: 2 }]);
        assert_eq!(floor, None);
        assert_eq!(q.next(&b), Some(p("x")), "breakout queues are separate");
        q.give_floor(&None, &p("a"));
        assert_eq!(q.next(&None), Some(p("c")));
        assert_eq!(q.floor(&None), Some(&p("a")));
        // Raised again: to the back, with a new stamp.
        assert!(q.raise(&None, &p("a")));
        let ServerMessage::SpeakingQueue { queue, .. } = q.view(&None) else { unreachable!() };
        assert_eq!(queue.last(), Some(&QueuedHand { participant_id: p("a"), seq: 3 }));
        assert_eq!(q.left(&p("a")), vec![None]);
        assert_eq!(q.floor(&None), None);
        assert!(q.valid(100));
        assert_eq!(q.lower(&p("x")), Some(b));
    }
}
