//! The restart policy as a pure decision: given how a task ended, the policy and the
//! restarts counted so far, restart it (after how long) or not (and whether it failed).
//!
//! Nomad's semantics: a batch or sysbatch task that exits 0 is complete and never
//! restarted; any other exit (a service task exiting, even with 0) counts one attempt.
//! At most `attempts` restarts happen within `interval`; past that, mode `fail` marks the
//! task failed and mode `delay` waits until the interval is over and starts counting anew.
//! A start error the driver calls unrecoverable fails the task at once.

use crate::driver::ExitResult;
use api::{RestartPolicy, JOB_TYPE_BATCH, JOB_TYPE_SYSBATCH};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const REASON_WITHIN_POLICY: &str = "Restart within policy";
pub const REASON_DELAY: &str = "Exceeded allowed attempts, applying a delay";
pub const REASON_NO_RESTARTS: &str = "Policy allows no restarts";
pub const REASON_UNRECOVERABLE: &str = "Error was unrecoverable";

/// Restarts counted in the current interval; persisted with the task's local state so an
/// agent restart does not reset it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartTracker {
    pub count: i64,
    /// Unix nanoseconds at which the current interval began; 0 before the first restart.
    pub window_start: i64,
}

/// How a run of the task ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Exited(&'a ExitResult),
    StartFailed { recoverable: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Restart {
        delay: Duration,
        reason: &'static str,
    },
    /// Stay dead. `reason` is empty when the task simply completed.
    NoRestart { failed: bool, reason: String },
}

/// Go's duration format (`30m0s`, `1h0m0s`, `15s`), as Nomad prints durations in events.
pub fn go_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    let h = total_ms / 3_600_000;
    let m = (total_ms / 60_000) % 60;
    let ms = total_ms % 60_000;
    let secs = if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", (ms as f64 / 1000.0))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

fn nanos(n: i64) -> Duration {
    Duration::from_nanos(n.max(0) as u64)
}

