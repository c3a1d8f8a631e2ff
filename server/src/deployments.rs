//! The deployment watcher (leader only): decides what happens to running deployments
//! that no single report decides: failing one whose allocations turned unhealthy or whose
//! progress deadline passed (reverting to the latest stable version with `auto_revert`),
//! and promoting canaries automatically (`auto_promote`) once all are healthy.
//!
//! The decision is a pure function of a state snapshot and the time (`plan_deployments`),
//! so a new leader continues where the old one was. Counting (placed, healthy,
//! unhealthy) and success are the FSM's (`fsm/deployments.rs`).

use crate::fsm::Command;
use crate::state::StateStore;
use crate::{now_nanos, Server};
use api::{Deployment, DeploymentStatusUpdate, Evaluation, Job};
use std::sync::Arc;

/// What the watcher wants done with one deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum WatcherAction {
    /// Fail it; with a job, register that (stable) version again.
    Fail {
        update: DeploymentStatusUpdate,
        revert_to: Option<Arc<Job>>,
    },
    /// Promote all its canaries.
    Promote { deployment_id: String },
}

/// How many of a group's canaries are healthy, and how many it wants.
pub fn canary_health(state: &StateStore, d: &Deployment, group: &str) -> (i64, i64) {
    let Some(g) = d.task_groups.get(group) else {
        return (0, 0);
    };
    let healthy = g
        .placed_canaries
        .iter()
        .filter_map(|id| state.alloc_table().get(id))
        .filter(|a| a.deployment_status.as_ref().and_then(|s| s.healthy) == Some(true))
        .count() as i64;
    (healthy, g.desired_canaries)
}

/// What an operator asks of a deployment; a terminal one refuses them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    Fail,
    Pause,
    Resume,
    Promote,
    SetHealth,
}

impl OperatorAction {
    /// Nomad's sentence (word for word: clients compare it) refusing this action on a
    /// terminal deployment.
    pub fn terminal_refusal(self) -> &'static str {
        match self {
            OperatorAction::Fail => "can't fail terminal deployment",
            OperatorAction::Pause => "can't pause terminal deployment",
            OperatorAction::Resume => "can't resume terminal deployment",
            OperatorAction::Promote => "can't promote terminal deployment",
            OperatorAction::SetHealth => {
                "can't set health of allocations for a terminal deployment"
            }
        }
    }
}

/// Why promoting these groups of `d` is refused now (Nomad's sentences), if it is.
pub fn promotion_refusal(state: &StateStore, d: &Deployment, groups: &[String]) -> Option<String> {
    if !d.active() {
        return Some(OperatorAction::Promote.terminal_refusal().into());
    }
    if d.status == api::DEPLOYMENT_STATUS_PAUSED {
        return Some("Can't promote a paused deployment; resume it first".into());
    }
    for g in groups {
        if !d.task_groups.contains_key(g) {
            return Some(format!("Deployment does not include task group {g:?}"));
        }
    }
    let mut problems = Vec::new();
    let mut any_canaries = false;
    for (name, g) in &d.task_groups {
        if g.desired_canaries == 0 || g.promoted {
            continue;
        }
        if !groups.is_empty() && !groups.contains(name) {
            continue;
        }
        any_canaries = true;
        let (healthy, desired) = canary_health(state, d, name);
        if healthy < desired {
            problems.push(format!(
                "Task group {name:?} has {healthy}/{desired} healthy allocations"
            ));
        }
    }
    if !any_canaries {
        return Some("No canaries to promote".into());
    }
    match problems.len() {
        0 => None,
        1 => Some(format!("1 error occurred:\n\t* {}\n\n", problems[0])),
        n => Some(format!(
            "{n} errors occurred:\n{}\n",
            problems
                .iter()
                .map(|p| format!("\t* {p}\n"))
                .collect::<String>()
        )),
    }
}

