//! The verifier: every check of a signed request, in order, with a typed reason for each refusal.

use std::net::IpAddr;

use super::parse::{parse_signature, parse_timestamp};
use super::replay::ReplayCache;
use super::signer::message_parts;
use super::{Header, HmacSha256Key, Keyring, Mac, Rejection, SourcePolicy};
use crate::node::NodeId;

/// What a request carried for one header. Transports collapse their header maps into this, so
/// that a missing header and a repeated one are refused here, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    Missing,
    One(&'a [u8]),
    Repeated,
}

impl<'a> HeaderValue<'a> {
    /// From every value a request carried for the header, in any order.
    pub fn from_values(mut values: impl Iterator<Item = &'a [u8]>) -> Self {
        match (values.next(), values.next()) {
            (None, _) => HeaderValue::Missing,
            (Some(one), None) => HeaderValue::One(one),
            (Some(_), Some(_)) => HeaderValue::Repeated,
        }
    }
}

/// A request's authentication material as it arrived.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    pub node: HeaderValue<'a>,
    pub timestamp: HeaderValue<'a>,
    pub signature: HeaderValue<'a>,
    pub body: &'a [u8],
    pub source: IpAddr,
}

/// An accepted request: who sent it, and when they say they did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub node: NodeId,
    pub timestamp: u64,
}

/// The verifier's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Largest accepted `|now - timestamp|`, in seconds (the seed: 30).
    pub window_s: u64,
    /// Most signatures remembered for replay detection.
    pub replay_entries_max: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            window_s: 30,
            replay_entries_max: 100_000,
        }
    }
}

/// A request that passed every check but the replay cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub node: NodeId,
    pub timestamp: u64,
    /// The signature, which the replay cache remembers.
    pub tag: [u8; 32],
    /// Whose share of the replay cache the request uses (see [`ReplayCache`]).
    pub signer: usize,
}

impl Authenticated {
    pub fn verified(&self) -> Verified {
        Verified {
            node: self.node.clone(),
            timestamp: self.timestamp,
        }
    }
}

/// Every check of a signed request but the replay cache. Holds no mutable state, so a driver
/// may run it (the MAC over the whole body) outside any lock.
#[derive(Clone, Debug)]
pub struct Authenticator<M: Mac = HmacSha256Key> {
    keys: Keyring<M>,
    sources: SourcePolicy,
    window_s: u64,
}

/// Checks signed requests: an [`Authenticator`] and the [`ReplayCache`] of one node. A driver
/// that wants the MAC outside its lock takes the two apart with [`Verifier::into_parts`].
#[derive(Clone, Debug)]
pub struct Verifier<M: Mac = HmacSha256Key> {
    authenticator: Authenticator<M>,
    replay: ReplayCache,
}

impl<M: Mac> Verifier<M> {
    pub fn new(keys: Keyring<M>, sources: SourcePolicy, config: VerifierConfig) -> Self {
        let replay = ReplayCache::new(
            config.window_s,
            config.replay_entries_max,
            sources.signer_count(),
        );
        Verifier {
            authenticator: Authenticator {
                keys,
                sources,
                window_s: config.window_s,
            },
            replay,
        }
    }

    pub fn into_parts(self) -> (Authenticator<M>, ReplayCache) {
        (self.authenticator, self.replay)
    }

    /// Verifies `request` at wall time `now_unix_s`.
    ///
    /// On success the signature is remembered until it leaves the window, so the same request
    /// is refused as [`Rejection::Replay`] from then on. On any refusal nothing changes.
    pub fn verify(
        &mut self,
        request: &SignedRequest<'_>,
        now_unix_s: u64,
    ) -> Result<Verified, Rejection> {
        let authenticated = self.authenticator.authenticate(request, now_unix_s)?;
        self.replay.remember(&authenticated, now_unix_s)?;
        Ok(authenticated.verified())
    }

    /// Every check but the replay cache. Changes nothing.
    pub fn authenticate(
        &self,
        request: &SignedRequest<'_>,
        now_unix_s: u64,
    ) -> Result<Authenticated, Rejection> {
        self.authenticator.authenticate(request, now_unix_s)
    }

    pub fn keys(&self) -> &Keyring<M> {
        &self.authenticator.keys
    }

    pub fn window_s(&self) -> u64 {
        self.authenticator.window_s
    }

    /// Signatures currently remembered.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }
}

