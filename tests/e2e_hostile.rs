//! A battery of hostile requests against a live node: each gets its own status and error code,
//! and afterwards the node still answers and no accepted task was lost.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{task_body, Federation, PSK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Small limits, and nodes on one thread (`runtime_threads = 1`): a trickling or hostile client
/// must not stall a node that has a single thread to give it. `big` prints a result larger than
/// a frame may carry.
const LIMITS: &str = r#"
[limits]
http_connections_max = 8
http_connections_per_source_max = 4
request_read_timeout_ms = 1000
body_bytes_max = 65536
replay_entries_max = 400
runtime_threads = 1
[executors.big]
kind = "command"
program = "/bin/sh"
args = ["-c", "printf '\"'; head -c 100000 /dev/zero | tr '\\0' a; printf '\"'"]
"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signature(psk: &[u8], ts: &str, node: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(psk).unwrap();
    mac.update(format!("{ts}:{node}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One hostile request: what is sent and what must come back.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    from: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// Correct headers for `body` as `node` at `ts`, which each case then spoils in one way.
fn signed(node: &str, ts: &str, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("X-Federation-Node", node.as_bytes().to_vec()),
        ("X-Federation-Timestamp", ts.as_bytes().to_vec()),
        (
            "X-Federation-Signature",
            signature(PSK.as_bytes(), ts, node, body).into_bytes(),
        ),
    ]
}

fn without(mut headers: Vec<(&'static str, Vec<u8>)>, name: &str) -> Vec<(&'static str, Vec<u8>)> {
    headers.retain(|(n, _)| *n != name);
    headers
}

fn replaced(
    headers: Vec<(&'static str, Vec<u8>)>,
    name: &'static str,
    value: &[u8],
) -> Vec<(&'static str, Vec<u8>)> {
    let mut headers = without(headers, name);
    headers.push((name, value.to_vec()));
    headers
}

fn doubled(
    mut headers: Vec<(&'static str, Vec<u8>)>,
    name: &'static str,
) -> Vec<(&'static str, Vec<u8>)> {
    let value = headers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    headers.push((name, value));
    headers
}

fn cases() -> Vec<Case> {
    let ts = now().to_string();
    let health = b"{}".to_vec();
    let good = || signed("hetzner", &ts, &health);
    let case = |name, headers, status, code| Case {
        name,
        method: "POST",
        path: "/v1/federation/health",
        from: "127.0.0.1",
        headers,
        body: health.clone(),
        status,
        code,
    };
    let task_case = |name, body: Vec<u8>, status, code| Case {
        name,
        method: "POST",
        path: "/v1/federation/task",
        from: "127.0.0.1",
        headers: signed("hetzner", &ts, &body),
        body,
        status,
        code,
    };
    let other_ts = |delta: i64| (now() as i64 + delta).to_string();
    let spoil_ts = |value: &str| {
        let mut headers = signed("hetzner", value, &health);
        headers.retain(|(n, _)| *n != "X-Federation-Timestamp");
        headers.push(("X-Federation-Timestamp", value.as_bytes().to_vec()));
        headers
    };
    let deep = format!(
        "{{\"task_id\":\"d\",\"type\":\"echo\",\"payload\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    vec![
        case(
            "timestamp missing",
            without(good(), "X-Federation-Timestamp"),
            400,
            "missing_header",
        ),
        case(
            "timestamp duplicated",
            doubled(good(), "X-Federation-Timestamp"),
            400,
            "duplicate_header",
        ),
        case(
            "timestamp not numeric",
            spoil_ts("soon"),
            400,
            "malformed_timestamp",
        ),
        case(
            "timestamp huge",
            spoil_ts("99999999999999999999999999"),
            400,
            "malformed_timestamp",
        ),
        case(
            "timestamp negative",
            spoil_ts(&format!("-{ts}")),
            400,
            "malformed_timestamp",
        ),
        case(
            "timestamp fractional",
            spoil_ts(&format!("{ts}.5")),
            400,
            "malformed_timestamp",
        ),
        case(
            "timestamp leading zeros",
            spoil_ts(&format!("00{ts}")),
            400,
            "malformed_timestamp",
        ),
        case(
            "timestamp too old",
            signed("hetzner", &other_ts(-300), &health),
            401,
            "expired",
        ),
        case(
            "timestamp in the future",
            // Well past the 30 s window: the cases are signed before the battery starts, and a
            // loaded machine may take seconds to reach this one, which brings a timestamp 31 s
            // ahead back into the window (the boundary itself is the verifier's unit test).
            signed("hetzner", &other_ts(300), &health),
            401,
            "future_timestamp",
        ),
        case(
            "signature missing",
            without(good(), "X-Federation-Signature"),
            400,
            "missing_header",
        ),
        case(
            "signature duplicated",
            doubled(good(), "X-Federation-Signature"),
            400,
            "duplicate_header",
        ),
        case(
            "signature too short",
            replaced(good(), "X-Federation-Signature", &[b'a'; 63]),
            400,
            "malformed_signature",
        ),
        case(
            "signature not hex",
            replaced(good(), "X-Federation-Signature", &[b'z'; 64]),
            400,
            "malformed_signature",
        ),
        case(
            "signature uppercase",
            replaced(
                good(),
                "X-Federation-Signature",
                signature(PSK.as_bytes(), &ts, "hetzner", &health)
                    .to_uppercase()
                    .as_bytes(),
            ),
            400,
            "malformed_signature",
        ),
        case(
            "signature for another body",
            replaced(
                good(),
                "X-Federation-Signature",
                signature(PSK.as_bytes(), &ts, "hetzner", b"{\"x\":1}").as_bytes(),
            ),
            401,
            "bad_signature",
        ),
        case(
            "signature for another node",
            replaced(
                good(),
                "X-Federation-Signature",
                signature(PSK.as_bytes(), &ts, "backup", &health).as_bytes(),
            ),
            401,
            "bad_signature",
        ),
        case(
            "signature with another key",
            replaced(
                good(),
                "X-Federation-Signature",
                signature(b"guessed-psk-0123456789", &ts, "hetzner", &health).as_bytes(),
            ),
            401,
            "bad_signature",
        ),
        case(
            "node missing",
            without(good(), "X-Federation-Node"),
            400,
            "missing_header",
        ),
        case(
            "node duplicated",
            doubled(good(), "X-Federation-Node"),
            400,
            "duplicate_header",
        ),
        case(
            "node unknown",
            signed("mallory", &ts, &health),
            401,
            "unknown_node",
        ),
        case(
            "node with a colon",
            signed("het:zner", &ts, &health),
            400,
            "malformed_node",
        ),
        case(
            "node not ASCII",
            signed("h\u{e9}tzner", &ts, &health),
            400,
            "malformed_node",
        ),
        case(
            "node empty",
            replaced(good(), "X-Federation-Node", b""),
            400,
            "malformed_node",
        ),
        case(
            "zombie-pc from hetzner's address",
            signed("zombie-pc", &ts, &health),
            403,
            "ip_not_allowed",
        ),
        task_case(
            "task body not JSON",
            b"this is not json".to_vec(),
            400,
            "bad_task",
        ),
        task_case("task body an array", b"[1,2,3]".to_vec(), 400, "bad_task"),
        task_case(
            "task without type",
            b"{\"task_id\":\"x\"}".to_vec(),
            400,
            "bad_task",
        ),
        task_case(
            "task id with spaces",
            b"{\"task_id\":\"a b\",\"type\":\"echo\"}".to_vec(),
            400,
            "bad_task",
        ),
        task_case(
            "task with unknown field",
            b"{\"task_id\":\"u\",\"type\":\"echo\",\"evil\":1}".to_vec(),
            400,
            "bad_task",
        ),
        task_case("task nested 5000 deep", deep.into_bytes(), 400, "bad_task"),
        task_case(
            "priority above the range",
            b"{\"task_id\":\"p1\",\"type\":\"echo\",\"priority\":1001}".to_vec(),
            400,
            "bad_task",
        ),
        task_case(
            "priority below the range",
            b"{\"task_id\":\"p2\",\"type\":\"echo\",\"priority\":-1001}".to_vec(),
            400,
            "bad_task",
        ),
        task_case(
            "priority i32::MIN",
            b"{\"task_id\":\"p3\",\"type\":\"echo\",\"priority\":-2147483648}".to_vec(),
            400,
            "bad_task",
        ),
        task_case(
            "a type no node runs",
            task_body("teleport", json!({})),
            422,
            "all_nodes_failed",
        ),
        task_case(
            "a result over the frame limit",
            task_body("big", json!({})),
            502,
            "result_too_large",
        ),
        task_case(
            "task body over the limit",
            vec![b' '; 70_000],
            413,
            "body_too_large",
        ),
        Case {
            method: "GET",
            path: "/v1/federation/task",
            ..case("GET on task", good(), 405, "method_not_allowed")
        },
        Case {
            method: "DELETE",
            path: "/v1/federation/health",
            ..case("DELETE on health", good(), 405, "method_not_allowed")
        },
        Case {
            method: "PUT",
            path: "/v1/federation/status",
            ..case("PUT on status", good(), 405, "method_not_allowed")
        },
        Case {
            path: "/v1/federation/../../etc/passwd",
            ..case("path traversal", good(), 404, "not_found")
        },
        Case {
            path: "/v2/federation/health",
            ..case("unknown path", good(), 404, "not_found")
        },
    ]
}

/// A raw HTTP/1.1 exchange from `from`: writes `head`, then each chunk of the body (stopping
/// at the first write error), then reads the answer. Returns the status (0 if none came) and
/// whether every byte of the request went out. Writing everything before reading is what
/// Python's `http.client` and many SDKs do.
async fn write_then_read(
    to: SocketAddr,
    from: &str,
    head: &str,
    chunks: impl Iterator<Item = Vec<u8>>,
) -> (u16, bool) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut sent_all = stream.write_all(head.as_bytes()).await.is_ok();
    for chunk in chunks {
        if !sent_all || stream.write_all(&chunk).await.is_err() {
            sent_all = false;
            break;
        }
    }
    (read_status(&mut stream).await, sent_all)
}

/// The status code of the answer on `stream` (0 when the connection ends without one).
async fn read_status(stream: &mut tokio::net::TcpStream) -> u16 {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    });
    let _ = read.await;
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A connection from `from` that is closed by the node within `within`, having sent nothing.
async fn closed_unanswered(to: SocketAddr, from: &str, within: Duration) -> bool {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let Ok(mut stream) = socket.connect(to).await else {
        return true;
    };
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// One signer (backup) floods hetzner with valid signed tasks: it runs out of its share of the
/// replay cache (429), while hetzner's own requests are still accepted.
async fn flooding_signer_is_refused_alone(federation: &Federation) {
    let flooder = federation.client("backup", "hetzner");
    let mut refused = 0;
    for i in 0..300 {
        let reply = flooder
            .post(
                "/v1/federation/task",
                &task_body("echo", json!({"flood": i})),
            )
            .await
            .unwrap();
        match reply.status {
            200 => {}
            429 => {
                assert_eq!(reply.body["error"]["code"], "replay_cache_full");
                refused += 1;
            }
            other => panic!("flood request {i}: {other} {}", reply.body),
        }
    }
    assert_eq!(
        refused, 50,
        "backup may hold 400 - 3 x 50 guaranteed = 250 signatures"
    );
    let reply = federation
        .client("hetzner", "hetzner")
        .post("/v1/federation/task", &task_body("echo", json!({})))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "hetzner keeps its share: {}", reply.body);
}

/// Bodies over the limit are answered 413 in a way a write-everything-first client can read.
async fn oversized_bodies_get_a_readable_413(addr: SocketAddr) {
    let declared = 16usize << 20;
    let head = format!(
        "POST /v1/federation/task HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    let chunks = (0..declared / 65536).map(|_| vec![b' '; 65536]);
    let (status, sent_all) = write_then_read(addr, "127.0.0.1", &head, chunks).await;
    assert!(
        sent_all,
        "the node cut off a 16 MiB upload instead of draining it"
    );
    assert_eq!(status, 413, "Content-Length over the limit");

    let head = "POST /v1/federation/task HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = |n: usize| {
        let mut bytes = format!("{n:x}\r\n").into_bytes();
        bytes.extend(std::iter::repeat_n(b' ', n));
        bytes.extend_from_slice(b"\r\n");
        bytes
    };
    let chunks = (0..16).map(|_| chunk(16384)).chain([b"0\r\n\r\n".to_vec()]);
    let (status, sent_all) = write_then_read(addr, "127.0.0.1", head, chunks).await;
    assert!(
        sent_all,
        "the node cut off a chunked upload instead of draining it"
    );
    assert_eq!(status, 413, "a chunked body passing the limit");
}

/// A body trickled a byte at a time is cut off at the request's one deadline (1 s here), not
/// kept alive by every byte.
async fn a_trickled_body_meets_one_deadline(addr: SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /v1/federation/task HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..50 {
            if stream.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        read_status(&mut stream).await
    };
    let status = trickle.await;
    let ended_after = started.elapsed();
    assert_eq!(status, 408, "the trickled body is answered request_timeout");
    assert!(
        ended_after < Duration::from_millis(2500),
        "the trickled body held the connection for {ended_after:?}"
    );
}

/// Connections from a stranger are closed at accept; one source holds at most its share
/// (4 of 8 here) while another node is served.
async fn connections_are_filtered_and_shared(federation: &Federation) {
    let addr = federation.addr("hetzner");
    assert!(
        closed_unanswered(addr, "127.0.0.9", Duration::from_millis(500)).await,
        "a connection from an address that is no node's and no allowed client is closed"
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        held.push(socket.connect(addr).await.unwrap());
    }
    for extra in 0..4 {
        assert!(
            closed_unanswered(addr, "127.0.0.3", Duration::from_millis(500)).await,
            "backup's connection {} beyond its share of 4 was kept",
            extra + 5
        );
    }
    let started = Instant::now();
    let status = federation
        .client("zombie-pc", "hetzner")
        .get("/v1/federation/status")
        .await
        .unwrap();
    assert_eq!(status.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "another node waited {:?} behind one source's connections",
        started.elapsed()
    );
    drop(held);
}

async fn send(federation: &Federation, case: &Case) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .local_address(case.from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let url = format!("http://{}{}", federation.addr("hetzner"), case.path);
    let mut request = client
        .request(case.method.parse().unwrap(), url)
        .body(case.body.clone());
    for (name, value) in &case.headers {
        request = request.header(
            *name,
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_and_the_node_goes_on() {
    let federation = Federation::start_with("hostile", LIMITS);
    federation.wait_all_online().await;
    let client = federation.client("hetzner", "hetzner");
    // First, while hetzner has used none of its replay share.
    flooding_signer_is_refused_alone(&federation).await;

    // A task accepted before the battery, still running through it.
    let running = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .post(
                    "/v1/federation/task",
                    &task_body("chat", json!({"ms": 3000})),
                )
                .await
        })
    };

    let cases = cases();
    assert!(cases.len() >= 40);
    for case in &cases {
        let (status, answer) = send(&federation, case).await;
        assert_eq!(status, case.status, "{}: {answer}", case.name);
        assert_eq!(
            answer["error"]["code"], case.code,
            "{}: {answer}",
            case.name
        );
    }

    let addr = federation.addr("hetzner");
    // A replayed task request.
    let ts = now().to_string();
    let body = task_body("echo", json!({}));
    let replay = Case {
        name: "replay",
        method: "POST",
        path: "/v1/federation/task",
        from: "127.0.0.1",
        headers: signed("hetzner", &ts, &body),
        body,
        status: 0,
        code: "",
    };
    assert_eq!(send(&federation, &replay).await.0, 200);
    let (status, answer) = send(&federation, &replay).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("replay"))
    );

    // Slow clients that trickle header bytes are dropped, and more connections than the limit
    // wait instead of crowding out the rest.
    let started = Instant::now();
    let trickler = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for byte in b"POST /v1/federation/health HTTP/1.1\r\nHost: x\r\n" {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        started.elapsed()
    });
    // Idle connections from the other two nodes' addresses: each keeps its share of four, the
    // rest are closed at once; none of it delays hetzner's own call below.
    let mut idle = Vec::new();
    for i in 0..20 {
        let socket = TcpSocket::new_v4().unwrap();
        let from = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
        socket
            .bind(SocketAddr::new(from.parse().unwrap(), 0))
            .unwrap();
        idle.push(socket.connect(addr).await.unwrap());
    }
    let dropped_after = trickler.join().unwrap();
    assert!(
        dropped_after < Duration::from_secs(4),
        "the trickling client was dropped after {dropped_after:?}"
    );
    let health = client.post("/v1/federation/health", b"").await.unwrap();
    assert_eq!(
        health.status, 200,
        "the node answers after the slow and idle clients"
    );
    drop(idle);

    oversized_bodies_get_a_readable_413(addr).await;
    a_trickled_body_meets_one_deadline(addr).await;
    connections_are_filtered_and_shared(&federation).await;
    reused_task_ids_and_raw_payloads(&client).await;
    refusals_are_counted_not_all_logged(&federation).await;

    let reply = client
        .post(
            "/v1/federation/task",
            &task_body("echo", json!({"after": "battery"})),
        )
        .await
        .unwrap();
    assert_eq!(reply.body["status"], "completed");
    let earlier = running.await.unwrap().unwrap();
    assert_eq!(
        earlier.body["status"], "completed",
        "the task accepted before the battery: {}",
        earlier.body
    );
}

