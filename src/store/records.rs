//! Session records: sessions, attendance, check-in values and support requests, and the
//! retention purge. Ids, times, roles, numbers and codes only: no display names, no free text.
//!
//! The room writes these through a [`Recorder`], one ordered queue for the whole node, so the
//! latest state of a row always lands last and the room never waits on the disk.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{now_ms, Store, StoreError};

/// One session of a room: from the first admission into an empty room to `endSession`, or to
/// the moment nobody admitted is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub id: String,
    pub room: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// `ended` (a therapist ended it), `empty` (the last person left or their reconnect grace
    /// ran out) or `interrupted` (the server stopped while it ran); `null` while it runs.
    pub end_reason: Option<String>,
}

/// One stretch of time in one space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalRecord {
    /// `main`, `breakout:<id>` or `private:<id>`.
    pub space: String,
    pub from_ms: i64,
    /// `null` while the person is still there.
    pub to_ms: Option<i64>,
}

/// One person's attendance in one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttendanceRecord {
    pub session_id: String,
    pub participant_id: String,
    pub role: String,
    /// When they first knocked (or entered, without a waiting room).
    pub arrived_ms: i64,
    /// First admission; `null` if never admitted (declined, or left while waiting).
    pub admitted_ms: Option<i64>,
    /// Time spent in the waiting room, over the whole session.
    pub waited_ms: i64,
    /// Arrived more than `rooms.late_after_secs` after the session started (participants).
    pub late: bool,
    /// Connections that dropped and came back within the reconnect grace (same interval).
    pub reconnects: u32,
    pub intervals: Vec<IntervalRecord>,
    pub left_ms: Option<i64>,
    /// `left`, `removed`, `declined`, `ended` or `dropped`; `null` while still there.
    pub outcome: Option<String>,
    /// Seconds they spoke in the session (participants), only with
    /// `rooms.talk_time_in_attendance` on; written when they leave and when the session ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talk_seconds: Option<u32>,
}

/// One check-in or check-out value (named check-ins only; anonymous ones keep counts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInValueRecord {
    pub session_id: String,
    pub room: String,
    pub participant_id: String,
    /// `checkIn` or `checkOut`.
    pub phase: String,
    /// `null`: they passed.
    pub value: Option<u8>,
    pub at_ms: i64,
}

/// An anonymous check-in's counts: how many chose each value, and how many passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInCountsRecord {
    pub round_id: String,
    pub session_id: String,
    pub room: String,
    pub phase: String,
    pub min: u8,
    /// `counts[i]` people chose `min + i`.
    pub counts: Vec<u32>,
    pub passed: u32,
    pub at_ms: i64,
}

/// A support request: ids, times and the outcome code, never what anyone said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportRecord {
    pub id: String,
    pub session_id: Option<String>,
    pub room: String,
    pub participant_id: String,
    pub opened_ms: i64,
    pub acknowledged_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub resolved_ms: Option<i64>,
    pub resolved_by: Option<String>,
    /// `resolvedInSession`, `followUp` or `escalated`.
    pub outcome: Option<String>,
    /// The requester left for good while the request was still open.
    pub requester_left_open: bool,
}

/// A write for the [`Recorder`]'s queue.
#[derive(Debug, Clone)]
pub enum Record {
    Session(SessionRecord),
    Attendance(AttendanceRecord),
    CheckIn(CheckInValueRecord),
    CheckInCounts(CheckInCountsRecord),
    Support(SupportRecord),
}

/// The node's ordered queue of session record writes (see the module comment). Cloning shares
/// the queue. A write that fails is logged and dropped: records never hold a room up.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

impl Recorder {
    /// Starts the writer task on `store`.
    pub fn spawn(store: Store) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
        tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                if let Err(e) = store.write_record(record).await {
                    tracing::warn!(error = %e, "session record not written");
                }
            }
        });
        Self { tx }
    }

    pub fn record(&self, record: Record) {
        let _ = self.tx.send(record);
    }
}

