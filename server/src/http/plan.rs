//! `PUT /v1/job/:id/plan`: a dry run of the scheduler for a submitted job.
//!
//! The job is prepared as registration would prepare it (defaults, validation, the
//! version and modify index it would get), substituted into the current state snapshot
//! through `PlanState`, and handed to `scheduler::schedule`. The plan that comes back is
//! only read: it never reaches the plan applier or Raft. The answer has Nomad's shape:
//! the diff against the registered job, per-group counts of what the run would do,
//! placements that would fail, and the job modify index for `job run -check-index`.

use super::{parse_body, reply, ApiErr, ApiResult, AppState};
use crate::state::StateStore;
use api::diff::{annotate, job_diff, DesiredUpdates, PlanAnnotations};
use api::{Allocation, Evaluation, Job, JobPlanRequest, JobPlanResponse, Node, Plan};
use axum::body::Bytes;
use axum::extract::{Path, State};
use scheduler::reconcile::{DESC_MIGRATING, DESC_UPDATING};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The state snapshot with one job replaced by the version being planned.
struct PlanState {
    inner: Arc<StateStore>,
    job: Arc<Job>,
}

impl scheduler::State for PlanState {
    fn index(&self) -> u64 {
        scheduler::State::index(&*self.inner)
    }
    fn job(&self, namespace: &str, id: &str) -> Option<Arc<Job>> {
        if namespace == self.job.ns() && id == self.job.id {
            Some(self.job.clone())
        } else {
            scheduler::State::job(&*self.inner, namespace, id)
        }
    }
    fn nodes(&self) -> Vec<Arc<Node>> {
        scheduler::State::nodes(&*self.inner)
    }
    fn node(&self, id: &str) -> Option<Arc<Node>> {
        scheduler::State::node(&*self.inner, id)
    }
    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Allocation>> {
        scheduler::State::allocs_by_job(&*self.inner, namespace, job_id)
    }
    fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        scheduler::State::allocs_by_node(&*self.inner, node_id)
    }
}

pub async fn plan(State(srv): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let req: JobPlanRequest = parse_body(&body)?;
    let Some(mut job) = req.job else {
        return Err(ApiErr::bad_request(
            "missing job: the body must be {\"Job\": {...}, \"Diff\": true}",
        ));
    };
    super::jobs::check_path_id(&job, &id)?;
    job.canonicalize();
    super::jobs::check_job(&srv, &job)?;
    super::jobs::clear_server_fields(&mut job);

    let state = srv.snapshot();
    let current = state.job(job.ns(), &job.id);
    let mut diff = job_diff(current.as_deref(), &job);
    // The version and indexes registration would give the job (the FSM's own rule): an
    // unchanged job keeps its own, so the scheduler sees nothing to update.
    let next_index = state.index() + 1;
    crate::fsm::assign_version(&state, &mut job, next_index);
    job.modify_index = next_index;
    job.submit_time = crate::now_nanos();
    let job = Arc::new(job);

    let now = crate::now_nanos();
    let eval = Evaluation {
        job_modify_index: job.job_modify_index,
        ..Evaluation::new_for_job(&job, api::TRIGGER_JOB_REGISTER, now, api::new_id())
    };
    let planned = PlanState {
        inner: state.clone(),
        job: job.clone(),
    };
    let config = crate::worker::scheduler_config(&state);
    let plan = tokio::task::spawn_blocking(move || {
        let seed = eval.modify_time as u64;
        scheduler::schedule(&planned, &eval, &config, seed)
    })
    .await
    .map_err(|e| ApiErr::bad_request(format!("the scheduler dry run did not finish: {e}")))?
    .map_err(|e| ApiErr::bad_request(format!("the scheduler dry run failed: {e}")))?;

    let updates = desired_updates(&state.allocs_for_job(job.ns(), &job.id), &job, &plan);
    annotate(&mut diff, &updates);
    let job_modify_index = current.as_ref().map_or(0, |j| j.job_modify_index);
    let resp = JobPlanResponse {
        index: job_modify_index,
        diff: req.diff.then_some(diff),
        annotations: Some(PlanAnnotations {
            desired_tg_updates: updates,
        }),
        failed_tg_allocs: plan.failed_tg_allocs.clone(),
        job_modify_index,
        created_evals: plan.create_evals.clone(),
        warnings: String::new(),
    };
    Ok(reply(&srv, state.index(), &resp))
}

