//! Commands about allocations: plans, client status reports and desired transitions.

use super::evals::{refresh_job_statuses, upsert_evals, AllocJob};
use super::services::drop_if_terminal;
use super::{AllocStop, Effects};
use crate::state::StateWriter;
use api::{AllocClientUpdate, Allocation, Evaluation, Job};
use std::sync::Arc;

/// The arguments of `Command::ApplyPlan`.
pub(super) struct PlanResult {
    pub job: Option<Job>,
    pub allocs: Vec<Allocation>,
    pub stops: Vec<AllocStop>,
    pub eval: Option<Evaluation>,
    pub create_evals: Vec<Evaluation>,
    pub now: i64,
    pub deployment: Option<Box<api::Deployment>>,
    pub deployment_updates: Vec<api::DeploymentStatusUpdate>,
}

/// `Command::ApplyPlan`: what the plan applier accepted of a plan.
pub(super) fn apply_plan(w: &mut StateWriter, p: PlanResult, fx: &mut Effects) {
    let job = p.job.map(Arc::new);
    let mut deployments =
        super::deployments::plan_deployments(w, p.deployment, p.deployment_updates, p.now);
    let mut touched = stop_allocs(w, p.stops, p.now, fx);
    for a in p.allocs {
        match w.alloc_table().get(&a.id).cloned() {
            None => deployments.placed(w, &a),
            Some(old) => deployments.adopted(w, &old, &a, p.now),
        }
        touched.push(place_alloc(w, a, &job, p.now));
    }
    deployments.finish(w, p.now);
    let mut evals = p.create_evals;
    evals.extend(p.eval);
    upsert_evals(w, evals, fx);
    refresh_job_statuses(w, touched);
}

fn stop_allocs(
    w: &mut StateWriter,
    stops: Vec<AllocStop>,
    now: i64,
    fx: &mut Effects,
) -> Vec<AllocJob> {
    let mut touched = Vec::new();
    for s in stops {
        let Some(old) = w.alloc_table().get(&s.id) else {
            continue;
        };
        let mut a = (**old).clone();
        a.desired_status = s.desired_status.into();
        a.desired_description = s.desired_description.into();
        if let Some(cs) = s.client_status {
            a.client_status = cs.into();
        }
        if !s.followup_eval_id.is_empty() {
            a.followup_eval_id = s.followup_eval_id.into();
        }
        a.modify_index = w.index();
        a.alloc_modify_index = w.index();
        a.modify_time = now;
        touched.push((a.namespace.clone(), a.job_id.clone()));
        drop_if_terminal(w, &a);
        w.upsert_alloc(a);
        fx.capacity_changed = true;
    }
    touched
}

/// Write one placed (new or updated in place) allocation; returns its job's key.
fn place_alloc(
    w: &mut StateWriter,
    mut a: Allocation,
    job: &Option<Arc<Job>>,
    now: i64,
) -> AllocJob {
    let index = w.index();
    if a.job.is_none() {
        a.job = job.clone();
    }
    match w.alloc_table().get(&a.id) {
        Some(old) => {
            // An in-place update: keep what the client reported.
            a.create_index = old.create_index;
            a.create_time = old.create_time;
            a.client_status = old.client_status.clone();
            a.client_description = old.client_description.clone();
            a.task_states = old.task_states.clone();
        }
        None => {
            a.create_index = index;
            a.create_time = now;
        }
    }
    a.modify_index = index;
    a.alloc_modify_index = index;
    a.modify_time = now;
    let prev = Some(&a.previous_allocation)
        .filter(|id| !id.is_empty())
        .and_then(|id| w.alloc_table().get(id).cloned());
    if let Some(prev) = prev {
        // A replacement of a failed allocation extends its reschedule chain.
        if prev.client_status == api::ALLOC_CLIENT_FAILED && a.reschedule_tracker.is_none() {
            let mut t = prev.reschedule_tracker.clone().unwrap_or_default();
            t.events.push(api::RescheduleEvent {
                reschedule_time: now,
                prev_alloc_id: prev.id.to_string(),
                prev_node_id: prev.node_id.to_string(),
                delay: (now - prev.modify_time).max(0),
            });
            a.reschedule_tracker = Some(t);
        }
        let mut p = (*prev).clone();
        p.next_allocation = a.id.clone();
        p.modify_index = index;
        w.upsert_alloc(p);
    }
    let key = (a.namespace.clone(), a.job_id.clone());
    w.upsert_alloc(a);
    key
}

