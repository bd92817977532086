//! The part of a room's state that must outlive the node it runs on (relay nodes):
//! admissions and hard mutes, bans, lock and waiting room, breakouts and assignments, open
//! polls with their ballots, the celebration preferences people chose here, the running
//! session's records (attendance, support requests, check-ins), the speaking queue, go-around
//! rounds (a running turn's end as wall time), the agenda, the agreement with who accepted it
//! (never a location, never live talk time), the end-to-end encryption policy (never a key),
//! and the door: the group's name, the welcome and when the last session ended (never the
//! therapist's name).
//! Accountability partner groups are not in it: they are read from the store.
//!
//! The room serialises this after every change and the cluster keeps it in Redis; a room
//! re-created on another node starts from it. Members, media and chat are not in it: people
//! reconnect and bring those back. Everything is kept in sorted order so that two snapshots of
//! the same state are byte-identical and an unchanged room writes nothing.
//!
//! Whoever can write to Redis can write this key, so a snapshot is read like client input:
//! [`parse`] checks every field (ids, sizes, poll counts against ballots, timers) before the
//! room takes anything from it, and an invalid snapshot is refused whole (the room starts
//! fresh). It holds participant ids, never display names: names come back with the people.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::agenda::{Agenda, AgendaSnap};
use super::agreement::{Agreement, AgreementSnap};
use super::queue::SpeakingQueues;
use super::{Cx, Effect, Remembered, Room, Timer};
use crate::room::ParticipantId;
use crate::signal::protocol::{CelebrationPreferences, PollId, PollInfo};
use crate::store::now_ms;

/// 2: named ballots without display names.
pub(super) const SNAPSHOT_VERSION: u32 = 2;

/// Most ids one snapshot may list in any one of its maps (bans, admissions, preferences,
/// assignments, ballots): far above a real session's (`limits.max_room_size` is 50), low
/// enough that a crafted snapshot cannot make a room hold or walk millions of entries.
const MAX_ENTRIES: usize = 10_000;
/// Furthest in the future a saved timer may end: the longest poll (24 h) plus clock skew.
const MAX_TIMER_AHEAD_MS: u64 = 25 * 3600 * 1000;
/// A snapshot's serialised size limit (a real one is a few kilobytes).
pub(super) const MAX_SNAPSHOT_BYTES: usize = 4 * 1024 * 1024;

/// Why a saved snapshot was refused. Carries no content of the snapshot, only where or what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SnapshotError {
    #[error("snapshot is {0} bytes, over the limit")]
    TooLarge(usize),
    #[error("snapshot is not a room snapshot (JSON {kind} error at line {line}, column {column})")]
    Unreadable { kind: &'static str, line: usize, column: usize },
    #[error("snapshot version {0} is not this server's")]
    Version(u32),
    #[error("snapshot field `{0}` is invalid")]
    Invalid(&'static str),
}

/// Reads and validates a snapshot from the cluster. serde's own messages quote the offending
/// value, so only its category and position are kept.
pub(super) fn parse(json: &str) -> Result<RoomSnapshot, SnapshotError> {
    if json.len() > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge(json.len()));
    }
    let snap: RoomSnapshot = serde_json::from_str(json).map_err(|e| SnapshotError::Unreadable {
        kind: match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        },
        line: e.line(),
        column: e.column(),
    })?;
    snap.validate(now_ms() as u64)?;
    Ok(snap)
}

fn check(ok: bool, field: &'static str) -> Result<(), SnapshotError> {
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::Invalid(field))
    }
}

fn valid_id(id: &ParticipantId) -> bool {
    crate::room::valid_participant_id(id.as_str())
}

/// A name shown to people: 1 to `max` characters, no control or direction-override characters.
fn valid_label(s: &str, max: usize) -> bool {
    let n = s.chars().count();
    n > 0 && n <= max && s.trim() == s && !s.chars().any(crate::room::is_forbidden_in_names)
}

