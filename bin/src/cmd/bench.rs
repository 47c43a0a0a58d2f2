//! `triforce bench`: an HTTP load generator for the federation and what it is measured against.
//!
//! Closed loop (`--connections` workers, each sending its next request when the last returns)
//! measures throughput at saturation; open loop (`--rate`) sends on a fixed schedule and
//! measures latency from the scheduled time, so a stall is not hidden by waiting
//! (coordinated omission). In `task` mode every request is a fresh task (new task id), signed as
//! `--node`, so the replay cache never refuses one; `plain` mode POSTs the bare payload (for a
//! backend directly or behind nginx). A warm-up (`--warmup-seconds`, 2 s) runs the same load
//! first and is left out of the figures. The summary is one JSON object on stdout.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use serde_json::json;
use triforce_net::client::SignedClient;

use crate::sockets::{client, load};

#[derive(clap::Args)]
pub struct Args {
    /// `plain`: POST the payload (or --body) to --url. `stream`: the same, recording the time
    /// to the answer's first byte (a streamed answer's first token) and reading it to its end;
    /// tokens stamped by `triforce backend --llm --stamp` also give each chunk's delay from
    /// the backend's write to its arrival here.
    /// `task`: POST a signed task to --target's node.
    #[arg(long, default_value = "task")]
    mode: String,
    /// plain and stream modes: the JSON body to POST instead of the default payload.
    #[arg(long)]
    body: Option<String>,
    /// plain and stream modes: sent as `Authorization: Bearer KEY` (an ingress API key).
    #[arg(long)]
    api_key: Option<String>,
    /// plain and stream modes: a header sent with every request, `NAME:VALUE` (repeatable; a
    /// gateway's routing headers).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// plain mode: the URL to POST to.
    #[arg(long)]
    url: Option<String>,
    /// task mode: config directory and the node to sign as (requests come from its address).
    #[arg(long, value_name = "DIR")]
    config: Option<std::path::PathBuf>,
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// task mode: the node to send to (default: --node).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// task mode: the task type.
    #[arg(long = "type", default_value = "chat")]
    task_type: String,
    /// Concurrent connections (closed loop) or the cap on requests in flight (open loop).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests per second on a fixed schedule; without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring: the same schedule, not recorded. A fresh client opens
    /// its connections then; at a fixed rate that burst of handshakes would otherwise be part
    /// of every tail figure.
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// Print a line per 100 ms window (for the failover race): t_ms ok errors max_ms.
    #[arg(long)]
    timeline: bool,
}

/// One request, ready to send.
#[derive(Clone)]
enum Sender {
    Plain {
        http: reqwest::Client,
        url: String,
        body: Option<String>,
        api_key: Option<String>,
        /// Record the time to the first byte, not to the end.
        first_byte: bool,
    },
    Task {
        client: Box<SignedClient>,
        task_type: String,
    },
}

/// The first failure, to say why errors happened.
static FIRST_ERROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Sender {
    /// Sends request `n`; whether it succeeded, and when its answer's first byte came if that
    /// is what is measured (with the delays of its stamped chunks).
    async fn send(&self, n: u64) -> (bool, Option<Streamed>) {
        let payload = json!({"prompt": "bench", "n": n});
        let failure = match self {
            Sender::Plain {
                http,
                url,
                body,
                api_key,
                first_byte,
            } => {
                let mut request = http.post(url).header("content-type", "application/json");
                request = match body {
                    Some(body) => request.body(body.clone()),
                    None => request.body(payload.to_string()),
                };
                if let Some(key) = api_key {
                    request = request.bearer_auth(key);
                }
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        match read_answer(response, *first_byte).await {
                            Ok(first) => return (true, first),
                            Err(e) => e.to_string(),
                        }
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        format!(
                            "HTTP {status}: {}",
                            text.chars().take(300).collect::<String>()
                        )
                    }
                    Err(e) => e.to_string(),
                }
            }
            Sender::Task { client, task_type } => {
                let body = json!({"task_id": uuid::Uuid::new_v4().to_string(), "type": task_type, "payload": payload, "priority": 1});
                match client
                    .post_raw("/v1/federation/task", body.to_string().as_bytes())
                    .await
                {
                    Ok((200, _)) => return (true, None),
                    Ok((status, answer)) => {
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&answer))
                    }
                    Err(e) => e.to_string(),
                }
            }
        };
        let _ = FIRST_ERROR.set(failure);
        (false, None)
    }
}

/// How a streamed answer arrived.
struct Streamed {
    /// When its first bytes came.
    first: Instant,
    /// When its last bytes came.
    last: Instant,
    /// Per stamped token: microseconds from the backend's write to its arrival here.
    chunk_delays_us: Vec<u64>,
    /// Between two chunks' arrivals, in microseconds (a backend without stamps, such as a real
    /// inference server, shows its pace and any stalls on the way here).
    gaps_us: Vec<u64>,
}

