//! The usage store: one SQLite database on the door's node, one row per day, key and model.
//!
//! SQLite (bundled, so no system library to match) in WAL mode: a commit is one append to the
//! write-ahead log, readers (`triforce usage`, the dashboard) never block the writer, and a
//! process killed at any point leaves a database that opens clean with every commit before
//! the kill (`synchronous = NORMAL` gives up only the last commits on a power loss, not on a
//! crash of the process). The meter commits once a second (see [`super::UsageMeter`]).

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};

/// One day's use of one model by one key.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub key: String,
    pub model: String,
    pub requests: u64,
    /// Requests that got no answer from a backend, or an answer with an error status, or a
    /// stream that broke off.
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Answered requests whose backend reported no token counts (e.g. a stream from a server
    /// that ignores `stream_options.include_usage`): counted here, not guessed.
    pub unmetered: u64,
}

impl UsageRow {
    /// Adds `other`'s counts to this row's (its day, key and model stay).
    pub fn add_counts(&mut self, other: &UsageRow) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.unmetered += other.unmetered;
    }
}

/// Which rows to read.
#[derive(Clone, Debug, Default)]
pub struct UsageFilter {
    pub key: Option<String>,
    /// From this day on (`YYYY-MM-DD`, inclusive).
    pub since: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL,
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    unmetered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key, model)
) WITHOUT ROWID;
";

/// The database, open for writing (the node) or reading (`triforce usage`).
pub struct UsageStore {
    connection: Connection,
}

impl UsageStore {
    /// Opens (creating) the database at `path` for the node's meter.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // A reader's snapshot may hold the writer for a moment; wait instead of failing.
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.execute_batch(SCHEMA)?;
        Ok(UsageStore { connection })
    }

    /// Opens the database at `path` to read it, changing nothing (it must exist).
    pub fn open_read_only(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(UsageStore { connection })
    }

    /// Adds `deltas` to their rows, all in one transaction: a kill between two commits loses
    /// whole seconds, never half of one.
    pub fn add(&mut self, deltas: &[UsageRow]) -> rusqlite::Result<()> {
        let transaction = self.connection.transaction()?;
        {
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO usage (day, key, model, requests, errors, prompt_tokens, completion_tokens, unmetered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (day, key, model) DO UPDATE SET
                    requests = requests + excluded.requests,
                    errors = errors + excluded.errors,
                    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                    completion_tokens = completion_tokens + excluded.completion_tokens,
                    unmetered = unmetered + excluded.unmetered",
            )?;
            for row in deltas {
                upsert.execute(params![
                    row.day,
                    row.key,
                    row.model,
                    row.requests as i64,
                    row.errors as i64,
                    row.prompt_tokens as i64,
                    row.completion_tokens as i64,
                    row.unmetered as i64,
                ])?;
            }
        }
        transaction.commit()
    }

    /// Tokens (prompt and completion) `key` used on `day` and from `month_start` on.
    pub fn spent(&self, key: &str, day: &str, month_start: &str) -> rusqlite::Result<(u64, u64)> {
        let mut select = self.connection.prepare_cached(
            "SELECT COALESCE(SUM(CASE WHEN day = ?2 THEN prompt_tokens + completion_tokens END), 0),
                    COALESCE(SUM(prompt_tokens + completion_tokens), 0)
             FROM usage WHERE key = ?1 AND day >= ?3",
        )?;
        select.query_row(params![key, day, month_start], |row| {
            Ok((
                row.get::<_, i64>(0)?.max(0) as u64,
                row.get::<_, i64>(1)?.max(0) as u64,
            ))
        })
    }

    /// The rows `filter` selects, by day, key and model.
    pub fn rows(&self, filter: &UsageFilter) -> rusqlite::Result<Vec<UsageRow>> {
        let mut select = self.connection.prepare(
            "SELECT day, key, model, requests, errors, prompt_tokens, completion_tokens, unmetered
             FROM usage WHERE (?1 IS NULL OR key = ?1) AND (?2 IS NULL OR day >= ?2)
             ORDER BY day, key, model",
        )?;
        let rows = select.query_map(params![filter.key, filter.since], |row| {
            let count = |i| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
            Ok(UsageRow {
                day: row.get(0)?,
                key: row.get(1)?,
                model: row.get(2)?,
                requests: count(3)?,
                errors: count(4)?,
                prompt_tokens: count(5)?,
                completion_tokens: count(6)?,
                unmetered: count(7)?,
            })
        })?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: &str, key: &str, requests: u64, prompt: u64) -> UsageRow {
        UsageRow {
            day: day.into(),
            key: key.into(),
            model: "m".into(),
            requests,
            prompt_tokens: prompt,
            ..UsageRow::default()
        }
    }

    #[test]
    fn deltas_add_up_per_day_key_and_model() {
        let dir = tempdir();
        let path = dir.join("usage.sqlite3");
        let mut store = UsageStore::open(&path).unwrap();
        store
            .add(&[row("2026-12-06", "a", 1, 10), row("2026-12-07", "a", 2, 5)])
            .unwrap();
        store
            .add(&[row("2026-12-07", "a", 1, 1), row("2026-12-07", "b", 4, 40)])
            .unwrap();
        let reader = UsageStore::open_read_only(&path).unwrap();
        let all = reader.rows(&UsageFilter::default()).unwrap();
        assert_eq!(
            all,
            vec![
                row("2026-12-06", "a", 1, 10),
                row("2026-12-07", "a", 3, 6),
                row("2026-12-07", "b", 4, 40)
            ]
        );
        let since = UsageFilter {
            key: Some("a".into()),
            since: Some("2026-12-07".into()),
        };
        assert_eq!(
            reader.rows(&since).unwrap(),
            vec![row("2026-12-07", "a", 3, 6)]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "triforce-usage-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
