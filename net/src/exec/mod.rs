//! Running tasks on this node: executors per task type, a bounded priority queue in front of a
//! fixed number of workers, and the ledger that makes a repeated task id return the first run's
//! result instead of running again.

mod executors;
mod http_backend;
mod report;
mod runner;
mod scheduler;

pub use executors::{run_executor, TaskResult};
pub use http_backend::{CallError, HttpBackends};
pub use report::{Report, Reports};
pub use runner::{Runner, Started};
pub use scheduler::{Admission, Permit, Scheduler};

use triforce_core::failover::RemoteError;

/// Error codes a node reports for tasks it did not run or that failed while running.
pub mod code {
    /// The queue is full; nothing ran.
    pub const BUSY: &str = "busy";
    /// No executor for the task type on this node; nothing ran.
    pub const NO_EXECUTOR: &str = triforce_core::failover::NO_EXECUTOR;
    /// The local backend (HTTP server, program) could not be reached; nothing ran.
    pub const EXECUTOR_UNAVAILABLE: &str = "executor_unavailable";
    /// The executor ran and failed; running it elsewhere would repeat it.
    pub const EXECUTOR_FAILED: &str = "executor_failed";
    /// The node is shutting down; nothing ran.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// The task ran and its result is larger than a frame may carry; it is not run again.
    pub const RESULT_TOO_LARGE: &str = "result_too_large";
    /// The task id is known on that node with another type or payload; nothing ran.
    pub const TASK_ID_CONFLICT: &str = "task_id_conflict";
    /// The task frame was larger than the receiving node accepts; nothing ran.
    pub const REQUEST_TOO_LARGE: &str = "request_too_large";

    /// Codes after which the task must not be tried on another node: it ran there, or running
    /// it anywhere would fail the same way.
    pub const FINAL: [&str; 4] = [
        EXECUTOR_FAILED,
        RESULT_TOO_LARGE,
        TASK_ID_CONFLICT,
        REQUEST_TOO_LARGE,
    ];
}

pub fn remote_error(code: &str, message: impl Into<String>) -> RemoteError {
    let retryable = !code::FINAL.contains(&code);
    RemoteError {
        code: code.to_string(),
        message: message.into(),
        retryable,
    }
}
