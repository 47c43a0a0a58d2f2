//! A streamed answer as an HTTP answer, for the AI door and the seed's task API alike: chunks
//! out as they arrive, an error event in the API's shape if the stream breaks. Dropped by hyper when the client leaves, which drops the
//! stream and so cancels the task upstream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};

use axum::body::Body as AxumBody;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;
use triforce_core::node::NodeId;
use triforce_core::usage::Framing;

use crate::exec::{AnswerStream, Chunk, StreamHead};

pub struct StreamedBody {
    stream: AnswerStream,
    framing: Framing,
    /// The request (or task) id a break is logged under.
    request_id: String,
    done: bool,
}

/// What a client reads when its stream broke off; why goes to the log.
const STREAM_BROKE_OFF: &str = "the answer broke off before its end";

impl StreamedBody {
    pub fn new(stream: AnswerStream, framing: Framing, request_id: String) -> Self {
        StreamedBody {
            stream,
            framing,
            request_id,
            done: false,
        }
    }
}

impl Body for StreamedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let chunk = match self.stream.poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(chunk) => chunk,
        };
        match chunk {
            Some(Chunk::Data(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Chunk::End) | None => {
                self.done = true;
                Poll::Ready(None)
            }
            Some(Chunk::Failed(error)) => {
                self.done = true;
                tracing::warn!(request_id = %self.request_id, %error, "a streamed answer broke off");
                match stream_error_event(self.framing, STREAM_BROKE_OFF) {
                    Some(event) => Poll::Ready(Some(Ok(Frame::data(event)))),
                    None => Poll::Ready(Some(Err(std::io::Error::other(STREAM_BROKE_OFF)))),
                }
            }
        }
    }
}

/// The event that ends a stream that broke off, in the stream's framing; `None` where no
/// event fits (a whole document), in which case the connection is aborted instead, which
/// every client reports as an incomplete answer.
pub fn stream_error_event(framing: Framing, message: &str) -> Option<Bytes> {
    let text = match framing {
        Framing::ServerSentEvents => {
            let event = json!({"error": {"message": message, "type": "server_error",
                                         "param": null, "code": "stream_interrupted"}});
            format!("data: {event}\n\n")
        }
        Framing::JsonLines => format!("{}\n", json!({"error": message})),
        Framing::Whole => return None,
    };
    Some(Bytes::from(text))
}

/// A streamed answer as the backend began it (its status and content type), its body passed
/// on chunk by chunk: the AI door's, and the seed's task API's answer to `Accept:
/// text/event-stream`. A break is logged under `request_id`.
pub fn streamed_response(
    head: &StreamHead,
    stream: AnswerStream,
    ran_on: &NodeId,
    request_id: &str,
) -> Response {
    let framing = Framing::of(&head.content_type);
    let body = StreamedBody::new(stream, framing, request_id.to_string());
    let mut response = Response::new(AxumBody::new(body));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_events_fit_their_framing() {
        let sse =
            stream_error_event(Framing::of("text/event-stream; charset=utf-8"), "gone").unwrap();
        let text = std::str::from_utf8(&sse).unwrap();
        assert!(text.starts_with("data: {") && text.ends_with("\n\n"));
        let event: serde_json::Value = serde_json::from_str(&text[6..]).unwrap();
        assert_eq!(event["error"]["message"], "gone");
        let line = stream_error_event(Framing::of("application/x-ndjson"), "gone").unwrap();
        assert_eq!(&line[..], b"{\"error\":\"gone\"}\n");
        assert!(stream_error_event(Framing::of("application/json"), "gone").is_none());
    }
}
