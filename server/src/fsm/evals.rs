//! Evaluations and the job status they (and allocations) imply.

use super::Effects;
use crate::state::{JobKey, StateStore, StateWriter};
use api::{Evaluation, Job};
use std::sync::Arc;

/// Write evaluations (keeping each one's create index) and hand them to the broker.
pub(super) fn upsert_evals(w: &mut StateWriter, evals: Vec<Evaluation>, fx: &mut Effects) {
    let index = w.index();
    for mut e in evals {
        e.create_index = w
            .eval_table()
            .get(&e.id)
            .map(|old| old.create_index)
            .unwrap_or(index);
        e.modify_index = index;
        let job_key = (e.namespace.clone(), e.job_id.clone());
        fx.evals.push(w.upsert_eval(e));
        // A job with no allocations yet is pending until its evaluation places them.
        refresh_job_status(w, &job_key);
    }
}

/// Recompute the status of each job whose allocations changed.
/// A job an allocation belongs to: its namespace and ID, shared with the allocation.
pub(super) type AllocJob = (api::ArcStr, api::ArcStr);

pub(super) fn refresh_job_statuses(w: &mut StateWriter, mut jobs: Vec<AllocJob>) {
    jobs.sort();
    jobs.dedup();
    for (ns, id) in jobs {
        refresh_job_status(w, &(ns.to_string(), id.to_string()));
    }
}

fn refresh_job_status(w: &mut StateWriter, key: &JobKey) {
    if let Some(job) = w.job_table().get(key).cloned() {
        let status = job_status(w, &job);
        if status != job.status {
            let mut j = (*job).clone();
            j.status = status;
            j.modify_index = w.index();
            w.upsert_job(Arc::new(j));
        }
    }
}

/// Nomad's job status words: running while any allocation is live, dead once a stopped
/// (or finished batch) job has nothing live, pending otherwise.
pub fn job_status(state: &StateStore, job: &Job) -> String {
    // From the store's counters: a write touching a job of thousands of allocations
    // does not read them.
    let counts = state.job_alloc_counts(job.ns(), &job.id);
    if counts.client_live() > 0 {
        return api::JOB_STATUS_RUNNING.into();
    }
    let batch_like = matches!(
        job.job_type.as_str(),
        api::JOB_TYPE_BATCH | api::JOB_TYPE_SYSBATCH
    );
    let has_pending_evals = state
        .evals_for_job(job.ns(), &job.id)
        .iter()
        .any(|e| !e.terminal() && e.status != api::EVAL_STATUS_BLOCKED);
    if job.stop || (batch_like && counts.allocs > 0 && !has_pending_evals) {
        return api::JOB_STATUS_DEAD.into();
    }
    api::JOB_STATUS_PENDING.into()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, register};
    use super::super::{apply, Command, Effects};
    use crate::state::StateStore;
    use api::Evaluation;

    #[test]
    fn upsert_evals_keeps_the_create_index_and_reports_each_eval() {
        let mut s = StateStore::default();
        let eval = |status: &str| Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "a".into(),
            status: status.into(),
            ..Default::default()
        };
        let mut fx = Effects::default();
        apply(
            &mut s,
            3,
            Command::UpsertEvals {
                evals: vec![eval("pending")],
            },
            &mut fx,
        );
        apply(
            &mut s,
            5,
            Command::UpsertEvals {
                evals: vec![eval("complete")],
            },
            &mut fx,
        );
        let e = &s.eval_table()["e1"];
        assert_eq!((e.create_index, e.modify_index), (3, 5));
        assert_eq!(e.status, "complete");
        assert_eq!(s.tables().evals, 5);
        assert_eq!(fx.evals.len(), 2);
        assert_eq!(s.evals_for_job("default", "a").len(), 1);
    }

    #[test]
    fn a_finished_batch_job_is_dead_once_no_evaluation_is_pending() {
        let mut s = StateStore::default();
        let mut j = job("b", 1);
        j.job_type = api::JOB_TYPE_BATCH.into();
        register(&mut s, 1, j);
        let a = api::Allocation {
            id: "x".into(),
            namespace: "default".into(),
            job_id: "b".into(),
            client_status: api::ALLOC_CLIENT_COMPLETE.into(),
            ..Default::default()
        };
        let plan = Command::ApplyPlan {
            job: None,
            allocs: vec![a],
            stops: vec![],
            eval: None,
            create_evals: vec![],
            now: 2,
            deployment: None,
            deployment_updates: vec![],
        };
        apply(&mut s, 2, plan, &mut Effects::default());
        // ApplyPlan keeps no client status for a new alloc other than what it carries.
        assert_eq!(s.job("default", "b").unwrap().status, api::JOB_STATUS_DEAD);
        assert_eq!(s.tables().jobs, 2);
    }
}
