//! Commands about deployments: what plans and client health reports change in them, and
//! what users (promote, fail, pause, allocation health) and the deployment watcher ask.
//!
//! Counting lives here, in one place: `placed` when a plan places an allocation of the
//! deployment, `healthy`/`unhealthy` when the allocation's health is first decided. A
//! deployment whose groups all reach their desired healthy count (canaries promoted)
//! becomes `successful` and its job version `Stable`.

use super::evals::upsert_evals;
use super::Effects;
use crate::state::StateWriter;
use api::{Allocation, Deployment, DeploymentStatusUpdate, Evaluation};
use std::collections::BTreeMap;

pub(super) const KIND_STATUS: &str = "DeploymentStatusUpdate";
pub(super) const KIND_PROMOTION: &str = "DeploymentPromotion";
pub(super) const KIND_ALLOC_HEALTH: &str = "DeploymentAllocHealth";

/// Deployments changed by one entry, each written once at the end (`finish`).
#[derive(Default)]
pub(super) struct Changes {
    changed: BTreeMap<String, (Deployment, &'static str)>,
}

impl Changes {
    /// The deployment as this entry has changed it so far.
    fn get(&mut self, w: &StateWriter, id: &str, kind: &'static str) -> Option<&mut Deployment> {
        if !self.changed.contains_key(id) {
            let d = w.deployment(id)?;
            self.changed.insert(id.to_string(), ((*d).clone(), kind));
        }
        self.changed.get_mut(id).map(|(d, _)| d)
    }

    /// A new allocation placed for its deployment.
    pub fn placed(&mut self, w: &StateWriter, a: &Allocation) {
        if a.deployment_id.is_empty() {
            return;
        }
        let Some(d) = self.get(w, &a.deployment_id, KIND_STATUS) else {
            return;
        };
        if !d.active() {
            return;
        }
        let g = d.task_groups.entry(a.task_group.to_string()).or_default();
        g.placed_allocs += 1;
        if a.deployment_status.as_ref().is_some_and(|s| s.canary) {
            g.placed_canaries.push(a.id.to_string());
        }
    }

    /// A running allocation updated in place into deployment `a.deployment_id`: it counts
    /// as placed, and as healthy if the client already judged it so.
    pub fn adopted(&mut self, w: &StateWriter, old: &Allocation, a: &Allocation, now: i64) {
        if a.deployment_id.is_empty() || a.deployment_id == old.deployment_id {
            return;
        }
        self.placed(w, a);
        let healthy = old.deployment_status.as_ref().and_then(|s| s.healthy);
        if healthy == Some(true) && !old.client_terminal() {
            let fresh = Allocation {
                deployment_id: a.deployment_id.clone(),
                deployment_status: None,
                ..old.clone()
            };
            self.health(w, &fresh, true, now);
        }
    }

    /// An allocation's health was decided for the first time (`old` had no verdict).
    pub fn health(&mut self, w: &StateWriter, old: &Allocation, healthy: bool, now: i64) {
        let decided = old.deployment_status.as_ref().and_then(|s| s.healthy);
        if old.deployment_id.is_empty() || decided.is_some() {
            return;
        }
        let Some(d) = self.get(w, &old.deployment_id, KIND_ALLOC_HEALTH) else {
            return;
        };
        if !d.active() {
            return;
        }
        let g = d.task_groups.entry(old.task_group.to_string()).or_default();
        if healthy {
            g.healthy_allocs += 1;
            if g.progress_deadline > 0 {
                g.require_progress_by = now.saturating_add(g.progress_deadline);
            }
        } else {
            g.unhealthy_allocs += 1;
        }
    }

    /// Set a deployment's status (no effect on one already terminal, so a late
    /// watcher decision cannot resurrect or overwrite an outcome).
    pub fn status(&mut self, w: &StateWriter, u: &DeploymentStatusUpdate) -> bool {
        let Some(d) = self.get(w, &u.deployment_id, KIND_STATUS) else {
            return false;
        };
        if !d.active() {
            return false;
        }
        d.status = u.status.clone();
        d.status_description = u.status_description.clone();
        true
    }

