//! Sharing the door, end to end: hetzner's door counts what each key used, per model and day,
//! from the token counts the backend (`triforce backend --llm`, behind zombie-pc) reports, in
//! whole answers and streams of both dialects; `triforce usage` reads the counts back, and a
//! `kill -9` of the door's node loses at most the last second. Each key's limits (a cap on
//! completion tokens, tokens per minute, requests in flight, a daily budget) answer 429 with
//! `Retry-After` naming the limit, and serve the key again once it has passed.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::ingress::{
    apikey_add, apikey_add_with, exchange, http, open, read_until, wait_listening, Backend,
};
use support::Federation;

/// Completion tokens in every answer of the stand-in (its `--tokens` default).
const COMPLETION: u64 = 8;
const MODEL: &str = "tiny-llm";

/// hetzner with the door and two keys (and `ops`, which may read the dashboard, and one key
/// per limit, its key kept in `<name>.key` in hetzner's config); zombie-pc relays chat and
/// embeddings to `backend`.
fn federation(name: &str, backend: &Backend) -> (Federation, u16, String, String) {
    federation_with(name, backend, "")
}

/// Like [`federation`], with `relay_extra` in zombie-pc's settings.
fn federation_with(
    name: &str,
    backend: &Backend,
    relay_extra: &str,
) -> (Federation, u16, String, String) {
    let door = Federation::free_tcp_port();
    let relay = format!(
        "{relay_extra}\n[executors.chat]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{0}\"\n\
         [executors.embeddings]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{0}\"\n",
        backend.port
    );
    let keys = std::cell::RefCell::new((String::new(), String::new()));
    let federation = Federation::start_each_prepared(
        name,
        |id| match id {
            "hetzner" => format!("[ingress]\nlisten = \"127.0.0.1:{door}\"\n"),
            "zombie-pc" => relay.clone(),
            _ => String::new(),
        },
        |id, dir| {
            if id == "hetzner" {
                *keys.borrow_mut() = (apikey_add(dir, "ann"), apikey_add(dir, "bob"));
                let limited: [(&str, &[&str]); 5] = [
                    ("ops", &["--dashboard"]),
                    ("capped", &["--max-tokens", "3"]),
                    ("tight", &["--tokens-per-minute", "300"]),
                    ("single", &["--concurrent", "1"]),
                    ("daily", &["--tokens-per-day", "50"]),
                ];
                for (name, limit) in limited {
                    let key = apikey_add_with(dir, name, limit);
                    std::fs::write(dir.join(format!("{name}.key")), key).unwrap();
                }
            }
        },
    );
    wait_listening(door);
    let (ann, bob) = keys.into_inner();
    (federation, door, ann, bob)
}

