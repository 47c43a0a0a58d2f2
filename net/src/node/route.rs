//! Driving a submitted task: the federation machine selects and fails over; this runs its
//! attempts, local and remote.

use std::sync::Arc;
use std::time::Duration;

use triforce_core::affinity::AffinityKey;
use triforce_core::failover::{AttemptError, ErrorCode, RemoteError, TaskOutcome};
use triforce_core::federation::{Federation, TaskAction, TaskEvent, TaskHandle};
use triforce_core::json::RawJson;
use triforce_core::node::NodeId;
use triforce_core::task::TaskRequest;
use triforce_core::time::Instant;

use super::attempts::{AttemptEvent, Attempts, EventSink};
use super::TaskEntry;
use super::{Node, Shared};
use crate::exec::{
    answer_channel, Chunk, ChunkSender, RelayAnswer, Report, Reports, StreamFailure, TaskAnswer,
};
use crate::metrics::{OutcomeLabel, TaskLabels};
use crate::quic::{read_frame, write_frame, Frame, FrameError, TaskFrame};

use super::serve::{FRAME_TOO_LARGE, STREAM_CANCELLED};

/// How long the task's timer is set for while the machine has no timeout for it.
const NO_TIMEOUT: Duration = Duration::from_secs(3600);

/// A task's outcome, with the answer's head and body when a backend's answer was relayed.
pub struct Submitted {
    pub outcome: TaskOutcome,
    pub relayed: Option<RelayAnswer>,
}

/// What the machine has for a task after an input: the actions to perform, its outcome once it
/// ended, its next timeout, and whether a failed attempt woke the heartbeat driver.
struct Turn {
    actions: Vec<TaskAction>,
    outcome: Option<TaskOutcome>,
    timeout: Option<Instant>,
    woken: bool,
}

impl Turn {
    /// Read under the lock the caller took for its input.
    fn read(federation: &mut Federation, handle: TaskHandle) -> Turn {
        Turn {
            actions: std::iter::from_fn(|| federation.poll_task_action(handle)).collect(),
            outcome: federation.poll_task_outcome(handle),
            timeout: federation.poll_task_timeout(handle),
            woken: federation.poll_membership_woken(),
        }
    }
}

/// Tells the federation machine about a task whose future is dropped before its outcome (the
/// client went away), so its attempts stop counting as load, and records it as cancelled.
struct Routing<'a> {
    shared: &'a Shared,
    task: &'a TaskRequest,
    handle: TaskHandle,
    ended: bool,
}

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.shared.federation().handle_task_dropped(self.handle);
        let task = self.task;
        self.shared
            .telemetry
            .metrics
            .tasks
            .get_or_create(&TaskLabels {
                r#type: self.shared.type_label(&task.task_type),
                outcome: "cancelled".into(),
            })
            .inc();
        tracing::info!(task_id = %task.task_id, task_type = %task.task_type, "task cancelled: its client went away");
    }
}

impl Node {
    /// Runs `task` somewhere in the federation and returns how it ended. A streamed answer is
    /// dropped (cancelled) here: callers that can stream use [`Self::submit_streaming`].
    pub async fn submit(&self, task: TaskRequest) -> TaskOutcome {
        self.submit_streaming(task, None).await.outcome
    }

