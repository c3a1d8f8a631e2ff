//! Garbage collection of what no one needs any more (`PUT /v1/system/gc`): the terminal
//! allocations and evaluations of jobs that are stopped, dead or purged, then those jobs
//! themselves, and the deployments of purged jobs. Nomad's core scheduler does the same
//! with its thresholds (evaluations and deployments an hour, jobs four hours).
//!
//! [`plan`] is pure: the leader runs it on a snapshot and writes the result as one
//! `Command::GarbageCollect`, which the FSM re-checks object by object. A running job's
//! history is kept: the scheduler reads its terminal allocations (reschedule tracking,
//! completed batch work).

use crate::state::StateStore;
use std::collections::BTreeSet;
use std::time::Duration;

/// How old a terminal evaluation (and its allocations) must be to go.
pub const EVAL_GC_THRESHOLD: Duration = Duration::from_secs(3600);
/// How old a dead job must be to go.
pub const JOB_GC_THRESHOLD: Duration = Duration::from_secs(4 * 3600);

/// How often the leader collects on its own (Nomad's `job_gc_interval`).
pub const GC_INTERVAL: Duration = Duration::from_secs(300);

/// One pass on the leader's newest state: plan, then one entry if there is anything to
/// remove. `force` ignores the thresholds (`PUT /v1/system/gc`).
pub async fn run_once(server: &crate::Server, force: bool) -> Result<(), crate::WriteError> {
    let state = server.snapshot();
    let plan = plan(&state, crate::now_nanos(), force);
    if plan.is_empty() {
        return Ok(());
    }
    tracing::info!(
        jobs = plan.jobs.len(),
        evals = plan.evals.len(),
        allocs = plan.allocs.len(),
        deployments = plan.deployments.len(),
        force,
        "garbage collection"
    );
    server
        .write(crate::fsm::Command::GarbageCollect {
            jobs: plan.jobs,
            evals: plan.evals,
            allocs: plan.allocs,
            deployments: plan.deployments,
        })
        .await
        .map(|_| ())
}

/// What one pass removes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GcPlan {
    pub jobs: Vec<(String, String)>,
    pub evals: Vec<String>,
    pub allocs: Vec<String>,
    pub deployments: Vec<String>,
}

impl GcPlan {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.evals.is_empty()
            && self.allocs.is_empty()
            && self.deployments.is_empty()
    }
}

/// An allocation the client is done with.
pub fn alloc_collectable(a: &api::Allocation) -> bool {
    a.client_terminal()
}

pub fn eval_terminal(e: &api::Evaluation) -> bool {
    e.terminal()
}

/// A job that wants nothing running: stopped, or dead (batch work finished). Periodic and
/// parameterized templates are never dead.
pub fn job_dead(j: &api::Job) -> bool {
    j.stop || j.status == api::JOB_STATUS_DEAD
}

fn old_enough(modified: i64, now: i64, threshold: Duration, force: bool) -> bool {
    force || now.saturating_sub(modified) >= threshold.as_nanos() as i64
}

