//! Strict parsing of header values: one canonical spelling each, so a signature covers exactly
//! one meaning.

use super::Rejection;

/// Hex digits of a SHA-256 tag.
pub const SIGNATURE_HEX_LEN: usize = 64;
/// Enough digits for any `u64`; more is certainly garbage.
pub const TIMESTAMP_DIGITS_MAX: usize = 19;

/// Unix seconds from ASCII decimal digits: no sign, no spaces, no leading zeros.
pub fn parse_timestamp(raw: &[u8]) -> Result<u64, Rejection> {
    let canonical = !raw.is_empty()
        && raw.len() <= TIMESTAMP_DIGITS_MAX
        && raw.iter().all(u8::is_ascii_digit)
        && (raw[0] != b'0' || raw.len() == 1);
    if !canonical {
        return Err(Rejection::MalformedTimestamp);
    }
    raw.iter()
        .try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(Rejection::MalformedTimestamp)
}

/// The 32-byte tag from exactly 64 lowercase hex digits (Python's `hexdigest()`).
pub fn parse_signature(raw: &[u8]) -> Result<[u8; 32], Rejection> {
    let lowercase_hex = raw.len() == SIGNATURE_HEX_LEN
        && raw
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !lowercase_hex {
        return Err(Rejection::MalformedSignature);
    }
    let mut tag = [0u8; 32];
    hex::decode_to_slice(raw, &mut tag).map_err(|_| Rejection::MalformedSignature)?;
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_canonical_decimal() {
        assert_eq!(parse_timestamp(b"1704067200"), Ok(1704067200));
        assert_eq!(parse_timestamp(b"0"), Ok(0));
        for bad in [
            &b""[..],
            b"-5",
            b"+5",
            b" 5",
            b"05",
            b"1.5",
            b"99999999999999999999",
            b"18446744073709551616",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                Err(Rejection::MalformedTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn signatures_are_64_lowercase_hex() {
        let good = "ab".repeat(32);
        assert_eq!(parse_signature(good.as_bytes()), Ok([0xab; 32]));
        for bad in [
            "AB".repeat(32),
            "ab".repeat(31),
            "zz".repeat(32),
            "ab".repeat(33),
        ] {
            assert_eq!(
                parse_signature(bad.as_bytes()),
                Err(Rejection::MalformedSignature)
            );
        }
    }
}
