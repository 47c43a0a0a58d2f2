//! The verifier accepts exactly what the seed's formula signs, inside the window, once.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;
use triforce_core::auth::{
    HeaderValue, Keyring, SignedRequest, SourcePolicy, Verifier, VerifierConfig,
};
use triforce_core::node::NodeId;

const PSK: &[u8] = b"triforce-test-psk";
const NODES: [(&str, &str); 3] = [
    ("hetzner", "10.10.0.1"),
    ("zombie-pc", "10.10.0.2"),
    ("backup", "10.10.0.3"),
];

fn verifier() -> Verifier {
    let ips: BTreeMap<NodeId, IpAddr> = NODES
        .iter()
        .map(|(id, ip)| (NodeId::new(*id).unwrap(), ip.parse().unwrap()))
        .collect();
    Verifier::new(
        Keyring::from_psks(PSK, &[]),
        SourcePolicy::new(ips, vec![]),
        VerifierConfig::default(),
    )
}

/// The seed's Python snippet, written again independently of the crate's signer.
fn seed_signature(psk: &[u8], timestamp: u64, node: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(psk).unwrap();
    mac.update(format!("{timestamp}:{node}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn request<'a>(
    node: &'a [u8],
    ts: &'a [u8],
    sig: &'a [u8],
    body: &'a [u8],
    src: &str,
) -> SignedRequest<'a> {
    SignedRequest {
        node: HeaderValue::One(node),
        timestamp: HeaderValue::One(ts),
        signature: HeaderValue::One(sig),
        body,
        source: src.parse().unwrap(),
    }
}

const NOW: u64 = 1_704_067_200;

proptest! {
    #[test]
    fn accepts_exactly_the_seeds_signature_inside_the_window(
        node_index in 0..3usize,
        skew in -40i64..=40,
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (node, ip) = NODES[node_index];
        let ts = (NOW as i64 + skew) as u64;
        let sig = seed_signature(PSK, ts, node, &body);
        let ts_text = ts.to_string();
        let mut v = verifier();
        let req = request(node.as_bytes(), ts_text.as_bytes(), sig.as_bytes(), &body, ip);
        let result = v.verify(&req, NOW);
        if skew.abs() <= 30 {
            let accepted = result.unwrap();
            prop_assert_eq!(accepted.node.as_str(), node);
            prop_assert_eq!(v.verify(&req, NOW).unwrap_err().code(), "replay");
        } else {
            let code = result.unwrap_err().code();
            prop_assert_eq!(code, if skew > 0 { "future_timestamp" } else { "expired" });
        }
    }

    #[test]
    fn a_signature_binds_node_source_key_and_body(
        node_index in 0..3usize,
        other in 1..3usize,
        body in proptest::collection::vec(any::<u8>(), 1..100),
        flip in 0..100usize,
    ) {
        let (node, ip) = NODES[node_index];
        let (other_node, other_ip) = NODES[(node_index + other) % 3];
        let ts = NOW.to_string();
        let sig = seed_signature(PSK, NOW, node, &body);
        let v = verifier();
        // Claiming another node with this node's signature.
        let req = request(other_node.as_bytes(), ts.as_bytes(), sig.as_bytes(), &body, other_ip);
        prop_assert_eq!(v.authenticate(&req, NOW).unwrap_err().code(), "bad_signature");
        // The right node from the wrong address.
        let req = request(node.as_bytes(), ts.as_bytes(), sig.as_bytes(), &body, other_ip);
        prop_assert_eq!(v.authenticate(&req, NOW).unwrap_err().code(), "ip_not_allowed");
        // Another body.
        let mut changed = body.clone();
        let at = flip % changed.len();
        changed[at] ^= 1;
        let req = request(node.as_bytes(), ts.as_bytes(), sig.as_bytes(), &changed, ip);
        prop_assert_eq!(v.authenticate(&req, NOW).unwrap_err().code(), "bad_signature");
        // Another key.
        let forged = seed_signature(b"not-the-federation-psk", NOW, node, &body);
        let req = request(node.as_bytes(), ts.as_bytes(), forged.as_bytes(), &body, ip);
        prop_assert_eq!(v.authenticate(&req, NOW).unwrap_err().code(), "bad_signature");
    }

    #[test]
    fn malformed_headers_are_refused_and_never_panic(
        node in proptest::collection::vec(any::<u8>(), 0..80),
        ts in proptest::collection::vec(any::<u8>(), 0..30),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now in any::<u64>(),
    ) {
        let mut v = verifier();
        let req = request(&node, &ts, &sig, &body, "10.10.0.1");
        // Random bytes are never a valid signature from the PSK.
        prop_assert!(v.verify(&req, now).is_err());
        prop_assert_eq!(v.replay_len(), 0);
    }

    #[test]
    fn unknown_and_malformed_nodes(name in "[a-z]{1,10}", junk in "[^a-zA-Z0-9._-]") {
        prop_assume!(!NODES.iter().any(|(id, _)| *id == name));
        let v = verifier();
        let ts = NOW.to_string();
        let sig = seed_signature(PSK, NOW, &name, b"");
        let req = request(name.as_bytes(), ts.as_bytes(), sig.as_bytes(), b"", "10.10.0.1");
        prop_assert_eq!(v.authenticate(&req, NOW).unwrap_err().code(), "unknown_node");
        let bad = format!("hetzner{junk}");
        let sig = seed_signature(PSK, NOW, &bad, b"");
        let req = request(bad.as_bytes(), ts.as_bytes(), sig.as_bytes(), b"", "10.10.0.1");
        prop_assert_eq!(v.authenticate(&req, NOW).unwrap_err().code(), "malformed_node");
    }
}
