//! What a task is, as the seed's `POST /v1/federation/task` carries it.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::json::RawJson;
use crate::relay::{split_envelope, EnvelopeError, RelayHead};

/// The longest task id accepted, in bytes; task ids key the ledger and the logs.
pub const TASK_ID_LEN_MAX: usize = 128;
/// The longest task type accepted, in bytes.
pub const TASK_TYPE_LEN_MAX: usize = 64;
/// Priorities a task may carry. Bounded so that a sender cannot claim a priority no
/// operator-configured task can ever match (any `i32` was accepted before).
pub const PRIORITY_RANGE: RangeInclusive<i32> = -1000..=1000;

/// A task as submitted: `{task_id, type, payload, priority}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    /// The payload as the client wrote it; forwarded and handed to executors byte for byte.
    #[serde(default = "RawJson::null")]
    pub payload: RawJson,
    /// Higher runs first under saturation.
    #[serde(default)]
    pub priority: i32,
    /// For a request relayed to a model server: what every node reads of it, typed once where
    /// it entered. The payload is then the body relayed, as the client wrote it. Filled by the
    /// door, and by [`TaskRequest::parse`] from a payload in the relay shape.
    #[serde(skip)]
    pub relay: Option<RelayHead>,
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
    #[error("priority {0} is outside {min}..={max}", min = PRIORITY_RANGE.start(), max = PRIORITY_RANGE.end())]
    Priority(i32),
    #[error("payload: {0}")]
    Relay(#[from] EnvelopeError),
}

impl TaskRequest {
    /// Parses and checks a task body. Never panics; the error names the first problem. A
    /// payload in the relay shape (`{"path", "body"}`) is split into its typed head and the body.
    pub fn parse(body: &[u8]) -> Result<Self, TaskRequestError> {
        let mut task: TaskRequest =
            serde_json::from_slice(body).map_err(|e| TaskRequestError::Shape(e.to_string()))?;
        task.check()?;
        if let Some(split) = split_envelope(&task.payload) {
            let (head, body) = split?;
            task.relay = Some(head);
            task.payload = body;
        }
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
        if !PRIORITY_RANGE.contains(&self.priority) {
            return Err(TaskRequestError::Priority(self.priority));
        }
        Ok(())
    }
}

impl TaskRequest {
    /// A digest of what the task asks for (type, the relayed path and payload bytes), kept
    /// beside its id in the executing node's ledger: the same id with other work is a conflict,
    /// not a retry.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update((self.task_type.len() as u64).to_be_bytes());
        hasher.update(self.task_type.as_bytes());
        if let Some(relay) = &self.relay {
            hasher.update((relay.path.len() as u64).to_be_bytes());
            hasher.update(relay.path.as_bytes());
        }
        hasher.update(self.payload.as_bytes());
        hasher.finalize().into()
    }

    /// The model a relayed request names, if it names one.
    pub fn model(&self) -> Option<&str> {
        self.relay.as_ref()?.model.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_outside_the_range_is_refused() {
        let body = |p: i64| format!("{{\"task_id\":\"t\",\"type\":\"echo\",\"priority\":{p}}}");
        assert!(TaskRequest::parse(body(1000).as_bytes()).is_ok());
        assert!(TaskRequest::parse(body(-1000).as_bytes()).is_ok());
        assert_eq!(
            TaskRequest::parse(body(1001).as_bytes()),
            Err(TaskRequestError::Priority(1001))
        );
        assert!(TaskRequest::parse(body(-2147483648).as_bytes()).is_err());
    }

    #[test]
    fn the_payload_is_kept_as_written() {
        let task =
            TaskRequest::parse(b"{\"task_id\":\"t\",\"type\":\"echo\",\"payload\":[1e15, 2]}")
                .unwrap();
        assert_eq!(task.payload.get(), "[1e15, 2]");
        let other = TaskRequest {
            payload: RawJson::parse(b"[1e15,2]").unwrap(),
            ..task.clone()
        };
        assert_ne!(task.digest(), other.digest(), "other bytes, other digest");
    }

    #[test]
    fn a_relayed_payload_is_typed_once_and_its_path_is_part_of_the_digest() {
        let body = |path: &str| {
            format!(
                r#"{{"task_id":"t","type":"chat","payload":{{"path":"{path}","body":{{"model":"qwen"}}}}}}"#
            )
        };
        let chat = TaskRequest::parse(body("/v1/chat/completions").as_bytes()).unwrap();
        assert_eq!(chat.model(), Some("qwen"));
        assert_eq!(chat.payload.get(), r#"{"model":"qwen"}"#);
        let completion = TaskRequest::parse(body("/v1/completions").as_bytes()).unwrap();
        assert_eq!(chat.payload, completion.payload);
        assert_ne!(chat.digest(), completion.digest());
        assert!(matches!(
            TaskRequest::parse(body("/v1/../x").as_bytes()),
            Err(TaskRequestError::Relay(_))
        ));
    }
}
