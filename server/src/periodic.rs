//! The periodic launcher (leader only, beside the drainer): a registered periodic job is a
//! template; at each time its cron schedule names, the leader writes a child job
//! `<parent>/periodic-<unix seconds>` and its evaluation in one `RegisterJob` entry.
//!
//! Everything is derived from state: the last launch is the newest child's launch time
//! (from its id), or the template's submit time when it has none, so a new leader neither
//! skips nor doubles a launch (a launch written twice has the same id and changes nothing).

use crate::fsm::Command;
use crate::state::StateStore;
use crate::{now_nanos, Server};
use api::{Evaluation, Job};
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use std::sync::Arc;

pub const TRIGGER_PERIODIC: &str = "periodic-job";
const PERIODIC_SUFFIX: &str = "/periodic-";

/// A job that is a template: periodic or parameterized, not itself a child.
pub fn is_template(job: &Job) -> bool {
    job.parent_id.is_empty() && (job.periodic.is_some() || job.parameterized_job.is_some())
}

/// One launch pass: every enabled periodic template whose next launch is due gets a child.
pub async fn run_once(server: &Arc<Server>) {
    let state = server.snapshot();
    let now = now_nanos();
    for job in state.job_table().values() {
        let Some(launch) = due_launch(&state, job, now / 1_000_000_000) else {
            continue;
        };
        if let Err(e) = launch_child(server, job, launch, now).await {
            tracing::warn!(job = %job.id, error = %e, "periodic launch failed");
        }
    }
}

/// The launch (unix seconds) due for `job` at `now_secs`, if any: the latest schedule time
/// after the last launch that is not in the future, unless overlap is prohibited and a
/// child still runs.
pub fn due_launch(state: &StateStore, job: &Job, now_secs: i64) -> Option<i64> {
    let p = job.periodic.as_ref()?;
    if !p.enabled || job.stop || !job.parent_id.is_empty() {
        return None;
    }
    let children = children(state, job);
    let last = children
        .iter()
        .filter_map(|c| launch_time(&job.id, &c.id))
        .max()
        .unwrap_or(job.submit_time / 1_000_000_000);
    let mut due = None;
    let mut after = last;
    // Catch up on missed launches with one child, the latest (bounded work per pass).
    for _ in 0..10_000 {
        match next_launch(p, after) {
            Ok(Some(t)) if t <= now_secs => {
                due = Some(t);
                after = t;
            }
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "periodic schedule not usable");
                return None;
            }
        }
    }
    let due = due?;
    if p.prohibit_overlap {
        if children.iter().any(|c| child_running(c)) {
            return None;
        }
        // Nomad skips the launches that fell due while a child still ran: the next one is
        // the first schedule time after the newest child finished (its allocations' last
        // change), not a late launch for a time that passed during the run.
        let newest = children
            .iter()
            .max_by_key(|c| launch_time(&job.id, &c.id).unwrap_or(i64::MIN));
        let finished_ns = newest
            .and_then(|c| {
                let allocs = state.allocs_for_job(c.ns(), &c.id);
                allocs.iter().map(|a| a.modify_time).max()
            })
            .unwrap_or(0);
        if i128::from(due) * 1_000_000_000 < i128::from(finished_ns) {
            return None;
        }
    }
    Some(due)
}

/// The job's children: their IDs are `<parent>/...`, one range of the ordered job table
/// rather than a scan of every job on each launcher pass.
fn children(state: &StateStore, job: &Job) -> Vec<Arc<Job>> {
    let ns = job.ns().to_string();
    // '0' is the character after '/': the range holds exactly the IDs under `<parent>/`.
    let from = (ns.clone(), format!("{}/", job.id));
    let to = (ns, format!("{}0", job.id));
    state
        .job_table()
        .range(from..to)
        .map(|(_, c)| c)
        .filter(|c| c.parent_id == job.id)
        .cloned()
        .collect()
}

/// A child that has not finished: not stopped and not dead.
pub fn child_running(c: &Job) -> bool {
    !c.stop && c.status != api::JOB_STATUS_DEAD
}

