//! The TriForce node: runs `triforce-core`'s machines over QUIC between nodes and serves the
//! seed's HTTP API.
//!
//! - [`load`]: reads a config directory and the PSK into a checked [`load::NodeConfig`].
//! - [`clock`]: the time seam (real clock in production, simulated in `sim`).
//! - [`quic`]: QUIC endpoint, PSK-proved connections, postcard frames.
//! - [`exec`]: what a node does with a task it runs (executors, priority queue, ledger).
//! - [`node`]: the node itself: membership driver, task routing with failover.
//! - [`http`]: the seed's HTTP API and `/metrics`.
//! - [`dashboard`]: the live web page at `/ui`.
//! - [`ingress`]: the OpenAI- and Ollama-compatible door for AI clients, behind API keys.
//! - [`usage`]: what each key used at the door, counted from the backends' answers and stored.
//! - [`client`]: a signed HTTP client, for the CLI and tests.

pub mod clock;
pub mod dashboard;
pub mod exec;
/// Entry points for the fuzzers and the corpus replay; not in a production build.
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod ingress;

/// The signed client of the CLI and the tests; a node never calls the HTTP API itself.
#[cfg(feature = "client")]
pub mod client;
pub mod load;
pub mod log_limit;
pub mod metrics;
pub mod node;
pub mod observer;

pub mod quic;
pub mod usage;
