//! The embedded store: SQLite (WAL) for the few records that must survive a restart — the
//! audit log of moderator actions now; polls and milestones later. It holds ids, never display
//! names or message contents. Queries run on the blocking pool, so async tasks never wait on
//! disk while holding anything.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

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
];

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub at_ms: i64,
    pub room: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
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

    pub async fn audit(&self, room: &str, actor: &str, action: &str, target: Option<&str>) -> Result<(), StoreError> {
        let (room, actor, action, target) = (room.to_string(), actor.to_string(), action.to_string(), target.map(str::to_string));
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit (at_ms, room, actor, action, target) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now_ms(), room, actor, action, target],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn audit_log(&self, room: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let room = room.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare("SELECT at_ms, room, actor, action, target FROM audit WHERE room = ?1 ORDER BY id")?;
            let rows = stmt.query_map(params![room], |r| {
                Ok(AuditRecord { at_ms: r.get(0)?, room: r.get(1)?, actor: r.get(2)?, action: r.get(3)?, target: r.get(4)? })
            })?;
            rows.collect()
        })
        .await
    }
}

fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).optional()?.unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        conn.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn audit_survives_reopen() {
        let path = std::env::temp_dir().join(format!("hearth-store-unit-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let s = Store::open(&path).unwrap();
            s.audit("g1", "t-1", "mute", Some("p-2")).await.unwrap();
        }
        let s = Store::open(&path).unwrap();
        let log = s.audit_log("g1").await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].actor.as_str(), log[0].action.as_str(), log[0].target.as_deref()), ("t-1", "mute", Some("p-2")));
        let _ = std::fs::remove_file(&path);
    }
}