/// The launch time a periodic child's id carries.
fn launch_time(parent: &str, child: &str) -> Option<i64> {
    child
        .strip_prefix(parent)?
        .strip_prefix(PERIODIC_SUFFIX)?
        .parse()
        .ok()
}

/// The child `job` launched at `launch` (unix seconds) would be.
pub fn periodic_child(job: &Job, launch: i64) -> Job {
    let mut child = job.clone();
    child.id = format!("{}{PERIODIC_SUFFIX}{launch}", job.id);
    child.name = child.id.clone();
    child.parent_id = job.id.clone();
    child.periodic = None;
    child.status.clear();
    child.stable = false;
    child
}

/// Write the child launched at `launch` with its evaluation: one entry.
pub async fn launch_child(
    server: &Server,
    job: &Job,
    launch: i64,
    now: i64,
) -> Result<(crate::fsm::Response, String), crate::WriteError> {
    let child = periodic_child(job, launch);
    let eval = Evaluation::new_for_job(&child, TRIGGER_PERIODIC, now, api::new_id());
    let eval_id = eval.id.clone();
    tracing::info!(job = %job.id, child = %child.id, "periodic launch");
    let resp = server
        .write(Command::RegisterJob {
            job: child,
            eval: Some(eval),
            now,
        })
        .await?;
    Ok((resp, eval_id))
}

/// The first launch strictly after `after` (unix seconds) for any of the job's cron
/// expressions, in its `time_zone` (an IANA name through `chrono-tz`, `Local`, a fixed
/// offset; UTC when empty). `Err` for what cannot be computed.
pub fn next_launch(p: &api::PeriodicConfig, after: i64) -> Result<Option<i64>, String> {
    let specs: Vec<&str> = if p.specs.is_empty() {
        vec![p.spec.as_str()]
    } else {
        p.specs.iter().map(|s| s.as_str()).collect()
    };
    let mut best: Option<i64> = None;
    for spec in specs {
        let cron = Cron::parse(spec)?;
        let next = match p.time_zone.as_str() {
            "" | "UTC" | "Etc/UTC" => cron.next_after(&Utc, after),
            "Local" => cron.next_after(&chrono::Local, after),
            tz => match (tz.parse::<chrono_tz::Tz>(), parse_offset(tz)) {
                (Ok(zone), _) => cron.next_after(&zone, after),
                (_, Some(off)) => cron.next_after(&off, after),
                _ => return Err(format!("unknown time zone {tz:?}")),
            },
        };
        if let Some(n) = next {
            best = Some(best.map_or(n, |b: i64| b.min(n)));
        }
    }
    Ok(best)
}

fn parse_offset(tz: &str) -> Option<chrono::FixedOffset> {
    let (sign, rest) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    chrono::FixedOffset::east_opt(sign * secs)
}

/// A parsed cron expression: the allowed values of each field as bit sets.
#[derive(Debug)]
struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    dom_any: bool,
    dow_any: bool,
    years: Option<(i32, i32, u32)>,
}

