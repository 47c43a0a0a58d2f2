//! The executing node's memory of task ids, which makes a retried attempt idempotent.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

/// SipHash with fixed keys: lookups in a large ledger are one hash instead of a dozen string
/// comparisons down a tree, and fixed keys keep the core free of OS randomness. Task ids come
/// from authenticated senders only, so crafted collisions need the PSK. Nothing iterates the
/// map, so its order never shows.
type IdHasher = BuildHasherDefault<DefaultHasher>;

/// What [`TaskLedger::begin`] found for a task id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin<R> {
    /// New: run it, then call [`TaskLedger::finish`].
    Start,
    /// Already running here: wait for its result instead of running it again.
    Join,
    /// Already ran here: this is its result.
    Done(R),
    /// The ledger is full of running tasks; refuse the task (busy).
    Full,
}

#[derive(Clone, Debug)]
enum Entry<R> {
    Running,
    Done(R),
}

/// Remembers up to `entries_max` task ids: running ones until they finish, finished ones until
/// newer ones push them out (oldest first).
#[derive(Clone, Debug)]
pub struct TaskLedger<R> {
    entries_max: usize,
    entries: HashMap<String, Entry<R>, IdHasher>,
    finished_order: VecDeque<String>,
}

impl<R: Clone> TaskLedger<R> {
    pub fn new(entries_max: usize) -> Self {
        assert!(entries_max > 0, "a ledger needs room for one task");
        TaskLedger {
            entries_max,
            entries: HashMap::default(),
            finished_order: VecDeque::new(),
        }
    }

    pub fn begin(&mut self, task_id: &str) -> Begin<R> {
        match self.entries.get(task_id) {
            Some(Entry::Running) => return Begin::Join,
            Some(Entry::Done(result)) => return Begin::Done(result.clone()),
            None => {}
        }
        while self.entries.len() >= self.entries_max {
            let Some(oldest) = self.finished_order.pop_front() else {
                return Begin::Full;
            };
            self.entries.remove(&oldest);
        }
        self.entries.insert(task_id.to_string(), Entry::Running);
        Begin::Start
    }

    /// Records the result of a task begun with [`Begin::Start`].
    pub fn finish(&mut self, task_id: &str, result: R) {
        if let Some(entry) = self.entries.get_mut(task_id) {
            if matches!(entry, Entry::Running) {
                self.finished_order.push_back(task_id.to_string());
            }
            *entry = Entry::Done(result);
        }
    }

    /// Forgets a task that will not finish (cancelled before it started), so it may run later.
    pub fn forget(&mut self, task_id: &str) {
        if matches!(self.entries.get(task_id), Some(Entry::Running)) {
            self.entries.remove(task_id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_id_runs_once() {
        let mut ledger = TaskLedger::new(2);
        assert_eq!(ledger.begin("t1"), Begin::Start);
        assert_eq!(ledger.begin("t1"), Begin::Join);
        ledger.finish("t1", 7);
        assert_eq!(ledger.begin("t1"), Begin::Done(7));
        assert_eq!(ledger.begin("t2"), Begin::Start);
        assert_eq!(
            ledger.begin("t3"),
            Begin::Start,
            "t1's finished entry makes room"
        );
        assert_eq!(ledger.begin("t4"), Begin::Full, "only running tasks left");
        ledger.finish("t2", 8);
        assert_eq!(ledger.begin("t1"), Begin::Start, "forgotten after eviction");
    }
}
