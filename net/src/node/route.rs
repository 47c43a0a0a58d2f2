//! Driving a submitted task: the federation machine selects and fails over; this runs its
//! attempts, local and remote.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use triforce_core::failover::{AttemptError, ErrorCode, RemoteError, TaskOutcome};
use triforce_core::federation::{TaskAction, TaskEvent, TaskHandle};
use triforce_core::json::RawJson;
use triforce_core::node::NodeId;
use triforce_core::task::TaskRequest;

use super::attempts::Attempts;
use super::{Node, Shared};
use crate::exec::{Report, Reports};
use crate::metrics::{OutcomeLabel, TaskLabels};
use crate::quic::{read_frame, write_frame, Frame, FrameError, TaskFrame};

use super::serve::FRAME_TOO_LARGE;

/// What an attempt reports to its task's driver.
pub type AttemptEvent = TaskEvent;

/// Tells the federation machine about a task whose future is dropped before its outcome (the
/// client went away), so its attempts stop counting as load.
struct Routing<'a> {
    shared: &'a Shared,
    handle: TaskHandle,
}

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        self.shared.federation().handle_task_dropped(self.handle);
    }
}

impl Node {
    /// Runs `task` somewhere in the federation and returns how it ended. Never loses it: every
    /// path ends in exactly one outcome. The federation machine decides; this drives attempts.
    pub async fn submit(&self, task: TaskRequest) -> TaskOutcome {
        let shared = &self.shared;
        let handle = shared
            .federation()
            .handle_task(shared.clock.now(), &task.task_type);
        let routing = Routing { shared, handle };
        let (events_tx, mut events) = mpsc::unbounded_channel::<(NodeId, AttemptEvent)>();
        let mut attempts = Attempts::default();
        let outcome = loop {
            let (actions, outcome, timeout, woken) = {
                let mut federation = shared.federation();
                let actions: Vec<TaskAction> =
                    std::iter::from_fn(|| federation.poll_task_action(handle)).collect();
                let outcome = federation.poll_task_outcome(handle);
                let timeout = federation.poll_task_timeout(handle);
                (
                    actions,
                    outcome,
                    timeout,
                    federation.poll_membership_woken(),
                )
            };
            for action in actions {
                self.perform(&task, action, &mut attempts, &events_tx);
            }
            if woken {
                // A failed attempt counted as a miss: the heartbeat driver probes that peer now.
                shared.membership_changed.notify_one();
            }
            if let Some(outcome) = outcome {
                break outcome;
            }
            let sleep = timeout.map_or(Duration::from_secs(3600), |at| {
                at.saturating_since(shared.clock.now())
            });
            tokio::select! {
                // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
                // seed must give one run in the simulator.
                biased;
                Some((node, event)) = events.recv() => {
                    shared.federation().handle_task_event(shared.clock.now(), handle, &node, event);
                }
                // Attempts run inside this future; one that ended has sent its events already.
                () = attempts.drive() => {}
                _ = tokio::time::sleep(sleep) => {
                    shared.federation().handle_task_timeout(shared.clock.now(), handle);
                }
            }
        };
        // The machine has forgotten the task already; this drop is a no-op.
        drop(routing);
        drop(attempts);
        record(shared, &task, &outcome);
        outcome
    }

    fn perform(
        &self,
        task: &TaskRequest,
        action: TaskAction,
        attempts: &mut Attempts,
        events: &mpsc::UnboundedSender<(NodeId, AttemptEvent)>,
    ) {
        let shared = &self.shared;
        match action {
            TaskAction::Selected { order, gpu_online } => {
                if let Some(observer) = &shared.observer {
                    observer.selected(&task.task_id, &task.task_type, gpu_online, &order);
                }
            }
            TaskAction::Dispatch { node, attempt } => {
                if attempt > 1 {
                    shared.metrics.failovers.inc();
                }
                if let Some(observer) = &shared.observer {
                    observer.dispatched(&task.task_id, &node, attempt);
                }
                let run = attempt_on(shared.clone(), node.clone(), task.clone(), events.clone());
                attempts.start(node, run);
            }
            TaskAction::Abandon { node } => attempts.end(&node),
        }
    }
}

