//! What a task is, as the seed's `POST /v1/federation/task` carries it.

use serde::{Deserialize, Serialize};

/// The longest task id accepted, in bytes; task ids key the ledger and the logs.
pub const TASK_ID_LEN_MAX: usize = 128;
/// The longest task type accepted, in bytes.
pub const TASK_TYPE_LEN_MAX: usize = 64;

/// A task as submitted: `{task_id, type, payload, priority}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Higher runs first under saturation.
    #[serde(default)]
    pub priority: i32,
}

/// Why a task body was refused before any work was done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskRequestError {
    #[error("body is not a task: {0}")]
    Shape(String),
    #[error("task_id must be 1..={TASK_ID_LEN_MAX} printable ASCII characters")]
    TaskId,
    #[error("type must be 1..={TASK_TYPE_LEN_MAX} ASCII letters, digits, '-', '_' or '.'")]
    TaskType,
}

impl TaskRequest {
    /// Parses and checks a task body. Never panics; the error names the first problem.
    pub fn parse(body: &[u8]) -> Result<Self, TaskRequestError> {
        let task: TaskRequest =
            serde_json::from_slice(body).map_err(|e| TaskRequestError::Shape(e.to_string()))?;
        task.check()?;
        Ok(task)
    }

    /// Checks the fields a peer controls.
    pub fn check(&self) -> Result<(), TaskRequestError> {
        let id_ok = !self.task_id.is_empty()
            && self.task_id.len() <= TASK_ID_LEN_MAX
            && self.task_id.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok {
            return Err(TaskRequestError::TaskId);
        }
        let type_ok = !self.task_type.is_empty()
            && self.task_type.len() <= TASK_TYPE_LEN_MAX
            && self
                .task_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !type_ok {
            return Err(TaskRequestError::TaskType);
        }
        Ok(())
    }
}