/// A task id reused with other work is a conflict, the same work is idempotent, and a payload
/// that would grow if re-encoded crosses to another node as it was written.
async fn reused_task_ids_and_raw_payloads(client: &triforce_net::client::SignedClient) {
    let task = |id: &str, payload: Value| {
        json!({"task_id": id, "type": "gpu_inference", "payload": payload}).to_string()
    };
    let first = client
        .post(
            "/v1/federation/task",
            task("dup-1", json!({"ms": 1, "v": 1})).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        (first.status, first.body["node"].as_str()),
        (200, Some("zombie-pc"))
    );
    let other = client
        .post(
            "/v1/federation/task",
            task("dup-1", json!({"ms": 1, "v": 2})).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.body["error"]["code"], "task_id_conflict");
    // The same work again (another priority, so not a byte-for-byte replay): idempotent.
    let same_work = json!({"task_id": "dup-1", "type": "gpu_inference",
                           "payload": {"ms": 1, "v": 1}, "priority": 2});
    let again = client
        .post("/v1/federation/task", same_work.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.body["result"]["v"], 1, "the first run's result");

    // 11,000 x "1e15," is 55 kB as written and about 200 kB re-encoded: over a frame.
    let pad = vec!["1e15"; 11_000].join(",");
    let body = format!(
        "{{\"task_id\":\"raw-1\",\"type\":\"gpu_inference\",\"payload\":{{\"ms\":1,\"pad\":[{pad}]}}}}"
    );
    assert!(body.len() < 65536);
    let reply = client
        .post("/v1/federation/task", body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body["error"]);
    assert_eq!(reply.body["node"], "zombie-pc");
    assert_eq!(
        reply.body["result"]["pad"].as_array().map(Vec::len),
        Some(11_000)
    );
    let after = client
        .post(
            "/v1/federation/task",
            &task_body("gpu_inference", json!({"ms": 1})),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            after.status,
            after.body["attempts"].as_array().map(Vec::len)
        ),
        (200, Some(1)),
        "the link to zombie-pc is intact: {}",
        after.body
    );
}

