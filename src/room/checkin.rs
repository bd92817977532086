//! Check-in and check-out: a scale question (0–10 by default, pass allowed) a therapist opens
//! at the start or end of a session. The pure bookkeeping: the room asks it and does the
//! sending.
//!
//! Privacy is the point. A person's value goes to therapists only (`checkInValue`) and back to
//! the person (`checkInAnswered`); the group sees at most the histogram, and only if a
//! therapist shares it. In anonymous mode not even therapists see who answered what: the round
//! keeps who has answered (so nobody answers twice) and the counts, never a value by person,
//! and nothing enters anyone's trend. Named values are stored (ids and numbers) for the
//! trends; anonymous rounds store their counts only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::signal::protocol::{CheckInHistogram, CheckInInfo, CheckInPhase, ErrorCode};
use crate::vocab::{CheckInId, ParticipantId};

/// Longest question, in characters; and longest label for a scale's end.
pub const MAX_QUESTION_CHARS: usize = 200;
pub const MAX_LABEL_CHARS: usize = 40;
/// Most steps on a scale (0–10 has 11).
pub const MAX_STEPS: u8 = 21;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Round {
    info: CheckInInfo,
    /// Named rounds: each person's answer (`None`: passed).
    named: BTreeMap<ParticipantId, Option<u8>>,
    /// Anonymous rounds: who has answered, and the counts; never who chose what.
    answered: Vec<ParticipantId>,
    counts: Vec<u32>,
    passed: u32,
    /// Named rounds: each person's check-in at their latest earlier session, read from the
    /// store for the therapists' view. Not part of the room's saved state.
    #[serde(skip)]
    previous: BTreeMap<ParticipantId, u8>,
}

/// The session's check-ins (see the module comment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckIns {
    open: Option<Round>,
    /// This session's named check-in values, for the change at check-out.
    #[serde(default)]
    checked_in: BTreeMap<ParticipantId, u8>,
}

/// What a valid answer means for the room to send.
pub struct Answered {
    pub info: CheckInInfo,
    /// Named rounds: the change since this session's check-in (check-out only).
    pub change: Option<i16>,
    /// Named rounds: their check-in at their latest earlier session, when known yet.
    pub previous: Option<u8>,
    pub histogram: CheckInHistogram,
}

/// A named answer given before the earlier check-ins were read, to send again with them.
pub struct Resend {
    pub participant: ParticipantId,
    pub value: Option<u8>,
    pub change: Option<i16>,
    pub previous: Option<u8>,
}

