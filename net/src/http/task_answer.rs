//! The seed API's answer to a task: the outcome as JSON with its status, or the relayed
//! answer streamed as the backend wrote it.

use axum::body::Body;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use triforce_core::failover::{ErrorCode, RemoteError, TaskOutcome, Verdict};
use triforce_core::json::RawJson;
use triforce_core::task::TaskRequest;
use triforce_core::translate::StreamBreak;

use crate::exec::{AnswerStream, RelayAnswer, StreamHead};
use crate::node::{outcome_body, Node, Submitted};

/// Runs `task` and answers as the seed's API does: the outcome, or a streamed answer for a
/// client that asked for one.
pub(super) async fn answer_task(node: &Node, task: TaskRequest, stream_wanted: bool) -> Response {
    let task_id = task.task_id.clone();
    // A relay-shaped payload naming a model routes by it, as the door's requests do, and keeps
    // its conversation on the node that has the history cached.
    let affinity = task
        .model()
        .and_then(|_| triforce_core::door::conversation_key(task.payload.as_bytes()));
    // A broken stream ends in the error event of the API its path belongs to.
    let stream_break = task
        .relay
        .as_ref()
        .map_or(StreamBreak::ChatCompletions, |relay| {
            StreamBreak::for_client(relay.dialect, &relay.path)
        });
    let Submitted { outcome, relayed } = node.submit_streaming(task, affinity).await;
    let outcome = match (outcome, relayed) {
        (
            TaskOutcome::Completed {
                node: ran_on,
                result: _,
                attempts,
            },
            Some(RelayAnswer { head, body }),
        ) => {
            if stream_wanted {
                // The backend's answer as it comes, in its own framing.
                return super::streamed_response(&head, body, stream_break, &ran_on, &task_id);
            }
            let body_max = node.config().settings.limits.body_bytes_max;
            let result = whole_answer(&head, body, body_max).await;
            match result {
                Ok(result) => TaskOutcome::Completed {
                    node: ran_on,
                    result,
                    attempts,
                },
                Err(message) => TaskOutcome::Failed {
                    node: ran_on,
                    error: RemoteError::new(ErrorCode::ExecutorFailed, message),
                    attempts,
                },
            }
        }
        (outcome, _) => outcome,
    };
    // Built directly: axum's tuple form copies the static content type into a new header value.
    let mut response = Response::new(Body::from(outcome_body(&task_id, &outcome)));
    *response.status_mut() = answer_status(&outcome);
    response.headers_mut().insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Whether the client asked for the answer as a stream (`Accept: text/event-stream`).
pub(super) fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// A streamed answer collected for a client that did not ask for a stream: `{status,
/// content_type, body}`, the body as JSON when it is JSON, else as text.
async fn whole_answer(
    head: &StreamHead,
    stream: AnswerStream,
    body_max: usize,
) -> Result<RawJson, String> {
    let body = stream.collect(body_max).await?;
    let body = match RawJson::parse(&body) {
        Ok(json) => json,
        Err(_) => RawJson::from(serde_json::Value::String(
            String::from_utf8_lossy(&body).into_owned(),
        )),
    };
    let text = format!(
        "{{\"status\":{},\"content_type\":{},\"body\":{}}}",
        head.status,
        serde_json::to_string(&head.content_type).expect("a string serializes"),
        body.get()
    );
    RawJson::parse_str(&text).map_err(|e| e.to_string())
}

/// The HTTP status of a task's answer. A conflict and a task type that no node runs are the
/// client's to fix (4xx); a failure of the work itself is the backend's (502); no node able
/// to take it now is the federation's (503).
/// The seed API's status for `outcome` (see [`Verdict`]).
fn answer_status(outcome: &TaskOutcome) -> StatusCode {
    StatusCode::from_u16(Verdict::of(outcome).status()).expect("verdicts are HTTP statuses")
}
