//! The executing node's memory of task ids, which makes a retried attempt idempotent.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

/// SipHash with fixed keys: lookups in a large ledger are one hash instead of a dozen string
/// comparisons down a tree, and fixed keys keep the core free of OS randomness. Task ids come
/// from authenticated senders only, so crafted collisions need the PSK. Nothing iterates the
/// map, so its order never shows.
type IdHasher = BuildHasherDefault<DefaultHasher>;

/// What a task asks for (type and payload), as [`crate::task::TaskRequest::digest`] gives it.
pub type TaskDigest = [u8; 32];

/// What [`TaskLedger::begin`] found for a task id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin<R> {
    /// New: run it, then call [`TaskLedger::finish`].
    Start,
    /// Already running here: wait for its result instead of running it again.
    Join,
    /// Already ran here: this is its result.
    Done(R),
    /// The id is known here with other work (another type or payload): refuse it, so a reused
    /// id never returns someone else's result.
    Conflict,
    /// The ledger is full of running tasks; refuse the task (busy).
    Full,
}

#[derive(Clone, Debug)]
enum State<R> {
    Running,
    Done { result: R, bytes: usize },
}

#[derive(Clone, Debug)]
struct Entry<R> {
    digest: TaskDigest,
    state: State<R>,
}

/// The ledger's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Task ids remembered, running or finished.
    pub entries_max: usize,
    /// Bytes of finished results remembered (as the caller counts them); the oldest go first.
    pub bytes_max: usize,
}

/// Remembers task ids: running ones until they finish, finished ones (with their result) until
/// newer ones push them out, oldest first, within a bound on entries and one on result bytes.
#[derive(Clone, Debug)]
pub struct TaskLedger<R> {
    limits: LedgerLimits,
    entries: HashMap<String, Entry<R>, IdHasher>,
    finished_order: VecDeque<String>,
    finished_bytes: usize,
}

impl<R: Clone> TaskLedger<R> {
    pub fn new(limits: LedgerLimits) -> Self {
        assert!(limits.entries_max > 0, "a ledger needs room for one task");
        TaskLedger {
            limits,
            entries: HashMap::default(),
            finished_order: VecDeque::new(),
            finished_bytes: 0,
        }
    }

    /// Looks up `task_id` for work with `digest`; on [`Begin::Start`] it is recorded as running.
    pub fn begin(&mut self, task_id: &str, digest: TaskDigest) -> Begin<R> {
        match self.entries.get(task_id) {
            Some(entry) if entry.digest != digest => return Begin::Conflict,
            Some(Entry {
                state: State::Running,
                ..
            }) => return Begin::Join,
            Some(Entry {
                state: State::Done { result, .. },
                ..
            }) => return Begin::Done(result.clone()),
            None => {}
        }
        while self.entries.len() >= self.limits.entries_max {
            if !self.evict_oldest() {
                return Begin::Full;
            }
        }
        let entry = Entry {
            digest,
            state: State::Running,
        };
        self.entries.insert(task_id.to_string(), entry);
        Begin::Start
    }

    /// Records the result of a task begun with [`Begin::Start`]; `bytes` is what keeping it
    /// costs. A result larger than the whole byte bound is not kept (a retry runs it again).
    pub fn finish(&mut self, task_id: &str, result: R, bytes: usize) {
        let Some(entry) = self.entries.get_mut(task_id) else {
            return;
        };
        if bytes > self.limits.bytes_max {
            if matches!(entry.state, State::Running) {
                self.entries.remove(task_id);
            }
            return;
        }
        match &entry.state {
            State::Running => self.finished_order.push_back(task_id.to_string()),
            State::Done { bytes: old, .. } => self.finished_bytes -= old,
        }
        entry.state = State::Done { result, bytes };
        self.finished_bytes += bytes;
        while self.finished_bytes > self.limits.bytes_max && self.evict_oldest() {}
    }

    /// Forgets a task that will not finish (cancelled before it started), so it may run later.
    pub fn forget(&mut self, task_id: &str) {
        if matches!(
            self.entries.get(task_id),
            Some(Entry {
                state: State::Running,
                ..
            })
        ) {
            self.entries.remove(task_id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of finished results held now.
    pub fn finished_bytes(&self) -> usize {
        self.finished_bytes
    }

    /// Drops the oldest finished entry; false when none is left.
    fn evict_oldest(&mut self) -> bool {
        let Some(oldest) = self.finished_order.pop_front() else {
            return false;
        };
        if let Some(Entry {
            state: State::Done { bytes, .. },
            ..
        }) = self.entries.remove(&oldest)
        {
            self.finished_bytes -= bytes;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TaskDigest = [1; 32];
    const B: TaskDigest = [2; 32];

    fn ledger(entries_max: usize, bytes_max: usize) -> TaskLedger<u32> {
        TaskLedger::new(LedgerLimits {
            entries_max,
            bytes_max,
        })
    }

    #[test]
    fn a_task_id_runs_once() {
        let mut ledger = ledger(2, 1000);
        assert_eq!(ledger.begin("t1", A), Begin::Start);
        assert_eq!(ledger.begin("t1", A), Begin::Join);
        ledger.finish("t1", 7, 1);
        assert_eq!(ledger.begin("t1", A), Begin::Done(7));
        assert_eq!(ledger.begin("t2", A), Begin::Start);
        assert_eq!(
            ledger.begin("t3", A),
            Begin::Start,
            "t1's finished entry makes room"
        );
        assert_eq!(
            ledger.begin("t4", A),
            Begin::Full,
            "only running tasks left"
        );
        ledger.finish("t2", 8, 1);
        assert_eq!(
            ledger.begin("t1", A),
            Begin::Start,
            "forgotten after eviction"
        );
    }

    #[test]
    fn the_same_id_with_other_work_is_a_conflict() {
        let mut ledger = ledger(4, 1000);
        assert_eq!(ledger.begin("t", A), Begin::Start);
        assert_eq!(ledger.begin("t", B), Begin::Conflict, "while running");
        ledger.finish("t", 1, 1);
        assert_eq!(ledger.begin("t", B), Begin::Conflict, "once done");
        assert_eq!(ledger.begin("t", A), Begin::Done(1));
    }

    #[test]
    fn finished_results_are_bounded_in_bytes() {
        let mut ledger = ledger(100, 10);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(ledger.begin(id, A), Begin::Start);
            ledger.finish(id, i as u32, 4);
        }
        assert_eq!(
            ledger.finished_bytes(),
            8,
            "a was dropped to stay within 10 bytes"
        );
        assert_eq!(ledger.begin("a", A), Begin::Start);
        assert_eq!(ledger.begin("c", A), Begin::Done(2));
        ledger.finish("a", 9, 11);
        assert_eq!(
            ledger.finished_bytes(),
            8,
            "a result over the bound is not kept"
        );
        assert_eq!(
            ledger.begin("a", A),
            Begin::Start,
            "so a retry runs it again"
        );
    }
}
