//! A deterministic cluster of membership machines on a virtual network, for tests, property
//! tests and the simulator's core tier.
//!
//! No runtime: [`Cluster::step`] jumps straight to the earliest deadline (a machine's timer or a
//! message's arrival), so an hour of heartbeats takes microseconds. Loss, delay, one-way
//! partitions and crashes are drawn from one seeded RNG: the same seed gives the same trace,
//! which [`Cluster::trace_hash`] condenses for comparison.

mod cluster;
mod network;

pub use cluster::{Cluster, ClusterConfig, TraceEntry};
pub use network::NetworkConfig;
