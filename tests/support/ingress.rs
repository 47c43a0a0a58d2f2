//! The AI door's test kit: the project's LLM stand-in as a process, raw HTTP/1.1 exchanges
//! that show bytes as they arrive, and keys made with `triforce apikey add`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Federation;

/// A `triforce backend --llm` process, killed on drop.
pub struct Backend {
    pub port: u16,
    child: Child,
}

impl Backend {
    pub fn start(name: &str, gap_ms: u64) -> Self {
        Self::start_on(name, gap_ms, Federation::free_tcp_port(), &[])
    }

    /// A backend with nothing loaded: a node with the model loaded elsewhere goes first.
    pub fn start_cold(name: &str, gap_ms: u64) -> Self {
        Self::start_on(
            name,
            gap_ms,
            Federation::free_tcp_port(),
            &["--nothing-loaded"],
        )
    }

    /// A backend on `port`, with `extra` arguments (`--fail-status 503`).
    pub fn start_on(name: &str, gap_ms: u64, port: u16, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_triforce"))
            .args(["backend", "--llm", "--name", name, "--gap-ms"])
            .arg(gap_ms.to_string())
            .args(extra)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the backend starts");
        let backend = Backend { port, child };
        wait_listening(port);
        backend
    }

    pub async fn stats(&self) -> Value {
        let (_, body) = http(self.port, "GET", "/control/stats", "", "").await;
        serde_json::from_str(&body).expect("stats are JSON")
    }

    pub async fn release(&self) {
        http(self.port, "POST", "/control/release", "", "").await;
    }
}

impl Backend {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_listening(port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request over a fresh connection; the status and the whole (de-chunked) body.
pub async fn http(port: u16, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let (head, rest) = exchange(port, method, path, key, body).await;
    let status = head[9..12].parse().expect("a status line");
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&rest)
    } else {
        rest
    };
    (status, body)
}

/// One HTTP/1.1 request over a fresh connection; the answer's head (lowercased) and its body as
/// it came on the wire.
pub async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (String, String) {
    let mut stream = open(port, method, path, key, body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 20 s")
        .expect("the answer reads");
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").expect("a header end");
    (head.to_ascii_lowercase(), rest.to_string())
}

pub fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

/// Sends a request with `Connection: close` and returns the open connection to read from.
pub async fn open(port: u16, method: &str, path: &str, key: &str, body: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let auth = if key.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {key}\r\n")
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads from `stream` until `seen` is in what arrived; everything read so far.
pub async fn read_until(stream: &mut TcpStream, seen: &str, limit: Duration) -> String {
    let mut text = String::new();
    let until = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while !text.contains(seen) {
        let n = tokio::time::timeout_at(until, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{seen:?} did not arrive within {limit:?}; got {text:?}"))
            .unwrap();
        assert!(n > 0, "the connection closed before {seen:?}; got {text:?}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

/// `triforce apikey add`: the key is the last line of stdout.
pub fn apikey_add(dir: &Path, name: &str) -> String {
    apikey_add_with(dir, name, &[])
}

/// `triforce apikey add` with `extra` arguments (`--model M`, `--dashboard`).
pub fn apikey_add_with(dir: &Path, name: &str, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_triforce"))
        .args(["apikey", "add", "--name", name, "--config"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.lines().last().unwrap().to_string();
    assert!(key.starts_with("tf-") && key.len() == 67, "{key}");
    let file = std::fs::read_to_string(dir.join("api_keys")).unwrap();
    assert!(
        !file.contains(&key),
        "the file must hold only the key's hash"
    );
    key
}

/// The Python with the `openai`, `ollama` and `anthropic` packages: `TRIFORCE_PYTHON`, else the virtualenv
/// `.ci/python-clients` makes in `target/python-clients`.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("TRIFORCE_PYTHON") {
        return python.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/python-clients/bin/python");
    assert!(
        python.exists(),
        "no Python with the openai and ollama packages at {}: run .ci/python-clients (or set TRIFORCE_PYTHON)",
        python.display()
    );
    python
}

/// Runs the client script `script` (in `tests/clients`) with `args`; fails the test with its
/// output when it fails.
pub fn run_client(script: &str, args: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(python())
        .arg(root.join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{script} {args:?}:\n{stdout}{stderr}");
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{stdout}\n{stderr}"
    );
}
