//! A bounded priority queue in front of a fixed number of workers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
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
}

#[derive(Debug)]
struct Waiting {
    priority: i32,
    seq: Reverse<u64>,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
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
        (self.priority, self.seq).cmp(&(other.priority, other.seq))
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
            let Some(next) = state.waiting.pop() else {
                break;
            };
            if next.wake.send(()).is_ok() {
                state.running += 1;
            }
        }
    }

    pub fn admit(self: &Arc<Self>, priority: i32) -> Admission {
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
        state.waiting.push(Waiting {
            priority,
            seq,
            wake,
        });
        Admission::Queued(woken)
    }

    /// Turns a fired queue slot into a permit: the slot was handed over by a dropped permit.
    pub fn permit_for_woken(self: &Arc<Self>) -> Permit {
        Permit {
            scheduler: self.clone(),
        }
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
            let Some(next) = state.waiting.pop() else {
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
        let Admission::Now(first) = scheduler.admit(0) else {
            panic!()
        };
        let Admission::Queued(low) = scheduler.admit(1) else {
            panic!()
        };
        let Admission::Queued(mut high) = scheduler.admit(5) else {
            panic!()
        };
        assert!(matches!(scheduler.admit(9), Admission::Busy));
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
        let Admission::Now(first) = scheduler.admit(0) else {
            panic!()
        };
        let Admission::Queued(mut queued) = scheduler.admit(0) else {
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
        let Admission::Queued(mut third) = scheduler.admit(0) else {
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
}
