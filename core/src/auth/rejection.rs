//! Why a request was refused. Every reason is distinct, so operators can tell attacks from clock
//! skew from misconfiguration, and metrics can count them apart.

use std::fmt;

/// One of the three signed headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Header {
    Node,
    Timestamp,
    Signature,
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Header::Node => super::HEADER_NODE,
            Header::Timestamp => super::HEADER_TIMESTAMP,
            Header::Signature => super::HEADER_SIGNATURE,
        })
    }
}

/// A refused request. No variant changes the verifier's state except that none is recorded in
/// the replay cache: only an accepted request is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("header {0} is missing")]
    MissingHeader(Header),
    #[error("header {0} appears more than once")]
    DuplicateHeader(Header),
    #[error("X-Federation-Timestamp must be unix seconds as plain decimal digits")]
    MalformedTimestamp,
    #[error("X-Federation-Signature must be 64 lowercase hex digits")]
    MalformedSignature,
    #[error("X-Federation-Node is not a valid node id")]
    MalformedNode,
    #[error("node {0:?} is not in this federation")]
    UnknownNode(String),
    #[error("source address {from} may not speak for node {node:?}")]
    IpNotAllowed {
        node: String,
        from: std::net::IpAddr,
    },
    #[error("timestamp is {age_s} s old; the window is {window_s} s")]
    Expired { age_s: u64, window_s: u64 },
    #[error("timestamp is {ahead_s} s in the future; the window is {window_s} s")]
    FromFuture { ahead_s: u64, window_s: u64 },
    #[error("signature does not match (wrong key, node, timestamp or body)")]
    BadSignature,
    #[error("this exact request was already accepted")]
    Replay,
    #[error("too many requests inside the window to remember them all; try again shortly")]
    ReplayCacheFull,
}

impl Rejection {
    /// A stable machine-readable code, used in JSON errors and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::DuplicateHeader(_) => "duplicate_header",
            Rejection::MalformedTimestamp => "malformed_timestamp",
            Rejection::MalformedSignature => "malformed_signature",
            Rejection::MalformedNode => "malformed_node",
            Rejection::UnknownNode(_) => "unknown_node",
            Rejection::IpNotAllowed { .. } => "ip_not_allowed",
            Rejection::Expired { .. } => "expired",
            Rejection::FromFuture { .. } => "future_timestamp",
            Rejection::BadSignature => "bad_signature",
            Rejection::Replay => "replay",
            Rejection::ReplayCacheFull => "replay_cache_full",
        }
    }

    /// Every code, for metrics that want a zero for each.
    pub const CODES: [&'static str; 12] = [
        "missing_header",
        "duplicate_header",
        "malformed_timestamp",
        "malformed_signature",
        "malformed_node",
        "unknown_node",
        "ip_not_allowed",
        "expired",
        "future_timestamp",
        "bad_signature",
        "replay",
        "replay_cache_full",
    ];
}
