//! The proof exchange on a connection's first stream.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use triforce_core::auth::{HmacSha256Key, Keyring};
use triforce_core::node::NodeId;

use super::proof::EXPORTER_LABEL;
use super::{
    make_proof, read_frame, verify_proof, write_frame, Frame, FrameError, ProofError, ProofRecord,
    Role,
};
use crate::clock::Clock;

/// Largest handshake frame: a node id and two fixed fields.
const HELLO_BYTES_MAX: usize = 256;

/// What a node needs to prove itself and check others.
#[derive(Clone)]
pub struct Identity {
    pub me: NodeId,
    pub signing: HmacSha256Key,
    pub keys: Keyring,
    pub window_s: u64,
    pub node_ips: BTreeMap<NodeId, IpAddr>,
    pub clock: Arc<dyn Clock>,
    /// How long the peer may take to prove itself.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake timed out")]
    Timeout,
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("handshake frame: {0}")]
    Frame(#[from] FrameError),
    #[error("expected a {expected} frame")]
    Unexpected { expected: &'static str },
    #[error("node {0:?} is not in this federation")]
    UnknownNode(String),
    #[error("node {node} must connect from {expected}, not {actual}")]
    WrongAddress {
        node: String,
        expected: IpAddr,
        actual: IpAddr,
    },
    #[error("expected node {expected}, the peer proved to be {actual}")]
    WrongPeer { expected: NodeId, actual: String },
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    #[error("no keying material: {0:?}")]
    Exporter(quinn::crypto::ExportKeyingMaterialError),
}

fn exporter(connection: &quinn::Connection) -> Result<[u8; 32], HandshakeError> {
    let mut value = [0u8; 32];
    connection
        .export_keying_material(&mut value, EXPORTER_LABEL, b"")
        .map_err(HandshakeError::Exporter)?;
    Ok(value)
}

impl Identity {
    fn frame(&self, exporter: &[u8; 32], role: Role) -> (String, u64, [u8; 32]) {
        let unix_s = self.clock.unix_s();
        let proof = make_proof(&self.signing, role, exporter, self.me.as_str(), unix_s);
        (self.me.to_string(), unix_s, proof)
    }

    fn check(
        &self,
        role: Role,
        exporter: &[u8; 32],
        node: &str,
        unix_s: u64,
        proof: &[u8; 32],
    ) -> Result<ProofRecord, HandshakeError> {
        let now = self.clock.unix_s();
        verify_proof(
            &self.keys,
            role,
            exporter,
            node,
            unix_s,
            now,
            self.window_s,
            proof,
        )?;
        Ok(ProofRecord {
            role,
            exporter: *exporter,
            node: node.to_string(),
            unix_s,
            proof: *proof,
        })
    }

    /// Client side: proves this node to `expected` and checks that the server is `expected`.
    /// Returns the server's proof.
    pub async fn prove_to(
        &self,
        connection: &quinn::Connection,
        expected: &NodeId,
    ) -> Result<ProofRecord, HandshakeError> {
        tokio::time::timeout(self.timeout, self.prove_to_inner(connection, expected))
            .await
            .map_err(|_| HandshakeError::Timeout)?
    }

    async fn prove_to_inner(
        &self,
        connection: &quinn::Connection,
        expected: &NodeId,
    ) -> Result<ProofRecord, HandshakeError> {
        let exporter = exporter(connection)?;
        let (mut send, mut recv) = connection.open_bi().await?;
        let (node, unix_s, proof) = self.frame(&exporter, Role::Client);
        write_frame(
            &mut send,
            &Frame::Hello {
                node,
                unix_s,
                proof,
            },
        )
        .await?;
        let Frame::Welcome {
            node,
            unix_s,
            proof,
        } = read_frame(&mut recv, HELLO_BYTES_MAX).await?
        else {
            return Err(HandshakeError::Unexpected {
                expected: "Welcome",
            });
        };
        if node != expected.as_str() {
            return Err(HandshakeError::WrongPeer {
                expected: expected.clone(),
                actual: node,
            });
        }
        self.check(Role::Server, &exporter, &node, unix_s, &proof)
    }
}

/// Server side: waits for the client's proof on the first stream, checks it and its source
/// address, and answers with this node's proof. Returns the proved peer and its proof.
pub async fn accept_peer(
    identity: &Identity,
    connection: &quinn::Connection,
) -> Result<(NodeId, ProofRecord), HandshakeError> {
    tokio::time::timeout(identity.timeout, accept_inner(identity, connection))
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

async fn accept_inner(
    identity: &Identity,
    connection: &quinn::Connection,
) -> Result<(NodeId, ProofRecord), HandshakeError> {
    let exporter = exporter(connection)?;
    let (mut send, mut recv) = connection.accept_bi().await?;
    let Frame::Hello {
        node,
        unix_s,
        proof,
    } = read_frame(&mut recv, HELLO_BYTES_MAX).await?
    else {
        return Err(HandshakeError::Unexpected { expected: "Hello" });
    };
    let (id, expected_ip) = identity
        .node_ips
        .iter()
        .find(|(id, _)| id.as_str() == node)
        .map(|(id, ip)| (id.clone(), *ip))
        .ok_or_else(|| HandshakeError::UnknownNode(node.clone()))?;
    let actual = connection.remote_address().ip().to_canonical();
    if actual != expected_ip.to_canonical() {
        return Err(HandshakeError::WrongAddress {
            node,
            expected: expected_ip,
            actual,
        });
    }
    let record = identity.check(Role::Client, &exporter, &node, unix_s, &proof)?;
    let (me, unix_s, proof) = identity.frame(&exporter, Role::Server);
    write_frame(
        &mut send,
        &Frame::Welcome {
            node: me,
            unix_s,
            proof,
        },
    )
    .await?;
    let _ = send.finish();
    Ok((id, record))
}
