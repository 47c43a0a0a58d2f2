//! The seed's IP whitelist, made per node: who may speak for which node.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::node::NodeId;

/// A request claiming node X must come from X's configured address. Extra networks (an
/// operator's workstation, a local gateway) may speak for any node, but only when configured.
#[derive(Clone, Debug, Default)]
pub struct SourcePolicy {
    node_ips: BTreeMap<NodeId, IpAddr>,
    extra_clients: Vec<IpNet>,
}

impl SourcePolicy {
    pub fn new(node_ips: BTreeMap<NodeId, IpAddr>, extra_clients: Vec<IpNet>) -> Self {
        SourcePolicy {
            node_ips,
            extra_clients,
        }
    }

    /// The address configured for `node`, or `None` for an unknown node.
    pub fn node_ip(&self, node: &str) -> Option<IpAddr> {
        self.node_ips
            .iter()
            .find(|(id, _)| id.as_str() == node)
            .map(|(_, ip)| *ip)
    }

    pub fn node_id(&self, node: &str) -> Option<&NodeId> {
        self.node_ips.keys().find(|id| id.as_str() == node)
    }

    /// Whether `source` may send a request signed as `node` (whose address is `node_ip`).
    pub fn allows(&self, node_ip: IpAddr, source: IpAddr) -> bool {
        // A v4 peer reaching a dual-stack socket shows up as ::ffff:a.b.c.d.
        let source = source.to_canonical();
        source == node_ip.to_canonical()
            || self.extra_clients.iter().any(|net| net.contains(&source))
    }

    /// Whether `source` is a node's address or inside an `allowed_clients` network.
    pub fn is_known_source(&self, source: IpAddr) -> bool {
        self.is_node_address(source)
            || self
                .extra_clients
                .iter()
                .any(|net| net.contains(&source.to_canonical()))
    }

    /// Whether `source` is one of the nodes' configured addresses.
    pub fn is_node_address(&self, source: IpAddr) -> bool {
        let source = source.to_canonical();
        self.node_ips.values().any(|ip| ip.to_canonical() == source)
    }

    /// Replay-cache shares: one per node, and one that every `allowed_clients` address shares.
    pub fn signer_count(&self) -> usize {
        self.node_ips.len() + 1
    }

    /// The share a request signed as the node at `node_ip` and sent from `source` uses: the
    /// node's own when it comes from the node's address, else the clients' share.
    pub fn signer(&self, node_ip: IpAddr, source: IpAddr) -> usize {
        let source = source.to_canonical();
        if source == node_ip.to_canonical() {
            if let Some(index) = self.node_ips.values().position(|ip| *ip == node_ip) {
                return index;
            }
        }
        self.node_ips.len()
    }
}
