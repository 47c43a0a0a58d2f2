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
pub struct Answer {
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

/// One request on a fresh connection from this host to `target`.
pub async fn exchange(
    target: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> io::Result<Answer> {
    let failed = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let stream = turmoil::net::TcpStream::connect(target).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(connection);
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
    Ok(Answer { status, body })
}