/// `Command::ClientAllocUpdate`: a batch of status reports from one client agent.
pub(super) fn client_alloc_update(
    w: &mut StateWriter,
    updates: Vec<AllocClientUpdate>,
    evals: Vec<Evaluation>,
    now: i64,
    fx: &mut Effects,
) {
    let mut touched = Vec::new();
    let mut deployments = super::deployments::Changes::default();
    for u in updates {
        let Some(old) = w.alloc_table().get(&u.id).cloned() else {
            continue;
        };
        if let Some(healthy) = u.deployment_status.as_ref().and_then(|d| d.healthy) {
            deployments.health(w, &old, healthy, now);
        }
        let mut a = (*old).clone();
        let was_terminal = a.client_terminal();
        a.client_status = u.client_status.into();
        a.client_description = u.client_description.into();
        a.task_states = u.task_states;
        if let Some(mut health) = u.deployment_status {
            // Whether it is a canary is the scheduler's word, not the client's.
            if let Some(existing) = &a.deployment_status {
                health.canary = existing.canary;
                // An operator's verdict (`health_check = "manual"`) stays while the
                // client reports none.
                if health.healthy.is_none() {
                    health.healthy = existing.healthy;
                    health.timestamp = existing.timestamp;
                }
            }
            a.deployment_status = Some(health);
        }
        a.modify_index = w.index();
        a.modify_time = now;
        fx.capacity_changed |= !was_terminal && a.client_terminal();
        touched.push((a.namespace.clone(), a.job_id.clone()));
        drop_if_terminal(w, &a);
        w.upsert_client_alloc(a);
    }
    deployments.finish(w, now);
    upsert_evals(w, evals, fx);
    refresh_job_statuses(w, touched);
}

