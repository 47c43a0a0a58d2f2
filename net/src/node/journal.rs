//! The dashboard's memory: the last few task outcomes and membership events, bounded, each
//! numbered so a page that polls shows every entry once.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Entries kept per feed.
const ENTRIES_MAX: usize = 100;

/// One task as the feed shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskEntry {
    pub seq: u64,
    pub unix_s: u64,
    pub task_type: String,
    pub status: &'static str,
    /// Where it ran (completed or failed there); `None` when no node completed it.
    pub node: Option<String>,
    /// Every attempt: `node` or `node (error code)`, in order.
    pub path: Vec<String>,
    pub duration_ms: u64,
}

/// One membership change.
#[derive(Clone, Debug, Serialize)]
pub struct EventEntry {
    pub seq: u64,
    pub unix_s: u64,
    pub node: String,
    /// `online`, `offline`, `missed` (a heartbeat; `detail` is the count) or `latency`
    /// (`detail` in ms).
    pub kind: &'static str,
    pub detail: Option<u64>,
}

#[derive(Default)]
struct Feeds {
    next_seq: u64,
    tasks: VecDeque<TaskEntry>,
    events: VecDeque<EventEntry>,
}

/// The bounded feeds; cheap to write from every task's end.
#[derive(Default)]
pub struct Journal {
    feeds: Mutex<Feeds>,
}

fn push<T>(list: &mut VecDeque<T>, entry: T) {
    if list.len() == ENTRIES_MAX {
        list.pop_front();
    }
    list.push_back(entry);
}

impl Journal {
    /// Records a task's end; `seq` is filled in.
    pub fn task(&self, mut entry: TaskEntry) {
        let mut feeds = self.feeds.lock().expect("journal lock");
        entry.seq = feeds.next_seq;
        feeds.next_seq += 1;
        push(&mut feeds.tasks, entry);
    }

    /// Records a membership change; `seq` is filled in.
    pub fn event(&self, mut entry: EventEntry) {
        let mut feeds = self.feeds.lock().expect("journal lock");
        entry.seq = feeds.next_seq;
        feeds.next_seq += 1;
        push(&mut feeds.events, entry);
    }

    /// Both feeds, oldest first.
    pub fn snapshot(&self) -> (Vec<TaskEntry>, Vec<EventEntry>) {
        let feeds = self.feeds.lock().expect("journal lock");
        (
            feeds.tasks.iter().cloned().collect(),
            feeds.events.iter().cloned().collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_are_bounded_and_numbered() {
        let journal = Journal::default();
        for i in 0..150 {
            journal.event(EventEntry {
                seq: 0,
                unix_s: i,
                node: "a".into(),
                kind: "latency",
                detail: Some(i),
            });
        }
        let (tasks, events) = journal.snapshot();
        assert!(tasks.is_empty());
        assert_eq!(events.len(), ENTRIES_MAX);
        assert_eq!(events[0].seq, 50);
        assert_eq!(events.last().unwrap().seq, 149);
    }
}
