//! A room's sessions and who attended them: the pure bookkeeping behind the attendance
//! records. The room tells it what happened (someone knocked, was admitted, moved to a
//! breakout, dropped, came back, left and why) with the wall-clock time, and gets back the
//! [`Record`]s to write; it sends nothing and reads no clock.
//!
//! A session starts at the first admission into a room with no session and ends when the room
//! has nobody admitted left (after `endSession`, or when the last person left or their
//! reconnect grace ran out). A reconnect within the grace is one interval with `reconnects`
//! counted, not two; a drop whose grace runs out ends the interval when the connection
//! dropped, not when the grace ran out. A participant is late when they arrived (knocked) more
//! than `rooms.late_after_secs` after the session started: waiting to be admitted is not being
//! late. Ids, roles, times and codes only.
//!
//! It is part of the room's snapshot, so a session that moves between relay nodes stays one
//! session.

use serde::{Deserialize, Serialize};

use crate::store::{AttendanceRecord, IntervalRecord, Record, SessionRecord};
use crate::vocab::{ParticipantId, Role, RoomId, SessionId};

/// How someone's attendance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Left,
    Removed,
    Declined,
    Ended,
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Left => "left",
            Outcome::Removed => "removed",
            Outcome::Declined => "declined",
            Outcome::Ended => "ended",
            Outcome::Dropped => "dropped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Person {
    id: ParticipantId,
    role: Role,
    arrived_ms: i64,
    admitted_ms: Option<i64>,
    /// In the waiting room since then.
    waiting_since: Option<i64>,
    waited_ms: i64,
    late: bool,
    reconnects: u32,
    intervals: Vec<IntervalRecord>,
    /// The connection dropped then; the place is held.
    dropped_at: Option<i64>,
    left_ms: Option<i64>,
    outcome: Option<Outcome>,
    /// Seconds spoken this session, when the clinic keeps talk time in the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    talk_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Running {
    id: SessionId,
    started_ms: i64,
    people: Vec<Person>,
    /// A therapist ended it: it closes as `ended` once everyone is out.
    #[serde(default)]
    ending: bool,
}

/// Someone who knocked while no session ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Knock {
    id: ParticipantId,
    role: Role,
    at_ms: i64,
}

/// See the module comment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attendance {
    running: Option<Running>,
    #[serde(default)]
    knocks: Vec<Knock>,
}

/// What a session's end hands over: its record and everyone's attendance.
pub type Finished = (SessionRecord, Vec<AttendanceRecord>);

