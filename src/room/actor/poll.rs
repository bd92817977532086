//! In-call polls. A therapist launches a poll to their own space (the main room or a
//! breakout) or to every space; participants there vote and may change their vote until it
//! closes; therapists see live counts (and, for named polls, who chose what), share the counts
//! with the room when they choose, and close the poll by hand or by its timer. Definitions and
//! counts persist in the store, written in order by one writer task per room.
//!
//! Anonymous polls keep no record of who chose what, in memory or on disk: see
//! [`Ballots::Anonymous`] and `docs/polls.md` for the guarantee and its limits.
//!
//! [`Poll`] is plain data with pure methods (tested below without sockets); [`Polls`] routes
//! messages, checks roles and scope, and tells people, through the room's context (`Cx`).

use std::collections::HashMap;
use std::time::Duration;

use ring::hmac;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::snapshot::{BallotsSnap, PollSnap, PollTimers};
use super::{Cx, Effect, Timer};
use crate::auth::Role;
use crate::room::ParticipantId;
use crate::signal::protocol::{
    ClientMessage, ErrorCode, PollCloseReason, PollId, PollInfo, PollOption, PollOptionCount, PollOptionId, PollOptionVoters, PollScope,
    PollTally, PollVoter, ServerMessage, Text,
};
use crate::store::{PollChoiceRecord, PollOptionRecord, PollRecord, Store};

pub const MAX_QUESTION_CHARS: usize = 300;
pub const MAX_OPTION_CHARS: usize = 100;
pub const MIN_OPTIONS: usize = 2;
pub const MAX_OPTIONS: usize = 10;
pub const MAX_DURATION_SECS: u32 = 24 * 3600;
/// Open polls one room may have at once.
pub(super) const MAX_OPEN_POLLS: usize = 20;
/// Closed polls kept in memory (so a late vote hears `poll_closed`); older ones live in the
/// store only, and a vote for them hears `unknown_poll`.
const MAX_CLOSED_POLLS: usize = 100;

/// A refusal: the error code and the message for people. Nothing changed.
type Refusal = (ErrorCode, String);

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err((code, message.into()))
}

/// Every poll of one room.
#[derive(Default)]
pub(super) struct Polls {
    by_id: HashMap<PollId, Poll>,
    /// Creation order, for stable catch-up on admission.
    order: Vec<PollId>,
}

impl Polls {
    fn open_count(&self) -> usize {
        self.by_id.values().filter(|p| p.is_open()).count()
    }

    fn insert(&mut self, poll: Poll) {
        self.order.push(poll.info.id.clone());
        self.by_id.insert(poll.info.id.clone(), poll);
        // Forget the oldest closed polls beyond the bound (they are in the store).
        let closed: Vec<PollId> = self.order.iter().filter(|id| self.by_id.get(*id).is_some_and(|p| !p.is_open())).cloned().collect();
        if closed.len() > MAX_CLOSED_POLLS {
            for id in &closed[..closed.len() - MAX_CLOSED_POLLS] {
                self.by_id.remove(id);
            }
            self.order.retain(|id| self.by_id.contains_key(id));
        }
    }
}

impl Polls {
    /// The open polls, for the room's shared state (see `snapshot.rs`).
    pub(super) fn snapshot(&self) -> Vec<PollSnap> {
        self.order
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .filter(|p| p.is_open())
            .map(|p| PollSnap {
                info: p.info.clone(),
                space: match &p.audience {
                    Audience::Space(s) => Some(s.clone()),
                    Audience::Everyone => None,
                },
                created_by: p.created_by.clone(),
                created_at_ms: p.created_at_ms,
                shared: p.shared,
                counts: p.counts.clone(),
                total_voters: p.total_voters,
                ballots: match &p.ballots {
                    Ballots::Named(b) => {
                        BallotsSnap::Named { ballots: b.iter().map(|b| (b.participant.clone(), b.choice.clone())).collect() }
                    }
                    Ballots::Anonymous { salt, choices, .. } => {
                        BallotsSnap::Anonymous { salt: hex(salt), choices: choices.iter().map(|(t, c)| (hex(t), c.clone())).collect() }
                    }
                    Ballots::Sealed => BallotsSnap::Anonymous { salt: String::new(), choices: Default::default() },
                },
            })
            .collect()
    }