impl<M: Mac> Authenticator<M> {
    /// Every check but the replay cache, cheapest first; the MAC last. Changes nothing.
    pub fn authenticate(
        &self,
        request: &SignedRequest<'_>,
        now_unix_s: u64,
    ) -> Result<Authenticated, Rejection> {
        let node_raw = single(request.node, Header::Node)?;
        let timestamp_raw = single(request.timestamp, Header::Timestamp)?;
        let signature_raw = single(request.signature, Header::Signature)?;

        let node_str = std::str::from_utf8(node_raw).map_err(|_| Rejection::MalformedNode)?;
        let node = NodeId::new(node_str).map_err(|_| Rejection::MalformedNode)?;
        let timestamp = parse_timestamp(timestamp_raw)?;
        let tag = parse_signature(signature_raw)?;

        let node_ip = self
            .sources
            .node_ip(node.as_str())
            .ok_or_else(|| Rejection::UnknownNode(node.to_string()))?;
        if !self.sources.allows(node_ip, request.source) {
            return Err(Rejection::IpNotAllowed {
                node: node.to_string(),
                from: request.source,
            });
        }
        self.check_window(timestamp, now_unix_s)?;
        let parts = message_parts(timestamp_raw, node_raw, request.body);
        if !self.keys.verify(&parts, &tag) {
            return Err(Rejection::BadSignature);
        }
        let signer = self.sources.signer(node_ip, request.source);
        Ok(Authenticated {
            node,
            timestamp,
            tag,
            signer,
        })
    }

    fn check_window(&self, timestamp: u64, now_unix_s: u64) -> Result<(), Rejection> {
        if timestamp < now_unix_s {
            let age_s = now_unix_s - timestamp;
            if age_s > self.window_s {
                return Err(Rejection::Expired {
                    age_s,
                    window_s: self.window_s,
                });
            }
        } else {
            let ahead_s = timestamp - now_unix_s;
            if ahead_s > self.window_s {
                return Err(Rejection::FromFuture {
                    ahead_s,
                    window_s: self.window_s,
                });
            }
        }
        Ok(())
    }

    /// Whether `source` is an address any request may come from: a node's or an
    /// `allowed_clients` network's. Anything else can be turned away before it costs more.
    pub fn source_allowed(&self, source: IpAddr) -> bool {
        self.sources.is_known_source(source)
    }

    /// Replay-cache shares this checker's sources use (see [`ReplayCache::reshare`]).
    pub fn signer_count(&self) -> usize {
        self.sources.signer_count()
    }

    /// Whether `source` is a node's address (the only sources that may speak QUIC).
    pub fn is_node_address(&self, source: IpAddr) -> bool {
        self.sources.is_node_address(source)
    }
}

