//! Time as a value: the monotonic [`Instant`] that drives timers.
//!
//! Wall-clock time (for the signature window) is plain unix seconds (`u64`), passed separately,
//! because the two clocks answer different questions: "how long has it been" versus "is this
//! request fresh".

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on a monotonic clock, in milliseconds since an origin the driver picks.
///
/// The driver maps its own clock (tokio's `Instant`, turmoil's simulated time, the harness's
/// virtual clock) to milliseconds; core only compares and adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the driver's clock.
    pub const ZERO: Instant = Instant(0);

    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is in the future.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, rhs: Duration) -> Instant {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

/// The earlier of two optional deadlines, treating `None` as "never".
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