    /// Takes over open polls from a previous node: they go on here (and into this node's
    /// store, so their results are kept when they close). Returns the timers still to run and
    /// the records for this node's store.
    pub(super) fn restore(&mut self, snaps: Vec<PollSnap>, secret: &[u8; 32], room: &str, now: u64) -> (PollTimers, Vec<PollRecord>) {
        let mut timers = Vec::new();
        let mut records = Vec::new();
        for snap in snaps {
            let ballots = match snap.ballots {
                // Names were not saved: the therapists' tallies take them from who is here.
                BallotsSnap::Named { ballots } => Ballots::Named(
                    ballots.into_iter().map(|(participant, choice)| NamedBallot { participant, name: String::new(), choice }).collect(),
                ),
                BallotsSnap::Anonymous { salt, choices } => {
                    let Some(salt) = unhex(&salt) else { continue };
                    Ballots::Anonymous {
                        key: ballot_key(secret, &salt),
                        salt,
                        choices: choices.into_iter().filter_map(|(t, c)| Some((unhex(&t)?, c))).collect(),
                    }
                }
            };
            let options = snap.info.options.len();
            if snap.counts.len() != options {
                continue;
            }
            let poll = Poll {
                // JSON writes the main room's `Some(None)` as `null`, which reads back as
                // `None`: the scope says which it was (a room poll is always one space's).
                audience: match (snap.space, snap.info.scope) {
                    (_, PollScope::AllBreakouts) => Audience::Everyone,
                    (space, PollScope::Room) => Audience::Space(space.flatten()),
                },
                created_by: snap.created_by,
                created_at_ms: snap.created_at_ms,
                closed: None,
                shared: snap.shared,
                counts: snap.counts,
                total_voters: snap.total_voters,
                ballots,
                info: snap.info,
            };
            if let Some(at) = poll.info.closes_at {
                timers.push((poll.info.id.clone(), at.saturating_sub(now)));
            }
            records.push(poll.record(room));
            self.insert(poll);
        }
        (timers, records)
    }
}

#[cfg(test)]
impl Polls {
    /// Tests: every read of every poll (tallies, records, each voter's choice).
    pub(super) fn exercise(&self) {
        for p in self.by_id.values() {
            let _ = (p.tally(true), p.tally(false), p.record("r"));
            if let Ballots::Named(b) = &p.ballots {
                for ballot in b {
                    let _ = p.choice_of(&ballot.participant);
                }
            }
        }
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The room's writer of poll records (run by the room task): records are written in the order
/// queued, and of several records of one poll waiting together only the newest is written.
pub(super) fn spawn_writer(store: Store) -> mpsc::UnboundedSender<PollRecord> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PollRecord>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(next) = rx.try_recv() {
                match batch.iter_mut().find(|r| r.id == next.id) {
                    Some(slot) => *slot = next,
                    None => batch.push(next),
                }
            }
            for record in batch {
                if let Err(e) = store.save_poll(record).await {
                    warn!(error = %e, "poll not saved");
                }
            }
        }
    });
    tx
}

/// Who a poll is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Audience {
    /// One space: `None` is the main room, otherwise a breakout id.
    Space(Option<String>),
    /// Every space.
    Everyone,
}

impl Audience {
    fn includes(&self, space: &Option<String>) -> bool {
        match self {
            Audience::Space(s) => s == space,
            Audience::Everyone => true,
        }
    }
}

/// Who voted for what, while a poll is open.
// One per poll, and the anonymous variant is the common one: boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Ballots {
    /// Named polls: each voter's current choice (option indexes), in order of first vote.
    Named(Vec<NamedBallot>),
    /// Anonymous polls: the current choice keyed by HMAC-SHA256(per-poll key, participant id).
    /// The key is random, made for this poll, held only here and never persisted or sent, so
    /// the map says "someone chose this" and lets that someone change it, but it cannot be
    /// tied to a participant by anything outside this process. Dropped when the poll closes:
    /// from then on only the counts exist.
    ///
    /// The key is HMAC(ballot secret, salt): the salt is random per poll, the ballot secret is
    /// random per process on a single node (never written anywhere) and, with relay nodes,
    /// derived from the token secret the nodes share, so an open poll can move to another node
    /// (its salt and tags travel in the room's state; the secret never does).
    Anonymous { salt: [u8; 32], key: hmac::Key, choices: HashMap<[u8; 32], Vec<usize>> },
    /// A closed anonymous poll: ballots forgotten, counts kept.
    Sealed,
}

