//! What a task's outcome means to the client that asked, decided once for both doors.
//!
//! The seed's task API and the AI door answer in different shapes (the seed's outcome JSON;
//! OpenAI's and Ollama's error bodies), but they must agree on what an outcome is: which
//! failures are the request's fault, which say "nothing here serves this", which say "try again
//! shortly". That judgement used to be written twice, rule for rule (the "every node answered
//! `no_executor`" rule among them). Each door now maps a [`Verdict`] to its own status and body.

use super::{AttemptError, ErrorCode, ExhaustedReason, TaskOutcome};

/// What an outcome means to its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A node answered: the client gets the answer.
    Answered,
    /// The task id is in use on the node with other work (seed API: 409).
    IdConflict,
    /// The request is larger than a node takes (413).
    TooLarge,
    /// The task ran; its answer is larger than the federation carries (seed API: 502; the
    /// door: 413, as for a request).
    AnswerTooLarge,
    /// The node that ran it failed: running it again elsewhere would repeat it (502).
    Failed,
    /// No online node runs the task's type: the request asks for something this federation
    /// does not do (seed API: 422; the door: 503, its clients' "no backend").
    NoNodeRunsType,
    /// No online node's backend has the model the request names (404).
    NoNodeHasModel,
    /// The only backends with the model are down; their nodes are up (503).
    BackendsDown,
    /// Nodes could run it but none did in time: try again shortly (503).
    Unavailable,
}

impl Verdict {
    /// The verdict on `outcome`.
    pub fn of(outcome: &TaskOutcome) -> Verdict {
        match outcome {
            TaskOutcome::Completed { .. } => Verdict::Answered,
            TaskOutcome::Failed { error, .. } => match error.code {
                ErrorCode::TaskIdConflict => Verdict::IdConflict,
                ErrorCode::RequestTooLarge => Verdict::TooLarge,
                ErrorCode::ResultTooLarge => Verdict::AnswerTooLarge,
                _ => Verdict::Failed,
            },
            TaskOutcome::AllNodesFailed { reason, attempts } => match reason {
                ExhaustedReason::NoNodeRunsType => Verdict::NoNodeRunsType,
                ExhaustedReason::NoNodeHasModel => Verdict::NoNodeHasModel,
                ExhaustedReason::BackendsDown => Verdict::BackendsDown,
                // Every node tried said it has no executor for the type: capabilities seen a
                // heartbeat ago promised one, but none runs it now.
                _ if !attempts.is_empty()
                    && attempts.iter().all(|a| {
                        matches!(&a.error, Some(AttemptError::Remote(r)) if r.code == ErrorCode::NoExecutor)
                    }) =>
                {
                    Verdict::NoNodeRunsType
                }
                _ => Verdict::Unavailable,
            },
        }
    }

    /// The HTTP status the seed's task API answers with; the AI door differs only where its
    /// clients expect otherwise (see [`Verdict::NoNodeRunsType`]).
    pub fn status(self) -> u16 {
        match self {
            Verdict::Answered => 200,
            Verdict::IdConflict => 409,
            Verdict::TooLarge => 413,
            Verdict::Failed | Verdict::AnswerTooLarge => 502,
            Verdict::NoNodeRunsType => 422,
            Verdict::NoNodeHasModel => 404,
            Verdict::BackendsDown | Verdict::Unavailable => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::{AttemptRecord, RemoteError};
    use crate::json::RawJson;
    use crate::node::NodeId;
    use crate::time::Instant;
    use std::time::Duration;

    fn node() -> NodeId {
        NodeId::new("a").unwrap()
    }

    fn failed(code: ErrorCode) -> TaskOutcome {
        TaskOutcome::Failed {
            node: node(),
            error: RemoteError::new(code, "x"),
            attempts: vec![],
        }
    }

    fn exhausted(reason: ExhaustedReason, errors: &[ErrorCode]) -> TaskOutcome {
        let attempts = errors
            .iter()
            .map(|code| AttemptRecord {
                node: node(),
                started_at: Instant::ZERO,
                duration: Duration::ZERO,
                error: Some(AttemptError::Remote(RemoteError::new(*code, "x"))),
            })
            .collect();
        TaskOutcome::AllNodesFailed { reason, attempts }
    }

    #[test]
    fn each_outcome_has_one_verdict() {
        let completed = TaskOutcome::Completed {
            node: node(),
            result: RawJson::null(),
            attempts: vec![],
        };
        assert_eq!(Verdict::of(&completed), Verdict::Answered);
        assert_eq!(
            Verdict::of(&failed(ErrorCode::TaskIdConflict)).status(),
            409
        );
        assert_eq!(
            Verdict::of(&failed(ErrorCode::RequestTooLarge)).status(),
            413
        );
        assert_eq!(
            Verdict::of(&failed(ErrorCode::ResultTooLarge)).status(),
            502
        );
        assert_eq!(
            Verdict::of(&failed(ErrorCode::ExecutorFailed)).status(),
            502
        );
        let no_model = exhausted(ExhaustedReason::NoNodeHasModel, &[]);
        assert_eq!(Verdict::of(&no_model).status(), 404);
    }

    #[test]
    fn every_node_without_an_executor_means_no_node_runs_the_type() {
        let all_said_no = exhausted(
            ExhaustedReason::AllTried,
            &[ErrorCode::NoExecutor, ErrorCode::NoExecutor],
        );
        assert_eq!(Verdict::of(&all_said_no), Verdict::NoNodeRunsType);
        let one_was_busy = exhausted(
            ExhaustedReason::AllTried,
            &[ErrorCode::NoExecutor, ErrorCode::Busy],
        );
        assert_eq!(Verdict::of(&one_was_busy), Verdict::Unavailable);
        assert_eq!(
            Verdict::of(&exhausted(ExhaustedReason::NoCandidates, &[])),
            Verdict::Unavailable,
            "no attempt is no answer"
        );
    }
}
