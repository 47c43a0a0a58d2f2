//! QUIC between nodes: TLS from rcgen certificates, a PSK proof bound to each TLS session, and
//! postcard frames on bidirectional streams (one stream per heartbeat or task).
//!
//! TLS gives confidentiality and a session; it does not say who the peer is, because nodes
//! share nothing but the PSK. So the first stream of every connection carries a proof each way:
//! HMAC-SHA256 under the PSK over a keying-material exporter value of this very TLS session,
//! the sender's node id and a timestamp. A proof cannot be replayed on another connection (the
//! exporter differs), a node without the PSK cannot make one, and the server also checks that
//! the claimed node connects from its configured address.

mod frame;
mod handshake;
mod peers;
mod proof;
mod tls;

pub use frame::{decode, read_frame, write_frame, Frame, FrameError, TaskFrame};
pub use handshake::{accept_peer, HandshakeError, Identity};
pub use peers::Peers;
pub use proof::{make_proof, verify_proof, ProofError, ProofRecord, Role};
pub use tls::{client_config, server_config, ALPN};