struct NamedBallot {
    participant: ParticipantId,
    name: String,
    choice: Vec<usize>,
}

/// A validated `createPoll`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NewPoll {
    question: Text,
    options: Vec<Text>,
    multiple: bool,
    anonymous: bool,
    duration: Option<Duration>,
    scope: PollScope,
}

/// What the store keeps of a question or option sealed end to end: the server cannot read it,
/// and the keys that could are gone with the session.
pub(super) const SEALED_IN_STORE: &str = "(sealed end to end)";

fn validate_new(
    question: Text,
    options: Vec<Text>,
    multiple: bool,
    anonymous: bool,
    duration_secs: Option<u32>,
    scope: Option<PollScope>,
) -> Result<NewPoll, Refusal> {
    // A sealed text's form was checked with the room's policy (`sealed.rs`); its length and
    // characters are its sender's browser's to check, and repeats cannot be seen.
    let question = match question {
        Text::Plain(question) => {
            let question = question.trim();
            let q_len = question.chars().count();
            if q_len == 0 || q_len > MAX_QUESTION_CHARS {
                return refuse(ErrorCode::InvalidPoll, format!("the question must be 1 to {MAX_QUESTION_CHARS} characters"));
            }
            if question.chars().any(|c| c.is_control() && c != '\n') {
                return refuse(ErrorCode::InvalidPoll, "the question must not contain control characters");
            }
            Text::Plain(question.to_string())
        }
        sealed => sealed,
    };
    if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&options.len()) {
        return refuse(ErrorCode::InvalidPoll, format!("a poll needs {MIN_OPTIONS} to {MAX_OPTIONS} options"));
    }
    let mut cleaned: Vec<Text> = Vec::with_capacity(options.len());
    for (i, option) in options.into_iter().enumerate() {
        let Text::Plain(option) = option else {
            cleaned.push(option);
            continue;
        };
        let option = option.trim();
        let len = option.chars().count();
        if len == 0 || len > MAX_OPTION_CHARS {
            return refuse(ErrorCode::InvalidPoll, format!("option {} must be 1 to {MAX_OPTION_CHARS} characters", i + 1));
        }
        if option.chars().any(char::is_control) {
            return refuse(ErrorCode::InvalidPoll, format!("option {} must not contain control characters", i + 1));
        }
        if cleaned.iter().filter_map(Text::plain).any(|o| o.to_lowercase() == option.to_lowercase()) {
            return refuse(ErrorCode::InvalidPoll, format!("option {} repeats an earlier option", i + 1));
        }
        cleaned.push(Text::Plain(option.to_string()));
    }
    let duration = match duration_secs {
        None => None,
        Some(s) if (1..=MAX_DURATION_SECS).contains(&s) => Some(Duration::from_secs(u64::from(s))),
        Some(_) => return refuse(ErrorCode::InvalidPoll, format!("the time limit must be 1 to {MAX_DURATION_SECS} seconds")),
    };
    Ok(NewPoll { question, options: cleaned, multiple, anonymous, duration, scope: scope.unwrap_or_default() })
}

/// A question or option as the store keeps it: plain, or [`SEALED_IN_STORE`].
fn stored_text(text: &Text) -> String {
    text.plain().unwrap_or(SEALED_IN_STORE).to_string()
}

struct Poll {
    info: PollInfo,
    audience: Audience,
    created_by: ParticipantId,
    created_at_ms: i64,
    closed: Option<(i64, PollCloseReason)>,
    shared: bool,
    /// Votes per option, in option order.
    counts: Vec<u32>,
    total_voters: u32,
    ballots: Ballots,
}

impl Poll {
    fn new(id: PollId, new: NewPoll, audience: Audience, created_by: ParticipantId, now_ms: i64, secret: &[u8; 32]) -> Self {
        let options: Vec<PollOption> =
            new.options.into_iter().enumerate().map(|(i, text)| PollOption { id: PollOptionId::nth(i), text }).collect();
        let ballots = if new.anonymous {
            let salt = rand::random::<[u8; 32]>();
            Ballots::Anonymous { salt, key: ballot_key(secret, &salt), choices: HashMap::new() }
        } else {
            Ballots::Named(Vec::new())
        };
        let closes_at = new.duration.map(|d| (now_ms.max(0) as u64).saturating_add(d.as_millis() as u64));
        Self {
            counts: vec![0; options.len()],
            info: PollInfo {
                id,
                question: new.question,
                options,
                multiple: new.multiple,
                anonymous: new.anonymous,
                scope: new.scope,
                closes_at,
            },
            audience,
            created_by,
            created_at_ms: now_ms,
            closed: None,
            shared: false,
            total_voters: 0,
            ballots,
        }
    }

    fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// Records `voter`'s choice, replacing any earlier one; returns the choice as accepted.
    fn vote(&mut self, voter: &ParticipantId, name: &str, option_ids: &[PollOptionId]) -> Result<Vec<PollOptionId>, Refusal> {
        if !self.is_open() {
            return refuse(ErrorCode::PollClosed, "this poll has closed; votes are no longer taken");
        }
        let mut choice = Vec::with_capacity(option_ids.len());
        for id in option_ids {
            match self.info.options.iter().position(|o| &o.id == id) {
                Some(i) => choice.push(i),
                None => {
                    let shown: String = id.as_str().chars().take(20).collect();
                    return refuse(ErrorCode::UnknownOption, format!("this poll has no option `{shown}`"));
                }
            }
        }
        choice.sort_unstable();
        if choice.windows(2).any(|w| w[0] == w[1]) {
            return refuse(ErrorCode::InvalidVote, "an option is chosen twice");
        }
        match (self.info.multiple, choice.len()) {
            (_, 0) => return refuse(ErrorCode::InvalidVote, "choose at least one option"),
            (false, n) if n > 1 => return refuse(ErrorCode::InvalidVote, "this poll takes exactly one option"),
            _ => {}
        }
        let previous = match &mut self.ballots {
            Ballots::Named(ballots) => match ballots.iter_mut().find(|b| &b.participant == voter) {
                Some(b) => {
                    b.name = name.to_string();
                    Some(std::mem::replace(&mut b.choice, choice.clone()))
                }
                None => {
                    ballots.push(NamedBallot { participant: voter.clone(), name: name.to_string(), choice: choice.clone() });
                    None
                }
            },
            Ballots::Anonymous { key, choices, .. } => choices.insert(tag(key, voter), choice.clone()),
            Ballots::Sealed => return refuse(ErrorCode::PollClosed, "this poll has closed; votes are no longer taken"),
        };
        match previous {
            Some(old) => {
                for i in old {
                    self.counts[i] = self.counts[i].saturating_sub(1);
                }
            }
            None => self.total_voters += 1,
        }
        for &i in &choice {
            self.counts[i] += 1;
        }
        Ok(choice.into_iter().map(|i| self.info.options[i].id.clone()).collect())
    }

    /// `voter`'s current choice, if they voted and the poll still knows (not after an anonymous
    /// poll closed).
    fn choice_of(&self, voter: &ParticipantId) -> Option<Vec<PollOptionId>> {
        let choice = match &self.ballots {
            Ballots::Named(ballots) => ballots.iter().find(|b| &b.participant == voter).map(|b| &b.choice)?,
            Ballots::Anonymous { key, choices, .. } => choices.get(&tag(key, voter))?,
            Ballots::Sealed => return None,
        };
        Some(choice.iter().map(|&i| self.info.options[i].id.clone()).collect())
    }

