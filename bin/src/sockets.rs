//! Binding a node's sockets and making clients, with errors that name the address.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use triforce_net::client::SignedClient;
use triforce_net::load::{NodeConfig, PSK_ENV};

/// The node's UDP (QUIC) and TCP (HTTP) sockets on its configured `ip:port`.
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, tokio::net::TcpListener)> {
    let hint = "is this node's ip configured on a local interface, and is the port free?";
    let udp = UdpSocket::bind(addr)
        .with_context(|| format!("cannot bind UDP {addr} for QUIC ({hint})"))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind TCP {addr} for HTTP ({hint})"))?;
    Ok((udp, tcp))
}

/// Loads `dir` for `node`, with the PSK from the environment if set.
pub fn load(dir: &std::path::Path, node: &str) -> Result<NodeConfig> {
    NodeConfig::load(dir, node, std::env::var(PSK_ENV).ok()).map_err(anyhow::Error::from)
}

/// A client that signs as `config`'s node, from its address, to `target` (a node id).
pub fn client(
    config: &NodeConfig,
    target: Option<&str>,
    timeout: Duration,
) -> Result<SignedClient> {
    let target_id = target.unwrap_or(config.me.as_str());
    let (_, spec) = config.federation.get(target_id).with_context(|| {
        format!(
            "node {target_id:?} is not in federation_nodes.json; it defines: {}",
            config.federation.ids()
        )
    })?;
    let client = SignedClient::new(
        config.me.clone(),
        &config.psk,
        config.my_ip(),
        SocketAddr::new(spec.ip, spec.port),
        timeout,
    )?;
    Ok(client)
}

/// A seed for the node's tie-breaking RNG, which is all it is used for.
pub fn rng_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
