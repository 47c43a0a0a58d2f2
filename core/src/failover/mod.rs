//! Running one task over the failover list: one state machine per task, and the retry budget
//! shared by all of them.
//!
//! An attempt goes through: dispatched -> accepted (the target acknowledged it) -> progress ...
//! -> result. The timers make failover fast without guessing:
//!
//! - no acknowledgement within a few round trips (`ACCEPT_RTTS` of the node's measured RTT,
//!   bounded by `accept_timeout_min` and `accept_timeout`): the task never started there, so
//!   moving on is safe (the driver also abandons the call, which the target sees before it
//!   starts);
//! - acknowledged, then silent for `progress_timeout`: the target died mid-task;
//! - alive and reporting progress but slow: only `attempt_timeout` (the seed's 30 s) ends it;
//! - `deadline` bounds the whole task across attempts.
//!
//! Each candidate is tried at most once, so no node is retried while others remain. A result
//! that arrives late from a node given up on by timeout is still taken: the work is done.

mod budget;
mod error_code;
mod outcome;
mod task;
mod verdict;

pub use budget::RetryBudget;
pub use error_code::ErrorCode;
pub use outcome::{
    AbandonReason, Action, AttemptError, AttemptRecord, ExhaustedReason, RemoteError, TaskOutcome,
};
pub use task::{FailoverConfig, Target, TaskFailover, ACCEPT_RTTS};
pub use verdict::Verdict;
