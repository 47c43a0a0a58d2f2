//! Who is up: heartbeats, misses, Online/Offline, latency and load per peer.
//!
//! # The rule
//!
//! Every `interval` each peer gets a probe (a heartbeat with a fresh sequence number). A probe
//! not answered before the next one is due (one interval) is a miss. `misses_max` consecutive
//! misses (the seed: 3) make the peer Offline; one answered probe makes it Online again and
//! resets the count. An answer is counted only for the probe still outstanding for that peer:
//! late answers, duplicates and answers to earlier probes are stale and change nothing.
//!
//! # Task failures as evidence
//!
//! When a task call to a peer fails at the connection level (refused, reset, or not
//! acknowledged within the accept timeout), the driver reports it with
//! [`Membership::handle_task_failure`]. That counts as one miss, at most once per interval, and
//! sends a probe at once if none is outstanding. So a node that dies under load is Offline after
//! roughly two intervals instead of three, while a single hiccup can never do more than one
//! heartbeat loss would. An answered probe clears it like any other miss.

mod event;
mod machine;
mod peer;

pub use event::{MembershipEvent, Probe};
pub use machine::{Answer, Membership, MembershipConfig};
pub use peer::{Load, PeerState, PeerView};