/// Decides what happens after `outcome`, counting the restart in `tracker`.
pub fn decide(
    policy: &RestartPolicy,
    job_type: &str,
    outcome: Outcome<'_>,
    tracker: &mut RestartTracker,
    now: i64,
) -> Decision {
    match outcome {
        Outcome::Exited(res)
            if res.successful() && matches!(job_type, JOB_TYPE_BATCH | JOB_TYPE_SYSBATCH) =>
        {
            return Decision::NoRestart {
                failed: false,
                reason: String::new(),
            }
        }
        Outcome::StartFailed { recoverable: false } => {
            return Decision::NoRestart {
                failed: true,
                reason: REASON_UNRECOVERABLE.into(),
            }
        }
        _ => {}
    }
    let window_over = policy.interval > 0 && now - tracker.window_start > policy.interval;
    if tracker.window_start == 0 || window_over {
        tracker.count = 0;
        tracker.window_start = now;
    }
    tracker.count += 1;
    if tracker.count <= policy.attempts {
        return Decision::Restart {
            delay: nanos(policy.delay),
            reason: REASON_WITHIN_POLICY,
        };
    }
    if policy.mode == "delay" {
        let until_window_end = tracker.window_start + policy.interval - now;
        return Decision::Restart {
            delay: nanos(until_window_end.max(policy.delay)),
            reason: REASON_DELAY,
        };
    }
    let reason = if policy.attempts == 0 {
        REASON_NO_RESTARTS.to_string()
    } else {
        format!(
            "Exceeded allowed attempts {} in interval {} and mode is \"{}\"",
            policy.attempts,
            go_duration(nanos(policy.interval)),
            if policy.mode.is_empty() {
                "fail"
            } else {
                &policy.mode
            }
        )
    };
    Decision::NoRestart {
        failed: true,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{secs, JOB_TYPE_SERVICE};

    fn policy(attempts: i64, interval_s: i64, delay_s: i64, mode: &str) -> RestartPolicy {
        RestartPolicy {
            attempts,
            interval: secs(interval_s),
            delay: secs(delay_s),
            mode: mode.into(),
            render_templates: false,
        }
    }

    fn exit(code: i64) -> ExitResult {
        ExitResult {
            exit_code: code,
            ..Default::default()
        }
    }

    /// What `decide` says after a run of a `job_type` task that exited with `code`.
    fn exited(
        p: &RestartPolicy,
        job_type: &str,
        code: i64,
        t: &mut RestartTracker,
        now: i64,
    ) -> Decision {
        decide(p, job_type, Outcome::Exited(&exit(code)), t, now)
    }

    #[test]
    fn batch_success_completes_without_restart() {
        let mut t = RestartTracker::default();
        let d = exited(
            &policy(3, 60, 1, "fail"),
            JOB_TYPE_BATCH,
            0,
            &mut t,
            secs(1000),
        );
        assert_eq!(
            d,
            Decision::NoRestart {
                failed: false,
                reason: String::new()
            }
        );
        assert_eq!(t.count, 0);
    }

    #[test]
    fn service_exit_zero_is_restarted() {
        let mut t = RestartTracker::default();
        let d = exited(
            &policy(2, 60, 15, "fail"),
            JOB_TYPE_SERVICE,
            0,
            &mut t,
            secs(1000),
        );
        assert_eq!(
            d,
            Decision::Restart {
                delay: Duration::from_secs(15),
                reason: REASON_WITHIN_POLICY
            }
        );
    }

    #[test]
    fn fail_mode_fails_after_attempts_within_interval() {
        let p = policy(2, 1800, 15, "fail");
        let mut t = RestartTracker::default();
        let now = secs(10_000);
        for i in 0..2 {
            let d = exited(&p, JOB_TYPE_SERVICE, 1, &mut t, now + secs(i));
            assert!(matches!(d, Decision::Restart { .. }), "attempt {i}: {d:?}");
        }
        let d = exited(&p, JOB_TYPE_SERVICE, 1, &mut t, now + secs(5));
        assert_eq!(
            d,
            Decision::NoRestart {
                failed: true,
                reason: "Exceeded allowed attempts 2 in interval 30m0s and mode is \"fail\"".into()
            }
        );
    }

    #[test]
    fn attempts_reset_once_the_interval_is_over() {
        let p = policy(1, 60, 1, "fail");
        let mut t = RestartTracker::default();
        let now = secs(10_000);
        assert!(matches!(
            exited(&p, JOB_TYPE_BATCH, 1, &mut t, now),
            Decision::Restart { .. }
        ));
        // A second failure 61s later is in a new interval: allowed again.
        assert!(matches!(
            exited(&p, JOB_TYPE_BATCH, 1, &mut t, now + secs(61)),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            exited(&p, JOB_TYPE_BATCH, 1, &mut t, now + secs(62)),
            Decision::NoRestart { failed: true, .. }
        ));
    }

    #[test]
    fn delay_mode_waits_out_the_interval() {
        let p = policy(1, 60, 2, "delay");
        let mut t = RestartTracker::default();
        let now = secs(10_000);
        exited(&p, JOB_TYPE_SERVICE, 1, &mut t, now);
        let d = exited(&p, JOB_TYPE_SERVICE, 1, &mut t, now + secs(20));
        assert_eq!(
            d,
            Decision::Restart {
                delay: Duration::from_secs(40),
                reason: REASON_DELAY
            }
        );
        // After the wait the count starts over.
        let d = exited(&p, JOB_TYPE_SERVICE, 1, &mut t, now + secs(61));
        assert_eq!(
            d,
            Decision::Restart {
                delay: Duration::from_secs(2),
                reason: REASON_WITHIN_POLICY
            }
        );
    }

    #[test]
    fn zero_attempts_and_unrecoverable_errors_fail_at_once() {
        let mut t = RestartTracker::default();
        let d = exited(
            &policy(0, 60, 1, "fail"),
            JOB_TYPE_SERVICE,
            1,
            &mut t,
            secs(5),
        );
        assert_eq!(
            d,
            Decision::NoRestart {
                failed: true,
                reason: REASON_NO_RESTARTS.into()
            }
        );
        let d = decide(
            &policy(5, 60, 1, "fail"),
            JOB_TYPE_SERVICE,
            Outcome::StartFailed { recoverable: false },
            &mut RestartTracker::default(),
            secs(5),
        );
        assert_eq!(
            d,
            Decision::NoRestart {
                failed: true,
                reason: REASON_UNRECOVERABLE.into()
            }
        );
        assert!(matches!(
            decide(
                &policy(5, 60, 1, "fail"),
                JOB_TYPE_SERVICE,
                Outcome::StartFailed { recoverable: true },
                &mut RestartTracker::default(),
                secs(5),
            ),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn go_durations_print_like_nomad() {
        assert_eq!(go_duration(Duration::from_secs(1800)), "30m0s");
        assert_eq!(go_duration(Duration::from_secs(86400)), "24h0m0s");
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