/// Per group, what the plan would do to the job's allocations, in Nomad's terms.
fn desired_updates(
    existing: &[Arc<Allocation>],
    job: &Job,
    plan: &Plan,
) -> BTreeMap<String, DesiredUpdates> {
    let mut out: BTreeMap<String, DesiredUpdates> = job
        .task_groups
        .iter()
        .map(|g| (g.name.clone(), DesiredUpdates::default()))
        .collect();
    let existing_ids: BTreeSet<&str> = existing.iter().map(|a| a.id.as_str()).collect();
    let stops: BTreeMap<&str, &Allocation> = plan
        .node_update
        .values()
        .flatten()
        .map(|a| (a.id.as_str(), a))
        .collect();
    let mut touched: BTreeSet<&str> = stops.keys().copied().collect();
    let mut replaced: BTreeSet<&str> = BTreeSet::new();
    for alloc in plan.node_allocation.values().flatten() {
        let u = out.entry(alloc.task_group.to_string()).or_default();
        touched.insert(alloc.id.as_str());
        if existing_ids.contains(alloc.id.as_str()) {
            u.in_place_update += 1;
        } else if alloc.deployment_status.as_ref().is_some_and(|d| d.canary) {
            u.canary += 1;
        } else {
            match stops.get(alloc.previous_allocation.as_str()) {
                Some(old) if old.desired_description == DESC_UPDATING => {
                    replaced.insert(old.id.as_str());
                    u.destructive_update += 1;
                }
                Some(old) if old.desired_description == DESC_MIGRATING => {
                    replaced.insert(old.id.as_str());
                    u.migrate += 1;
                }
                _ => u.place += 1,
            }
        }
    }
    for (id, old) in &stops {
        if !replaced.contains(id) {
            out.entry(old.task_group.to_string()).or_default().stop += 1;
        }
    }
    // Placements that found no node are still placements the job asks for.
    for (group, n) in &plan.queued_allocations {
        out.entry(group.clone()).or_default().place += n;
    }
    for alloc in existing {
        if !alloc.terminal() && !touched.contains(alloc.id.as_str()) {
            out.entry(alloc.task_group.to_string()).or_default().ignore += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(id: &str, group: &str) -> Allocation {
        Allocation {
            id: id.into(),
            task_group: group.into(),
            desired_status: api::ALLOC_DESIRED_RUN.into(),
            client_status: api::ALLOC_CLIENT_RUNNING.into(),
            ..Default::default()
        }
    }

    #[test]
    fn plan_allocations_become_nomads_desired_updates() {
        let job = Job {
            task_groups: vec![
                api::TaskGroup {
                    name: "web".into(),
                    ..Default::default()
                },
                api::TaskGroup {
                    name: "db".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let existing: Vec<Arc<Allocation>> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| Arc::new(alloc(id, "web")))
            .chain([Arc::new(alloc("e", "db"))])
            .collect();
        let mut plan = Plan::default();
        let mut updated = alloc("b", "web");
        updated.desired_description = DESC_UPDATING.into();
        updated.desired_status = api::ALLOC_DESIRED_STOP.into();
        let mut gone = alloc("c", "web");
        gone.desired_status = api::ALLOC_DESIRED_STOP.into();
        plan.node_update.insert("n1".into(), vec![updated, gone]);
        let mut replacement = alloc("b2", "web");
        replacement.previous_allocation = "b".into();
        plan.node_allocation.insert(
            "n1".into(),
            vec![alloc("a", "web"), replacement, alloc("new", "web")],
        );
        plan.queued_allocations.insert("web".into(), 2);
        let u = desired_updates(&existing, &job, &plan);
        assert_eq!(
            u["web"],
            DesiredUpdates {
                ignore: 1,
                place: 3,
                stop: 1,
                in_place_update: 1,
                destructive_update: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            u["db"],
            DesiredUpdates {
                ignore: 1,
                ..Default::default()
            }
        );
    }
}