/// The latest stable version of the job older than `version`, if any.
fn stable_before(state: &StateStore, d: &Deployment) -> Option<Arc<Job>> {
    state
        .job_versions(&d.namespace, &d.job_id)
        .into_iter()
        .find(|j| j.stable && j.version < d.job_version)
}

/// A failure of `d` for `why`, with the revert `auto_revert` asks for.
pub fn failure(state: &StateStore, d: &Deployment, why: &str) -> WatcherAction {
    let auto_revert = d.task_groups.values().any(|g| g.auto_revert);
    let mut description = why.to_string();
    let mut revert_to = None;
    if auto_revert {
        match stable_before(state, d) {
            None => description = api::deployment_desc_no_rollback_target(why),
            Some(stable) => {
                let current = state.job(&d.namespace, &d.job_id);
                let same = current
                    .as_deref()
                    .is_some_and(|c| !api::diff::is_new_version(c, &stable));
                if same {
                    description = api::deployment_desc_rollback_noop(why, stable.version);
                } else {
                    description = api::deployment_desc_rollback(why, stable.version);
                    revert_to = Some(stable);
                }
            }
        }
    }
    WatcherAction::Fail {
        update: DeploymentStatusUpdate {
            deployment_id: d.id.clone(),
            status: api::DEPLOYMENT_STATUS_FAILED.into(),
            status_description: description,
        },
        revert_to,
    }
}

/// An unhealthy allocation fails the deployment at once when its group has no progress
/// deadline, or when it cannot be rescheduled any more; otherwise the scheduler replaces
/// it, the replacement may still make progress, and the progress deadline decides (as
/// Nomad does). One already replaced no longer counts: its replacement does.
fn fails_early(state: &StateStore, d: &Deployment, now: i64) -> bool {
    if !d.task_groups.values().any(|g| g.unhealthy_allocs > 0) {
        return false;
    }
    state.allocs_for_deployment(d).iter().any(|a| {
        let unhealthy = a.deployment_status.as_ref().and_then(|s| s.healthy) == Some(false);
        let deadline = d
            .task_groups
            .get(a.task_group.as_str())
            .map_or(0, |g| g.progress_deadline);
        let replaced = !a.next_allocation.is_empty();
        unhealthy && (deadline == 0 || (!replaced && !reschedule_eligible(state, a, now)))
    })
}

/// Whether the allocation's reschedule policy allows another attempt at `now`: earlier
/// attempts are its reschedule tracker's events, or the allocations before it in its
/// chain that failed or were unhealthy in its deployment (the scheduler's count), within
/// the policy's interval.
fn reschedule_eligible(state: &StateStore, a: &api::Allocation, now: i64) -> bool {
    let policy = a
        .job
        .as_ref()
        .and_then(|j| j.task_group(&a.task_group))
        .and_then(|g| g.reschedule_policy.as_ref());
    let Some(p) = policy else {
        return false;
    };
    if p.unlimited {
        return true;
    }
    let recent = a.reschedule_tracker.as_ref().map_or(0, |t| {
        t.events
            .iter()
            .filter(|e| p.interval <= 0 || e.reschedule_time > now - p.interval)
            .count() as i64
    });
    let mut chain = 0i64;
    let mut seen = std::collections::HashSet::new();
    let mut prev = a.previous_allocation.as_str();
    while let Some(b) = state.alloc_table().get(prev) {
        if !seen.insert(prev) {
            break;
        }
        let in_window = p.interval <= 0 || b.modify_time >= now - p.interval;
        let unhealthy = !b.deployment_id.is_empty()
            && b.deployment_id == a.deployment_id
            && b.deployment_status.as_ref().and_then(|s| s.healthy) == Some(false);
        if in_window && (b.client_status == api::ALLOC_CLIENT_FAILED || unhealthy) {
            chain += 1;
        }
        prev = b.previous_allocation.as_str();
    }
    recent.max(chain) < p.attempts
}

