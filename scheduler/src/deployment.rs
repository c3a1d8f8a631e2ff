//! Deployments as the scheduler sees them: which deployment a job version rolls out
//! under (a new one the plan carries, or the one in the state), and what it lets the
//! reconciler do (canaries wait for `Promoted`; a paused or failed deployment places
//! nothing new). Counting and status changes are the servers' (FSM, watcher).

use api::{Deployment, DeploymentState, DeploymentStatusUpdate, Evaluation, Job, Plan};

/// The job's deployment for its current version, if the state has one that still counts
/// (a cancelled one does not: running the version again starts a new deployment).
pub fn for_version<'a>(job: &Job, latest: Option<&'a Deployment>) -> Option<&'a Deployment> {
    latest.filter(|d| {
        d.job_version == job.version
            && d.job_create_index == job.create_index
            && d.status != api::DEPLOYMENT_STATUS_CANCELLED
    })
}

/// Whether `alloc`, a live allocation of the job's current version, is to be replaced
/// because the client judged it unhealthy in its running deployment, as Nomad does: only
/// when the group's deployment has a `progress_deadline` (without one an unhealthy
/// allocation fails the deployment at once, in the server's watcher). The reschedule
/// policy's attempts are the caller's to check.
pub fn replaces_unhealthy(job: &Job, latest: Option<&Deployment>, alloc: &api::Allocation) -> bool {
    let unhealthy = alloc.deployment_status.as_ref().and_then(|s| s.healthy) == Some(false);
    if !unhealthy || alloc.deployment_id.is_empty() {
        return false;
    }
    let Some(d) = for_version(job, latest) else {
        return false;
    };
    d.id == alloc.deployment_id
        && d.status == api::DEPLOYMENT_STATUS_RUNNING
        && d.task_groups
            .get(alloc.task_group.as_str())
            .is_some_and(|g| g.progress_deadline > 0)
}

/// What a group's deployment lets the reconciler do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gate {
    /// `Some(promoted)` when a deployment of this version decides promotion; `None`
    /// when there is none yet (then `auto_promote` and canary health decide).
    pub promoted: Option<bool>,
    /// Paused or failed: place nothing new for this version.
    pub halted: bool,
}

/// The gate `latest` (the job's newest deployment) puts on `group` of `job`.
pub fn gate(job: &Job, latest: Option<&Deployment>, group: &str) -> Gate {
    let Some(d) = for_version(job, latest) else {
        return Gate::default();
    };
    Gate {
        promoted: d.task_groups.get(group).map(|g| g.promoted),
        halted: matches!(
            d.status.as_str(),
            api::DEPLOYMENT_STATUS_PAUSED | api::DEPLOYMENT_STATUS_FAILED
        ),
    }
}

/// Whether a job version rolls out under a deployment: a service job with an `update`
/// block (on the job or a group) with `max_parallel` set.
pub fn wants_deployment(job: &Job) -> bool {
    job.job_type == api::JOB_TYPE_SERVICE
        && !job.stop
        && job
            .task_groups
            .iter()
            .any(|g| crate::reconcile::update_strategy(job, g).is_some_and(|u| u.max_parallel > 0))
}

/// Ties the plan's placements and in-place updates of the job's current version to its
/// deployment: the one in the state, or a new one (id from `new_id`) the plan carries,
/// cancelling an older running one. Pure: `now` is the evaluation's.
pub fn attach(
    plan: &mut Plan,
    job: &Job,
    latest: Option<&Deployment>,
    eval: &Evaluation,
    new_id: impl FnOnce() -> String,
) {
    if !wants_deployment(job) {
        return;
    }
    let of_version = |a: &api::Allocation| {
        a.job.as_ref().is_some_and(|j| j.version == job.version) && !a.desired_stop()
    };
    let touched = plan.node_allocation.values().flatten().any(of_version);
    if !touched {
        return;
    }
    let id = match for_version(job, latest) {
        Some(d) if d.active() => d.id.clone(),
        // It finished: later placements (reschedules, drains) are not part of it.
        Some(_) => return,
        None => {
            let d = new_deployment(job, plan, eval, new_id());
            if let Some(old) = latest.filter(|o| o.active()) {
                plan.deployment_updates.push(DeploymentStatusUpdate {
                    deployment_id: old.id.clone(),
                    status: api::DEPLOYMENT_STATUS_CANCELLED.into(),
                    status_description: api::DEPLOYMENT_DESC_NEWER_JOB.into(),
                });
            }
            let id = d.id.clone();
            plan.deployment = Some(d);
            id
        }
    };
    // New placements, and in-place updates, which still carry the deployment of the
    // version they ran before (the FSM counts those as placed, and healthy if they were).
    for a in plan.node_allocation.values_mut().flatten() {
        if of_version(a) && a.deployment_id != id {
            a.deployment_id = id.as_str().into();
        }
    }
}

