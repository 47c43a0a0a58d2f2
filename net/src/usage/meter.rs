//! The door's usage meter: each answered request adds to a per-day, per-key, per-model count in
//! memory, and once a second the counts go to the store in one transaction. A `kill -9` loses
//! at most the last second; a graceful stop loses nothing (the node flushes on its way out).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use triforce_core::usage::TokenUsage;

use super::store::{UsageFilter, UsageRow, UsageStore};

/// How often the counts in memory go to the store: the most a `kill -9` can lose.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How one request ended, as the meter counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metered {
    /// The backend's answer went out whole: its counts, if it reported any.
    Answered(Option<TokenUsage>),
    /// No answer, an error status, or a stream that broke off; with any counts reported.
    Failed(Option<TokenUsage>),
}

/// Why the usage store cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the usage database {path}: {source}")]
pub struct UsageError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

type RowKey = (String, String, String);

/// Tokens (prompt and completion) one key used today and this month (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    pub day: u64,
    pub month: u64,
}

/// A key's [`Spent`], kept in memory once read from the store.
struct SpentSoFar {
    day: String,
    spent: Spent,
}

impl SpentSoFar {
    /// Moves to `day`: a new day starts at 0, a new month too.
    fn roll(&mut self, day: &str) {
        if self.day != day {
            if self.day[..7] != day[..7] {
                self.spent.month = 0;
            }
            self.spent.day = 0;
            self.day = day.to_string();
        }
    }
}

/// Counts per (day, key, model), in memory and in the store.
pub struct UsageMeter {
    path: PathBuf,
    /// Lock order: `spent`, then `pending`.
    spent: Mutex<std::collections::HashMap<String, SpentSoFar>>,
    pending: Mutex<BTreeMap<RowKey, UsageRow>>,
    store: Mutex<UsageStore>,
}