/// What a pass at `now` (Unix nanoseconds) removes; `force` ignores the thresholds.
pub fn plan(state: &StateStore, now: i64, force: bool) -> GcPlan {
    let mut out = GcPlan::default();
    // Jobs whose history may go: stopped, dead, or purged (allocations left behind).
    let mut keys: BTreeSet<(String, String)> = state
        .job_table()
        .iter()
        .filter(|(_, j)| job_dead(j))
        .map(|(k, _)| k.clone())
        .collect();
    for a in state.alloc_table().values() {
        if state.job(&a.namespace, &a.job_id).is_none() {
            keys.insert((a.namespace.to_string(), a.job_id.to_string()));
        }
    }
    for e in state.eval_table().values() {
        if !e.job_id.is_empty() && state.job(&e.namespace, &e.job_id).is_none() {
            keys.insert((e.namespace.clone(), e.job_id.clone()));
        }
    }
    for (ns, id) in keys {
        let allocs = state.allocs_for_job(&ns, &id);
        let evals = state.evals_for_job(&ns, &id);
        let mut all_gone = true;
        for e in &evals {
            // An evaluation goes with the allocations it placed, once they all ended.
            let placed: Vec<_> = allocs.iter().filter(|a| a.eval_id == e.id).collect();
            let ok = eval_terminal(e)
                && old_enough(e.modify_time, now, EVAL_GC_THRESHOLD, force)
                && placed.iter().all(|a| alloc_collectable(a));
            if ok {
                out.evals.push(e.id.clone());
            } else {
                all_gone = false;
            }
        }
        for a in &allocs {
            if alloc_collectable(a) && old_enough(a.modify_time, now, EVAL_GC_THRESHOLD, force) {
                out.allocs.push(a.id.to_string());
            } else {
                all_gone = false;
            }
        }
        match state.job(&ns, &id) {
            Some(job) => {
                if all_gone && old_enough(job.submit_time, now, JOB_GC_THRESHOLD, force) {
                    out.jobs.push((ns, id));
                }
            }
            None => out.deployments.extend(
                state
                    .deployments_for_job(&ns, &id)
                    .iter()
                    .filter(|d| !d.active())
                    .map(|d| d.id.clone()),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{apply, Command, Effects};

    fn alloc(id: &str, job: &str, eval: &str, client_status: &str) -> api::Allocation {
        api::Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            eval_id: eval.into(),
            node_id: "n1".into(),
            client_status: client_status.into(),
            modify_time: 1,
            ..Default::default()
        }
    }

    fn eval(id: &str, job: &str, status: &str) -> api::Evaluation {
        api::Evaluation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            status: status.into(),
            modify_time: 1,
            ..Default::default()
        }
    }

    fn state() -> StateStore {
        let mut s = StateStore::default();
        crate::fsm::tests::register(&mut s, 1, crate::fsm::tests::job("live", 1));
        crate::fsm::tests::register(&mut s, 2, crate::fsm::tests::job("stopped", 1));
        let cmd = Command::DeregisterJob {
            namespace: "default".into(),
            job_id: "stopped".into(),
            purge: false,
            eval: None,
            now: 1,
        };
        apply(&mut s, 3, cmd, &mut Effects::default());
        let evals = vec![
            eval("e-live", "live", "complete"),
            eval("e-stopped", "stopped", "complete"),
        ];
        apply(
            &mut s,
            4,
            Command::UpsertEvals { evals },
            &mut Effects::default(),
        );
        crate::fsm::test_put_alloc(&mut s, alloc("a-live", "live", "e-live", "failed"));
        crate::fsm::test_put_alloc(&mut s, alloc("a-stop", "stopped", "e-stopped", "complete"));
        s
    }

    #[test]
    fn a_forced_pass_removes_a_stopped_jobs_history_and_then_the_job() {
        let mut s = state();
        let plan = plan(&s, 10, true);
        assert_eq!(plan.allocs, vec!["a-stop".to_string()]);
        assert_eq!(plan.evals, vec!["e-stopped".to_string()]);
        assert_eq!(plan.jobs, vec![("default".into(), "stopped".into())]);
        let cmd = Command::GarbageCollect {
            jobs: plan.jobs,
            evals: plan.evals,
            allocs: plan.allocs,
            deployments: plan.deployments,
        };
        apply(&mut s, 9, cmd, &mut Effects::default());
        assert!(s.job("default", "stopped").is_none());
        assert!(s.alloc_table().get("a-stop").is_none());
        assert!(s.eval_table().get("e-stopped").is_none());
        // A running job keeps its failed allocation: the scheduler tracks reschedules.
        assert!(s.alloc_table().get("a-live").is_some());
        assert!(s.eval_table().get("e-live").is_some());
        assert!(super::plan(&s, 10, true).is_empty());
    }

    #[test]
    fn an_unforced_pass_waits_for_the_thresholds() {
        let s = state();
        assert!(plan(&s, 10, false).is_empty());
        let later = 1 + JOB_GC_THRESHOLD.as_nanos() as i64;
        assert_eq!(plan(&s, later, false).jobs.len(), 1);
    }
}
