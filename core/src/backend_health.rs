//! One relaying executor's backend as its node judges it: up or down, from active probes (a
//! cheap model listing per interval) and from its relays' outcomes (passive health, as
//! Envoy's outlier detection). The driver does the probing and the relaying and feeds the
//! results in with the time; this machine decides what they mean.
//!
//! - A refused connection marks the backend down at once: nothing listens there.
//! - A slow answer (a probe past its timeout, a relay with no answer within its timeout) is
//!   marked down only after [`SLOW_ANSWERS_MAX`] in a row. One slow answer is a busy moment
//!   (a long prompt, a model loading, a pause), and any answer in between clears the count.
//! - Any answer, to a probe or a relay, brings it back up.
//! - A busy backend is never probed: while a relay runs, or one ended within the last
//!   interval, its relays speak for it. Some servers end a running generation when another
//!   request arrives (llama-cpp-python's default), and a server that serves one request at a
//!   time would answer a probe only after the work ahead of it. A backend that is down is
//!   probed anyway: probes bring it back.
//!
//! A backend nobody has probed yet counts as up, so a node just started is not refused work
//! for what nobody has looked at yet.

use std::time::Duration;

use crate::time::Instant;

/// Slow answers in a row that mark a backend down.
pub const SLOW_ANSWERS_MAX: u32 = 2;

/// What one probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// It answered its model listing.
    Answered,
    /// The connection was refused or reset, or it answered a 5xx.
    Refused,
    /// No answer within the probe's timeout.
    Slow,
}

/// What a failed relay says about its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayFailure {
    /// Not reachable at all: the one relay failure that marks a backend down at once.
    Unreachable,
    /// No answer within the relay's timeout: a slow answer, as a probe past its timeout.
    TimedOut,
    /// Anything else, a status it answered included, says something about the request (or a
    /// passing overload), not that the server is gone.
    Other,
}

/// A change of a backend's health, for the node's log and its capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthChange {
    Down(DownBecause),
    Up,
}

/// Why a backend went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownBecause {
    /// A probe or a relay could not connect.
    Refused,
    /// [`SLOW_ANSWERS_MAX`] probes or relays in a row got no answer in time.
    Slow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendHealth {
    healthy: bool,
    /// Slow answers since the last answer.
    slow_answers: u32,
    /// Relays to it running now.
    relays: u32,
    /// When its last relay ended or got its answer's head.
    last_relay: Option<Instant>,
}

impl Default for BackendHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendHealth {
    /// A backend not probed yet: up.
    pub fn new() -> Self {
        BackendHealth {
            healthy: true,
            slow_answers: 0,
            relays: 0,
            last_relay: None,
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Whether a probe should go to it at `now`: not while its own relays speak for it (one
    /// runs, or one ended within the last `interval`), unless it is down.
    pub fn probe_due(&self, now: Instant, interval: Duration) -> bool {
        let busy = self.relays > 0
            || self
                .last_relay
                .is_some_and(|at| now.saturating_since(at) < interval);
        !self.healthy || !busy
    }

    pub fn handle_probe(&mut self, result: ProbeResult) -> Option<HealthChange> {
        match result {
            ProbeResult::Answered => self.answered(),
            ProbeResult::Refused => self.down(DownBecause::Refused),
            ProbeResult::Slow => self.slow(),
        }
    }

    pub fn handle_relay_started(&mut self) {
        self.relays += 1;
    }

    pub fn handle_relay_ended(&mut self, now: Instant) {
        self.relays = self.relays.saturating_sub(1);
        self.last_relay = Some(now);
    }

    /// A relay got its answer's head: the backend is up, whatever the last probe said.
    pub fn handle_relay_answered(&mut self, now: Instant) -> Option<HealthChange> {
        self.last_relay = Some(now);
        self.answered()
    }

    pub fn handle_relay_failure(&mut self, failure: RelayFailure) -> Option<HealthChange> {
        match failure {
            RelayFailure::Unreachable => self.down(DownBecause::Refused),
            RelayFailure::TimedOut => self.slow(),
            RelayFailure::Other => None,
        }
    }

    fn answered(&mut self) -> Option<HealthChange> {
        self.slow_answers = 0;
        let came_up = !self.healthy;
        self.healthy = true;
        came_up.then_some(HealthChange::Up)
    }

    fn slow(&mut self) -> Option<HealthChange> {
        self.slow_answers += 1;
        if self.slow_answers >= SLOW_ANSWERS_MAX {
            self.down(DownBecause::Slow)
        } else {
            None
        }
    }

    fn down(&mut self, because: DownBecause) -> Option<HealthChange> {
        let went_down = self.healthy;
        self.healthy = false;
        went_down.then_some(HealthChange::Down(because))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn refused_is_down_at_once_and_an_answer_brings_it_back() {
        let mut health = BackendHealth::new();
        assert!(health.healthy(), "up until probed");
        assert_eq!(
            health.handle_probe(ProbeResult::Refused),
            Some(HealthChange::Down(DownBecause::Refused))
        );
        assert_eq!(health.handle_probe(ProbeResult::Refused), None, "once");
        assert_eq!(
            health.handle_probe(ProbeResult::Answered),
            Some(HealthChange::Up)
        );
        assert_eq!(
            health.handle_relay_failure(RelayFailure::Unreachable),
            Some(HealthChange::Down(DownBecause::Refused))
        );
        assert_eq!(health.handle_relay_answered(at(0)), Some(HealthChange::Up));
    }

    #[test]
    fn one_slow_answer_is_a_busy_moment_two_in_a_row_are_down() {
        let mut health = BackendHealth::new();
        assert_eq!(health.handle_probe(ProbeResult::Slow), None);
        assert!(health.healthy());
        // An answer in between clears the count.
        assert_eq!(health.handle_relay_answered(at(0)), None);
        assert_eq!(health.handle_relay_failure(RelayFailure::TimedOut), None);
        assert!(health.healthy());
        assert_eq!(
            health.handle_probe(ProbeResult::Slow),
            Some(HealthChange::Down(DownBecause::Slow))
        );
        // A failure that speaks of the request, not the server, changes nothing.
        assert_eq!(
            health.handle_probe(ProbeResult::Answered),
            Some(HealthChange::Up)
        );
        assert_eq!(health.handle_relay_failure(RelayFailure::Other), None);
        assert_eq!(health.handle_relay_failure(RelayFailure::Other), None);
        assert!(health.healthy());
    }

    #[test]
    fn a_busy_backend_is_not_probed_unless_it_is_down() {
        let interval = Duration::from_secs(5);
        let mut health = BackendHealth::new();
        assert!(health.probe_due(at(0), interval));
        health.handle_relay_started();
        assert!(!health.probe_due(at(60_000), interval), "a relay in flight");
        health.handle_relay_ended(at(1_000));
        assert!(!health.probe_due(at(1_000), interval), "a relay just ended");
        assert!(
            health.probe_due(at(6_000), interval),
            "idle a whole interval"
        );
        health.handle_relay_started();
        health.handle_relay_failure(RelayFailure::Unreachable);
        assert!(
            health.probe_due(at(6_000), interval),
            "down: probes bring it back"
        );
    }
}