impl UsageMeter {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>, UsageError> {
        let store = UsageStore::open(path).map_err(|source| UsageError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Arc::new(UsageMeter {
            path: path.to_path_buf(),
            spent: Mutex::new(std::collections::HashMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            store: Mutex::new(store),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts one request of `key` for `model`, ended at `unix_s`.
    pub fn record(&self, unix_s: u64, key: &str, model: &str, ended: Metered) {
        let day = day_of(unix_s);
        let mut spent = self.spent.lock().expect("spent lock");
        if let (Some(so_far), Metered::Answered(Some(usage)) | Metered::Failed(Some(usage))) =
            (spent.get_mut(key), ended)
        {
            so_far.roll(&day);
            let tokens = usage.prompt + usage.completion;
            so_far.spent.day += tokens;
            so_far.spent.month += tokens;
        }
        let mut pending = self.pending.lock().expect("usage lock");
        let row = pending
            .entry((day.clone(), key.to_string(), model.to_string()))
            .or_insert_with(|| UsageRow {
                day,
                key: key.to_string(),
                model: model.to_string(),
                ..UsageRow::default()
            });
        row.requests += 1;
        let usage = match ended {
            Metered::Answered(usage) => usage,
            Metered::Failed(usage) => {
                row.errors += 1;
                usage
            }
        };
        match usage {
            Some(usage) => {
                row.prompt_tokens += usage.prompt;
                row.completion_tokens += usage.completion;
            }
            None if matches!(ended, Metered::Answered(_)) => row.unmetered += 1,
            None => {}
        }
    }

    /// The tokens `key` used today and this month as of `unix_s`. Read from the store the first
    /// time a key asks (after writing the counts in memory), then kept up to date by
    /// [`Self::record`].
    pub fn spent(&self, key: &str, unix_s: u64) -> Result<Spent, UsageError> {
        let day = day_of(unix_s);
        let mut spent = self.spent.lock().expect("spent lock");
        if let Some(so_far) = spent.get_mut(key) {
            so_far.roll(&day);
            return Ok(so_far.spent);
        }
        // Held across the read, so no count of this key lands between the store and memory.
        self.flush()?;
        let month_start = format!("{}-01", &day[..7]);
        let read = self
            .store
            .lock()
            .expect("store lock")
            .spent(key, &day, &month_start);
        let (day_tokens, month_tokens) = read.map_err(|source| UsageError {
            path: self.path.clone(),
            source,
        })?;
        let so_far = Spent {
            day: day_tokens,
            month: month_tokens,
        };
        spent.insert(key.to_string(), SpentSoFar { day, spent: so_far });
        Ok(so_far)
    }

    /// Writes the counts in memory to the store. On a failure they stay in memory (added to
    /// whatever comes next) and the error is returned, to be logged: a full disk delays the
    /// counts, it does not lose them while the node runs.
    pub fn flush(&self) -> Result<(), UsageError> {
        let deltas: Vec<UsageRow> = std::mem::take(&mut *self.pending.lock().expect("usage lock"))
            .into_values()
            .collect();
        if deltas.is_empty() {
            return Ok(());
        }
        let written = self.store.lock().expect("store lock").add(&deltas);
        if let Err(source) = written {
            let mut pending = self.pending.lock().expect("usage lock");
            for delta in deltas {
                let key = (delta.day.clone(), delta.key.clone(), delta.model.clone());
                match pending.entry(key) {
                    std::collections::btree_map::Entry::Occupied(mut row) => {
                        row.get_mut().add_counts(&delta)
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(delta);
                    }
                }
            }
            return Err(UsageError {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the meter is dropped everywhere else, then once
    /// more. SQLite's writes run on tokio's blocking threads, off the door's.
    pub async fn flush_forever(meter: std::sync::Weak<UsageMeter>) {
        loop {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            let Some(meter) = meter.upgrade() else {
                return;
            };
            let flushed = tokio::task::spawn_blocking(move || meter.flush()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!(%error, "usage counts not written yet; kept in memory");
            }
        }
    }

    /// The stored rows `filter` selects, after writing what is in memory.
    pub fn rows(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>, UsageError> {
        self.flush()?;
        let store = self.store.lock().expect("store lock");
        store.rows(filter).map_err(|source| UsageError {
            path: self.path.clone(),
            source,
        })
    }
}

/// The UTC day of `unix_s`, `YYYY-MM-DD`.
pub fn day_of(unix_s: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(unix_s.min(i64::MAX as u64) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = at.date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_767_225_600), "2026-01-01");
        assert_eq!(day_of(1_767_225_599), "2025-12-31");
    }

    #[test]
    fn requests_add_up_and_reach_the_store() {
        let dir = std::env::temp_dir().join(format!("triforce-meter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let meter = UsageMeter::open(&dir.join("usage.sqlite3")).unwrap();
        let day = 1_765_000_000;
        let used = |prompt, completion| Some(TokenUsage { prompt, completion });
        meter.record(day, "ann", "m", Metered::Answered(used(10, 5)));
        meter.record(day, "ann", "m", Metered::Answered(None));
        meter.flush().unwrap();
        meter.record(day, "ann", "m", Metered::Failed(None));
        meter.record(day, "bob", "m", Metered::Failed(used(3, 0)));
        let rows = meter.rows(&UsageFilter::default()).unwrap();
        let ann = &rows[0];
        assert_eq!(
            (
                ann.key.as_str(),
                ann.requests,
                ann.errors,
                ann.prompt_tokens,
                ann.completion_tokens,
                ann.unmetered
            ),
            ("ann", 3, 1, 10, 5, 1)
        );
        let bob = &rows[1];
        assert_eq!((bob.requests, bob.errors, bob.prompt_tokens), (1, 1, 3));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn what_a_key_spent_follows_the_day_and_the_month() {
        let dir = std::env::temp_dir().join(format!("triforce-spent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage.sqlite3");
        let used = |n| {
            Metered::Answered(Some(TokenUsage {
                prompt: n,
                completion: 1,
            }))
        };
        let dec_30 = 1_767_052_800; // 2025-12-30
        {
            let meter = UsageMeter::open(&path).unwrap();
            meter.record(dec_30 - 86_400, "ann", "m", used(9));
            meter.record(dec_30, "ann", "m", used(4));
            meter.flush().unwrap();
        }
        // A restarted node reads what was spent from the store, then counts on in memory.
        let meter = UsageMeter::open(&path).unwrap();
        assert_eq!(
            meter.spent("ann", dec_30).unwrap(),
            Spent { day: 5, month: 15 }
        );
        meter.record(dec_30, "ann", "m", used(1));
        assert_eq!(
            meter.spent("ann", dec_30).unwrap(),
            Spent { day: 7, month: 17 }
        );
        assert_eq!(
            meter.spent("ann", dec_30 + 86_400).unwrap(),
            Spent { day: 0, month: 17 }
        );
        assert_eq!(
            meter.spent("ann", dec_30 + 3 * 86_400).unwrap(),
            Spent { day: 0, month: 0 }
        );
        assert_eq!(meter.spent("bob", dec_30).unwrap(), Spent::default());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
