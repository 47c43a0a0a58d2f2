//! Sans-IO state machines of the TriForce federation.
//!
//! Nothing in this crate reads a clock, touches a socket or draws OS randomness: time comes in as
//! [`time::Instant`] (monotonic) and unix seconds (wall clock, for the signature window), and
//! randomness comes from a seeded RNG the caller hands over. That keeps one seed = one run, in
//! unit tests, in the [`harness`] and in the turmoil simulation alike.
//!
//! # The driver loop
//!
//! Every machine follows the same shape (quinn-proto, str0m): inputs go in through `handle_*`,
//! outputs are drained through `poll_*` until they return `None`, and `poll_timeout()` says when
//! `handle_timeout(now)` must be called next. A driver is written once:
//!
//! ```text
//! loop {
//!     while let Some(tx) = machine.poll_transmit() { send(tx) }
//!     while let Some(ev) = machine.poll_event() { react(ev) }
//!     let deadline = machine.poll_timeout();
//!     select! {
//!         input = socket.recv() => machine.handle_answer(clock.now(), input),
//!         _ = sleep_until(deadline) => machine.handle_timeout(clock.now()),
//!     }
//! }
//! ```
//!
//! Time only moves forward: a machine given an `Instant` earlier than one it has seen treats it
//! as the later one.
//!
//! # Parts
//!
//! - [`auth`]: signing and verifying federation requests (the seed's HMAC-SHA256 scheme).
//! - [`membership`]: heartbeats, misses, Online/Offline, latency and load per peer.
//! - [`selection`]: the ordered failover list for a task.
//! - [`affinity`]: the turns of one conversation to the node that has its history cached.
//! - [`failover`]: one state machine per task over that list, plus the shared retry budget.
//! - [`federation`]: the node's one machine over membership, selection, the budget and every
//!   task's failover; what the `net` driver runs.
//! - [`ledger`]: the executing side's memory of task ids, which makes retries idempotent.
//! - [`json`]: payloads and results as the bytes that were written, never re-encoded.
//! - [`config`]: `federation_nodes.json` and `federation.toml`, parsed and checked.
//! - [`door`]: what the AI door reads of a client's body, refusing bodies two decoders would
//!   read differently.
//! - [`relay`]: an AI request's head (dialect, path, model, stream, key), typed once where it
//!   enters and carried typed between nodes.
//! - [`translate`]: a request and its answer between the client's API and the backend's, when
//!   they differ (pure; the relaying node drives it).
//! - [`usage`]: the token counts a backend reports, read from its answer as it passes.

pub mod admission;
pub mod affinity;
pub mod auth;
pub mod backend_health;
pub mod config;
pub mod door;
pub mod failover;
pub mod federation;
#[cfg(feature = "harness")]
pub mod harness;
pub mod json;
pub mod ledger;
pub mod membership;
pub mod node;
pub mod relay;
pub mod selection;
pub mod stream_failure;
pub mod task;
pub mod time;
pub mod translate;
pub mod usage;