    /// Write every changed deployment; one that became fully healthy is `successful` and
    /// its job version stable.
    pub fn finish(self, w: &mut StateWriter, now: i64) {
        for (_, (mut d, kind)) in self.changed {
            if w.deployment(&d.id).is_some_and(|old| *old == d) {
                continue; // looked at, not changed
            }
            d.modify_time = now;
            if d.status == api::DEPLOYMENT_STATUS_RUNNING && d.all_healthy() {
                d.status = api::DEPLOYMENT_STATUS_SUCCESSFUL.into();
                d.status_description = api::DEPLOYMENT_DESC_SUCCESSFUL.into();
                w.set_job_stable(&d.namespace, &d.job_id, d.job_version, true);
            }
            w.upsert_deployment(d, kind);
        }
    }
}

/// A stopped job's running deployment is cancelled.
pub(super) fn cancel_for_stopped_job(w: &mut StateWriter, ns: &str, job_id: &str, now: i64) {
    let Some(d) = w.latest_deployment(ns, job_id).filter(|d| d.active()) else {
        return;
    };
    let mut changes = Changes::default();
    changes.status(
        w,
        &DeploymentStatusUpdate {
            deployment_id: d.id.clone(),
            status: api::DEPLOYMENT_STATUS_CANCELLED.into(),
            status_description: api::DEPLOYMENT_DESC_STOPPED_JOB.into(),
        },
    );
    changes.finish(w, now);
}

/// `ApplyPlan`'s deployment part: a new deployment and the status changes of others.
pub(super) fn plan_deployments(
    w: &mut StateWriter,
    deployment: Option<Box<Deployment>>,
    updates: Vec<DeploymentStatusUpdate>,
    now: i64,
) -> Changes {
    let mut changes = Changes::default();
    for u in &updates {
        changes.status(w, u);
    }
    if let Some(mut d) = deployment.map(|d| *d) {
        if w.deployment(&d.id).is_none() {
            d.create_time = now;
            // The first allocation must be healthy within the progress deadline.
            for g in d.task_groups.values_mut() {
                if g.progress_deadline > 0 && g.require_progress_by == 0 {
                    g.require_progress_by = now.saturating_add(g.progress_deadline);
                }
            }
            w.upsert_deployment(d, KIND_STATUS);
        }
    }
    changes
}

/// `Command::UpdateDeploymentStatus`: fail, pause, resume, or the watcher's verdict; with
/// `job`, the stable version it reverts to is registered in the same entry.
pub(super) fn update_status(
    w: &mut StateWriter,
    update: DeploymentStatusUpdate,
    revert_to: Option<api::Job>,
    eval: Option<Evaluation>,
    now: i64,
    fx: &mut Effects,
    resp: &mut super::Response,
) {
    let mut changes = Changes::default();
    if let Some(job) = revert_to {
        // Only while the deployment still runs: a late decision reverts nothing.
        if w.deployment(&update.deployment_id)
            .is_some_and(|d| d.active())
        {
            changes.status(w, &update);
            changes.finish(w, now);
            super::jobs::register_job(w, job, eval, now, fx, resp);
        }
        return;
    }
    if update.status == api::DEPLOYMENT_STATUS_RUNNING {
        // Resume: only a paused deployment.
        if let Some(d) = changes.get(w, &update.deployment_id, KIND_STATUS) {
            if d.status == api::DEPLOYMENT_STATUS_PAUSED {
                d.status = update.status;
                d.status_description = update.status_description;
            }
        }
    } else {
        changes.status(w, &update);
    }
    changes.finish(w, now);
    upsert_evals(w, eval.into_iter().collect(), fx);
}

/// `Command::PromoteDeployment`: mark canaries promoted (all groups, or the named ones)
/// and, as Nomad does, clear `DeploymentStatus.Canary` on the promoted allocations in the
/// same entry, so their agents switch the services from `canary_tags` to `tags` (same
/// registration IDs). The server checked the canaries are healthy before proposing.
pub(super) fn promote(
    w: &mut StateWriter,
    deployment_id: &str,
    groups: &[String],
    eval: Option<Evaluation>,
    now: i64,
    fx: &mut Effects,
) {
    let mut changes = Changes::default();
    let mut promoted_allocs: Vec<String> = Vec::new();
    if let Some(d) = changes.get(w, deployment_id, KIND_PROMOTION) {
        if d.active() {
            for (name, g) in d.task_groups.iter_mut() {
                if g.desired_canaries > 0 && (groups.is_empty() || groups.contains(name)) {
                    g.promoted = true;
                    promoted_allocs.extend(g.placed_canaries.iter().cloned());
                }
            }
            if d.status_description == api::DEPLOYMENT_DESC_NEEDS_PROMOTION
                || d.status_description == api::DEPLOYMENT_DESC_AUTO_PROMOTION
            {
                d.status_description = api::DEPLOYMENT_DESC_RUNNING.into();
            }
        }
    }
    changes.finish(w, now);
    for id in promoted_allocs {
        let Some(old) = w.alloc_table().get(&id).cloned() else {
            continue;
        };
        if old.deployment_id != deployment_id
            || !old.deployment_status.as_ref().is_some_and(|s| s.canary)
        {
            continue;
        }
        let mut a = (*old).clone();
        if let Some(s) = a.deployment_status.as_mut() {
            s.canary = false;
            s.modify_index = w.index();
        }
        a.modify_index = w.index();
        a.alloc_modify_index = w.index();
        a.modify_time = now;
        w.upsert_alloc(a);
    }
    upsert_evals(w, eval.into_iter().collect(), fx);
}

/// `Command::SetAllocHealth`: an operator's verdict on allocations of a deployment
/// (`/v1/deployment/allocation-health/:id`), counted like a client's.
pub(super) fn set_alloc_health(
    w: &mut StateWriter,
    deployment_id: &str,
    healthy: Vec<String>,
    unhealthy: Vec<String>,
    eval: Option<Evaluation>,
    now: i64,
    fx: &mut Effects,
) {
    let mut changes = Changes::default();
    let verdicts = healthy
        .into_iter()
        .map(|id| (id, true))
        .chain(unhealthy.into_iter().map(|id| (id, false)));
    for (id, verdict) in verdicts {
        let Some(old) = w.alloc_table().get(&id).cloned() else {
            continue;
        };
        if old.deployment_id != deployment_id {
            continue;
        }
        changes.health(w, &old, verdict, now);
        let mut a = (*old).clone();
        let mut status = a.deployment_status.clone().unwrap_or_default();
        status.healthy = Some(verdict);
        status.timestamp = now;
        status.modify_index = w.index();
        a.deployment_status = Some(status);
        a.modify_index = w.index();
        a.modify_time = now;
        w.upsert_alloc(a);
    }
    changes.finish(w, now);
    upsert_evals(w, eval.into_iter().collect(), fx);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, register};
    use super::super::{apply, Command, Effects};
    use crate::state::StateStore;
    use api::{AllocClientUpdate, AllocDeploymentStatus, Allocation, Deployment, DeploymentState};

