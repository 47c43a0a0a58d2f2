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

/// Reports `started` through `emit`, in the caller's task: `Accepted` at once if it was taken,
/// `Progress` every `progress_interval` while it runs, then `Done`.
pub async fn relay(started: Started, progress_interval: Duration, mut emit: impl FnMut(Report)) {
    let mut result = match started {
        Started::Refused(error) => return emit(Report::Done(Err(error))),
        Started::AlreadyDone(result) => return emit(Report::Done(result)),
        Started::Accepted(result) => result,
    };
    emit(Report::Accepted);
    loop {
        tokio::select! {
            // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
            // seed must give one run in the simulator.
            biased;
            done = &mut result => {
                let result = done.unwrap_or_else(|_| {
                    Err(super::remote_error(super::code::EXECUTOR_FAILED, "the task's worker ended without a result"))
                });
                return emit(Report::Done(result));
            }
            _ = tokio::time::sleep(progress_interval) => emit(Report::Progress),
        }
    }
}

/// [`relay`] on a task of its own, for callers that must await between reports (a QUIC
/// stream's writes). The channel closes after `Done`.
pub fn reports(started: Started, progress_interval: Duration) -> mpsc::UnboundedReceiver<Report> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(relay(started, progress_interval, move |report| {
        let _ = tx.send(report);
    }));
    rx
}
