//! The task side of the federation machine: selection, each task's failover, the load that
//! dispatched attempts add, and the miss rule for failed attempts.

use std::collections::VecDeque;

use super::{Federation, NodeView, Offer};
use crate::affinity::AffinityKey;
use crate::failover::{Action, ExhaustedReason, RemoteError, Target, TaskFailover, TaskOutcome};
use crate::json::RawJson;
use crate::node::NodeId;
use crate::selection::{select, Candidate};
use crate::time::Instant;

/// Names one task the machine is routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskHandle(u64);

/// What happened to an attempt, as the driver saw it.
#[derive(Clone, Debug)]
pub enum TaskEvent {
    /// The target acknowledged the task.
    Accepted,
    Progress,
    Answer(Result<RawJson, RemoteError>),
    /// The connection to the target failed; the task may not have reached it.
    ConnectionError(String),
}

/// What the driver must do for a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskAction {
    /// Selection's failover order, at the start and at each reselection (for observers).
    Selected {
        order: Vec<NodeId>,
        gpu_online: bool,
    },
    /// Start an attempt on `node`; `attempt` counts from 1.
    Dispatch { node: NodeId, attempt: u32 },
    /// Cancel the attempt on `node`, so it does not start the task late.
    Abandon { node: NodeId },
}

/// What selection needs to know of a task.
struct Route<'a> {
    task_type: &'a str,
    model: Option<&'a str>,
    affinity: Option<AffinityKey>,
}

pub(super) struct TaskEntry {
    task_type: String,
    /// The model the task asks for (an AI request's `model`), if any.
    model: Option<String>,
    /// The conversation it belongs to, if any (see [`crate::affinity`]).
    affinity: Option<AffinityKey>,
    failover: TaskFailover,
    /// Nodes with an attempt that has not ended, each counted in that node's load.
    running: Vec<NodeId>,
    actions: VecDeque<TaskAction>,
}

impl Federation {
    /// Starts routing a task of `task_type` (asking for `model`, if any): selects its failover
    /// order and dispatches the first attempt, or ends it at once when no online node can run
    /// it (the reason says whether the type, the model or a healthy backend was missing).
    pub fn handle_task(
        &mut self,
        now: Instant,
        task_type: &str,
        model: Option<&str>,
    ) -> TaskHandle {
        self.handle_task_with_affinity(now, task_type, model, None)
    }

    /// [`Self::handle_task`] for a task of a conversation keyed `affinity`: selection prefers
    /// the key's node, within the load bound.
    pub fn handle_task_with_affinity(
        &mut self,
        now: Instant,
        task_type: &str,
        model: Option<&str>,
        affinity: Option<AffinityKey>,
    ) -> TaskHandle {
        let handle = TaskHandle(self.next_handle);
        self.next_handle += 1;
        let mut actions = VecDeque::new();
        // Once for both: the views are built fresh (each node's id copied) on every call.
        let views = self.nodes();
        let failover = match self.unroutable_among(&views, task_type, model) {
            Some(reason) => TaskFailover::refused(self.failover, reason, now),
            None => {
                let route = Route {
                    task_type,
                    model,
                    affinity,
                };
                let order = self.failover_order(&views, &route, &[], &mut actions);
                TaskFailover::new(self.failover, order, now, &mut self.budget)
            }
        };
        let entry = Box::new(TaskEntry {
            task_type: task_type.to_string(),
            model: model.map(str::to_string),
            affinity,
            failover,
            running: Vec::new(),
            actions,
        });
        self.tasks.insert(handle, entry);
        self.pump(now, handle);
        handle
    }

    /// Something happened to the attempt on `node`.
    pub fn handle_task_event(
        &mut self,
        now: Instant,
        handle: TaskHandle,
        node: &NodeId,
        event: TaskEvent,
    ) {
        let Some(entry) = self.tasks.get_mut(&handle) else {
            return;
        };
        match event {
            TaskEvent::Accepted => entry.failover.handle_accepted(now, node),
            TaskEvent::Progress => entry.failover.handle_progress(now, node),
            TaskEvent::Answer(answer) => {
                entry
                    .failover
                    .handle_answer(now, node, answer, &mut self.budget);
                self.release(handle, node);
            }
            TaskEvent::ConnectionError(message) => {
                entry
                    .failover
                    .handle_connection_error(now, node, message, &mut self.budget);
                self.release(handle, node);
                self.count_failure(now, node);
            }
        }
        self.pump(now, handle);
    }

    /// The task's timer (see [`Self::poll_task_timeout`]) fired.
    pub fn handle_task_timeout(&mut self, now: Instant, handle: TaskHandle) {
        if let Some(entry) = self.tasks.get_mut(&handle) {
            entry.failover.handle_timeout(now, &mut self.budget);
            self.pump(now, handle);
        }
    }

    /// The driver gave up on the task before its outcome (its client went away): its attempts
    /// stop counting as load.
    pub fn handle_task_dropped(&mut self, handle: TaskHandle) {
        if let Some(entry) = self.tasks.remove(&handle) {
            for node in entry.running {
                self.release_load(&node);
            }
        }
    }

    pub fn poll_task_action(&mut self, handle: TaskHandle) -> Option<TaskAction> {
        self.tasks.get_mut(&handle)?.actions.pop_front()
    }

    pub fn poll_task_timeout(&self, handle: TaskHandle) -> Option<Instant> {
        self.tasks.get(&handle)?.failover.poll_timeout()
    }

    /// The task's outcome, once its actions are drained; the machine then forgets the task.
    pub fn poll_task_outcome(&mut self, handle: TaskHandle) -> Option<TaskOutcome> {
        let entry = self.tasks.get_mut(&handle)?;
        if !entry.actions.is_empty() {
            return None;
        }
        let outcome = entry.failover.poll_outcome()?;
        self.handle_task_dropped(handle);
        Some(outcome)
    }

