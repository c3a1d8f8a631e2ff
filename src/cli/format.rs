//! Output helpers shared by every command: Nomad-looking tables and `key = value` blocks,
//! identifiers, timestamps ("2026-01-02T15:04:05+01:00", "10s ago") and API errors
//! turned into sentences.

use api::ApiError;
use chrono::{Local, SecondsFormat, TimeZone, Utc};
use comfy_table::{presets::NOTHING, CellAlignment, ContentArrangement, Table};

/// What an empty description shows as, like Nomad.
pub const NONE: &str = "<none>";

/// A table the way Nomad prints one: a header row, no borders, columns separated by two
/// spaces, left aligned, no trailing whitespace, never wrapped to the terminal.
pub fn table<H: AsRef<str>>(header: &[H], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(
            header
                .iter()
                .map(|h| h.as_ref().to_string())
                .collect::<Vec<_>>(),
        );
    for row in rows {
        t.add_row(row);
    }
    let last = header.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
        col.set_cell_alignment(CellAlignment::Left);
    }
    // NOTHING draws its (empty) borders as spaces: drop the blank lines and the trailing
    // blanks they leave behind.
    t.lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A header block: keys padded to the longest, then ` = ` and the value.
///
/// ```text
/// ID     = 1234abcd
/// Status = running
/// ```
pub fn kv<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            let k = k.as_ref();
            let pad = width - k.chars().count();
            format!("{k}{:pad$} = {}", "", v.as_ref())
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An identifier as shown: eight characters unless `-verbose` asked for all of it.
pub fn id(id: &str, verbose: bool) -> &str {
    if verbose {
        id
    } else {
        api::short_id(id)
    }
}

/// `<none>` for an empty string.
pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_string()
    } else {
        s.to_string()
    }
}

/// Now, in Unix nanoseconds.
pub fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A Unix-nanosecond timestamp as local RFC 3339 to the second; empty for zero.
pub fn rfc3339(nanos: i64) -> String {
    if nanos <= 0 {
        return String::new();
    }
    Local
        .timestamp_nanos(nanos)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The current local time as the monitor stamps its lines.
pub fn now_rfc3339() -> String {
    Local::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 in UTC, for output that must not depend on the machine's zone.
#[cfg(test)]
pub fn rfc3339_utc(nanos: i64) -> String {
    chrono::DateTime::<Utc>::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How long ago `then` was, seen from `now` (both Unix nanoseconds), to the second, in
/// at most its two largest units: "0s ago", "42s ago", "1m8s ago", "3h ago", "2d4h ago";
/// "10s from now" for the future; empty when `then` is unset.
pub fn relative_time(then: i64, now: i64) -> String {
    if then <= 0 {
        return String::new();
    }
    const NS: i64 = 1_000_000_000;
    // Round both to whole seconds first, so 0.6s ago and 1.4s ago both read "1s ago".
    let round = |t: i64| (t + NS / 2).div_euclid(NS);
    let (then_s, now_s) = (round(then), round(now));
    let (secs, suffix) = if now_s >= then_s {
        (now_s - then_s, "ago")
    } else {
        (then_s - now_s, "from now")
    };
    format!("{} {suffix}", short_duration(secs as u64))
}

/// Whole seconds in at most two units: "0s", "59s", "1m8s", "2h", "3d4h".
pub fn short_duration(secs: u64) -> String {
    let units = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let Some(first) = units.iter().position(|(n, _)| *n > 0) else {
        return "0s".to_string();
    };
    let mut out = format!("{}{}", units[first].0, units[first].1);
    if let Some((n, unit)) = units.get(first + 1) {
        if *n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// A time cell in a table: relative by default, exact with `-verbose`.
pub fn time_cell(nanos: i64, verbose: bool, now: i64) -> String {
    if verbose {
        rfc3339(nanos)
    } else {
        relative_time(nanos, now)
    }
}

/// An API failure as a sentence: `Error <doing>: <status>: <what the server said>`.
pub fn api_error(doing: &str, err: ApiError) -> anyhow::Error {
    anyhow::anyhow!("Error {doing}: {}", describe_api_error(&err))
}

/// The server's sentence, or for a connection failure the address and the root cause
/// ("Connection refused"), not reqwest's whole chain.
pub fn describe_api_error(err: &ApiError) -> String {
    match err {
        ApiError::Status { status, message } if message.is_empty() => status.to_string(),
        ApiError::Connect { addr, source } => {
            let mut cause: &dyn std::error::Error = source;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("cannot reach {addr}: {cause}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn kv_aligns_keys_on_the_longest() {
        let out = kv(&[
            ("ID", "1234abcd"),
            ("Job Version", "0"),
            ("Status", "running"),
        ]);
        assert_eq!(
            out,
            "ID          = 1234abcd\nJob Version = 0\nStatus      = running"
        );
    }

    #[test]
    fn kv_leaves_no_trailing_space_for_empty_values() {
        assert_eq!(kv(&[("A", ""), ("Bb", "x")]), "A  =\nBb = x");
    }

    #[test]
    fn table_has_two_space_gaps_and_no_borders() {
        let out = table(
            &["ID", "Status"],
            vec![
                vec!["abc".into(), "running".into()],
                vec!["abcdefgh".into(), "dead".into()],
            ],
        );
        assert_eq!(out, "ID        Status\nabc       running\nabcdefgh  dead");
    }

    #[test]
    fn relative_time_uses_two_largest_units() {
        let now = 1_700_000_000 * S;
        assert_eq!(relative_time(now, now), "0s ago");
        assert_eq!(relative_time(now - 10 * S, now), "10s ago");
        assert_eq!(relative_time(now - 68 * S, now), "1m8s ago");
        assert_eq!(relative_time(now - 3 * 3600 * S, now), "3h ago");
        assert_eq!(relative_time(now - (3 * 3600 + 65) * S, now), "3h1m ago");
        assert_eq!(
            relative_time(now - (2 * 86_400 + 4 * 3600) * S, now),
            "2d4h ago"
        );
        assert_eq!(relative_time(now + 5 * S, now), "5s from now");
    }

    #[test]
    fn relative_time_rounds_to_seconds() {
        let now = 1_700_000_000 * S;
        assert_eq!(relative_time(now - S / 3, now), "0s ago");
        assert_eq!(relative_time(now - 14 * S / 10, now), "1s ago");
    }

    #[test]
    fn unset_times_print_nothing() {
        assert_eq!(relative_time(0, 5 * S), "");
        assert_eq!(rfc3339(0), "");
    }

    #[test]
    fn utc_timestamps_are_rfc3339() {
        assert_eq!(rfc3339_utc(1_700_000_000 * S), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn short_ids_unless_verbose() {
        let full = "0af996ed-1234-5678-9abc-def012345678";
        assert_eq!(id(full, false), "0af996ed");
        assert_eq!(id(full, true), full);
        assert_eq!(id("abc", false), "abc");
    }

    #[test]
    fn status_errors_read_as_sentences() {
        let e = api_error(
            "querying job",
            ApiError::Status {
                status: 404,
                message: "job not found".into(),
            },
        );
        assert_eq!(e.to_string(), "Error querying job: 404: job not found");
    }
}
