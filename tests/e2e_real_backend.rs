//! The federation in front of a real inference server: llama.cpp's OpenAI server
//! (llama-cpp-python) with SmolLM2-135M, both installed by `.ci/llama-server` into `target/`.
//! Greedy decoding (`temperature: 0`) makes the server's own answer the reference: what comes
//! through two nodes must carry the same text and finish reason.
//!
//! hetzner serves the door; zombie-pc relays `chat` to a server that interrupts a running
//! generation for any other request (llama-cpp-python's default) and `embeddings` to one with
//! embeddings on; backup relays `chat` to a server that queues (`--interrupt_requests False`).
//! Each server is asked for a model of its own name, so each request lands where a case wants.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::ingress::{apikey_add, http, open, read_until, run_client, wait_listening};
use support::Federation;
use tokio::io::AsyncReadExt;

/// SmolLM2's `<|im_end|>`: suppressed where a case needs an answer of a set length.
const END_OF_TURN: &str = "2";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `python -m llama_cpp.server` process serving SmolLM2 as `alias`, killed on drop.
struct RealServer {
    port: u16,
    alias: &'static str,
    extra: &'static [&'static str],
    child: Option<Child>,
}

impl RealServer {
    fn start(alias: &'static str, extra: &'static [&'static str]) -> Self {
        let mut server = RealServer {
            port: Federation::free_tcp_port(),
            alias,
            extra,
            child: None,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let python = root().join("target/llama-server/bin/python");
        let model = root().join("target/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            python.exists() && model.exists(),
            "no llama.cpp server or model under target/: run .ci/llama-server"
        );
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--model_alias", self.alias, "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--n_ctx", "2048", "--n_threads", "1"])
            .args(self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the llama.cpp server starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "{} did not listen within 60 s",
                self.alias
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn relay(task_type: &str, server: &RealServer) -> String {
    format!(
        "[executors.{task_type}]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}\"\ntimeout_ms = 120000\n",
        server.port
    )
}

fn chat_body(model: &str, content: &str, max_tokens: u32, stream: bool) -> String {
    json!({"model": model, "stream": stream, "temperature": 0, "max_tokens": max_tokens,
        "logit_bias": {END_OF_TURN: -100},
        "messages": [{"role": "user", "content": content}]})
    .to_string()
}

/// The text and finish reason of an SSE chat stream.
fn stream_text(sse: &str) -> (String, Option<String>) {
    let mut text = String::new();
    let mut finish = None;
    for line in sse.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        let choice = &event["choices"][0];
        text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_string());
        }
    }
    (text, finish)
}

/// A streamed answer to `body` at `path` through `port` (`key` set: the door) or from the
/// server direct, read to its end (the raw HTTP answer).
async fn read_stream(port: u16, path: &str, key: &str, body: &str) -> String {
    let mut stream = open(port, "POST", path, key, body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("the stream ends within 60 s")
        .unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

/// A streamed chat through `port` (`key` set: the door) or to the server direct; its text and
/// finish reason.
async fn streamed(port: u16, key: &str, body: &str) -> (String, Option<String>) {
    let raw = read_stream(port, "/v1/chat/completions", key, body).await;
    let (text, finish) = stream_text(&raw);
    assert!(finish.is_some(), "no finish reason in {raw}");
    (text, finish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federation_in_front_of_a_real_llama_cpp_server() {
    let interrupting = RealServer::start("smollm2", &[]);
    let queueing = RealServer::start("smollm2-queue", &["--interrupt_requests", "False"]);
    let embedding = RealServer::start("smollm2-embed", &["--embedding", "true"]);
    // The servers' own answers come first: once the nodes probe them, a direct request to the
    // interrupting server could be cut short by a probe, which is the finding itself.
    let direct = References::ask(&interrupting, &queueing, &embedding).await;
    let ingress = Federation::free_tcp_port();
    let key = std::cell::RefCell::new(String::new());
    let metered = std::cell::RefCell::new(String::new());
    let federation = Federation::start_each_prepared(
        "real-backend",
        |id| match id {
            "hetzner" => format!("[ingress]\nlisten = \"127.0.0.1:{ingress}\"\n"),
            "zombie-pc" => relay("chat", &interrupting) + &relay("embeddings", &embedding),
            _ => relay("chat", &queueing),
        },
        |id, dir| {
            if id == "hetzner" {
                *key.borrow_mut() = apikey_add(dir, "real");
                *metered.borrow_mut() = apikey_add(dir, "metered");
            }
        },
    );
    wait_listening(ingress);
    federation.wait_all_online().await;
    let key = key.into_inner();
    wait_models(
        ingress,
        &key,
        &["smollm2", "smollm2-queue", "smollm2-embed"],
    )
    .await;

    probes_never_cut_a_stream_short(&direct, ingress, &key, &federation).await;
    whole_answers_completions_and_embeddings(&direct, ingress, &key).await;
    other_dialects_are_translated(&direct, ingress, &key).await;
    four_streams_queue_and_all_end_well(&direct, ingress, &key).await;
    a_client_that_leaves_frees_the_server(ingress, &key).await;
    a_killed_server_is_down_and_back_after_restart(queueing, ingress, &key).await;
    usage_is_the_servers_own_count(&federation, ingress, &metered.into_inner()).await;
}

/// The door counts what the real server reported: its `usage` in whole answers, token for
/// token; a stream from llama-cpp-python's server, which ignores `stream_options`, is counted
/// as unmetered, not guessed.
async fn usage_is_the_servers_own_count(federation: &Federation, port: u16, key: &str) {
    let (mut prompt, mut completion) = (0, 0);
    for (path, body) in [
        (
            "/v1/chat/completions",
            chat_body("smollm2", "Name a colour.", 8, false),
        ),
        (
            "/v1/chat/completions",
            chat_body("smollm2", "Name a fruit.", 6, false),
        ),
        ("/v1/completions", once_upon()),
    ] {
        let (status, answer) = http(port, "POST", path, key, &body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        prompt += answer["usage"]["prompt_tokens"]
            .as_u64()
            .expect("the server's usage");
        completion += answer["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let (_, finish) = streamed(port, key, &chat_body("smollm2", "Name a tree.", 6, true)).await;
    assert!(finish.is_some(), "the stream ended with its finish reason");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, stdout, stderr) =
            federation.cli("hetzner", &["usage", "--json", "--key", "metered"]);
        assert!(ok, "{stderr}");
        let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        let sum = |field: &str| rows.iter().map(|r| r[field].as_u64().unwrap()).sum::<u64>();
        if sum("requests") == 4 {
            assert_eq!(
                (
                    sum("prompt_tokens"),
                    sum("completion_tokens"),
                    sum("unmetered"),
                    sum("errors")
                ),
                (prompt, completion, 1, 0),
                "{rows:?}"
            );
            return;
        }
        assert!(std::time::Instant::now() < deadline, "counted: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The requests the cases send, and what each server answered them directly.
struct References {
    story: (String, Option<String>),
    chat: Value,
    completion: Value,
    embedding: Value,
    colours: (String, Option<String>),
}

fn story() -> String {
    chat_body("smollm2", "Tell me a long story about a dragon.", 220, true)
}

fn capital() -> String {
    chat_body("smollm2", "What is the capital of France?", 40, false)
}

fn once_upon() -> String {
    json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 30, "temperature": 0})
        .to_string()
}

fn a_dragon() -> String {
    json!({"model": "smollm2-embed", "input": "a dragon"}).to_string()
}

fn colours() -> String {
    chat_body("smollm2-queue", "Name three colours.", 60, true)
}

impl References {
    async fn ask(chat: &RealServer, queueing: &RealServer, embedding: &RealServer) -> Self {
        let whole = |port: u16, path: &'static str, body: String| async move {
            let (status, answer) = http(port, "POST", path, "", &body).await;
            assert_eq!(status, 200, "{path}: {answer}");
            serde_json::from_str::<Value>(&answer).unwrap()
        };
        References {
            story: streamed(chat.port, "", &story()).await,
            chat: whole(chat.port, "/v1/chat/completions", capital()).await,
            completion: whole(chat.port, "/v1/completions", once_upon()).await,
            embedding: whole(embedding.port, "/v1/embeddings", a_dragon()).await,
            colours: streamed(queueing.port, "", &colours()).await,
        }
    }
}

/// Waits until the door lists every one of `models`.
async fn wait_models(port: u16, key: &str, models: &[&str]) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http(port, "GET", "/v1/models", key, "").await;
        if models.iter().all(|m| body.contains(&format!("\"{m}\""))) {
            return;
        }
        assert!(
            Instant::now() < until,
            "the door never listed {models:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The finding: probes every 200 ms used to end a generation on this server mid-stream. Now a
/// 220-token stream through two nodes equals the server's own, finish reason included, and no
/// stream was counted as truncated.
async fn probes_never_cut_a_stream_short(
    direct: &References,
    port: u16,
    key: &str,
    federation: &Federation,
) {
    assert_eq!(
        direct.story.1.as_deref(),
        Some("length"),
        "{:?}",
        direct.story
    );
    let through = streamed(port, key, &story()).await;
    assert_eq!(through, direct.story);
    assert!(through.0.split_whitespace().count() > 100, "{through:?}");
    let metrics = federation.metrics("zombie-pc").await;
    assert!(
        !metrics.contains("outcome=\"truncated\""),
        "no stream may end without its finish reason: {metrics}"
    );
}

async fn whole_answers_completions_and_embeddings(direct: &References, port: u16, key: &str) {
    let through = |path: &'static str, body: String| async move {
        let (status, answer) = http(port, "POST", path, key, &body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        serde_json::from_str::<Value>(&answer).unwrap()
    };
    let chat = through("/v1/chat/completions", capital()).await;
    let content = "/choices/0/message/content";
    assert_eq!(chat.pointer(content), direct.chat.pointer(content));
    assert_eq!(chat["usage"], direct.chat["usage"]);
    // Open WebUI appends `:latest` to a name without a tag: one model all the same. (Asked a
    // second time, the server reuses its cached prompt, and greedy decoding may part from the
    // first answer late in the text, so the start is compared.)
    let latest = through(
        "/v1/chat/completions",
        capital().replace("\"smollm2\"", "\"smollm2:latest\""),
    )
    .await;
    assert_eq!(
        opening(&latest["choices"][0]["message"]["content"]),
        opening(&direct.chat["choices"][0]["message"]["content"])
    );
    let completion = through("/v1/completions", once_upon()).await;
    assert_eq!(
        completion["choices"][0]["text"],
        direct.completion["choices"][0]["text"]
    );
    let embedding = through("/v1/embeddings", a_dragon()).await;
    let vector = &embedding["data"][0]["embedding"];
    // SmolLM2 has no pooling: llama.cpp answers one vector per token.
    assert!(
        vector.as_array().is_some_and(|v| !v.is_empty()),
        "{embedding}"
    );
    assert_eq!(vector, &direct.embedding["data"][0]["embedding"]);
}

/// An Ollama client before this OpenAI-only server: the relaying node translates `/api/chat`,
/// whole and streamed, and the text is the server's own (greedy decoding; the opening is
/// compared, as for `:latest` above, because the server reuses its cached prompt). So does an
/// OpenAI Responses client.
async fn other_dialects_are_translated(direct: &References, port: u16, key: &str) {
    let direct_text = &direct.chat["choices"][0]["message"]["content"];
    let responses = json!({"model": "smollm2", "input": "What is the capital of France?",
        "temperature": 0, "max_output_tokens": 40})
    .to_string();
    let (status, answer) = http(port, "POST", "/v1/responses", key, &responses).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["object"], "response", "{answer}");
    let text = &answer["output"][0]["content"][0]["text"];
    assert_eq!(opening(text), opening(direct_text));
    assert!(
        answer["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| (1..=40).contains(&n)),
        "{answer}"
    );
    // Anthropic's Messages API (the SDK's x-api-key is checked against the stand-in).
    let messages = json!({"model": "smollm2", "max_tokens": 40, "temperature": 0,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    .to_string();
    let (status, answer) = http(port, "POST", "/v1/messages", key, &messages).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(opening(&answer["content"][0]["text"]), opening(direct_text));
    let stop = answer["stop_reason"].as_str();
    assert!(matches!(stop, Some("end_turn" | "max_tokens")), "{answer}");
    ollama_clients_are_translated(direct, port, key).await;
    // The same through each dialect's own SDK, whole and streamed.
    let opening = opening(direct_text);
    let base = format!("http://127.0.0.1:{port}");
    run_client("real_backend_sdks.py", &[&base, key, "smollm2", &opening]);
}

async fn ollama_clients_are_translated(direct: &References, port: u16, key: &str) {
    let ollama_chat = |stream: bool| {
        json!({"model": "smollm2", "stream": stream,
            "options": {"temperature": 0, "num_predict": 40},
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        .to_string()
    };
    let direct_text = &direct.chat["choices"][0]["message"]["content"];
    let (status, answer) = http(port, "POST", "/api/chat", key, &ollama_chat(false)).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["done"], true, "{answer}");
    assert_eq!(answer["message"]["role"], "assistant", "{answer}");
    assert_eq!(opening(&answer["message"]["content"]), opening(direct_text));
    // The direct answer is held to 40 tokens by a logit bias Ollama's API cannot carry; this
    // one may end sooner, never later.
    let counted = answer["eval_count"].as_u64().unwrap_or(0);
    assert!((1..=40).contains(&counted), "{answer}");
    let raw = read_stream(port, "/api/chat", key, &ollama_chat(true)).await;
    let lines: Vec<Value> = raw
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object) // not the chunk sizes between them
        .collect();
    assert!(lines.len() > 2, "one line per token: {raw}");
    assert_eq!(lines.last().unwrap()["done"], true, "{raw}");
    let text: String = lines
        .iter()
        .filter_map(|line| line["message"]["content"].as_str())
        .collect();
    assert_eq!(opening(&Value::String(text)), opening(direct_text));
}

/// Four streams at once to a server that serves one request at a time: they queue there, the
/// node does not mistake the wait for a dead backend, and each ends with its finish reason.
async fn four_streams_queue_and_all_end_well(direct: &References, port: u16, key: &str) {
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let key = key.to_string();
            tokio::spawn(async move { streamed(port, &key, &colours()).await })
        })
        .collect();
    // Greedy answers to one prompt may part early once the server answers from its prompt
    // cache, so each is checked for a whole answer, not for the same words.
    for stream in streams {
        let (text, finish) = stream.await.unwrap();
        assert_eq!(finish, direct.colours.1);
        assert!(text.split_whitespace().count() > 20, "{text}");
    }
}

/// The first 24 characters of a text: where two greedy answers to one prompt must agree even
/// when the server answered one of them from its prompt cache.
fn opening(text: &Value) -> String {
    text.as_str().unwrap_or_default().chars().take(24).collect()
}

/// A client that leaves mid-stream cancels the generation on the server: the next request is
/// answered without waiting for the abandoned one (2,000 tokens would take the server ~20 s).
async fn a_client_that_leaves_frees_the_server(port: u16, key: &str) {
    let long = chat_body(
        "smollm2-queue",
        "Tell me everything about the sea.",
        2000,
        true,
    );
    let mut stream = open(port, "POST", "/v1/chat/completions", key, &long).await;
    read_until(&mut stream, "data: ", Duration::from_secs(30)).await;
    drop(stream);
    let started = Instant::now();
    let short = chat_body("smollm2-queue", "Say hi.", 5, false);
    let (status, answer) = http(port, "POST", "/v1/chat/completions", key, &short).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the abandoned generation held the server for {:?}",
        started.elapsed()
    );
}

/// A killed server is refused at once (503, no hang), and serves again once restarted.
async fn a_killed_server_is_down_and_back_after_restart(
    mut server: RealServer,
    port: u16,
    key: &str,
) {
    server.kill();
    let body = chat_body("smollm2-queue", "Say hi.", 5, false);
    let (status, answer) = http(port, "POST", "/v1/chat/completions", key, &body).await;
    assert_eq!(status, 503, "{answer}");
    server.run();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = http(port, "POST", "/v1/chat/completions", key, &body).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < until,
            "not back within 20 s: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
