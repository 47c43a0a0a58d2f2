//! A retry budget, so a sick cluster is not flooded with retries.

use crate::time::Instant;

/// Seconds of history the budget looks at.
const WINDOW_S: usize = 10;

/// Over the last [`WINDOW_S`] seconds, retries may not exceed `reserve_per_s × 10` plus
/// `ratio` times the tasks started (Finagle's retry budget). A quiet cluster can still fail over
/// a burst; a cluster that fails everything retries at most `ratio` times per task, plus the
/// reserve. Time is an input (the window's clock); it only moves forward.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryBudget {
    ratio: f64,
    reserve_per_s: f64,
    /// (first attempts, retries) per second, indexed by second modulo the window.
    buckets: [(u32, u32); WINDOW_S],
    /// The second the newest bucket belongs to.
    newest_s: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64, reserve_per_s: u32) -> Self {
        assert!(
            ratio >= 0.0 && ratio.is_finite(),
            "retry ratio must be a finite non-negative number"
        );
        RetryBudget {
            ratio,
            reserve_per_s: f64::from(reserve_per_s),
            buckets: [(0, 0); WINDOW_S],
            newest_s: 0,
        }
    }

    /// A task made its first attempt at `now`.
    /// New limits from a reload; the counts of the last window stay, so a reload neither
    /// grants a burst of retries nor takes back ones already spent.
    pub fn set_limits(&mut self, ratio: f64, reserve_per_s: u32) {
        self.ratio = ratio;
        self.reserve_per_s = f64::from(reserve_per_s);
    }

    pub fn handle_first_attempt(&mut self, now: Instant) {
        let bucket = self.roll(now);
        self.buckets[bucket].0 = self.buckets[bucket].0.saturating_add(1);
    }

    /// Takes one retry at `now` if the budget allows it.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        let bucket = self.roll(now);
        if self.available() >= 1.0 {
            self.buckets[bucket].1 = self.buckets[bucket].1.saturating_add(1);
            true
        } else {
            false
        }
    }

    /// Retries the budget would allow right now.
    pub fn available(&self) -> f64 {
        let (firsts, retries) = self.buckets.iter().fold((0u64, 0u64), |(f, r), (bf, br)| {
            (f + u64::from(*bf), r + u64::from(*br))
        });
        self.reserve_per_s * WINDOW_S as f64 + self.ratio * firsts as f64 - retries as f64
    }

    /// Clears the buckets of seconds that left the window; returns the bucket for `now`.
    fn roll(&mut self, now: Instant) -> usize {
        let second = now.as_millis() / 1000;
        if second > self.newest_s {
            let passed = (second - self.newest_s).min(WINDOW_S as u64);
            for step in 1..=passed {
                self.buckets[((self.newest_s + step) % WINDOW_S as u64) as usize] = (0, 0);
            }
            self.newest_s = second;
        }
        (self.newest_s % WINDOW_S as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn reserve_plus_ratio_over_a_sliding_window() {
        let mut budget = RetryBudget::new(0.5, 1);
        // The reserve: 1 per second over 10 s.
        assert!((0..10).all(|_| budget.try_retry(at(0))));
        assert!(!budget.try_retry(at(0)));
        // Two first attempts earn one retry.
        budget.handle_first_attempt(at(1));
        budget.handle_first_attempt(at(1));
        assert!(budget.try_retry(at(1)));
        assert!(!budget.try_retry(at(1)));
        // Ten seconds on, the early retries have left the window.
        assert!(budget.try_retry(at(10)));
        assert_eq!(budget.available(), 10.0 + 1.0 - 2.0);
    }
}