/// One attempt on `node`: locally through the runner, or over QUIC.
async fn attempt_on(
    shared: Arc<Shared>,
    node: NodeId,
    task: TaskRequest,
    events: mpsc::UnboundedSender<(NodeId, AttemptEvent)>,
) {
    let emit = |event| {
        let _ = events.send((node.clone(), event));
    };
    if node == shared.config.me {
        // The runner spawns the executor; its reports are pulled here. No accept grace: the
        // acknowledgement is an event in this process, nothing to save.
        let started = shared.runner.start(task);
        let mut reports = Reports::new(started, shared.progress_interval(), Duration::ZERO);
        while let Some(report) = reports.next().await {
            emit(match report {
                Report::Accepted => AttemptEvent::Accepted,
                Report::Progress => AttemptEvent::Progress,
                Report::Done(result) => AttemptEvent::Answer(result),
            });
        }
        return;
    }
    if let Err(error) = remote_attempt(&shared, &node, task, &emit).await {
        shared.peers.forget(&node).await;
        emit(AttemptEvent::ConnectionError(error));
    }
}

async fn remote_attempt(
    shared: &Shared,
    node: &NodeId,
    task: TaskRequest,
    emit: &impl Fn(AttemptEvent),
) -> Result<(), String> {
    let connection = shared
        .peers
        .connection(node)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    let frame = Frame::Task(TaskFrame {
        task_id: task.task_id,
        task_type: task.task_type,
        // The payload as the client wrote it: re-encoding could grow it past the peer's limit.
        payload_json: task.payload.get().to_string(),
        priority: task.priority,
    });
    write_frame(&mut send, &frame)
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    loop {
        let frame = match read_frame(&mut recv, shared.frame_bytes_max()).await {
            Ok(frame) => frame,
            Err(FrameError::TooLarge { len, max }) => {
                // The task ran there; only this stream fails, the connection stays.
                let _ = recv.stop(FRAME_TOO_LARGE.into());
                emit(AttemptEvent::Answer(Err(RemoteError::new(
                    ErrorCode::ResultTooLarge,
                    format!("the result frame of {len} bytes is over the limit of {max}"),
                ))));
                return Ok(());
            }
            Err(error) => return Err(error.to_string()),
        };
        match frame {
            Frame::Accepted => emit(AttemptEvent::Accepted),
            Frame::Progress => emit(AttemptEvent::Progress),
            Frame::Outcome { result } => {
                let answer = result.and_then(|text| {
                    RawJson::parse_str(&text).map_err(|e| {
                        RemoteError::new(
                            ErrorCode::ExecutorFailed,
                            format!("result is not JSON: {e}"),
                        )
                    })
                });
                emit(AttemptEvent::Answer(answer));
                return Ok(());
            }
            other => return Err(format!("unexpected frame {other:?}")),
        }
    }
}

fn record(shared: &Shared, task: &TaskRequest, outcome: &TaskOutcome) {
    let metrics = &shared.metrics;
    metrics
        .tasks
        .get_or_create(&TaskLabels {
            r#type: shared.type_label(&task.task_type),
            outcome: outcome.status().into(),
        })
        .inc();
    for attempt in outcome.attempts() {
        let label = attempt
            .error
            .as_ref()
            .map_or("ok", AttemptError::code)
            .to_string();
        metrics
            .attempts
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc();
    }
    match outcome {
        TaskOutcome::Completed { node, .. } => {
            tracing::info!(task_id = %task.task_id, task_type = %task.task_type, %node, attempts = outcome.attempts().len(), "task completed")
        }
        _ => {
            tracing::warn!(task_id = %task.task_id, task_type = %task.task_type, status = outcome.status(), attempts = outcome.attempts().len(), "task did not complete")
        }
    }
}