    fn close(&mut self, reason: PollCloseReason, now_ms: i64) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some((now_ms, reason));
        if matches!(self.ballots, Ballots::Anonymous { .. }) {
            // The counts are final: nothing needs the ballots any more.
            self.ballots = Ballots::Sealed;
        }
    }

    /// The counts; with `who` (therapists), who chose each option in a named poll.
    fn tally(&self, who: bool) -> PollTally {
        let counts =
            self.info.options.iter().zip(&self.counts).map(|(o, &count)| PollOptionCount { option_id: o.id.clone(), count }).collect();
        let by_option = match (&self.ballots, who) {
            (Ballots::Named(ballots), true) => Some(
                self.info
                    .options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| PollOptionVoters {
                        option_id: o.id.clone(),
                        voters: ballots
                            .iter()
                            .filter(|b| b.choice.contains(&i))
                            .map(|b| PollVoter { participant_id: b.participant.clone(), name: b.name.clone() })
                            .collect(),
                    })
                    .collect(),
            ),
            _ => None,
        };
        PollTally { poll_id: self.info.id.clone(), counts, total_voters: self.total_voters, by_option }
    }

    /// What the store keeps: definition, counts, and (named polls only) choices by id.
    fn record(&self, room: &str) -> PollRecord {
        let choices = match &self.ballots {
            Ballots::Named(ballots) => Some(
                ballots
                    .iter()
                    .map(|b| PollChoiceRecord {
                        participant_id: b.participant.to_string(),
                        option_ids: b.choice.iter().map(|&i| self.info.options[i].id.as_str().to_string()).collect(),
                    })
                    .collect(),
            ),
            Ballots::Anonymous { .. } | Ballots::Sealed => None,
        };
        PollRecord {
            id: self.info.id.to_string(),
            room: room.to_string(),
            created_by: self.created_by.to_string(),
            created_at_ms: self.created_at_ms,
            question: stored_text(&self.info.question),
            options: self
                .info
                .options
                .iter()
                .zip(&self.counts)
                .map(|(o, &votes)| PollOptionRecord { id: o.id.as_str().to_string(), text: stored_text(&o.text), votes })
                .collect(),
            multiple: self.info.multiple,
            anonymous: self.info.anonymous,
            scope: match self.info.scope {
                PollScope::Room => "room".into(),
                PollScope::AllBreakouts => "allBreakouts".into(),
            },
            closes_at_ms: self.info.closes_at.map(|t| t as i64),
            closed_at_ms: self.closed.map(|(at, _)| at),
            close_reason: self.closed.map(|(_, r)| r.as_str().to_string()),
            shared: self.shared,
            total_voters: self.total_voters,
            choices,
        }
    }
}

/// The per-poll HMAC key for anonymous ballots.
fn ballot_key(secret: &[u8; 32], salt: &[u8; 32]) -> hmac::Key {
    let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), salt);
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

fn tag(key: &hmac::Key, voter: &ParticipantId) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(key, voter.as_str().as_bytes()).as_ref());
    out
}

