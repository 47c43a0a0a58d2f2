//! A deterministic cluster of federation machines on a virtual network, for tests, property
//! tests and the simulator's core tier: heartbeats, and (when asked) tasks routed, failed over
//! and ended by the same machine a node runs, with the harness as executor and wire.
//!
//! No runtime: [`Cluster::step`] jumps straight to the earliest deadline (a machine's timer or a
//! message's arrival), so an hour of heartbeats takes microseconds. Loss, delay, one-way
//! partitions and crashes are drawn from one seeded RNG: the same seed gives the same trace,
//! which [`Cluster::trace_hash`] condenses for comparison.

mod cluster;
mod network;

pub use cluster::{Cluster, ClusterConfig, TaskRecord, TraceEntry, HARNESS_TASK_TYPE};
pub use network::NetworkConfig;