    /// Runs `task` somewhere in the federation and returns how it ended, with the body of its
    /// answer when that streams. A relayed request naming a model goes only to nodes whose
    /// backend has that model. Never loses it: every path ends in exactly one
    /// outcome. `affinity`, when the task belongs to a conversation, prefers the node that has
    /// its history cached. The federation machine decides; this drives attempts.
    pub async fn submit_streaming(
        &self,
        task: TaskRequest,
        affinity: Option<AffinityKey>,
    ) -> Submitted {
        let shared = &self.shared;
        let started = shared.clock.now();
        // Each input to the machine and what it answers share one lock: a task that runs here
        // and reports its acceptance with its answer takes the lock twice in all.
        let (handle, mut turn) = {
            let mut federation = shared.federation();
            let handle = federation.handle_task_with_affinity(
                shared.clock.now(),
                &task.task_type,
                task.model(),
                affinity,
            );
            (handle, Turn::read(&mut federation, handle))
        };
        let mut routing = Routing {
            shared,
            task: &task,
            handle,
            ended: false,
        };
        let mut attempts = Attempts::default();
        // Relayed answers by node, until the outcome names the one that won.
        let mut relayed: Vec<(NodeId, RelayAnswer)> = Vec::new();
        // One timer for the task's life, moved as the machine's next timeout moves: a new one
        // for every turn of the loop would be registered and cancelled each time.
        let mut wake_at = None;
        let timer = tokio::time::sleep(NO_TIMEOUT);
        tokio::pin!(timer);
        let outcome = loop {
            for action in std::mem::take(&mut turn.actions) {
                self.perform(&task, action, &mut attempts);
            }
            if turn.woken {
                // A failed attempt counted as a miss: the heartbeat driver probes that peer now.
                shared.membership_changed.notify_one();
            }
            if let Some(outcome) = turn.outcome.take() {
                break outcome;
            }
            if turn.timeout != wake_at {
                wake_at = turn.timeout;
                let sleep =
                    wake_at.map_or(NO_TIMEOUT, |at| at.saturating_since(shared.clock.now()));
                timer.as_mut().reset(tokio::time::Instant::now() + sleep);
            }
            turn = tokio::select! {
                // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
                // seed must give one run in the simulator.
                biased;
                // Attempts run inside this future.
                events = attempts.events() => {
                    let mut federation = shared.federation();
                    for AttemptEvent { node, event, relayed: answer } in events {
                        if let Some(answer) = answer {
                            relayed.push((node.clone(), answer));
                        }
                        federation.handle_task_event(shared.clock.now(), handle, &node, event);
                    }
                    Turn::read(&mut federation, handle)
                }
                () = &mut timer => {
                    wake_at = None;
                    timer.as_mut().reset(tokio::time::Instant::now() + NO_TIMEOUT);
                    let mut federation = shared.federation();
                    federation.handle_task_timeout(shared.clock.now(), handle);
                    Turn::read(&mut federation, handle)
                }
            };
        };
        // The machine has forgotten the task already.
        routing.ended = true;
        drop(routing);
        drop(attempts);
        let type_label = shared.type_label(&task.task_type);
        record(shared, &task, &type_label, &outcome);
        journal(shared, type_label, &outcome, started);
        let relayed = match &outcome {
            TaskOutcome::Completed { node, .. } => relayed
                .into_iter()
                .find(|(from, _)| from == node)
                .map(|(_, answer)| answer),
            _ => None,
        };
        Submitted { outcome, relayed }
    }

    fn perform(&self, task: &TaskRequest, action: TaskAction, attempts: &mut Attempts) {
        let shared = &self.shared;
        match action {
            TaskAction::Selected { order, gpu_online } => {
                if let Some(observer) = &shared.telemetry.observer {
                    observer.selected(&task.task_id, &task.task_type, gpu_online, &order);
                }
            }
            TaskAction::Dispatch { node, attempt } => {
                if attempt > 1 {
                    shared.telemetry.metrics.failovers.inc();
                }
                if let Some(observer) = &shared.telemetry.observer {
                    observer.dispatched(&task.task_id, &node, attempt);
                }
                let sink = attempts.sink().clone();
                let run = attempt_on(shared.clone(), node.clone(), task.clone(), sink);
                attempts.start(node, run);
            }
            TaskAction::Abandon { node } => attempts.end(&node),
        }
    }
}

/// One attempt on `node`: locally through the runner, or over QUIC.
async fn attempt_on(shared: Arc<Shared>, node: NodeId, task: TaskRequest, events: EventSink) {
    let emit = |event, relayed| {
        let node = node.clone();
        events.emit(AttemptEvent {
            node,
            event,
            relayed,
        });
    };
    if node == shared.config().me {
        // The runner spawns the executor; its reports are pulled here. No accept grace: the
        // acknowledgement is an event in this process, nothing to save.
        let started = shared.runner.start(task);
        let mut reports = Reports::new(started, shared.progress_interval(), Duration::ZERO);
        while let Some(report) = reports.next().await {
            match report {
                Report::Accepted => emit(TaskEvent::Accepted, None),
                Report::Progress => emit(TaskEvent::Progress, None),
                Report::Done(Ok(TaskAnswer::Json(result))) => {
                    emit(TaskEvent::Answer(Ok(result)), None)
                }
                Report::Done(Ok(TaskAnswer::Relayed(answer))) => {
                    emit(relayed_answer(), Some(answer))
                }
                Report::Done(Err(error)) => emit(TaskEvent::Answer(Err(error)), None),
            }
        }
        return;
    }
    if let Err(error) = remote_attempt(&shared, &node, task, &emit).await {
        shared.peers.forget(&node).await;
        emit(TaskEvent::ConnectionError(error), None);
    }
}