    /// Turns the failover's actions into the driver's, applying the load and miss rules and
    /// answering reselections here.
    fn pump(&mut self, now: Instant, handle: TaskHandle) {
        let Some(mut entry) = self.tasks.remove(&handle) else {
            return;
        };
        while let Some(action) = entry.failover.poll_action() {
            match action {
                Action::Dispatch { node, attempt } => {
                    self.add_load(&node);
                    entry.running.push(node.clone());
                    entry
                        .actions
                        .push_back(TaskAction::Dispatch { node, attempt });
                }
                Action::Abandon { node, reason } => {
                    if let Some(at) = entry.running.iter().position(|n| *n == node) {
                        entry.running.swap_remove(at);
                        self.release_load(&node);
                    }
                    // Unacknowledged, or silent mid-task: evidence that the node is gone. An
                    // attempt that lost to another node's result, or to the task's deadline,
                    // says nothing against a healthy peer.
                    if reason.is_peer_failure() {
                        self.count_failure(now, &node);
                    }
                    entry.actions.push_back(TaskAction::Abandon { node });
                }
                Action::Reselect { tried } => {
                    // The nodes that failed this task are out, whatever their heartbeats last
                    // said (a node may answer a probe and die a moment later).
                    let views = self.nodes();
                    let route = Route {
                        task_type: &entry.task_type,
                        model: entry.model.as_deref(),
                        affinity: entry.affinity,
                    };
                    let order = self.failover_order(&views, &route, &tried, &mut entry.actions);
                    entry
                        .failover
                        .handle_candidates(now, order, &mut self.budget);
                }
            }
        }
        self.tasks.insert(handle, entry);
    }

    /// What `node` offers for a task (nothing before its first heartbeat answer).
    fn offer(&self, node: &NodeId, task_type: &str, model: Option<&str>) -> Offer {
        self.capabilities
            .get(node)
            .map_or(Offer::NoType, |caps| caps.offer(task_type, model))
    }

    /// Why no node that may get work can run the task, if none can: the best offer among
    /// them decides what was missing.
    pub fn unroutable(&self, task_type: &str, model: Option<&str>) -> Option<ExhaustedReason> {
        self.unroutable_among(&self.nodes(), task_type, model)
    }

    fn unroutable_among(
        &self,
        views: &[NodeView],
        task_type: &str,
        model: Option<&str>,
    ) -> Option<ExhaustedReason> {
        let best = views
            .iter()
            .filter(|view| view.may_get_work())
            .map(|view| self.offer(&view.id, task_type, model))
            .max()
            .unwrap_or(Offer::NoType);
        match best {
            Offer::NoType => Some(ExhaustedReason::NoNodeRunsType),
            Offer::NoModel => Some(ExhaustedReason::NoNodeHasModel),
            Offer::Unhealthy => Some(ExhaustedReason::BackendsDown),
            // A draining node may not get work, so it is filtered out above and never offers
            // here; the arm is for completeness.
            Offer::Draining | Offer::Cold | Offer::Warm => None,
        }
    }

    /// Selection's order for a task with `unavailable` nodes left out, each with its measured
    /// RTT (which sets its accept timeout). Only nodes that can run the task are candidates.
    fn failover_order(
        &mut self,
        views: &[NodeView],
        route: &Route,
        unavailable: &[NodeId],
        actions: &mut VecDeque<TaskAction>,
    ) -> Vec<Target> {
        let (task_type, model) = (route.task_type, route.model);
        let candidates: Vec<Candidate> = views
            .iter()
            .map(|view| {
                let offer = self.offer(&view.id, task_type, model);
                Candidate {
                    id: view.id.clone(),
                    online: view.may_get_work()
                        && offer.can_run()
                        && !unavailable.contains(&view.id),
                    latency_ms: view.latency_ms,
                    in_flight: view.load(),
                    cores: view.capacity.cores,
                    gpu: view.capacity.gpu,
                    warm: offer == Offer::Warm,
                }
            })
            .collect();
        let order = select(
            &candidates,
            task_type,
            &self.selection,
            route.affinity,
            &mut self.rng,
        );
        actions.push_back(TaskAction::Selected {
            order: order.clone(),
            gpu_online: candidates.iter().any(|c| c.online && c.gpu),
        });
        order
            .into_iter()
            .map(|node| {
                let rtt = views
                    .iter()
                    .find(|view| view.id == node && node != self.me)
                    .and_then(|view| view.latency_ms)
                    .and_then(|ms| std::time::Duration::try_from_secs_f64(ms / 1000.0).ok());
                Target { node, rtt }
            })
            .collect()
    }

    fn release(&mut self, handle: TaskHandle, node: &NodeId) {
        let Some(entry) = self.tasks.get_mut(&handle) else {
            return;
        };
        if let Some(at) = entry.running.iter().position(|n| n == node) {
            entry.running.swap_remove(at);
            self.release_load(node);
        }
    }

    fn add_load(&mut self, node: &NodeId) {
        if *node == self.me {
            self.local_dispatched += 1;
        } else {
            self.membership.handle_dispatch(node);
        }
    }

    fn release_load(&mut self, node: &NodeId) {
        if *node == self.me {
            self.local_dispatched = self.local_dispatched.saturating_sub(1);
        } else {
            self.membership.handle_dispatch_done(node);
        }
    }

    /// The miss rule for a failed task call: counts against a peer (never this node).
    fn count_failure(&mut self, now: Instant, node: &NodeId) {
        if *node != self.me {
            self.membership.handle_task_failure(now, node);
            self.membership_woken = true;
        }
    }
}
