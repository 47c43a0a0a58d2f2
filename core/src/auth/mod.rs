//! Signing and verifying federation requests, wire-compatible with the seed.
//!
//! A request carries three headers: `X-Federation-Node`, `X-Federation-Timestamp` (integer unix
//! seconds) and `X-Federation-Signature`, the lowercase hex of
//! HMAC-SHA256(key = PSK, msg = `"{timestamp}:{node_id}:"` followed by the raw body bytes).
//!
//! [`Verifier`] layers the seed's defences in a fixed order, cheapest and least revealing first:
//! strict parsing, known node, source address, time window, MAC (constant time, every accepted
//! key), and last the replay cache, so that nothing unauthenticated can fill the cache.
//!
//! Beyond the seed: a long task's `GET` and `DELETE` sign their method and path too
//! ([`signed_payload`]), and control calls name their action, node and a nonce in the body
//! ([`ControlRequest`]), so that no signature made for one call works for another.

mod control;
mod keys;
mod parse;
mod rejection;
mod replay;
mod signer;
mod source;
mod target;
mod verifier;

pub use control::{ControlError, ControlRequest};
pub use keys::{HmacSha256Key, Keyring, Mac, PSK_LEN_MIN};
pub use parse::{parse_signature, parse_timestamp, SIGNATURE_HEX_LEN, TIMESTAMP_DIGITS_MAX};
pub use rejection::{Header, Rejection};
pub use replay::ReplayCache;
pub use signer::{sign, SignedHeaders};
pub use source::SourcePolicy;
pub use target::{signed_payload, signs_target, LONG_TASK_PATH};
pub use verifier::{
    Authenticated, Authenticator, HeaderValue, SignedRequest, Verified, Verifier, VerifierConfig,
};

/// The header names, as the seed spells them.
pub const HEADER_NODE: &str = "X-Federation-Node";
pub const HEADER_TIMESTAMP: &str = "X-Federation-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Federation-Signature";
