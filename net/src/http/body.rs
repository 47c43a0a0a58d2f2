//! Reading a request body within the body limit and the request's one deadline.
//!
//! Two ways a client used to hold or break the API: a body timeout that restarted on every
//! frame let a client trickle a byte every few seconds for as long as it liked; and a body over
//! the limit was cut off mid-upload, so a client that writes its whole body before reading
//! (Python's `http.client`, many SDKs) saw a broken pipe instead of the 413. Here:
//!
//! - the request's deadline is `request_read_timeout_ms` from when its connection became ready
//!   for it (accepted, or done answering the previous request): headers and body together;
//! - a `Content-Length` over the limit is answered 413 before a byte of the body is read; a
//!   chunked body is answered 413 when it passes the limit;
//! - after a 413 the rest of the body is read and dropped (for a bounded time and number of
//!   bytes, like nginx's lingering close), so the client finishes sending and reads the answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::ApiError;

/// Most bytes of an oversized body read and dropped after its 413.
pub const DRAIN_BYTES_MAX: u64 = 64 << 20;
/// Shortest time an oversized body is drained for, even past the request's deadline: enough
/// for a client on a LAN to finish a body a few times the limit.
pub const DRAIN_TIME_MIN: Duration = Duration::from_secs(2);

/// When the request now being read on a connection may have started, shared by the connection's
/// requests. Restarted when an answer is produced.
#[derive(Clone)]
pub struct RequestClock {
    ready_at: Arc<Mutex<Instant>>,
    read_timeout: Duration,
}

impl RequestClock {
    pub fn new(read_timeout: Duration) -> Self {
        RequestClock {
            ready_at: Arc::new(Mutex::new(Instant::now())),
            read_timeout,
        }
    }

    pub fn restart(&self) {
        *self.ready_at.lock().expect("request clock lock") = Instant::now();
    }

    /// By when the current request must have arrived whole.
    pub fn deadline(&self) -> Instant {
        *self.ready_at.lock().expect("request clock lock") + self.read_timeout
    }
}

/// An answer's body that restarts its connection's [`RequestClock`] when dropped. hyper drops a
/// response body once its last byte is written (or the connection ends), so the next request
/// on a keep-alive connection gets its full read time from the end of the previous answer, not
/// from its head: after a stream longer than the read timeout, the next request is not 408.
pub struct ClockedBody<B> {
    inner: B,
    clock: RequestClock,
}

impl<B> ClockedBody<B> {
    pub fn new(inner: B, clock: RequestClock) -> Self {
        ClockedBody { inner, clock }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for ClockedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ClockedBody<B> {
    fn drop(&mut self) {
        self.clock.restart();
    }
}

/// What to do with a request body so far: the limit and the deadline as a small pure machine,
/// so the fuzzer can drive it with any sizes and times (the middleware below feeds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within bounds: read on.
    Continue,
    /// Over the byte limit (declared or read): 413.
    TooLarge,
    /// Past the request's deadline: 408.
    TimedOut,
}

/// The bounds of one request body: `bytes_max`, and the deadline as milliseconds after the
/// moment reading the body began.
#[derive(Clone, Copy, Debug)]
pub struct BodyRead {
    bytes_max: usize,
    deadline_ms: u64,
    taken: usize,
}

impl BodyRead {
    pub fn new(bytes_max: usize, deadline_ms: u64) -> Self {
        BodyRead {
            bytes_max,
            deadline_ms,
            taken: 0,
        }
    }

    /// The `Content-Length` the client declared, before a byte is read.
    pub fn handle_declared(&self, len: u64) -> Verdict {
        if len > self.bytes_max as u64 {
            Verdict::TooLarge
        } else {
            Verdict::Continue
        }
    }

    /// A chunk of `len` bytes arrived `at_ms` after reading began.
    pub fn handle_chunk(&mut self, at_ms: u64, len: usize) -> Verdict {
        if at_ms > self.deadline_ms {
            return Verdict::TimedOut;
        }
        match self.taken.checked_add(len) {
            Some(taken) if taken <= self.bytes_max => {
                self.taken = taken;
                Verdict::Continue
            }
            _ => Verdict::TooLarge,
        }
    }

    /// Bytes accepted so far; never more than `bytes_max`.
    pub fn taken(&self) -> usize {
        self.taken
    }
}

/// The limits [`read_bounded`] applies.
#[derive(Clone, Copy)]
pub struct BodyLimits {
    pub bytes_max: usize,
}

/// Middleware: reads the whole body within the limit and the deadline, then hands the request
/// on with the body in memory; answers 413 or 408 itself.
pub async fn read_bounded(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = request.extensions().get::<RequestClock>().map_or_else(
        || Instant::now() + Duration::from_secs(10),
        RequestClock::deadline,
    );
    let (parts, body) = request.into_parts();
    match read_whole(&parts.headers, body, limits, deadline).await {
        Ok(body) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(refusal) => refusal,
    }
}

/// Reads `body` whole within `limits` and by `deadline`; or the 413, 408 or 400 that answers
/// it. The middleware above and the task route's direct path ([`super::front`]) share it.
pub async fn read_whole<B>(
    headers: &HeaderMap,
    mut body: B,
    limits: BodyLimits,
    deadline: Instant,
) -> Result<Bytes, Response>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let started = Instant::now();
    let mut bounds = BodyRead::new(
        limits.bytes_max,
        deadline.saturating_duration_since(started).as_millis() as u64,
    );
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| bounds.handle_declared(len) == Verdict::TooLarge) {
        return Err(too_large(body, limits, deadline));
    }
    let mut collected = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("reading the body: {error}"),
                )
                .into_response())
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            let at_ms = started.elapsed().as_millis() as u64;
            match bounds.handle_chunk(at_ms, data.len()) {
                Verdict::Continue => collected.extend_from_slice(&data),
                Verdict::TooLarge => return Err(too_large(body, limits, deadline)),
                Verdict::TimedOut => return Err(timed_out()),
            }
        }
    }
    Ok(collected.freeze())
}

/// 413, and the rest of `body` drained in the background so the client can read it.
fn too_large<B>(body: B, limits: BodyLimits, deadline: Instant) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    let drain_until = deadline.max(Instant::now() + DRAIN_TIME_MIN);
    tokio::spawn(drain(body, drain_until));
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the body is larger than this node's limit of {} bytes (limits.body_bytes_max)",
            limits.bytes_max
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads and drops what is left of a refused body, within [`DRAIN_BYTES_MAX`] and `until`.
async fn drain<B>(mut body: B, until: Instant)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut drained = 0u64;
    while drained < DRAIN_BYTES_MAX {
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                drained += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

fn timed_out() -> Response {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request did not arrive whole within limits.request_read_timeout_ms",
    )
    .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_holds_over_all_chunks_and_the_limit_over_their_sum() {
        let mut read = BodyRead::new(100, 1_000);
        assert_eq!(read.handle_declared(101), Verdict::TooLarge);
        assert_eq!(read.handle_declared(100), Verdict::Continue);
        // A byte every 200 ms keeps no timer alive: the deadline is one for the request.
        for at in (0..=1_000).step_by(200) {
            assert_eq!(read.handle_chunk(at, 1), Verdict::Continue);
        }
        assert_eq!(read.handle_chunk(1_001, 1), Verdict::TimedOut);
        let mut read = BodyRead::new(100, 1_000);
        assert_eq!(read.handle_chunk(0, 60), Verdict::Continue);
        assert_eq!(read.handle_chunk(0, 41), Verdict::TooLarge);
        assert_eq!(read.taken(), 60);
    }
}