/// Reads an answer to its end; when `first_byte`, how it arrived.
async fn read_answer(
    mut response: reqwest::Response,
    first_byte: bool,
) -> reqwest::Result<Option<Streamed>> {
    if !first_byte {
        response.bytes().await?;
        return Ok(None);
    }
    let mut streamed: Option<Streamed> = None;
    while let Some(chunk) = response.chunk().await? {
        if chunk.is_empty() {
            continue;
        }
        let arrived_us = unix_us();
        let now = Instant::now();
        let streamed = streamed.get_or_insert_with(|| Streamed {
            first: now,
            last: now,
            chunk_delays_us: Vec::new(),
            gaps_us: Vec::new(),
        });
        if now > streamed.first {
            streamed
                .gaps_us
                .push(now.duration_since(streamed.last).as_micros() as u64);
        }
        streamed.last = now;
        streamed.chunk_delays_us.extend(
            stamps(&chunk)
                .into_iter()
                .map(|sent_us| arrived_us.saturating_sub(sent_us)),
        );
    }
    Ok(streamed)
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The send times in the `tok<i>@<µs> ` tokens of `chunk` (`triforce backend --llm --stamp`).
/// A token split across two chunks is left out, never misread.
fn stamps(chunk: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(chunk);
    text.split("tok")
        .skip(1)
        .filter_map(|rest| {
            let (index, after) = rest.split_once('@')?;
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if after.as_bytes().get(digits) != Some(&b' ') {
                return None;
            }
            after[..digits].parse().ok()
        })
        .collect()
}

struct Results {
    /// Requests started before this are warm-up and not recorded.
    measure_from: Instant,
    requests: u64,
    errors: u64,
    latency_us: Histogram<u64>,
    /// Stamped chunks: from the backend's write to their arrival.
    chunk_delay_us: Histogram<u64>,
    /// Streams: from the request to the answer's last byte.
    end_us: Histogram<u64>,
    /// Streams: between two chunks' arrivals.
    gap_us: Histogram<u64>,
    /// Per 100 ms window: (ok, errors, max latency in µs).
    windows: Vec<(u64, u64, u64)>,
}

impl Results {
    /// Records a request started at `started` that ended now (or, streamed, whose answer
    /// started as `streamed` says).
    fn record(&mut self, started: Instant, streamed: Option<Streamed>, ok: bool) {
        if started < self.measure_from {
            return;
        }
        let latency = streamed.as_ref().map_or_else(Instant::now, |s| s.first) - started;
        for delay in streamed.iter().flat_map(|s| &s.chunk_delays_us) {
            let _ = self.chunk_delay_us.record((*delay).max(1));
        }
        for gap in streamed.iter().flat_map(|s| &s.gaps_us) {
            let _ = self.gap_us.record((*gap).max(1));
        }
        if let Some(streamed) = &streamed {
            let end = streamed.last.saturating_duration_since(started).as_micros() as u64;
            let _ = self.end_us.record(end.max(1));
        }
        self.requests += 1;
        self.errors += u64::from(!ok);
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        if ok {
            let _ = self.latency_us.record(us.max(1));
        }
        let since = started.saturating_duration_since(self.measure_from);
        let window = (since.as_millis() / 100) as usize;
        if self.windows.len() <= window {
            self.windows.resize(window + 1, (0, 0, 0));
        }
        let slot = &mut self.windows[window];
        if ok {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
        slot.2 = slot.2.max(us);
    }
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let sender = sender(&args)?;
    let run_start = Instant::now();
    let measure_from = run_start + Duration::from_secs_f64(args.warmup_seconds);
    let until = measure_from + Duration::from_secs_f64(args.seconds);
    let results = Arc::new(Mutex::new(Results {
        measure_from,
        requests: 0,
        errors: 0,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        chunk_delay_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        end_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
        gap_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        windows: Vec::new(),
    }));
    // Numbers the payloads, so no two requests are alike.
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    match args.rate {
        None => {
            for _ in 0..args.connections {
                let (sender, results, sent) = (sender.clone(), results.clone(), sent.clone());
                tasks.spawn(async move {
                    while Instant::now() < until {
                        let n = sent.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let (ok, streamed) = sender.send(n).await;
                        results.lock().expect("lock").record(started, streamed, ok);
                    }
                });
            }
        }
        Some(rate) => {
            let slots = Arc::new(tokio::sync::Semaphore::new(args.connections));
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut n = 0u64;
            loop {
                let scheduled = run_start + period.mul_f64(n as f64);
                if scheduled >= until {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let slot = slots.clone().acquire_owned().await?;
                let (sender, results) = (sender.clone(), results.clone());
                tasks.spawn(async move {
                    let (ok, streamed) = sender.send(n).await;
                    // Latency from the scheduled time: waiting for a slot counts.
                    results
                        .lock()
                        .expect("lock")
                        .record(scheduled, streamed, ok);
                    drop(slot);
                });
                n += 1;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let results = results.lock().expect("lock");
    print_summary(&results, measure_from, args.timeline);
    Ok(ExitCode::SUCCESS)
}

/// Checks the arguments and builds what sends one request.
fn sender(args: &Args) -> Result<Sender> {
    if args
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        bail!("--rate must be a positive number of requests per second");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!("--seconds must be a positive number");
    }
    if !(args.warmup_seconds.is_finite() && args.warmup_seconds >= 0.0) {
        bail!("--warmup-seconds must be zero or a positive number");
    }
    Ok(match args.mode.as_str() {
        "plain" | "stream" => {
            let Some(url) = args.url.clone() else {
                bail!("--mode {} needs --url", args.mode)
            };
            if let Some(body) = &args.body {
                serde_json::from_str::<serde_json::Value>(body)
                    .map_err(|e| anyhow::anyhow!("--body is not JSON: {e}"))?;
            }
            let mut headers = reqwest::header::HeaderMap::new();
            for header in &args.headers {
                let Some((name, value)) = header.split_once(':') else {
                    bail!("--header {header:?} must be NAME:VALUE");
                };
                headers.insert(
                    reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())?,
                    reqwest::header::HeaderValue::from_str(value.trim())?,
                );
            }
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(args.connections)
                .default_headers(headers)
                .no_proxy()
                .build()?;
            Sender::Plain {
                http,
                url,
                body: args.body.clone(),
                api_key: args.api_key.clone(),
                first_byte: args.mode == "stream",
            }
        }
        "task" => {
            let (Some(dir), Some(node)) = (&args.config, &args.node) else {
                bail!("--mode task needs --config and --node")
            };
            let config = load(dir, node)?;
            Sender::Task {
                client: Box::new(client(
                    &config,
                    args.target.as_deref(),
                    Duration::from_secs(60),
                )?),
                task_type: args.task_type.clone(),
            }
        }
        other => bail!("--mode must be plain, stream or task, not {other:?}"),
    })
}

/// One JSON line of figures (and, with `timeline`, the 100 ms windows on stderr).
fn print_summary(results: &Results, measure_from: Instant, timeline: bool) {
    let elapsed = measure_from.elapsed().as_secs_f64();
    let h = &results.latency_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (requests, errors) = (results.requests, results.errors);
    if timeline {
        for (i, (ok, err, max_us)) in results.windows.iter().enumerate() {
            eprintln!(
                "timeline {} {ok} {err} {:.1}",
                i * 100,
                *max_us as f64 / 1000.0
            );
        }
    }
    let chunks = &results.chunk_delay_us;
    let chunk_ms = |q: f64| chunks.value_at_quantile(q) as f64 / 1000.0;
    let mut summary = json!({
        "requests": requests,
        "errors": errors,
        "seconds": elapsed,
        "rps": (requests - errors) as f64 / elapsed,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": h.max() as f64 / 1000.0,
        "worst_window_ms": results.windows.iter().map(|w| w.2).max().unwrap_or(0) as f64 / 1000.0,
        "first_error": FIRST_ERROR.get(),
    });
    if !results.end_us.is_empty() {
        let quantile = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        summary["end_p50_ms"] = json!(quantile(&results.end_us, 0.50));
        summary["end_p99_ms"] = json!(quantile(&results.end_us, 0.99));
        summary["gap_p50_ms"] = json!(quantile(&results.gap_us, 0.50));
        summary["gap_p99_ms"] = json!(quantile(&results.gap_us, 0.99));
    }
    if !chunks.is_empty() {
        summary["chunks"] = json!(chunks.len());
        summary["chunk_p50_ms"] = json!(chunk_ms(0.50));
        summary["chunk_p99_ms"] = json!(chunk_ms(0.99));
        summary["chunk_max_ms"] = json!(chunks.max() as f64 / 1000.0);
    }
    println!("{summary}");
}

#[cfg(test)]
mod tests {
    use super::stamps;

    #[test]
    fn stamps_are_read_whole_or_not_at_all() {
        let chunk = b"data: {\"content\":\"tok0@1700000000000001 \"}\n\ndata: {\"content\":\"tok1@1700000000000002 \"}\n\n";
        assert_eq!(
            stamps(chunk),
            [1_700_000_000_000_001, 1_700_000_000_000_002]
        );
        // Cut by the transport: the part before the cut is no stamp.
        assert!(stamps(b"{\"content\":\"tok7@17000").is_empty());
        // Tokens without stamps, or other text with an @.
        assert!(stamps(b"tok0 tok1 user@example.org tokyo@5 ").is_empty());
    }
}
