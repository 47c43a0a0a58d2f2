//! Whether the executing node takes a task it was sent, decided from what it can run now.
//!
//! The sender chose this node from capabilities seen up to a heartbeat and a probe ago; this
//! node's own view is fresher, and it asks the same question the sender asked
//! ([`Capabilities::offer`]), so the two can never disagree on what "has the model" means. A
//! refusal for a type or a model it lacks is `no_executor`, so the task moves on to a node
//! that has them without spending the retry budget.
//!
//! A backend marked down is no reason to refuse: the sender chose this node anyway (nothing
//! better was online), and the relay itself is the quickest way to learn whether the backend
//! is back.

use crate::failover::{ErrorCode, RemoteError};
use crate::federation::{Capabilities, Offer};
use crate::task::TaskRequest;

/// What runs a task type here, as far as admission cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Relays a client's request to a model server (`openai`).
    Relay,
    /// Runs the task itself (echo, sleep, http, command).
    Local,
}

/// Takes `task`, for an executor of `kind` (`None`: no executor for its type), on a node that
/// can run `capabilities` now; or says why not.
pub fn admit(
    capabilities: &Capabilities,
    kind: Option<ExecutorKind>,
    task: &TaskRequest,
) -> Result<(), RemoteError> {
    let task_type = &task.task_type;
    match (kind, &task.relay) {
        (None, _) => {
            return Err(RemoteError::new(
                ErrorCode::NoExecutor,
                format!("no executor for task type {task_type:?}"),
            ))
        }
        (Some(ExecutorKind::Relay), None) => {
            return Err(RemoteError::new(
                ErrorCode::ExecutorFailed,
                format!(
                    "the executor for {task_type:?} here relays to a model server: the payload must be {{\"path\", \"body\"}}"
                ),
            ))
        }
        // A request for a model server to an executor that relays to none would be answered
        // with an echo or a script's output: it moves on to a node whose executor is a relay.
        (Some(ExecutorKind::Local), Some(relay)) => {
            return Err(RemoteError::new(
                ErrorCode::NoExecutor,
                format!(
                    "the executor for {task_type:?} here relays to no model server (path {:?}, model {:?})",
                    relay.path, relay.model
                ),
            ))
        }
        _ => {}
    }
    match capabilities.offer(task_type, task.model()) {
        Offer::NoType => Err(RemoteError::new(
            ErrorCode::NoExecutor,
            format!("no executor for task type {task_type:?}"),
        )),
        Offer::NoModel => Err(RemoteError::new(
            ErrorCode::NoExecutor,
            format!(
                "the backend for {task_type:?} here does not have model {:?}",
                task.model().unwrap_or_default()
            ),
        )),
        Offer::Draining => Err(RemoteError::new(
            ErrorCode::ShuttingDown,
            "node is draining or shutting down",
        )),
        Offer::Unhealthy | Offer::Cold | Offer::Warm => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::BackendState;
    use crate::json::RawJson;
    use crate::relay::RelayHead;

    fn node(models: &[&str], healthy: bool) -> Capabilities {
        Capabilities {
            task_types: vec!["chat".into(), "echo".into()],
            backends: vec![BackendState {
                task_type: "chat".into(),
                healthy,
                models: models.iter().map(|m| m.to_string()).collect(),
                loaded: Vec::new(),
            }],
            draining: false,
        }
    }

    fn task(task_type: &str, model: Option<&str>) -> TaskRequest {
        TaskRequest {
            task_id: "t1".into(),
            task_type: task_type.into(),
            payload: RawJson::parse_str("{}").unwrap(),
            priority: 0,
            relay: model.map(|m| RelayHead::new("/v1/chat/completions", Some(m.to_string()))),
        }
    }

    fn code(result: Result<(), RemoteError>) -> Option<ErrorCode> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn a_model_the_backend_lists_is_taken_one_it_does_not_is_no_executor() {
        let relay = Some(ExecutorKind::Relay);
        let caps = node(&["llama3"], true);
        assert_eq!(
            code(admit(&caps, relay, &task("chat", Some("llama3")))),
            None
        );
        assert_eq!(
            code(admit(&caps, relay, &task("chat", Some("llama3:latest")))),
            None
        );
        assert_eq!(
            code(admit(&caps, relay, &task("chat", Some("qwen")))),
            Some(ErrorCode::NoExecutor)
        );
        // Not probed yet (no list): it might have anything.
        let unprobed = node(&[], true);
        assert_eq!(
            code(admit(&unprobed, relay, &task("chat", Some("qwen")))),
            None
        );
        // Down: the relay finds out whether it is back.
        let down = node(&["llama3"], false);
        assert_eq!(
            code(admit(&down, relay, &task("chat", Some("llama3")))),
            None
        );
    }

    #[test]
    fn kinds_and_types_that_do_not_fit_are_refused() {
        let caps = node(&["llama3"], true);
        assert_eq!(
            code(admit(&caps, None, &task("nope", None))),
            Some(ErrorCode::NoExecutor)
        );
        assert_eq!(
            code(admit(&caps, Some(ExecutorKind::Relay), &task("chat", None))),
            Some(ErrorCode::ExecutorFailed)
        );
        assert_eq!(
            code(admit(
                &caps,
                Some(ExecutorKind::Local),
                &task("echo", Some("m"))
            )),
            Some(ErrorCode::NoExecutor)
        );
        assert_eq!(
            code(admit(&caps, Some(ExecutorKind::Local), &task("echo", None))),
            None
        );
        let draining = Capabilities {
            draining: true,
            ..caps
        };
        assert_eq!(
            code(admit(
                &draining,
                Some(ExecutorKind::Local),
                &task("echo", None)
            )),
            Some(ErrorCode::ShuttingDown)
        );
    }
}
