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

/// Checks before binding that the node's ip is on a local interface (else nothing can work:
/// an error naming what the machine has) and inside the configured subnet (else a warning).
pub fn check_address(config: &NodeConfig) -> Result<()> {
    let ip = config.my_ip();
    let local: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .context("cannot list this machine's network interfaces")?
        .into_iter()
        .map(|interface| interface.ip())
        .collect();
    // Linux answers on all of 127.0.0.0/8 through `lo` although only 127.0.0.1 is listed.
    let is_local = local.contains(&ip) || ip.is_loopback();
    if !is_local {
        let have: Vec<String> = local.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "node {} has ip {ip}, which is on no local interface (this machine has {}); is WireGuard up (wg-quick@wg0)?",
            config.me,
            have.join(", ")
        );
    }
    if let Some(subnet) = config.settings.network.subnet {
        if !subnet.contains(&ip) {
            tracing::warn!(%ip, %subnet, "the node's ip is outside the configured subnet; peers may not reach it");
        }
    }
    Ok(())
}
