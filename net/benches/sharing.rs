//! What sharing adds to one request at the door (issue #30's budget: at most 20 µs at
//! saturation): admitting it under its key's limits, counting its answer as it passes (the
//! usage reader over every byte, the strip filter on a stream the door asked for usage), the
//! meter's in-memory count, and the fair share's place in the relays' queue.

use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use hyper::body::{Body, Frame};
use triforce_core::config::ApiKey;
use triforce_core::usage::Framing;
use triforce_net::clock::SystemClock;
use triforce_net::exec::{Admission, Scheduler, Share};
use triforce_net::ingress::{Dialect, KeyLimits};
use triforce_net::usage::{Account, MeteredBody, Spent, UsageMeter};

const WHOLE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama3","choices":[{"index":0,"message":{"role":"assistant","content":"tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}"#;

/// A stream of `tokens` events as a backend writes them, the asked-for usage event last.
fn stream_events(tokens: usize) -> Vec<Bytes> {
    let mut events: Vec<Bytes> = (0..tokens)
        .map(|i| {
            Bytes::from(format!(
                "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
            ))
        })
        .collect();
    events.push(Bytes::from_static(
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":50}}\n\ndata: [DONE]\n\n",
    ));
    events
}

/// A body of frames, one per poll.
struct Frames(std::collections::VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// Polls `body` to its end, as hyper writes it out.
fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut bytes = 0;
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        bytes += frame.unwrap().into_data().map_or(0, |d| d.len());
        if body.is_end_stream() {
            break;
        }
    }
    bytes
}

fn door(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("triforce-bench-sharing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let meter = UsageMeter::open(&dir.join("usage.sqlite3")).unwrap();
    let clock: Arc<dyn triforce_net::clock::Clock> = Arc::new(SystemClock::new());
    let limits = Arc::new(KeyLimits::default());
    let key = ApiKey {
        concurrent_max: 1_000,
        tokens_per_minute: u64::MAX / 2,
        ..ApiKey::new("ann", "0".repeat(64))
    };
    let account = || Account {
        meter: meter.clone(),
        clock: clock.clone(),
        key: "ann".into(),
        model: "llama3".into(),
    };
    let mut group = c.benchmark_group("sharing_per_request");
    group.bench_function("whole_answer", |b| {
        b.iter(|| {
            let admitted = limits
                .admit(Dialect::OpenAi, &key, Spent::default(), 1_765_000_000)
                .unwrap();
            let body = http_body_util::Full::new(Bytes::from_static(WHOLE.as_bytes()));
            let body = MeteredBody::new(body, Framing::Whole, 200, Some(account()), false)
                .holding(Box::new(admitted));
            black_box(drain(body))
        })
    });
    let events = stream_events(50);
    group.bench_function("stream_50_events_usage_taken_out", |b| {
        b.iter(|| {
            let admitted = limits
                .admit(Dialect::OpenAi, &key, Spent::default(), 1_765_000_000)
                .unwrap();
            let body = Frames(events.iter().cloned().collect());
            let body =
                MeteredBody::new(body, Framing::ServerSentEvents, 200, Some(account()), true)
                    .holding(Box::new(admitted));
            black_box(drain(body))
        })
    });
    group.bench_function("stream_50_events_unmetered_baseline", |b| {
        b.iter(|| black_box(drain(Frames(events.iter().cloned().collect()))))
    });
    group.finish();

    // One worker, held: each request queues, the slot passes to it, and it holds the slot
    // until the next one comes. With 32 keys taking turns, and with none (the seed's tasks).
    let mut group = c.benchmark_group("relay_queue_admit_and_serve");
    let keys: Vec<String> = (0..32).map(|i| format!("key-{i}")).collect();
    for (name, keyed) in [("fair_share_32_keys", true), ("no_key", false)] {
        let scheduler = Scheduler::new(1, 1_024);
        let Admission::Now(permit) = scheduler.admit(0, Share::NONE) else {
            panic!("one worker free")
        };
        let mut running = Some(permit);
        let mut n = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let share = match keyed {
                    true => Share {
                        key: &keys[n % keys.len()],
                        weight: 1,
                    },
                    false => Share::NONE,
                };
                let Admission::Queued(mut woken) = scheduler.admit(0, share) else {
                    panic!("queued behind the running one")
                };
                drop(running.take());
                woken.try_recv().expect("the slot passed on");
                running = Some(scheduler.permit_for_woken());
            })
        });
    }
    group.finish();
    std::fs::remove_dir_all(dir).ok();
}

criterion_group!(benches, door);
criterion_main!(benches);
