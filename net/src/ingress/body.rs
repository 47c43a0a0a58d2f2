//! A streamed answer as an HTTP body: chunks out as they arrive, an error event in the API's
//! shape if the stream breaks. Dropped by hyper when the client leaves, which drops the
//! stream and so cancels the task upstream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};

use super::shape::{stream_error_event, Framing};
use crate::exec::{AnswerStream, Chunk};

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
