//! The running attempts of one task, driven inside the task's own future.
//!
//! An attempt used to be a spawned task reporting through a channel: one more task, and a
//! cross-thread wake for every event. Polled here, its events reach the failover loop in the
//! same task. Dropping an attempt cancels it (for a remote one the stream is reset; the target
//! keeps the result in its ledger for a retry with the same id). The load an attempt adds to
//! its node is the federation machine's to count, not this driver's.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use triforce_core::node::NodeId;

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
}

impl Attempts {
    /// Starts driving `attempt` on `node`.
    pub fn start(&mut self, node: NodeId, attempt: impl Future<Output = ()> + Send + 'static) {
        self.running.push(Running {
            node,
            future: Some(Box::pin(attempt)),
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
