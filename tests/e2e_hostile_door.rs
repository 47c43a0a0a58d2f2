//! The hostile battery, second round: the AI door faces the internet, the federation port faces
//! the VPN. Each case is an attack tried against real processes; each names the hole it closes.
//!
//! hetzner serves the door (small limits, one runtime thread); zombie-pc relays `chat` and
//! `embeddings` to the project's LLM stand-in and probes it only once a minute (so a wrong
//! "down" mark would stay); backup runs `embeddings` as a command, which is no model server.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::ingress::{apikey_add_with, http, read_until, Backend};
use support::{Federation, PSK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// hetzner's door: a 4 MiB body limit (above zombie-pc's frame limit of 1 MiB), 8 connections
/// with 3 per address, a 2 s request deadline, small long-task bounds.
const DOOR: &str = r#"
[ingress]
listen = "127.0.0.1:{PORT}"
connections_max = 8
connections_per_source_max = 3
[limits]
body_bytes_max = 4194304
request_read_timeout_ms = 2000
long_tasks_bytes_max = 2000000
long_task_keep_ms = 1500
runtime_threads = 1
[executors.nap]
kind = "sleep"
"#;

const RELAY: &str = r#"
[executors.chat]
kind = "openai"
base_url = "http://127.0.0.1:{BACKEND}"
[executors.embeddings]
kind = "openai"
base_url = "http://127.0.0.1:{BACKEND}"
"#;

const NOT_A_RELAY: &str = r#"
[executors.embeddings]
kind = "command"
program = "/bin/sh"
args = ["-c", "echo '{\"leak\": true}'"]
"#;

/// The door's federation, its port, a key for any model and one limited to `tiny-llm`.
struct Door {
    federation: Federation,
    port: u16,
    key: String,
    narrow_key: String,
}

fn door(backend: &Backend) -> Door {
    let port = Federation::free_tcp_port();
    let keys = std::cell::RefCell::new((String::new(), String::new()));
    let federation = Federation::start_each_prepared(
        "hostile-door",
        |id| match id {
            "hetzner" => DOOR.replace("{PORT}", &port.to_string()),
            "zombie-pc" => RELAY.replace("{BACKEND}", &backend.port.to_string()),
            _ => NOT_A_RELAY.to_string(),
        },
        |id, dir| match id {
            "hetzner" => {
                *keys.borrow_mut() = (
                    apikey_add_with(dir, "anyone", &[]),
                    apikey_add_with(dir, "narrow", &["--model", "tiny-llm"]),
                );
            }
            "zombie-pc" => {
                let settings = dir.join("federation.toml");
                let text = std::fs::read_to_string(&settings).unwrap();
                let text = text.replace(
                    "backend_probe_interval_ms = 200",
                    "backend_probe_interval_ms = 60000",
                );
                std::fs::write(settings, text).unwrap();
            }
            _ => {}
        },
    );
    support::ingress::wait_listening(port);
    let (key, narrow_key) = keys.into_inner();
    Door {
        federation,
        port,
        key,
        narrow_key,
    }
}

fn chat(content: &str, stream: bool) -> String {
    json!({"model": "tiny-llm", "stream": stream,
        "messages": [{"role": "user", "content": content}]})
    .to_string()
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the node closes `stream` (having sent nothing more) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Reads one whole answer (a `Content-Length` body or a chunked one) from a keep-alive
/// connection: its status and body.
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let lower = head.to_ascii_lowercase();
            let length = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok());
            let whole = match length {
                Some(length) => body.len() >= length,
                None => body.ends_with("0\r\n\r\n"),
            };
            if whole {
                return (head[9..12].parse().unwrap(), body.to_string());
            }
        }
        let n = tokio::time::timeout_at(until, stream.read(&mut buf))
            .await
            .expect("a whole answer within 10 s")
            .unwrap();
        assert!(n > 0, "the connection closed mid-answer: {text}");
        raw.extend_from_slice(&buf[..n]);
    }
}

fn post_head(path: &str, key: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: door\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// The seed's signed headers for `body` as `node`, now.
fn signed_headers(node: &str, body: &[u8]) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(PSK.as_bytes()).unwrap();
    mac.update(format!("{ts}:{node}:").as_bytes());
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("X-Federation-Node: {node}\r\nX-Federation-Timestamp: {ts}\r\nX-Federation-Signature: {signature}\r\n")
}