/// `b1`, `private-3`: the space ids this server makes.
fn space_number(id: &str, prefix: &str) -> Option<u32> {
    let digits = id.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl RoomSnapshot {
    /// Every rule the room relies on about its own state, checked before any of it is used.
    pub(super) fn validate(&self, now_ms: u64) -> Result<(), SnapshotError> {
        if self.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(self.version));
        }
        check(self.banned.len() <= MAX_ENTRIES && self.banned.iter().all(valid_id), "banned")?;
        check(self.remembered.len() <= MAX_ENTRIES && self.remembered.keys().all(valid_id), "remembered")?;
        check(self.celebration_prefs.len() <= MAX_ENTRIES && self.celebration_prefs.keys().all(valid_id), "celebrationPrefs")?;
        check(self.records.valid(MAX_ENTRIES), "records")?;
        self.breakouts.validate(now_ms)?;
        check(self.polls.len() <= super::poll::MAX_OPEN_POLLS, "polls")?;
        let mut ids = std::collections::HashSet::new();
        for poll in &self.polls {
            check(ids.insert(poll.info.id.as_str()), "polls.info.id")?;
            poll.validate(&self.breakouts, now_ms)?;
        }
        check(self.speaking_queue.valid(MAX_ENTRIES), "speakingQueue")?;
        check(super::round::Rounds::valid_snapshot(&self.rounds, now_ms, MAX_ENTRIES), "rounds")?;
        check(Agenda::valid_snapshot(&self.agenda, now_ms, MAX_TIMER_AHEAD_MS), "agenda")?;
        check(Agreement::valid_snapshot(&self.agreement, MAX_ENTRIES), "agreement")?;
        check(self.door.as_ref().is_none_or(|d| d.valid(now_ms / 1000)), "door")?;
        Ok(())
    }
}

impl BreakoutsSnap {
    fn validate(&self, now_ms: u64) -> Result<(), SnapshotError> {
        check(self.rooms.len() <= super::breakout::MAX_BREAKOUTS, "breakouts.rooms")?;
        let mut seen = std::collections::HashSet::new();
        for (id, name) in &self.rooms {
            let n = space_number(id, "b");
            check(n.is_some_and(|n| n >= 1 && n <= self.next_id) && seen.insert(id.as_str()), "breakouts.rooms.id")?;
            check(valid_label(name, super::breakout::MAX_NAME_CHARS), "breakouts.rooms.name")?;
        }
        check(
            self.assignment.len() <= MAX_ENTRIES && self.assignment.iter().all(|(p, b)| valid_id(p) && seen.contains(b.as_str())),
            "breakouts.assignment",
        )?;
        check(!self.open || !self.rooms.is_empty(), "breakouts.open")?;
        check(self.closes_at_ms.is_none() || self.open, "breakouts.closesAtMs")?;
        if let Some(at) = self.closes_at_ms {
            let longest = u64::from(super::breakout::MAX_DURATION_SECS) * 1000 + 60_000;
            check(at <= now_ms.saturating_add(longest), "breakouts.closesAtMs")?;
        }
        check(self.generation < u64::MAX / 2, "breakouts.generation")?;
        // Ids count up from here on `createBreakout`; near the top they would overflow.
        check(self.next_id < u32::MAX / 2, "breakouts.nextId")?;
        Ok(())
    }

    fn has_space(&self, space: &str) -> bool {
        self.rooms.iter().any(|(b, _)| b == space)
            || space_number(space, super::chat::PRIVATE_PREFIX).is_some()
            || space_number(space, super::family::FAMILY_PREFIX).is_some()
    }
}

