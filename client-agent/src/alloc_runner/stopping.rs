//! Stopping an allocation gracefully, as Nomad does: its service instances are
//! deregistered first and the runner waits (a few seconds at most) for the servers to
//! acknowledge it, so nobody is sent to a task about to die; then each task waits the
//! group's `shutdown_delay` plus its own before it is killed. Also where the runner
//! starts its services and takes their check results.

use super::{AllocRunner, Phase};
use crate::events;
use crate::restart::go_duration;
use crate::task_runner::TaskCommand;
use api::{TaskEvent, TASK_STATE_DEAD};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// The longest the runner waits for the servers to acknowledge a deregistration before
/// it goes on killing (the registry keeps retrying in the background).
const DEREGISTER_WAIT: Duration = Duration::from_secs(5);

/// Nomad's event type for a task waiting out its `shutdown_delay`.
pub const WAITING_SHUTDOWN_DELAY: &str = "Waiting for shutdown delay";

/// A graceful stop in progress.
#[derive(Default)]
pub(super) struct GracefulStop {
    /// Waiting for the servers to acknowledge the deregistration (bounded).
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// When each task is to be killed, with the event recorded when its wait began.
    kill_at: BTreeMap<String, (Instant, Option<TaskEvent>)>,
}

impl GracefulStop {
    fn in_progress(&self) -> bool {
        self.wait.is_some() || !self.kill_at.is_empty()
    }

    pub(super) fn deregistering(&self) -> bool {
        self.wait.is_some()
    }

    /// Resolves once the deregistration was acknowledged or waited for long enough.
    pub(super) async fn deregistered(&mut self) {
        match self.wait.as_mut() {
            Some(w) => w.await,
            None => std::future::pending().await,
        }
    }

    /// When the next task is due to be killed.
    pub(super) fn next_kill(&self) -> Option<Instant> {
        self.kill_at.values().map(|(at, _)| *at).min()
    }
}

fn nanos(n: Option<i64>) -> Duration {
    Duration::from_nanos(n.unwrap_or(0).max(0) as u64)
}

impl AllocRunner {
    /// Plans the group's services and starts their checks; a restored allocation re-sends
    /// the registrations of its running tasks.
    pub(super) fn start_services(&mut self, restored: bool) {
        if restored {
            let running: Vec<String> = self
                .local
                .tasks
                .iter()
                .filter(|(_, t)| t.state.state == api::TASK_STATE_RUNNING)
                .map(|(n, _)| n.clone())
                .collect();
            self.services.restored(running);
        }
        self.services.start_checks();
    }

    /// Takes a check result: restarts tasks whose `check_restart` limit was reached and
    /// judges the allocation's health again.
    pub(super) fn check_result(&mut self, id: &str, outcome: crate::services::Outcome) {
        for r in self.services.check_result(id, outcome) {
            if self.phase != Phase::Running {
                break;
            }
            if let Some(tx) = self.commands.get(&r.task) {
                let _ = tx.send(TaskCommand::CheckRestart { reason: r.reason });
            }
        }
        if self.judge_health() {
            self.report();
            self.persist();
        }
    }

    /// Moves to `phase` (`Stopping` or `Destroying`) and starts killing the tasks: first
    /// deregister the services and wait for the servers, then `shutdown_delay`. A stop
    /// already in progress goes on (its kills then follow the new phase); tasks already
    /// being killed for another reason are killed at once.
    pub(super) fn stop_gracefully(&mut self, group: &api::TaskGroup, phase: Phase) {
        let was_killing = self.phase.killing();
        self.phase = phase;
        if self.stopping.in_progress() {
            return;
        }
        if was_killing {
            self.kill_all(|_| None, None);
            return;
        }
        self.services.stop();
        let delays = nanos(group.shutdown_delay) > Duration::ZERO
            || group
                .tasks
                .iter()
                .any(|t| nanos(t.shutdown_delay) > Duration::ZERO);
        if !self.services.any() && !delays {
            self.kill_all(|_| None, None);
            return;
        }
        let registry = self.deps.services.clone();
        let alloc = self.alloc_id().to_string();
        let any = self.services.any();
        self.stopping.wait = Some(Box::pin(async move {
            if any
                && tokio::time::timeout(DEREGISTER_WAIT, registry.wait_synced(&alloc))
                    .await
                    .is_err()
            {
                tracing::warn!(alloc = %alloc, "the servers did not acknowledge the deregistration of the allocation's services in time; stopping its tasks anyway");
            }
        }));
    }

    /// The deregistration is done: each running task is killed after the group's
    /// `shutdown_delay` plus its own, the others at once.
    pub(super) fn deregistered(&mut self, group: &api::TaskGroup) {
        self.stopping.wait = None;
        let now = Instant::now();
        let group_delay = nanos(group.shutdown_delay);
        for t in &group.tasks {
            let state = self
                .local
                .tasks
                .get(&t.name)
                .map(|s| s.state.state.as_str());
            if state == Some(TASK_STATE_DEAD) {
                continue;
            }
            // A task that does not run (not started yet, or between restarts) serves no
            // one: it is killed at once.
            let delay = if state == Some(api::TASK_STATE_RUNNING) {
                group_delay + nanos(t.shutdown_delay)
            } else {
                Duration::ZERO
            };
            let event = (delay > Duration::ZERO).then(|| {
                events::event(
                    WAITING_SHUTDOWN_DELAY,
                    format!(
                        "Waiting for shutdown_delay of {} before killing the task",
                        go_duration(delay)
                    ),
                )
            });
            if delay > Duration::ZERO {
                tracing::info!(alloc = %self.alloc_id(), task = %t.name, delay = ?delay, "waiting for shutdown_delay before killing the task");
            }
            // A delay too long for the clock is as good as forever: a year.
            let at = now
                .checked_add(delay)
                .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
            self.stopping.kill_at.insert(t.name.clone(), (at, event));
        }
        self.kill_due();
    }

    /// Kills the tasks whose `shutdown_delay` is over.
    pub(super) fn kill_due(&mut self) {
        let now = Instant::now();
        let due: BTreeMap<String, Option<TaskEvent>> = self
            .stopping
            .kill_at
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(n, (_, e))| (n.clone(), e.clone()))
            .collect();
        if due.is_empty() {
            return;
        }
        self.stopping.kill_at.retain(|n, _| !due.contains_key(n));
        self.kill_where(|n| due.get(n).cloned().flatten(), |n| due.contains_key(n));
    }
}