/// One request with `Connection: close` from `from` to `to`; status and body.
async fn raw_request(from: &str, to: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut stream = connect_from(from, to).await;
    let request = format!(
        "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut stream).await
}

/// Finding 1. One address cannot take every door slot, and idle connections do not keep theirs.
async fn one_address_holds_its_share(door: &Door) {
    let to: SocketAddr = format!("127.0.0.1:{}", door.port).parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from("127.0.0.1", to).await);
    }
    // The fourth from the same address is closed at once, and more would be too.
    let mut fourth = connect_from("127.0.0.1", to).await;
    assert!(closed_within(&mut fourth, Duration::from_millis(500)).await);
    // Another address is served while the first holds its share.
    let started = Instant::now();
    let mut other = connect_from("127.0.0.2", to).await;
    let head = format!(
        "GET /v1/models HTTP/1.1\r\nHost: door\r\nAuthorization: Bearer {}\r\n\r\n",
        door.key
    );
    other.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut other).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // A keep-alive connection that asks nothing more is closed after the request deadline,
    // and so are the idle ones: nobody keeps a slot by doing nothing.
    assert!(closed_within(&mut other, Duration::from_secs(4)).await);
    for mut stream in idle {
        assert!(closed_within(&mut stream, Duration::from_secs(1)).await);
    }
}

/// Finding 2-3. The key is checked on the headers alone; the model is read once, unambiguously.
async fn keys_first_and_fields_unambiguous(door: &Door) {
    let to: SocketAddr = format!("127.0.0.1:{}", door.port).parse().unwrap();
    let mut stream = connect_from("127.0.0.1", to).await;
    let head =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: door\r\nContent-Length: 4000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut answer))
        .await
        .expect("401 before any body byte is read")
        .unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 401"),
        "{:?}",
        &answer[..n]
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    for body in [
        r#"{"model":"tiny-llm","MODEL":"tiny-embed","messages":[]}"#,
        r#"{"model":"tiny-llm","Model":"tiny-embed","messages":[]}"#,
        r#"{"model":"tiny-llm","model":"tiny-embed","messages":[]}"#,
    ] {
        let (status, answer) = http(
            door.port,
            "POST",
            "/v1/chat/completions",
            &door.narrow_key,
            body,
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains("ambiguous_field"), "{answer}");
    }
}