/// Tables for the records above (a migration of `store.rs`).
pub(super) const MIGRATION: &str = "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT
    );
    CREATE INDEX sessions_room ON sessions(room, started_ms);
    CREATE TABLE attendance (
        session TEXT NOT NULL,
        participant TEXT NOT NULL,
        role TEXT NOT NULL,
        arrived_ms INTEGER NOT NULL,
        admitted_ms INTEGER,
        waited_ms INTEGER NOT NULL,
        late INTEGER NOT NULL,
        reconnects INTEGER NOT NULL,
        intervals TEXT NOT NULL,
        left_ms INTEGER,
        outcome TEXT,
        PRIMARY KEY (session, participant)
    );
    CREATE TABLE checkin_values (
        session TEXT NOT NULL,
        room TEXT NOT NULL,
        participant TEXT NOT NULL,
        phase TEXT NOT NULL,
        value INTEGER,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (session, participant, phase)
    );
    CREATE INDEX checkin_values_participant ON checkin_values(room, participant, at_ms);
    CREATE TABLE checkin_counts (
        round TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        room TEXT NOT NULL,
        phase TEXT NOT NULL,
        min INTEGER NOT NULL,
        counts TEXT NOT NULL,
        passed INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE TABLE support_requests (
        id TEXT PRIMARY KEY,
        session TEXT,
        room TEXT NOT NULL,
        participant TEXT NOT NULL,
        opened_ms INTEGER NOT NULL,
        acknowledged_ms INTEGER,
        acknowledged_by TEXT,
        resolved_ms INTEGER,
        resolved_by TEXT,
        outcome TEXT,
        requester_left_open INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX support_requests_room ON support_requests(room, opened_ms);";

/// What one retention purge deleted, per kind of record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    pub sessions: usize,
    pub attendance: usize,
    pub check_ins: usize,
    pub support_requests: usize,
    pub audit: usize,
    pub polls: usize,
    pub milestones: usize,
}

impl Purged {
    pub fn total(&self) -> usize {
        self.sessions + self.attendance + self.check_ins + self.support_requests + self.audit + self.polls + self.milestones
    }
}

impl Store {
    async fn write_record(&self, record: Record) -> Result<(), StoreError> {
        self.with(move |c| write(c, &record)).await
    }

    /// Sessions still open in the store when a lone node starts were cut off by a stop or a
    /// crash: they end `interrupted` at the last time anything was recorded for them, and so
    /// do their attendance intervals.
    pub async fn close_interrupted_sessions(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            let open: Vec<(String, i64)> = {
                let mut stmt = c.prepare("SELECT id, started_ms FROM sessions WHERE ended_ms IS NULL")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (id, started) in &open {
                let mut people = attendance_of(c, id)?;
                let last = people
                    .iter()
                    .flat_map(|p| p.intervals.iter().flat_map(|i| [Some(i.from_ms), i.to_ms]).chain([Some(p.arrived_ms), p.left_ms]))
                    .flatten()
                    .max()
                    .unwrap_or(*started);
                for p in &mut people {
                    if p.outcome.is_none() {
                        for i in p.intervals.iter_mut().filter(|i| i.to_ms.is_none()) {
                            i.to_ms = Some(last);
                        }
                        p.left_ms = Some(last);
                        p.outcome = Some("ended".into());
                        write(c, &Record::Attendance(p.clone()))?;
                    }
                }
                c.execute("UPDATE sessions SET ended_ms = ?2, end_reason = 'interrupted' WHERE id = ?1", params![id, last])?;
            }
            Ok(open.len())
        })
        .await
    }

    /// A room's sessions, oldest first.
    pub async fn sessions(&self, room: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let room = room.to_string();
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT id, room, started_ms, ended_ms, end_reason FROM sessions WHERE room = ?1 ORDER BY started_ms, rowid")?;
            let rows = stmt.query_map(params![room], |r| {
                Ok(SessionRecord { id: r.get(0)?, room: r.get(1)?, started_ms: r.get(2)?, ended_ms: r.get(3)?, end_reason: r.get(4)? })
            })?;
            rows.collect()
        })
        .await
    }

    /// One session of `room` with its attendance (in order of arrival); `None` if the room has
    /// no session with that id.
    pub async fn attendance(&self, room: &str, session: &str) -> Result<Option<(SessionRecord, Vec<AttendanceRecord>)>, StoreError> {
        let (room, session) = (room.to_string(), session.to_string());
        self.with(move |c| {
            let found = c
                .query_row(
                    "SELECT id, room, started_ms, ended_ms, end_reason FROM sessions WHERE id = ?1 AND room = ?2",
                    params![session, room],
                    |r| {
                        Ok(SessionRecord {
                            id: r.get(0)?,
                            room: r.get(1)?,
                            started_ms: r.get(2)?,
                            ended_ms: r.get(3)?,
                            end_reason: r.get(4)?,
                        })
                    },
                )
                .optional()?;
            let Some(found) = found else { return Ok(None) };
            let people = attendance_of(c, &found.id)?;
            Ok(Some((found, people)))
        })
        .await
    }

    /// One participant's named check-in and check-out values in `room`, oldest first (at most
    /// the last 200).
    pub async fn check_in_values(&self, room: &str, participant: &str) -> Result<Vec<CheckInValueRecord>, StoreError> {
        let (room, participant) = (room.to_string(), participant.to_string());
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT session, room, participant, phase, value, at_ms FROM (
                     SELECT rowid AS seq, * FROM checkin_values WHERE room = ?1 AND participant = ?2
                     ORDER BY at_ms DESC, seq DESC LIMIT 200
                 ) ORDER BY at_ms, seq",
            )?;
            let rows = stmt.query_map(params![room, participant], value_row)?;
            rows.collect()
        })
        .await
    }

    /// Each person's check-in value (`checkIn`, not passed) at the latest session of `room`
    /// before `session` that has one: what therapists see beside a live answer.
    pub async fn previous_check_ins(&self, room: &str, session: &str) -> Result<Vec<(String, u8)>, StoreError> {
        let (room, session) = (room.to_string(), session.to_string());
        self.with(move |c| {
            // SQLite takes the bare `value` from the row that holds the `MAX`.
            let mut stmt = c.prepare(
                "SELECT participant, value, MAX(at_ms) FROM checkin_values
                 WHERE room = ?1 AND session != ?2 AND phase = 'checkIn' AND value IS NOT NULL
                 GROUP BY participant",
            )?;
            let rows = stmt.query_map(params![room, session], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Every named check-in and check-out value of one session of `room`, in answer order.
    pub async fn session_check_ins(&self, room: &str, session: &str) -> Result<Vec<CheckInValueRecord>, StoreError> {
        let (room, session) = (room.to_string(), session.to_string());
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT session, room, participant, phase, value, at_ms FROM checkin_values
                 WHERE room = ?1 AND session = ?2 ORDER BY at_ms, rowid",
            )?;
            let rows = stmt.query_map(params![room, session], value_row)?;
            rows.collect()
        })
        .await
    }

    /// A room's support requests, oldest first.
    pub async fn support_requests(&self, room: &str) -> Result<Vec<SupportRecord>, StoreError> {
        let room = room.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, session, room, participant, opened_ms, acknowledged_ms, acknowledged_by, resolved_ms, resolved_by,
                        outcome, requester_left_open
                 FROM support_requests WHERE room = ?1 ORDER BY opened_ms, rowid",
            )?;
            let rows = stmt.query_map(params![room], |r| {
                Ok(SupportRecord {
                    id: r.get(0)?,
                    session_id: r.get(1)?,
                    room: r.get(2)?,
                    participant_id: r.get(3)?,
                    opened_ms: r.get(4)?,
                    acknowledged_ms: r.get(5)?,
                    acknowledged_by: r.get(6)?,
                    resolved_ms: r.get(7)?,
                    resolved_by: r.get(8)?,
                    outcome: r.get(9)?,
                    requester_left_open: r.get(10)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Deletes every record older than `days` days (see README "Retention"): sessions and
    /// their attendance, check-in values and counts, support requests, audit rows, polls with
    /// their options and choices, and celebrated milestones. Celebration preferences (a
    /// person's standing choice, not a record of a session) are kept. `days == 0` deletes
    /// nothing.
    pub async fn purge_older_than(&self, days: u32) -> Result<Purged, StoreError> {
        if days == 0 {
            return Ok(Purged::default());
        }
        let cutoff = now_ms() - i64::from(days) * 86_400_000;
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut p = Purged {
                attendance: tx
                    .execute("DELETE FROM attendance WHERE session IN (SELECT id FROM sessions WHERE started_ms < ?1)", params![cutoff])?,
                ..Purged::default()
            };
            p.sessions = tx.execute("DELETE FROM sessions WHERE started_ms < ?1", params![cutoff])?;
            p.check_ins = tx.execute("DELETE FROM checkin_values WHERE at_ms < ?1", params![cutoff])?
                + tx.execute("DELETE FROM checkin_counts WHERE at_ms < ?1", params![cutoff])?;
            p.support_requests = tx.execute("DELETE FROM support_requests WHERE opened_ms < ?1", params![cutoff])?;
            p.audit = tx.execute("DELETE FROM audit WHERE at_ms < ?1", params![cutoff])?;
            let old_polls = "SELECT id FROM polls WHERE created_at_ms < ?1";
            tx.execute(&format!("DELETE FROM poll_choices WHERE poll_id IN ({old_polls})"), params![cutoff])?;
            tx.execute(&format!("DELETE FROM poll_options WHERE poll_id IN ({old_polls})"), params![cutoff])?;
            p.polls = tx.execute("DELETE FROM polls WHERE created_at_ms < ?1", params![cutoff])?;
            p.milestones = tx.execute("DELETE FROM milestones WHERE at_ms < ?1", params![cutoff])?;
            tx.commit()?;
            Ok(p)
        })
        .await
    }
}

fn write(c: &Connection, record: &Record) -> Result<(), rusqlite::Error> {
    match record {
        Record::Session(s) => c.execute(
            "INSERT INTO sessions (id, room, started_ms, ended_ms, end_reason) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET ended_ms = excluded.ended_ms, end_reason = excluded.end_reason",
            params![s.id, s.room, s.started_ms, s.ended_ms, s.end_reason],
        ),
        Record::Attendance(a) => {
            let intervals = serde_json::to_string(&a.intervals).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            c.execute(
                "INSERT INTO attendance (session, participant, role, arrived_ms, admitted_ms, waited_ms, late, reconnects,
                                         intervals, left_ms, outcome, talk_seconds)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT(session, participant) DO UPDATE SET role = excluded.role, admitted_ms = excluded.admitted_ms,
                     waited_ms = excluded.waited_ms, late = excluded.late, reconnects = excluded.reconnects,
                     intervals = excluded.intervals, left_ms = excluded.left_ms, outcome = excluded.outcome,
                     talk_seconds = excluded.talk_seconds",
                params![
                    a.session_id,
                    a.participant_id,
                    a.role,
                    a.arrived_ms,
                    a.admitted_ms,
                    a.waited_ms,
                    a.late,
                    a.reconnects,
                    intervals,
                    a.left_ms,
                    a.outcome,
                    a.talk_seconds
                ],
            )
        }
        Record::CheckIn(v) => c.execute(
            "INSERT INTO checkin_values (session, room, participant, phase, value, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(session, participant, phase) DO UPDATE SET value = excluded.value, at_ms = excluded.at_ms",
            params![v.session_id, v.room, v.participant_id, v.phase, v.value, v.at_ms],
        ),
        Record::CheckInCounts(k) => {
            let counts = serde_json::to_string(&k.counts).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            c.execute(
                "INSERT INTO checkin_counts (round, session, room, phase, min, counts, passed, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(round) DO UPDATE SET counts = excluded.counts, passed = excluded.passed",
                params![k.round_id, k.session_id, k.room, k.phase, k.min, counts, k.passed, k.at_ms],
            )
        }
        Record::Support(s) => c.execute(
            "INSERT INTO support_requests (id, session, room, participant, opened_ms, acknowledged_ms, acknowledged_by,
                                           resolved_ms, resolved_by, outcome, requester_left_open)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(id) DO UPDATE SET acknowledged_ms = excluded.acknowledged_ms, acknowledged_by = excluded.acknowledged_by,
                 resolved_ms = excluded.resolved_ms, resolved_by = excluded.resolved_by, outcome = excluded.outcome,
                 requester_left_open = excluded.requester_left_open",
            params![
                s.id,
                s.session_id,
                s.room,
                s.participant_id,
                s.opened_ms,
                s.acknowledged_ms,
                s.acknowledged_by,
                s.resolved_ms,
                s.resolved_by,
                s.outcome,
                s.requester_left_open
            ],
        ),
    }
    .map(|_| ())
}

