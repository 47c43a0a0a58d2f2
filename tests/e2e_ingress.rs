//! The AI front door end to end: hetzner serves the OpenAI and Ollama APIs; the only backends
//! (`triforce backend --llm`) sit behind zombie-pc and backup, so every answer crosses QUIC.
//! The real `openai` and `ollama` Python packages are the clients (a virtualenv `.ci/run`
//! makes; see `python()`), plus raw HTTP where a test must see bytes as they arrive.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::ingress::{
    apikey_add, apikey_add_with, exchange, http, open, read_until, run_client, wait_listening,
    Backend,
};
use support::Federation;
use tokio::io::AsyncReadExt;

/// Waits until the backend has seen a request more than `before` cancelled: the client's
/// departure reached it.
async fn wait_cancelled(backend: &Backend, before: u64) {
    let until = Instant::now() + Duration::from_secs(3);
    while backend.stats().await["cancelled"].as_u64().unwrap() <= before {
        assert!(
            Instant::now() < until,
            "the backend's request was not dropped within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// hetzner with the ingress (no chat executor of its own), zombie-pc and backup each with a
/// backend; returns the federation, the ingress port and a key made by `triforce apikey add`.
fn federation(name: &str, backends: &[&Backend]) -> (Federation, u16, String) {
    federation_with(name, backends, None)
}

/// Like [`federation`]; with `tls`, hetzner's ingress serves HTTPS with that (certificate,
/// key) PEM pair.
fn federation_with(
    name: &str,
    backends: &[&Backend],
    tls: Option<(&str, &str)>,
) -> (Federation, u16, String) {
    let ingress_port = Federation::free_tcp_port();
    let zombie = backends[0].port;
    let backup = backends.get(1).map(|b| b.port);
    let relay = |port: u16| {
        format!(
            "[executors.chat]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}\"\n\
             [executors.embeddings]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}\"\n"
        )
    };
    let key = std::cell::RefCell::new(String::new());
    let federation = Federation::start_each_prepared(
        name,
        |id| match id {
            "hetzner" => {
                let tls = if tls.is_some() {
                    "tls_cert_file = \"ingress.crt\"\ntls_key_file = \"ingress.key\"\n"
                } else {
                    ""
                };
                format!(
                    "[ingress]\nlisten = \"127.0.0.1:{ingress_port}\"\nbody_bytes_max = 65536\n{tls}"
                )
            }
            "zombie-pc" => relay(zombie),
            _ => backup.map(relay).unwrap_or_default(),
        },
        |id, dir| {
            if id == "hetzner" {
                *key.borrow_mut() = apikey_add(dir, "tests");
                if let Some((cert, private_key)) = tls {
                    std::fs::write(dir.join("ingress.crt"), cert).unwrap();
                    support::write_key(&dir.join("ingress.key"), private_key);
                }
            }
        },
    );
    wait_listening(ingress_port);
    (federation, ingress_port, key.into_inner())
}

fn chat_body(content: &str, stream: bool) -> String {
    serde_json::json!({"model": "tiny-llm", "stream": stream,
        "messages": [{"role": "user", "content": content}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_ollama_clients_through_two_nodes() {
    let backend = Backend::start("zombie-backend", 5);
    let (federation, port, key) = federation("ingress", &[&backend]);
    federation.wait_all_online().await;
    let base = format!("http://127.0.0.1:{port}");

    run_client("openai_client.py", &[&base, &key, "basics"]);
    run_client("ollama_client.py", &[&base, &key]);
    run_client("openai_client.py", &[&base, &key, "responses"]);
    run_client("anthropic_client.py", &[&base, &key]);
    run_client("openai_client.py", &[&base, &key, "concurrent"]);

    // The first token reaches the client while the backend still holds the rest: nothing in
    // between (executing node, QUIC, ingress) waits for the whole answer.
    let mut stream = open(
        port,
        "POST",
        "/v1/chat/completions",
        &key,
        &chat_body("[hold]", true),
    )
    .await;
    let first = read_until(&mut stream, "tok0", Duration::from_secs(10)).await;
    assert!(first.contains("x-accel-buffering: no"), "{first}");
    assert!(
        !first.contains("tok1"),
        "only the first token can have come: {first}"
    );
    backend.release().await;
    let rest = read_until(&mut stream, "[DONE]", Duration::from_secs(10)).await;
    assert!(rest.contains("tok7"), "{rest}");

    whole_answers_stay_whole(port, &key).await;

    cancellation_reaches_the_backend(&federation, &backend, port, &key).await;

    // The seed's task API reaches the same backends: a relayed answer comes back whole, as
    // `{status, content_type, body}`.
    let payload = serde_json::json!({"path": "/v1/chat/completions",
        "body": {"model": "tiny-llm", "messages": [{"role": "user", "content": "hi"}]}});
    let reply = federation
        .client("hetzner", "hetzner")
        .post("/v1/federation/task", &support::task_body("chat", payload))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let result = &reply.body["result"];
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["content_type"], "application/json");
    assert_eq!(
        result["body"]["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "
    );

    // The dashboard on the ingress: the page is public, its state needs a key that may read
    // the dashboard.
    let (status, page) = http(port, "GET", "/ui", "", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("TriForce federation"));
    assert_eq!(http(port, "GET", "/ui/state", "", "").await.0, 401);
    assert_eq!(http(port, "GET", "/ui/state", &key, "").await.0, 403);
    let watcher = apikey_add_with(
        &federation.config_dir("hetzner"),
        "watcher",
        &["--dashboard"],
    );
    let (reloaded, stdout, stderr) = federation.cli("hetzner", &["reload"]);
    assert!(reloaded, "{stdout}{stderr}");
    let (status, state) = http(port, "GET", "/ui/state", &watcher, "").await;
    assert_eq!(status, 200, "{state}");
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state["status"]["nodes"]["zombie-pc"]["backends"]["chat"]["healthy"],
        true
    );

    bad_input_is_answered_in_the_apis_shape(port, &key).await;

    // Every request above left the ingress with nothing running.
    let status = federation
        .wait_status("hetzner", Duration::from_secs(5), |s| {
            s["nodes"]["zombie-pc"]["in_flight"] == 0
        })
        .await;
    assert_eq!(status["nodes"]["hetzner"]["in_flight"], 0);

    api_keys_reload_live(&federation, port, &key).await;
}

/// A client that leaves cancels its task down to the backend's request: mid-stream, and while
/// the backend still works on a whole answer (the task then counts as cancelled).
async fn cancellation_reaches_the_backend(
    federation: &Federation,
    backend: &Backend,
    port: u16,
    key: &str,
) {
    let cancelled_before = backend.stats().await["cancelled"].as_u64().unwrap();
    let mut stream = open(port, "POST", "/api/chat", key, &chat_body("[hold]", true)).await;
    read_until(&mut stream, "tok0", Duration::from_secs(10)).await;
    drop(stream);
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let cancelled = backend.stats().await["cancelled"].as_u64().unwrap();
        if cancelled > cancelled_before {
            break;
        }
        assert!(
            Instant::now() < until,
            "the backend's request was not dropped within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend.release().await;

    // Before the first byte too: a client that gives up on a whole (unstreamed) answer while
    // the backend still works on it cancels the backend's request, and the task counts as
    // cancelled.
    let stats = backend.stats().await;
    let cancelled_before = stats["cancelled"].as_u64().unwrap();
    let stream = open(
        port,
        "POST",
        "/v1/chat/completions",
        key,
        &chat_body("[hold]", false),
    )
    .await;
    let until = Instant::now() + Duration::from_secs(5);
    while backend.stats().await["requests"] == stats["requests"] {
        assert!(
            Instant::now() < until,
            "the held request reached no backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    wait_cancelled(backend, cancelled_before).await;
    let metrics = federation.metrics("hetzner").await;
    assert!(
        metrics.contains("triforce_tasks_total{type=\"chat\",outcome=\"cancelled\"} 1"),
        "{metrics}"
    );
    backend.release().await;
}

/// An unstreamed answer keeps the backend's length through both nodes: the door writes it
/// whole, not as a chunked stream; one the backend cuts halfway is a 502, not half a body.
async fn whole_answers_stay_whole(port: u16, key: &str) {
    let (head, body) = exchange(
        port,
        "POST",
        "/v1/chat/completions",
        key,
        &chat_body("hi", false),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(body.contains("tok7"), "{body}");
    // Such an answer cut halfway by the backend is a 502 in the API's shape, not half a body
    // passed off as whole.
    let (status, body) = http(
        port,
        "POST",
        "/v1/chat/completions",
        key,
        &chat_body("[break]", false),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("\"code\":\"backend_error\""), "{body}");
    assert!(body.contains("failed to answer"), "{body}");
}

/// Bad input: each answer in the API's own shape, naming the cause.
async fn bad_input_is_answered_in_the_apis_shape(port: u16, key: &str) {
    let cases: [(&str, &str, &str, &str, u16, &str); 8] = [
        (
            "POST",
            "/v1/chat/completions",
            "KEY",
            "{\"model\": \"nope\", \"messages\": []}",
            404,
            "model_not_found",
        ),
        (
            "POST",
            "/v1/chat/completions",
            "",
            "{}",
            401,
            "missing_api_key",
        ),
        (
            "POST",
            "/v1/chat/completions",
            "tf-wrong",
            "{}",
            401,
            "invalid_api_key",
        ),
        (
            "POST",
            "/v1/chat/completions",
            "KEY",
            "{not json",
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/chat/completions",
            "KEY",
            "{\"messages\": []}",
            400,
            "missing_model",
        ),
        ("POST", "/v1/nothing", "KEY", "{}", 404, "unknown_endpoint"),
        ("POST", "/v1/embeddings", "KEY", "[1,2", 400, "invalid_json"),
        ("GET", "/v1/chat/completions", "KEY", "", 405, ""),
    ];
    for (method, path, case_key, body, status, code) in cases {
        let case_key = if case_key == "KEY" { key } else { case_key };
        let (got, answer) = http(port, method, path, case_key, body).await;
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
        if !code.is_empty() {
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["error"]["code"], code, "{answer}");
            assert!(answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }
    let (status, answer) = http(port, "POST", "/api/chat", "", "{}").await;
    assert_eq!(status, 401);
    assert!(
        serde_json::from_str::<Value>(&answer).unwrap()["error"].is_string(),
        "Ollama's shape: {answer}"
    );
    let big = format!(
        "{{\"model\": \"tiny-llm\", \"prompt\": \"{}\"}}",
        "a".repeat(70_000)
    );
    let (status, _) = http(port, "POST", "/v1/completions", key, &big).await;
    assert_eq!(status, 413);
}

/// API keys reload with the rest of the config, without a restart: a key added while the node
/// runs works after `triforce reload`, a removed one stops working, and a keys file that does
/// not parse is refused whole.
async fn api_keys_reload_live(federation: &Federation, port: u16, key: &str) {
    let dir = federation.config_dir("hetzner");
    let second = apikey_add(&dir, "second");
    assert_eq!(http(port, "GET", "/v1/models", &second, "").await.0, 401);
    let (reloaded, stdout, stderr) = federation.cli("hetzner", &["reload"]);
    assert!(reloaded, "{stdout}{stderr}");
    assert_eq!(http(port, "GET", "/v1/models", &second, "").await.0, 200);
    let removed = Command::new(env!("CARGO_BIN_EXE_triforce"))
        .args(["apikey", "remove", "--name", "tests", "--config"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let (reloaded, stdout, stderr) = federation.cli("hetzner", &["reload"]);
    assert!(reloaded, "{stdout}{stderr}");
    let (status, answer) = http(port, "GET", "/v1/models", key, "").await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("invalid_api_key"), "{answer}");
    assert_eq!(http(port, "GET", "/v1/models", &second, "").await.0, 200);
    // A keys file that does not parse is refused whole: the keys in use stay.
    let keys_file = dir.join("api_keys");
    let mut broken = std::fs::read_to_string(&keys_file).unwrap();
    broken.push_str("[[keys]]\nname = \"half\"\n");
    std::fs::write(&keys_file, broken).unwrap();
    let (reloaded, stdout, stderr) = federation.cli("hetzner", &["reload"]);
    assert!(!reloaded, "a broken keys file was accepted: {stdout}");
    assert!(
        stderr.contains("api_keys"),
        "the refusal names the file: {stderr}"
    );
    assert_eq!(http(port, "GET", "/v1/models", &second, "").await.0, 200);
}

/// Open WebUI's Ollama connection and the `ollama` client in front of a backend that speaks
/// OpenAI's API only (as llama.cpp's server and vLLM do): the relaying node translates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_clients_reach_a_backend_that_speaks_only_openai() {
    let port = Federation::free_tcp_port();
    let backend = Backend::start_on("zombie-backend", 5, port, &["--api", "openai"]);
    let (federation, ingress, key) = federation("ollama-to-openai", &[&backend]);
    federation.wait_all_online().await;
    let base = format!("http://127.0.0.1:{ingress}");
    run_client("ollama_client.py", &[&base, &key, "openai-backend"]);
    // The door counted every translated answer from the counts in Ollama's fields: six chats
    // and generations of 8 tokens each and two tool calls of 5 reached the backend (the
    // refused request did not).
    let until = Instant::now() + Duration::from_secs(5);
    let completion_tokens = loop {
        let (ok, stdout, stderr) = federation.cli("hetzner", &["usage", "--json"]);
        assert!(ok, "triforce usage failed: {stderr}");
        let rows: Vec<Value> = serde_json::from_str(&stdout).expect("usage --json is JSON");
        let counted: u64 = rows
            .iter()
            .filter(|row| {
                row["model"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("tiny-llm"))
            })
            .map(|row| row["completion_tokens"].as_u64().unwrap_or(0))
            .sum();
        if counted >= 58 || Instant::now() > until {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(completion_tokens, 6 * 8 + 2 * 5);
    // The backend was asked on its own API only (it answers 404 to Ollama's paths).
    let (status, _) = http(port, "POST", "/api/chat", "", "{}").await;
    assert_eq!(status, 404);
    let stats = backend.stats().await;
    assert!(stats["requests"].as_u64().unwrap() >= 8, "{stats}");
    assert_eq!(stats["cancelled"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_before_the_first_byte_fails_over_and_a_node_dying_after_it_ends_the_stream_with_an_error(
) {
    let zombie_backend = Backend::start_cold("zombie-backend", 5);
    let backup_backend = Backend::start("backup-backend", 5);
    let (mut federation, port, key) =
        federation("ingress-failover", &[&zombie_backend, &backup_backend]);
    let mut backup_backend = backup_backend;
    federation
        .wait_status("hetzner", Duration::from_secs(5), |s| {
            s["nodes"]["backup"]["backends"]["chat"]["models"][0] == "tiny-llm"
        })
        .await;
    federation.wait_all_online().await;
    let base = format!("http://127.0.0.1:{port}");

    // Before the first byte: backup, first in order because its backend has the model loaded
    // (warm first), has a backend whose model list answers but whose generations fail with
    // 503. The request fails over to zombie-pc and is answered whole.
    let backup_port = backup_backend.port;
    backup_backend.kill();
    let broken = Backend::start_on("backup-broken", 5, backup_port, &["--fail-status", "503"]);
    federation
        .wait_status("hetzner", Duration::from_secs(5), |s| {
            s["nodes"]["backup"]["backends"]["chat"]["loaded"][0] == "tiny-llm"
                && s["nodes"]["zombie-pc"]["backends"]["chat"]["loaded"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
        })
        .await;
    let ask = || async {
        let (status, body) = http(
            port,
            "POST",
            "/v1/chat/completions",
            &key,
            &chat_body("hi", false),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let text = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
    };
    ask().await;
    let unavailable = || async {
        let metrics = federation.metrics("hetzner").await;
        metrics
            .lines()
            .find(|l| {
                l.starts_with("triforce_task_attempts_total{outcome=\"executor_unavailable\"}")
            })
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        unavailable().await,
        1,
        "backup was tried first and failed over"
    );
    assert_eq!(broken.stats().await["requests"], 1);

    // Its backend gone entirely, backup stays online but advertises the backend as down and
    // gets no chats, without a single attempt.
    drop(broken);
    let status = federation
        .wait_status("hetzner", Duration::from_secs(5), |s| {
            s["nodes"]["backup"]["backends"]["chat"]["healthy"] == false
        })
        .await;
    assert_eq!(
        status["nodes"]["backup"]["state"], "online",
        "the node itself stays online"
    );
    for _ in 0..5 {
        ask().await;
    }
    assert_eq!(
        unavailable().await,
        1,
        "a backend known to be down gets no work"
    );
    assert_eq!(zombie_backend.stats().await["completed"], 6);

    // The backend comes back: the next probe says so, and backup gets work again.
    let backup_backend = Backend::start_on("backup-backend", 5, backup_port, &[]);
    federation
        .wait_status("hetzner", Duration::from_secs(5), |s| {
            s["nodes"]["backup"]["backends"]["chat"]["healthy"] == true
        })
        .await;
    ask().await;
    assert_eq!(
        backup_backend.stats().await["completed"],
        1,
        "backup (cheapest) serves again"
    );

    // After the first byte: the node serving a held stream is killed; the client's stream ends
    // in an error event (the SDK raises), never a silent truncation.
    let client = tokio::task::spawn_blocking(move || {
        run_client("openai_client.py", &[&base, &key, "interrupted"])
    });
    let until = Instant::now() + Duration::from_secs(10);
    while zombie_backend.stats().await["requests"] == 6
        && backup_backend.stats().await["requests"] == 1
    {
        assert!(Instant::now() < until, "the held stream reached no backend");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let serving = if backup_backend.stats().await["requests"] == 2 {
        "backup"
    } else {
        "zombie-pc"
    };
    federation.kill(serving);
    client.await.unwrap();
}

/// Two nodes whose backends serve different models: the ingress lists each model once with
/// the nodes that serve it, and routes every request to a node whose backend has its model; a
/// model only a down backend has is 503 with the reason, and comes back with the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_where_their_model_is() {
    let zombie_port = Federation::free_tcp_port();
    let zombie_backend = Backend::start_on(
        "zombie-backend",
        1,
        zombie_port,
        &["--models", "llama3,tiny-embed", "--loaded", "llama3"],
    );
    let backup_backend = Backend::start_on(
        "backup-backend",
        1,
        Federation::free_tcp_port(),
        &["--models", "qwen,tiny-embed", "--loaded", "qwen"],
    );
    let (federation, port, key) = federation("models", &[&zombie_backend, &backup_backend]);
    federation
        .wait_status("hetzner", Duration::from_secs(20), |s| {
            s["nodes"]["zombie-pc"]["backends"]["chat"]["models"][0] == "llama3"
                && s["nodes"]["backup"]["backends"]["chat"]["models"][0] == "qwen"
        })
        .await;

    // Merged lists: each model once, with who serves it.
    let (status, body) = http(port, "GET", "/v1/models", &key, "").await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let served: Vec<(String, Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["triforce"]["nodes"].clone(),
            )
        })
        .collect();
    assert_eq!(
        served,
        [
            ("llama3".to_string(), serde_json::json!(["zombie-pc"])),
            ("qwen".to_string(), serde_json::json!(["backup"])),
            (
                "tiny-embed".to_string(),
                serde_json::json!(["backup", "zombie-pc"])
            ),
        ],
        "{body}"
    );
    let (_, body) = http(port, "GET", "/api/tags", &key, "").await;
    let tags: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["llama3", "qwen", "tiny-embed"], "{body}");

    // Routing by model: the answer's id names the backend that wrote it.
    let chat = |model: &'static str| {
        let key = key.clone();
        async move {
            let body = serde_json::json!({"model": model,
                "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
            let (status, answer) = http(port, "POST", "/v1/chat/completions", &key, &body).await;
            (status, answer)
        }
    };
    for _ in 0..4 {
        let (status, answer) = chat("llama3").await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("chatcmpl-zombie-backend-"), "{answer}");
        let (status, answer) = chat("qwen").await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("chatcmpl-backup-backend-"), "{answer}");
    }
    assert_eq!(zombie_backend.stats().await["requests"], 4);
    assert_eq!(backup_backend.stats().await["requests"], 4);

    // The seed's API routes a relay-shaped task by the model its body names, as the door does.
    let seed_api = federation.client("hetzner", "hetzner");
    for model in ["qwen", "qwen", "llama3"] {
        let payload = serde_json::json!({"path": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]}});
        let reply = seed_api
            .post("/v1/federation/task", &support::task_body("chat", payload))
            .await
            .unwrap();
        let answer = reply.body;
        let expected = if model == "qwen" {
            "backup"
        } else {
            "zombie-pc"
        };
        assert_eq!(answer["node"], expected, "{answer}");
        assert_eq!(answer["attempts"].as_array().unwrap().len(), 1, "{answer}");
    }
    assert_eq!(backup_backend.stats().await["requests"], 6);
    // Each node counts what it relayed, by outcome.
    let metrics = federation.metrics("backup").await;
    assert!(
        metrics
            .contains(r#"triforce_backend_requests_total{task_type="chat",outcome="answered"} 6"#),
        "{metrics}"
    );

    // zombie-pc's backend stops: llama3 only a down backend has is 503 with the reason, asked
    // of no one; qwen goes on.
    let mut zombie_backend = zombie_backend;
    zombie_backend.kill();
    federation
        .wait_status("hetzner", Duration::from_secs(15), |s| {
            s["nodes"]["zombie-pc"]["backends"]["chat"]["healthy"] == false
        })
        .await;
    let (status, answer) = chat("llama3").await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("down"), "the reason is given: {answer}");
    let (status, answer) = chat("qwen").await;
    assert_eq!(status, 200, "{answer}");
    let (_, body) = http(port, "GET", "/v1/models", &key, "").await;
    assert!(
        !body.contains("llama3"),
        "a down backend's models are not offered: {body}"
    );

    // Back on its port: healthy again at the next probe, and llama3 is served again.
    let zombie_backend = Backend::start_on(
        "zombie-backend",
        1,
        zombie_port,
        &["--models", "llama3,tiny-embed", "--loaded", "llama3"],
    );
    federation
        .wait_status("hetzner", Duration::from_secs(15), |s| {
            s["nodes"]["zombie-pc"]["backends"]["chat"]["healthy"] == true
        })
        .await;
    let (status, answer) = chat("llama3").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(zombie_backend.stats().await["requests"], 1);
}

/// HTTPS on the ingress: the `openai` SDK verifies the node's certificate and chats, plain and
/// streamed; a plain-HTTP client gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_serves_https_with_the_operators_certificate() {
    let backend = Backend::start("zombie-backend", 5);
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, private_key) = (certified.cert.pem(), certified.key_pair.serialize_pem());
    let (federation, port, key) =
        federation_with("ingress-tls", &[&backend], Some((&cert, &private_key)));
    federation.wait_all_online().await;
    let cert_file = federation.dir.join("client-trusts.crt");
    std::fs::write(&cert_file, &cert).unwrap();
    let base = format!("https://127.0.0.1:{port}");
    run_client(
        "openai_client.py",
        &[&base, &key, "tls", cert_file.to_str().unwrap()],
    );
    // Plain HTTP to the HTTPS port: refused by the handshake, never answered.
    let mut stream = open(port, "GET", "/api/version", "", "").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("version"),
        "{answer:?} {read:?}"
    );
}
