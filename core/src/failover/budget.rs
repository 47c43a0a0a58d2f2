//! A retry budget, so a sick cluster is not flooded with retries.

/// Each task's first attempt earns `ratio` retry tokens and each retry spends one. The balance
/// starts at `reserve` and never exceeds `max(reserve, 1)`, so a quiet cluster can still fail
/// over a burst of `reserve` tasks, while a cluster failing everything retries at most `ratio`
/// times per task on average.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryBudget {
    tokens: f64,
    ratio: f64,
    cap: f64,
}

impl RetryBudget {
    pub fn new(ratio: f64, reserve: u32) -> Self {
        assert!(
            ratio >= 0.0 && ratio.is_finite(),
            "retry ratio must be a finite non-negative number"
        );
        let cap = f64::from(reserve).max(1.0);
        RetryBudget {
            tokens: f64::from(reserve),
            ratio,
            cap,
        }
    }

    /// A task made its first attempt.
    pub fn handle_first_attempt(&mut self) {
        self.tokens = (self.tokens + self.ratio).min(self.cap);
    }

    /// Takes one retry if the budget allows it.
    pub fn try_retry(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_up_to_the_reserve_then_earns_by_ratio() {
        let mut budget = RetryBudget::new(0.5, 2);
        assert!(budget.try_retry() && budget.try_retry());
        assert!(!budget.try_retry());
        budget.handle_first_attempt();
        assert!(!budget.try_retry());
        budget.handle_first_attempt();
        assert!(budget.try_retry());
    }
}
