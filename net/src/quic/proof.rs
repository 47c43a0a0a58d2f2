//! The PSK proof that authenticates a QUIC connection's peer.

use triforce_core::auth::{HmacSha256Key, Keyring, Mac};

/// Exporter label; RFC 5705 labels for private use start with "EXPERIMENTAL".
pub const EXPORTER_LABEL: &[u8] = b"EXPERIMENTAL triforce node proof";

/// Which side proves: the two directions sign different messages, so a server cannot reflect
/// a client's proof back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("proof timestamp is {age_s} s away from now, outside the window")]
    Stale { age_s: u64 },
    #[error("proof does not verify under any accepted PSK")]
    BadProof,
}

/// The proof for `node` on a session whose exporter value is `exporter`.
pub fn make_proof(
    key: &HmacSha256Key,
    role: Role,
    exporter: &[u8; 32],
    node: &str,
    unix_s: u64,
) -> [u8; 32] {
    key.tag(&[&message(role, exporter, node, unix_s)])
}

/// Checks a proof's timestamp, then the proof itself in constant time under every accepted key.
#[allow(clippy::too_many_arguments)]
pub fn verify_proof(
    keys: &Keyring,
    role: Role,
    exporter: &[u8; 32],
    node: &str,
    unix_s: u64,
    now_unix_s: u64,
    window_s: u64,
    proof: &[u8; 32],
) -> Result<(), ProofError> {
    let age_s = now_unix_s.abs_diff(unix_s);
    if age_s > window_s {
        return Err(ProofError::Stale { age_s });
    }
    if keys.verify(&[&message(role, exporter, node, unix_s)], proof) {
        Ok(())
    } else {
        Err(ProofError::BadProof)
    }
}

/// The proof that authenticated one connection's peer, kept for the connection's life: a
/// reload that stops accepting a key checks it again (without the time window, which only
/// bounds when a proof may be presented) and closes the connections it no longer covers.
#[derive(Clone, Debug)]
pub struct ProofRecord {
    pub role: Role,
    pub exporter: [u8; 32],
    pub node: String,
    pub unix_s: u64,
    pub proof: [u8; 32],
}

impl ProofRecord {
    pub fn holds_under(&self, keys: &Keyring) -> bool {
        let message = message(self.role, &self.exporter, &self.node, self.unix_s);
        keys.verify(&[&message], &self.proof)
    }
}

fn message(role: Role, exporter: &[u8; 32], node: &str, unix_s: u64) -> Vec<u8> {
    let label: &[u8] = match role {
        Role::Client => b"triforce-hello-v1",
        Role::Server => b"triforce-welcome-v1",
    };
    // Fixed-width fields first, the variable node id last: the encoding is unambiguous.
    let mut message = Vec::with_capacity(label.len() + 1 + 32 + 8 + node.len());
    message.extend_from_slice(label);
    message.push(b'|');
    message.extend_from_slice(exporter);
    message.extend_from_slice(&unix_s.to_be_bytes());
    message.extend_from_slice(node.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_binds_role_session_node_and_key() {
        let key = HmacSha256Key::new(b"0123456789abcdef");
        let keys = Keyring::from_psks(b"0123456789abcdef", &[]);
        let proof = make_proof(&key, Role::Client, &[7; 32], "hetzner", 100);
        assert_eq!(
            verify_proof(
                &keys,
                Role::Client,
                &[7; 32],
                "hetzner",
                100,
                110,
                30,
                &proof
            ),
            Ok(())
        );
        let bad = |role, exporter: [u8; 32], node| {
            verify_proof(&keys, role, &exporter, node, 100, 110, 30, &proof)
        };
        assert_eq!(
            bad(Role::Server, [7; 32], "hetzner"),
            Err(ProofError::BadProof)
        );
        assert_eq!(
            bad(Role::Client, [8; 32], "hetzner"),
            Err(ProofError::BadProof),
            "another session"
        );
        assert_eq!(
            bad(Role::Client, [7; 32], "backup"),
            Err(ProofError::BadProof)
        );
        let stale = verify_proof(
            &keys,
            Role::Client,
            &[7; 32],
            "hetzner",
            100,
            200,
            30,
            &proof,
        );
        assert_eq!(stale, Err(ProofError::Stale { age_s: 100 }));
    }
}
