//! A battery of hostile requests against a live node: each gets its own status and error code,
//! and afterwards the node still answers and no accepted task was lost.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{task_body, Federation, PSK};

/// Small limits, and nodes on one thread (`runtime_threads = 1`): a trickling or hostile client
/// must not stall a node that has a single thread to give it.
const LIMITS: &str = "[limits]\nhttp_connections_max = 8\nrequest_read_timeout_ms = 1000\n\
                      body_bytes_max = 65536\nruntime_threads = 1\n";

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
            signed("hetzner", &other_ts(-31), &health),
            401,
            "expired",
        ),
        case(
            "timestamp in the future",
            signed("hetzner", &other_ts(31), &health),
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
        Case {
            from: "127.0.0.9",
            ..case(
                "hetzner from a foreign address",
                good(),
                403,
                "ip_not_allowed",
            )
        },
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
    assert!(cases.len() >= 30);
    for case in &cases {
        let (status, answer) = send(&federation, case).await;
        assert_eq!(status, case.status, "{}: {answer}", case.name);
        assert_eq!(
            answer["error"]["code"], case.code,
            "{}: {answer}",
            case.name
        );
    }

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
    let addr = federation.addr("hetzner");
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
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
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
