//! The client's health verdict on an allocation, for the drainer and deployments.
//!
//! With `health_check = "checks"` (the default) and service checks in the group, every
//! check must pass as well; `"task_states"` looks at the tasks only; `"manual"` leaves
//! the verdict to the operator (the client gives none).

use super::AllocRunner;
use crate::events;
use api::TASK_STATE_DEAD;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The client's health verdict on an allocation (for the drainer and deployments):
/// healthy once every task that must keep running has run continuously for
/// `min_healthy_time`; unhealthy if one fails first or `healthy_deadline` passes.
#[derive(Debug)]
pub(super) struct HealthTracker {
    /// Judged only for long-running jobs (service, system).
    enabled: bool,
    min_healthy: Duration,
    deadline: Instant,
    /// Since when each task has been running without a restart.
    running_since: BTreeMap<String, Instant>,
    /// The service checks must pass too.
    checks: bool,
}

impl HealthTracker {
    /// Not judging (until the runner knows its job and group).
    pub(super) fn disabled() -> Self {
        HealthTracker {
            enabled: false,
            min_healthy: Duration::ZERO,
            deadline: Instant::now(),
            running_since: BTreeMap::new(),
            checks: false,
        }
    }

    /// The tracker of `group`'s allocation; `has_checks`: the group's services have
    /// checks that count for health.
    pub(super) fn new(job: &api::Job, group: &api::TaskGroup, has_checks: bool) -> Self {
        let pick = |m: Option<i64>, u: Option<i64>, default: Duration| {
            m.filter(|n| *n > 0)
                .or(u.filter(|n| *n > 0))
                .map(|n| Duration::from_nanos(n as u64))
                .unwrap_or(default)
        };
        let min_healthy = pick(
            group.migrate.as_ref().map(|m| m.min_healthy_time),
            group.update.as_ref().map(|u| u.min_healthy_time),
            Duration::from_secs(10),
        );
        let deadline = pick(
            group.migrate.as_ref().map(|m| m.healthy_deadline),
            group.update.as_ref().map(|u| u.healthy_deadline),
            Duration::from_secs(300),
        );
        // `health_check = "manual"`: the operator gives the verdict
        // (`/v1/deployment/allocation-health`), never the client.
        let manual = group
            .update
            .as_ref()
            .is_some_and(|u| u.health_check == "manual");
        HealthTracker {
            enabled: !manual
                && matches!(
                    job.job_type.as_str(),
                    api::JOB_TYPE_SERVICE | api::JOB_TYPE_SYSTEM
                ),
            min_healthy,
            deadline: Instant::now() + deadline,
            running_since: BTreeMap::new(),
            checks: has_checks && uses_checks(group),
        }
    }

    /// After an agent restart we cannot know for how long the running tasks have run:
    /// count from now.
    pub(super) fn count_running_from_now(
        &mut self,
        tasks: &BTreeMap<String, crate::state::LocalTaskState>,
    ) {
        for (name, t) in tasks {
            if t.state.state == api::TASK_STATE_RUNNING {
                self.running_since.insert(name.clone(), Instant::now());
            }
        }
    }

    /// Notes a task's new state: a task that stopped running or restarted starts its
    /// `min_healthy_time` again.
    pub(super) fn task_changed(&mut self, name: &str, running: bool, restarted: bool) {
        if !running || restarted {
            self.running_since.remove(name);
        }
        if running {
            self.running_since
                .entry(name.to_string())
                .or_insert_with(Instant::now);
        }
    }
}

/// Whether the group's health is judged with its checks: `health_check = "checks"`
/// (Nomad's default) in its update block, or in its migrate block when it has none.
fn uses_checks(group: &api::TaskGroup) -> bool {
    let mode = group
        .update
        .as_ref()
        .map(|u| u.health_check.as_str())
        .filter(|m| !m.is_empty())
        .or_else(|| group.migrate.as_ref().map(|m| m.health_check.as_str()))
        .unwrap_or("");
    mode.is_empty() || mode == "checks"
}

impl AllocRunner {
    /// Whether the checks the verdict waits for pass (true when it waits for none).
    fn checks_pass(&self) -> bool {
        !self.health.checks || self.services.checks_healthy()
    }

    /// When the health verdict may change by itself next (min_healthy_time reached or the
    /// deadline passed); `None` when decided or not judged.
    pub(super) fn next_health_check(&self) -> Option<Instant> {
        if !self.health.enabled || self.health_decided() {
            return None;
        }
        let ready = self
            .health
            .running_since
            .values()
            .map(|since| *since + self.health.min_healthy)
            .max()
            // Failing checks: their next result, not the clock, may change the verdict.
            .filter(|_| self.checks_pass());
        Some(match ready {
            Some(r) => r.min(self.health.deadline),
            None => self.health.deadline,
        })
    }

    fn health_decided(&self) -> bool {
        self.local
            .alloc
            .deployment_status
            .as_ref()
            .is_some_and(|d| d.healthy.is_some())
    }

    /// Decides the alloc's health if it can be decided now; true if it just was.
    pub(super) fn judge_health(&mut self) -> bool {
        // An alloc the servers stop is neither healthy nor unhealthy.
        if !self.health.enabled || self.health_decided() || self.local.alloc.desired_stop() {
            return false;
        }
        let now = Instant::now();
        let mut verdict = None;
        let mut all_ready = true;
        for (name, role) in &self.roles {
            if !role.must_be_healthy() {
                continue;
            }
            let Some(t) = self.local.tasks.get(name) else {
                all_ready = false;
                continue;
            };
            if t.state.failed || t.state.state == TASK_STATE_DEAD {
                verdict = Some(false);
                break;
            }
            match self.health.running_since.get(name) {
                Some(since) if now >= *since + self.health.min_healthy => {}
                _ => all_ready = false,
            }
        }
        if verdict.is_none() {
            if all_ready && self.checks_pass() {
                verdict = Some(true);
            } else if now >= self.health.deadline {
                verdict = Some(false);
            }
        }
        let Some(healthy) = verdict else {
            return false;
        };
        tracing::info!(alloc = %self.alloc_id(), healthy, "allocation health decided");
        let ds = self
            .local
            .alloc
            .deployment_status
            .get_or_insert_with(Default::default);
        ds.healthy = Some(healthy);
        ds.timestamp = events::now_nanos();
        true
    }
}
