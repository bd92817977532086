//! Active speaker: who is speaking in each space (the main room, each breakout), from the
//! audio levels the SFU measures per published track. The room checks a few times a second and
//! tells a space's members only when its speaker changes; the hysteresis below keeps a cough or
//! a short overlap from flipping the highlight back and forth.
//!
//! Only admitted members whose audio is forwarded count: nobody in the waiting room, no one a
//! therapist hard-muted, no one muted by their own choice (their level still arrives when a
//! browser keeps sending silence frames, but it says nothing about speech).
//!
//! [`Speakers`] keeps each space's speaker and its hysteresis; on each tick the room hands it
//! the members' levels ([`Speakers::levels`]), and talk time counts the same voices.

use std::collections::HashMap;
use std::time::Duration;

use super::{Cx, Timer};
use crate::room::ParticipantId;
use crate::signal::protocol::{MediaKind, ServerMessage};

/// How often the room looks at the levels.
pub(super) const TICK: Duration = Duration::from_millis(250);
/// Loudness (127 − dBov) from which a track counts as speech: about −45 dBov.
const SPEECH: u8 = 82;
/// A challenger must be this much louder than the current speaker...
const MARGIN: u8 = 4;
/// ...for this many ticks in a row before the highlight moves.
const TAKEOVER_TICKS: u32 = 2;
/// The current speaker stays highlighted through pauses this many ticks long.
const HOLD_TICKS: u32 = 4;

#[derive(Default)]
pub(super) struct Speakers {
    by_space: HashMap<Option<String>, SpaceSpeaker>,
}

#[derive(Default)]
struct SpaceSpeaker {
    current: Option<ParticipantId>,
    challenger: Option<(ParticipantId, u32)>,
    quiet_ticks: u32,
}

impl Speakers {
    /// A breakout closed: its speaker is nobody's any more (a reopened breakout starts clear).
    pub(super) fn forget_space(&mut self, space: &str) {
        self.by_space.remove(&Some(space.to_string()));
    }
}

impl SpaceSpeaker {
    /// Feeds one tick's loudest speaker (if anyone is above the speech threshold) and the
    /// current speaker's own loudness; returns the new speaker when it changes.
    fn tick(&mut self, loudest: Option<(ParticipantId, u8)>, current_level: u8) -> Option<Option<ParticipantId>> {
        let speaking = current_level >= SPEECH;
        self.quiet_ticks = if speaking { 0 } else { self.quiet_ticks + 1 };
        match loudest {
            Some((id, level)) if self.current.as_ref() != Some(&id) => {
                let louder = self.current.is_none() || !speaking || level >= current_level.saturating_add(MARGIN);
                if !louder {
                    self.challenger = None;
                } else {
                    let streak = match &self.challenger {
                        Some((c, n)) if *c == id => n + 1,
                        _ => 1,
                    };
                    // Nobody highlighted yet: the first clear voice takes it at once.
                    if self.current.is_none() || streak >= TAKEOVER_TICKS {
                        self.challenger = None;
                        self.quiet_ticks = 0;
                        self.current = Some(id.clone());
                        return Some(Some(id));
                    }
                    self.challenger = Some((id, streak));
                }
            }
            _ => self.challenger = None,
        }
        if self.current.is_some() && self.quiet_ticks > HOLD_TICKS {
            self.current = None;
            self.quiet_ticks = 0;
            return Some(None);
        }
        None
    }
}

/// Each space's members who may be heard and how loud they are this tick.
pub(super) type Levels = HashMap<Option<String>, Vec<(ParticipantId, u8)>>;

impl Speakers {
    /// This tick's loudness of every member whose audio is forwarded, by space (silenced
    /// members count as 0, so a space whose speaker went quiet is still looked at).
    pub(super) fn levels(cx: &Cx) -> Levels {
        let mut levels: Levels = HashMap::new();
        for m in cx.members.values().filter(|m| m.admitted && m.connected && m.info.role.publishes()) {
            let silenced = m.info.audio_muted || m.hard_muted(MediaKind::Audio);
            let level = if silenced {
                0
            } else {
                m.tracks.iter().filter(|t| t.kind == MediaKind::Audio && t.is_forwarding()).map(|t| t.loudness.current()).max().unwrap_or(0)
            };
            levels.entry(m.space.clone()).or_default().push((m.info.id.clone(), level));
        }
        levels
    }

    /// Who is above the speech threshold in `levels` (talk time counts them).
    pub(super) fn speaking(levels: &Levels) -> Vec<ParticipantId> {
        levels.values().flatten().filter(|(_, l)| *l >= SPEECH).map(|(id, _)| id.clone()).collect()
    }