/// A flood of refusals is counted in full but logged a few lines at a time; made-up task types
/// are one `other` label, not one label each.
async fn refusals_are_counted_not_all_logged(federation: &Federation) {
    let addr = federation.addr("hetzner");
    let ts = now().to_string();
    for i in 0..60 {
        let body = format!("{{\"n\":{i}}}").into_bytes();
        let headers = replaced(
            signed("hetzner", &ts, &body),
            "X-Federation-Signature",
            signature(b"guessed-psk-0123456789", &ts, "hetzner", &body).as_bytes(),
        );
        let case = Case {
            name: "flood of bad signatures",
            method: "POST",
            path: "/v1/federation/health",
            from: "127.0.0.1",
            headers,
            body,
            status: 401,
            code: "bad_signature",
        };
        assert_eq!(send(federation, &case).await.0, 401);
    }
    let client = federation.client("hetzner", "hetzner");
    for i in 0..20 {
        let reply = client
            .post(
                "/v1/federation/task",
                &task_body(&format!("zz-made-up-{i}"), json!({})),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 422);
    }
    let metrics = reqwest::Client::builder()
        .local_address("127.0.0.1".parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("zz-made-up"),
        "client-chosen types became labels"
    );
    assert!(metrics.contains("type=\"other\""), "{metrics}");
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("triforce_auth_rejections_total{reason=\"bad_signature\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(counted >= 60.0, "every refusal is counted: {counted}");
    let closed: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("triforce_connection_refusals_total{reason=\"http_unknown_address\"}")
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(closed >= 1.0, "the stranger's connection is counted");
    let log = std::fs::read_to_string(federation.dir.join("hetzner.log")).unwrap();
    let logged = log
        .lines()
        .filter(|l| l.contains("refused a request") && l.contains("bad_signature"))
        .count();
    assert!(
        logged <= 2 * triforce_net::log_limit::LINES_PER_WINDOW as usize,
        "{logged} log lines for 60+ refusals"
    );
}