fn single<'a>(value: HeaderValue<'a>, header: Header) -> Result<&'a [u8], Rejection> {
    match value {
        HeaderValue::Missing => Err(Rejection::MissingHeader(header)),
        HeaderValue::One(one) => Ok(one),
        HeaderValue::Repeated => Err(Rejection::DuplicateHeader(header)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::auth::sign;

    const NOW: u64 = 1_704_067_200;

    fn verifier() -> Verifier {
        let mut ips = BTreeMap::new();
        ips.insert(
            NodeId::new("hetzner").unwrap(),
            "10.10.0.1".parse().unwrap(),
        );
        ips.insert(NodeId::new("backup").unwrap(), "10.10.0.3".parse().unwrap());
        let clients = vec!["192.0.2.0/28".parse().unwrap()];
        Verifier::new(
            Keyring::from_psks(b"triforce-test-psk", &[b"old-psk-still-accepted".to_vec()]),
            SourcePolicy::new(ips, clients),
            VerifierConfig::default(),
        )
    }

    fn check(
        v: &mut Verifier,
        node: &str,
        ts: &str,
        sig: &str,
        body: &[u8],
        src: &str,
    ) -> Result<Verified, Rejection> {
        let request = SignedRequest {
            node: HeaderValue::One(node.as_bytes()),
            timestamp: HeaderValue::One(ts.as_bytes()),
            signature: HeaderValue::One(sig.as_bytes()),
            body,
            source: src.parse().unwrap(),
        };
        v.verify(&request, NOW)
    }

    fn signed(psk: &[u8], node: &str, ts: u64, body: &[u8]) -> String {
        sign(
            &HmacSha256Key::new(psk),
            &NodeId::new(node).unwrap(),
            ts,
            body,
        )
        .signature
    }

    #[test]
    fn accepts_once_then_refuses_the_replay() {
        let mut v = verifier();
        let sig = signed(b"triforce-test-psk", "hetzner", NOW, b"{}");
        let ok = check(
            &mut v,
            "hetzner",
            &NOW.to_string(),
            &sig,
            b"{}",
            "10.10.0.1",
        )
        .unwrap();
        assert_eq!(ok.node.as_str(), "hetzner");
        let again = check(
            &mut v,
            "hetzner",
            &NOW.to_string(),
            &sig,
            b"{}",
            "10.10.0.1",
        );
        assert_eq!(again, Err(Rejection::Replay));
    }

    #[test]
    fn accepts_a_rotated_key() {
        let mut v = verifier();
        let sig = signed(b"old-psk-still-accepted", "backup", NOW, b"");
        assert!(check(&mut v, "backup", &NOW.to_string(), &sig, b"", "10.10.0.3").is_ok());
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let mut v = verifier();
        let ts = NOW.to_string();
        let good = signed(b"triforce-test-psk", "hetzner", NOW, b"x");
        let cases: Vec<(Result<Verified, Rejection>, &str)> = vec![
            (
                check(&mut v, "nobody", &ts, &good, b"x", "10.10.0.1"),
                "unknown_node",
            ),
            (
                check(&mut v, "hetzner", &ts, &good, b"x", "10.10.0.3"),
                "ip_not_allowed",
            ),
            (
                check(&mut v, "hetzner", &ts, &good, b"y", "10.10.0.1"),
                "bad_signature",
            ),
            (
                check(
                    &mut v,
                    "hetzner",
                    &ts,
                    &good.to_uppercase(),
                    b"x",
                    "10.10.0.1",
                ),
                "malformed_signature",
            ),
            (
                check(&mut v, "hetzner", "-1", &good, b"x", "10.10.0.1"),
                "malformed_timestamp",
            ),
            (
                check(&mut v, "het:zner", &ts, &good, b"x", "10.10.0.1"),
                "malformed_node",
            ),
            (
                check(
                    &mut v,
                    "hetzner",
                    &(NOW - 31).to_string(),
                    &signed(b"triforce-test-psk", "hetzner", NOW - 31, b"x"),
                    b"x",
                    "10.10.0.1",
                ),
                "expired",
            ),
            (
                check(
                    &mut v,
                    "hetzner",
                    &(NOW + 31).to_string(),
                    &signed(b"triforce-test-psk", "hetzner", NOW + 31, b"x"),
                    b"x",
                    "10.10.0.1",
                ),
                "future_timestamp",
            ),
        ];
        for (result, code) in cases {
            assert_eq!(result.unwrap_err().code(), code);
        }
        assert_eq!(
            v.replay_len(),
            0,
            "refusals leave no trace in the replay cache"
        );
        // The edges of the window are inside it.
        for ts in [NOW - 30, NOW + 30] {
            let sig = signed(b"triforce-test-psk", "hetzner", ts, b"x");
            assert!(check(&mut v, "hetzner", &ts.to_string(), &sig, b"x", "10.10.0.1").is_ok());
        }
    }

    #[test]
    fn configured_clients_may_speak_for_any_node() {
        let mut v = verifier();
        let sig = signed(b"triforce-test-psk", "backup", NOW, b"");
        assert!(check(&mut v, "backup", &NOW.to_string(), &sig, b"", "192.0.2.7").is_ok());
        let sig = signed(b"triforce-test-psk", "backup", NOW - 1, b"");
        let outside = check(
            &mut v,
            "backup",
            &(NOW - 1).to_string(),
            &sig,
            b"",
            "192.0.2.17",
        );
        assert_eq!(outside.unwrap_err().code(), "ip_not_allowed");
    }

    #[test]
    fn missing_and_duplicate_headers() {
        let v = verifier();
        let ts = NOW.to_string();
        let sig = signed(b"triforce-test-psk", "hetzner", NOW, b"");
        let request = SignedRequest {
            node: HeaderValue::Repeated,
            timestamp: HeaderValue::One(ts.as_bytes()),
            signature: HeaderValue::Missing,
            body: b"",
            source: "10.10.0.1".parse().unwrap(),
        };
        assert_eq!(
            v.authenticate(&request, NOW).unwrap_err(),
            Rejection::DuplicateHeader(Header::Node)
        );
        let request = SignedRequest {
            node: HeaderValue::One(b"hetzner"),
            ..request
        };
        assert_eq!(
            v.authenticate(&request, NOW).unwrap_err(),
            Rejection::MissingHeader(Header::Signature)
        );
        let request = SignedRequest {
            signature: HeaderValue::One(sig.as_bytes()),
            ..request
        };
        assert!(v.authenticate(&request, NOW).is_ok());
    }
}
