//! Checking cron expressions (`periodic { cron = "..." }`) the way Nomad's cron library
//! reads them: 5 fields (minute hour day-of-month month day-of-week), 6 (plus a year) or
//! 7 (a leading seconds field too), or one of the `@hourly`-style shorthands.
//!
//! Each field is a comma list of `*`, `?`, `N`, `N-M`, with an optional `/step`; months
//! and weekdays also take names (`JAN`, `mon`). Day-of-month takes `L` and `NW`, and
//! day-of-week `NL` and `N#K`, as Quartz-style crons do. Only syntax and ranges are
//! checked; when the schedule fires is the server's business.

/// One field of a cron expression: its name, range and accepted names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECONDS: Field = Field {
    name: "seconds",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};
const YEAR: Field = Field {
    name: "year",
    min: 1970,
    max: 2099,
    names: &[],
};

const SHORTHANDS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a cron expression; the error is a sentence naming the field at fault.
pub fn check(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return if SHORTHANDS.contains(&expr.to_ascii_lowercase().as_str()) {
            Ok(())
        } else {
            Err(format!(
                "unknown shorthand {expr:?} (expected one of: {})",
                SHORTHANDS.join(", ")
            ))
        };
    }
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let fields: &[&Field] = match parts.len() {
        5 => &[&MINUTES, &HOURS, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
        6 => &[&MINUTES, &HOURS, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK, &YEAR],
        7 => &[
            &SECONDS,
            &MINUTES,
            &HOURS,
            &DAY_OF_MONTH,
            &MONTH,
            &DAY_OF_WEEK,
            &YEAR,
        ],
        n => {
            return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month \
                 day-of-week), 6 with a year or 7 with seconds too; {expr:?} has {n}"
            ))
        }
    };
    for (i, (part, field)) in parts.iter().zip(fields).enumerate() {
        check_field(part, field)
            .map_err(|m| format!("field {} ({}) {part:?}: {m}", i + 1, field.name))?;
    }
    Ok(())
}

fn check_field(text: &str, f: &Field) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty item in a list".into());
        }
        check_item(item, f)?;
    }
    Ok(())
}

fn check_item(item: &str, f: &Field) -> Result<(), String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    if let Some(step) = step {
        let n: u32 = step
            .parse()
            .map_err(|_| format!("step {step:?} is not a number"))?;
        if n == 0 || n > f.max {
            return Err(format!("step {n} must be between 1 and {}", f.max));
        }
    }
    if range == "*" || (range == "?" && matches!(f.name, "day of month" | "day of week")) {
        return Ok(());
    }
    if step.is_none() {
        if let Some(special) = special(range, f) {
            return special;
        }
    }
    match range.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (value(a, f)?, value(b, f)?);
            if a > b {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            Ok(())
        }
        None => value(range, f).map(|_| ()),
    }
}

/// Quartz-style specials: `L` and `15W` in day-of-month, `5L` and `1#3` in day-of-week.
fn special(item: &str, f: &Field) -> Option<Result<(), String>> {
    let upper = item.to_ascii_uppercase();
    match f.name {
        "day of month" if upper == "L" || upper == "LW" => Some(Ok(())),
        "day of month" => upper.strip_suffix('W').map(|d| value(d, f).map(|_| ())),
        "day of week" => {
            if let Some(d) = upper.strip_suffix('L') {
                return Some(value(d, f).map(|_| ()));
            }
            let (d, nth) = upper.split_once('#')?;
            Some(value(d, f).and_then(|_| match nth.parse::<u32>() {
                Ok(1..=5) => Ok(()),
                _ => Err(format!("{nth:?} after # must be 1 to 5")),
            }))
        }
        _ => None,
    }
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    if let Some(i) = f.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + f.min);
    }
    let n: u32 = text.parse().map_err(|_| {
        if f.names.is_empty() {
            format!("{text:?} is not a number")
        } else {
            format!(
                "{text:?} is not a number or a name ({})",
                f.names.join(", ")
            )
        }
    })?;
    if n < f.min || n > f.max {
        return Err(format!("{n} is out of range {}-{}", f.min, f.max));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn valid_expressions_pass() {
        for e in [
            "13 13 31 1 7",
            "*/15 * * * *",
            "0 9-17/2 * * MON-FRI",
            "0 0 1,15 jan,jul ?",
            "0 0 L * *",
            "0 0 ? * 5L",
            "0 0 ? * 1#3",
            "30 2 * * * 2030",
            "0 30 2 * * * *",
            "@daily",
            "@HOURLY",
        ] {
            assert_eq!(check(e), Ok(()), "{e}");
        }
    }

    #[test]
    fn invalid_expressions_name_the_field() {
        let cases = [
            ("* * *", "has 3"),
            (
                "61 * * * *",
                "field 1 (minutes) \"61\": 61 is out of range 0-59",
            ),
            (
                "0 0 32 * *",
                "field 3 (day of month) \"32\": 32 is out of range 1-31",
            ),
            (
                "0 0 * FOO *",
                "field 4 (month) \"FOO\": \"FOO\" is not a number or a name",
            ),
            ("*/0 * * * *", "step 0 must be between 1 and 59"),
            ("0 5-2 * * *", "range 5-2 runs backwards"),
            ("0 0 * * 1#6", "\"6\" after # must be 1 to 5"),
            ("0 0 1,,2 * *", "empty item"),
            ("@sometimes", "unknown shorthand"),
        ];
        for (e, want) in cases {
            let got = check(e).unwrap_err();
            assert!(got.contains(want), "{e}: {got}");
        }
    }
}
