//! A bounded priority queue in front of a fixed number of workers, fair between the keys
//! whose requests wait in it.
//!
//! Within a priority, waiting tasks are served by start-time fair queueing: each task gets a
//! tag, its key's previous tag plus one unit over the key's weight, but never less than the
//! tag of the task served last; the lowest tag goes first. A key with 60 requests waiting
//! holds tags 0, 1, 2, ...; another key's one request, arriving while the first is served,
//! gets that served tag and goes next. Among keys that keep requests waiting, each is served
//! in proportion to its weight; tasks without a key (the seed's API) share one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Admits tasks: straight to a worker when one is free, into the queue (highest priority
/// first, then first come) while it has room, else refused so the caller can answer busy.
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Both limits change on reload; see [`Scheduler::resize`].
    workers_max: usize,
    queue_len_max: usize,
    running: usize,
    next_seq: u64,
    waiting: BinaryHeap<Waiting>,
    /// The tag of the task served last: where a key that had nothing waiting starts again.
    served_tag: u64,
    /// Per key with tasks waiting: the tag after its last one.
    next_tags: HashMap<String, u64>,
}

/// What one task of a key of weight 1 adds to its key's tag.
const TAG_UNIT: u64 = 1_000;

/// Whose task it is, for the fair share: the key's name and weight (1-100).
#[derive(Clone, Copy, Debug)]
pub struct Share<'a> {
    pub key: &'a str,
    pub weight: u32,
}

impl<'a> Share<'a> {
    /// Tasks that name no key share one.
    pub const NONE: Share<'static> = Share { key: "", weight: 1 };

    /// A relayed request's share: its door key's, or the keyless one.
    pub fn of(relay: &'a triforce_core::relay::RelayHead) -> Self {
        match &relay.key {
            Some(key) => Share {
                key,
                weight: relay.weight.max(1),
            },
            None => Share::NONE,
        }
    }
}

#[derive(Debug)]
struct Waiting {
    priority: i32,
    tag: Reverse<u64>,
    seq: Reverse<u64>,
    wake: oneshot::Sender<()>,
    /// Whose it is, for the dashboard's view of the queue.
    key: Box<str>,
}

impl Waiting {
    fn order(&self) -> (i32, Reverse<u64>, Reverse<u64>) {
        (self.priority, self.tag, self.seq)
    }
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

impl State {
    /// The next waiting task to serve, its tag now the served one.
    fn pop(&mut self) -> Option<Waiting> {
        let next = self.waiting.pop()?;
        self.served_tag = self.served_tag.max(next.tag.0);
        if self.waiting.is_empty() {
            // Nothing waits: no key is owed anything, and the tags start again.
            self.next_tags.clear();
            self.served_tag = 0;
        }
        Some(next)
    }
}

/// A worker slot; dropping it hands the slot to the next waiting task.
#[derive(Debug)]
pub struct Permit {
    scheduler: Arc<Scheduler>,
}

/// The result of [`Scheduler::admit`].
#[derive(Debug)]
pub enum Admission {
    Now(Permit),
    /// Queued: the permit comes when the receiver fires.
    Queued(oneshot::Receiver<()>),
    Busy,
}

impl Scheduler {
    pub fn new(workers_max: usize, queue_len_max: usize) -> Arc<Self> {
        assert!(workers_max > 0, "a node needs at least one worker");
        Arc::new(Scheduler {
            state: Mutex::new(State {
                workers_max,
                queue_len_max,
                ..State::default()
            }),
        })
    }

    /// New limits from a reload. More workers start queued tasks at once; fewer take effect
    /// as running tasks end (none is stopped). A shorter queue keeps what already waits.
    pub fn resize(&self, workers_max: usize, queue_len_max: usize) {
        assert!(workers_max > 0, "a node needs at least one worker");
        let mut state = self.state.lock().expect("scheduler lock");
        state.workers_max = workers_max;
        state.queue_len_max = queue_len_max;
        while state.running < state.workers_max {
            let Some(next) = state.pop() else {
                break;
            };
            if next.wake.send(()).is_ok() {
                state.running += 1;
            }
        }
    }

    /// Takes a task of `priority` for `share`'s key: a worker now, a place in the queue, or
    /// busy.
    pub fn admit(self: &Arc<Self>, priority: i32, share: Share<'_>) -> Admission {
        let mut state = self.state.lock().expect("scheduler lock");
        if state.running < state.workers_max {
            state.running += 1;
            return Admission::Now(Permit {
                scheduler: self.clone(),
            });
        }
        if state.waiting.len() >= state.queue_len_max {
            return Admission::Busy;
        }
        let (wake, woken) = oneshot::channel();
        let seq = Reverse(state.next_seq);
        state.next_seq += 1;
        let served = state.served_tag;
        let next_tag = state.next_tags.entry(share.key.to_string()).or_insert(0);
        let tag = (*next_tag).max(served);
        *next_tag = tag + TAG_UNIT / u64::from(share.weight.clamp(1, 100));
        state.waiting.push(Waiting {
            priority,
            tag: Reverse(tag),
            seq,
            wake,
            key: share.key.into(),
        });
        Admission::Queued(woken)
    }

    /// Turns a fired queue slot into a permit: the slot was handed over by a dropped permit.
    pub fn permit_for_woken(self: &Arc<Self>) -> Permit {
        Permit {
            scheduler: self.clone(),
        }
    }

