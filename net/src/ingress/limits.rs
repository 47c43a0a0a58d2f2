//! A key's limits at the door beyond its request rate ([`super::keys`]): requests in flight,
//! tokens per minute, and token budgets per UTC day and month. Each refusal is a 429 in the
//! client's API shape that names the limit and says when to try again (`Retry-After`).
//!
//! Tokens are known only once a backend has answered, so they are charged after the answer:
//! a key under its rate may start a request that takes it over, and its next request waits
//! until the minute's refill covers the debt. That keeps a client's answer whole rather than
//! cutting it off at a count the door cannot know in advance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use tokio::time::Instant;
use triforce_core::config::ApiKey;

use super::shape::{Dialect, DoorCode, IngressError};
use crate::usage::Spent;

/// Every key's in-flight count and token bucket.
#[derive(Default)]
pub struct KeyLimits {
    keys: Mutex<HashMap<String, KeyState>>,
}

struct KeyState {
    in_flight: u32,
    /// Tokens left this minute; negative after an answer that used more than was left.
    tokens: f64,
    refilled: Instant,
}

/// A request admitted under its key's limits: it counts as in flight until dropped (the
/// answer's last byte, or the client leaving), and is charged its tokens once known.
pub struct Admitted {
    limits: Arc<KeyLimits>,
    key: String,
    tokens_per_minute: u64,
    concurrent: bool,
}

impl Admitted {
    /// Whether the answer must be watched for this admission: it holds a place in flight, or
    /// its tokens count against a rate.
    pub fn watches_the_answer(&self) -> bool {
        self.concurrent || self.tokens_per_minute > 0
    }
}

