//! A streaming client of the master's AI door (`triforce_net::ingress` on turmoil's TCP), on a
//! host of its own: it opens chat streams with an API key, as an SDK does (half OpenAI's
//! events, half Ollama's lines), reads each
//! chunk by chunk, sometimes leaves after the first words, and records what it read for the
//! door-stream invariants (`crate::door_streams`).
//!
//! Each request names its stream and tells the backend what to write (`chunks`, `gap_ms`,
//! `hang_after`): the door relays the body as the client wrote it, so the backend's text is
//! known to both ends.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::door_streams::{ClientApi, ClientEnd, ClientPlan, ClientRead};
use crate::record::{sim_now, SharedLog};

/// The host the client runs on.
pub const CLIENT_HOST: &str = "door-client";
/// The port of the master's AI door.
pub const DOOR_PORT: u16 = 8080;
/// The client's API key (its hash is in the master's API keys).
pub const API_KEY: &str = "sk-sim-door-client-0001";
/// A model both hubs' backends serve throughout.
const MODEL: &str = "llama3";
/// When the first stream opens: the hubs have probed their backends and told the master.
const FIRST_STREAM_AT: Duration = Duration::from_secs(15);
/// Longest the client waits for the next byte: past the relay timeout (30 s), after which the
/// door must have ended a hung stream with an error event.
const PATIENCE: Duration = Duration::from_secs(90);

/// The master's API keys file: the client's key, nothing else.
pub fn api_keys_toml() -> String {
    let hash = triforce_core::config::key_hash(API_KEY);
    format!("[[keys]]\nname = \"door-client\"\nsha256 = \"{hash}\"\n")
}

/// Opens a stream every few seconds until `until`, each read by a task of its own.
pub async fn open_streams(door: SocketAddr, log: SharedLog, seed: u64, until: Duration) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    tokio::time::sleep(FIRST_STREAM_AT).await;
    for n in 1.. {
        if sim_now() >= until {
            return;
        }
        let plan = draw(&mut rng, n);
        tokio::spawn(one_stream(door, plan, log.clone()));
        tokio::time::sleep(Duration::from_millis(1_500 + rng.next_u64() % 3_000)).await;
    }
}

/// One in eight streams leaves early (and is long enough that its backend would write on for
/// half a minute), one in eight hangs at its backend after a few words, the rest run to the end.
fn draw(rng: &mut ChaCha8Rng, n: u64) -> ClientPlan {
    let id = format!("s{n}");
    let api = if rng.next_u64().is_multiple_of(2) {
        ClientApi::OpenAi
    } else {
        ClientApi::Ollama
    };
    match rng.next_u64() % 8 {
        0 => ClientPlan {
            id,
            api,
            chunks: 60,
            gap_ms: 500,
            hang_after: None,
            cancel: true,
        },
        1 => ClientPlan {
            id,
            api,
            chunks: 8,
            gap_ms: 200,
            hang_after: Some(1 + (rng.next_u64() % 3) as u32),
            cancel: false,
        },
        _ => ClientPlan {
            id,
            api,
            chunks: 4 + (rng.next_u64() % 9) as u32,
            gap_ms: 200 + rng.next_u64() % 500,
            hang_after: None,
            cancel: false,
        },
    }
}

async fn one_stream(door: SocketAddr, plan: ClientPlan, log: SharedLog) {
    log.lock()
        .expect("log lock")
        .door_streams
        .client_opened(plan.clone(), sim_now());
    let read = read_stream(door, &plan).await;
    let mut log = log.lock().expect("log lock");
    let now = sim_now();
    log.trace(format!(
        "{} door stream {} read {} bytes, {:?}",
        now.as_millis(),
        plan.id,
        read.text.len(),
        read.end
    ));
    log.door_streams.client_ended(&plan.id, now, read);
}

fn request_body(plan: &ClientPlan) -> Vec<u8> {
    let mut body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": format!("stream {}", plan.id)}],
        "stream": true,
        "stream_id": plan.id,
        "chunks": plan.chunks,
        "gap_ms": plan.gap_ms,
    });
    if let Some(after) = plan.hang_after {
        body["hang_after"] = json!(after);
    }
    body.to_string().into_bytes()
}

