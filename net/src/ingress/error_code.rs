//! Every code the door answers an error with, one enum with its wire string in one place.
//! Clients and scripts match on these strings (OpenAI's `error.code`); the README lists them.

/// What went wrong, as the client's program reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorCode {
    // The key.
    MissingApiKey,
    InvalidApiKey,
    ModelNotAllowed,
    DashboardNotAllowed,
    // The key's limits and budgets.
    RateLimitExceeded,
    ConcurrencyLimitExceeded,
    TokensPerMinuteExceeded,
    DailyBudgetExceeded,
    MonthlyBudgetExceeded,
    MaxTokensOverCap,
    UsageUnavailable,
    // The request.
    InvalidBody,
    InvalidJson,
    AmbiguousField,
    MissingModel,
    UnknownEndpoint,
    TooLarge,
    // The federation's answer.
    ModelNotFound,
    NoBackendAvailable,
    BackendsDown,
    BackendError,
    Timeout,
}

impl DoorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DoorCode::MissingApiKey => "missing_api_key",
            DoorCode::InvalidApiKey => "invalid_api_key",
            DoorCode::ModelNotAllowed => "model_not_allowed",
            DoorCode::DashboardNotAllowed => "dashboard_not_allowed",
            DoorCode::RateLimitExceeded => "rate_limit_exceeded",
            DoorCode::ConcurrencyLimitExceeded => "concurrency_limit_exceeded",
            DoorCode::TokensPerMinuteExceeded => "tokens_per_minute_exceeded",
            DoorCode::DailyBudgetExceeded => "daily_budget_exceeded",
            DoorCode::MonthlyBudgetExceeded => "monthly_budget_exceeded",
            DoorCode::MaxTokensOverCap => "max_tokens_over_cap",
            DoorCode::UsageUnavailable => "usage_unavailable",
            DoorCode::InvalidBody => "invalid_body",
            DoorCode::InvalidJson => "invalid_json",
            DoorCode::AmbiguousField => "ambiguous_field",
            DoorCode::MissingModel => "missing_model",
            DoorCode::UnknownEndpoint => "unknown_endpoint",
            DoorCode::TooLarge => "too_large",
            DoorCode::ModelNotFound => "model_not_found",
            DoorCode::NoBackendAvailable => "no_backend_available",
            DoorCode::BackendsDown => "backends_down",
            DoorCode::BackendError => "backend_error",
            DoorCode::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for DoorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
