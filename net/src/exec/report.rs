//! Turning a started task into the reports its caller needs: accepted, progress, result.

use std::time::Duration;

use super::stream::{Answered, TaskAnswer};
use super::{Running, Started};

/// What the node running a task tells the node that sent it.
#[derive(Debug)]
pub enum Report {
    Accepted,
    Progress,
    Done(Answered),
}

/// The reports of one started task, pulled by its caller in its own task (no extra task or
/// channel per task): `Accepted` once it was taken, `Progress` every `progress_interval` while it
/// runs, then `Done`, then nothing.
///
/// A task that finishes within `accept_grace` of being taken reports `Done` alone: the answer
/// acknowledges it. Over QUIC that saves a frame, a wake of the connection driver and an event
/// at the sender for every quick task; the grace must stay well inside the sender's accept
/// timeout.
pub struct Reports {
    state: State,
    progress_interval: Duration,
    accept_grace: Duration,
}

enum State {
    /// Refused or already done: the answer is known.
    Known(Answered),
    /// Taken; `Accepted` not reported yet.
    Taken(Running),
    Running(Running),
    Ended,
}

impl Reports {
    pub fn new(started: Started, progress_interval: Duration, accept_grace: Duration) -> Self {
        let state = match started {
            Started::Refused(error) => State::Known(Err(error)),
            Started::AlreadyDone(result) => State::Known(result.map(TaskAnswer::Json)),
            Started::Accepted(result) => State::Taken(result),
        };
        Reports {
            state,
            progress_interval,
            accept_grace,
        }
    }

    /// The next report; `None` after `Done`. Cancel-safe: a dropped call loses nothing.
    pub async fn next(&mut self) -> Option<Report> {
        match &mut self.state {
            State::Ended => None,
            State::Known(_) => match std::mem::replace(&mut self.state, State::Ended) {
                State::Known(result) => Some(Report::Done(result)),
                _ => unreachable!("matched Known"),
            },
            State::Taken(result) => {
                if !self.accept_grace.is_zero() {
                    if let Ok(done) = tokio::time::timeout(self.accept_grace, result).await {
                        self.state = State::Ended;
                        return Some(Report::Done(done));
                    }
                }
                let State::Taken(result) = std::mem::replace(&mut self.state, State::Ended) else {
                    unreachable!("matched Taken")
                };
                self.state = State::Running(result);
                Some(Report::Accepted)
            }
            State::Running(result) => {
                tokio::select! {
                    // Polled in order: tokio would otherwise pick branches with an unseeded RNG,
                    // and one seed must give one run in the simulator.
                    biased;
                    done = result => {
                        self.state = State::Ended;
                        Some(Report::Done(done))
                    }
                    _ = tokio::time::sleep(self.progress_interval) => Some(Report::Progress),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::sync::oneshot;
    use triforce_core::failover::{ErrorCode, RemoteError};

    const PROGRESS: Duration = Duration::from_millis(10);
    const GRACE: Duration = Duration::from_millis(5);

    fn is_done_with(report: Option<Report>, expected: serde_json::Value) -> bool {
        matches!(report, Some(Report::Done(Ok(TaskAnswer::Json(value)))) if value == expected.into())
    }

    #[tokio::test]
    async fn a_quick_task_is_acknowledged_by_its_answer() {
        let (tx, rx) = oneshot::channel();
        tx.send(Ok(json!(1).into())).unwrap();
        let mut reports = Reports::new(Started::Accepted(Running::joined(rx)), PROGRESS, GRACE);
        assert!(is_done_with(reports.next().await, json!(1)));
        assert!(reports.next().await.is_none());
    }

    #[tokio::test]
    async fn without_grace_the_acknowledgement_comes_first() {
        let (tx, rx) = oneshot::channel();
        tx.send(Ok(json!(2).into())).unwrap();
        let mut reports = Reports::new(
            Started::Accepted(Running::joined(rx)),
            PROGRESS,
            Duration::ZERO,
        );
        assert!(matches!(reports.next().await, Some(Report::Accepted)));
        assert!(is_done_with(reports.next().await, json!(2)));
        assert!(reports.next().await.is_none());
    }

    #[tokio::test]
    async fn a_slow_task_is_acknowledged_then_reports_progress_then_its_result() {
        let (tx, rx) = oneshot::channel();
        let mut reports = Reports::new(Started::Accepted(Running::joined(rx)), PROGRESS, GRACE);
        assert!(matches!(reports.next().await, Some(Report::Accepted)));
        assert!(matches!(reports.next().await, Some(Report::Progress)));
        assert!(matches!(reports.next().await, Some(Report::Progress)));
        tx.send(Ok(json!(3).into())).unwrap();
        assert!(is_done_with(reports.next().await, json!(3)));
        assert!(reports.next().await.is_none());
    }

    #[tokio::test]
    async fn a_lost_worker_and_a_refusal_end_with_an_error() {
        let (tx, rx) = oneshot::channel::<crate::exec::TaskResult>();
        drop(tx);
        let mut reports = Reports::new(Started::Accepted(Running::joined(rx)), PROGRESS, GRACE);
        let Some(Report::Done(Err(error))) = reports.next().await else {
            panic!("a worker that vanished is an executor failure")
        };
        assert_eq!(error.code, ErrorCode::ExecutorFailed);

        let refused = RemoteError::new(ErrorCode::Busy, "queue is full");
        let mut reports = Reports::new(Started::Refused(refused.clone()), PROGRESS, GRACE);
        assert!(matches!(reports.next().await, Some(Report::Done(Err(e))) if e == refused));
        assert!(reports.next().await.is_none());
    }
}
