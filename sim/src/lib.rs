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
//! - [`world`]: hosts, nodes, the task load and the adversary.
//! - [`scenario`]: the fault plans.
//! - [`check`]: the invariants.
//! - [`run`]: one scenario for one seed, with its report.

pub mod backend;
pub mod check;
pub mod clock;
pub mod core_tier;
pub mod http;
pub mod record;
pub mod run;
pub mod scenario;
pub mod socket;
pub mod stats;
pub mod world;