impl Cron {
    fn parse(expr: &str) -> Result<Cron, String> {
        jobspecs::cron::check(expr)?;
        let expr = expr.trim();
        let expanded = match expr.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".into(),
            "@weekly" => "0 0 * * 0".into(),
            "@daily" | "@midnight" => "0 0 * * *".into(),
            "@hourly" => "0 * * * *".into(),
            _ => expr.to_string(),
        };
        let mut parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() < 7 {
            parts.insert(0, "0");
        }
        let year = parts.get(6).copied().unwrap_or("*");
        let years = if year == "*" {
            None
        } else {
            let (a, b) = year.split_once('-').unwrap_or((year, year));
            let a: i32 = a.parse().map_err(|_| unsupported(year))?;
            let b: i32 = b.parse().map_err(|_| unsupported(year))?;
            Some((a, b, 1))
        };
        const MONTHS: &[&str] = &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        let mut dow = bits(parts[5], 0, 7, DAYS)?;
        if dow & (1 << 7) != 0 {
            dow |= 1;
        }
        Ok(Cron {
            seconds: bits(parts[0], 0, 59, &[])?,
            minutes: bits(parts[1], 0, 59, &[])?,
            hours: bits(parts[2], 0, 23, &[])?,
            dom: bits(parts[3], 1, 31, &[])?,
            months: bits(parts[4], 1, 12, MONTHS)?,
            dow,
            dom_any: matches!(parts[3], "*" | "?"),
            dow_any: matches!(parts[5], "*" | "?"),
            years,
        })
    }

    fn day_matches(&self, d: &NaiveDateTime) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first matching second strictly after `after`, searched in local wall time of `tz`.
    fn next_after<Z: TimeZone>(&self, tz: &Z, after: i64) -> Option<i64> {
        let start = DateTime::from_timestamp(after + 1, 0)?.with_timezone(tz);
        let mut t = start.naive_local();
        let limit = t.year() + 5;
        while t.year() <= limit {
            if let Some((a, b, _)) = self.years {
                if t.year() < a {
                    t = date_start(t.year() + 1, 1, 1)?;
                    continue;
                }
                if t.year() > b {
                    return None;
                }
            }
            if self.months & (1 << t.month()) == 0 {
                t = if t.month() == 12 {
                    date_start(t.year() + 1, 1, 1)?
                } else {
                    date_start(t.year(), t.month() + 1, 1)?
                };
                continue;
            }
            if !self.day_matches(&t) {
                t = (t.date() + chrono::Days::new(1)).and_hms_opt(0, 0, 0)?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.with_minute(0)?.with_second(0)? + chrono::Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.with_second(0)? + chrono::Duration::minutes(1);
                continue;
            }
            if self.seconds & (1 << t.second()) == 0 {
                t += chrono::Duration::seconds(1);
                continue;
            }
            // A wall time skipped by a DST change does not exist; try the next one.
            if let Some(at) = tz.from_local_datetime(&t).earliest() {
                let secs = at.timestamp();
                if secs > after {
                    return Some(secs);
                }
            }
            t += chrono::Duration::seconds(1);
        }
        None
    }
}

fn date_start(y: i32, m: u32, d: u32) -> Option<NaiveDateTime> {
    chrono::NaiveDate::from_ymd_opt(y, m, d)?.and_hms_opt(0, 0, 0)
}

fn unsupported(item: &str) -> String {
    format!("cron item {item:?} is not supported by Drover's launcher yet")
}