/// `Command::AllocDesiredTransitions`: ask the scheduler to move allocations.
pub(super) fn alloc_desired_transitions(
    w: &mut StateWriter,
    transitions: Vec<(String, api::DesiredTransition)>,
    evals: Vec<Evaluation>,
    fx: &mut Effects,
) {
    for (id, t) in transitions {
        if let Some(old) = w.alloc_table().get(&id) {
            let mut a = (**old).clone();
            a.desired_transition = t;
            a.modify_index = w.index();
            w.upsert_alloc(a);
        }
    }
    upsert_evals(w, evals, fx);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, register};
    use super::super::{apply, test_writer, AllocStop, Command, Effects};
    use crate::state::StateStore;
    use api::{AllocClientUpdate, Allocation};

    fn alloc(id: &str) -> Allocation {
        Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "a".into(),
            node_id: "n1".into(),
            task_group: "g".into(),
            name: "a.g[0]".into(),
            desired_status: "run".into(),
            client_status: "pending".into(),
            ..Default::default()
        }
    }

    fn plan(allocs: Vec<Allocation>, stops: Vec<AllocStop>, job: Option<api::Job>) -> Command {
        Command::ApplyPlan {
            job,
            allocs,
            stops,
            eval: None,
            create_evals: vec![],
            now: 5,
            deployment: None,
            deployment_updates: vec![],
        }
    }

    fn report(id: &str, status: &str) -> Command {
        Command::ClientAllocUpdate {
            updates: vec![AllocClientUpdate {
                id: id.into(),
                client_status: status.into(),
                ..Default::default()
            }],
            evals: vec![],
            now: 6,
        }
    }

    #[test]
    fn plan_then_client_updates_drive_job_status() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        let j = s.job("default", "a").unwrap();
        let mut fx = Effects::default();
        apply(
            &mut s,
            2,
            plan(vec![alloc("al1")], vec![], Some((*j).clone())),
            &mut fx,
        );
        let a = &s.alloc_table()["al1"];
        assert_eq!(a.job.as_ref().unwrap().id, "a");
        assert_eq!(a.create_index, 2);
        assert_eq!(s.allocs_for_node("n1").len(), 1);
        assert_eq!(s.job("default", "a").unwrap().status, "running");
        apply(&mut s, 3, report("al1", "failed"), &mut fx);
        assert!(fx.capacity_changed);
        assert_eq!(s.job("default", "a").unwrap().status, "pending");
        assert_eq!(s.tables().allocs, 3);
    }

    #[test]
    fn a_replacement_of_a_failed_alloc_extends_its_reschedule_chain_and_stops_free_capacity() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        apply(
            &mut s,
            2,
            plan(vec![alloc("old")], vec![], None),
            &mut Effects::default(),
        );
        apply(&mut s, 3, report("old", "failed"), &mut Effects::default());
        let mut next = alloc("new");
        next.previous_allocation = "old".into();
        let stop = AllocStop {
            id: "old".into(),
            desired_status: "stop".into(),
            desired_description: "replaced".into(),
            client_status: None,
            followup_eval_id: String::new(),
        };
        let mut fx = Effects::default();
        apply(&mut s, 4, plan(vec![next], vec![stop], None), &mut fx);
        assert!(fx.capacity_changed);
        let old = &s.alloc_table()["old"];
        assert_eq!(
            (old.desired_status.as_str(), old.next_allocation.as_str()),
            ("stop", "new")
        );
        let t = s.alloc_table()["new"].reschedule_tracker.clone().unwrap();
        assert_eq!(t.events[0].prev_alloc_id, "old");
        // An in-place update keeps what the client reported.
        let mut again = alloc("new");
        again.client_status = "pending".into();
        apply(&mut s, 5, report("new", "running"), &mut Effects::default());
        apply(
            &mut s,
            6,
            plan(vec![again], vec![], None),
            &mut Effects::default(),
        );
        let a = &s.alloc_table()["new"];
        assert_eq!((a.client_status.as_str(), a.create_index), ("running", 4));
    }

    #[test]
    fn client_health_reports_keep_the_schedulers_canary_flag() {
        let mut s = StateStore::default();
        test_writer(&mut s, 1).upsert_alloc(Allocation {
            id: "c1".into(),
            namespace: "default".into(),
            job_id: "a".into(),
            deployment_status: Some(api::AllocDeploymentStatus {
                canary: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        let cmd = Command::ClientAllocUpdate {
            updates: vec![AllocClientUpdate {
                id: "c1".into(),
                client_status: "running".into(),
                deployment_status: Some(api::AllocDeploymentStatus {
                    healthy: Some(true),
                    timestamp: 7,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            evals: vec![],
            now: 7,
        };
        apply(&mut s, 2, cmd, &mut Effects::default());
        let d = s.alloc_table()["c1"].deployment_status.clone().unwrap();
        assert!(d.canary);
        assert_eq!(d.healthy, Some(true));
        // A later report without a verdict (manual health) keeps the one given.
        let cmd = Command::ClientAllocUpdate {
            updates: vec![AllocClientUpdate {
                id: "c1".into(),
                client_status: "running".into(),
                deployment_status: Some(api::AllocDeploymentStatus::default()),
                ..Default::default()
            }],
            evals: vec![],
            now: 8,
        };
        apply(&mut s, 3, cmd, &mut Effects::default());
        let d = s.alloc_table()["c1"].deployment_status.clone().unwrap();
        assert_eq!((d.healthy, d.timestamp), (Some(true), 7));
    }

    #[test]
    fn desired_transitions_flag_existing_allocs_and_skip_unknown_ones() {
        let mut s = StateStore::default();
        apply(
            &mut s,
            1,
            plan(vec![alloc("m")], vec![], None),
            &mut Effects::default(),
        );
        let migrate = api::DesiredTransition {
            migrate: Some(true),
            ..Default::default()
        };
        let cmd = Command::AllocDesiredTransitions {
            transitions: vec![("m".into(), migrate.clone()), ("gone".into(), migrate)],
            evals: vec![],
        };
        apply(&mut s, 2, cmd, &mut Effects::default());
        let a = &s.alloc_table()["m"];
        assert_eq!(
            (a.desired_transition.migrate, a.modify_index),
            (Some(true), 2)
        );
        assert!(!s.alloc_table().contains_key("gone"));
        assert_eq!(s.tables().allocs, 2);
    }
}