impl Polls {
    /// Routes the poll messages (see the protocol); everything is checked before anything
    /// changes, and a refusal reaches only the sender.
    pub(super) fn on_message(&mut self, cx: &mut Cx, from: &ParticipantId, msg: ClientMessage) {
        // Who may run polls and who votes is the permission table's (checked before this).
        let Some(sender) = cx.members.get(from) else { return };
        let (space, name) = (sender.space.clone(), sender.info.name.clone());
        match msg {
            ClientMessage::CreatePoll { question, options, multiple, anonymous, duration_secs, scope } => {
                let new = match validate_new(question, options, multiple, anonymous, duration_secs, scope) {
                    Ok(new) => new,
                    Err((code, message)) => return cx.error(from, code, message),
                };
                if self.open_count() >= MAX_OPEN_POLLS {
                    return cx.error(from, ErrorCode::InvalidPoll, format!("{MAX_OPEN_POLLS} polls are open; close one first"));
                }
                let audience = match new.scope {
                    PollScope::Room => Audience::Space(space),
                    PollScope::AllBreakouts => Audience::Everyone,
                };
                let duration = new.duration;
                let poll = Poll::new(PollId::random(), new, audience, from.clone(), cx.now.unix_ms, &cx.settings.ballot_secret);
                let id = poll.info.id.clone();
                let info = poll.info.clone();
                let record = poll.record(cx.room.as_str());
                self.insert(poll);
                cx.out.push(Effect::SavePoll(Box::new(record)));
                if let Some(d) = duration {
                    cx.schedule(d, Timer::PollClose(id.clone()));
                }
                cx.audit(from, "create_poll", None);
                debug!(poll = %id, "poll started");
                for p in self.audience(cx, &id) {
                    cx.send(&p, ServerMessage::PollStarted { poll: info.clone() });
                }
                self.send_results(cx, &id);
            }
            ClientMessage::Vote { poll_id, option_ids } => {
                let Some(poll) = self.by_id.get(&poll_id) else {
                    return cx.error(from, ErrorCode::UnknownPoll, "no poll with that id in this room");
                };
                if !poll.audience.includes(&space) {
                    return cx.error(from, ErrorCode::PollOutOfScope, "this poll is for another room of the session");
                }
                let Some(poll) = self.by_id.get_mut(&poll_id) else { return };
                let accepted = match poll.vote(from, &name, &option_ids) {
                    Ok(choice) => choice,
                    Err((code, message)) => return cx.error(from, code, message),
                };
                let record = poll.record(cx.room.as_str());
                cx.out.push(Effect::SavePoll(Box::new(record)));
                cx.send(from, ServerMessage::VoteAccepted { poll_id: poll_id.clone(), option_ids: accepted });
                self.send_results(cx, &poll_id);
            }
            ClientMessage::ClosePoll { poll_id } => {
                match self.by_id.get(&poll_id) {
                    None => return cx.error(from, ErrorCode::UnknownPoll, "no poll with that id in this room"),
                    Some(p) if !p.is_open() => return cx.error(from, ErrorCode::PollClosed, "this poll has already closed"),
                    Some(_) => {}
                }
                cx.audit(from, "close_poll", None);
                self.close_poll(cx, &poll_id, PollCloseReason::Closed);
            }
            ClientMessage::ResealPoll { poll_id, question, options } => {
                // The texts' form and the room's policy were checked with every sealed text
                // (`sealed.rs`): in a `required` room they are sealed and well formed here.
                let Some(poll) = self.by_id.get_mut(&poll_id) else {
                    return cx.error(from, ErrorCode::UnknownPoll, "no poll with that id in this room");
                };
                if !poll.is_open() {
                    return cx.error(from, ErrorCode::PollClosed, "this poll has already closed");
                }
                if !question.is_sealed() || !poll.info.question.is_sealed() {
                    return cx.error(from, ErrorCode::InvalidE2ee, "only a poll sealed end to end is sealed again");
                }
                if options.len() != poll.info.options.len() {
                    let n = poll.info.options.len();
                    return cx.error(from, ErrorCode::InvalidPoll, format!("this poll has {n} options: seal all {n} again, in order"));
                }
                poll.info.question = question;
                for (option, text) in poll.info.options.iter_mut().zip(options) {
                    option.text = text;
                }
                debug!(poll = %poll_id, "poll re-sealed");
                for p in self.audience(cx, &poll_id) {
                    self.catch_up_on(cx, &p, &poll_id);
                }
            }
            ClientMessage::SharePollResults { poll_id } => {
                let Some(poll) = self.by_id.get_mut(&poll_id) else {
                    return cx.error(from, ErrorCode::UnknownPoll, "no poll with that id in this room");
                };
                poll.shared = true;
                let tally = poll.tally(false);
                let record = poll.record(cx.room.as_str());
                cx.out.push(Effect::SavePoll(Box::new(record)));
                cx.audit(from, "share_poll_results", None);
                for p in self.audience(cx, &poll_id) {
                    cx.send(&p, ServerMessage::PollResultsShared(tally.clone()));
                }
            }
            _ => {}
        }
    }

    /// A poll's timer ran out (a no-op when it was closed by hand first).
    pub(super) fn on_timer(&mut self, cx: &mut Cx, id: &PollId) {
        if self.by_id.get(id).is_some_and(Poll::is_open) {
            self.close_poll(cx, id, PollCloseReason::Timer);
        }
    }

    /// The session is over (everyone left): open polls close with the counts they have.
    pub(super) fn close_all(&mut self, cx: &mut Cx) {
        let open: Vec<PollId> = self.order.iter().filter(|id| self.by_id.get(*id).is_some_and(Poll::is_open)).cloned().collect();
        for id in open {
            self.close_poll(cx, &id, PollCloseReason::SessionEnded);
        }
    }

    /// Breakouts `spaces` are ending: their polls close now (their members, still inside, hear
    /// it), so a reopened breakout with the same id does not bring them back.
    pub(super) fn close_spaces(&mut self, cx: &mut Cx, spaces: &[String]) {
        let ending: Vec<PollId> = self
            .order
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .filter(|p| p.is_open() && matches!(&p.audience, Audience::Space(Some(s)) if spaces.contains(s)))
            .map(|p| p.info.id.clone())
            .collect();
        for id in ending {
            self.close_poll(cx, &id, PollCloseReason::Closed);
        }
    }

    /// Catches a member up on the open polls meant for them: on admission (a reconnect included)
    /// or on moving to another space. Therapists also get the live counts; a participant who
    /// already voted gets their choice back.
    pub(super) fn catch_up(&self, cx: &mut Cx, id: &ParticipantId) {
        for poll in &self.order {
            self.catch_up_on(cx, id, poll);
        }
    }

