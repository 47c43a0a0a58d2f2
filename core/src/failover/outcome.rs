//! What a task's failover produces: actions for the driver, and exactly one outcome.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ErrorCode;
use crate::json::RawJson;
use crate::node::NodeId;
use crate::time::Instant;

/// What the driver must do for a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the task to `node`; `attempt` counts from 1.
    Dispatch { node: NodeId, attempt: u32 },
    /// Stop waiting for `node` and cancel the call, so it does not start the task late.
    /// `reason` says whether the node is to blame (see [`AbandonReason::is_peer_failure`]).
    Abandon { node: NodeId, reason: AbandonReason },
    /// Every candidate has been tried: select again with the current view, counting the nodes
    /// in `tried` as unavailable (they just failed this task, whatever the heartbeats say), and
    /// answer with [`super::TaskFailover::handle_candidates`]. Nodes already tried are never
    /// tried again, so this ends.
    Reselect { tried: Vec<NodeId> },
}

/// Why an attempt was abandoned. Only some of these say anything about the node's health: an
/// attempt given up because another node's result won, or because the task's own deadline
/// came first, is no evidence against a peer that may be perfectly well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbandonReason {
    /// Never acknowledged within its accept timeout.
    AcceptTimeout,
    /// Acknowledged, then silent for the progress timeout.
    ProgressLost,
    /// Alive but still running at the attempt timeout.
    AttemptTimeout,
    /// The task's overall deadline passed.
    Deadline,
    /// A late result from an earlier attempt ended the task first.
    Superseded,
}

impl AbandonReason {
    /// Whether the abandoned attempt is evidence that the node is unreachable or dead (it
    /// then counts towards the node's heartbeat misses).
    pub fn is_peer_failure(self) -> bool {
        matches!(
            self,
            AbandonReason::AcceptTimeout | AbandonReason::ProgressLost
        )
    }
}

/// An error the target node reported instead of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    pub code: ErrorCode,
    pub message: String,
}

impl RemoteError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RemoteError {
            code,
            message: message.into(),
        }
    }

    /// Whether the task certainly did not run there, so another node may try it.
    pub fn retryable(&self) -> bool {
        self.code.retryable()
    }

    /// See [`ErrorCode::spends_retry_budget`].
    pub fn spends_retry_budget(&self) -> bool {
        self.code.spends_retry_budget()
    }
}

/// Why one attempt did not produce the task's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptError {
    /// The node could not be reached or the connection broke.
    Connection { message: String },
    /// Not acknowledged within the accept timeout: it never started there.
    AcceptTimeout,
    /// Acknowledged, then silent for the progress timeout: the node died mid-task.
    ProgressLost,
    /// Still running at the attempt timeout.
    AttemptTimeout,
    /// The task's overall deadline passed during this attempt.
    Deadline,
    /// The node answered with an error.
    Remote(RemoteError),
}

impl AttemptError {
    /// Short code for logs, metrics and JSON.
    pub fn code(&self) -> &str {
        match self {
            AttemptError::Connection { .. } => "connection",
            AttemptError::AcceptTimeout => "accept_timeout",
            AttemptError::ProgressLost => "progress_lost",
            AttemptError::AttemptTimeout => "attempt_timeout",
            AttemptError::Deadline => "deadline",
            AttemptError::Remote(e) => e.code.as_str(),
        }
    }

    /// Whether this attempt's node may still deliver a result later (it was given up on by a
    /// timer, not by an answer).
    pub fn may_still_finish(&self) -> bool {
        matches!(
            self,
            AttemptError::AttemptTimeout | AttemptError::ProgressLost
        )
    }
}

/// One attempt, as listed in the task's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub node: NodeId,
    pub started_at: Instant,
    pub duration: Duration,
    /// `None` for the attempt that produced the outcome.
    pub error: Option<AttemptError>,
}

/// Why a task ended without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExhaustedReason {
    /// Selection offered no node (none online, or none able to run the type).
    NoCandidates,
    /// Every candidate was tried and failed.
    AllTried,
    /// The task's deadline passed.
    Deadline,
    /// The retry budget was spent.
    RetryBudget,
    /// No online node has an executor for the task's type (from their capabilities; no
    /// attempt was made).
    NoNodeRunsType,
    /// Nodes run the type, but no online node's backend has the requested model.
    NoNodeHasModel,
    /// The only backends with the model are down (their nodes are up).
    BackendsDown,
}

/// How a task ended. Every task ends with exactly one.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskOutcome {
    Completed {
        node: NodeId,
        result: RawJson,
        attempts: Vec<AttemptRecord>,
    },
    /// The task ran on `node` and its executor reported an error: running it elsewhere would
    /// repeat work that already happened, so it is not retried.
    Failed {
        node: NodeId,
        error: RemoteError,
        attempts: Vec<AttemptRecord>,
    },
    AllNodesFailed {
        reason: ExhaustedReason,
        attempts: Vec<AttemptRecord>,
    },
}

impl TaskOutcome {
    pub fn attempts(&self) -> &[AttemptRecord] {
        match self {
            TaskOutcome::Completed { attempts, .. }
            | TaskOutcome::Failed { attempts, .. }
            | TaskOutcome::AllNodesFailed { attempts, .. } => attempts,
        }
    }

    /// `completed`, `failed` or `all_nodes_failed`.
    pub fn status(&self) -> &'static str {
        match self {
            TaskOutcome::Completed { .. } => "completed",
            TaskOutcome::Failed { .. } => "failed",
            TaskOutcome::AllNodesFailed { .. } => "all_nodes_failed",
        }
    }
}
