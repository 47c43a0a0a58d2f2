//! The node's clock inside the simulation: tokio's (simulated) monotonic time, and wall time
//! from turmoil's fixed epoch.

use triforce_core::time::Instant;
use triforce_net::clock::{Clock, SystemClock};

pub struct SimClock {
    monotonic: SystemClock,
}

impl SimClock {
    /// Must be made on the host's runtime, whose tokio clock turmoil drives.
    pub fn new() -> Self {
        SimClock {
            monotonic: SystemClock::new(),
        }
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.monotonic.now()
    }

    fn unix_s(&self) -> u64 {
        turmoil::since_epoch().map_or(0, |d| d.as_secs())
    }
}
