//! Deterministic simulation of the federation: the real node from `triforce-net` (its driver,
//! QUIC through quinn, the core machines) on turmoil's simulated hosts and UDP, with faults
//! injected from a seeded plan and invariants checked after every step.
//!
//! One seed drives everything: turmoil's RNG (latency, loss), a fixed epoch for wall time,
//! quinn's connection ids, each node's selection RNG and the task load. `Ed25519` certificates
//! keep handshake sizes fixed, so packet counts, and with them the RNG stream, repeat exactly.
//!
//! - [`socket`]: quinn's `AsyncUdpSocket` over turmoil's UDP.
//! - [`clock`]: the node's clock on simulated time.
//! - [`record`]: what the nodes decide, as it happens (an `Observer`).
//! - [`world`]: hosts and their nodes, each serving its HTTP shim on turmoil's TCP.
//! - [`http`]: the shim's listener seam and a client over turmoil's TCP.
//! - [`backend`]: each hub's backend host, and the executors' dial seam.
//! - [`prompt_cache`]: what a backend keeps of the prompts it processed, and what that saves.
//! - [`load`]: the task load through the master's shim.
//! - [`conversations`]: multi-turn chats through the master's shim, timed to the first token.
//! - [`door_client`]: streams through the master's AI door; [`backend_stream`]: the backends'
//!   side of them; [`door_streams`]: what both ends saw, and its invariants.
//! - [`models`]: the backends' model lists as they change, and how stale routing may be.
//! - [`adversary`]: what must be refused, over QUIC and HTTP.
//! - [`config_changes`]: reloads in the middle of a run (key rotation, nodes leaving).
//! - [`scenario`]: the fault plans.
//! - [`check`]: the invariants.
//! - [`run`]: one scenario for one seed, with its report.

pub mod adversary;
pub mod backend;
pub mod backend_health;
pub mod backend_stream;
pub mod check;
pub mod clock;
pub mod config_changes;
pub mod conversations;
pub mod core_tier;
pub mod door_client;
pub mod door_streams;
pub mod http;
pub mod load;
pub mod models;
pub mod prompt_cache;
pub mod record;
pub mod run;
pub mod scenario;
pub mod socket;
pub mod stats;
pub mod world;
