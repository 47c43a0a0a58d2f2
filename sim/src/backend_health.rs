//! The backend-health invariant: a hub marks its backend down only while that backend is at
//! fault (crashed, or its link held), never for one slow answer.
//!
//! The simulator knows each backend's faults as they happen (`BackendDown` to `BackendUp`,
//! `BackendHang` to `BackendRelease`, and everything ends at healing). A `BackendStall` makes
//! one probe or relay to a backend that is otherwise fine wait longer than any timeout: a
//! busy moment (a long prompt, a model swap, a pause). The hub's health machine must sit it
//! out. A backend marked down outside its faults (with [`AFTER_FAULT`] of slack) is a
//! violation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use triforce_core::node::NodeId;

use crate::backend::backend_host;
use crate::record::Log;

/// How long a stalled request waits before it is answered: past the relay timeout (30 s) and
/// the probe timeout (5 s), so the hub sees exactly one slow answer.
pub const STALL: Duration = Duration::from_secs(45);

/// How long after a fault ends a mark-down may still come from it: a relay held through the
/// fault times out up to one relay timeout after it began.
pub const AFTER_FAULT: Duration = Duration::from_secs(35);

/// Per backend host: its faults, and the stall waiting for its next probe or relay.
#[derive(Debug, Default)]
pub struct BackendFaults {
    /// (start, end) of each crash or hang; `None`: not over yet.
    windows: BTreeMap<String, Vec<(Duration, Option<Duration>)>>,
    stalls: BTreeSet<String>,
    /// Random loss hits the hubs' links to their backends too: any probe may time out, and a
    /// backend marked down for it is right, so nothing is checked.
    pub lossy: bool,
}

impl BackendFaults {
    /// `node`'s backend crashed or hung at `at`.
    pub fn began(&mut self, node: &str, at: Duration) {
        self.windows
            .entry(backend_host(node))
            .or_default()
            .push((at, None));
    }

    /// `node`'s backend fault (if any) ended at `at`.
    pub fn ended(&mut self, node: &str, at: Duration) {
        if let Some((_, end)) = self
            .windows
            .entry(backend_host(node))
            .or_default()
            .iter_mut()
            .find(|(_, end)| end.is_none())
        {
            *end = Some(at);
        }
    }

    /// Every fault ends (the run heals).
    pub fn all_ended(&mut self, at: Duration) {
        for (_, end) in self.windows.values_mut().flatten() {
            end.get_or_insert(at);
        }
    }

    /// `node`'s backend stalls its next probe or relay.
    pub fn stall_next(&mut self, node: &str) {
        self.stalls.insert(backend_host(node));
    }

    /// Whether the request arriving at `host` now is the one it stalls.
    pub fn take_stall(&mut self, host: &str) -> bool {
        self.stalls.remove(host)
    }

    fn at_fault(&self, host: &str, at: Duration) -> bool {
        self.windows.get(host).is_some_and(|windows| {
            windows
                .iter()
                .any(|(start, end)| *start <= at && end.is_none_or(|end| at <= end + AFTER_FAULT))
        })
    }
}

impl Log {
    /// `node` marked its backend down at `at`: it must have been at fault.
    pub fn check_backend_marked_down(&mut self, node: &NodeId, at: Duration) {
        let host = backend_host(node.as_str());
        if self.backend_faults.lossy || self.backend_faults.at_fault(&host, at) {
            return;
        }
        self.violation(format!(
            "{:.1}s: {node} marked its backend {host} down, which was neither crashed nor hung",
            at.as_secs_f64()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_mark_down_counts_as_at_fault_from_the_start_to_the_slack_after_the_end() {
        let mut faults = BackendFaults::default();
        let host = backend_host("backup");
        faults.began("backup", s(10));
        assert!(!faults.at_fault(&host, s(9)));
        assert!(faults.at_fault(&host, s(500)), "not over yet");
        faults.ended("backup", s(20));
        assert!(faults.at_fault(&host, s(20) + AFTER_FAULT));
        assert!(!faults.at_fault(&host, s(21) + AFTER_FAULT));
        assert!(!faults.at_fault(&backend_host("zombie-pc"), s(15)));
        faults.began("backup", s(100));
        faults.all_ended(s(110));
        assert!(faults.at_fault(&host, s(105)));
        assert!(!faults.at_fault(&host, s(111) + AFTER_FAULT));
    }

    #[test]
    fn a_stall_is_taken_once() {
        let mut faults = BackendFaults::default();
        faults.stall_next("backup");
        let host = backend_host("backup");
        assert!(faults.take_stall(&host));
        assert!(!faults.take_stall(&host));
    }
}
