//! What the client gets for a task: the backend's answer (streamed as it comes), or an error
//! in the API's own shape naming why no node served it.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use triforce_core::failover::{
    AttemptError, AttemptRecord, ErrorCode, ExhaustedReason, TaskOutcome,
};
use triforce_core::json::RawJson;
use triforce_core::node::NodeId;

use super::body::StreamedBody;
use super::shape::{Api, Framing, IngressError};
use crate::exec::{AnswerStream, StreamHead};
use crate::node::Submitted;

/// The client's answer to a task of `task_type` asking for `model`.
pub(super) fn answer(
    api: Api,
    task_type: &str,
    model: Option<&str>,
    submitted: Submitted,
) -> Result<Response, IngressError> {
    let Submitted { outcome, stream } = submitted;
    match outcome {
        TaskOutcome::Completed { node, result, .. } => completed(api, &node, &result, stream),
        TaskOutcome::Failed { node, error, .. } => {
            let (status, code) = match error.code {
                ErrorCode::ResultTooLarge | ErrorCode::RequestTooLarge => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
                }
                _ => (StatusCode::BAD_GATEWAY, "backend_error"),
            };
            Err(IngressError::new(
                api,
                status,
                code,
                format!("{node}: {}", error.message),
            ))
        }
        TaskOutcome::AllNodesFailed { reason, attempts } => {
            Err(unserved(api, task_type, model, reason, &attempts))
        }
    }
}

/// A completed task's answer: the backend's, streaming, or a non-relaying executor's JSON.
fn completed(
    api: Api,
    node: &NodeId,
    result: &RawJson,
    stream: Option<AnswerStream>,
) -> Result<Response, IngressError> {
    match (StreamHead::from_json(result), stream) {
        (Some(head), Some(stream)) => Ok(streamed_response(&head, stream, node)),
        (Some(_), None) => Err(IngressError::new(
            api,
            StatusCode::BAD_GATEWAY,
            "answer_lost",
            "the backend's answer went to an earlier attempt of this task",
        )),
        // A node whose executor for the type is not a relay (echo, http, command): its JSON
        // result is the answer.
        (None, _) => {
            let mut response = (
                StatusCode::OK,
                [(CONTENT_TYPE, "application/json")],
                result.get().to_string(),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(node.as_str()) {
                response.headers_mut().insert("x-triforce-node", value);
            }
            Ok(response)
        }
    }
}

/// A streamed answer as the backend began it (its status and content type), its body passed
/// on chunk by chunk; also the seed's task API's answer to `Accept: text/event-stream`.
pub fn streamed_response(head: &StreamHead, stream: AnswerStream, ran_on: &NodeId) -> Response {
    let framing = Framing::of(&head.content_type);
    let mut response = Response::new(Body::new(StreamedBody::new(stream, framing)));
    *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&head.content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx and its kin in front of the node not to buffer either.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(value) = HeaderValue::from_str(ran_on.as_str()) {
        headers.insert("x-triforce-node", value);
    }
    response
}

/// Why no node served the task, in words a client can act on.
fn unserved(
    api: Api,
    task_type: &str,
    model: Option<&str>,
    reason: ExhaustedReason,
    attempts: &[AttemptRecord],
) -> IngressError {
    let model = model.unwrap_or_default();
    let no_type = || {
        IngressError::new(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "no_backend_available",
            format!("no online node runs {task_type} tasks (configure an openai executor for {task_type:?})"),
        )
    };
    match reason {
        ExhaustedReason::NoNodeHasModel => IngressError::new(
            api,
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("the model {model:?} is not available on any online node"),
        ),
        ExhaustedReason::BackendsDown => IngressError::new(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "backends_down",
            format!("every backend with the model {model:?} is down (their nodes are up); try again shortly"),
        ),
        ExhaustedReason::NoNodeRunsType => no_type(),
        _ if !attempts.is_empty()
            && attempts.iter().all(|a| {
                matches!(&a.error, Some(AttemptError::Remote(r)) if r.code == ErrorCode::NoExecutor)
            }) =>
        {
            no_type()
        }
        _ => {
            let last = attempts
                .iter()
                .rev()
                .find_map(|a| a.error.as_ref().map(|e| format!("{}: {e:?}", a.node)))
                .unwrap_or_else(|| "no node was online to try".to_string());
            IngressError::new(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "no_backend_available",
                format!("no node could serve the request ({reason:?}); last: {last}"),
            )
        }
    }
}
