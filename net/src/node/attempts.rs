//! The running attempts of one task, driven inside the task's own future.
//!
//! An attempt used to be a spawned task reporting through a channel: one more task, and a
//! cross-thread wake for every event. Polled here, its events reach the failover loop in the
//! same task. They are collected in a plain list rather than a channel: a channel's send wakes
//! its receiver, here the very task that is polling, which would then be polled once more, with
//! its whole HTTP connection, for an event that is already in hand. Dropping an attempt cancels
//! it (for a remote one the stream is reset; the target keeps the result in its ledger for a
//! retry with the same id). The load an attempt adds to its node is the federation machine's to
//! count, not this driver's.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use triforce_core::federation::TaskEvent;
use triforce_core::node::NodeId;

use crate::exec::RelayAnswer;

type AttemptFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What an attempt reports to its task's driver: an event for the federation machine, and with
/// a relayed answer, its head and body (kept aside until the machine says which answer won).
pub struct AttemptEvent {
    pub node: NodeId,
    pub event: TaskEvent,
    pub relayed: Option<RelayAnswer>,
}

/// Where an attempt puts its events; [`Attempts::events`] takes them out.
#[derive(Clone, Default)]
pub struct EventSink {
    events: Arc<Mutex<Vec<AttemptEvent>>>,
}

impl EventSink {
    pub fn emit(&self, event: AttemptEvent) {
        self.events.lock().expect("attempt events lock").push(event);
    }

    fn take(&self) -> Vec<AttemptEvent> {
        std::mem::take(&mut *self.events.lock().expect("attempt events lock"))
    }
}

/// The attempts of one task that have not been ended.
#[derive(Default)]
pub struct Attempts {
    running: Vec<RunningAttempt>,
    sink: EventSink,
}

struct RunningAttempt {
    node: NodeId,
    /// `None` once the attempt has run to its end (its events are already out).
    future: Option<AttemptFuture>,
}

impl Attempts {
    /// The sink the attempts started here report to.
    pub fn sink(&self) -> &EventSink {
        &self.sink
    }

    /// Starts driving `attempt` on `node`.
    pub fn start(&mut self, node: NodeId, attempt: impl Future<Output = ()> + Send + 'static) {
        self.running.push(RunningAttempt {
            node,
            future: Some(Box::pin(attempt)),
        });
    }

    /// Ends the attempt on `node`, cancelling it if it still runs.
    pub fn end(&mut self, node: &NodeId) {
        self.running.retain(|running| &running.node != node);
    }

    /// Polls every running attempt; resolves with the events they reported, once there are
    /// some. Pending forever when none runs.
    pub async fn events(&mut self) -> Vec<AttemptEvent> {
        std::future::poll_fn(|cx| {
            for running in &mut self.running {
                if let Some(future) = &mut running.future {
                    if future.as_mut().poll(cx).is_ready() {
                        running.future = None;
                    }
                }
            }
            let events = self.sink.take();
            if events.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(events)
            }
        })
        .await
    }
}