fn value_row(r: &rusqlite::Row<'_>) -> Result<CheckInValueRecord, rusqlite::Error> {
    Ok(CheckInValueRecord {
        session_id: r.get(0)?,
        room: r.get(1)?,
        participant_id: r.get(2)?,
        phase: r.get(3)?,
        value: r.get(4)?,
        at_ms: r.get(5)?,
    })
}

fn attendance_of(c: &Connection, session: &str) -> Result<Vec<AttendanceRecord>, rusqlite::Error> {
    let mut stmt = c.prepare(
        "SELECT session, participant, role, arrived_ms, admitted_ms, waited_ms, late, reconnects, intervals, left_ms, outcome,
                talk_seconds
         FROM attendance WHERE session = ?1 ORDER BY arrived_ms, rowid",
    )?;
    let rows = stmt.query_map(params![session], |r| {
        let intervals: String = r.get(8)?;
        Ok(AttendanceRecord {
            session_id: r.get(0)?,
            participant_id: r.get(1)?,
            role: r.get(2)?,
            arrived_ms: r.get(3)?,
            admitted_ms: r.get(4)?,
            waited_ms: r.get(5)?,
            late: r.get(6)?,
            reconnects: r.get(7)?,
            intervals: serde_json::from_str(&intervals)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e)))?,
            left_ms: r.get(9)?,
            outcome: r.get(10)?,
            talk_seconds: r.get(11)?,
        })
    })?;
    rows.collect()
}