    fn deployment(id: &str, version: u64, total: i64, canaries: i64) -> Deployment {
        Deployment {
            id: id.into(),
            namespace: "default".into(),
            job_id: "a".into(),
            job_version: version,
            status: api::DEPLOYMENT_STATUS_RUNNING.into(),
            status_description: api::DEPLOYMENT_DESC_RUNNING.into(),
            task_groups: [(
                "g".to_string(),
                DeploymentState {
                    desired_total: total,
                    desired_canaries: canaries,
                    progress_deadline: 100,
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    fn alloc(id: &str, dep: &str, canary: bool) -> Allocation {
        Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "a".into(),
            node_id: "n1".into(),
            task_group: "g".into(),
            name: "a.g[0]".into(),
            desired_status: "run".into(),
            client_status: "pending".into(),
            deployment_id: dep.into(),
            deployment_status: canary.then(|| AllocDeploymentStatus {
                canary: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn plan(
        d: Option<Deployment>,
        allocs: Vec<Allocation>,
        updates: Vec<api::DeploymentStatusUpdate>,
    ) -> Command {
        Command::ApplyPlan {
            job: None,
            allocs,
            stops: vec![],
            eval: None,
            create_evals: vec![],
            now: 5,
            deployment: d.map(Box::new),
            deployment_updates: updates,
        }
    }

    fn health(id: &str, healthy: bool, now: i64) -> Command {
        Command::ClientAllocUpdate {
            updates: vec![AllocClientUpdate {
                id: id.into(),
                client_status: "running".into(),
                deployment_status: Some(AllocDeploymentStatus {
                    healthy: Some(healthy),
                    timestamp: now,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            evals: vec![],
            now,
        }
    }

    #[test]
    fn a_plan_creates_its_deployment_and_counts_placements_and_canaries() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 2));
        let cmd = plan(
            Some(deployment("d1", 0, 2, 1)),
            vec![alloc("x", "d1", true), alloc("y", "d1", false)],
            vec![],
        );
        apply(&mut s, 2, cmd, &mut Effects::default());
        let d = s.deployment("d1").unwrap();
        let g = &d.task_groups["g"];
        assert_eq!(
            (g.placed_allocs, g.placed_canaries.clone()),
            (2, vec!["x".to_string()])
        );
        assert_eq!((d.create_index, d.create_time), (2, 5));
        assert_eq!(s.tables().deployments, 2);
        assert_eq!(s.latest_deployment("default", "a").unwrap().id, "d1");
    }

    #[test]
    fn healthy_allocations_complete_the_deployment_and_mark_the_version_stable() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 2));
        let cmd = plan(
            Some(deployment("d1", 0, 2, 0)),
            vec![alloc("x", "d1", false), alloc("y", "d1", false)],
            vec![],
        );
        apply(&mut s, 2, cmd, &mut Effects::default());
        apply(&mut s, 3, health("x", true, 50), &mut Effects::default());
        let d = s.deployment("d1").unwrap();
        assert_eq!(d.status, api::DEPLOYMENT_STATUS_RUNNING);
        assert_eq!(d.task_groups["g"].healthy_allocs, 1);
        assert_eq!(d.task_groups["g"].require_progress_by, 150);
        // A repeated verdict is not counted twice.
        apply(&mut s, 4, health("x", true, 60), &mut Effects::default());
        assert_eq!(
            s.deployment("d1").unwrap().task_groups["g"].healthy_allocs,
            1
        );
        assert!(!s.job("default", "a").unwrap().stable);
        let mut fx = Effects::default();
        apply(&mut s, 5, health("y", true, 70), &mut fx);
        let d = s.deployment("d1").unwrap();
        assert_eq!(
            (d.status.as_str(), d.status_description.as_str()),
            ("successful", "Deployment completed successfully")
        );
        assert!(s.job("default", "a").unwrap().stable);
        assert!(s.job_versions("default", "a")[0].stable);
        assert!(fx
            .events
            .iter()
            .any(|e| e.topic.as_str() == "Deployment" && e.kind == "DeploymentAllocHealth"));
    }

    #[test]
    fn unhealthy_allocations_are_counted_and_canaries_wait_for_promotion() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        let cmd = plan(
            Some(deployment("d1", 0, 1, 1)),
            vec![alloc("c", "d1", true)],
            vec![],
        );
        apply(&mut s, 2, cmd, &mut Effects::default());
        apply(&mut s, 3, health("c", true, 10), &mut Effects::default());
        assert_eq!(
            s.deployment("d1").unwrap().status,
            "running",
            "canary not promoted yet"
        );
        let cmd = Command::PromoteDeployment {
            deployment_id: "d1".into(),
            groups: vec![],
            eval: None,
            now: 11,
        };
        apply(&mut s, 4, cmd, &mut Effects::default());
        let d = s.deployment("d1").unwrap();
        assert!(d.task_groups["g"].promoted);
        assert_eq!(d.status, "successful");
        // Promotion clears the canary flag (the agent switches to `tags`), keeps the
        // health verdict, and bumps the indexes the agent watches.
        let c = &s.alloc_table()["c"];
        let ds = c.deployment_status.as_ref().unwrap();
        assert_eq!((ds.canary, ds.healthy), (false, Some(true)));
        assert_eq!((c.alloc_modify_index, ds.modify_index), (4, 4));

        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        let cmd = plan(
            Some(deployment("d1", 0, 1, 0)),
            vec![alloc("x", "d1", false)],
            vec![],
        );
        apply(&mut s, 2, cmd, &mut Effects::default());
        apply(&mut s, 3, health("x", false, 10), &mut Effects::default());
        let d = s.deployment("d1").unwrap();
        assert_eq!(
            (d.task_groups["g"].unhealthy_allocs, d.status.as_str()),
            (1, "running")
        );
    }

    #[test]
    fn a_newer_versions_plan_cancels_the_running_deployment_but_not_a_finished_one() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        apply(
            &mut s,
            2,
            plan(Some(deployment("d1", 0, 1, 0)), vec![], vec![]),
            &mut Effects::default(),
        );
        let cancel = |id: &str| api::DeploymentStatusUpdate {
            deployment_id: id.into(),
            status: api::DEPLOYMENT_STATUS_CANCELLED.into(),
            status_description: api::DEPLOYMENT_DESC_NEWER_JOB.into(),
        };
        let cmd = plan(Some(deployment("d2", 1, 1, 0)), vec![], vec![cancel("d1")]);
        apply(&mut s, 3, cmd, &mut Effects::default());
        let d1 = s.deployment("d1").unwrap();
        assert_eq!(
            (d1.status.as_str(), d1.status_description.as_str()),
            ("cancelled", "Cancelled due to newer version of job")
        );
        assert_eq!(s.latest_deployment("default", "a").unwrap().id, "d2");
        let fail = Command::UpdateDeploymentStatus {
            update: api::DeploymentStatusUpdate {
                deployment_id: "d1".into(),
                status: api::DEPLOYMENT_STATUS_FAILED.into(),
                status_description: api::DEPLOYMENT_DESC_FAILED_BY_USER.into(),
            },
            job: None,
            eval: None,
            now: 9,
        };
        apply(&mut s, 4, fail, &mut Effects::default());
        assert_eq!(s.deployment("d1").unwrap().status, "cancelled");
    }

    #[test]
    fn an_operators_health_verdict_counts_like_a_clients_and_only_for_its_deployment() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        let cmd = plan(
            Some(deployment("d1", 0, 1, 0)),
            vec![alloc("x", "d1", false), alloc("other", "", false)],
            vec![],
        );
        apply(&mut s, 2, cmd, &mut Effects::default());
        let cmd = Command::SetAllocHealth {
            deployment_id: "d1".into(),
            healthy: vec!["x".into(), "other".into()],
            unhealthy: vec![],
            eval: None,
            now: 9,
        };
        apply(&mut s, 3, cmd, &mut Effects::default());
        let x = &s.alloc_table()["x"];
        assert_eq!(x.deployment_status.as_ref().unwrap().healthy, Some(true));
        assert!(s.alloc_table()["other"].deployment_status.is_none());
        let d = s.deployment("d1").unwrap();
        assert_eq!(
            (d.task_groups["g"].healthy_allocs, d.status.as_str()),
            (1, "successful")
        );
    }

    #[test]
    fn deployments_survive_a_snapshot_round_trip() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        apply(
            &mut s,
            2,
            plan(Some(deployment("d1", 0, 1, 0)), vec![], vec![]),
            &mut Effects::default(),
        );
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.latest_deployment("default", "a").unwrap().id, "d1");
        assert_eq!(back.tables().deployments, 2);
    }
}
