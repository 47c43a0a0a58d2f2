//! A started task's result, as a future its caller polls in its own task.
//!
//! A task used to run in a task of its own, spawned at its start, and hand its result over
//! through a channel: a spawn, a channel, a map entry for the waiter and a cross-task wake per
//! task (with the attempt around it, about 10 of a node's 120-150 us per task in `perf` at
//! benchmark rates). Now a task whose executor is run to its end by the caller (the common
//! case) runs inside the caller's future. What the spawned task guaranteed stays: a task that
//! was taken runs to its end and leaves its result in the ledger even when its caller goes away
//! first, because dropping an unfinished [`Running`] hands the rest of the run to a task of its
//! own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use triforce_core::failover::{ErrorCode, RemoteError};

use super::stream::{Answered, RelayAnswer, TaskAnswer};
use super::TaskResult;

/// A run that records its own result (ledger, joined waiters) before it returns it.
pub(super) type Run = Pin<Box<dyn Future<Output = TaskResult> + Send>>;

/// Where a relay hands its answer to the one caller that started it.
pub(super) type RelayAnswerReceiver = oneshot::Receiver<Result<RelayAnswer, RemoteError>>;

/// The result of a task that was taken, once it is there. Dropped before then, the task runs
/// on without it.
pub struct Running {
    source: Source,
}

enum Source {
    /// The task runs inside this future; `None` once it has returned.
    Here(Option<Run>),
    /// A run of the same id elsewhere, which this one joined: its result comes through the
    /// channel.
    Joined(oneshot::Receiver<TaskResult>),
    /// A relay, which keeps its own task to stream its answer's body: its head and body come
    /// through the channel.
    Relay(RelayAnswerReceiver),
}

impl Running {
    pub(super) fn here(run: Run) -> Self {
        Running {
            source: Source::Here(Some(run)),
        }
    }

    pub(crate) fn joined(result: oneshot::Receiver<TaskResult>) -> Self {
        Running {
            source: Source::Joined(result),
        }
    }

    pub(super) fn relay(answer: RelayAnswerReceiver) -> Self {
        Running {
            source: Source::Relay(answer),
        }
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Here(Some(_)) => "here",
            Source::Here(None) => "here, returned",
            Source::Joined(_) => "joined",
            Source::Relay(_) => "relay",
        };
        write!(f, "Running({source})")
    }
}

impl Future for Running {
    type Output = Answered;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
        let vanished = || {
            RemoteError::new(
                ErrorCode::ExecutorFailed,
                "the task's worker ended without a result",
            )
        };
        match &mut self.source {
            Source::Here(run) => {
                let Some(future) = run else {
                    panic!("a finished run was polled again");
                };
                let result = std::task::ready!(future.as_mut().poll(cx));
                *run = None;
                Poll::Ready(result.map(TaskAnswer::Json))
            }
            Source::Joined(result) => Pin::new(result).poll(cx).map(|result| {
                result
                    .unwrap_or_else(|_| Err(vanished()))
                    .map(TaskAnswer::Json)
            }),
            Source::Relay(answer) => Pin::new(answer).poll(cx).map(|answer| {
                answer
                    .unwrap_or_else(|_| Err(vanished()))
                    .map(TaskAnswer::Relayed)
            }),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Source::Here(run) = &mut self.source else {
            return;
        };
        let Some(run) = run.take() else {
            return;
        };
        // Outside a runtime (it is shutting down) nothing can run any more; the task is lost
        // with the process, as it would have been in a task of its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = run.await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_run_here_returns_its_result() {
        let running = Running::here(Box::pin(async { Ok(json!(7).into()) }));
        assert!(matches!(running.await, Ok(TaskAnswer::Json(json)) if json == json!(7).into()));
    }

    #[tokio::test]
    async fn a_run_dropped_before_its_end_runs_on() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let mut running = Running::here(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
            Ok(json!(1).into())
        }));
        // Polled once (it is under way), then its caller goes away.
        assert!(tokio::time::timeout(Duration::from_millis(1), &mut running)
            .await
            .is_err());
        drop(running);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(finished.load(Ordering::SeqCst), "the run went on alone");
    }

    #[tokio::test]
    async fn a_run_elsewhere_that_vanished_is_an_executor_failure() {
        let (tx, rx) = oneshot::channel::<TaskResult>();
        drop(tx);
        let error = Running::joined(rx).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::ExecutorFailed);
        let (tx, rx) = oneshot::channel();
        drop(tx);
        let error = Running::relay(rx).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::ExecutorFailed);
    }
}