impl crate::usage::Charged for Admitted {
    /// Charges the tokens the backend reported against the key's minute.
    fn charge(&self, tokens: u64) {
        if self.tokens_per_minute == 0 || tokens == 0 {
            return;
        }
        let mut keys = self.limits.keys.lock().expect("limits lock");
        if let Some(state) = keys.get_mut(&self.key) {
            state.tokens -= tokens as f64;
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut keys = self.limits.keys.lock().expect("limits lock");
        if let Some(state) = keys.get_mut(&self.key) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

impl KeyLimits {
    /// Admits a request of `key` at `unix_s`, which has `spent` so far (when it has a budget),
    /// or says which limit refuses it.
    pub fn admit(
        self: &Arc<Self>,
        api: Dialect,
        key: &ApiKey,
        spent: Spent,
        unix_s: u64,
    ) -> Result<Admitted, IngressError> {
        budget_left(api, key, spent, unix_s)?;
        let now = Instant::now();
        let rate = key.tokens_per_minute as f64;
        let mut keys = self.keys.lock().expect("limits lock");
        let state = keys.entry(key.name.clone()).or_insert(KeyState {
            in_flight: 0,
            tokens: rate,
            refilled: now,
        });
        if key.tokens_per_minute > 0 {
            let refill = now.duration_since(state.refilled).as_secs_f64() * rate / 60.0;
            state.tokens = (state.tokens + refill).min(rate);
            state.refilled = now;
            if state.tokens <= 0.0 {
                let wait = (1.0 - state.tokens) * 60.0 / rate;
                return Err(too_many(
                    api,
                    DoorCode::TokensPerMinuteExceeded,
                    format!(
                        "key {:?} is limited to {} tokens per minute",
                        key.name, key.tokens_per_minute
                    ),
                    wait.ceil() as u64,
                ));
            }
        } else {
            // The limit may have been removed by a reload: nothing owed any more.
            state.tokens = 0.0;
        }
        if key.concurrent_max > 0 && state.in_flight >= key.concurrent_max {
            return Err(too_many(
                api,
                DoorCode::ConcurrencyLimitExceeded,
                format!(
                    "key {:?} may have {} requests in flight at once",
                    key.name, key.concurrent_max
                ),
                1,
            ));
        }
        state.in_flight += 1;
        Ok(Admitted {
            limits: self.clone(),
            key: key.name.clone(),
            tokens_per_minute: key.tokens_per_minute,
            concurrent: key.concurrent_max > 0,
        })
    }
}

/// Refuses a key whose day's or month's budget is spent, until the next day or month (UTC).
fn budget_left(api: Dialect, key: &ApiKey, spent: Spent, unix_s: u64) -> Result<(), IngressError> {
    if key.tokens_per_month > 0 && spent.month >= key.tokens_per_month {
        return Err(too_many(
            api,
            DoorCode::MonthlyBudgetExceeded,
            format!(
                "key {:?} has used its {} tokens for this month (UTC)",
                key.name, key.tokens_per_month
            ),
            seconds_to_next_month(unix_s),
        ));
    }
    if key.tokens_per_day > 0 && spent.day >= key.tokens_per_day {
        return Err(too_many(
            api,
            DoorCode::DailyBudgetExceeded,
            format!(
                "key {:?} has used its {} tokens for today (UTC)",
                key.name, key.tokens_per_day
            ),
            86_400 - unix_s % 86_400,
        ));
    }
    Ok(())
}

fn too_many(api: Dialect, code: DoorCode, message: String, retry_after_s: u64) -> IngressError {
    IngressError::new(api, StatusCode::TOO_MANY_REQUESTS, code, message)
        .with_retry_after(retry_after_s)
}

/// Seconds from `unix_s` to the start of the next UTC calendar month.
fn seconds_to_next_month(unix_s: u64) -> u64 {
    let Ok(now) = time::OffsetDateTime::from_unix_timestamp(unix_s as i64) else {
        return 86_400;
    };
    let (year, month) = match now.month() {
        time::Month::December => (now.year() + 1, time::Month::January),
        month => (now.year(), month.next()),
    };
    let next = time::Date::from_calendar_date(year, month, 1)
        .map(|date| date.midnight().assume_utc().unix_timestamp())
        .unwrap_or(unix_s as i64 + 86_400);
    (next - unix_s as i64).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Charged as _;

    fn key() -> ApiKey {
        ApiKey::new("ann", "0".repeat(64))
    }

    #[test]
    fn a_month_ends_at_the_next_months_first_midnight() {
        let dec_31_noon = 1_767_182_400; // 2025-12-31T12:00:00Z
        assert_eq!(seconds_to_next_month(dec_31_noon), 12 * 3600);
        let jan_1 = 1_767_225_600;
        assert_eq!(seconds_to_next_month(jan_1), 31 * 86_400);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_bounded_and_released_on_drop() {
        let limits = Arc::new(KeyLimits::default());
        let key = ApiKey {
            concurrent_max: 2,
            ..key()
        };
        let first = limits
            .admit(Dialect::OpenAi, &key, Spent::default(), 0)
            .unwrap();
        let _second = limits
            .admit(Dialect::OpenAi, &key, Spent::default(), 0)
            .unwrap();
        let refused = limits
            .admit(Dialect::OpenAi, &key, Spent::default(), 0)
            .err()
            .unwrap();
        assert_eq!(
            (refused.status, refused.code, refused.retry_after),
            (
                StatusCode::TOO_MANY_REQUESTS,
                DoorCode::ConcurrencyLimitExceeded,
                Some(1)
            )
        );
        drop(first);
        assert!(limits
            .admit(Dialect::OpenAi, &key, Spent::default(), 0)
            .is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_charged_after_the_answer_and_refill_over_the_minute() {
        let limits = Arc::new(KeyLimits::default());
        let key = ApiKey {
            tokens_per_minute: 600,
            ..key()
        };
        let admitted = limits
            .admit(Dialect::Ollama, &key, Spent::default(), 0)
            .unwrap();
        admitted.charge(900);
        drop(admitted);
        // 300 tokens in debt: (300 + 1) at 10 per second is 31 s.
        let refused = limits
            .admit(Dialect::Ollama, &key, Spent::default(), 0)
            .err()
            .unwrap();
        assert_eq!(
            (refused.code, refused.retry_after),
            (DoorCode::TokensPerMinuteExceeded, Some(31))
        );
        tokio::time::advance(std::time::Duration::from_secs(31)).await;
        assert!(limits
            .admit(Dialect::Ollama, &key, Spent::default(), 0)
            .is_ok());
    }

    #[test]
    fn budgets_refuse_until_the_next_day_or_month() {
        let key = ApiKey {
            tokens_per_day: 100,
            tokens_per_month: 1_000,
            ..key()
        };
        let noon = 1_767_182_400;
        assert!(budget_left(
            Dialect::OpenAi,
            &key,
            Spent {
                day: 99,
                month: 500
            },
            noon
        )
        .is_ok());
        let day = budget_left(
            Dialect::OpenAi,
            &key,
            Spent {
                day: 100,
                month: 500,
            },
            noon,
        )
        .err()
        .unwrap();
        assert_eq!(
            (day.code, day.retry_after),
            (DoorCode::DailyBudgetExceeded, Some(12 * 3600))
        );
        let month = budget_left(
            Dialect::OpenAi,
            &key,
            Spent {
                day: 0,
                month: 1_000,
            },
            noon,
        )
        .err()
        .unwrap();
        assert_eq!(month.code, DoorCode::MonthlyBudgetExceeded);
    }
}