/// One request of each kind the door relays, `n` words long: (path, body, prompt tokens as
/// the stand-in counts them, completion tokens).
fn request(kind: usize, n: usize) -> (&'static str, String, u64, u64) {
    let words = vec!["word"; n].join(" ");
    let chat = |stream: bool, extra: Value| {
        let mut body = json!({"model": MODEL, "stream": stream,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": words}]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body.to_string()
    };
    let n = n as u64;
    match kind % 7 {
        0 => (
            "/v1/chat/completions",
            chat(false, json!({})),
            n + 2,
            COMPLETION,
        ),
        // A stream whose client did not ask for usage: the door asks for it.
        1 => (
            "/v1/chat/completions",
            chat(true, json!({})),
            n + 2,
            COMPLETION,
        ),
        // A stream whose client asked for usage itself.
        2 => (
            "/v1/chat/completions",
            chat(true, json!({"stream_options": {"include_usage": true}})),
            n + 2,
            COMPLETION,
        ),
        3 => ("/api/chat", chat(true, json!({})), n + 2, COMPLETION),
        4 => (
            "/api/generate",
            json!({"model": MODEL, "stream": false, "prompt": words}).to_string(),
            n,
            COMPLETION,
        ),
        5 => (
            "/v1/completions",
            json!({"model": MODEL, "prompt": words}).to_string(),
            n,
            COMPLETION,
        ),
        _ => (
            "/v1/embeddings",
            json!({"model": MODEL, "input": words}).to_string(),
            n,
            0,
        ),
    }
}

/// Per key: (requests, prompt tokens, completion tokens), from `triforce usage --json`.
fn counted(federation: &Federation, extra: &[&str]) -> BTreeMap<String, (u64, u64, u64)> {
    let mut args = vec!["usage", "--json"];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = federation.cli("hetzner", &args);
    assert!(ok, "triforce usage failed: {stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).expect("usage --json is JSON");
    let mut per_key = BTreeMap::new();
    for row in rows {
        assert_eq!(row["model"], MODEL, "{row}");
        assert_eq!(
            row["unmetered"], 0,
            "every answer reported its counts: {row}"
        );
        let entry: &mut (u64, u64, u64) = per_key
            .entry(row["key"].as_str().unwrap().to_string())
            .or_default();
        entry.0 += row["requests"].as_u64().unwrap();
        entry.1 += row["prompt_tokens"].as_u64().unwrap();
        entry.2 += row["completion_tokens"].as_u64().unwrap();
    }
    per_key
}

/// The key `triforce apikey add` made for `name` on hetzner.
fn key_of(federation: &Federation, name: &str) -> String {
    std::fs::read_to_string(federation.config_dir("hetzner").join(format!("{name}.key"))).unwrap()
}

/// `tests/clients/dashboard_usage.py` in chromium: the page at `url` shows `expected`.
fn run_browser(url: &str, expected: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("TRIFORCE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/python-clients/bin/python"));
    let output = std::process::Command::new(python)
        .arg(root.join("tests/clients/dashboard_usage.py"))
        .args([url, expected])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the dashboard's usage table: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_is_counted_what_the_backend_reported() {
    let backend = Backend::start("usage-backend", 0);
    let (federation, door, ann, bob) = federation("usage", &backend);
    federation.wait_all_online().await;

    let mut expected: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for i in 0..100 {
        let (name, key) = if i % 3 == 0 {
            ("bob", &bob)
        } else {
            ("ann", &ann)
        };
        let (path, body, prompt, completion) = request(i, 1 + i % 11);
        let (status, answer) = http(door, "POST", path, key, &body).await;
        assert_eq!(status, 200, "{path} {body}: {answer}");
        if i % 7 == 1 {
            // The door asked for the counts; its client, which did not, does not see them.
            assert!(answer.contains("data: [DONE]"), "{answer}");
            assert!(!answer.contains("\"usage\":{"), "{answer}");
        }
        if i % 7 == 2 {
            assert!(
                answer.contains("\"choices\":[],"),
                "the asked-for counts: {answer}"
            );
        }
        let entry = expected.entry(name.to_string()).or_default();
        entry.0 += 1;
        entry.1 += prompt;
        entry.2 += completion;
    }
    // The door writes its counts once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted(&federation, &[]) != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(counted(&federation, &[]), expected);
    let ann_only = counted(&federation, &["--key", "ann"]);
    assert_eq!(ann_only.keys().collect::<Vec<_>>(), ["ann"]);
    let (ok, stdout, _) = federation.cli("hetzner", &["usage", "--since", "2999-01-01"]);
    assert!(ok && !stdout.contains("ann"), "{stdout}");
    let (ok, _, stderr) = federation.cli("hetzner", &["usage", "--since", "yesterday"]);
    assert!(!ok && stderr.contains("YYYY-MM-DD"), "{stderr}");

    // An error counts as a request of its key, with no tokens.
    let missing = json!({"model": "no-such-model", "messages": []}).to_string();
    let (status, _) = http(door, "POST", "/v1/chat/completions", &bob, &missing).await;
    assert_eq!(status, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    let missing = loop {
        let (ok, stdout, stderr) = federation.cli("hetzner", &["usage", "--json", "--key", "bob"]);
        assert!(ok, "{stderr}");
        let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        if let Some(row) = rows.into_iter().find(|r| r["model"] == "no-such-model") {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "no row for the missing model: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (missing["requests"].as_u64(), missing["errors"].as_u64()),
        (Some(1), Some(1))
    );

    // The door's dashboard shows the same in a browser.
    let ops = key_of(&federation, "ops");
    let (ann_n, bob_n) = (&expected["ann"], &expected["bob"]);
    let shown = format!(
        "ann:{}:0:{}:{},bob:{}:1:{}:{}",
        ann_n.0,
        ann_n.1,
        ann_n.2,
        bob_n.0 + 1,
        bob_n.1,
        bob_n.2
    );
    run_browser(&format!("http://127.0.0.1:{door}/ui#key={ops}"), &shown);

    // Federation-wide: the door's node answers with its rows, the others keep none.
    let (ok, stdout, stderr) = federation.cli("zombie-pc", &["usage", "--all"]);
    assert!(ok, "usage --all: {stderr}");
    assert!(
        stdout.contains("hetzner") && stdout.contains("total ann:"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_door_loses_at_most_its_last_second() {
    let backend = Backend::start("usage-kill-backend", 0);
    let (mut federation, door, ann, _) = federation("usage-kill", &backend);
    federation.wait_all_online().await;

    // Requests one after another; each answered one is noted with when it was answered.
    let started = Instant::now();
    let (path, body, _, _) = request(0, 3);
    let mut answered: Vec<Duration> = Vec::new();
    while started.elapsed() < Duration::from_millis(2_500) {
        let (status, answer) = http(door, "POST", path, &ann, &body).await;
        assert_eq!(status, 200, "{answer}");
        answered.push(started.elapsed());
    }
    let killed_at = started.elapsed();
    federation.kill("hetzner");

    // The database opens clean after the kill, and holds every request answered more than a
    // second (the meter's interval, plus a margin for the write itself) before it.
    let (ok, stdout, stderr) = federation.cli("hetzner", &["usage", "--json"]);
    assert!(ok, "the database after kill -9: {stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let stored: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    let safe = answered
        .iter()
        .filter(|at| **at + Duration::from_millis(1_300) < killed_at)
        .count() as u64;
    assert!(
        stored >= safe && stored <= answered.len() as u64,
        "stored {stored}, answered {} ({safe} of them over 1.3 s before the kill)",
        answered.len()
    );
    assert!(safe > 0, "the run answered requests well before the kill");

    // The node starts again on the same database and adds to it.
    federation.restart("hetzner");
    wait_listening(door);
    federation.wait_all_online().await;
    let (status, _) = http(door, "POST", path, &ann, &body).await;
    assert_eq!(status, 200);
    let (ok, _, stderr) = federation.cli("hetzner", &["usage"]);
    assert!(ok, "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, stdout, _) = federation.cli("hetzner", &["usage", "--json"]);
        let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        let now: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        if now == stored + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted door counted {now}, not {}",
            stored + 1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status, `Retry-After` and error code of a request the door refuses.
async fn refusal(door: u16, path: &str, key: &str, body: &str) -> (u16, Option<u64>, String) {
    let (head, rest) = exchange(door, "POST", path, key, body).await;
    let status = head[9..12].parse().unwrap();
    let retry_after = head
        .lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .and_then(|s| s.trim().parse().ok());
    let error: Value = serde_json::from_str(rest.trim()).unwrap_or_default();
    let code = error["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, retry_after, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keys_limits_refuse_with_a_reason_and_serve_again() {
    let backend = Backend::start("limits-backend", 0);
    let (federation, door, _, _) = federation("limits", &backend);
    federation.wait_all_online().await;
    let chat = |words: usize, extra: &str| {
        let words = vec!["word"; words].join(" ");
        format!(
            r#"{{"model":"{MODEL}",{extra}"messages":[{{"role":"user","content":"{words}"}}]}}"#
        )
    };

    // The cap: a request that names no limit is given it, one over it is refused.
    let capped = key_of(&federation, "capped");
    let (status, answer) = http(door, "POST", "/v1/chat/completions", &capped, &chat(2, "")).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], 3, "{answer}");
    let over = chat(2, r#""max_tokens":10,"#);
    let (status, _, code) = refusal(door, "/v1/chat/completions", &capped, &over).await;
    assert_eq!((status, code.as_str()), (400, "max_tokens_over_cap"));
    for options in ["", r#""options":{"temperature":0},"#, r#""options":null,"#] {
        let body = format!(r#"{{"model":"{MODEL}","stream":false,{options}"prompt":"hi"}}"#);
        let (status, answer) = http(door, "POST", "/api/generate", &capped, &body).await;
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["eval_count"], 3, "{options}: {answer}");
    }
    let unlimited =
        format!(r#"{{"model":"{MODEL}","options":{{"num_predict":-1}},"prompt":"hi"}}"#);
    let (status, _) = http(door, "POST", "/api/generate", &capped, &unlimited).await;
    assert_eq!(status, 400);
    // Ollama reads `NUM_PREDICT` as `num_predict`: a variant beside a small one is refused.
    let variant = format!(
        r#"{{"model":"{MODEL}","options":{{"num_predict":2,"NUM_PREDICT":99999}},"prompt":"hi"}}"#
    );
    let (status, answer) = http(door, "POST", "/api/generate", &capped, &variant).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("NUM_PREDICT"),
        "Ollama's shape names the field: {answer}"
    );

    // Tokens per minute: charged after the answer (300 words + 8 completion tokens = 308 of
    // 300), so the next request waits for the refill.
    let tight = key_of(&federation, "tight");
    let (status, _) = http(door, "POST", "/v1/chat/completions", &tight, &chat(300, "")).await;
    assert_eq!(status, 200);
    let (status, retry_after, code) =
        refusal(door, "/v1/chat/completions", &tight, &chat(1, "")).await;
    assert_eq!((status, code.as_str()), (429, "tokens_per_minute_exceeded"));
    let wait = retry_after.expect("a Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, answer) = http(door, "POST", "/v1/chat/completions", &tight, &chat(1, "")).await;
    assert_eq!(status, 200, "served again after Retry-After: {answer}");

    // Requests in flight: one held stream takes the key's only place until it ends.
    let single = key_of(&federation, "single");
    let mut held = open(
        door,
        "POST",
        "/v1/chat/completions",
        &single,
        &chat(1, r#""stream":true,"#).replace("word", "[hold]"),
    )
    .await;
    read_until(&mut held, "tok0", Duration::from_secs(10)).await;
    let (status, retry_after, code) =
        refusal(door, "/v1/chat/completions", &single, &chat(1, "")).await;
    assert_eq!(
        (status, retry_after, code.as_str()),
        (429, Some(1), "concurrency_limit_exceeded")
    );
    backend.release().await;
    read_until(&mut held, "[DONE]", Duration::from_secs(10)).await;
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = http(door, "POST", "/v1/chat/completions", &single, &chat(1, "")).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ended stream still holds the key's place"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A daily budget of 50 tokens: 20 words + 8 = 28 a request, so the third is refused until
    // the next UTC midnight.
    let daily = key_of(&federation, "daily");
    for _ in 0..2 {
        let (status, _) = http(door, "POST", "/v1/chat/completions", &daily, &chat(20, "")).await;
        assert_eq!(status, 200);
    }
    let (status, retry_after, code) =
        refusal(door, "/v1/chat/completions", &daily, &chat(20, "")).await;
    assert_eq!((status, code.as_str()), (429, "daily_budget_exceeded"));
    assert!((1..=86_400).contains(&retry_after.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_one_request_is_not_queued_behind_a_key_with_sixty() {
    // Four relays on the only backend's node, each stream about 0.4 s (8 tokens 50 ms apart):
    // 60 streams of one key keep 56 waiting for about 5.6 s.
    let backend = Backend::start("fair-backend", 50);
    let (federation, door, ann, bob) =
        federation_with("fair", &backend, "[limits]\nrelays_max = 4");
    federation.wait_all_online().await;
    let stream = |content: &str| {
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": content}]})
            .to_string()
    };
    let mut greedy = Vec::new();
    for i in 0..60 {
        greedy.push(
            open(
                door,
                "POST",
                "/v1/chat/completions",
                &ann,
                &stream(&format!("greedy {i}")),
            )
            .await,
        );
    }
    // The greedy streams have reached the relay's queue when the first of them is answering.
    read_until(&mut greedy[0], "tok0", Duration::from_secs(10)).await;
    let started = Instant::now();
    let mut polite = open(
        door,
        "POST",
        "/v1/chat/completions",
        &bob,
        &stream("polite"),
    )
    .await;
    read_until(&mut polite, "tok0", Duration::from_secs(20)).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "bob's first token came {waited:?} after his request, behind ann's queue"
    );
    // The relaying node shows the queue per key: ann's requests waiting, bob's one wait.
    let metrics = federation.metrics("zombie-pc").await;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(value("triforce_relay_queue_waiting{key=\"ann\"}") > 0.0);
    assert_eq!(
        value("triforce_relay_queue_wait_seconds_count{key=\"bob\"}"),
        1.0
    );
    // And its dashboard's state, what the page shows.
    let state: Value = reqwest::Client::builder()
        .local_address("127.0.0.1".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(format!("http://{}/ui/state", federation.addr("zombie-pc")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        state["relay_queue"]["ann"].as_u64().is_some_and(|n| n > 0),
        "{}",
        state["relay_queue"]
    );
    // Every greedy stream is still answered whole.
    for mut stream in greedy {
        read_until(&mut stream, "[DONE]", Duration::from_secs(30)).await;
    }
}