async fn remote_attempt(
    shared: &Shared,
    node: &NodeId,
    task: TaskRequest,
    emit: &impl Fn(TaskEvent, Option<RelayAnswer>),
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
        relay: task.relay,
    });
    match write_frame(&mut send, &frame).await {
        Ok(()) => {}
        Err(FrameError::Write(quinn::WriteError::Stopped(code)))
            if code.into_inner() == u64::from(FRAME_TOO_LARGE) =>
        {
            // The peer refused the frame as over its limit and keeps the connection: the
            // request is too large there, which no other attempt of this node changes.
            let error = RemoteError::new(
                ErrorCode::RequestTooLarge,
                format!("the request is over {node}'s frame limit (limits.body_bytes_max)"),
            );
            emit(TaskEvent::Answer(Err(error)), None);
            return Ok(());
        }
        Err(error) => return Err(error.to_string()),
    }
    let _ = send.finish();
    let frame_bytes_max = shared.frame_bytes_max();
    loop {
        let frame = match read_frame(&mut recv, frame_bytes_max).await {
            Ok(frame) => frame,
            Err(FrameError::TooLarge { len, max }) => {
                // The task ran there; only this stream fails, the connection stays.
                let _ = recv.stop(FRAME_TOO_LARGE.into());
                let error = RemoteError::new(
                    ErrorCode::ResultTooLarge,
                    format!("the result frame of {len} bytes is over the limit of {max}"),
                );
                emit(TaskEvent::Answer(Err(error)), None);
                return Ok(());
            }
            Err(error) => return Err(error.to_string()),
        };
        match frame {
            Frame::Accepted => emit(TaskEvent::Accepted, None),
            Frame::Progress => emit(TaskEvent::Progress, None),
            Frame::Outcome { result } => {
                emit(TaskEvent::Answer(result.and_then(parse_result)), None);
                return Ok(());
            }
            Frame::Streamed { head } => {
                let (chunks, body) = answer_channel();
                tokio::spawn(receive_stream(recv, chunks, frame_bytes_max, node.clone()));
                let answer = RelayAnswer { head, body };
                emit(relayed_answer(), Some(answer));
                return Ok(());
            }
            other => return Err(format!("unexpected frame {other:?}")),
        }
    }
}

/// What the federation machine is told of a relayed answer: that the attempt answered. The
/// answer's head and body travel beside it, in the [`AttemptEvent`].
fn relayed_answer() -> TaskEvent {
    TaskEvent::Answer(Ok(RawJson::null()))
}

fn parse_result(text: String) -> Result<RawJson, RemoteError> {
    RawJson::parse_str(&text).map_err(|e| {
        RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("result is not JSON: {e}"),
        )
    })
}

/// Moves a streamed answer's chunks from the peer's QUIC stream into `chunks` as they come.
/// When the reader goes away, the QUIC stream is stopped, which the executing node sees at
/// once and passes on to its backend request.
async fn receive_stream(
    mut recv: quinn::RecvStream,
    chunks: ChunkSender,
    frame_bytes_max: usize,
    node: NodeId,
) {
    loop {
        let frame = tokio::select! {
            biased;
            () = chunks.closed() => {
                let _ = recv.stop(STREAM_CANCELLED.into());
                return;
            }
            frame = read_frame(&mut recv, frame_bytes_max) => frame,
        };
        let chunk = match frame {
            Ok(Frame::Chunk(bytes)) => Chunk::Data(bytes.into()),
            Ok(Frame::StreamEnd { error: None }) => Chunk::End,
            Ok(Frame::StreamEnd {
                error: Some(failure),
            }) => Chunk::Failed(StreamFailure::OnNode {
                node: node.clone(),
                failure: Box::new(failure),
            }),
            Ok(other) => Chunk::Failed(StreamFailure::RelayBrokeOff {
                node: node.clone(),
                error: format!("it sent {other:?} mid-stream"),
            }),
            Err(error) => Chunk::Failed(StreamFailure::RelayBrokeOff {
                node: node.clone(),
                error: error.to_string(),
            }),
        };
        let last = !matches!(chunk, Chunk::Data(_));
        if chunks.send(chunk).await.is_err() {
            let _ = recv.stop(STREAM_CANCELLED.into());
            return;
        }
        if last {
            return;
        }
    }
}

/// The dashboard's task feed.
fn journal(
    shared: &Shared,
    type_label: String,
    outcome: &TaskOutcome,
    started: triforce_core::time::Instant,
) {
    let node = match outcome {
        TaskOutcome::Completed { node, .. } | TaskOutcome::Failed { node, .. } => {
            Some(node.to_string())
        }
        TaskOutcome::AllNodesFailed { .. } => None,
    };
    let path = outcome
        .attempts()
        .iter()
        .map(|a| match &a.error {
            Some(error) => format!("{} ({})", a.node, error.code()),
            None => a.node.to_string(),
        })
        .collect();
    shared.telemetry.journal.task(TaskEntry {
        seq: 0,
        unix_s: shared.clock.unix_s(),
        task_type: type_label,
        status: outcome.status(),
        node,
        path,
        duration_ms: shared.clock.now().saturating_since(started).as_millis() as u64,
    });
}

fn record(shared: &Shared, task: &TaskRequest, type_label: &str, outcome: &TaskOutcome) {
    let metrics = &shared.telemetry.metrics;
    metrics
        .tasks
        .get_or_create(&TaskLabels {
            r#type: type_label.to_string(),
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
