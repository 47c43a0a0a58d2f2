//! Outgoing connections to peers: one proved connection per peer, made on first use and
//! made again after it breaks. A reload replaces the identity (keys, addresses) and the peer
//! set; connections it no longer covers are closed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;
use triforce_core::node::NodeId;

use super::{HandshakeError, Identity, ProofRecord};

/// One peer's address and its cached connection with the proof that authenticated it. The
/// lock also makes concurrent first uses share one connect.
struct Slot {
    addr: SocketAddr,
    connection: Mutex<Option<(quinn::Connection, ProofRecord)>>,
}

/// The connection pool of one node.
pub struct Peers {
    endpoint: quinn::Endpoint,
    identity: ArcSwap<Identity>,
    slots: std::sync::RwLock<BTreeMap<NodeId, Arc<Slot>>>,
}

impl Peers {
    pub fn new(
        endpoint: quinn::Endpoint,
        identity: Identity,
        addrs: BTreeMap<NodeId, SocketAddr>,
    ) -> Arc<Self> {
        Arc::new(Peers {
            endpoint,
            identity: ArcSwap::from_pointee(identity),
            slots: std::sync::RwLock::new(slots(addrs)),
        })
    }

    /// A live, proved connection to `peer`.
    pub async fn connection(&self, peer: &NodeId) -> Result<quinn::Connection, HandshakeError> {
        let slot = self
            .slot(peer)
            .ok_or_else(|| HandshakeError::UnknownNode(peer.to_string()))?;
        let mut cached = slot.connection.lock().await;
        if let Some((connection, _)) = cached.as_ref().filter(|(c, _)| c.close_reason().is_none()) {
            return Ok(connection.clone());
        }
        let addr = slot.addr;
        let identity = self.identity();
        let connecting = self
            .endpoint
            .connect(addr, "triforce-node")
            .map_err(|e| HandshakeError::Connect(format!("{peer} at {addr}: {e}")))?;
        let connection = tokio::time::timeout(identity.timeout, connecting)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        let record = identity.prove_to(&connection, peer).await?;
        *cached = Some((connection.clone(), record));
        Ok(connection)
    }

    /// Drops the cached connection to `peer` (after a failure), so the next use reconnects.
    pub async fn forget(&self, peer: &NodeId) {
        if let Some(slot) = self.slot(peer) {
            if let Some((connection, _)) = slot.connection.lock().await.take() {
                connection.close(0u32.into(), b"reconnecting");
            }
        }
    }

    /// What this node proves itself with and checks peers against, as of the last reload.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity.load_full()
    }

    /// Applies a reload: the new identity for every handshake from now on; slots for new
    /// peers; connections to removed or moved peers, and ones whose peer proved itself with a
    /// key no longer accepted, closed (the next use reconnects under the new keys).
    pub async fn reconfigure(&self, identity: Identity, addrs: BTreeMap<NodeId, SocketAddr>) {
        let keys = identity.keys.clone();
        self.identity.store(Arc::new(identity));
        let (kept, dropped) = {
            let mut slots = self
                .slots
                .write()
                .expect("no code panics holding the peers lock");
            let mut dropped = Vec::new();
            let mut next = BTreeMap::new();
            for (id, addr) in addrs {
                match slots.remove(&id) {
                    Some(slot) if slot.addr == addr => {
                        next.insert(id, slot);
                    }
                    old => {
                        dropped.extend(old);
                        next.insert(id, Arc::new(Slot::new(addr)));
                    }
                }
            }
            dropped.extend(std::mem::take(&mut *slots).into_values());
            *slots = next;
            (slots.values().cloned().collect::<Vec<_>>(), dropped)
        };
        for slot in dropped {
            if let Some((connection, _)) = slot.connection.lock().await.take() {
                connection.close(0u32.into(), b"peer removed or moved");
            }
        }
        for slot in kept {
            let mut cached = slot.connection.lock().await;
            if cached
                .as_ref()
                .is_some_and(|(_, record)| !record.holds_under(&keys))
            {
                if let Some((connection, _)) = cached.take() {
                    connection.close(0u32.into(), b"key no longer accepted");
                }
            }
        }
    }

    fn slot(&self, peer: &NodeId) -> Option<Arc<Slot>> {
        let slots = self
            .slots
            .read()
            .expect("no code panics holding the peers lock");
        slots.get(peer).cloned()
    }
}

impl Slot {
    fn new(addr: SocketAddr) -> Self {
        Slot {
            addr,
            connection: Mutex::new(None),
        }
    }
}

fn slots(addrs: BTreeMap<NodeId, SocketAddr>) -> BTreeMap<NodeId, Arc<Slot>> {
    addrs
        .into_iter()
        .map(|(id, addr)| (id, Arc::new(Slot::new(addr))))
        .collect()
}
