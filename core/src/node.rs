//! Node identity and the static description of a node from `federation_nodes.json`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest node id accepted, in bytes. Node ids travel in every request header.
pub const NODE_ID_LEN_MAX: usize = 64;

/// A node's name as used in the config keys and the `X-Federation-Node` header.
///
/// Only ASCII letters, digits, `-`, `_` and `.` are allowed: a `:` would make the signed message
/// `"{timestamp}:{node_id}:{body}"` ambiguous, and anything non-ASCII invites header trouble.
///
/// Shared, not owned: a task copies its nodes' ids about 25 times on its way (views, selection,
/// failover order, attempts, outcome), and each copy of a `String` was an allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(Arc<str>);

/// Why a string is not a valid [`NodeId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    #[error("node id is empty")]
    Empty,
    #[error("node id is longer than {NODE_ID_LEN_MAX} bytes")]
    TooLong,
    #[error("node id contains {0:?}; only ASCII letters, digits, '-', '_' and '.' are allowed")]
    BadChar(char),
}

impl NodeId {
    pub fn new(id: impl Into<String>) -> Result<Self, NodeIdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if id.len() > NODE_ID_LEN_MAX {
            return Err(NodeIdError::TooLong);
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(NodeIdError::BadChar(bad));
        }
        Ok(NodeId(id.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = NodeIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        NodeId::new(value)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node's role in the seed's topology. Roles are informational: there is no coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Hub,
}

/// One entry of `federation_nodes.json`, checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The node's address inside the VPN; requests claiming this node must come from it.
    pub ip: IpAddr,
    /// The port of the HTTP shim (TCP) and of QUIC between nodes (UDP).
    pub port: u16,
    pub cores: u32,
    /// Memory in GB, as the seed writes it.
    pub ram: u32,
    /// The GPU's model, or `None` for a node without one.
    pub gpu: Option<String>,
    pub role: Role,
    /// A human-readable name.
    pub name: String,
}

impl NodeSpec {
    pub fn has_gpu(&self) -> bool {
        self.gpu.is_some()
    }
}
