//! A signed HTTP client for the seed's API, used by the CLI, the demo and tests.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use triforce_core::auth::{sign, HmacSha256Key, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use triforce_core::node::NodeId;

/// Signs every request as `node` and sends it from `local_ip`, so the IP check passes.
#[derive(Clone)]
pub struct SignedClient {
    http: reqwest::Client,
    node: NodeId,
    key: HmacSha256Key,
    target: SocketAddr,
}

/// An answer: status code and JSON body (or the body as a JSON string if it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl SignedClient {
    pub fn new(
        node: NodeId,
        psk: &[u8],
        local_ip: IpAddr,
        target: SocketAddr,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .local_address(local_ip)
            .timeout(timeout)
            .no_proxy()
            .build()?;
        Ok(SignedClient {
            http,
            node,
            key: HmacSha256Key::new(psk),
            target,
        })
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> reqwest::Result<Reply> {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<Reply> {
        self.send(reqwest::Method::GET, path, b"").await
    }

    /// A POST whose answer is left unparsed: status and bytes (for load generation, where
    /// parsing every answer would be the client's cost, not the server's).
    pub async fn post_raw(&self, path: &str, body: &[u8]) -> reqwest::Result<(u16, bytes::Bytes)> {
        self.send_raw(reqwest::Method::POST, path, body).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
    ) -> reqwest::Result<Reply> {
        let (status, bytes) = self.send_raw(method, path, body).await?;
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        Ok(Reply { status, body })
    }

    async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
    ) -> reqwest::Result<(u16, bytes::Bytes)> {
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let headers = sign(&self.key, &self.node, unix_s, body);
        let url = format!("http://{}{}", self.target, path);
        let response = self
            .http
            .request(method, url)
            .header(HEADER_NODE, headers.node)
            .header(HEADER_TIMESTAMP, headers.timestamp)
            .header(HEADER_SIGNATURE, headers.signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?))
    }
}