/// What to do with every running deployment at `now` (Unix nanoseconds). A paused
/// deployment is left alone: its deadline does not fail it.
pub fn plan_deployments(state: &StateStore, now: i64) -> Vec<WatcherAction> {
    let mut out = Vec::new();
    for d in state.deployment_table().values() {
        if d.status != api::DEPLOYMENT_STATUS_RUNNING {
            continue;
        }
        if fails_early(state, d, now) {
            out.push(failure(state, d, api::DEPLOYMENT_DESC_FAILED_ALLOCS));
            continue;
        }
        let overdue = d.task_groups.values().any(|g| {
            let done =
                g.healthy_allocs >= g.desired_total && (g.desired_canaries == 0 || g.promoted);
            !done && g.require_progress_by > 0 && now > g.require_progress_by
        });
        if overdue {
            out.push(failure(state, d, api::DEPLOYMENT_DESC_PROGRESS_DEADLINE));
            continue;
        }
        let ready = d.auto_promotes()
            && d.requires_promotion()
            && d.task_groups.keys().all(|g| {
                let (healthy, desired) = canary_health(state, d, g);
                healthy >= desired
            });
        if ready {
            out.push(WatcherAction::Promote {
                deployment_id: d.id.clone(),
            });
        }
    }
    out
}

/// An evaluation of `d`'s job, to continue (or undo) the rollout.
pub fn deployment_eval(job: &Job, d: &Deployment, trigger: &str, now: i64) -> Evaluation {
    let mut e = Evaluation::new_for_job(job, trigger, now, api::new_id());
    e.deployment_id = d.id.clone();
    e
}

/// The command that carries out `action`.
pub fn command_for(state: &StateStore, action: WatcherAction, now: i64) -> Option<Command> {
    match action {
        WatcherAction::Fail { update, revert_to } => {
            let d = state.deployment(&update.deployment_id)?;
            let (job, eval) = match revert_to {
                Some(stable) => {
                    let mut job = (*stable).clone();
                    job.stable = false;
                    job.stop = false;
                    let eval = deployment_eval(&job, &d, api::TRIGGER_JOB_REGISTER, now);
                    (Some(job), Some(eval))
                }
                None => (None, None),
            };
            Some(Command::UpdateDeploymentStatus {
                update,
                job,
                eval,
                now,
            })
        }
        WatcherAction::Promote { deployment_id } => {
            let d = state.deployment(&deployment_id)?;
            let job = state.job(&d.namespace, &d.job_id)?;
            Some(Command::PromoteDeployment {
                eval: Some(deployment_eval(
                    &job,
                    &d,
                    api::TRIGGER_DEPLOYMENT_WATCHER,
                    now,
                )),
                deployment_id,
                groups: vec![],
                now,
            })
        }
    }
}

