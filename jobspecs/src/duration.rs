//! Go-style durations ("30s", "1m30s", "1.5h", "250ms") as integer nanoseconds, the unit
//! of every duration in Nomad's JSON.

/// Parses a duration string into nanoseconds; the error says what was wrong. Checked
/// integer arithmetic (`api::duration`): exact to the nanosecond, and out-of-range input
/// is an error, never a rounded or saturated value.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    api::duration::parse_go_duration_nanos(s)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    const S: i64 = 1_000_000_000;

    #[test]
    fn durations_become_nanoseconds() {
        assert_eq!(parse_duration("30s"), Ok(30 * S));
        assert_eq!(parse_duration("1m30s"), Ok(90 * S));
        assert_eq!(parse_duration("1h"), Ok(3600 * S));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5400 * S));
        assert_eq!(parse_duration("10us"), Ok(10_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("-2s"), Ok(-2 * S));
    }

    #[test]
    fn bad_durations_are_explained() {
        assert!(parse_duration("10")
            .unwrap_err()
            .contains("missing its unit"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("9999999999h")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn long_durations_are_exact_to_the_nanosecond() {
        assert_eq!(
            parse_duration("9007199254740993ns"),
            Ok(9_007_199_254_740_993)
        );
        assert_eq!(parse_duration("2562047h47m16s854775807ns"), Ok(i64::MAX));
        assert!(parse_duration("2562047h47m16s854775808ns").is_err());
    }
}