impl PollSnap {
    fn validate(&self, breakouts: &BreakoutsSnap, now_ms: u64) -> Result<(), SnapshotError> {
        use super::poll::{MAX_OPTIONS, MAX_OPTION_CHARS, MAX_QUESTION_CHARS, MIN_OPTIONS};
        let info = &self.info;
        let id = info.id.as_str();
        check(id.len() <= 64 && id.starts_with("poll-") && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "polls.info.id")?;
        // A sealed text is checked for its form only, like the room checks it on `createPoll`.
        let text_ok = |text: &crate::signal::protocol::Text, max: usize, plain_ok: &dyn Fn(&str) -> bool| match text.plain() {
            Some(plain) => plain_ok(plain),
            None => text.is_well_sealed(max),
        };
        check(
            text_ok(&info.question, MAX_QUESTION_CHARS, &|q| {
                let n = q.chars().count();
                n > 0 && n <= MAX_QUESTION_CHARS && !q.chars().any(|c| c != '\n' && crate::room::is_forbidden_in_names(c))
            }),
            "polls.info.question",
        )?;
        let n = info.options.len();
        check((MIN_OPTIONS..=MAX_OPTIONS).contains(&n), "polls.info.options")?;
        for (i, o) in info.options.iter().enumerate() {
            check(o.id == crate::signal::protocol::PollOptionId::nth(i), "polls.info.options.id")?;
            check(text_ok(&o.text, MAX_OPTION_CHARS, &|t| valid_label(t, MAX_OPTION_CHARS)), "polls.info.options.text")?;
        }
        check(info.closes_at.is_none_or(|at| at <= now_ms.saturating_add(MAX_TIMER_AHEAD_MS)), "polls.info.closesAt")?;
        check(self.created_at_ms >= 0 && (self.created_at_ms as u64) <= now_ms.saturating_add(MAX_TIMER_AHEAD_MS), "polls.createdAtMs")?;
        check(valid_id(&self.created_by), "polls.createdBy")?;
        let scope_ok = match (&self.space, info.scope) {
            (None, crate::signal::protocol::PollScope::AllBreakouts) => true,
            // The main room: written `null`, so it reads back as `None` (see `Polls::restore`).
            (None | Some(None), crate::signal::protocol::PollScope::Room) => true,
            (Some(Some(space)), crate::signal::protocol::PollScope::Room) => breakouts.has_space(space),
            _ => false,
        };
        check(scope_ok, "polls.space")?;
        check(self.counts.len() == n, "polls.counts")?;
        // Every ballot names options that exist, once each, as many as the poll takes; the
        // counts and the number of voters are exactly what the ballots add up to.
        let choice_ok = |c: &Vec<usize>| {
            !c.is_empty() && (info.multiple || c.len() == 1) && c.iter().all(|&i| i < n) && c.windows(2).all(|w| w[0] < w[1])
        };
        let mut counted = vec![0u32; n];
        let voters = match &self.ballots {
            BallotsSnap::Named { ballots } => {
                check(!info.anonymous && ballots.len() <= MAX_ENTRIES, "polls.ballots")?;
                let mut who = std::collections::HashSet::new();
                for (p, c) in ballots {
                    check(valid_id(p) && who.insert(p) && choice_ok(c), "polls.ballots")?;
                    c.iter().for_each(|&i| counted[i] += 1);
                }
                ballots.len()
            }
            BallotsSnap::Anonymous { salt, choices } => {
                let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
                check(info.anonymous && hex64(salt) && choices.len() <= MAX_ENTRIES, "polls.ballots")?;
                for (tag, c) in choices {
                    check(hex64(tag) && choice_ok(c), "polls.ballots")?;
                    c.iter().for_each(|&i| counted[i] += 1);
                }
                choices.len()
            }
        };
        check(counted == self.counts, "polls.counts")?;
        check(self.total_voters as usize == voters, "polls.totalVoters")?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RoomSnapshot {
    pub version: u32,
    pub locked: bool,
    pub waiting_room: bool,
    pub banned: Vec<ParticipantId>,
    pub remembered: BTreeMap<ParticipantId, Remembered>,
    pub breakouts: BreakoutsSnap,
    pub polls: Vec<PollSnap>,
    pub celebration_prefs: BTreeMap<ParticipantId, CelebrationPreferences>,
    /// The running session: attendance, support requests, check-ins (ids, times, numbers).
    /// Absent in state saved before sessions were kept.
    #[serde(default)]
    pub records: super::records::Records,
    /// Absent in state saved before these were kept.
    #[serde(default)]
    pub speaking_queue: SpeakingQueues,
    #[serde(default)]
    pub rounds: super::round::RoundsSnap,
    #[serde(default)]
    pub agenda: AgendaSnap,
    /// The agreement and who accepted which version; never anyone's location.
    #[serde(default)]
    pub agreement: AgreementSnap,
    /// The room's end-to-end encryption policy (never a key: those live in members' browsers
    /// and in no saved state). Absent in state saved before it was kept: the new node's
    /// default then applies.
    #[serde(default)]
    pub e2ee: Option<crate::vocab::E2eeMode>,
    /// What the waiting room says (`door.rs`). Kept after the session ends too: it is for the
    /// next one. Absent in state saved before it was kept: this node's memory then stays.
    #[serde(default)]
    pub door: Option<super::door::DoorSnap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BreakoutsSnap {
    /// (id, name) in creation order.
    pub rooms: Vec<(String, String)>,
    pub assignment: BTreeMap<ParticipantId, String>,
    pub open: bool,
    pub allow_return: bool,
    pub closes_at_ms: Option<u64>,
    pub generation: u64,
    pub next_id: u32,
}

/// An open poll. Closed polls are final and already in the store of the node that closed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PollSnap {
    pub info: PollInfo,
    /// `None`: every space; `Some(space)`: one space (`None` inside = the main room).
    pub space: Option<Option<String>>,
    pub created_by: ParticipantId,
    pub created_at_ms: i64,
    pub shared: bool,
    pub counts: Vec<u32>,
    pub total_voters: u32,
    pub ballots: BallotsSnap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub(super) enum BallotsSnap {
    /// (participant, option indexes). No names: Redis is not where people's names go.
    Named { ballots: Vec<(ParticipantId, Vec<usize>)> },
    /// The poll's salt and, per ballot, its HMAC tag (hex) and option indexes. The HMAC key is
    /// derived from the salt and a secret only the nodes hold (docs/polls.md), so these tags
    /// tie to no participant for anyone who reads Redis alone.
    Anonymous { salt: String, choices: BTreeMap<String, Vec<usize>> },
}

impl Room {
    pub(super) fn snapshot(&self) -> RoomSnapshot {
        let mut banned: Vec<_> = self.banned.iter().cloned().collect();
        banned.sort();
        RoomSnapshot {
            version: SNAPSHOT_VERSION,
            locked: self.state.locked,
            waiting_room: self.state.waiting_room,
            banned,
            remembered: self.remembered.iter().map(|(id, r)| (id.clone(), *r)).collect(),
            breakouts: self.breakouts.snapshot(),
            polls: self.polls.snapshot(),
            celebration_prefs: self.milestones.chosen_prefs(),
            records: self.records_to_keep(),
            speaking_queue: self.queues.clone(),
            rounds: self.rounds.snapshot(),
            agenda: self.agenda.snapshot(),
            agreement: self.agreement.snapshot(),
            e2ee: Some(self.state.e2ee),
            door: Some(self.door_snapshot()),
        }
    }

    /// The session's records as saved: when the clinic keeps talk time, each participant's
    /// total so far is in their record, so it survives a move to another node.
    fn records_to_keep(&self) -> super::records::Records {
        let mut records = self.records.clone();
        if self.settings.talk_time_in_attendance {
            let present = self.members.values().filter(|m| m.admitted && m.info.role.takes_part());
            for m in present {
                records.attendance.talked(&m.info.id, self.talk.seconds(&m.info.id));
            }
        }
        records
    }

    /// What a room that ended leaves behind on relay nodes: its bans, and the door for the
    /// next session; nothing else.
    pub(super) fn next_session_snapshot(&self) -> RoomSnapshot {
        let mut banned: Vec<_> = self.banned.iter().cloned().collect();
        banned.sort();
        RoomSnapshot {
            version: SNAPSHOT_VERSION,
            locked: false,
            waiting_room: self.settings.waiting_room,
            banned,
            remembered: BTreeMap::new(),
            breakouts: BreakoutsSnap::default(),
            polls: Vec::new(),
            celebration_prefs: BTreeMap::new(),
            records: Default::default(),
            speaking_queue: SpeakingQueues::default(),
            rounds: Default::default(),
            agenda: AgendaSnap::default(),
            agreement: AgreementSnap::default(),
            e2ee: None,
            door: Some(self.door_snapshot()),
        }
    }

    /// Takes over a snapshot saved by this room's previous node, before anyone joins.
    pub(super) fn restore(&mut self, snap: RoomSnapshot) {
        if snap.version != SNAPSHOT_VERSION {
            tracing::warn!(version = snap.version, "room state from an unknown version ignored");
            return;
        }
        self.state.locked = snap.locked;
        self.state.waiting_room = snap.waiting_room;
        if let Some(mode) = snap.e2ee {
            // A room that moved keeps its policy: an encrypted group must not come back in the
            // clear because its new node's default differs.
            self.state.e2ee = mode;
            self.state.waiting_room |= mode == crate::vocab::E2eeMode::Required;
        }
        // Bans this node already knows for the room stay; the snapshot's join them.
        for id in &snap.banned {
            self.out.push(Effect::Ban(id.clone()));
        }
        self.banned.extend(snap.banned);
        self.remembered = snap.remembered.into_iter().collect();
        let now = self.now.unix_ms as u64;
        if let Some((generation, left_ms)) = self.breakouts.restore(snap.breakouts, now) {
            self.schedule(std::time::Duration::from_millis(left_ms), Timer::BreakoutClose(generation));
        }
        let secret = self.settings.ballot_secret;
        let (timers, records) = self.polls.restore(snap.polls, &secret, self.id.as_str(), now);
        self.out.extend(records.into_iter().map(|r| Effect::SavePoll(Box::new(r))));
        for (id, left_ms) in timers {
            self.schedule(std::time::Duration::from_millis(left_ms), Timer::PollClose(id));
        }
        self.records = snap.records;
        if self.settings.talk_time_in_attendance {
            for (id, seconds) in self.records.attendance.talk_so_far() {
                self.talk.resume(id, seconds);
            }
        }
        // This node's store gets the running session as it stands, so its attendance can be
        // read here whole (the people who left before the move included).
        self.out.extend(self.records.attendance.records(&self.id).into_iter().map(Effect::Record));
        for (who, prefs) in snap.celebration_prefs {
            self.milestones.restore_prefs(&mut cx!(self), who, prefs);
        }
        self.queues = snap.speaking_queue;
        let breakouts = &self.breakouts;
        self.queues.retain_spaces(|s| s.as_deref().is_none_or(|b| breakouts.exists(b)));
        for (space, deadline) in self.rounds.restore(snap.rounds, self.now) {
            self.schedule(deadline.at.saturating_duration_since(self.now.at), Timer::RoundTurn(space, deadline.generation));
        }
        let breakouts = &self.breakouts;
        self.rounds.retain_spaces(|s| s.as_deref().is_none_or(|b| breakouts.exists(b)));
        let (agenda, warning) = Agenda::restore(snap.agenda, self.now.at, now);
        self.agenda = agenda;
        if let Some(w) = warning {
            self.schedule(w.at.saturating_duration_since(self.now.at), Timer::AgendaWarning(w.generation));
        }
        self.agreement = Agreement::restore(snap.agreement);
        if let Some(door) = snap.door {
            self.restore_door(door);
        }
        tracing::info!("room state restored from the cluster");
    }
}

pub(super) fn ban_until(ttl: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(ttl).unwrap_or_else(|| now + std::time::Duration::from_secs(365 * 86400))
}

/// Poll ids restored with a timer still to run.
pub(super) type PollTimers = Vec<(PollId, u64)>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot as a node writes it: a breakout, a named and an anonymous poll with votes.
    fn valid_json() -> String {
        let now = now_ms();
        format!(
            r#"{{"version":2,"locked":true,"waitingRoom":true,"banned":["p-x"],
            "remembered":{{"p-1":{{"admitted":true,"audioHardMuted":false,"videoHardMuted":false,"canShareScreen":false}}}},
            "breakouts":{{"rooms":[["b1","Pairs"]],"assignment":{{"p-1":"b1"}},"open":true,"allowReturn":false,"closesAtMs":{},"generation":3,"nextId":1}},
            "polls":[
              {{"info":{{"id":"poll-0000000000000001","question":"How?","options":[{{"id":"o1","text":"Good"}},{{"id":"o2","text":"Hard"}}],"multiple":false,"anonymous":false,"scope":"room"}},
                "space":null,"createdBy":"t","createdAtMs":{now},"shared":false,"counts":[0,1],"totalVoters":1,
                "ballots":{{"kind":"named","ballots":[["p-1",[1]]]}}}},
              {{"info":{{"id":"poll-0000000000000002","question":"Pace?","options":[{{"id":"o1","text":"Ok"}},{{"id":"o2","text":"Fast"}}],"multiple":true,"anonymous":true,"scope":"allBreakouts","closesAt":{}}},
                "createdAtMs":{now},"createdBy":"t","shared":false,"counts":[1,1],"totalVoters":1,
                "ballots":{{"kind":"anonymous","salt":"{}","choices":{{"{}":[0,1]}}}}}}
            ],
            "celebrationPrefs":{{}}}}"#,
            now + 60_000,
            now + 60_000,
            "ab".repeat(32),
            "cd".repeat(32),
        )
    }

