//! Rate-limited logging of refusals: a flood of bad requests must not become a disk-filling
//! log. Every refusal still counts in the metrics; only the log lines are limited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use triforce_core::time::Instant;

/// Lines logged per reason in one window; the rest are counted and summed up in the next line.
pub const LINES_PER_WINDOW: u32 = 5;
/// The window over which [`LINES_PER_WINDOW`] applies.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// Per-reason budget of log lines.
#[derive(Default)]
pub struct LogLimiter {
    reasons: Mutex<HashMap<&'static str, Window>>,
}

impl LogLimiter {
    /// Whether a line for `reason` may be logged at `now`; when lines were held back since the
    /// last one, how many (the caller logs that count with its line).
    pub fn admit(&self, reason: &'static str, now: Instant) -> Option<u64> {
        let mut reasons = self.reasons.lock().expect("log limiter lock");
        let window = reasons.entry(reason).or_insert_with(|| Window {
            started: now,
            ..Window::default()
        });
        if now.saturating_since(window.started) >= WINDOW {
            window.started = now;
            window.logged = 0;
        }
        if window.logged >= LINES_PER_WINDOW {
            window.suppressed += 1;
            return None;
        }
        window.logged += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_a_few_lines_per_window_and_counts_the_rest() {
        let limiter = LogLimiter::default();
        let at = Instant::from_millis;
        let admitted = (0..1000)
            .filter(|_| limiter.admit("bad_signature", at(0)).is_some())
            .count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        assert_eq!(
            limiter.admit("expired", at(1)),
            Some(0),
            "reasons are apart"
        );
        assert_eq!(limiter.admit("bad_signature", at(9_999)), None);
        assert_eq!(
            limiter.admit("bad_signature", at(10_000)),
            Some(1000 - u64::from(LINES_PER_WINDOW) + 1),
            "the next window's first line says how many were held back"
        );
    }
}
