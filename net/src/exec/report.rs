//! Turning a started task into the reports its caller needs: accepted, progress, result.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Started, TaskResult};

/// What the node running a task tells the node that sent it.
#[derive(Debug)]
pub enum Report {
    Accepted,
    Progress,
    Done(TaskResult),
}

/// Reports for `started`: `Accepted` at once if it was taken, `Progress` every
/// `progress_interval` while it runs, then `Done`. The channel closes after `Done`.
pub fn reports(started: Started, progress_interval: Duration) -> mpsc::Receiver<Report> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut result = match started {
            Started::Refused(error) => {
                let _ = tx.send(Report::Done(Err(error))).await;
                return;
            }
            Started::AlreadyDone(result) => {
                let _ = tx.send(Report::Done(result)).await;
                return;
            }
            Started::Accepted(result) => result,
        };
        if tx.send(Report::Accepted).await.is_err() {
            return;
        }
        let mut ticks = tokio::time::interval(progress_interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
                // seed must give one run in the simulator.
                biased;
                done = &mut result => {
                    let result = done.unwrap_or_else(|_| Err(super::remote_error(super::code::EXECUTOR_FAILED, "the task's worker ended without a result")));
                    let _ = tx.send(Report::Done(result)).await;
                    return;
                }
                _ = ticks.tick() => {
                    if tx.send(Report::Progress).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}