    #[test]
    fn a_real_snapshot_is_accepted() {
        let snap = parse(&valid_json()).expect("valid");
        assert_eq!(snap.polls.len(), 2);
    }

    /// A round as a node saves it, in the breakout `b1`: `p-1` speaks, with no time limit.
    fn with_round(round: &str) -> String {
        valid_json().replace(r#""celebrationPrefs":{}"#, &format!(r#""celebrationPrefs":{{}},"rounds":{{"b1":{round}}}"#))
    }

    #[test]
    fn a_saved_round_is_read_like_input() {
        let ok = r#"{"order":["p-1","p-2"],"at":0,"passed":[],"skipped":[],"allowPass":true,"seconds":null,"turnEndsMs":null}"#;
        assert_eq!(parse(&with_round(ok)).expect("valid").rounds.len(), 1);
        for bad in [
            ok.replace(r#""at":0"#, r#""at":3"#),
            ok.replace(r#""skipped":[]"#, r#""skipped":["p-9"]"#),
            ok.replace(r#"["p-1","p-2"]"#, r#"["p-1","p-1"]"#),
            ok.replace(r#""seconds":null"#, r#""seconds":1"#),
            ok.replace(r#""seconds":null"#, r#""seconds":60"#),
        ] {
            assert_eq!(parse(&with_round(&bad)).unwrap_err(), SnapshotError::Invalid("rounds"), "{bad}");
        }
    }

    /// The input that panicked the room task before snapshots were validated: a named ballot
    /// pointing at an option the poll does not have (restoring wrote the poll's record, which
    /// indexes the options by it).
    fn crafted_json() -> String {
        valid_json().replace(r#"["p-1",[1]]"#, r#"["p-1",[99]]"#)
    }

    #[test]
    fn the_crafted_snapshot_is_refused_and_would_have_panicked() {
        assert_eq!(parse(&crafted_json()).unwrap_err(), SnapshotError::Invalid("polls.ballots"));
        // Unvalidated, the same input panics in the poll restore: this is what `parse` stops.
        let snap: RoomSnapshot = serde_json::from_str(&crafted_json()).unwrap();
        let restored = std::panic::catch_unwind(|| {
            let mut polls = super::super::poll::Polls::default();
            polls.restore(snap.polls, &[0; 32], "r", now_ms() as u64)
        });
        assert!(restored.is_err(), "the crafted snapshot no longer panics unvalidated; find another for the test");
    }

    #[test]
    fn errors_carry_no_content() {
        let e = parse(r#"{"version":2,"banned":"Secret Name"}"#).unwrap_err();
        assert!(!e.to_string().contains("Secret"), "{e}");
        for bad in [
            valid_json().replace(r#""counts":[0,1]"#, r#""counts":[0,2]"#),
            valid_json().replace(r#""counts":[0,1]"#, r#""counts":[0,1,0]"#),
            valid_json().replace(r#""totalVoters":1,"#, r#""totalVoters":7,"#),
            valid_json().replace(r#"[["b1","Pairs"]]"#, r#"[["b1","Pa\u202Eirs"]]"#),
            valid_json().replace(r#""assignment":{"p-1":"b1"}"#, r#""assignment":{"p-1":"b9"}"#),
            valid_json().replace(r#""banned":["p-x"]"#, r#""banned":["p x"]"#),
            valid_json().replace(r#"[0,1]}"#, r#"[1,1]}"#),
            valid_json().replace(r#""generation":3"#, r#""generation":18446744073709551615"#),
            valid_json().replace(r#""version":2"#, r#""version":1"#),
            valid_json().replace(r#""nextId":1"#, r#""nextId":4294967295"#),
        ] {
            assert!(parse(&bad).is_err(), "accepted: {bad}");
        }
    }

    /// Hand fuzzing: every number in a valid snapshot replaced by awkward values, and every
    /// string by odd ones. Whatever `parse` accepts must restore, tally and record without a
    /// panic.
    #[test]
    fn whatever_parse_accepts_restores_without_panicking() {
        let base = valid_json();
        let numbers = ["0", "1", "2", "3", "9", "10", "11", "99", "4294967295", "4294967296", "18446744073709551615", "-1"];
        let mut cases = Vec::new();
        let bytes: Vec<char> = base.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                for n in numbers {
                    let mut s: String = bytes[..start].iter().collect();
                    s.push_str(n);
                    s.extend(&bytes[i..]);
                    cases.push(s);
                }
            } else {
                i += 1;
            }
        }
        for (from, to) in [
            ("\"o2\"", "\"o1\""),
            ("\"b1\"", "\"private-1\""),
            ("\"room\"", "\"allBreakouts\""),
            ("\"named\"", "\"anonymous\""),
            ("[1]]", "[]]"),
        ] {
            cases.push(base.replacen(from, to, 1));
        }
        assert!(cases.len() > 100);
        for case in cases {
            let Ok(snap) = parse(&case) else { continue };
            let ok = std::panic::catch_unwind(|| {
                let mut polls = super::super::poll::Polls::default();
                polls.restore(snap.polls.clone(), &[0; 32], "r", now_ms() as u64);
                polls.exercise();
                let mut b = super::super::breakout::Breakouts::default();
                b.restore(snap.breakouts.clone(), now_ms() as u64);
            });
            assert!(ok.is_ok(), "accepted and panicked: {case}");
        }
    }
}
