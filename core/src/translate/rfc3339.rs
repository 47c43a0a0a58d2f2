//! Unix seconds as RFC 3339 UTC text (`2026-12-07T05:00:00Z`): Ollama's `created_at`, from the
//! `created` an OpenAI answer carries. No clock is read.

/// `unix_s` as `YYYY-MM-DDTHH:MM:SSZ` (the epoch for an instant past the year 9999).
pub fn rfc3339(unix_s: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(unix_s.min(i64::MAX as u64) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_619_600), "2026-12-07T05:00:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
