//! Routing a submitted task: selection, then the failover machine over local and remote
//! attempts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use triforce_core::failover::{
    Action, AttemptError, ErrorCode, RemoteError, Target, TaskFailover, TaskOutcome,
};
use triforce_core::json::RawJson;
use triforce_core::membership::PeerState;
use triforce_core::node::NodeId;
use triforce_core::selection::{select, Candidate};
use triforce_core::task::TaskRequest;

use super::attempts::Attempts;
use super::{Node, Shared};
use crate::exec::{Report, Reports};
use crate::metrics::{OutcomeLabel, TaskLabels};
use crate::quic::{read_frame, write_frame, Frame, FrameError, TaskFrame};

use super::serve::FRAME_TOO_LARGE;

/// What an attempt reports to its task's failover driver.
#[derive(Debug)]
pub enum AttemptEvent {
    Accepted,
    Progress,
    Answer(Result<RawJson, RemoteError>),
    ConnectionError(String),
}

impl Node {
    /// Runs `task` somewhere in the federation and returns how it ended. Never loses it: every
    /// path ends in exactly one outcome.
    pub async fn submit(&self, task: TaskRequest) -> TaskOutcome {
        let shared = &self.shared;
        let order = failover_order(shared, &task, &[]);
        let mut failover = {
            let mut machines = shared.machines();
            TaskFailover::new(
                shared.failover,
                order,
                shared.clock.now(),
                &mut machines.budget,
            )
        };
        let (events_tx, mut events) = mpsc::unbounded_channel::<(NodeId, AttemptEvent)>();
        let mut attempts = Attempts::default();
        let outcome = loop {
            while let Some(action) = failover.poll_action() {
                match action {
                    Action::Dispatch { node, attempt } => {
                        if attempt > 1 {
                            shared.metrics.failovers.inc();
                        }
                        if let Some(observer) = &shared.observer {
                            observer.dispatched(&task.task_id, &node, attempt);
                        }
                        let attempt = attempt_on(
                            shared.clone(),
                            node.clone(),
                            task.clone(),
                            events_tx.clone(),
                        );
                        attempts.start(shared, node, attempt);
                    }
                    Action::Reselect { tried } => {
                        // The nodes that failed this task are out, whatever their heartbeats
                        // last said (a node may answer a probe and die a moment later).
                        let order = failover_order(shared, &task, &tried);
                        let mut machines = shared.machines();
                        failover.handle_candidates(shared.clock.now(), order, &mut machines.budget);
                    }
                    Action::Abandon { node, reason } => {
                        attempts.end(&node);
                        if reason.is_peer_failure() && node != shared.config.me {
                            // Unacknowledged, or silent mid-task: evidence that the node is
                            // gone. An attempt that lost to another node's result, or to the
                            // task's deadline, says nothing against a healthy peer.
                            shared
                                .machines()
                                .membership
                                .handle_task_failure(shared.clock.now(), &node);
                            shared.membership_changed.notify_one();
                        }
                    }
                }
            }
            if let Some(outcome) = failover.poll_outcome() {
                break outcome;
            }
            let sleep = failover
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| {
                    at.saturating_since(shared.clock.now())
                });
            tokio::select! {
                // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
                // seed must give one run in the simulator.
                biased;
                Some((node, event)) = events.recv() => {
                    let now = shared.clock.now();
                    let mut machines = shared.machines();
                    match event {
                        AttemptEvent::Accepted => failover.handle_accepted(now, &node),
                        AttemptEvent::Progress => failover.handle_progress(now, &node),
                        AttemptEvent::Answer(answer) => failover.handle_answer(now, &node, answer, &mut machines.budget),
                        AttemptEvent::ConnectionError(message) => {
                            failover.handle_connection_error(now, &node, message, &mut machines.budget);
                            machines.membership.handle_task_failure(now, &node);
                            shared.membership_changed.notify_one();
                        }
                    }
                }
                // Attempts run inside this future; one that ended has sent its events already.
                () = attempts.drive() => {}
                _ = tokio::time::sleep(sleep) => {
                    let now = shared.clock.now();
                    failover.handle_timeout(now, &mut shared.machines().budget);
                }
            }
        };
        drop(attempts);
        record(shared, &task, &outcome);
        outcome
    }
}

/// Selection's failover order for `task` under the current view, with `unavailable` nodes
/// counted as not online, each with its measured RTT (which sets its accept timeout); shown to
/// the observer.
fn failover_order(shared: &Shared, task: &TaskRequest, unavailable: &[NodeId]) -> Vec<Target> {
    let mut candidates = candidates(shared);
    for candidate in &mut candidates {
        candidate.online &= !unavailable.contains(&candidate.id);
    }
    let order = {
        let mut machines = shared.machines();
        select(
            &candidates,
            &task.task_type,
            &shared.policy,
            &mut machines.rng,
        )
    };
    if let Some(observer) = &shared.observer {
        let gpu_online = candidates.iter().any(|c| c.online && c.gpu);
        observer.selected(&task.task_id, &task.task_type, gpu_online, &order);
    }
    order
        .into_iter()
        .map(|node| {
            let rtt = candidates
                .iter()
                .find(|c| c.id == node && c.id != shared.config.me)
                // An unmeasured peer's latency is f64::MAX: no Duration, so no RTT.
                .and_then(|c| Duration::try_from_secs_f64(c.latency_ms / 1000.0).ok());
            Target { node, rtt }
        })
        .collect()
}

/// This node and every online peer, as selection sees them.
fn candidates(shared: &Shared) -> Vec<Candidate> {
    let me = &shared.config.me;
    let my_spec = shared.config.my_spec();
    let load = shared.runner.load();
    let mut list = vec![Candidate {
        id: me.clone(),
        online: true,
        latency_ms: 0.0,
        // Tasks routed here that the runner has not taken yet count too, so a burst of
        // submissions does not all see an idle node.
        in_flight: (load.in_flight + load.queued).max(
            shared
                .local_dispatched
                .load(std::sync::atomic::Ordering::SeqCst),
        ),
        cores: my_spec.cores,
        gpu: my_spec.has_gpu(),
    }];
    let machines = shared.machines();
    for (id, view) in machines.membership.peers() {
        let Some(spec) = shared.config.spec(id) else {
            continue;
        };
        let reported = view.load.map_or(0, |l| l.in_flight + l.queued);
        list.push(Candidate {
            id: id.clone(),
            // A peer that missed its last heartbeat, or failed a task call since, is suspect:
            // it gets no new work until it answers again.
            online: view.state == PeerState::Online && view.misses == 0,
            latency_ms: view.latency_ms.unwrap_or(f64::MAX),
            // Reports are up to one interval old; what this node sent since counts too.
            in_flight: reported.max(view.dispatched),
            cores: spec.cores,
            gpu: spec.has_gpu(),
        });
    }
    list
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