/// Sends the request and reads the answer to its end, its error, the client's patience, or
/// (for a stream that leaves) its first words.
async fn read_stream(door: SocketAddr, plan: &ClientPlan) -> ClientRead {
    let mut reader = EventReader::new(plan.api);
    let end = match exchange(door, plan, &mut reader).await {
        Ok(end) => end,
        Err(error) => ClientEnd::Broken(error),
    };
    ClientRead {
        end,
        text: reader.text,
        reads_with_words: reader.reads_with_words,
        after_end: reader.after_end,
        error_message: reader.error_message,
    }
}

async fn exchange(
    door: SocketAddr,
    plan: &ClientPlan,
    reader: &mut EventReader,
) -> Result<ClientEnd, String> {
    let stream = turmoil::net::TcpStream::connect(door)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let connection = tokio::spawn(connection);
    let path = match plan.api {
        ClientApi::OpenAi => "/v1/chat/completions",
        ClientApi::Ollama => "/api/chat",
    };
    let request = Request::post(path)
        .header("host", door.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {API_KEY}"))
        .body(Full::new(Bytes::from(request_body(plan))))
        .map_err(|e| e.to_string())?;
    let response = match tokio::time::timeout(PATIENCE, sender.send_request(request)).await {
        Err(_) => return Ok(ClientEnd::Stalled),
        Ok(answer) => answer.map_err(|e| format!("request: {e}"))?,
    };
    if response.status() != 200 {
        return Ok(ClientEnd::Refused(response.status().as_u16()));
    }
    let mut body = response.into_body();
    loop {
        let frame = match tokio::time::timeout(PATIENCE, body.frame()).await {
            Err(_) => return Ok(ClientEnd::Stalled),
            Ok(None) => return Ok(reader.end()),
            Ok(Some(Err(error))) if reader.errored => {
                tracing::debug!(%error, "the door closed after its error event");
                return Ok(ClientEnd::ErrorEvent);
            }
            Ok(Some(Err(error))) => return Err(format!("reading: {error}")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        reader.feed(&data);
        if plan.cancel && !reader.text.is_empty() {
            // Leave as a closed browser tab does: the connection goes, mid-answer.
            connection.abort();
            return Ok(ClientEnd::Left);
        }
    }
}

/// Reads server-sent events or JSON lines as they arrive, across reads that split them anywhere.
struct EventReader {
    api: ClientApi,
    pending: Vec<u8>,
    text: String,
    done: bool,
    errored: bool,
    reads_with_words: u32,
    after_end: u32,
    error_message: Option<String>,
}

impl EventReader {
    fn new(api: ClientApi) -> Self {
        EventReader {
            api,
            pending: Vec::new(),
            text: String::new(),
            done: false,
            errored: false,
            reads_with_words: 0,
            after_end: 0,
            error_message: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        let before = self.text.len();
        let separator: &[u8] = match self.api {
            ClientApi::OpenAi => b"\n\n",
            ClientApi::Ollama => b"\n",
        };
        while let Some(at) = self
            .pending
            .windows(separator.len())
            .position(|w| w == separator)
        {
            let piece: Vec<u8> = self.pending.drain(..at + separator.len()).collect();
            let piece = String::from_utf8_lossy(&piece).into_owned();
            match self.api {
                ClientApi::OpenAi => piece
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: "))
                    .for_each(|data| self.data(data)),
                ClientApi::Ollama => self.data(piece.trim_end()),
            }
        }
        if self.text.len() > before {
            self.reads_with_words += 1;
        }
    }

    /// One event's data, or one line.
    fn data(&mut self, data: &str) {
        if self.done || self.errored {
            self.after_end += 1;
            return;
        }
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        let value: Value = serde_json::from_str(data).unwrap_or_default();
        let words = match self.api {
            ClientApi::OpenAi => &value["choices"][0]["delta"]["content"],
            ClientApi::Ollama => &value["message"]["content"],
        };
        if let Some(error) = value.get("error") {
            self.errored = true;
            // OpenAI's `{"error": {"message"}}`, Ollama's `{"error": "..."}`.
            let message = error["message"].as_str().or(error.as_str());
            self.error_message = message.map(str::to_string);
        } else if let Some(words) = words.as_str() {
            self.text.push_str(words);
        }
        if value["done"] == true {
            self.done = true;
        }
    }

    fn end(&self) -> ClientEnd {
        match (self.done, self.errored) {
            (true, _) => ClientEnd::Done,
            (false, true) => ClientEnd::ErrorEvent,
            (false, false) => ClientEnd::CleanEnd,
        }
    }
}
