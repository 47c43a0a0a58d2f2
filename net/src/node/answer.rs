//! The body of a task's HTTP answer: `{task_id, status, node, result | error, reason, attempts}`.
//!
//! Serialized straight from the outcome: building a `serde_json::Value` first cost a tree of
//! allocations per task (and a copy of the result) only to be written out and dropped.

use serde::Serialize;
use triforce_core::failover::{AttemptError, AttemptRecord, ExhaustedReason, TaskOutcome};

#[derive(Serialize)]
struct OutcomeJson<'a> {
    task_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a triforce_core::json::RawJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ExhaustedReason>,
    attempts: Vec<Attempt<'a>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct Attempt<'a> {
    node: &'a str,
    duration_ms: u64,
    error: Option<AttemptErrorBody<'a>>,
}

#[derive(Serialize)]
struct AttemptErrorBody<'a> {
    code: &'a str,
    detail: &'a AttemptError,
}

/// The answer to a task request that ended with `outcome`, as JSON bytes.
pub fn outcome_body(task_id: &str, outcome: &TaskOutcome) -> Vec<u8> {
    let attempts = outcome.attempts().iter().map(attempt).collect();
    let mut answer = OutcomeJson {
        task_id,
        status: outcome.status(),
        node: None,
        result: None,
        error: None,
        reason: None,
        attempts,
    };
    match outcome {
        TaskOutcome::Completed { node, result, .. } => {
            answer.node = Some(node.as_str());
            answer.result = Some(result);
        }
        TaskOutcome::Failed { node, error, .. } => {
            answer.node = Some(node.as_str());
            answer.error = Some(ErrorBody {
                code: error.code.as_str(),
                message: error.message.as_str().into(),
            });
        }
        TaskOutcome::AllNodesFailed { reason, .. } => {
            answer.reason = Some(*reason);
            answer.error = Some(ErrorBody {
                code: "all_nodes_failed",
                message: format!("no node completed the task ({})", reason_text(*reason)).into(),
            });
        }
    }
    serde_json::to_vec(&answer).expect("an answer serializes")
}

fn attempt(record: &AttemptRecord) -> Attempt<'_> {
    Attempt {
        node: record.node.as_str(),
        duration_ms: record.duration.as_millis() as u64,
        error: record.error.as_ref().map(|e| AttemptErrorBody {
            code: e.code(),
            detail: e,
        }),
    }
}

fn reason_text(reason: ExhaustedReason) -> &'static str {
    match reason {
        ExhaustedReason::NoCandidates => "no_candidates",
        ExhaustedReason::AllTried => "all_tried",
        ExhaustedReason::Deadline => "deadline",
        ExhaustedReason::RetryBudget => "retry_budget",
        ExhaustedReason::NoNodeRunsType => "no_node_runs_type",
        ExhaustedReason::NoNodeHasModel => "no_node_has_model",
        ExhaustedReason::BackendsDown => "backends_down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::time::Duration;
    use triforce_core::failover::RemoteError;
    use triforce_core::node::NodeId;
    use triforce_core::time::Instant;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn parsed(outcome: &TaskOutcome) -> Value {
        serde_json::from_slice(&outcome_body("t-1", outcome)).unwrap()
    }

    #[test]
    fn every_outcome_has_its_fields() {
        let timed_out = AttemptRecord {
            node: id("a"),
            started_at: Instant::ZERO,
            duration: Duration::from_millis(250),
            error: Some(AttemptError::AcceptTimeout),
        };
        let done = AttemptRecord {
            node: id("b"),
            error: None,
            ..timed_out.clone()
        };
        let completed = TaskOutcome::Completed {
            node: id("b"),
            result: json!({"text": "hi"}).into(),
            attempts: vec![timed_out.clone(), done],
        };
        assert_eq!(
            parsed(&completed),
            json!({"task_id": "t-1", "status": "completed", "node": "b", "result": {"text": "hi"},
                   "attempts": [
                       {"node": "a", "duration_ms": 250, "error": {"code": "accept_timeout", "detail": {"kind": "accept_timeout"}}},
                       {"node": "b", "duration_ms": 250, "error": null}]})
        );
        let failed = TaskOutcome::Failed {
            node: id("a"),
            error: RemoteError::new(triforce_core::failover::ErrorCode::ExecutorFailed, "boom"),
            attempts: vec![],
        };
        assert_eq!(
            parsed(&failed),
            json!({"task_id": "t-1", "status": "failed", "node": "a",
                   "error": {"code": "executor_failed", "message": "boom"}, "attempts": []})
        );
        let exhausted = TaskOutcome::AllNodesFailed {
            reason: ExhaustedReason::RetryBudget,
            attempts: vec![timed_out],
        };
        let body = parsed(&exhausted);
        assert_eq!(body["status"], "all_nodes_failed");
        assert_eq!(body["reason"], "retry_budget");
        assert_eq!(body["error"]["code"], "all_nodes_failed");
        assert_eq!(
            body["error"]["message"],
            "no node completed the task (retry_budget)"
        );
        assert!(body.get("result").is_none() && body.get("node").is_none());
    }
}
