//! The body of a signed control call (reload, drain, undrain). The seed signs only the body, so
//! a control call must say in its body what it does and to whom: an empty body would be
//! signed like a status poll, and that poll's headers, replayed within the window, would drain
//! a node. `{"action": "drain", "node": "backup", "nonce": "..."}`: the action must be the
//! route's, the node the receiving one, and the nonce makes two calls two messages, so the
//! replay cache can refuse a second use of one.

use serde::{Deserialize, Serialize};

/// Shortest and longest nonce accepted (16 random bytes in hex is 32 characters).
pub const NONCE_LEN_MIN: usize = 16;
pub const NONCE_LEN_MAX: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    pub action: String,
    pub node: String,
    pub nonce: String,
}

/// Why a control call's body is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("a control call's body must be {{\"action\", \"node\", \"nonce\"}}: {0}")]
    Malformed(String),
    #[error("the body asks for {found:?}, but this route is {expected:?}")]
    WrongAction { expected: String, found: String },
    #[error("the body names node {found:?}, but this is {me:?}")]
    WrongNode { me: String, found: String },
    #[error("the nonce must be {NONCE_LEN_MIN}-{NONCE_LEN_MAX} ASCII letters and digits")]
    BadNonce,
}

impl ControlRequest {
    pub fn new(action: &str, node: &str, nonce: &str) -> Self {
        ControlRequest {
            action: action.to_string(),
            node: node.to_string(),
            nonce: nonce.to_string(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a control request serializes")
    }

    /// The control call in `body`, if it asks for `action` on node `me`.
    pub fn parse(body: &[u8], action: &str, me: &str) -> Result<Self, ControlError> {
        let request: ControlRequest =
            serde_json::from_slice(body).map_err(|e| ControlError::Malformed(e.to_string()))?;
        if request.action != action {
            return Err(ControlError::WrongAction {
                expected: action.to_string(),
                found: request.action,
            });
        }
        if request.node != me {
            return Err(ControlError::WrongNode {
                me: me.to_string(),
                found: request.node,
            });
        }
        let nonce_ok = (NONCE_LEN_MIN..=NONCE_LEN_MAX).contains(&request.nonce.len())
            && request.nonce.chars().all(|c| c.is_ascii_alphanumeric());
        if !nonce_ok {
            return Err(ControlError::BadNonce);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_control_call_names_its_action_its_node_and_a_nonce() {
        let body = ControlRequest::new("drain", "backup", NONCE).to_json();
        assert!(ControlRequest::parse(&body, "drain", "backup").is_ok());
        assert!(matches!(
            ControlRequest::parse(&body, "reload", "backup"),
            Err(ControlError::WrongAction { .. })
        ));
        assert!(matches!(
            ControlRequest::parse(&body, "drain", "hetzner"),
            Err(ControlError::WrongNode { .. })
        ));
        assert!(matches!(
            ControlRequest::parse(b"", "drain", "backup"),
            Err(ControlError::Malformed(_))
        ));
        let short = ControlRequest::new("drain", "backup", "abc").to_json();
        assert_eq!(
            ControlRequest::parse(&short, "drain", "backup"),
            Err(ControlError::BadNonce)
        );
        let extra = br#"{"action":"drain","node":"backup","nonce":"0123456789abcdef","x":1}"#;
        assert!(matches!(
            ControlRequest::parse(extra, "drain", "backup"),
            Err(ControlError::Malformed(_))
        ));
    }
}
