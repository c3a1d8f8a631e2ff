//! Commands about jobs: registration (a new version when the spec changed) and stopping.

use super::evals::{job_status, upsert_evals};
use super::services::drop_alloc_services;
use super::{Effects, Response};
use crate::state::{StateStore, StateWriter};
use api::{Evaluation, Job};
use std::sync::Arc;

/// Give a submitted job the version, create index and job modify index registering it at
/// `index` would give it: the registered job's own when nothing the user wrote changed
/// (`api::diff::is_new_version`), the next version otherwise. `job run` (through the FSM)
/// and `job plan` (on a snapshot) both call this, so they cannot disagree.
pub fn assign_version(state: &StateStore, job: &mut Job, index: u64) {
    match state.job(job.ns(), &job.id) {
        Some(old) => {
            job.create_index = old.create_index;
            if api::diff::is_new_version(&old, job) {
                job.version = old.version + 1;
                job.job_modify_index = index;
            } else {
                job.version = old.version;
                job.job_modify_index = old.job_modify_index;
            }
        }
        None => {
            job.create_index = index;
            job.job_modify_index = index;
            // A purged job that comes back continues its version history.
            job.version = state
                .job_versions(job.ns(), &job.id)
                .first()
                .map(|j| j.version + 1)
                .unwrap_or(0);
        }
    }
}

/// `Command::RegisterJob`: a job was submitted; a new version when its spec changed
/// (`api::diff::is_new_version`, the rule `job plan` uses too).
pub(super) fn register_job(
    w: &mut StateWriter,
    mut job: Job,
    eval: Option<Evaluation>,
    now: i64,
    fx: &mut Effects,
    resp: &mut Response,
) {
    let index = w.index();
    assign_version(w, &mut job, index);
    // Stable is the servers' word: kept for the same version, false for a new one.
    job.stable = w
        .job(job.ns(), &job.id)
        .is_some_and(|old| old.version == job.version && old.stable);
    job.modify_index = index;
    job.submit_time = now;
    job.status = job_status(w, &job);
    // A periodic or parameterized template has no allocations of its own: it runs
    // while it launches children.
    if !job.stop && crate::periodic::is_template(&job) {
        job.status = api::JOB_STATUS_RUNNING.into();
    }
    resp.job_modify_index = job.job_modify_index;
    let eval = eval.map(|mut e| {
        e.job_modify_index = job.job_modify_index;
        resp.eval_id = e.id.clone();
        e
    });
    w.upsert_job_version(Arc::new(job));
    upsert_evals(w, eval.into_iter().collect(), fx);
}

/// `Command::DeregisterJob`: a job was stopped (and with `purge`, forgotten).
pub(super) fn deregister_job(
    w: &mut StateWriter,
    namespace: &str,
    job_id: &str,
    purge: bool,
    eval: Option<Evaluation>,
    fx: &mut Effects,
    resp: &mut Response,
) {
    let Some(old) = w.job(namespace, job_id) else {
        resp.error = Some(format!("job {job_id:?} not found"));
        return;
    };
    if purge {
        w.delete_job(namespace, job_id);
        w.delete_job_deployments(namespace, job_id);
        // A purged job's instances go at once, whatever its agents still do.
        for a in w.allocs_for_job(namespace, job_id) {
            drop_alloc_services(w, &a.id);
        }
    } else {
        let mut job = (*old).clone();
        job.stop = true;
        job.modify_index = w.index();
        job.status = job_status(w, &job);
        resp.job_modify_index = job.job_modify_index;
        w.upsert_job(Arc::new(job));
    }
    upsert_evals(w, eval.into_iter().collect(), fx);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, register};
    use super::super::{apply, Command, Effects};
    use crate::state::StateStore;

    /// `job plan` says "no change" exactly when `job run` keeps the version.
    #[test]
    fn plan_no_change_and_run_same_version_agree() {
        let base = job("a", 1);
        let mut meta = base.clone();
        meta.meta.insert("owner".into(), "ops".into());
        let mut count = base.clone();
        count.task_groups[0].count = 3;
        let mut server_owned = base.clone();
        server_owned.status = api::JOB_STATUS_RUNNING.into();
        server_owned.status_description = "placed".into();
        server_owned.stable = true;
        server_owned.version = 7;
        server_owned.submit_time = 99;
        server_owned.create_index = 42;
        server_owned.modify_index = 43;
        server_owned.job_modify_index = 44;
        let cases = [
            ("identical", base.clone(), false),
            ("meta change", meta, true),
            ("count change", count, true),
            ("server-owned fields only", server_owned, false),
        ];
        for (name, next, changed) in cases {
            let mut s = StateStore::default();
            register(&mut s, 1, base.clone());
            let registered = s.job("default", "a").unwrap();
            let plan = api::diff::job_diff(Some(&registered), &next);
            let plan_no_change = plan.diff_type == api::DiffType::None;
            register(&mut s, 2, next);
            let run_same_version = s.job("default", "a").unwrap().version == registered.version;
            assert_eq!(
                plan_no_change, run_same_version,
                "{name}: plan and run disagree"
            );
            assert_eq!(run_same_version, !changed, "{name}");
        }
    }

    #[test]
    fn resubmitting_the_same_job_keeps_its_version() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        register(&mut s, 2, job("a", 1));
        assert_eq!(s.job("default", "a").unwrap().version, 0);
        assert_eq!(s.job("default", "a").unwrap().job_modify_index, 1);
        register(&mut s, 3, job("a", 2));
        let j = s.job("default", "a").unwrap();
        assert_eq!(j.version, 1);
        assert_eq!(j.job_modify_index, 3);
        assert_eq!(s.job_versions("default", "a").len(), 2);
        assert_eq!(s.tables().jobs, 3);
    }

    #[test]
    fn registering_reports_the_eval_it_committed_with_the_jobs_modify_index() {
        let mut s = StateStore::default();
        let eval = api::Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "a".into(),
            status: api::EVAL_STATUS_PENDING.into(),
            ..Default::default()
        };
        let mut fx = Effects::default();
        let cmd = Command::RegisterJob {
            job: job("a", 1),
            eval: Some(eval),
            now: 4,
        };
        let r = apply(&mut s, 7, cmd, &mut fx);
        assert_eq!((r.eval_id.as_str(), r.job_modify_index), ("e1", 7));
        assert_eq!(s.eval_table()["e1"].job_modify_index, 7);
        assert_eq!(s.job("default", "a").unwrap().submit_time, 4);
        assert_eq!(fx.evals.len(), 1);
    }

    #[test]
    fn stopping_a_job_without_allocations_makes_it_dead_and_purge_forgets_it() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        assert_eq!(s.job("default", "a").unwrap().status, "pending");
        let dereg = |purge| Command::DeregisterJob {
            namespace: "default".into(),
            job_id: "a".into(),
            purge,
            eval: None,
            now: 2,
        };
        apply(&mut s, 2, dereg(false), &mut Effects::default());
        assert_eq!(s.job("default", "a").unwrap().status, "dead");
        apply(&mut s, 3, dereg(true), &mut Effects::default());
        assert!(s.job("default", "a").is_none());
        assert!(s.job_versions("default", "a").is_empty());
        assert_eq!(s.tables().jobs, 3);
        let r = apply(&mut s, 4, dereg(true), &mut Effects::default());
        assert!(r.error.unwrap().contains("not found"));
        // A purged job that comes back continues nowhere: its history is gone.
        register(&mut s, 5, job("a", 1));
        assert_eq!(s.job("default", "a").unwrap().version, 0);
    }
}