impl Attendance {
    /// The running session's id.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.running.as_ref().map(|r| &r.id)
    }

    /// Someone entered the waiting room.
    pub fn knocked(&mut self, id: &ParticipantId, role: Role, now: i64) -> Vec<Record> {
        let Some(run) = self.running.as_mut() else {
            self.knocks.retain(|k| &k.id != id);
            self.knocks.push(Knock { id: id.clone(), role, at_ms: now });
            return Vec::new();
        };
        let person = match run.people.iter().position(|p| &p.id == id) {
            Some(i) => {
                let p = &mut run.people[i];
                p.outcome = None;
                p.left_ms = None;
                p
            }
            None => {
                run.people.push(Person::new(id.clone(), role, now));
                run.people.last_mut().unwrap_or_else(|| unreachable!())
            }
        };
        person.waiting_since = Some(now);
        vec![Record::Attendance(person.record(&run.id))]
    }

    /// Someone was admitted (or entered without a waiting room) into `space`. Starts a session
    /// if none runs.
    pub fn admitted(&mut self, room: &RoomId, id: &ParticipantId, role: Role, space: String, now: i64, late_after_ms: i64) -> Vec<Record> {
        let mut out = Vec::new();
        if self.running.is_none() {
            let run = Running { id: SessionId::random(), started_ms: now, people: Vec::new(), ending: false };
            out.push(Record::Session(run.record(room, None)));
            let knocks = std::mem::take(&mut self.knocks);
            let mut run = run;
            for k in knocks {
                let mut p = Person::new(k.id, k.role, k.at_ms);
                p.waiting_since = Some(k.at_ms);
                run.people.push(p);
            }
            self.running = Some(run);
        }
        let Some(run) = self.running.as_mut() else { return out };
        let started = run.started_ms;
        let i = match run.people.iter().position(|p| &p.id == id) {
            Some(i) => i,
            None => {
                run.people.push(Person::new(id.clone(), role, now));
                run.people.len() - 1
            }
        };
        let p = &mut run.people[i];
        if let Some(since) = p.waiting_since.take() {
            p.waited_ms += (now - since).max(0);
        }
        if p.admitted_ms.is_none() {
            p.admitted_ms = Some(now);
            p.late = role == Role::Participant && p.arrived_ms - started > late_after_ms;
        }
        p.outcome = None;
        p.left_ms = None;
        p.dropped_at = None;
        match p.intervals.last_mut().filter(|i| i.to_ms.is_none()) {
            // Still there by the session's records: the room moved to another relay node and
            // they came back with it. One interval, and one reconnect.
            Some(open) if open.space == space => p.reconnects += 1,
            Some(open) => {
                open.to_ms = Some(now);
                p.reconnects += 1;
                p.intervals.push(IntervalRecord { space, from_ms: now, to_ms: None });
            }
            None => p.intervals.push(IntervalRecord { space, from_ms: now, to_ms: None }),
        }
        out.push(Record::Attendance(p.record(&run.id)));
        out
    }

    /// The running session's records as they stand: what a relay node that takes the room over
    /// writes to its own store, so the whole session can be read there.
    pub fn records(&self, room: &RoomId) -> Vec<Record> {
        let Some(run) = &self.running else { return Vec::new() };
        let mut out = vec![Record::Session(run.record(room, None))];
        out.extend(run.people.iter().map(|p| Record::Attendance(p.record(&run.id))));
        out
    }

    /// Someone admitted moved to another space (a breakout, a private room, back to main).
    pub fn moved(&mut self, id: &ParticipantId, space: String, now: i64) -> Vec<Record> {
        self.with_person(id, |p| {
            let open = p.intervals.last_mut().filter(|i| i.to_ms.is_none());
            match open {
                Some(i) if i.space == space => return false,
                // Placed at once where they belong (admitted, or back after a node move, into
                // an open breakout): one interval there, not an empty one in the main room.
                Some(i) if i.from_ms == now => {
                    i.space = space;
                    let n = p.intervals.len();
                    if n >= 2 && p.intervals[n - 2].space == p.intervals[n - 1].space && p.intervals[n - 2].to_ms == Some(now) {
                        p.intervals.pop();
                        p.intervals[n - 2].to_ms = None;
                    }
                    return true;
                }
                Some(i) => i.to_ms = Some(now),
                None => return false,
            }
            p.intervals.push(IntervalRecord { space, from_ms: now, to_ms: None });
            true
        })
    }

    /// Someone's connection dropped; their place is held for the grace period.
    pub fn dropped(&mut self, id: &ParticipantId, now: i64) -> Vec<Record> {
        self.with_person(id, |p| {
            p.dropped_at.get_or_insert(now);
            false
        })
    }

    /// Someone whose connection dropped is back within the grace period.
    pub fn resumed(&mut self, id: &ParticipantId) -> Vec<Record> {
        self.with_person(id, |p| {
            if p.dropped_at.take().is_some() {
                p.reconnects += 1;
                return true;
            }
            false
        })
    }

    /// `id` has spoken `seconds` so far this session: it goes into their record with the next
    /// write (the room calls this only when the clinic keeps talk time).
    pub fn talked(&mut self, id: &ParticipantId, seconds: u32) {
        if let Some(p) = self.running.as_mut().and_then(|r| r.people.iter_mut().find(|p| &p.id == id)) {
            p.talk_seconds = Some(seconds);
        }
    }

    /// The talk time of everyone still in the session, as last saved.
    pub fn talk_so_far(&self) -> Vec<(ParticipantId, u32)> {
        let Some(run) = &self.running else { return Vec::new() };
        run.people.iter().filter(|p| p.outcome.is_none()).filter_map(|p| p.talk_seconds.map(|s| (p.id.clone(), s))).collect()
    }

    /// Someone left the room for good (`outcome` says how).
    pub fn left(&mut self, id: &ParticipantId, outcome: Outcome, now: i64) -> Vec<Record> {
        if self.running.is_none() {
            self.knocks.retain(|k| &k.id != id);
            return Vec::new();
        }
        self.with_person(id, |p| {
            // A drop whose grace ran out ended when the connection did.
            let at = match (outcome, p.dropped_at.take()) {
                (Outcome::Dropped, Some(t)) => t,
                _ => now,
            };
            if let Some(since) = p.waiting_since.take() {
                p.waited_ms += (now - since).max(0);
            }
            for i in p.intervals.iter_mut().filter(|i| i.to_ms.is_none()) {
                i.to_ms = Some(at);
            }
            p.left_ms = Some(at);
            p.outcome = Some(outcome);
            true
        })
    }

    /// A therapist ended the session: whoever leaves from now on leaves `ended`, and the
    /// session closes as `ended`.
    pub fn ending(&mut self) {
        if let Some(run) = self.running.as_mut() {
            run.ending = true;
        }
    }

    /// Whether the session is being ended by a therapist.
    pub fn is_ending(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.ending)
    }

    /// Nobody admitted is left: the session ends. Those still waiting knock again for the next
    /// one. Returns the records to write and the finished session, if one ran.
    pub fn end(&mut self, room: &RoomId, now: i64) -> (Vec<Record>, Option<Finished>) {
        let Some(mut run) = self.running.take() else { return (Vec::new(), None) };
        let mut out = Vec::new();
        for p in run.people.iter_mut().filter(|p| p.outcome.is_none()) {
            if let Some(since) = p.waiting_since {
                // Still waiting: they belong to the next session.
                self.knocks.push(Knock { id: p.id.clone(), role: p.role, at_ms: since });
                p.waited_ms += (now - since).max(0);
                p.waiting_since = None;
            }
            for i in p.intervals.iter_mut().filter(|i| i.to_ms.is_none()) {
                i.to_ms = Some(now);
            }
            p.left_ms = Some(now);
            p.outcome = Some(if p.admitted_ms.is_some() { Outcome::Ended } else { Outcome::Left });
            out.push(Record::Attendance(p.record(&run.id)));
        }
        let session = run.record(room, Some((now, if run.ending { "ended" } else { "empty" })));
        out.push(Record::Session(session.clone()));
        let people = run.people.iter().map(|p| p.record(&run.id)).collect();
        (out, Some((session, people)))
    }

    /// Whether state read back from a snapshot (input, see `actor/snapshot.rs`) is sound:
    /// valid ids, at most `max` people, bounded intervals with short ascii space labels.
    pub fn valid(&self, max: usize) -> bool {
        let id_ok = |id: &ParticipantId| crate::room::valid_participant_id(id.as_str());
        let people_ok = self.running.as_ref().is_none_or(|r| {
            r.id.as_str().len() <= 40
                && r.people.len() <= max
                && r.people.iter().all(|p| {
                    id_ok(&p.id)
                        && p.intervals.len() <= 1000
                        && p.intervals.iter().all(|i| i.space.len() <= 80 && i.space.bytes().all(|b| b.is_ascii_graphic()))
                })
        });
        people_ok && self.knocks.len() <= max && self.knocks.iter().all(|k| id_ok(&k.id))
    }

    fn with_person(&mut self, id: &ParticipantId, f: impl FnOnce(&mut Person) -> bool) -> Vec<Record> {
        let Some(run) = self.running.as_mut() else { return Vec::new() };
        let Some(p) = run.people.iter_mut().find(|p| &p.id == id) else { return Vec::new() };
        if f(p) {
            vec![Record::Attendance(p.record(&run.id))]
        } else {
            Vec::new()
        }
    }
}

