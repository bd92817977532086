//! The embedded store: SQLite (WAL) for the few records that must survive a restart — the
//! audit log of moderator actions, polls, milestones, therapists' agenda templates, and session
//! records (sessions, attendance, check-in values, support requests: [`records`]). It holds ids,
//! never display names or message contents. Old records are purged after `store.retention_days`. Queries run on the blocking pool, so async tasks never wait on
//! disk while holding anything.
//!
//! The texts therapists typed that the store must give back (a poll's question and options for
//! the session summary, a custom milestone's label for the history) are sealed at rest with
//! AES-256-GCM under a key derived from `auth.token_secret` ([`Store::with_text_key`]), bound
//! to their row's id: the database file (and its WAL) alone shows none of them. Rows written
//! before sealing read back as they are; a text sealed under another secret reads back as
//! [`UNREADABLE`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::signal::protocol::{AgendaItem, AgendaTemplate, CelebrationId, CelebrationPreferences, Milestone, MilestoneEntry};
use crate::vocab::ParticipantId;

pub mod records;
pub use records::{
    attendance_csv, AttendanceRecord, CheckInCountsRecord, CheckInValueRecord, IntervalRecord, Purged, Record, Recorder, SessionRecord,
    SupportRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("store task failed: {0}")]
    Task(String),
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        room TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT
    );
    CREATE INDEX audit_room ON audit(room, at_ms);",
    // Polls. Votes of anonymous polls exist only as the counts in `poll_options`;
    // `poll_choices` holds who chose what for named polls only (see docs/polls.md).
    "CREATE TABLE polls (
        id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        question TEXT NOT NULL,
        multiple INTEGER NOT NULL,
        anonymous INTEGER NOT NULL,
        scope TEXT NOT NULL,
        closes_at_ms INTEGER,
        closed_at_ms INTEGER,
        close_reason TEXT,
        shared INTEGER NOT NULL DEFAULT 0,
        total_voters INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX polls_room ON polls(room, created_at_ms);
    CREATE TABLE poll_options (
        poll_id TEXT NOT NULL REFERENCES polls(id),
        position INTEGER NOT NULL,
        option_id TEXT NOT NULL,
        text TEXT NOT NULL,
        votes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (poll_id, option_id)
    );
    CREATE TABLE poll_choices (
        poll_id TEXT NOT NULL REFERENCES polls(id),
        participant TEXT NOT NULL,
        option_id TEXT NOT NULL,
        PRIMARY KEY (poll_id, participant, option_id)
    );",
    // Milestones: preferences per participant id, and each celebrated milestone. Ids
    // and milestone data only: no display names, no celebration or congratulation messages.
    "CREATE TABLE celebration_prefs (
        participant TEXT PRIMARY KEY,
        style TEXT NOT NULL,
        audience TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE milestones (
        id TEXT PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        room TEXT NOT NULL,
        participant TEXT NOT NULL,
        kind TEXT NOT NULL,
        value INTEGER,
        label TEXT
    );
    CREATE INDEX milestones_participant ON milestones(participant, at_ms);
    CREATE INDEX milestones_room ON milestones(room, at_ms);",
    // Agenda templates per therapist (participant id); the items (titles and minutes) sealed.
    "CREATE TABLE agenda_templates (
        therapist TEXT NOT NULL,
        name TEXT NOT NULL,
        items TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (therapist, name)
    );",
    records::MIGRATION,
    // Accountability partner groups per room (participant ids, sealed, bound to the room).
    "CREATE TABLE partner_groups (
        room TEXT PRIMARY KEY,
        groups TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );",
    // Seconds of speech per person and session, when `rooms.talk_time_in_attendance` is on.
    "ALTER TABLE attendance ADD COLUMN talk_seconds INTEGER;",
    // The role the actor held (a co-facilitator's admit reads differently from a therapist's);
    // rows written before it have none.
    "ALTER TABLE audit ADD COLUMN actor_role TEXT;",
];

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Seals texts at rest (see the module comment); `None` stores them plain.
    texts: Option<Arc<TextKey>>,
}

