//! A window into a node for the simulator and tests: what its machines decide, as it happens.

use triforce_core::membership::MembershipEvent;
use triforce_core::node::NodeId;
use triforce_core::time::Instant;

/// Receives a node's decisions. Every method has an empty default; production runs none.
pub trait Observer: Send + Sync + 'static {
    /// The membership machine said something.
    fn membership(&self, _at: Instant, _event: &MembershipEvent) {}
    /// Selection ordered `order` for a task of `task_type`; `gpu_online` says whether any GPU
    /// node was Online in this node's view at that moment.
    fn selected(&self, _task_id: &str, _task_type: &str, _gpu_online: bool, _order: &[NodeId]) {}
    /// This node started an executor for `task_id` (the task really runs here).
    fn executed(&self, _task_id: &str, _task_type: &str) {}
    /// This node sent attempt number `attempt` of `task_id` to `node` (itself included).
    fn dispatched(&self, _task_id: &str, _node: &NodeId, _attempt: u32) {}
    /// This node's backend for `task_type` went up (`healthy`) or down.
    fn backend_health(&self, _task_type: &str, _healthy: bool) {}
}