impl Person {
    fn new(id: ParticipantId, role: Role, now: i64) -> Self {
        Self {
            id,
            role,
            arrived_ms: now,
            admitted_ms: None,
            waiting_since: None,
            waited_ms: 0,
            late: false,
            reconnects: 0,
            intervals: Vec::new(),
            dropped_at: None,
            left_ms: None,
            outcome: None,
            talk_seconds: None,
        }
    }

    fn record(&self, session: &SessionId) -> AttendanceRecord {
        AttendanceRecord {
            session_id: session.to_string(),
            participant_id: self.id.to_string(),
            role: self.role.as_str().to_string(),
            arrived_ms: self.arrived_ms,
            admitted_ms: self.admitted_ms,
            waited_ms: self.waited_ms,
            late: self.late,
            reconnects: self.reconnects,
            intervals: self.intervals.clone(),
            left_ms: self.left_ms,
            outcome: self.outcome.map(|o| o.as_str().to_string()),
            talk_seconds: self.talk_seconds,
        }
    }
}

impl Running {
    fn record(&self, room: &RoomId, ended: Option<(i64, &str)>) -> SessionRecord {
        SessionRecord {
            id: self.id.to_string(),
            room: room.to_string(),
            started_ms: self.started_ms,
            ended_ms: ended.map(|e| e.0),
            end_reason: ended.map(|e| e.1.to_string()),
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
    fn a_scripted_session() {
        let room = RoomId::new("g").unwrap();
        let late = 60_000;
        let mut a = Attendance::default();
        a.knocked(&p("a"), Role::Participant, 500);
        let first = a.admitted(&room, &p("t"), Role::Therapist, "main".into(), 1_000, late);
        assert!(matches!(first[0], Record::Session(_)), "the first admission starts the session");
        a.admitted(&room, &p("a"), Role::Participant, "main".into(), 2_000, late);
        a.moved(&p("a"), "breakout:b1".into(), 3_000);
        a.dropped(&p("a"), 4_000);
        a.resumed(&p("a"));
        a.knocked(&p("b"), Role::Participant, 70_000);
        a.admitted(&room, &p("b"), Role::Participant, "main".into(), 71_500, late);
        a.knocked(&p("c"), Role::Participant, 72_000);
        a.left(&p("c"), Outcome::Declined, 73_000);
        a.dropped(&p("b"), 80_000);
        a.left(&p("b"), Outcome::Dropped, 110_000);
        a.left(&p("a"), Outcome::Left, 90_000);
        a.ending();
        a.left(&p("t"), Outcome::Ended, 95_000);
        let (_, finished) = a.end(&room, 95_000);
        let (session, people) = finished.expect("a session ran");
        assert_eq!((session.started_ms, session.ended_ms, session.end_reason.as_deref()), (1_000, Some(95_000), Some("ended")));
        let get = |id: &str| people.iter().find(|r| r.participant_id == id).cloned().expect(id);
        let ra = get("a");
        assert_eq!((ra.arrived_ms, ra.admitted_ms, ra.waited_ms, ra.late, ra.reconnects), (500, Some(2_000), 1_500, false, 1));
        assert_eq!(
            ra.intervals,
            vec![
                IntervalRecord { space: "main".into(), from_ms: 2_000, to_ms: Some(3_000) },
                IntervalRecord { space: "breakout:b1".into(), from_ms: 3_000, to_ms: Some(90_000) },
            ]
        );
        assert_eq!(ra.outcome.as_deref(), Some("left"));
        let rb = get("b");
        assert!(rb.late);
        assert_eq!((rb.left_ms, rb.outcome.as_deref()), (Some(80_000), Some("dropped")), "a lapsed drop ends when it dropped");
        let rc = get("c");
        assert_eq!((rc.admitted_ms, rc.waited_ms, rc.outcome.as_deref(), rc.intervals.len()), (None, 1_000, Some("declined"), 0));
        assert_eq!(a.session_id(), None);
        let next = a.admitted(&room, &p("t"), Role::Therapist, "main".into(), 200_000, late);
        assert!(matches!(&next[0], Record::Session(s) if s.id != session.id), "the next admission starts a new session");
    }

    #[test]
    fn a_room_that_moves_nodes_keeps_one_interval_per_person_and_counts_the_reconnect() {
        let room = RoomId::new("g").unwrap();
        let mut a = Attendance::default();
        a.admitted(&room, &p("t"), Role::Therapist, "main".into(), 0, 1_000);
        a.admitted(&room, &p("a"), Role::Participant, "main".into(), 10, 1_000);
        a.moved(&p("a"), "breakout:b1".into(), 20);
        a.admitted(&room, &p("b"), Role::Participant, "main".into(), 30, 1_000);
        a.left(&p("b"), Outcome::Left, 40);
        // The snapshot reaches the next node; its store gets the whole session at once.
        let json = serde_json::to_string(&a).unwrap();
        let mut moved: Attendance = serde_json::from_str(&json).unwrap();
        let written = moved.records(&room);
        assert!(matches!(&written[0], Record::Session(s) if s.ended_ms.is_none()));
        assert_eq!(written.len(), 4, "the session and everyone in it, the one who left before the move too");
        // Everyone comes back: the therapist to main, `a` to main and at once into their breakout.
        moved.admitted(&room, &p("t"), Role::Therapist, "main".into(), 100, 1_000);
        moved.admitted(&room, &p("a"), Role::Participant, "main".into(), 100, 1_000);
        moved.moved(&p("a"), "breakout:b1".into(), 100);
        moved.left(&p("a"), Outcome::Left, 150);
        moved.ending();
        moved.left(&p("t"), Outcome::Ended, 160);
        let (_, finished) = moved.end(&room, 160);
        let people = finished.expect("one session").1;
        let get = |id: &str| people.iter().find(|r| r.participant_id == id).cloned().expect(id);
        let ra = get("a");
        assert_eq!(
            ra.intervals,
            vec![
                IntervalRecord { space: "main".into(), from_ms: 10, to_ms: Some(20) },
                IntervalRecord { space: "breakout:b1".into(), from_ms: 20, to_ms: Some(150) },
            ],
            "back in main for no time at all is not an interval, and the breakout goes on"
        );
        assert_eq!(ra.reconnects, 1);
        let rt = get("t");
        assert_eq!((rt.intervals.len(), rt.reconnects, rt.outcome.as_deref()), (1, 1, Some("ended")));
        assert_eq!(get("b").outcome.as_deref(), Some("left"));
    }

    #[test]
    fn whoever_still_waits_at_the_end_knocks_again_for_the_next_session() {
        let room = RoomId::new("g").unwrap();
        let mut a = Attendance::default();
        a.admitted(&room, &p("t"), Role::Therapist, "main".into(), 0, 1);
        a.knocked(&p("w"), Role::Participant, 10);
        a.left(&p("t"), Outcome::Left, 20);
        let (_, finished) = a.end(&room, 20);
        let w = finished.unwrap().1.into_iter().find(|r| r.participant_id == "w").unwrap();
        assert_eq!((w.outcome.as_deref(), w.waited_ms), (Some("left"), 10));
        a.admitted(&room, &p("t"), Role::Therapist, "main".into(), 100, 1_000);
        let recs = a.admitted(&room, &p("w"), Role::Participant, "main".into(), 110, 1_000);
        let Some(Record::Attendance(w)) = recs.last() else { panic!("{recs:?}") };
        assert_eq!((w.arrived_ms, w.waited_ms), (10, 100), "waiting counts from the knock");
    }
}