    /// How many tasks wait, per key (`""` for tasks that name none), for the dashboard.
    pub fn waiting_by_key(&self) -> std::collections::BTreeMap<String, usize> {
        let state = self.state.lock().expect("scheduler lock");
        let mut by_key = std::collections::BTreeMap::new();
        for waiting in state.waiting.iter().filter(|w| !w.wake.is_closed()) {
            *by_key.entry(waiting.key.to_string()).or_default() += 1;
        }
        by_key
    }

    /// (running, queued)
    pub fn load(&self) -> (usize, usize) {
        let state = self.state.lock().expect("scheduler lock");
        (state.running, state.waiting.len())
    }

    fn release(&self) {
        let mut state = self.state.lock().expect("scheduler lock");
        // Hand the slot to the best waiting task that is still there; `running` stays the same.
        // Unless a reload left fewer workers than are running: then the slot goes away.
        while state.running <= state.workers_max {
            let Some(next) = state.pop() else {
                break;
            };
            if next.wake.send(()).is_ok() {
                return;
            }
        }
        state.running -= 1;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.scheduler.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn higher_priority_runs_first_and_the_queue_is_bounded() {
        let scheduler = Scheduler::new(1, 2);
        let Admission::Now(first) = scheduler.admit(0, Share::NONE) else {
            panic!()
        };
        let Admission::Queued(low) = scheduler.admit(1, Share::NONE) else {
            panic!()
        };
        let Admission::Queued(mut high) = scheduler.admit(5, Share::NONE) else {
            panic!()
        };
        assert!(matches!(scheduler.admit(9, Share::NONE), Admission::Busy));
        assert_eq!(scheduler.load(), (1, 2));
        drop(first);
        high.try_recv()
            .expect("the high-priority task got the slot");
        let second = scheduler.permit_for_woken();
        drop(second);
        low.await.expect("then the low one");
        drop(scheduler.permit_for_woken());
        assert_eq!(scheduler.load(), (0, 0));
    }

    #[tokio::test]
    async fn a_resize_starts_queued_tasks_or_lets_running_ones_end() {
        let scheduler = Scheduler::new(1, 4);
        let Admission::Now(first) = scheduler.admit(0, Share::NONE) else {
            panic!()
        };
        let Admission::Queued(mut queued) = scheduler.admit(0, Share::NONE) else {
            panic!()
        };
        scheduler.resize(2, 4);
        queued
            .try_recv()
            .expect("a second worker took the queued task");
        let second = scheduler.permit_for_woken();
        assert_eq!(scheduler.load(), (2, 0));
        // Down to one worker: nothing stops, but an ending task frees no slot for the queue.
        scheduler.resize(1, 4);
        let Admission::Queued(mut third) = scheduler.admit(0, Share::NONE) else {
            panic!()
        };
        drop(first);
        assert!(third.try_recv().is_err());
        assert_eq!(scheduler.load(), (1, 1));
        drop(second);
        third.try_recv().expect("the one worker left takes it");
        drop(scheduler.permit_for_woken());
        assert_eq!(scheduler.load(), (0, 0));
    }

    /// Admits `count` queued tasks of `key` and returns their receivers.
    fn queue(
        scheduler: &Arc<Scheduler>,
        key: &'static str,
        weight: u32,
        count: usize,
    ) -> Vec<(&'static str, oneshot::Receiver<()>)> {
        (0..count)
            .map(|_| match scheduler.admit(0, Share { key, weight }) {
                Admission::Queued(woken) => (key, woken),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Serves the queue one task at a time; the keys in the order they were served.
    fn serve_all(
        scheduler: &Arc<Scheduler>,
        mut slot: Permit,
        mut waiting: Vec<(&'static str, oneshot::Receiver<()>)>,
    ) -> Vec<&'static str> {
        let mut order = Vec::new();
        while !waiting.is_empty() {
            drop(slot);
            let at = waiting
                .iter_mut()
                .position(|(_, woken)| woken.try_recv().is_ok())
                .expect("a freed slot goes to a waiting task");
            order.push(waiting.remove(at).0);
            slot = scheduler.permit_for_woken();
        }
        order
    }

    #[test]
    fn a_key_with_one_request_waits_for_one_of_the_busy_keys_not_all() {
        let scheduler = Scheduler::new(1, 100);
        let Admission::Now(slot) = scheduler.admit(0, Share::NONE) else {
            panic!()
        };
        let mut waiting = queue(&scheduler, "busy", 1, 60);
        waiting.extend(queue(&scheduler, "quiet", 1, 1));
        let by_key = scheduler.waiting_by_key();
        assert_eq!((by_key["busy"], by_key["quiet"]), (60, 1));
        let order = serve_all(&scheduler, slot, waiting);
        let quiet_at = order.iter().position(|k| *k == "quiet").unwrap();
        assert!(quiet_at <= 1, "served {quiet_at}th: {order:?}");
        assert_eq!(scheduler.load(), (0, 0), "every slot handed back");
    }

    #[test]
    fn keys_that_keep_waiting_are_served_by_weight() {
        let scheduler = Scheduler::new(1, 100);
        let Admission::Now(slot) = scheduler.admit(0, Share::NONE) else {
            panic!()
        };
        let mut waiting = queue(&scheduler, "heavy", 3, 30);
        waiting.extend(queue(&scheduler, "light", 1, 30));
        let order = serve_all(&scheduler, slot, waiting);
        let first_20 = &order[..20];
        let heavy = first_20.iter().filter(|k| **k == "heavy").count();
        assert!((14..=16).contains(&heavy), "{order:?}");
    }
}
