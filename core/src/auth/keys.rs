//! The MAC seam and the set of accepted pre-shared keys.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The shortest PSK accepted, in bytes; shorter keys are guessable offline from one request.
pub const PSK_LEN_MIN: usize = 16;

/// A keyed MAC over a message given in parts, so callers never concatenate the body.
///
/// This is the crypto seam (STYLE.md 6): tests and fuzzers may swap the implementation.
pub trait Mac: Clone {
    /// The tag over the concatenation of `parts`.
    fn tag(&self, parts: &[&[u8]]) -> [u8; 32];
    /// Whether `tag` is the tag over `parts`, compared in constant time.
    fn verify(&self, parts: &[&[u8]], tag: &[u8; 32]) -> bool;
}

/// HMAC-SHA256 with the key schedule done once: each use clones the keyed state instead of
/// hashing the key again, which saves two compression rounds per request.
#[derive(Clone)]
pub struct HmacSha256Key {
    keyed: Hmac<Sha256>,
}

impl HmacSha256Key {
    pub fn new(psk: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(psk).expect("HMAC takes any key");
        HmacSha256Key { keyed }
    }

    fn keyed_over(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

impl Mac for HmacSha256Key {
    fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.keyed_over(parts).finalize().into_bytes().into()
    }

    fn verify(&self, parts: &[&[u8]], tag: &[u8; 32]) -> bool {
        self.keyed_over(parts).verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for HmacSha256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSha256Key(..)")
    }
}

/// The keys a node accepts, one of which it signs with. Several keys make rotation possible:
/// add the new key everywhere as accepted, then switch signing, then drop the old one.
#[derive(Clone, Debug)]
pub struct Keyring<M: Mac = HmacSha256Key> {
    signing: M,
    accepted: Vec<M>,
}

impl Keyring<HmacSha256Key> {
    /// A keyring that signs with `signing` and accepts it plus every key in `also_accepted`.
    pub fn from_psks(signing: &[u8], also_accepted: &[Vec<u8>]) -> Self {
        let signing_key = HmacSha256Key::new(signing);
        let mut accepted = vec![signing_key.clone()];
        accepted.extend(also_accepted.iter().map(|psk| HmacSha256Key::new(psk)));
        Keyring {
            signing: signing_key,
            accepted,
        }
    }
}

impl<M: Mac> Keyring<M> {
    pub fn with_mac(signing: M, also_accepted: Vec<M>) -> Self {
        let mut accepted = vec![signing.clone()];
        accepted.extend(also_accepted);
        Keyring { signing, accepted }
    }

    pub fn signing(&self) -> &M {
        &self.signing
    }

    /// Whether any accepted key made `tag`. Every key is tried, so timing does not reveal which.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8; 32]) -> bool {
        self.accepted
            .iter()
            .fold(false, |found, key| key.verify(parts, tag) | found)
    }
}
