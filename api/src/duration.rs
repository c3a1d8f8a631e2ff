//! Go-style durations ("30s", "1m30s", "1.5h", "250ms"), parsed with checked arithmetic.
//!
//! The one home for turning an operator's or a request's duration text into a value:
//! huge, negative or malformed input is an error sentence, never a panic or a silent wrap.
//! The range is Go's (`time.Duration` is int64 nanoseconds, about 292 years).

use std::time::Duration;

/// The largest duration Go can represent: `i64::MAX` nanoseconds.
pub const MAX_GO_DURATION_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration into signed nanoseconds (Go's `time.ParseDuration`): an optional
/// sign, then one or more `<number><unit>` parts; units are ns, us (µs), ms, s, m and h;
/// "0" needs no unit. The error is a sentence naming the input.
pub fn parse_go_duration_nanos(s: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!("invalid duration {s:?}: {why} (expected e.g. \"30s\", \"1m30s\" or \"250ms\")")
    };
    let text = s.trim();
    let (neg, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad("a number is missing its unit")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad("malformed number"));
        }
        let too_large = || bad("it is out of range (at most about 292 years)");
        let mut part: u128 = 0;
        for d in whole.bytes() {
            part = part
                .checked_mul(10)
                .and_then(|p| p.checked_add(u128::from(d - b'0')))
                .filter(|p| *p <= MAX_GO_DURATION_NANOS)
                .ok_or_else(too_large)?;
        }
        let mut nanos = part.checked_mul(scale).ok_or_else(too_large)?;
        // Fractional digits beyond nanosecond precision are dropped, as Go does.
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * place;
        }
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= MAX_GO_DURATION_NANOS)
            .ok_or_else(too_large)?;
    }
    let total = total as i64; // bounded by MAX_GO_DURATION_NANOS above
    Ok(if neg { -total } else { total })
}

/// Parses a Go duration that must not be negative into a [`Duration`].
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let ns = parse_go_duration_nanos(s)?;
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| format!("invalid duration {s:?}: it must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_exactly() {
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration_nanos("-1s"), Ok(-1_000_000_000));
        assert_eq!(parse_go_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(
            parse_go_duration("1.0000000001s"),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            parse_go_duration("2562047h47m16.854775807s"),
            Ok(Duration::from_nanos(i64::MAX as u64))
        );
    }

    #[test]
    fn huge_negative_and_malformed_durations_are_sentences_not_panics() {
        for s in [
            "99999999999999999999s",
            "2562047h47m16.854775808s",
            "9223372036854775807h",
            "184467440737095516160000000000000000000000ns",
        ] {
            let e = parse_go_duration(s).unwrap_err();
            assert!(e.contains("out of range"), "{s}: {e}");
        }
        assert!(parse_go_duration("-5s").unwrap_err().contains("negative"));
        for s in [
            "", "s", "5", "5x", "s5", "1..2s", ".s", "NaN", "inf", "1e9s", "--1s", "5 s",
        ] {
            let e = parse_go_duration(s).unwrap_err();
            assert!(e.starts_with("invalid duration"), "{s}: {e}");
        }
    }
}