    /// [`Polls::catch_up`] on one poll, if it is open and meant for `id`.
    fn catch_up_on(&self, cx: &mut Cx, id: &ParticipantId, poll: &PollId) {
        // Family guests see no poll: the group's questions are the group's.
        let Some(member) = cx.members.get(id).filter(|m| m.admitted && m.info.role != Role::FamilyGuest) else { return };
        let therapist = member.is_therapist();
        let Some(poll) = self.by_id.get(poll).filter(|p| p.is_open() && (therapist || p.audience.includes(&member.space))) else {
            return;
        };
        let mut messages = vec![ServerMessage::PollStarted { poll: poll.info.clone() }];
        if therapist {
            messages.push(ServerMessage::PollResults(Self::full_tally(cx, poll)));
        } else {
            if let Some(option_ids) = poll.choice_of(id) {
                messages.push(ServerMessage::VoteAccepted { poll_id: poll.info.id.clone(), option_ids });
            }
            if poll.shared {
                messages.push(ServerMessage::PollResultsShared(poll.tally(false)));
            }
        }
        for m in messages {
            cx.send(id, m);
        }
    }

    fn close_poll(&mut self, cx: &mut Cx, id: &PollId, reason: PollCloseReason) {
        let Some(poll) = self.by_id.get_mut(id) else { return };
        poll.close(reason, cx.now.unix_ms);
        let Some(poll) = self.by_id.get(id) else { return };
        let full = Self::full_tally(cx, poll);
        let shared = poll.shared.then(|| poll.tally(false));
        let record = poll.record(cx.room.as_str());
        cx.out.push(Effect::SavePoll(Box::new(record)));
        debug!(poll = %id, reason = reason.as_str(), "poll closed");
        let therapists = cx.therapists();
        for p in self.audience(cx, id) {
            let results = if therapists.contains(&p) { Some(full.clone()) } else { shared.clone() };
            cx.send(&p, ServerMessage::PollClosed { poll_id: id.clone(), reason, results });
        }
    }

    /// The therapists' tally: for named polls, each voter's name as the room knows them now
    /// (a poll restored from another node has ids only until they are back).
    fn full_tally(cx: &Cx, poll: &Poll) -> PollTally {
        let mut tally = poll.tally(true);
        for voter in tally.by_option.iter_mut().flatten().flat_map(|o| o.voters.iter_mut()) {
            if let Some(m) = cx.members.get(&voter.participant_id) {
                voter.name.clone_from(&m.info.name);
            }
        }
        tally
    }

    /// Therapists: the live counts (with who chose what, for named polls).
    fn send_results(&self, cx: &mut Cx, id: &PollId) {
        let Some(poll) = self.by_id.get(id) else { return };
        let tally = Self::full_tally(cx, poll);
        for t in cx.therapists() {
            cx.send(&t, ServerMessage::PollResults(tally.clone()));
        }
    }

