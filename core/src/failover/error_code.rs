//! The codes a node answers with instead of a result: one list, each with whether the task may
//! run elsewhere, so no caller decides a retry by comparing strings.

use serde::{Deserialize, Serialize};

/// Why a node did not produce a task's result. Serialized as its snake_case name (the `code`
/// of the JSON answers, and on the wire between nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The node's queue is full; nothing ran.
    Busy,
    /// The node has no executor for the task's type; nothing ran.
    NoExecutor,
    /// The node's backend (HTTP server, program) could not be reached; nothing ran.
    ExecutorUnavailable,
    /// The node is shutting down; nothing ran.
    ShuttingDown,
    /// The executor ran and failed; running it elsewhere would repeat it.
    ExecutorFailed,
    /// The task ran and its result is larger than a frame may carry.
    ResultTooLarge,
    /// The task id is known on that node with another type or payload; nothing ran, and
    /// nothing would run under that id anywhere the first one did.
    TaskIdConflict,
    /// The task frame was over the receiving node's limit; every node has the same limit.
    RequestTooLarge,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::Busy,
        ErrorCode::NoExecutor,
        ErrorCode::ExecutorUnavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::ExecutorFailed,
        ErrorCode::ResultTooLarge,
        ErrorCode::TaskIdConflict,
        ErrorCode::RequestTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Busy => "busy",
            ErrorCode::NoExecutor => "no_executor",
            ErrorCode::ExecutorUnavailable => "executor_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::ExecutorFailed => "executor_failed",
            ErrorCode::ResultTooLarge => "result_too_large",
            ErrorCode::TaskIdConflict => "task_id_conflict",
            ErrorCode::RequestTooLarge => "request_too_large",
        }
    }

    /// Whether the task certainly did not run on that node and may be tried on another.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Busy
                | ErrorCode::NoExecutor
                | ErrorCode::ExecutorUnavailable
                | ErrorCode::ShuttingDown
        )
    }

    /// Whether moving on after this answer spends the retry budget. The budget keeps a sick
    /// cluster from being flooded with retries; a node that simply does not run the type is not
    /// sick, and a burst of tasks of a type nobody runs must not leave a real failure (a GPU
    /// node dying mid-task) without the retry it was budgeted for.
    pub fn spends_retry_budget(self) -> bool {
        self != ErrorCode::NoExecutor
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_their_serialized_form() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn only_work_that_never_ran_is_retried() {
        let retried: Vec<_> = ErrorCode::ALL
            .into_iter()
            .filter(|c| c.retryable())
            .collect();
        assert_eq!(
            retried,
            [
                ErrorCode::Busy,
                ErrorCode::NoExecutor,
                ErrorCode::ExecutorUnavailable,
                ErrorCode::ShuttingDown
            ]
        );
    }
}
