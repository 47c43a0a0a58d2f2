//! What the client gets for a task: the backend's answer (streamed as it comes), or an error
//! in the API's own shape naming why no node served it.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use triforce_core::failover::{AttemptRecord, ExhaustedReason, TaskOutcome, Verdict};
use triforce_core::json::RawJson;
use triforce_core::node::NodeId;
use triforce_core::translate::StreamBreak;

use super::shape::{Dialect, DoorCode, IngressError};
use crate::exec::{AnswerStream, RelayAnswer, StreamHead, WHOLE_ANSWER_MAX};
use crate::http::streamed_response;
use crate::node::Submitted;

/// The client's answer to the task of request `request_id`, of `task_type` asking for `model`.
/// What went wrong inside the federation (nodes, attempts, backend addresses and bodies) goes
/// to the node's log under the request id; the client gets a stable code and a plain sentence.
pub(super) async fn answer(
    api: Dialect,
    stream_break: StreamBreak,
    task_type: &str,
    model: Option<&str>,
    submitted: Submitted,
    request_id: &str,
) -> Result<Response, IngressError> {
    let Submitted { outcome, relayed } = submitted;
    let verdict = Verdict::of(&outcome);
    match outcome {
        TaskOutcome::Completed { node, result, .. } => {
            completed(api, stream_break, &node, &result, relayed, request_id).await
        }
        TaskOutcome::Failed { node, error, .. } => {
            tracing::warn!(request_id, %node, code = ?error.code, detail = %error.message, "a request failed");
            Err(match verdict {
                Verdict::TooLarge | Verdict::AnswerTooLarge => IngressError::new(
                    api,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    DoorCode::TooLarge,
                    "the request or its answer is larger than the federation carries (limits.body_bytes_max)",
                ),
                _ => IngressError::new(
                    api,
                    StatusCode::BAD_GATEWAY,
                    DoorCode::BackendError,
                    format!("the backend failed to answer (request {request_id})"),
                ),
            })
        }
        TaskOutcome::AllNodesFailed { reason, attempts } => Err(unserved(
            api, task_type, model, verdict, reason, &attempts, request_id,
        )),
    }
}

/// A completed task's answer: the backend's, streaming, or a non-relaying executor's JSON.
async fn completed(
    api: Dialect,
    stream_break: StreamBreak,
    node: &NodeId,
    result: &RawJson,
    relayed: Option<RelayAnswer>,
    request_id: &str,
) -> Result<Response, IngressError> {
    match relayed {
        Some(RelayAnswer { head, body }) => match head.length.filter(|n| *n <= WHOLE_ANSWER_MAX) {
            Some(length) => whole_response(api, &head, length, body, node, request_id).await,
            None => Ok(streamed_response(
                &head,
                body,
                stream_break,
                node,
                request_id,
            )),
        },
        // A node whose executor for the type is not a relay (echo, http, command): its JSON
        // result is the answer.
        None => {
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

/// An answer the relay read whole (the backend gave its length): passed on with that length,
/// so hyper writes head and body at once. An answer shorter or longer than its head said is
/// the backend's or the relay's fault, never passed off as whole.
async fn whole_response(
    api: Dialect,
    head: &StreamHead,
    length: u64,
    stream: AnswerStream,
    ran_on: &NodeId,
    request_id: &str,
) -> Result<Response, IngressError> {
    let broken = |detail: String| {
        tracing::warn!(request_id, node = %ran_on, %detail, "a whole answer broke off");
        IngressError::new(
            api,
            StatusCode::BAD_GATEWAY,
            DoorCode::BackendError,
            format!("the backend's answer broke off before its end (request {request_id})"),
        )
    };
    let body = stream.collect(length as usize).await.map_err(broken)?;
    if body.len() as u64 != length {
        return Err(broken(format!(
            "the answer ended after {} of its {length} bytes",
            body.len()
        )));
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&head.content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(ran_on.as_str()) {
        headers.insert("x-triforce-node", value);
    }
    Ok(response)
}

/// Why no node served the task, in words a client can act on; the attempts go to the log.
fn unserved(
    api: Dialect,
    task_type: &str,
    model: Option<&str>,
    verdict: Verdict,
    reason: ExhaustedReason,
    attempts: &[AttemptRecord],
    request_id: &str,
) -> IngressError {
    let model = model.unwrap_or_default();
    match verdict {
        Verdict::NoNodeHasModel => IngressError::new(
            api,
            StatusCode::NOT_FOUND,
            DoorCode::ModelNotFound,
            format!("the model {model:?} is not available on any online node"),
        ),
        Verdict::BackendsDown => IngressError::new(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            DoorCode::BackendsDown,
            format!("every backend with the model {model:?} is down; try again shortly"),
        ),
        // Its clients know 503 "no backend", not the seed API's 422.
        Verdict::NoNodeRunsType => IngressError::new(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            DoorCode::NoBackendAvailable,
            format!("no online node serves {task_type} requests"),
        ),
        _ => {
            for attempt in attempts {
                if let Some(error) = &attempt.error {
                    tracing::warn!(request_id, node = %attempt.node, ?reason, ?error, "an attempt failed");
                }
            }
            IngressError::new(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                DoorCode::NoBackendAvailable,
                format!(
                    "no node could serve the request; try again shortly (request {request_id})"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{answer_channel, Chunk};
    use bytes::Bytes;

    fn head(length: u64) -> StreamHead {
        StreamHead {
            status: 200,
            content_type: "application/json".into(),
            length: Some(length),
        }
    }

    /// A whole answer of `body`, ending with `end`, answered as one of `length` bytes.
    async fn answered(
        length: u64,
        body: &'static str,
        end: Chunk,
    ) -> Result<Response, IngressError> {
        let (chunks, stream) = answer_channel();
        chunks.try_send(Chunk::Data(Bytes::from(body))).unwrap();
        chunks.try_send(end).unwrap();
        let node = NodeId::new("relay").unwrap();
        whole_response(Dialect::OpenAi, &head(length), length, stream, &node, "r-1").await
    }

    #[tokio::test]
    async fn a_whole_answer_keeps_its_length() {
        let response = answered(11, "{\"ok\":true}", Chunk::End).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"ok\":true}");
    }

    #[tokio::test]
    async fn a_whole_answer_of_another_length_is_a_bad_gateway() {
        let short = answered(20, "{\"ok\":true}", Chunk::End).await.unwrap_err();
        assert_eq!(short.status, StatusCode::BAD_GATEWAY);
        assert!(
            short
                .message
                .contains("broke off before its end (request r-1)"),
            "{}",
            short.message
        );
        let long = answered(4, "{\"ok\":true}", Chunk::End).await.unwrap_err();
        assert_eq!(long.status, StatusCode::BAD_GATEWAY);
        let cut = answered(
            11,
            "{\"ok\":true}",
            Chunk::Failed(crate::exec::StreamFailure::RelayBrokeOff {
                node: NodeId::new("hub").unwrap(),
                error: "relay died at 10.0.0.7".into(),
            }),
        )
        .await
        .unwrap_err();
        assert!(!cut.message.contains("10.0.0.7"), "{}", cut.message);
    }
}