/// A field's allowed values as a bit set (bit n = value n).
fn bits(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        s.parse().map_err(|_| unsupported(s))
    };
    let mut out = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| unsupported(item))?),
            None => (item, 1),
        };
        let (a, b) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            (a, if step > 1 { max } else { a })
        };
        let mut v = a;
        while v <= b {
            out |= 1 << v;
            v += step.max(1);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(spec: &str, tz: &str) -> api::PeriodicConfig {
        api::PeriodicConfig {
            enabled: true,
            spec: spec.into(),
            time_zone: tz.into(),
            ..Default::default()
        }
    }

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn next_launch_utc_and_offsets() {
        let t = at("2026-03-10T10:15:30Z");
        let n = |spec: &str, tz: &str| next_launch(&cfg(spec, tz), t).unwrap().unwrap();
        assert_eq!(n("*/5 * * * *", ""), at("2026-03-10T10:20:00Z"));
        assert_eq!(n("0 3 * * *", "UTC"), at("2026-03-11T03:00:00Z"));
        // 03:00 at +02:00 is 01:00 UTC.
        assert_eq!(n("0 3 * * *", "+02:00"), at("2026-03-11T01:00:00Z"));
        assert_eq!(n("0 3 * * *", "-05:00"), at("2026-03-11T08:00:00Z"));
        assert_eq!(n("@hourly", ""), at("2026-03-10T11:00:00Z"));
        assert_eq!(n("0 0 1 * *", ""), at("2026-04-01T00:00:00Z"));
        // 2026-03-10 is a Tuesday; the next Monday is the 16th.
        assert_eq!(n("30 9 * * MON", ""), at("2026-03-16T09:30:00Z"));
        // A leading seconds field (7 fields).
        assert_eq!(n("*/10 * * * * * *", ""), at("2026-03-10T10:15:40Z"));
        let both = api::PeriodicConfig {
            specs: vec!["0 12 * * *".into(), "0 11 * * *".into()],
            ..cfg("", "")
        };
        assert_eq!(
            next_launch(&both, t).unwrap(),
            Some(at("2026-03-10T11:00:00Z"))
        );
        assert!(next_launch(&cfg("* * * * *", "Mars/Olympus"), t).is_err());
        // IANA zones, daylight saving included: Paris is UTC+1 in March before the 29th,
        // UTC+2 after; New York is UTC-4 from March 8th 2026.
        assert_eq!(n("0 3 * * *", "Europe/Paris"), at("2026-03-11T02:00:00Z"));
        let april = at("2026-04-10T10:00:00Z");
        assert_eq!(
            next_launch(&cfg("0 3 * * *", "Europe/Paris"), april).unwrap(),
            Some(at("2026-04-11T01:00:00Z"))
        );
        assert_eq!(
            n("30 8 * * *", "America/New_York"),
            at("2026-03-10T12:30:00Z")
        );
        // 02:30 does not exist in Paris on 2026-03-29 (clocks jump 02:00 -> 03:00).
        let before = at("2026-03-28T12:00:00Z");
        assert_eq!(
            next_launch(&cfg("30 2 * * *", "Europe/Paris"), before).unwrap(),
            Some(at("2026-03-30T00:30:00Z"))
        );
    }

    #[test]
    fn due_launch_and_overlap() {
        use crate::fsm::{apply, Effects};
        let mut state = StateStore::default();
        let mut job = crate::fsm::tests::job("cron", 1);
        job.job_type = api::JOB_TYPE_BATCH.into();
        job.periodic = Some(api::PeriodicConfig {
            prohibit_overlap: true,
            ..cfg("* * * * *", "")
        });
        let reg = |state: &mut StateStore, job: Job, idx: u64| {
            apply(
                state,
                idx,
                Command::RegisterJob {
                    job,
                    eval: None,
                    now: at("2026-03-10T10:00:30Z") * 1_000_000_000,
                },
                &mut Effects::default(),
            );
        };
        reg(&mut state, job.clone(), 1);
        let parent = state.job("default", "cron").unwrap();
        assert_eq!(parent.status, api::JOB_STATUS_RUNNING);
        assert_eq!(
            due_launch(&state, &parent, at("2026-03-10T10:00:59Z")),
            None
        );
        // Missed launches give one child, the latest.
        assert_eq!(
            due_launch(&state, &parent, at("2026-03-10T10:03:10Z")),
            Some(at("2026-03-10T10:03:00Z"))
        );
        // A child that still runs blocks the next launch under prohibit_overlap.
        let mut child = periodic_child(&parent, at("2026-03-10T10:03:00Z"));
        child.status = api::JOB_STATUS_RUNNING.into();
        reg(&mut state, child, 2);
        let c = state.job("default", "cron/periodic-1773136980").unwrap();
        assert!(child_running(&c), "{c:?}");
        assert_eq!(
            due_launch(&state, &parent, at("2026-03-10T10:05:10Z")),
            None
        );
        // Without prohibit_overlap, it launches from the child's time.
        let mut free = (*parent).clone();
        free.periodic.as_mut().unwrap().prohibit_overlap = false;
        assert_eq!(
            due_launch(&state, &free, at("2026-03-10T10:05:10Z")),
            Some(at("2026-03-10T10:05:00Z"))
        );
        free.periodic.as_mut().unwrap().enabled = false;
        assert_eq!(due_launch(&state, &free, at("2026-03-10T10:05:10Z")), None);
    }
}