/// Prefix of a sealed text in the database: `sealed1:` then hex(nonce ‖ ciphertext ‖ tag).
const SEALED_PREFIX: &str = "sealed1:";
/// What a sealed text reads back as when it cannot be opened (sealed under another secret).
pub const UNREADABLE: &str = "(unreadable: stored under another auth.token_secret)";

/// The key texts are sealed with.
pub struct TextKey(ring::aead::LessSafeKey);

impl TextKey {
    /// The store's key, derived from the token secret (which every node holds already).
    pub fn derive(token_secret: &str) -> Self {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
        let bytes = ring::hmac::sign(&key, b"hearth store texts v1");
        // An HMAC-SHA256 tag is exactly an AES-256 key long, so this cannot fail.
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, bytes.as_ref()).unwrap_or_else(|_| unreachable!());
        Self(ring::aead::LessSafeKey::new(unbound))
    }

    /// `text` sealed for the row `context` (a poll or celebration id).
    fn seal(&self, context: &str, text: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let mut data = text.as_bytes().to_vec();
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce_bytes);
        if self.0.seal_in_place_append_tag(nonce, ring::aead::Aad::from(context.as_bytes()), &mut data).is_err() {
            // Only for inputs of gigabytes; never store the text plain instead.
            return UNREADABLE.to_string();
        }
        let mut out = String::with_capacity(SEALED_PREFIX.len() + 2 * (12 + data.len()));
        out.push_str(SEALED_PREFIX);
        for b in nonce_bytes.iter().chain(&data) {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The text sealed for `context`, or [`UNREADABLE`].
    fn open(&self, context: &str, stored: &str) -> String {
        let Some(hex) = stored.strip_prefix(SEALED_PREFIX) else { return stored.to_string() };
        let bytes: Option<Vec<u8>> =
            (0..hex.len() / 2).map(|i| hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
        let Some(mut bytes) = bytes.filter(|b| b.len() >= 12 + 16 && hex.len() % 2 == 0) else { return UNREADABLE.to_string() };
        let mut data = bytes.split_off(12);
        let Ok(nonce) = ring::aead::Nonce::try_assume_unique_for_key(&bytes) else { return UNREADABLE.to_string() };
        match self.0.open_in_place(nonce, ring::aead::Aad::from(context.as_bytes()), &mut data) {
            Ok(plain) => String::from_utf8(plain.to_vec()).unwrap_or_else(|_| UNREADABLE.to_string()),
            Err(_) => UNREADABLE.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub at_ms: i64,
    pub room: String,
    pub actor: String,
    /// The actor's role (`therapist`, `coFacilitator`, ...); absent in rows written before
    /// roles were recorded.
    pub actor_role: Option<String>,
    pub action: String,
    pub target: Option<String>,
}

/// A template's row key: a digest of the therapist and the name (the name is in the sealed
/// row; this only keeps one row per name).
fn agenda_key(therapist: &str, name: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{therapist}\n{name}").as_bytes());
    digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A poll as the store keeps it: its definition and its counts (final once `closed_at_ms` is
/// set). Served as-is by the session summary endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRecord {
    pub id: String,
    pub room: String,
    /// The therapist who launched it.
    pub created_by: String,
    pub created_at_ms: i64,
    pub question: String,
    pub options: Vec<PollOptionRecord>,
    pub multiple: bool,
    pub anonymous: bool,
    /// `room` or `allBreakouts`.
    pub scope: String,
    pub closes_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    /// `closed`, `timer`, `sessionEnded` or `interrupted`; `null` while open.
    pub close_reason: Option<String>,
    /// Whether a therapist shared the counts with the room.
    pub shared: bool,
    pub total_voters: u32,
    /// Named polls only: each voter's choice, by participant id (never names). Always `None` for
    /// anonymous polls, and never written for them whatever the caller passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<PollChoiceRecord>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollOptionRecord {
    pub id: String,
    pub text: String,
    pub votes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollChoiceRecord {
    pub participant_id: String,
    pub option_ids: Vec<String>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        migrate(&conn).map_err(open_err)?;
        close_interrupted_polls(&conn).map_err(open_err)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), texts: None })
    }

    /// From now on poll texts and milestone labels are sealed at rest with `key`.
    pub fn with_text_key(mut self, key: TextKey) -> Self {
        self.texts = Some(Arc::new(key));
        self
    }

    fn seal(&self, context: &str, text: &str) -> String {
        match &self.texts {
            Some(k) => k.seal(context, text),
            None => text.to_string(),
        }
    }

    fn unseal(texts: &Option<Arc<TextKey>>, context: &str, stored: String) -> String {
        match texts {
            Some(k) if stored.starts_with(SEALED_PREFIX) => k.open(context, &stored),
            None if stored.starts_with(SEALED_PREFIX) => UNREADABLE.to_string(),
            _ => stored,
        }
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Task("store lock poisoned".into()))?;
            f(&mut guard).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub async fn audit(
        &self,
        room: &str,
        actor: &str,
        actor_role: Option<&str>,
        action: &str,
        target: Option<&str>,
    ) -> Result<(), StoreError> {
        let (room, actor, action, target) = (room.to_string(), actor.to_string(), action.to_string(), target.map(str::to_string));
        let actor_role = actor_role.map(str::to_string);
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit (at_ms, room, actor, actor_role, action, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![now_ms(), room, actor, actor_role, action, target],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn audit_log(&self, room: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let room = room.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare("SELECT at_ms, room, actor, action, target, actor_role FROM audit WHERE room = ?1 ORDER BY id")?;
            let rows = stmt.query_map(params![room], |r| {
                Ok(AuditRecord {
                    at_ms: r.get(0)?,
                    room: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    actor_role: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Writes a poll's definition and current counts (insert or update), in one transaction.
    /// For anonymous polls `choices` is ignored: only counts reach the disk.
    pub async fn save_poll(&self, mut poll: PollRecord) -> Result<(), StoreError> {
        poll.question = self.seal(&poll.id, &poll.question);
        for o in &mut poll.options {
            o.text = self.seal(&format!("{}/{}", poll.id, o.id), &o.text);
        }
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO polls (id, room, created_by, created_at_ms, question, multiple, anonymous, scope,
                                    closes_at_ms, closed_at_ms, close_reason, shared, total_voters)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT(id) DO UPDATE SET closed_at_ms = excluded.closed_at_ms,
                     close_reason = excluded.close_reason, shared = excluded.shared,
                     total_voters = excluded.total_voters",
                params![
                    poll.id,
                    poll.room,
                    poll.created_by,
                    poll.created_at_ms,
                    poll.question,
                    poll.multiple,
                    poll.anonymous,
                    poll.scope,
                    poll.closes_at_ms,
                    poll.closed_at_ms,
                    poll.close_reason,
                    poll.shared,
                    poll.total_voters
                ],
            )?;
            for (position, o) in poll.options.iter().enumerate() {
                tx.execute(
                    "INSERT INTO poll_options (poll_id, position, option_id, text, votes) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(poll_id, option_id) DO UPDATE SET votes = excluded.votes",
                    params![poll.id, position as i64, o.id, o.text, o.votes],
                )?;
            }
            if !poll.anonymous {
                tx.execute("DELETE FROM poll_choices WHERE poll_id = ?1", params![poll.id])?;
                for choice in poll.choices.iter().flatten() {
                    for option in &choice.option_ids {
                        tx.execute(
                            "INSERT OR IGNORE INTO poll_choices (poll_id, participant, option_id) VALUES (?1, ?2, ?3)",
                            params![poll.id, choice.participant_id, option],
                        )?;
                    }
                }
            }
            tx.commit()
        })
        .await
    }

    /// Every poll of a room, oldest first, with its counts (and, for named polls, choices).
    pub async fn polls(&self, room: &str) -> Result<Vec<PollRecord>, StoreError> {
        let room = room.to_string();
        let texts = self.texts.clone();
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, room, created_by, created_at_ms, question, multiple, anonymous, scope, closes_at_ms,
                        closed_at_ms, close_reason, shared, total_voters
                 FROM polls WHERE room = ?1 ORDER BY created_at_ms, rowid",
            )?;
            let mut polls = stmt
                .query_map(params![room], |r| {
                    Ok(PollRecord {
                        id: r.get(0)?,
                        room: r.get(1)?,
                        created_by: r.get(2)?,
                        created_at_ms: r.get(3)?,
                        question: r.get(4)?,
                        options: Vec::new(),
                        multiple: r.get(5)?,
                        anonymous: r.get(6)?,
                        scope: r.get(7)?,
                        closes_at_ms: r.get(8)?,
                        closed_at_ms: r.get(9)?,
                        close_reason: r.get(10)?,
                        shared: r.get(11)?,
                        total_voters: r.get(12)?,
                        choices: None,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut options = c.prepare("SELECT option_id, text, votes FROM poll_options WHERE poll_id = ?1 ORDER BY position")?;
            let mut choices = c.prepare("SELECT participant, option_id FROM poll_choices WHERE poll_id = ?1 ORDER BY rowid")?;
            for poll in &mut polls {
                poll.question = Self::unseal(&texts, &poll.id, std::mem::take(&mut poll.question));
                poll.options = options
                    .query_map(params![poll.id], |r| Ok(PollOptionRecord { id: r.get(0)?, text: r.get(1)?, votes: r.get(2)? }))?
                    .collect::<Result<Vec<_>, _>>()?;
                for o in &mut poll.options {
                    o.text = Self::unseal(&texts, &format!("{}/{}", poll.id, o.id), std::mem::take(&mut o.text));
                }
                if poll.anonymous {
                    continue;
                }
                let mut by_voter: Vec<PollChoiceRecord> = Vec::new();
                for row in choices.query_map(params![poll.id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                    let (participant_id, option) = row?;
                    match by_voter.iter_mut().find(|c| c.participant_id == participant_id) {
                        Some(c) => c.option_ids.push(option),
                        None => by_voter.push(PollChoiceRecord { participant_id, option_ids: vec![option] }),
                    }
                }
                poll.choices = Some(by_voter);
            }
            Ok(polls)
        })
        .await
    }
}

/// A poll still open in the store when the server starts was cut off by a stop or a crash: no
/// room holds it any more. It keeps the counts last written and is marked `interrupted`.
fn close_interrupted_polls(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute("UPDATE polls SET closed_at_ms = ?1, close_reason = 'interrupted' WHERE closed_at_ms IS NULL", params![now_ms()])
        .map(|_| ())
}

// ---- milestones ----

/// Whose milestones a history query returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilestoneQuery {
    /// One participant's: in one room (a therapist looking at their group) or in every room (the
    /// participant's own timeline).
    Participant { participant: String, room: Option<String> },
    /// Everyone's in one room (a therapist's view of their group).
    Room(String),
}

/// Most entries one history query returns (the most recent ones).
pub const MILESTONE_HISTORY_LIMIT: usize = 500;

impl Store {
    /// A participant's stored celebration preferences; `None` if they never chose.
    pub async fn celebration_prefs(&self, participant: &str) -> Result<Option<CelebrationPreferences>, StoreError> {
        let participant = participant.to_string();
        self.with(move |c| {
            c.query_row("SELECT style, audience FROM celebration_prefs WHERE participant = ?1", params![participant], |r| {
                Ok(CelebrationPreferences { style: untag(r.get(0)?, 0)?, audience: untag(r.get(1)?, 1)? })
            })
            .optional()
        })
        .await
    }

    pub async fn set_celebration_prefs(&self, participant: &str, prefs: CelebrationPreferences) -> Result<(), StoreError> {
        let participant = participant.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO celebration_prefs (participant, style, audience, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(participant) DO UPDATE SET style = excluded.style, audience = excluded.audience,
                     updated_ms = excluded.updated_ms",
                params![participant, tag(&prefs.style), tag(&prefs.audience), now_ms()],
            )
            .map(|_| ())
        })
        .await
    }

    /// Keeps `items` as `therapist`'s agenda template `name` (replacing one of that name). The
    /// name and the items are sealed together, bound to the therapist.
    pub async fn save_agenda_template(&self, therapist: &str, name: &str, items: &[AgendaItem]) -> Result<(), StoreError> {
        let json = serde_json::to_string(&AgendaTemplate { name: name.to_string(), items: items.to_vec() })
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let sealed = self.seal(therapist, &json);
        // The key is a digest of the name, so the name itself is not on disk in the clear.
        let key = agenda_key(therapist, name);
        let therapist = therapist.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO agenda_templates (therapist, name, items, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(therapist, name) DO UPDATE SET items = excluded.items, updated_ms = excluded.updated_ms",
                params![therapist, key, sealed, now_ms()],
            )
            .map(|_| ())
        })
        .await
    }

    /// `therapist`'s agenda templates, by name. Rows that cannot be read are left out.
    pub async fn agenda_templates(&self, therapist: &str) -> Result<Vec<AgendaTemplate>, StoreError> {
        let texts = self.texts.clone();
        let therapist = therapist.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare("SELECT items FROM agenda_templates WHERE therapist = ?1")?;
            let rows = stmt.query_map(params![therapist], |r| r.get::<_, String>(0))?;
            let mut out: Vec<AgendaTemplate> = rows
                .filter_map(Result::ok)
                .filter_map(|stored| serde_json::from_str(&Self::unseal(&texts, &therapist, stored)).ok())
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    /// Keeps `groups` as `room`'s accountability partner groups (replacing the last); `[]`
    /// forgets them. Sealed, bound to the room: the file alone shows nobody's pairing.
    pub async fn save_partners(&self, room: &str, groups: &[Vec<ParticipantId>]) -> Result<(), StoreError> {
        let room = room.to_string();
        if groups.is_empty() {
            return self.with(move |c| c.execute("DELETE FROM partner_groups WHERE room = ?1", params![room]).map(|_| ())).await;
        }
        let json = serde_json::to_string(groups).map_err(|e| StoreError::Task(e.to_string()))?;
        let sealed = self.seal(&format!("partners:{room}"), &json);
        self.with(move |c| {
            c.execute(
                "INSERT INTO partner_groups (room, groups, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(room) DO UPDATE SET groups = excluded.groups, updated_ms = excluded.updated_ms",
                params![room, sealed, now_ms()],
            )
            .map(|_| ())
        })
        .await
    }

    /// `room`'s saved partner groups (`[]`: none, or unreadable).
    pub async fn partners(&self, room: &str) -> Result<Vec<Vec<ParticipantId>>, StoreError> {
        let texts = self.texts.clone();
        let room = room.to_string();
        self.with(move |c| {
            let stored: Option<String> =
                c.query_row("SELECT groups FROM partner_groups WHERE room = ?1", params![room], |r| r.get(0)).optional()?;
            Ok(stored.and_then(|s| serde_json::from_str(&Self::unseal(&texts, &format!("partners:{room}"), s)).ok()).unwrap_or_default())
        })
        .await
    }

    /// Records a celebrated milestone of `room` (the celebration's message is not kept).
    pub async fn record_milestone(&self, room: &str, entry: &MilestoneEntry) -> Result<(), StoreError> {
        let room = room.to_string();
        let mut e = entry.clone();
        e.milestone.label = e.milestone.label.map(|l| self.seal(e.celebration_id.as_str(), &l));
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO milestones (id, at_ms, room, participant, kind, value, label)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.celebration_id.as_str(),
                    e.at_ms,
                    room,
                    e.participant_id.as_str(),
                    tag(&e.milestone.kind),
                    e.milestone.value,
                    e.milestone.label
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Milestones, oldest first (at most the [`MILESTONE_HISTORY_LIMIT`] most recent).
    pub async fn milestone_history(&self, query: MilestoneQuery) -> Result<Vec<MilestoneEntry>, StoreError> {
        let texts = self.texts.clone();
        self.with(move |c| {
            let (filter, args) = match query {
                MilestoneQuery::Participant { participant, room: Some(room) } => {
                    ("participant = ?1 AND room = ?2", vec![participant, room])
                }
                MilestoneQuery::Participant { participant, room: None } => ("participant = ?1", vec![participant]),
                MilestoneQuery::Room(room) => ("room = ?1", vec![room]),
            };
            let sql = format!(
                "SELECT id, participant, kind, value, label, at_ms FROM (
                     SELECT rowid AS seq, * FROM milestones WHERE {filter} ORDER BY at_ms DESC, seq DESC LIMIT {MILESTONE_HISTORY_LIMIT}
                 ) ORDER BY at_ms, seq"
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                let id: String = r.get(0)?;
                let label = r.get::<_, Option<String>>(4)?.map(|l| Self::unseal(&texts, &id, l));
                Ok(MilestoneEntry {
                    celebration_id: CelebrationId::from_raw(id),
                    participant_id: ParticipantId::from_trusted(r.get::<_, String>(1)?),
                    milestone: Milestone { kind: untag(r.get(2)?, 2)?, value: r.get(3)?, label },
                    at_ms: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

/// A unit enum's wire name (`"daysSober"`), as stored.
fn tag<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Reads back what [`tag`] stored in column `col`.
fn untag<T: serde::de::DeserializeOwned>(text: String, col: usize) -> Result<T, rusqlite::Error> {
    serde_json::from_value(serde_json::Value::String(text))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e)))
}

fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).optional()?.unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        conn.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1))?;
    }
    Ok(())
}

/// A database path of a unit test's own in the temp folder; the file and SQLite's `-wal` and
/// `-shm` beside it are removed when the test ends, even when it fails.
#[cfg(test)]
pub(crate) struct TestDb(std::path::PathBuf);

#[cfg(test)]
impl TestDb {
    pub(crate) fn new(tag: &str) -> Self {
        let name = format!("hearth-{tag}-{}-{:08x}.db", std::process::id(), rand::random::<u32>());
        TestDb(std::env::temp_dir().join(name))
    }
}

#[cfg(test)]
impl std::ops::Deref for TestDb {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl AsRef<std::path::Path> for TestDb {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database every migration but the last ran on (the release before) opens and migrates
    /// on: its audit rows keep no role, new ones carry it, and partner groups still save.
    #[tokio::test]
    async fn a_database_from_the_release_before_migrates_on() {
        let path = TestDb::new("store-upgrade");
        {
            let conn = Connection::open(&path).unwrap();
            for (i, sql) in MIGRATIONS[..MIGRATIONS.len() - 1].iter().enumerate() {
                conn.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1)).unwrap();
            }
            conn.execute("INSERT INTO audit (at_ms, room, actor, action, target) VALUES (1, 'g1', 't-1', 'mute', 'p-2')", []).unwrap();
        }
        let s = Store::open(&path).unwrap();
        s.audit("g1", "c-1", Some("coFacilitator"), "admit", Some("p-3")).await.unwrap();
        let log = s.audit_log("g1").await.unwrap();
        let roles: Vec<_> = log.iter().map(|r| (r.actor.as_str(), r.actor_role.as_deref())).collect();
        assert_eq!(roles, vec![("t-1", None), ("c-1", Some("coFacilitator"))]);
        let groups = vec![vec![ParticipantId::from_trusted("p-a"), ParticipantId::from_trusted("p-b")]];
        s.save_partners("g1", &groups).await.unwrap();
        assert_eq!(s.partners("g1").await.unwrap().len(), 1);
        drop(s);
    }

    #[tokio::test]
    async fn audit_survives_reopen() {
        let path = TestDb::new("store-unit");
        {
            let s = Store::open(&path).unwrap();
            s.audit("g1", "t-1", Some("coFacilitator"), "mute", Some("p-2")).await.unwrap();
        }
        let s = Store::open(&path).unwrap();
        let log = s.audit_log("g1").await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].actor.as_str(), log[0].action.as_str(), log[0].target.as_deref()), ("t-1", "mute", Some("p-2")));
        assert_eq!(log[0].actor_role.as_deref(), Some("coFacilitator"));
    }

    #[tokio::test]
    async fn agenda_templates_are_per_therapist_replaced_by_name_and_sealed() {
        let path = TestDb::new("store-agenda");
        let s = Store::open(&path).unwrap().with_text_key(TextKey::derive("a-test-secret-that-is-long-enough-1234"));
        let item = |t: &str, m| AgendaItem { title: t.into(), minutes: m };
        s.save_agenda_template("t-1", "Tuesday IOP", &[item("Kumquat check-in", 10)]).await.unwrap();
        s.save_agenda_template("t-1", "Tuesday IOP", &[item("Kumquat check-in", 15), item("Skills", 30)]).await.unwrap();
        s.save_agenda_template("t-2", "Other", &[item("Mine", 5)]).await.unwrap();
        let mine = s.agenda_templates("t-1").await.unwrap();
        assert_eq!(
            mine,
            vec![AgendaTemplate { name: "Tuesday IOP".into(), items: vec![item("Kumquat check-in", 15), item("Skills", 30)] }]
        );
        assert_eq!(s.agenda_templates("t-3").await.unwrap(), vec![]);
        drop(s);
        let mut disk = Vec::new();
        for suffix in ["", "-wal"] {
            disk.extend(std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default());
        }
        let disk = String::from_utf8_lossy(&disk);
        assert!(!disk.contains("Kumquat") && !disk.contains("Tuesday IOP"), "agenda texts on disk in the clear");
    }

    #[tokio::test]
    async fn partner_groups_are_per_room_sealed_and_forgotten_on_an_empty_save() {
        let path = TestDb::new("store-partners");
        let s = Store::open(&path).unwrap().with_text_key(TextKey::derive("a-test-secret-that-is-long-enough-1234"));
        let id = |v: &str| ParticipantId::from_trusted(v);
        let groups = vec![vec![id("p-wombat"), id("p-quokka")]];
        s.save_partners("g1", &groups).await.unwrap();
        assert_eq!(s.partners("g1").await.unwrap(), groups);
        assert!(s.partners("g2").await.unwrap().is_empty());
        let mut disk = Vec::new();
        for suffix in ["", "-wal"] {
            disk.extend(std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default());
        }
        assert!(!String::from_utf8_lossy(&disk).contains("wombat"), "a pairing on disk in the clear");
        s.save_partners("g1", &[]).await.unwrap();
        assert!(s.partners("g1").await.unwrap().is_empty());
    }

    #[test]
    fn sealed_texts_open_only_with_their_key_and_row() {
        let k = TextKey::derive("a-test-secret-that-is-long-enough-1234");
        let sealed = k.seal("poll-1", "How heliotrope is your week?");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("heliotrope"));
        assert_ne!(sealed, k.seal("poll-1", "How heliotrope is your week?"), "a fresh nonce every time");
        assert_eq!(k.open("poll-1", &sealed), "How heliotrope is your week?");
        assert_eq!(k.open("poll-2", &sealed), UNREADABLE, "bound to its row");
        assert_eq!(TextKey::derive("another-secret-entirely-different-5678").open("poll-1", &sealed), UNREADABLE);
        assert_eq!(k.open("poll-1", "sealed1:zz"), UNREADABLE);
        assert_eq!(k.open("poll-1", "written before sealing"), "written before sealing");
    }

    #[tokio::test]
    async fn poll_texts_and_labels_are_not_in_the_file_but_come_back() {
        let path = TestDb::new("store-sealed");
        let s = Store::open(&path).unwrap().with_text_key(TextKey::derive("a-test-secret-that-is-long-enough-1234"));
        let poll = PollRecord {
            id: "poll-1".into(),
            room: "g".into(),
            created_by: "t".into(),
            created_at_ms: 1,
            question: "Quokka question?".into(),
            options: vec![PollOptionRecord { id: "o1".into(), text: "Marigold".into(), votes: 1 }],
            multiple: false,
            anonymous: true,
            scope: "room".into(),
            closes_at_ms: None,
            closed_at_ms: None,
            close_reason: None,
            shared: false,
            total_voters: 1,
            choices: None,
        };
        s.save_poll(poll.clone()).await.unwrap();
        let entry = MilestoneEntry {
            celebration_id: CelebrationId::from_raw("c-1"),
            participant_id: ParticipantId::from_trusted("p"),
            milestone: Milestone { kind: crate::signal::protocol::MilestoneKind::Custom, value: None, label: Some("Tamarind".into()) },
            at_ms: 1,
        };
        s.record_milestone("g", &entry).await.unwrap();
        assert_eq!(s.polls("g").await.unwrap(), vec![poll]);
        let history = s.milestone_history(MilestoneQuery::Room("g".into())).await.unwrap();
        assert_eq!(history[0].milestone.label.as_deref(), Some("Tamarind"));
        let mut disk = Vec::new();
        for suffix in ["", "-wal"] {
            disk.extend(std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default());
        }
        for text in ["Quokka", "Marigold", "Tamarind"] {
            assert!(!disk.windows(text.len()).any(|w| w == text.as_bytes()), "{text} is in the file");
        }
    }
}
