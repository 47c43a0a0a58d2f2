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
    pub const NO_EXECUTOR: &str = "no_executor";
    /// The local backend (HTTP server, program) could not be reached; nothing ran.
    pub const EXECUTOR_UNAVAILABLE: &str = "executor_unavailable";
    /// The executor ran and failed; running it elsewhere would repeat it.
    pub const EXECUTOR_FAILED: &str = "executor_failed";
    /// The node is shutting down; nothing ran.
    pub const SHUTTING_DOWN: &str = "shutting_down";
}

pub fn remote_error(code: &str, message: impl Into<String>) -> RemoteError {
    let retryable = code != code::EXECUTOR_FAILED;
    RemoteError {
        code: code.to_string(),
        message: message.into(),
        retryable,
    }
}
