//! A signed HTTP client for the seed's API, used by the CLI, the demo, the bench and tests (the
//! `client` feature; a node itself never calls the HTTP API). On hyper's pooled client, which
//! the `http` executor uses too, so the node's library needs no second HTTP stack.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use triforce_core::auth::{
    sign, signed_payload, HmacSha256Key, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use triforce_core::node::NodeId;

use crate::exec::error_chain;

/// Signs every request as `node` and sends it from `local_ip`, so the IP check passes.
#[derive(Clone)]
pub struct SignedClient {
    http: Client<HttpConnector, Full<Bytes>>,
    node: NodeId,
    key: HmacSha256Key,
    target: SocketAddr,
    timeout: Duration,
}

/// An answer: status code and JSON body (or the body as a JSON string if it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{target}: {message}")]
    Request { target: SocketAddr, message: String },
    #[error("{target}: no answer within {timeout:?}")]
    Timeout {
        target: SocketAddr,
        timeout: Duration,
    },
}

impl SignedClient {
    /// A client for `target`; every exchange (connect, request, whole answer) within `timeout`.
    pub fn new(
        node: NodeId,
        psk: &[u8],
        local_ip: IpAddr,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local_ip));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(SignedClient {
            http,
            node,
            key: HmacSha256Key::new(psk),
            target,
            timeout,
        })
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        self.send(Method::POST, path, body).await
    }

    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, b"").await
    }

    /// A request with extra headers (`Prefer: respond-async`), any method.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        extra: &[(&'static str, &str)],
    ) -> Result<Reply, ClientError> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Request {
            target: self.target,
            message: e.to_string(),
        })?;
        let (status, bytes) = self.send_with(method, path, body, extra).await?;
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        Ok(Reply { status, body })
    }

    /// A POST whose answer is left unparsed: status and bytes (for load generation, where
    /// parsing every answer would be the client's cost, not the server's).
    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Result<(u16, Bytes), ClientError> {
        self.send_raw(Method::POST, path, body).await
    }

    async fn send(&self, method: Method, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        let (status, bytes) = self.send_raw(method, path, body).await?;
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        Ok(Reply { status, body })
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Bytes), ClientError> {
        self.send_with(method, path, body, &[]).await
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        extra: &[(&'static str, &str)],
    ) -> Result<(u16, Bytes), ClientError> {
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let payload = signed_payload(method.as_str(), path, body);
        let signed = sign(&self.key, &self.node, unix_s, &payload);
        let failed = |message: String| ClientError::Request {
            target: self.target,
            message,
        };
        let uri = format!("http://{}{}", self.target, path);
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| failed(e.to_string()))?;
        let headers = request.headers_mut();
        for (name, value) in [
            (HEADER_NODE, signed.node),
            (HEADER_TIMESTAMP, signed.timestamp),
            (HEADER_SIGNATURE, signed.signature),
        ] {
            let value = HeaderValue::from_str(&value).map_err(|e| failed(e.to_string()))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in extra {
            let value = HeaderValue::from_str(value).map_err(|e| failed(e.to_string()))?;
            headers.insert(*name, value);
        }
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| failed(error_chain(&e)))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                target: self.target,
                timeout: self.timeout,
            })?
    }
}