/// One pass of the watcher on the leader.
pub(crate) async fn run_once(server: &Arc<Server>) {
    let state = server.snapshot();
    let now = now_nanos();
    for action in plan_deployments(&state, now) {
        tracing::info!(?action, "deployment watcher");
        if let Some(cmd) = command_for(&state, action, now) {
            if let Err(e) = server.write(cmd).await {
                tracing::warn!(error = %e, "deployment watcher write failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{apply, Effects};
    use api::{AllocDeploymentStatus, Allocation, DeploymentState};

    fn job(version_marker: &str) -> Job {
        let mut j = Job {
            id: "a".into(),
            task_groups: vec![api::TaskGroup {
                name: "g".into(),
                count: 1,
                tasks: vec![api::Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            meta: [("v".to_string(), version_marker.to_string())].into(),
            ..Default::default()
        };
        j.canonicalize();
        j
    }

    fn dep(id: &str, version: u64, g: DeploymentState) -> Deployment {
        Deployment {
            id: id.into(),
            namespace: "default".into(),
            job_id: "a".into(),
            job_version: version,
            status: api::DEPLOYMENT_STATUS_RUNNING.into(),
            status_description: api::DEPLOYMENT_DESC_RUNNING.into(),
            task_groups: [("g".to_string(), g)].into(),
            ..Default::default()
        }
    }

    /// A state with job versions 0 (stable) and 1, and deployment `d` of version 1.
    fn state_with(d: Deployment, allocs: Vec<Allocation>) -> StateStore {
        let mut s = StateStore::default();
        let mut fx = Effects::default();
        let reg = |j| Command::RegisterJob {
            job: j,
            eval: None,
            now: 1,
        };
        apply(&mut s, 1, reg(job("0")), &mut fx);
        let stable = Command::UpdateJobStability {
            namespace: "default".into(),
            job_id: "a".into(),
            version: 0,
            stable: true,
        };
        apply(&mut s, 2, stable, &mut fx);
        apply(&mut s, 3, reg(job("1")), &mut fx);
        let plan = Command::ApplyPlan {
            job: None,
            allocs,
            stops: vec![],
            eval: None,
            create_evals: vec![],
            now: 0,
            deployment: Some(Box::new(d)),
            deployment_updates: vec![],
        };
        apply(&mut s, 4, plan, &mut fx);
        s
    }

    fn canary(id: &str, healthy: Option<bool>) -> Allocation {
        Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "a".into(),
            task_group: "g".into(),
            deployment_id: "d1".into(),
            deployment_status: Some(AllocDeploymentStatus {
                canary: true,
                healthy,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_unhealthy_allocation_fails_the_deployment_and_auto_revert_rolls_back_to_stable() {
        let g = DeploymentState {
            auto_revert: true,
            desired_total: 1,
            unhealthy_allocs: 1,
            ..Default::default()
        };
        // No reschedule policy left to try again: it fails at once.
        let unhealthy = canary("u", Some(false));
        let s = state_with(dep("d1", 1, g), vec![unhealthy]);
        let actions = plan_deployments(&s, 10);
        let [WatcherAction::Fail { update, revert_to }] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(
            update.status_description,
            "Failed due to unhealthy allocations - rolling back to job version 0"
        );
        assert_eq!(revert_to.as_ref().unwrap().version, 0);
        // Carried out, the job has a new version with version 0's spec and the
        // deployment is failed; nothing more to do.
        let mut s = s;
        let cmd = command_for(&s, actions[0].clone(), 20).unwrap();
        apply(&mut s, 5, cmd, &mut Effects::default());
        let cur = s.job("default", "a").unwrap();
        assert_eq!((cur.version, cur.meta["v"].as_str()), (2, "0"));
        assert_eq!(s.deployment("d1").unwrap().status, "failed");
        assert!(plan_deployments(&s, 30).is_empty());
    }

    #[test]
    fn an_unhealthy_allocation_that_can_be_rescheduled_waits_for_the_progress_deadline() {
        let mut j = job("1");
        j.task_groups[0].reschedule_policy = Some(api::ReschedulePolicy {
            unlimited: true,
            ..Default::default()
        });
        let unhealthy = Allocation {
            job: Some(Arc::new(j)),
            ..canary("u", Some(false))
        };
        let g = DeploymentState {
            desired_total: 1,
            unhealthy_allocs: 1,
            progress_deadline: 100,
            require_progress_by: 150,
            ..Default::default()
        };
        let s = state_with(dep("d1", 1, g.clone()), vec![unhealthy.clone()]);
        assert!(
            plan_deployments(&s, 120).is_empty(),
            "a replacement may still make it"
        );
        assert!(
            matches!(&plan_deployments(&s, 151)[..], [WatcherAction::Fail { update, .. }]
            if update.status_description == "Failed due to progress deadline")
        );
        // Without a progress deadline the first unhealthy allocation fails it.
        let no_deadline = DeploymentState {
            progress_deadline: 0,
            require_progress_by: 0,
            ..g
        };
        let s = state_with(dep("d1", 1, no_deadline), vec![unhealthy]);
        assert!(
            matches!(&plan_deployments(&s, 120)[..], [WatcherAction::Fail { update, .. }]
            if update.status_description == "Failed due to unhealthy allocations")
        );
    }

    #[test]
    fn an_unhealthy_replacement_out_of_reschedule_attempts_fails_the_deployment() {
        let mut j = job("1");
        j.task_groups[0].reschedule_policy = Some(api::ReschedulePolicy {
            attempts: 1,
            interval: api::secs(3600),
            ..Default::default()
        });
        let j = Arc::new(j);
        let first = Allocation {
            job: Some(j.clone()),
            ..canary("u0", Some(false))
        };
        let g = DeploymentState {
            desired_total: 1,
            unhealthy_allocs: 1,
            progress_deadline: api::secs(600),
            require_progress_by: api::secs(700),
            ..Default::default()
        };
        // The first unhealthy one has an attempt left: the scheduler replaces it.
        let s = state_with(dep("d1", 1, g.clone()), vec![first.clone()]);
        assert!(plan_deployments(&s, 120).is_empty());
        // Its replacement, unhealthy too, has none: the deployment fails now, while the
        // replaced one no longer counts.
        let second = Allocation {
            job: Some(j),
            previous_allocation: "u0".into(),
            ..canary("u1", Some(false))
        };
        let s = state_with(dep("d1", 1, g.clone()), vec![first.clone(), second.clone()]);
        assert!(
            matches!(&plan_deployments(&s, 120)[..], [WatcherAction::Fail { update, .. }]
            if update.status_description == "Failed due to unhealthy allocations"),
            "{:?}",
            plan_deployments(&s, 120)
        );
        let healthy_second = Allocation {
            deployment_status: Some(AllocDeploymentStatus {
                healthy: Some(true),
                ..Default::default()
            }),
            ..second
        };
        let s = state_with(dep("d1", 1, g), vec![first, healthy_second]);
        assert!(plan_deployments(&s, 120).is_empty());
    }

    #[test]
    fn the_progress_deadline_fails_a_running_deployment_but_not_a_paused_one() {
        let g = DeploymentState {
            desired_total: 2,
            healthy_allocs: 1,
            progress_deadline: 100,
            require_progress_by: 150,
            ..Default::default()
        };
        let s = state_with(dep("d1", 1, g.clone()), vec![]);
        assert!(plan_deployments(&s, 150).is_empty(), "not yet past");
        let actions = plan_deployments(&s, 151);
        assert!(
            matches!(&actions[..], [WatcherAction::Fail { update, revert_to: None }]
                if update.status_description == "Failed due to progress deadline"),
            "{actions:?}"
        );
        let mut paused = dep("d1", 1, g);
        paused.status = api::DEPLOYMENT_STATUS_PAUSED.into();
        let s = state_with(paused, vec![]);
        assert!(plan_deployments(&s, 10_000).is_empty());
    }

    #[test]
    fn canaries_are_auto_promoted_only_once_all_are_healthy_and_refused_manually_before() {
        let g = DeploymentState {
            auto_promote: true,
            desired_total: 2,
            desired_canaries: 2,
            ..Default::default()
        };
        let s = state_with(
            dep("d1", 1, g.clone()),
            vec![canary("c1", Some(true)), canary("c2", None)],
        );
        assert!(plan_deployments(&s, 10).is_empty());
        let d = s.deployment("d1").unwrap();
        assert_eq!(
            promotion_refusal(&s, &d, &[]).unwrap(),
            "1 error occurred:\n\t* Task group \"g\" has 1/2 healthy allocations\n\n"
        );
        let s = state_with(
            dep("d1", 1, g),
            vec![canary("c1", Some(true)), canary("c2", Some(true))],
        );
        let d = s.deployment("d1").unwrap();
        assert_eq!(promotion_refusal(&s, &d, &[]), None);
        assert_eq!(
            plan_deployments(&s, 10),
            vec![WatcherAction::Promote {
                deployment_id: "d1".into()
            }]
        );
    }
}