/// Finding 4. A request that makes the backend fail is that request's 500, passed on; the backend stays
/// up for everyone else.
async fn a_failing_request_takes_no_backend_down(door: &Door) {
    for _ in 0..3 {
        let (status, answer) = http(
            door.port,
            "POST",
            "/v1/chat/completions",
            &door.narrow_key,
            &chat("[fail]", false),
        )
        .await;
        assert_eq!(status, 500, "{answer}");
        assert!(
            answer.contains("[fail]"),
            "the backend's own answer: {answer}"
        );
    }
    let (status, answer) = http(
        door.port,
        "POST",
        "/v1/chat/completions",
        &door.key,
        &chat("hi", false),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// Finding 8. After a stream longer than the request deadline, the next request on the same
/// connection gets its own full deadline.
async fn the_deadline_starts_after_the_last_byte(door: &Door, backend: &Backend) {
    let to: SocketAddr = format!("127.0.0.1:{}", door.port).parse().unwrap();
    let mut stream = connect_from("127.0.0.1", to).await;
    let body = chat("[hold]", true);
    let head = post_head("/v1/chat/completions", &door.key, body.len());
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .unwrap();
    read_until(&mut stream, "tok0", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    backend.release().await;
    read_until(&mut stream, "0\r\n\r\n", Duration::from_secs(5)).await;
    let body = chat("again", false);
    let head = post_head("/v1/chat/completions", &door.key, body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(body.as_bytes()).await.unwrap();
    let (status, answer) = read_answer(&mut stream).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_door_holds_against_hostile_clients() {
    let backend = Backend::start("door-backend", 5);
    let door = door(&backend);
    door.federation.wait_all_online().await;
    one_address_holds_its_share(&door).await;
    keys_first_and_fields_unambiguous(&door).await;
    a_failing_request_takes_no_backend_down(&door).await;
    the_deadline_starts_after_the_last_byte(&door, &backend).await;
    what_the_door_accepts_crosses(&door).await;
    requests_reach_only_model_servers(&door).await;
    errors_keep_internals_in_the_log(&door).await;
    scoped_keys_and_hosts(&door).await;
    long_tasks_are_bounded(&door).await;
    control_calls_sign_what_they_do(&door).await;
}

/// Finding 9. A body the door accepts but a peer's frame cannot carry is a 413, never a 503.
async fn what_the_door_accepts_crosses(door: &Door) {
    let big = json!({"model": "tiny-llm", "messages": [{"role": "user", "content": "a".repeat(2_000_000)}]});
    let (status, answer) = http(
        door.port,
        "POST",
        "/v1/chat/completions",
        &door.key,
        &big.to_string(),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
}

/// Finding 11. A request for a model goes to model servers only: a command executor for the same type
/// never answers it.
async fn requests_reach_only_model_servers(door: &Door) {
    let (status, answer) = http(
        door.port,
        "POST",
        "/v1/embeddings",
        &door.key,
        r#"{"model":"nowhere","input":"x"}"#,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(!answer.contains("leak"), "{answer}");
    for _ in 0..5 {
        let (status, answer) = http(
            door.port,
            "POST",
            "/v1/embeddings",
            &door.key,
            r#"{"model":"tiny-embed","input":"x"}"#,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer.contains("embedding") && !answer.contains("leak"),
            "{answer}"
        );
    }
}

/// Finding 10. A failure inside the federation is a stable code and a plain sentence, with the request
/// id that the node's log files the details under.
async fn errors_keep_internals_in_the_log(door: &Door) {
    let (head, answer) = support::ingress::exchange(
        door.port,
        "POST",
        "/v1/chat/completions",
        &door.key,
        &chat("[break]", false),
    )
    .await;
    assert!(head.starts_with("http/1.1 502"), "{head}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an X-Request-Id header");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert_eq!(answer["error"]["code"], "backend_error");
    assert!(message.contains(id), "{message}");
    for internal in ["zombie-pc", "127.0.0.1", "http://", "bytes"] {
        assert!(!message.contains(internal), "{message}");
    }
}

/// Finding 7. The door's dashboard needs a key allowed to see it; the federation port's pages answer
/// only their own address as `Host`.
async fn scoped_keys_and_hosts(door: &Door) {
    let (status, answer) = http(door.port, "GET", "/ui/state", &door.narrow_key, "").await;
    assert_eq!(status, 403, "{answer}");
    assert!(!answer.contains("tiny-embed"), "{answer}");
    let node = door.federation.addr("hetzner");
    for path in ["/metrics", "/ui/state", "/ui"] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: rebound.example:{}\r\n",
            node.port()
        );
        assert_eq!(
            raw_request("127.0.0.1", node, &head, "").await.0,
            421,
            "{path}"
        );
        let head = format!("GET {path} HTTP/1.1\r\nHost: {node}\r\n");
        assert_eq!(
            raw_request("127.0.0.1", node, &head, "").await.0,
            200,
            "{path}"
        );
    }
}

/// The status of long task `id`'s answer, once it no longer runs (202), within 10 s.
async fn answer_of(client: &triforce_net::client::SignedClient, id: &str) -> u16 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let state = client
            .get(&format!("/v1/federation/task/{id}"))
            .await
            .unwrap();
        if state.status != 202 || Instant::now() > until {
            return state.status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finding 5. Long tasks hold at most their bytes: the oldest answers make room, answers expire, and
/// running tasks that hold everything make the next one wait (503), not vanish.
async fn long_tasks_are_bounded(door: &Door) {
    let client = door.federation.client("hetzner", "hetzner");
    let pad = "p".repeat(300_000);
    for n in 0..12 {
        let body = json!({"task_id": format!("big-{n}"), "type": "echo", "payload": {"pad": pad}});
        let reply = client
            .request(
                "POST",
                "/v1/federation/task",
                body.to_string().as_bytes(),
                &[("prefer", "respond-async")],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
        // Each answer is in before the next task starts: only ended tasks make room.
        assert_eq!(answer_of(&client, &format!("big-{n}")).await, 200);
    }
    assert_eq!(
        client
            .get("/v1/federation/task/big-0")
            .await
            .unwrap()
            .status,
        404
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        client
            .get("/v1/federation/task/big-11")
            .await
            .unwrap()
            .status,
        404
    );
    let nap = |n: u32| {
        json!({"task_id": format!("nap-{n}"), "type": "nap",
            "payload": {"ms": 3000, "pad": "p".repeat(700_000)}})
        .to_string()
    };
    for n in 0..2 {
        let reply = client
            .request(
                "POST",
                "/v1/federation/task",
                nap(n).as_bytes(),
                &[("prefer", "respond-async")],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    let full = client
        .request(
            "POST",
            "/v1/federation/task",
            nap(2).as_bytes(),
            &[("prefer", "respond-async")],
        )
        .await
        .unwrap();
    assert_eq!(full.status, 503, "{}", full.body);
    assert_eq!(full.body["error"]["code"], "long_tasks_full");
}

/// Finding 6. A signature made for one call does nothing on another: a status poll's headers neither
/// drain a node nor read or cancel a long task; a drain can be undone.
async fn control_calls_sign_what_they_do(door: &Door) {
    let backup = door.federation.addr("backup");
    let poll = format!(
        "GET /v1/federation/status HTTP/1.1\r\nHost: {backup}\r\n{}",
        signed_headers("hetzner", b"")
    );
    assert_eq!(raw_request("127.0.0.1", backup, &poll, "").await.0, 200);
    for (method, path) in [
        ("POST", "/v1/federation/drain"),
        ("GET", "/v1/federation/task/nap-0"),
        ("DELETE", "/v1/federation/task/nap-0"),
    ] {
        let replayed = poll.replacen("GET /v1/federation/status", &format!("{method} {path}"), 1);
        let (status, answer) = raw_request("127.0.0.1", backup, &replayed, "").await;
        assert!(
            status == 400 || status == 401,
            "{method} {path}: {status} {answer}"
        );
    }
    let health = door.federation.client("hetzner", "backup");
    let draining = || async {
        health
            .post("/v1/federation/health", b"")
            .await
            .unwrap()
            .body["draining"]
            .clone()
    };
    assert_eq!(draining().await, false);
    let (drained, out, err) = door
        .federation
        .cli("hetzner", &["drain", "--target", "backup"]);
    assert!(drained, "{out}{err}");
    assert_eq!(draining().await, true);
    let (undone, out, err) = door
        .federation
        .cli("hetzner", &["drain", "--target", "backup", "--undo"]);
    assert!(undone && out.contains("takes tasks again"), "{out}{err}");
    assert_eq!(draining().await, false);
    let cancel = door.federation.client("hetzner", "hetzner");
    let reply = cancel
        .request("DELETE", "/v1/federation/task/nap-1", b"", &[])
        .await
        .unwrap();
    assert_eq!(reply.body["status"], "cancelled", "{}", reply.body);
}

/// Finding 12: `apikey add` validates names, and concurrent adds neither lose keys nor write through a
/// planted symlink.
#[test]
fn apikey_add_is_safe_against_bad_names_races_and_symlinks() {
    let dir = std::env::temp_dir().join(format!("triforce-apikeys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let add = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_triforce"))
            .args(["apikey", "add", "--name", name, "--config"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let refused = add("a b");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("A-Z a-z 0-9"));
    assert!(
        !dir.join("api_keys").exists(),
        "nothing written for a bad name"
    );
    let victim = dir.join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("api_keys.tmp")).unwrap();
    let adders: Vec<_> = (0..8)
        .map(|n| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_triforce"))
                    .args(["apikey", "add", "--name", &format!("k{n}"), "--config"])
                    .arg(&dir)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for adder in adders {
        let output = adder.join().unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    let text = std::fs::read_to_string(dir.join("api_keys")).unwrap();
    let keys = triforce_core::config::ApiKeys::parse("api_keys", &text).unwrap();
    assert_eq!(keys.keys.len(), 8, "{text}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let strays: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".tmp") && name != "api_keys.tmp")
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