impl CheckIns {
    /// Opens a round; one at a time.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        phase: CheckInPhase,
        question: &str,
        min: Option<u8>,
        max: Option<u8>,
        min_label: Option<String>,
        max_label: Option<String>,
        anonymous: bool,
    ) -> Result<CheckInInfo, (ErrorCode, String)> {
        let bad = |m: &str| Err((ErrorCode::InvalidCheckIn, m.to_string()));
        if self.open.is_some() {
            return bad("a check-in is already open; close it first");
        }
        let question = question.trim();
        if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
            return bad("the question needs 1 to 200 characters");
        }
        let (min, max) = (min.unwrap_or(0), max.unwrap_or(10));
        if min >= max || max - min + 1 > MAX_STEPS {
            return bad("the scale needs min < max and at most 21 steps (e.g. 0 to 10)");
        }
        let label = |l: Option<String>, default: &str| -> Result<String, (ErrorCode, String)> {
            let l = l.map(|l| l.trim().to_string()).unwrap_or_else(|| default.to_string());
            if l.chars().count() > MAX_LABEL_CHARS || l.chars().any(char::is_control) {
                return Err((ErrorCode::InvalidCheckIn, "a scale label has at most 40 characters".into()));
            }
            Ok(l)
        };
        let info = CheckInInfo {
            check_in_id: CheckInId::random(),
            phase,
            question: question.to_string(),
            min,
            max,
            min_label: label(min_label, "very low")?,
            max_label: label(max_label, "very good")?,
            anonymous,
        };
        let steps = usize::from(max - min) + 1;
        self.open = Some(Round {
            info: info.clone(),
            named: BTreeMap::new(),
            answered: Vec::new(),
            counts: vec![0; steps],
            passed: 0,
            previous: BTreeMap::new(),
        });
        Ok(info)
    }

    /// The open round, for those admitted later.
    pub fn open_info(&self) -> Option<&CheckInInfo> {
        self.open.as_ref().map(|r| &r.info)
    }

    /// `who` answers (`None`: passes). A named answer may change; an anonymous one may not
    /// (the round does not know which count to take it from).
    pub fn answer(&mut self, who: &ParticipantId, id: &CheckInId, value: Option<u8>) -> Result<Answered, (ErrorCode, String)> {
        let round = self
            .open
            .as_mut()
            .filter(|r| &r.info.check_in_id == id)
            .ok_or((ErrorCode::UnknownCheckIn, "no open check-in with that id".to_string()))?;
        if let Some(v) = value {
            if v < round.info.min || v > round.info.max {
                return Err((
                    ErrorCode::InvalidCheckInValue,
                    format!("choose a number from {} to {}, or pass", round.info.min, round.info.max),
                ));
            }
        }
        if round.info.anonymous {
            if round.answered.contains(who) {
                return Err((ErrorCode::InvalidCheckInValue, "you already answered this anonymous check-in".into()));
            }
            round.answered.push(who.clone());
            match value {
                Some(v) => round.counts[usize::from(v - round.info.min)] += 1,
                None => round.passed += 1,
            }
        } else {
            round.named.insert(who.clone(), value);
        }
        let change = match (round.info.phase, round.info.anonymous, value) {
            (CheckInPhase::CheckOut, false, Some(v)) => self.checked_in.get(who).map(|before| i16::from(v) - i16::from(*before)),
            _ => None,
        };
        let previous = round.previous.get(who).copied();
        let info = round.info.clone();
        let histogram = histogram(round);
        Ok(Answered { info, change, previous, histogram })
    }

    /// The earlier check-ins for the open named round `id` arrived: kept for the answers to
    /// come, and the answers already given, to send again with them.
    pub fn set_previous(&mut self, id: &CheckInId, values: BTreeMap<ParticipantId, u8>) -> Vec<Resend> {
        let Some(round) = self.open.as_mut().filter(|r| &r.info.check_in_id == id && !r.info.anonymous) else { return Vec::new() };
        round.previous = values;
        let checkout = round.info.phase == CheckInPhase::CheckOut;
        round
            .named
            .iter()
            .filter_map(|(who, value)| {
                let previous = round.previous.get(who).copied()?;
                let change = match value {
                    Some(v) if checkout => self.checked_in.get(who).map(|before| i16::from(*v) - i16::from(*before)),
                    _ => None,
                };
                Some(Resend { participant: who.clone(), value: *value, change, previous: Some(previous) })
            })
            .collect()
    }

    /// Closes the open round with that id: its final counts, and its named values (to keep for
    /// this session's check-out).
    pub fn close(&mut self, id: &CheckInId) -> Result<(CheckInInfo, CheckInHistogram), (ErrorCode, String)> {
        let Some(round) = self.open.take_if(|r| &r.info.check_in_id == id) else {
            return Err((ErrorCode::UnknownCheckIn, "no open check-in with that id".into()));
        };
        if round.info.phase == CheckInPhase::CheckIn && !round.info.anonymous {
            for (who, v) in &round.named {
                if let Some(v) = v {
                    self.checked_in.insert(who.clone(), *v);
                }
            }
        }
        let h = histogram(&round);
        Ok((round.info, h))
    }

    /// Whether state read back from a snapshot is sound: a round within the limits, counts that
    /// fit its scale, answers within it, at most `max` people.
    pub fn valid(&self, max: usize) -> bool {
        let round_ok = self.open.as_ref().is_none_or(|r| {
            let i = &r.info;
            let steps = usize::from(i.max.saturating_sub(i.min)) + 1;
            i.min < i.max
                && steps <= usize::from(MAX_STEPS)
                && i.question.chars().count() <= MAX_QUESTION_CHARS
                && i.min_label.chars().count() <= MAX_LABEL_CHARS
                && i.max_label.chars().count() <= MAX_LABEL_CHARS
                && r.counts.len() == steps
                && r.named.len() <= max
                && r.answered.len() <= max
                && r.named.values().flatten().all(|v| (i.min..=i.max).contains(v))
                && (!i.anonymous || r.named.is_empty())
        });
        round_ok && self.checked_in.len() <= max
    }

    /// The open round's id, if any (closed when the session ends).
    pub fn open_id(&self) -> Option<CheckInId> {
        self.open.as_ref().map(|r| r.info.check_in_id.clone())
    }
}