    /// Feeds one tick's `levels` to every space, tells members whose space's speaker changed,
    /// and sets the next tick.
    pub(super) fn tick(&mut self, cx: &mut Cx, levels: Levels) {
        let mut changes = Vec::new();
        let spaces: Vec<Option<String>> = levels.keys().cloned().chain(self.by_space.keys().cloned()).collect();
        for space in spaces {
            let in_space = levels.get(&space).map(Vec::as_slice).unwrap_or_default();
            let loudest = in_space.iter().filter(|(_, l)| *l >= SPEECH).max_by_key(|(_, l)| *l).cloned();
            let state = self.by_space.entry(space.clone()).or_default();
            let current_level = state.current.as_ref().and_then(|c| in_space.iter().find(|(id, _)| id == c)).map_or(0, |(_, l)| *l);
            if let Some(change) = state.tick(loudest, current_level) {
                changes.push((space, change));
            }
        }
        self.by_space.retain(|space, s| s.current.is_some() || levels.contains_key(space));
        for (space, speaker) in changes {
            let told: Vec<ParticipantId> =
                cx.members.values().filter(|m| m.admitted && m.space == space).map(|m| m.info.id.clone()).collect();
            for id in told {
                cx.send(&id, ServerMessage::ActiveSpeaker { participant_id: speaker.clone() });
            }
        }
        cx.schedule(TICK, Timer::Speakers);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Effect, World};
    use super::*;
    use crate::auth::Role;

    fn p(s: &str) -> ParticipantId {
        ParticipantId::from_trusted(s)
    }

    #[test]
    fn first_voice_takes_the_highlight_then_hysteresis() {
        let mut s = SpaceSpeaker::default();
        assert_eq!(s.tick(Some((p("a"), 100)), 0), Some(Some(p("a"))));
        // b is only slightly louder while a speaks: no change.
        assert_eq!(s.tick(Some((p("b"), 102)), 100), None);
        assert_eq!(s.tick(Some((p("b"), 102)), 100), None);
        // b clearly louder for two ticks: it takes over.
        assert_eq!(s.tick(Some((p("b"), 110)), 100), None);
        assert_eq!(s.tick(Some((p("b"), 110)), 100), Some(Some(p("b"))));
        // Silence: held through a short pause, then cleared.
        for _ in 0..HOLD_TICKS {
            assert_eq!(s.tick(None, 0), None);
        }
        assert_eq!(s.tick(None, 0), Some(None));
    }

    fn speaker_told(w: &World, to: &ParticipantId) -> Vec<Option<ParticipantId>> {
        w.sent_to(to)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::ActiveSpeaker { participant_id } => Some(participant_id),
                _ => None,
            })
            .collect()
    }

    /// Each space has its own speaker and only its members hear of it; every tick sets the
    /// next; a closed breakout's speaker is forgotten.
    #[test]
    fn each_space_hears_only_of_its_own_speaker() {
        let mut w = World::new();
        let t = w.admit("t", Role::Therapist, None);
        let a = w.admit("a", Role::Participant, None);
        let b = w.admit("b", Role::Participant, Some("b1"));
        let c = w.admit("c", Role::Participant, Some("b1"));
        let mut s = Speakers::default();
        let levels: Levels =
            [(None, vec![(t.clone(), 0), (a.clone(), 100)]), (Some("b1".into()), vec![(b.clone(), 90), (c.clone(), 0)])].into();
        assert_eq!(Speakers::speaking(&levels).len(), 2);
        s.tick(&mut w.cx(), levels);
        assert_eq!(speaker_told(&w, &t), vec![Some(a.clone())]);
        assert_eq!(speaker_told(&w, &a), vec![Some(a.clone())]);
        assert_eq!(speaker_told(&w, &b), vec![Some(b.clone())]);
        assert_eq!(speaker_told(&w, &c), vec![Some(b.clone())]);
        let timers: Vec<_> = w.take().into_iter().filter(|e| matches!(e, Effect::Timer { timer: Timer::Speakers, .. })).collect();
        assert_eq!(timers.len(), 1, "one next tick");

        // The same levels again: nothing new to tell.
        let levels: Levels =
            [(None, vec![(t.clone(), 0), (a.clone(), 100)]), (Some("b1".into()), vec![(b.clone(), 90), (c.clone(), 0)])].into();
        s.tick(&mut w.cx(), levels);
        assert!(speaker_told(&w, &t).is_empty() && speaker_told(&w, &b).is_empty());
        w.take();

        // The breakout closes: its speaker goes, and a reopened one starts with nobody.
        s.forget_space("b1");
        let levels: Levels = [(Some("b1".into()), vec![(c.clone(), 90)])].into();
        s.tick(&mut w.cx(), levels);
        assert_eq!(speaker_told(&w, &c), vec![Some(c.clone())], "the first clear voice takes it at once");
    }
}
