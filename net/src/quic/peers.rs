//! Outgoing connections to peers: one proved connection per peer, made on first use and
//! made again after it breaks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Mutex;
use triforce_core::node::NodeId;

use super::{HandshakeError, Identity};

/// The connection pool of one node.
pub struct Peers {
    endpoint: quinn::Endpoint,
    identity: Identity,
    addrs: BTreeMap<NodeId, SocketAddr>,
    /// One slot per peer; the lock also makes concurrent first uses share one connect.
    slots: BTreeMap<NodeId, Mutex<Option<quinn::Connection>>>,
}

impl Peers {
    pub fn new(
        endpoint: quinn::Endpoint,
        identity: Identity,
        addrs: BTreeMap<NodeId, SocketAddr>,
    ) -> Arc<Self> {
        let slots = addrs
            .keys()
            .map(|id| (id.clone(), Mutex::new(None)))
            .collect();
        Arc::new(Peers {
            endpoint,
            identity,
            addrs,
            slots,
        })
    }

    /// A live, proved connection to `peer`.
    pub async fn connection(&self, peer: &NodeId) -> Result<quinn::Connection, HandshakeError> {
        let slot = self
            .slots
            .get(peer)
            .ok_or_else(|| HandshakeError::UnknownNode(peer.to_string()))?;
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(connection.clone());
        }
        let addr = self.addrs[peer];
        let connecting = self
            .endpoint
            .connect(addr, "triforce-node")
            .map_err(|e| HandshakeError::Connect(format!("{peer} at {addr}: {e}")))?;
        let connection = tokio::time::timeout(self.identity.timeout, connecting)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        self.identity.prove_to(&connection, peer).await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the cached connection to `peer` (after a failure), so the next use reconnects.
    pub async fn forget(&self, peer: &NodeId) {
        if let Some(slot) = self.slots.get(peer) {
            if let Some(connection) = slot.lock().await.take() {
                connection.close(0u32.into(), b"reconnecting");
            }
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}
