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
use triforce_core::node::NodeId;
use triforce_core::translate::StreamBreak;
use triforce_core::usage::Framing;

use crate::exec::{AnswerStream, Chunk, StreamFailure, StreamHead};

pub struct StreamedBody {
    stream: AnswerStream,
    framing: Framing,
    /// The client's API, whose error event ends a stream that broke.
    stream_break: StreamBreak,
    /// The request (or task) id a break is logged under.
    request_id: String,
    done: bool,
}

impl StreamedBody {
    pub fn new(
        stream: AnswerStream,
        framing: Framing,
        stream_break: StreamBreak,
        request_id: String,
    ) -> Self {
        StreamedBody {
            stream,
            framing,
            stream_break,
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
            // `None` comes only after the end: a stream whose writer went away without one
            // reads as `Failed` first (`AnswerStream::poll_next`).
            Some(Chunk::End) | None => {
                self.done = true;
                Poll::Ready(None)
            }
            Some(Chunk::Failed(failure)) => self.broke_off(&failure),
        }
    }
}

impl StreamedBody {
    /// Ends the body with the client's API's error event (or, for a framing without one, a
    /// transport error).
    fn broke_off(
        &mut self,
        failure: &StreamFailure,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.done = true;
        tracing::warn!(request_id = %self.request_id, %failure, "a streamed answer broke off");
        let message = failure.for_client();
        match self.stream_break.event(self.framing, message) {
            Some(event) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(event))))),
            None => Poll::Ready(Some(Err(std::io::Error::other(message)))),
        }
    }
}

/// A streamed answer as the backend began it (its status and content type), its body passed
/// on chunk by chunk: the AI door's, and the seed's task API's answer to `Accept:
/// text/event-stream`. A break ends it with `stream_break`'s event, and is logged under
/// `request_id`.
pub fn streamed_response(
    head: &StreamHead,
    stream: AnswerStream,
    stream_break: StreamBreak,
    ran_on: &NodeId,
    request_id: &str,
) -> Response {
    let framing = Framing::of(&head.content_type);
    let body = StreamedBody::new(stream, framing, stream_break, request_id.to_string());
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
