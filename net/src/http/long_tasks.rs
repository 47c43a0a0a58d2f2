//! Long tasks: `POST /v1/federation/task` with `Prefer: respond-async` answers 202 at once; the
//! task runs on, and `GET /v1/federation/task/{id}` gives its state or its answer, `DELETE`
//! cancels it. Answers are kept for the last `limits.ledger_entries_max` long tasks, oldest
//! ended first out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::task::AbortHandle;

/// What became of a long task.
#[derive(Clone, Debug)]
pub enum LongTask {
    Running,
    /// Its answer, as the synchronous call would have given it.
    Done {
        status: u16,
        body: Bytes,
    },
    Cancelled,
}

enum Entry {
    Running(AbortHandle),
    Ended(LongTask),
}

/// Why a long task could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum StartRefusal {
    /// The id is in use by another long task.
    Conflict,
    /// Every kept slot is taken by tasks still running.
    Full,
}

pub struct LongTasks {
    max: usize,
    state: Mutex<(HashMap<String, Entry>, VecDeque<String>)>,
}

impl LongTasks {
    pub fn new(max: usize) -> Self {
        LongTasks {
            max: max.max(1),
            state: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Registers `id` as running, cancelled through `abort`. The oldest ended tasks make room.
    pub fn start(&self, id: &str, abort: impl FnOnce() -> AbortHandle) -> Result<(), StartRefusal> {
        let mut state = self.state.lock().expect("long tasks lock");
        let (entries, order) = &mut *state;
        if entries.contains_key(id) {
            return Err(StartRefusal::Conflict);
        }
        while entries.len() >= self.max {
            let ended = order
                .iter()
                .position(|old| matches!(entries.get(old), Some(Entry::Ended(_))));
            let Some(at) = ended else {
                return Err(StartRefusal::Full);
            };
            let old = order.remove(at).expect("a position in range");
            entries.remove(&old);
        }
        entries.insert(id.to_string(), Entry::Running(abort()));
        order.push_back(id.to_string());
        Ok(())
    }

    /// The task's answer is in.
    pub fn finish(&self, id: &str, status: u16, body: Bytes) {
        let mut state = self.state.lock().expect("long tasks lock");
        if let Some(entry) = state.0.get_mut(id) {
            if matches!(entry, Entry::Running(_)) {
                *entry = Entry::Ended(LongTask::Done { status, body });
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<LongTask> {
        let state = self.state.lock().expect("long tasks lock");
        state.0.get(id).map(|entry| match entry {
            Entry::Running(_) => LongTask::Running,
            Entry::Ended(ended) => ended.clone(),
        })
    }

    /// Cancels a running task (its future is dropped, which cancels it wherever it runs). The
    /// task's state after the call; `None` for an unknown id.
    pub fn cancel(&self, id: &str) -> Option<LongTask> {
        let mut state = self.state.lock().expect("long tasks lock");
        let entry = state.0.get_mut(id)?;
        if let Entry::Running(abort) = entry {
            abort.abort();
            *entry = Entry::Ended(LongTask::Cancelled);
        }
        match entry {
            Entry::Ended(ended) => Some(ended.clone()),
            Entry::Running(_) => unreachable!("replaced above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_bounded_running_never_evicted() {
        let tasks = LongTasks::new(2);
        let sleeper = || tokio::spawn(std::future::pending::<()>()).abort_handle();
        assert_eq!(tasks.start("a", sleeper), Ok(()));
        assert_eq!(tasks.start("a", sleeper), Err(StartRefusal::Conflict));
        assert_eq!(tasks.start("b", sleeper), Ok(()));
        assert_eq!(tasks.start("c", sleeper), Err(StartRefusal::Full));
        tasks.finish("a", 200, Bytes::from_static(b"{}"));
        assert!(matches!(
            tasks.get("a"),
            Some(LongTask::Done { status: 200, .. })
        ));
        // The ended one makes room.
        assert_eq!(tasks.start("c", sleeper), Ok(()));
        assert!(tasks.get("a").is_none());
        assert!(matches!(tasks.cancel("b"), Some(LongTask::Cancelled)));
        assert!(matches!(tasks.get("b"), Some(LongTask::Cancelled)));
        assert!(tasks.cancel("zz").is_none());
    }
}
