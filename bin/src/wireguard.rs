//! WireGuard material in the seed's layout: the master listens and peers with every hub; each
//! hub peers with the master only, routes the whole subnet through it and keeps the tunnel
//! open (`PersistentKeepalive = 25`), so a hub behind NAT (the home PC) stays reachable.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ipnet::IpNet;
use triforce_core::config::Federation;
use triforce_core::node::{NodeId, Role};
use x25519_dalek::{PublicKey, StaticSecret};

/// A node's WireGuard key pair.
#[derive(Clone)]
pub struct KeyPair {
    secret: StaticSecret,
}

impl KeyPair {
    /// A fresh key from the OS's randomness.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).context("no OS randomness for a WireGuard key")?;
        Ok(KeyPair {
            secret: StaticSecret::from(bytes),
        })
    }

    /// From the base64 private key, as `wg genkey` prints it.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes: [u8; 32] = BASE64
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("not a base64 WireGuard private key (32 bytes)")?;
        Ok(KeyPair {
            secret: StaticSecret::from(bytes),
        })
    }

    pub fn private_base64(&self) -> String {
        BASE64.encode(self.secret.to_bytes())
    }

    pub fn public_base64(&self) -> String {
        BASE64.encode(PublicKey::from(&self.secret).as_bytes())
    }
}

/// Everything the configs are made from.
pub struct Plan<'a> {
    pub federation: &'a Federation,
    pub keys: &'a BTreeMap<NodeId, KeyPair>,
    pub subnet: IpNet,
    pub listen_port: u16,
    /// Public `host:port` of nodes reachable from outside (the master at least, for hubs).
    pub endpoints: &'a BTreeMap<String, String>,
}

impl Plan<'_> {
    fn master(&self) -> Result<&NodeId> {
        let masters: Vec<&NodeId> = self
            .federation
            .nodes
            .iter()
            .filter(|(_, spec)| spec.role == Role::Master)
            .map(|(id, _)| id)
            .collect();
        match masters.as_slice() {
            [one] => Ok(one),
            [] => bail!("federation_nodes.json has no node with role \"master\"; WireGuard needs one hub of the star"),
            _ => bail!("federation_nodes.json has {} masters; the WireGuard star needs exactly one", masters.len()),
        }
    }

    /// The wg-quick config of `node`.
    pub fn render(&self, node: &NodeId) -> Result<String> {
        let spec = self
            .federation
            .nodes
            .get(node)
            .with_context(|| format!("node {node} is not in federation_nodes.json"))?;
        if !self.subnet.contains(&spec.ip) {
            bail!(
                "{node}'s ip {} is outside the WireGuard subnet {}",
                spec.ip,
                self.subnet
            );
        }
        let key = &self.keys[node];
        let master = self.master()?;
        let mut out = String::new();
        writeln!(
            out,
            "# WireGuard for TriForce node {node} ({}), written by `triforce init`",
            spec.name
        )?;
        writeln!(out, "[Interface]")?;
        writeln!(out, "PrivateKey = {}", key.private_base64())?;
        writeln!(out, "Address = {}/{}", spec.ip, self.subnet.prefix_len())?;
        if node == master {
            writeln!(out, "ListenPort = {}", self.listen_port)?;
            for (peer, peer_spec) in self.federation.nodes.iter().filter(|(id, _)| *id != master) {
                writeln!(out, "\n# {peer} ({})", peer_spec.name)?;
                writeln!(out, "[Peer]")?;
                writeln!(out, "PublicKey = {}", self.keys[peer].public_base64())?;
                writeln!(
                    out,
                    "AllowedIPs = {}/{}",
                    peer_spec.ip,
                    if peer_spec.ip.is_ipv4() { 32 } else { 128 }
                )?;
                match self.endpoints.get(peer.as_str()) {
                    Some(endpoint) => writeln!(out, "Endpoint = {endpoint}")?,
                    None => writeln!(
                        out,
                        "# no Endpoint: {peer} connects to us (dynamic address)"
                    )?,
                }
                writeln!(out, "PersistentKeepalive = 25")?;
            }
        } else {
            let master_spec = &self.federation.nodes[master];
            writeln!(
                out,
                "\n# {master} ({}), the master: all federation traffic goes through it",
                master_spec.name
            )?;
            writeln!(out, "[Peer]")?;
            writeln!(out, "PublicKey = {}", self.keys[master].public_base64())?;
            writeln!(out, "AllowedIPs = {}", self.subnet)?;
            match self.endpoints.get(master.as_str()) {
                Some(endpoint) => writeln!(out, "Endpoint = {endpoint}")?,
                None => writeln!(
                    out,
                    "# Endpoint = <{master}'s public address>:{}   (pass --endpoint {master}=HOST:PORT to triforce init)",
                    self.listen_port
                )?,
            }
            writeln!(out, "PersistentKeepalive = 25")?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../config/federation_nodes.json");

    #[test]
    fn the_seeds_star() {
        let federation = Federation::parse(SEED).unwrap();
        let keys: BTreeMap<NodeId, KeyPair> = federation
            .nodes
            .keys()
            .map(|id| (id.clone(), KeyPair::generate().unwrap()))
            .collect();
        let endpoints =
            BTreeMap::from([("hetzner".to_string(), "138.201.50.230:51820".to_string())]);
        let plan = Plan {
            federation: &federation,
            keys: &keys,
            subnet: "10.10.0.0/24".parse().unwrap(),
            listen_port: 51820,
            endpoints: &endpoints,
        };
        let hetzner = plan.render(&NodeId::new("hetzner").unwrap()).unwrap();
        assert!(hetzner.contains("Address = 10.10.0.1/24\nListenPort = 51820"));
        assert!(
            hetzner.contains("AllowedIPs = 10.10.0.2/32")
                && hetzner.contains("AllowedIPs = 10.10.0.3/32")
        );
        assert_eq!(hetzner.matches("[Peer]").count(), 2);
        let zombie = plan.render(&NodeId::new("zombie-pc").unwrap()).unwrap();
        assert!(zombie.contains(
            "AllowedIPs = 10.10.0.0/24\nEndpoint = 138.201.50.230:51820\nPersistentKeepalive = 25"
        ));
        assert!(zombie.contains(&format!(
            "PublicKey = {}",
            keys[&NodeId::new("hetzner").unwrap()].public_base64()
        )));
        assert_eq!(
            zombie.matches("[Peer]").count(),
            1,
            "hubs peer with the master only"
        );
        assert!(!zombie.contains("ListenPort"));
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let key = KeyPair::generate().unwrap();
        let again = KeyPair::from_base64(&key.private_base64()).unwrap();
        assert_eq!(again.public_base64(), key.public_base64());
        assert!(KeyPair::from_base64("not a key").is_err());
    }
}