/// The attendance as CSV: one row per interval (a person never admitted gets one row with the
/// space columns empty), and a last `talk_seconds` column when the records hold talk time.
/// Every field is an id, a role, a number or a code, so nothing needs quoting; a field that
/// would is quoted anyway rather than trusted.
pub fn attendance_csv(session: &SessionRecord, people: &[AttendanceRecord]) -> String {
    let talk = people.iter().any(|p| p.talk_seconds.is_some());
    let mut out = String::from(
        "session_id,room,participant_id,role,arrived_ms,admitted_ms,waited_ms,late,reconnects,space,from_ms,to_ms,left_ms,outcome",
    );
    out.push_str(if talk { ",talk_seconds\n" } else { "\n" });
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for p in people {
        let head = [
            field(&session.id),
            field(&session.room),
            field(&p.participant_id),
            field(&p.role),
            p.arrived_ms.to_string(),
            opt(p.admitted_ms),
            p.waited_ms.to_string(),
            p.late.to_string(),
            p.reconnects.to_string(),
        ]
        .join(",");
        let mut tail = [opt(p.left_ms), field(p.outcome.as_deref().unwrap_or(""))].join(",");
        if talk {
            tail.push(',');
            tail.push_str(&p.talk_seconds.map(|s| s.to_string()).unwrap_or_default());
        }
        if p.intervals.is_empty() {
            out.push_str(&format!("{head},,,,{tail}\n"));
        }
        for i in &p.intervals {
            out.push_str(&format!("{head},{},{},{},{tail}\n", field(&i.space), i.from_ms, opt(i.to_ms)));
        }
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break, and with a leading
/// `=`, `+`, `-` or `@` defused (spreadsheets run those as formulas).
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(tag: &str) -> (Store, crate::store::TestDb) {
        let path = crate::store::TestDb::new(&format!("records-{tag}"));
        (Store::open(&path).unwrap(), path)
    }

    fn person(session: &str, id: &str, arrived: i64) -> AttendanceRecord {
        AttendanceRecord {
            session_id: session.into(),
            participant_id: id.into(),
            role: "participant".into(),
            arrived_ms: arrived,
            admitted_ms: Some(arrived + 5),
            waited_ms: 5,
            late: false,
            reconnects: 1,
            intervals: vec![IntervalRecord { space: "main".into(), from_ms: arrived + 5, to_ms: None }],
            left_ms: None,
            outcome: None,
            talk_seconds: None,
        }
    }

    #[tokio::test]
    async fn records_round_trip_in_order_and_interrupted_sessions_close() {
        let (s, _db) = temp_store("rt");
        let session = SessionRecord { id: "s-1".into(), room: "g".into(), started_ms: 100, ended_ms: None, end_reason: None };
        let rec = Recorder::spawn(s.clone());
        rec.record(Record::Session(session.clone()));
        let mut a = person("s-1", "p-a", 100);
        rec.record(Record::Attendance(a.clone()));
        a.intervals[0].to_ms = Some(900);
        a.left_ms = Some(900);
        a.outcome = Some("left".into());
        rec.record(Record::Attendance(a.clone()));
        rec.record(Record::Attendance(person("s-1", "p-b", 300)));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got = s.attendance("g", "s-1").await.unwrap();
            if got.as_ref().is_some_and(|(_, people)| people.len() == 2 && people[0].outcome.is_some()) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "records not written: {got:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(s.attendance("g", "s-1").await.unwrap().unwrap().1[0], a, "the last write of a row wins");
        assert_eq!(s.attendance("other-room", "s-1").await.unwrap(), None, "a session is found only in its own room");
        assert_eq!(s.close_interrupted_sessions().await.unwrap(), 1);
        let (session, people) = s.attendance("g", "s-1").await.unwrap().unwrap();
        assert_eq!((session.ended_ms, session.end_reason.as_deref()), (Some(900), Some("interrupted")));
        assert_eq!(people[1].intervals[0].to_ms, Some(900));
        assert_eq!(people[1].outcome.as_deref(), Some("ended"));
    }

    #[tokio::test]
    async fn purge_deletes_old_records_only() {
        let (s, _db) = temp_store("purge");
        let old = now_ms() - 10 * 86_400_000;
        let new = now_ms();
        for (id, t) in [("s-old", old), ("s-new", new)] {
            write_now(
                &s,
                Record::Session(SessionRecord { id: id.into(), room: "g".into(), started_ms: t, ended_ms: None, end_reason: None }),
            )
            .await;
            write_now(&s, Record::Attendance(person(id, "p-a", t))).await;
            write_now(
                &s,
                Record::CheckIn(CheckInValueRecord {
                    session_id: id.into(),
                    room: "g".into(),
                    participant_id: "p-a".into(),
                    phase: "checkIn".into(),
                    value: Some(4),
                    at_ms: t,
                }),
            )
            .await;
            write_now(
                &s,
                Record::Support(SupportRecord {
                    id: format!("sr-{id}"),
                    session_id: Some(id.into()),
                    room: "g".into(),
                    participant_id: "p-a".into(),
                    opened_ms: t,
                    acknowledged_ms: None,
                    acknowledged_by: None,
                    resolved_ms: None,
                    resolved_by: None,
                    outcome: None,
                    requester_left_open: false,
                }),
            )
            .await;
        }
        s.with(move |c| {
            c.execute("INSERT INTO audit (at_ms, room, actor, action) VALUES (?1, 'g', 't', 'mute')", params![old]).map(|_| ())
        })
        .await
        .unwrap();
        assert_eq!(s.purge_older_than(0).await.unwrap().total(), 0, "0 keeps everything");
        let purged = s.purge_older_than(7).await.unwrap();
        assert_eq!(purged, Purged { sessions: 1, attendance: 1, check_ins: 1, support_requests: 1, audit: 1, polls: 0, milestones: 0 });
        assert_eq!(s.sessions("g").await.unwrap().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s-new"]);
        assert_eq!(s.check_in_values("g", "p-a").await.unwrap().len(), 1);
        assert_eq!(s.support_requests("g").await.unwrap().len(), 1);
        assert!(s.attendance("g", "s-new").await.unwrap().is_some());
    }

    async fn write_now(s: &Store, r: Record) {
        s.write_record(r).await.unwrap();
    }

    #[test]
    fn csv_has_a_row_per_interval_and_defuses_formulas() {
        let session = SessionRecord { id: "s-1".into(), room: "g".into(), started_ms: 0, ended_ms: Some(9), end_reason: None };
        let mut a = person("s-1", "p-a", 0);
        a.intervals.push(IntervalRecord { space: "breakout:b1".into(), from_ms: 7, to_ms: Some(8) });
        let mut d = person("s-1", "=cmd", 1);
        d.intervals.clear();
        d.admitted_ms = None;
        d.outcome = Some("declined".into());
        let csv = attendance_csv(&session, &[a, d]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert_eq!(lines[1], "s-1,g,p-a,participant,0,5,5,false,1,main,5,,,");
        assert_eq!(lines[2], "s-1,g,p-a,participant,0,5,5,false,1,breakout:b1,7,8,,");
        assert_eq!(lines[3], "s-1,g,'=cmd,participant,1,,5,false,1,,,,,declined");
    }

    #[test]
    fn csv_has_talk_time_only_when_the_records_do() {
        let session = SessionRecord { id: "s-1".into(), room: "g".into(), started_ms: 0, ended_ms: Some(9), end_reason: None };
        let mut a = person("s-1", "p-a", 0);
        a.talk_seconds = Some(42);
        let t = AttendanceRecord { role: "therapist".into(), ..person("s-1", "t-1", 0) };
        let csv = attendance_csv(&session, &[a, t]);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].ends_with(",outcome,talk_seconds"), "{csv}");
        assert_eq!(lines[1], "s-1,g,p-a,participant,0,5,5,false,1,main,5,,,,42");
        assert_eq!(lines[2], "s-1,g,t-1,therapist,0,5,5,false,1,main,5,,,,");
        let json = serde_json::to_string(&person("s-1", "p-b", 0)).unwrap();
        assert!(!json.contains("talkSeconds"), "off: not even the key");
    }
}
