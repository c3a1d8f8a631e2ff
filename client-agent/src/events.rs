//! Task events with Nomad's names and display messages, and the clock they are stamped with.

use crate::driver::ExitResult;
use api::TaskEvent;
use std::time::Duration;

pub use api::task_event::*;

/// How many events a task keeps (Nomad keeps the last 10).
pub const MAX_EVENTS: usize = 10;

/// Unix nanoseconds now.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Now as RFC 3339, for `StartedAt` / `FinishedAt` / `LastRestart`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub fn event(kind: &str, display: impl AsRef<str>) -> TaskEvent {
    TaskEvent::new(kind, now_nanos(), display)
}

pub fn received() -> TaskEvent {
    event(RECEIVED, RECEIVED_MESSAGE)
}

pub fn setup() -> TaskEvent {
    event(SETUP, SETUP_MESSAGE)
}

pub fn started() -> TaskEvent {
    event(STARTED, STARTED_MESSAGE)
}

pub fn terminated(res: &ExitResult) -> TaskEvent {
    let mut display = format!("Exit Code: {}", res.exit_code);
    if res.signal != 0 {
        display.push_str(&format!(", Signal: {}", res.signal));
    }
    if let Some(err) = &res.err {
        display.push_str(&format!(", Exit Message: {err:?}"));
    }
    if res.oom_killed {
        display.push_str(", OOM Killed");
    }
    let mut e = event(TERMINATED, display);
    e.detail_mut().exit_code = res.exit_code;
    e.detail_mut().signal = res.signal;
    e.detail_mut().message = res.err.clone().unwrap_or_default();
    e.detail_mut()
        .details
        .insert("exit_code".into(), res.exit_code.to_string());
    e.detail_mut()
        .details
        .insert("signal".into(), res.signal.to_string());
    if res.oom_killed {
        e.detail_mut()
            .details
            .insert("oom_killed".into(), "true".into());
    }
    e
}

/// The task went over its memory limit and the kernel killed it; comes just before its
/// Terminated event.
pub fn oom_killed() -> TaskEvent {
    let mut e = event(OOM_KILLED, "OOM Killed");
    e.detail_mut()
        .details
        .insert("oom_killed".into(), "true".into());
    e
}

pub fn restarting(delay: Duration, reason: &str) -> TaskEvent {
    let mut e = event(
        RESTARTING,
        format!("Task restarting in {}", crate::restart::go_duration(delay)),
    );
    e.detail_mut().restart_reason = reason.into();
    e.detail_mut()
        .details
        .insert("start_delay".into(), delay.as_nanos().to_string());
    e
}

pub fn not_restarting(reason: &str, failed: bool) -> TaskEvent {
    let mut e = event(NOT_RESTARTING, reason);
    e.detail_mut().restart_reason = reason.into();
    e.detail_mut().fails_task = failed;
    e
}

pub fn killing(timeout: Duration) -> TaskEvent {
    let mut e = event(
        KILLING,
        format!(
            "Sent interrupt. Waiting {} before force killing",
            crate::restart::go_duration(timeout)
        ),
    );
    e.detail_mut().kill_timeout = timeout.as_nanos() as i64;
    e
}

pub fn killed(err: Option<&str>) -> TaskEvent {
    match err {
        None => event(KILLED, KILLED_MESSAGE),
        Some(err) => {
            let mut e = event(KILLED, format!("Task killed with error: {err}"));
            e.detail_mut().message = err.into();
            e
        }
    }
}

pub fn driver_failure(err: &str) -> TaskEvent {
    let mut e = event(DRIVER_FAILURE, err);
    e.detail_mut().driver_error = err.into();
    e.detail_mut().message = err.into();
    e
}

/// Appends `e` to `events`, dropping the oldest past [`MAX_EVENTS`].
pub fn push(events: &mut Vec<TaskEvent>, e: TaskEvent) {
    events.push(e);
    if events.len() > MAX_EVENTS {
        let extra = events.len() - MAX_EVENTS;
        events.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oom_kill_shows_in_the_terminated_event() {
        let res = ExitResult {
            exit_code: 137,
            signal: 9,
            oom_killed: true,
            ..Default::default()
        };
        let e = terminated(&res);
        assert_eq!(e.display_message, "Exit Code: 137, Signal: 9, OOM Killed");
        assert_eq!(e.detail().details["oom_killed"], "true");
        assert_eq!(oom_killed().event_type, "OOM Killed");
        let plain = terminated(&ExitResult::default());
        assert!(!plain.detail().details.contains_key("oom_killed"));
    }
}
