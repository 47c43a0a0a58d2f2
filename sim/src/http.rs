//! The seed's HTTP API over turmoil's TCP: the node serves its real shim on a simulated
//! listener, and the load and the adversary speak HTTP/1.1 to it, so the verifier, the replay
//! cache, the body limits, task parsing and the error answers run in every simulated request.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use triforce_core::auth::{sign, HmacSha256Key, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use triforce_core::node::NodeId;
use triforce_net::clock::Clock;

use crate::clock::SimClock;

/// turmoil's TCP listener as the shim's [`triforce_net::http::Listener`].
pub struct SimTcpListener(pub turmoil::net::TcpListener);

impl triforce_net::http::Listener for SimTcpListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }
}

/// An answer: status and body bytes.
pub struct HttpAnswer {
    pub status: u16,
    pub body: Bytes,
}

/// The three signed headers for `body`, signed as `node` with `psk` at the simulated time.
pub fn signed(psk: &[u8], node: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let node = NodeId::new(node).expect("valid node id");
    let headers = sign(
        &HmacSha256Key::new(psk),
        &node,
        SimClock::new().unix_s(),
        body,
    );
    vec![
        (HEADER_NODE, headers.node),
        (HEADER_TIMESTAMP, headers.timestamp),
        (HEADER_SIGNATURE, headers.signature),
    ]
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Kept-alive connections from this host to one target, as a client's pool keeps them: a
/// burst of 80 tasks opens 80 connections once, and later bursts reuse them.
#[derive(Clone, Default)]
pub struct Pool {
    /// Each with when it was last answered.
    idle: std::sync::Arc<std::sync::Mutex<Vec<(Sender, tokio::time::Instant)>>>,
}

/// Longest a connection is kept idle for reuse: well under the server's request read timeout
/// (10 s), after which it closes an idle connection, so a reused one is never closing under
/// the request (the race every keep-alive client must stay clear of).
const IDLE_REUSE_MAX: std::time::Duration = std::time::Duration::from_secs(4);

/// One request on a fresh connection from this host to `target`.
pub async fn exchange(
    target: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> io::Result<HttpAnswer> {
    exchange_in(&Pool::default(), target, method, path, headers, body).await
}

/// One request on a connection of `pool` (a new one when none is idle); the connection goes
/// back to the pool once answered.
pub async fn exchange_in(
    pool: &Pool,
    target: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> io::Result<HttpAnswer> {
    let failed = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let idle = {
        let mut idle = pool.idle.lock().expect("pool lock");
        let now = tokio::time::Instant::now();
        std::iter::from_fn(|| idle.pop())
            .find(|(sender, at)| !sender.is_closed() && now.duration_since(*at) < IDLE_REUSE_MAX)
            .map(|(sender, _)| sender)
    };
    let mut sender = match idle {
        Some(sender) => sender,
        None => {
            let stream = turmoil::net::TcpStream::connect(target).await?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| failed(&e))?;
            tokio::spawn(connection);
            sender
        }
    };
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", target.to_string())
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| failed(&e))?;
    let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(&e))?
        .to_bytes();
    let answered = tokio::time::Instant::now();
    pool.idle
        .lock()
        .expect("pool lock")
        .push((sender, answered));
    Ok(HttpAnswer { status, body })
}
