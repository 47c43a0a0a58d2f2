//! An answer's body on its way to the client, counted: the bytes pass as they come, a
//! [`UsageReader`] reads the backend's token counts out of them, and when the body ends (or
//! the client leaves) the request goes to the meter once. Where the door asked an OpenAI
//! backend for counts its client did not ask for, the event carrying them is taken out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use triforce_core::usage::{Framing, UsageEventFilter, UsageReader};

use super::meter::{Metered, UsageMeter};
use crate::clock::Clock;

/// Who is counted for a request, and where.
#[derive(Clone)]
pub struct Account {
    pub meter: Arc<UsageMeter>,
    pub clock: Arc<dyn Clock>,
    pub key: String,
    pub model: String,
}

impl Account {
    /// Counts a request that got no answer from a backend (an error the door answered).
    pub fn failed(&self) {
        let now = self.clock.unix_s();
        self.meter
            .record(now, &self.key, &self.model, Metered::Failed(None));
    }
}

/// Something held while an answer passes, told the tokens it used at its end (a key's
/// admission under its limits: in flight until then, charged the tokens).
pub trait Charged: Send + Sync {
    fn charge(&self, tokens: u64);
}

/// A counted answer body.
pub struct MeteredBody<B> {
    inner: B,
    account: Option<Account>,
    /// Dropped at the body's end, after its tokens are charged to it.
    held: Option<Box<dyn Charged>>,
    reader: Option<UsageReader>,
    /// Present when the door asked for counts the client did not ask for.
    filter: Option<UsageEventFilter>,
    /// The answer's status was an error.
    error_status: bool,
    ended: bool,
}

impl<B> MeteredBody<B> {
    /// `inner`, framed as `framing`, with status `status`, counted to `account` (if the door
    /// keeps usage); `strip_usage_event` when the door added `stream_options.include_usage`
    /// itself.
    pub fn new(
        inner: B,
        framing: Framing,
        status: u16,
        account: Option<Account>,
        strip_usage_event: bool,
    ) -> Self {
        let strip = strip_usage_event && framing == Framing::ServerSentEvents;
        MeteredBody {
            inner,
            account,
            held: None,
            reader: Some(UsageReader::new(framing)),
            filter: strip.then(UsageEventFilter::default),
            error_status: status >= 400,
            ended: false,
        }
    }

    /// Holds `held` until the body's end, and charges it the tokens the answer used.
    pub fn holding(mut self, held: Box<dyn Charged>) -> Self {
        self.held = Some(held);
        self
    }

    /// Counts the request, once: at the body's end, or when it is dropped before (the client
    /// left, or the stream broke off), which counts as a failure.
    fn record(&mut self) {
        let Some(reader) = self.reader.take() else {
            return;
        };
        let report = reader.finish();
        if let Some(held) = self.held.take() {
            let tokens = report.usage.map_or(0, |u| u.prompt + u.completion);
            held.charge(tokens);
        }
        let Some(account) = self.account.take() else {
            return;
        };
        let ended = if self.ended && !self.error_status && !report.error_event {
            Metered::Answered(report.usage)
        } else {
            Metered::Failed(report.usage)
        };
        let now = account.clock.unix_s();
        account
            .meter
            .record(now, &account.key, &account.model, ended);
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            let frame = match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    self.record();
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    self.ended = true;
                    let rest = self.filter.as_mut().map(UsageEventFilter::finish);
                    self.record();
                    return match rest.filter(|rest| !rest.is_empty()) {
                        Some(rest) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest))))),
                        None => Poll::Ready(None),
                    };
                }
            };
            let Ok(data) = frame.into_data() else {
                // Trailers: none of the door's answers has them.
                continue;
            };
            if let Some(reader) = &mut self.reader {
                reader.feed(&data);
            }
            let mut data = match &mut self.filter {
                Some(filter) if !filter.passes_whole(&data) => filter.pass(&data).into(),
                _ => data,
            };
            // A body that knows it has ended (a whole answer) is not polled again: hyper asks
            // `is_end_stream` after each frame, so the end is counted here.
            if self.inner.is_end_stream() {
                if let Some(rest) = self.filter.as_mut().map(UsageEventFilter::finish) {
                    data = [data, Bytes::from(rest)].concat().into();
                }
                self.ended = true;
                self.record();
            }
            if data.is_empty() {
                continue;
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        // The filter may take bytes out; otherwise the length is the inner body's, which keeps
        // a whole answer's `Content-Length`.
        match self.filter {
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.record();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body_util::{BodyExt, Full};

    use super::*;

    /// A body of `frames`, one per poll, that then ends, or with `hang`, never does.
    struct Frames {
        frames: VecDeque<Bytes>,
        hang: bool,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.frames.pop_front() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None if self.hang => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }
    use crate::clock::SystemClock;
    use crate::usage::UsageFilter;

    fn account(dir: &std::path::Path) -> Account {
        std::fs::create_dir_all(dir).unwrap();
        Account {
            meter: UsageMeter::open(&dir.join("usage.sqlite3")).unwrap(),
            clock: Arc::new(SystemClock::new()),
            key: "ann".into(),
            model: "m".into(),
        }
    }

    fn counts(account: &Account) -> (u64, u64, u64, u64) {
        let rows = account.meter.rows(&UsageFilter::default()).unwrap();
        let row = rows.first().cloned().unwrap_or_default();
        (
            row.requests,
            row.errors,
            row.prompt_tokens,
            row.completion_tokens,
        )
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("triforce-metered-{name}-{}", std::process::id()))
    }

    #[tokio::test]
    async fn a_whole_answer_counts_once_as_answered() {
        let dir = temp("whole");
        let account = account(&dir);
        let whole = Full::new(Bytes::from_static(
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ));
        let body = MeteredBody::new(whole, Framing::Whole, 200, Some(account.clone()), false);
        assert_eq!(body.size_hint().exact(), Some(51), "the length stays");
        body.collect().await.unwrap();
        assert_eq!(counts(&account), (1, 0, 3, 2));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_stream_passes_without_the_asked_for_event_and_a_broken_one_is_an_error() {
        let dir = temp("stream");
        let account = account(&dir);
        let events = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,",
            "\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
        ];
        let stream = Frames {
            frames: events.iter().map(|e| Bytes::from(*e)).collect(),
            hang: false,
        };
        let body = MeteredBody::new(
            stream,
            Framing::ServerSentEvents,
            200,
            Some(account.clone()),
            true,
        );
        let passed = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            &passed[..],
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(counts(&account), (1, 0, 4, 1));

        // A stream the door ended with an error event, and one dropped before its end.
        let broken = Full::new(Bytes::from_static(
            b"data: {\"error\":{\"message\":\"x\"}}\n\n",
        ));
        MeteredBody::new(
            broken,
            Framing::ServerSentEvents,
            200,
            Some(account.clone()),
            false,
        )
        .collect()
        .await
        .unwrap();
        let pending = Frames {
            frames: VecDeque::new(),
            hang: true,
        };
        drop(MeteredBody::new(
            pending,
            Framing::ServerSentEvents,
            200,
            Some(account.clone()),
            false,
        ));
        assert_eq!(counts(&account), (3, 2, 4, 1));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