/// A new running deployment of `job`'s version, with each group's desired counts (the
/// canaries this plan places are the group's desired canaries).
fn new_deployment(job: &Job, plan: &Plan, eval: &Evaluation, id: String) -> Deployment {
    let mut groups = std::collections::BTreeMap::new();
    for g in &job.task_groups {
        let Some(u) = crate::reconcile::update_strategy(job, g) else {
            continue;
        };
        let canaries = plan
            .node_allocation
            .values()
            .flatten()
            .filter(|a| a.task_group == g.name)
            .filter(|a| a.deployment_status.as_ref().is_some_and(|s| s.canary))
            .count() as i64;
        groups.insert(
            g.name.clone(),
            DeploymentState {
                auto_revert: u.auto_revert,
                auto_promote: u.auto_promote,
                progress_deadline: u.progress_deadline,
                desired_canaries: canaries,
                desired_total: g.count.max(0),
                ..Default::default()
            },
        );
    }
    let mut d = Deployment {
        id,
        namespace: job.ns().to_string(),
        job_id: job.id.clone(),
        job_version: job.version,
        job_modify_index: job.job_modify_index,
        job_spec_modify_index: job.job_modify_index,
        job_create_index: job.create_index,
        task_groups: groups,
        status: api::DEPLOYMENT_STATUS_RUNNING.into(),
        eval_priority: eval.priority,
        create_time: eval.modify_time,
        modify_time: eval.modify_time,
        ..Default::default()
    };
    d.status_description = if !d.requires_promotion() {
        api::DEPLOYMENT_DESC_RUNNING
    } else if d.auto_promotes() {
        api::DEPLOYMENT_DESC_AUTO_PROMOTION
    } else {
        api::DEPLOYMENT_DESC_NEEDS_PROMOTION
    }
    .into();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{AllocDeploymentStatus, Allocation, TaskGroup, UpdateStrategy};
    use std::sync::Arc;

    fn job(version: u64, canary: i64) -> Arc<Job> {
        Arc::new(Job {
            id: "web".into(),
            namespace: "default".into(),
            job_type: "service".into(),
            version,
            create_index: 3,
            update: Some(UpdateStrategy {
                max_parallel: 1,
                canary,
                progress_deadline: 600,
                ..Default::default()
            }),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 2,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn plan_with(job: &Arc<Job>, canary: bool) -> Plan {
        let a = Allocation {
            id: "a1".into(),
            task_group: "g".into(),
            job: Some(job.clone()),
            desired_status: "run".into(),
            deployment_status: canary.then(|| AllocDeploymentStatus {
                canary: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        Plan {
            node_allocation: [("n1".to_string(), vec![a])].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_version_gets_a_deployment_that_cancels_the_older_running_one() {
        let v1 = job(1, 1);
        let mut plan = plan_with(&v1, true);
        let older = Deployment {
            id: "old".into(),
            job_version: 0,
            job_create_index: 3,
            status: api::DEPLOYMENT_STATUS_RUNNING.into(),
            ..Default::default()
        };
        attach(&mut plan, &v1, Some(&older), &Evaluation::default(), || {
            "d1".into()
        });
        let d = plan.deployment.as_ref().unwrap();
        assert_eq!((d.id.as_str(), d.job_version), ("d1", 1));
        let g = &d.task_groups["g"];
        assert_eq!(
            (g.desired_total, g.desired_canaries, g.progress_deadline),
            (2, 1, 600)
        );
        assert_eq!(d.status_description, api::DEPLOYMENT_DESC_NEEDS_PROMOTION);
        assert_eq!(plan.node_allocation["n1"][0].deployment_id, "d1");
        assert_eq!(
            plan.deployment_updates,
            vec![DeploymentStatusUpdate {
                deployment_id: "old".into(),
                status: "cancelled".into(),
                status_description: "Cancelled due to newer version of job".into(),
            }]
        );
    }

    #[test]
    fn the_versions_existing_deployment_is_reused_and_gates_its_groups() {
        let v1 = job(1, 1);
        let mut plan = plan_with(&v1, false);
        let mut current = Deployment {
            id: "d1".into(),
            job_version: 1,
            job_create_index: 3,
            status: api::DEPLOYMENT_STATUS_RUNNING.into(),
            task_groups: [("g".to_string(), DeploymentState::default())].into(),
            ..Default::default()
        };
        attach(
            &mut plan,
            &v1,
            Some(&current),
            &Evaluation::default(),
            || unreachable!("no new deployment"),
        );
        assert!(plan.deployment.is_none() && plan.deployment_updates.is_empty());
        assert_eq!(plan.node_allocation["n1"][0].deployment_id, "d1");
        assert_eq!(
            gate(&v1, Some(&current), "g"),
            Gate {
                promoted: Some(false),
                halted: false
            }
        );
        current.status = api::DEPLOYMENT_STATUS_PAUSED.into();
        assert!(gate(&v1, Some(&current), "g").halted);
        // Another version's deployment says nothing about this one.
        assert_eq!(gate(&job(2, 1), Some(&current), "g"), Gate::default());
    }

    #[test]
    fn an_in_place_update_leaves_its_older_deployment_for_the_new_one() {
        let v2 = job(2, 0);
        let mut plan = plan_with(&v2, false);
        plan.node_allocation.get_mut("n1").unwrap()[0].deployment_id = "d0".into();
        attach(&mut plan, &v2, None, &Evaluation::default(), || "d2".into());
        assert_eq!(plan.node_allocation["n1"][0].deployment_id, "d2");
    }

    #[test]
    fn jobs_without_an_update_block_get_no_deployment() {
        let mut j = (*job(1, 0)).clone();
        j.update = None;
        let j = Arc::new(j);
        let mut plan = plan_with(&j, false);
        attach(&mut plan, &j, None, &Evaluation::default(), || "d".into());
        assert!(plan.deployment.is_none());
        assert!(plan.node_allocation["n1"][0].deployment_id.is_empty());
    }

    fn alloc(name: &str, version: u64, healthy: Option<bool>, canary: bool) -> Arc<Allocation> {
        Arc::new(Allocation {
            id: format!("{name}-v{version}").into(),
            name: name.into(),
            job: Some(job(version, 1)),
            desired_status: "run".into(),
            client_status: "running".into(),
            deployment_status: Some(AllocDeploymentStatus {
                healthy,
                canary,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pacing(gate: Gate, auto_promote: bool) -> crate::reconcile::Pacing {
        let strategy = UpdateStrategy {
            max_parallel: 1,
            canary: 1,
            auto_promote,
            ..Default::default()
        };
        crate::reconcile::pace(crate::reconcile::PacingInput {
            strategy: Some(&strategy),
            destructive: vec![
                alloc("w[0]", 0, Some(true), false),
                alloc("w[1]", 0, Some(true), false),
            ],
            canaries: vec![alloc("w[0]", 1, Some(true), true)],
            current: vec![],
            started: false,
            now: 100,
            gate,
        })
    }

    #[test]
    fn healthy_canaries_are_held_until_the_deployment_says_promoted() {
        let unpromoted = Gate {
            promoted: Some(false),
            halted: false,
        };
        // Even with auto_promote and a healthy canary: the watcher promotes, not the pacer.
        for auto in [false, true] {
            let p = pacing(unpromoted, auto);
            assert!(p.promote.is_empty() && p.replace.is_empty(), "{p:?}");
            assert!(p.hold_new_placements && !p.follow_up);
            assert_eq!(p.unpromoted.len(), 1);
        }
        let p = pacing(
            Gate {
                promoted: Some(true),
                halted: false,
            },
            false,
        );
        assert_eq!(p.promote.len(), 1, "the canary replaces w[0]: {p:?}");
        assert_eq!(p.promote[0].1.name, "w[0]");
        assert_eq!(p.replace.len(), 1, "then w[1], max_parallel 1");
        // Without a deployment in the state, auto_promote and health decide as before.
        assert_eq!(pacing(Gate::default(), true).promote.len(), 1);
        assert!(pacing(Gate::default(), false).promote.is_empty());
    }

    #[test]
    fn a_paused_or_failed_deployment_places_nothing_new() {
        let p = pacing(
            Gate {
                promoted: Some(true),
                halted: true,
            },
            true,
        );
        assert!(p.promote.is_empty() && p.replace.is_empty() && p.new_canaries.is_empty());
        assert!(p.hold_new_placements && !p.follow_up);
        assert_eq!(p.wait.len(), 2);
    }
}