fn histogram(round: &Round) -> CheckInHistogram {
    let (counts, passed) = if round.info.anonymous {
        (round.counts.clone(), round.passed)
    } else {
        let mut counts = vec![0u32; round.counts.len()];
        let mut passed = 0;
        for v in round.named.values() {
            match v {
                Some(v) => counts[usize::from(v - round.info.min)] += 1,
                None => passed += 1,
            }
        }
        (counts, passed)
    };
    CheckInHistogram { check_in_id: round.info.check_in_id.clone(), min: round.info.min, counts, passed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParticipantId {
        ParticipantId::from_trusted(s)
    }

    #[test]
    fn named_rounds_give_the_change_since_check_in() {
        let mut c = CheckIns::default();
        let info = c.start(CheckInPhase::CheckIn, "Mood?", None, None, None, None, false).unwrap();
        assert!(c.start(CheckInPhase::CheckIn, "Again?", None, None, None, None, false).is_err(), "one at a time");
        c.answer(&p("a"), &info.check_in_id, Some(3)).unwrap();
        c.answer(&p("a"), &info.check_in_id, Some(4)).unwrap();
        let h = c.answer(&p("b"), &info.check_in_id, None).unwrap().histogram;
        assert_eq!((h.counts[4], h.passed, h.counts.iter().sum::<u32>()), (1, 1, 1), "a changed answer replaces the old");
        assert_eq!(c.answer(&p("a"), &info.check_in_id, Some(11)).err().map(|e| e.0), Some(ErrorCode::InvalidCheckInValue));
        c.close(&info.check_in_id).unwrap();
        let out = c.start(CheckInPhase::CheckOut, "Mood now?", None, None, None, None, false).unwrap();
        assert_eq!(c.answer(&p("a"), &out.check_in_id, Some(7)).unwrap().change, Some(3));
        assert_eq!(c.answer(&p("b"), &out.check_in_id, Some(7)).unwrap().change, None, "passed at check-in: no change");
    }

    #[test]
    fn earlier_check_ins_come_with_answers_given_before_or_after_they_arrive() {
        let mut c = CheckIns::default();
        let info = c.start(CheckInPhase::CheckIn, "Mood?", None, None, None, None, false).unwrap();
        c.answer(&p("a"), &info.check_in_id, Some(3)).unwrap();
        c.answer(&p("c"), &info.check_in_id, Some(5)).unwrap();
        let resend = c.set_previous(&info.check_in_id, BTreeMap::from([(p("a"), 6), (p("b"), 2)]));
        assert_eq!(resend.iter().map(|r| (r.participant.as_str(), r.value, r.previous)).collect::<Vec<_>>(), vec![("a", Some(3), Some(6))]);
        assert_eq!(c.answer(&p("b"), &info.check_in_id, None).unwrap().previous, Some(2), "a pass still shows last time");
        assert!(c.set_previous(&CheckInId::random(), BTreeMap::new()).is_empty(), "another round's values are ignored");
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("previous"), "earlier values stay out of the saved state: {json}");
    }

    #[test]
    fn anonymous_rounds_keep_counts_only() {
        let mut c = CheckIns::default();
        let info = c.start(CheckInPhase::CheckIn, "Mood?", Some(1), Some(5), None, None, true).unwrap();
        c.answer(&p("a"), &info.check_in_id, Some(2)).unwrap();
        assert!(c.answer(&p("a"), &info.check_in_id, Some(3)).is_err(), "once only");
        let (_, h) = c.close(&info.check_in_id).unwrap();
        assert_eq!(h.counts, vec![0, 1, 0, 0, 0]);
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("\"p\":") && c.checked_in.is_empty(), "{json}");
    }
}
