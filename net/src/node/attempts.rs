//! The running attempts of one task, driven inside the task's own future.
//!
//! An attempt used to be a spawned task reporting through a channel: one more task, and a
//! cross-thread wake for every event. Polled here, its events reach the failover loop in the
//! same task. Dropping an attempt cancels it (for a remote one the stream is reset; the target
//! keeps the result in its ledger for a retry with the same id).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use triforce_core::node::NodeId;

use super::Shared;

type AttemptFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The attempts of one task that have not been ended.
#[derive(Default)]
pub struct Attempts {
    running: Vec<Running>,
}

struct Running {
    node: NodeId,
    /// `None` once the attempt has run to its end (its events are already out).
    future: Option<AttemptFuture>,
    _dispatched: Dispatched,
}

/// Counts an attempt in its target's load (what selection sees) from creation until dropped,
/// however the task's future ends: answered, abandoned, or dropped with a client that went away.
struct Dispatched {
    shared: Arc<Shared>,
    node: NodeId,
}

impl Dispatched {
    fn new(shared: &Arc<Shared>, node: NodeId) -> Self {
        if node == shared.config.me {
            shared.local_dispatched.fetch_add(1, Ordering::SeqCst);
        } else {
            shared.machines().membership.handle_dispatch(&node);
        }
        Dispatched {
            shared: shared.clone(),
            node,
        }
    }
}

impl Drop for Dispatched {
    fn drop(&mut self) {
        if self.node == self.shared.config.me {
            self.shared.local_dispatched.fetch_sub(1, Ordering::SeqCst);
        } else {
            self.shared
                .machines()
                .membership
                .handle_dispatch_done(&self.node);
        }
    }
}

impl Attempts {
    /// Starts driving `attempt` on `node`, counted as dispatched there.
    pub fn start(
        &mut self,
        shared: &Arc<Shared>,
        node: NodeId,
        attempt: impl Future<Output = ()> + Send + 'static,
    ) {
        self.running.push(Running {
            node: node.clone(),
            future: Some(Box::pin(attempt)),
            _dispatched: Dispatched::new(shared, node),
        });
    }

    /// Ends the attempt on `node`, cancelling it if it still runs.
    pub fn end(&mut self, node: &NodeId) {
        self.running.retain(|running| &running.node != node);
    }

    /// Polls every running attempt; resolves when one of them has run to its end. Pending
    /// forever when none runs.
    pub async fn drive(&mut self) {
        std::future::poll_fn(|cx| {
            for running in &mut self.running {
                if let Some(future) = &mut running.future {
                    if future.as_mut().poll(cx).is_ready() {
                        running.future = None;
                        return Poll::Ready(());
                    }
                }
            }
            Poll::Pending
        })
        .await
    }
}
