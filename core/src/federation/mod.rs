//! The federation machine: everything one node decides, as one sans-IO state machine.
//!
//! It owns the membership machine, the retry budget, selection with its RNG, and every task's
//! failover. Like quinn-proto's `Endpoint` against quinn, it never touches a socket, a clock or
//! an executor: the driver (the `net` crate, or a test) calls `handle_*` with the time as an
//! argument, drains `poll_*` for what to do (probes to send, attempts to dispatch or abandon,
//! outcomes), and sleeps until the earliest `poll_*_timeout`.
//!
//! Decisions the driver used to make live here, each in one place:
//!
//! - which nodes may get work ([`NodeView::may_get_work`]): online with no miss since its last
//!   answer; status shows `online` ([`NodeView::is_online`]) by the heartbeat rule alone;
//! - a node's load ([`NodeView::load`]): the larger of what it last reported and what this
//!   node has sent it since;
//! - an unmeasured latency is `None` all the way to the failover's accept timeout;
//! - which failures count as heartbeat misses: an attempt abandoned for a reason that blames
//!   the node ([`crate::failover::AbandonReason::is_peer_failure`]) or a broken connection;
//! - where a task can run at all ([`Capabilities::offer`]): only nodes with an executor for its
//!   type, a backend with its model, and that backend up; warm models first. A task no online
//!   node can take ends at once, with a reason that says which of the three was missing.
//! - a draining node ([`Capabilities::draining`], from its heartbeat) takes no new work but
//!   stays online: its running tasks finish.

mod capabilities;
mod machine;
mod reconfigure;
mod tasks;
mod view;

pub use capabilities::{
    same_model, BackendState, Capabilities, Offer, CAPABILITY_ITEMS_MAX, CAPABILITY_NAME_LEN_MAX,
};
pub use machine::{Capacity, Federation, FederationConfig};
pub use reconfigure::Reconfiguration;
pub use tasks::{TaskAction, TaskEvent, TaskHandle};
pub use view::{NodeState, NodeView};