    /// Everyone a poll's messages go to: admitted members of its audience, and every therapist.
    fn audience(&self, cx: &Cx, id: &PollId) -> Vec<ParticipantId> {
        let Some(poll) = self.by_id.get(id) else { return Vec::new() };
        cx.order
            .iter()
            .filter_map(|p| cx.members.get(p))
            .filter(|m| m.admitted && m.info.role != Role::FamilyGuest && (m.is_therapist() || poll.audience.includes(&m.space)))
            .map(|m| m.info.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(n: usize) -> Vec<Text> {
        (0..n).map(|i| format!("Option {i}").into()).collect()
    }

    fn poll(multiple: bool, anonymous: bool) -> Poll {
        let new = validate_new("How are you?".into(), opts(3), multiple, anonymous, None, None).unwrap();
        Poll::new(PollId::random(), new, Audience::Space(None), ParticipantId::from_trusted("t"), 0, &[7; 32])
    }

    fn ids(s: &[&str]) -> Vec<PollOptionId> {
        s.iter().map(|s| PollOptionId::from_raw(*s)).collect()
    }

    fn counts(p: &Poll) -> Vec<u32> {
        p.tally(false).counts.iter().map(|c| c.count).collect()
    }

    #[test]
    fn creation_is_validated() {
        let code = |q: &str, o: Vec<Text>, d: Option<u32>| validate_new(q.into(), o, false, false, d, None).unwrap_err().0;
        assert_eq!(code("", opts(2), None), ErrorCode::InvalidPoll);
        assert_eq!(code(&"q".repeat(301), opts(2), None), ErrorCode::InvalidPoll);
        assert_eq!(code("q", opts(1), None), ErrorCode::InvalidPoll);
        assert_eq!(code("q", opts(11), None), ErrorCode::InvalidPoll);
        assert_eq!(code("q", vec!["a".into(), " ".into()], None), ErrorCode::InvalidPoll);
        assert_eq!(code("q", vec!["a".into(), "x".repeat(101).into()], None), ErrorCode::InvalidPoll);
        assert_eq!(code("q", vec!["Yes".into(), "yes ".into()], None), ErrorCode::InvalidPoll);
        assert_eq!(code("q", opts(2), Some(0)), ErrorCode::InvalidPoll);
        assert_eq!(code("q", opts(2), Some(MAX_DURATION_SECS + 1)), ErrorCode::InvalidPoll);
        let ok =
            validate_new(format!(" {} ", "é".repeat(300)).into(), opts(10), true, true, Some(60), Some(PollScope::AllBreakouts)).unwrap();
        let question = ok.question.plain().unwrap_or_default();
        assert_eq!((question.chars().count(), ok.options.len(), ok.duration), (300, 10, Some(Duration::from_secs(60))));
    }

    #[test]
    fn a_second_vote_replaces_the_first() {
        for anonymous in [false, true] {
            let mut p = poll(false, anonymous);
            let a = ParticipantId::from_trusted("a");
            let b = ParticipantId::from_trusted("b");
            p.vote(&a, "A", &ids(&["o1"])).unwrap();
            p.vote(&b, "B", &ids(&["o1"])).unwrap();
            p.vote(&a, "A", &ids(&["o3"])).unwrap();
            assert_eq!(counts(&p), [1, 0, 1]);
            assert_eq!(p.total_voters, 2);
            assert_eq!(p.choice_of(&a), Some(ids(&["o3"])));
        }
    }

    #[test]
    fn refused_votes_change_nothing() {
        let mut p = poll(false, false);
        let a = ParticipantId::from_trusted("a");
        p.vote(&a, "A", &ids(&["o2"])).unwrap();
        let code = |p: &mut Poll, o: &[&str]| p.vote(&a, "A", &ids(o)).unwrap_err().0;
        assert_eq!(code(&mut p, &["o9"]), ErrorCode::UnknownOption);
        assert_eq!(code(&mut p, &[]), ErrorCode::InvalidVote);
        assert_eq!(code(&mut p, &["o1", "o3"]), ErrorCode::InvalidVote);
        assert_eq!(counts(&p), [0, 1, 0]);
        let mut m = poll(true, false);
        assert_eq!(code(&mut m, &["o1", "o1"]), ErrorCode::InvalidVote);
        m.vote(&a, "A", &ids(&["o3", "o1"])).unwrap();
        assert_eq!((counts(&m), m.total_voters), (vec![1, 0, 1], 1));
        p.close(PollCloseReason::Closed, 1);
        assert_eq!(code(&mut p, &["o1"]), ErrorCode::PollClosed);
        assert_eq!(counts(&p), [0, 1, 0]);
    }

    #[test]
    fn anonymous_polls_keep_no_ids() {
        let mut p = poll(true, true);
        let a = ParticipantId::from_trusted("p-secret-a");
        p.vote(&a, "Ana", &ids(&["o1", "o2"])).unwrap();
        let shown = format!("{:?}{:?}", p.tally(true), p.record("g"));
        assert!(!shown.contains("p-secret-a") && !shown.contains("Ana"), "{shown}");
        assert!(p.tally(true).by_option.is_none() && p.record("g").choices.is_none());
        p.close(PollCloseReason::Timer, 5);
        assert!(matches!(p.ballots, Ballots::Sealed));
        assert_eq!(p.choice_of(&a), None);
        assert_eq!((counts(&p), p.total_voters), (vec![1, 1, 0], 1));
    }

    #[test]
    fn named_polls_say_who_chose_what() {
        let mut p = poll(false, false);
        p.vote(&ParticipantId::from_trusted("a"), "Ana", &ids(&["o2"])).unwrap();
        let by = p.tally(true).by_option.unwrap();
        assert_eq!(by[1].voters, [PollVoter { participant_id: ParticipantId::from_trusted("a"), name: "Ana".into() }]);
        assert!(p.tally(false).by_option.is_none());
        let rec = p.record("g");
        assert_eq!(rec.choices.unwrap()[0].option_ids, ["o2"]);
    }
}
