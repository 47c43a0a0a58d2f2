//! Why a streamed answer stopped before its end, typed from where it broke to the door that
//! tells the client: the executing node names it, the QUIC stream carries it, and the door
//! words its error event by it (a model server that ran out of time is not a broken link).

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// Why a stream broke off. `Display` is the operator's line (logs); [`Self::for_client`] is
/// what the client's error event says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StreamFailure {
    /// The backend's answer did not end before the relay's deadline (`timeout_ms`).
    #[error("the backend's answer did not end in time")]
    BackendTimedOut,
    /// The backend's connection broke mid-answer.
    #[error("the backend's answer broke off: {0}")]
    BackendBrokeOff(String),
    /// The answer's writer stopped without an end (the task that wrote it is gone).
    #[error("the answer was cut off before its end")]
    CutOff,
    /// The stream from the node that ran the request broke off, or carried something other
    /// than the answer.
    #[error("the stream from {node} broke off: {error}")]
    RelayBrokeOff { node: NodeId, error: String },
    /// The node that ran the request reported this.
    #[error("{node}: {failure}")]
    OnNode {
        node: NodeId,
        failure: Box<StreamFailure>,
    },
}

impl StreamFailure {
    /// What the client's error event says: the kind of failure, never an address or a node's
    /// internals.
    pub fn for_client(&self) -> &'static str {
        match self {
            StreamFailure::OnNode { failure, .. } => failure.for_client(),
            StreamFailure::BackendTimedOut => "the model server did not finish the answer in time",
            StreamFailure::BackendBrokeOff(_) => "the model server's answer broke off",
            StreamFailure::CutOff | StreamFailure::RelayBrokeOff { .. } => {
                "the answer broke off before its end"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_reported_by_the_node_that_ran_it_keeps_its_wording() {
        let node = NodeId::new("gpu-pc").unwrap();
        let failure = StreamFailure::OnNode {
            node,
            failure: Box::new(StreamFailure::BackendTimedOut),
        };
        assert_eq!(
            failure.for_client(),
            "the model server did not finish the answer in time"
        );
        assert_eq!(
            failure.to_string(),
            "gpu-pc: the backend's answer did not end in time"
        );
        let relay = StreamFailure::RelayBrokeOff {
            node: NodeId::new("hub").unwrap(),
            error: "connection lost at 10.0.0.7".into(),
        };
        assert!(!relay.for_client().contains("10.0.0.7"));
    }
}
