//! The time seam: the node reads time only through [`Clock`], so the simulator can replace it.

use std::time::{SystemTime, UNIX_EPOCH};

use triforce_core::time::Instant;

/// Monotonic time for timers and wall time for signatures.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds on a monotonic clock, as core's [`Instant`].
    fn now(&self) -> Instant;
    /// Unix seconds, for the signature window.
    fn unix_s(&self) -> u64;
}

/// The real clocks: tokio's monotonic clock (which turmoil and paused tests also drive) and the
/// system's wall clock.
#[derive(Clone, Debug)]
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    fn unix_s(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
