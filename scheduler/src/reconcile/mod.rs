//! Reconciliation for service and batch jobs: what to place, stop, replace and update.
//!
//! A pure function from the job, its allocations and the health of their nodes to plain
//! buckets per task group. It decides *what* changes, never *where*: placements carry a
//! name and the allocation they replace, and the generic scheduler picks their nodes.

mod group;
mod reschedule;
mod update;

pub use reschedule::{reschedule_decision, reschedule_delay, RescheduleDecision};
pub use update::{
    alloc_healthy, pace, update_kind, update_strategy, Pacing, PacingInput, UpdateKind,
    MIN_ROLLING_WAIT, TRIGGER_ROLLING_UPDATE,
};

use api::{Allocation, Job, Node};
use group::reconcile_group;
use reschedule::History;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const DESC_LOST: &str = "alloc is lost since its node is down";
pub const DESC_JOB_STOPPED: &str = "alloc not needed as job is stopped";
pub const DESC_UPDATING: &str = "alloc is being updated due to job update";
pub const DESC_RESCHEDULED: &str = "alloc was rescheduled because it failed";
pub const DESC_NODE_TAINTED: &str = "alloc not needed as node is tainted";
pub const DESC_MIGRATING: &str = "alloc is being migrated";
pub const DESC_CANARY_PROMOTED: &str = "alloc was replaced by a promoted canary";
pub const DESC_RECONNECTED: &str =
    "alloc not needed as the allocation it replaced reconnected and is running";
pub const DESC_REPLACED_WHILE_DISCONNECTED: &str =
    "alloc was replaced while its node was disconnected";

/// How the scheduler treats a node that allocations run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Ready, eligible, not draining: takes new work.
    Ready,
    /// Up but draining or marked ineligible: its allocations keep running, except those
    /// the drainer flagged for migration (`desired_transition.migrate`), which move.
    Draining,
    /// Up but not taking new work yet (initializing): its allocations keep running.
    Unschedulable,
    /// Down, disconnected or gone from the state: its allocations are lost.
    Lost,
}

impl NodeHealth {
    pub fn of(node: Option<&Node>) -> NodeHealth {
        match node {
            None => NodeHealth::Lost,
            Some(n) if n.is_down() || n.status == api::NODE_STATUS_DISCONNECTED => NodeHealth::Lost,
            Some(n) if n.ready_and_eligible() => NodeHealth::Ready,
            Some(n) if n.drain || n.scheduling_eligibility == api::NODE_INELIGIBLE => {
                NodeHealth::Draining
            }
            Some(_) => NodeHealth::Unschedulable,
        }
    }

    /// Health of every node by ID; IDs missing from the map are lost.
    pub fn map(nodes: &[Arc<Node>]) -> HashMap<String, NodeHealth> {
        nodes
            .iter()
            .map(|n| (n.id.clone(), NodeHealth::of(Some(n))))
            .collect()
    }
}

pub struct ReconcileInput<'a> {
    /// `None` when the job was deregistered or purged.
    pub job: Option<&'a Job>,
    /// All of the job's allocations, terminal ones included.
    pub allocs: &'a [Arc<Allocation>],
    pub node_health: &'a HashMap<String, NodeHealth>,
    /// The evaluation being processed: a failed alloc whose follow-up eval this is gets
    /// rescheduled now.
    pub eval_id: &'a str,
    /// Unix nanoseconds, from the evaluation (never a clock); 0 means unknown, which
    /// reschedules without delay.
    pub now: i64,
    /// The job's newest deployment: promotion and pause/fail of the current version's
    /// rollout (`crate::deployment::gate`).
    pub deployment: Option<&'a api::Deployment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StopAlloc {
    pub alloc: Arc<Allocation>,
    pub description: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementReason {
    /// The group has fewer allocations than its count.
    Missing,
    /// Replaces an allocation on a lost node.
    Lost,
    /// Replaces a failed allocation.
    Reschedule,
    /// Replaces an allocation whose job changed in a way that needs a new one.
    DestructiveUpdate,
    /// Replaces an allocation the drainer moves off its node.
    Migrate,
    /// A canary of the new version beside the old allocation of the same name; it
    /// replaces nothing until promoted.
    Canary,
    /// Stands in for an `unknown` allocation on a disconnected node, which is not stopped:
    /// when the node reconnects, one of the two is kept (see `resolve_reconnects`).
    Disconnected,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// `job.group[index]`.
    pub name: String,
    pub index: u64,
    /// The allocation this one replaces.
    pub previous: Option<Arc<Allocation>>,
    pub reason: PlacementReason,
}

/// A failed allocation whose reschedule must wait until `wait_until` (Unix nanoseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct DelayedReschedule {
    pub alloc: Arc<Allocation>,
    pub wait_until: i64,
}

/// What happens to one task group. Every existing allocation of the group lands in exactly
/// one of `stop`, `lost`, `ignore`, `reschedule_now`, `reschedule_later`, `migrate`,
/// `inplace_update`, `destructive_update`, `awaiting_update`, `canaries` or `disconnected`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupBuckets {
    /// New allocations, including replacements for lost, rescheduled and destructively
    /// updated ones (which say so in `reason` and `previous`).
    pub place: Vec<Placement>,
    /// Live allocations no longer wanted (scale-down).
    pub stop: Vec<StopAlloc>,
    /// Allocations on lost nodes: stopped and marked lost.
    pub lost: Vec<Arc<Allocation>>,
    /// `unknown` allocations on a disconnected node (within the group's
    /// `max_client_disconnect`): left alone, and replaced elsewhere (a `Disconnected`
    /// placement) unless a replacement already holds their name.
    pub disconnected: Vec<Arc<Allocation>>,
    /// Nothing to do.
    pub ignore: Vec<Arc<Allocation>>,
    /// Failed allocations replaced now; stopped once their replacement is placed.
    pub reschedule_now: Vec<Arc<Allocation>>,
    /// Failed allocations to replace later, by a follow-up evaluation.
    pub reschedule_later: Vec<DelayedReschedule>,
    /// Running allocations that take the new job version where they are.
    pub inplace_update: Vec<Arc<Allocation>>,
    /// Running allocations replaced by a new one; stopped once it is placed.
    pub destructive_update: Vec<Arc<Allocation>>,
    /// Allocations the drainer flagged on a draining or ineligible node: each is replaced
    /// elsewhere (a `Migrate` placement) and stopped in the same plan.
    pub migrate: Vec<Arc<Allocation>>,
    /// Running allocations that need a destructive update but wait their turn
    /// (`update.max_parallel`) or for the canaries to be promoted.
    pub awaiting_update: Vec<Arc<Allocation>>,
    /// Canaries of the current version waiting for promotion.
    pub canaries: Vec<Arc<Allocation>>,
    /// When the update must continue: the plan carries a pending `rolling-update`
    /// evaluation with this `wait_until` (Unix nanoseconds; 0: as soon as possible).
    pub follow_up: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciliation {
    /// Per task group of the job.
    pub groups: BTreeMap<String, GroupBuckets>,
    /// Allocations of groups the job no longer has, or of a stopped or missing job.
    pub stop: Vec<StopAlloc>,
}

/// The job to reconcile towards, or, when it is stopped or gone, every live allocation
/// to stop. Both reconcilers (this one and [`crate::reconcile_system`]) start here.
pub(crate) fn running_job<'a>(
    job: Option<&'a Job>,
    allocs: &[Arc<Allocation>],
) -> Result<&'a Job, Vec<StopAlloc>> {
    job.filter(|j| !j.stop).ok_or_else(|| {
        allocs
            .iter()
            .filter(|a| !a.terminal())
            .map(|a| StopAlloc {
                alloc: a.clone(),
                description: DESC_JOB_STOPPED,
            })
            .collect()
    })
}

/// The allocations of groups `job` still has; a live one of a group it no longer has is
/// pushed onto `stop`.
pub(crate) fn of_current_groups<'a>(
    job: &Job,
    allocs: &'a [Arc<Allocation>],
    stop: &mut Vec<StopAlloc>,
) -> Vec<&'a Arc<Allocation>> {
    let mut kept = Vec::new();
    for alloc in allocs {
        if job.task_group(&alloc.task_group).is_some() {
            kept.push(alloc);
        } else if !alloc.terminal() {
            stop.push(StopAlloc {
                alloc: alloc.clone(),
                description: DESC_NOT_NEEDED,
            });
        }
    }
    kept
}

pub fn reconcile(input: &ReconcileInput<'_>) -> Reconciliation {
    let mut out = Reconciliation::default();
    let job = match running_job(input.job, input.allocs) {
        Ok(job) => job,
        Err(stop) => {
            out.stop = stop;
            return out;
        }
    };

    let mut by_group: BTreeMap<&str, Vec<Arc<Allocation>>> = BTreeMap::new();
    for alloc in of_current_groups(job, input.allocs, &mut out.stop) {
        by_group
            .entry(&alloc.task_group)
            .or_default()
            .push(alloc.clone());
    }
    let history = History::new(input.allocs);
    for group in &job.task_groups {
        let mut allocs = by_group.remove(group.name.as_str()).unwrap_or_default();
        allocs.sort_by(|a, b| (a.index(), &a.id).cmp(&(b.index(), &b.id)));
        let buckets = reconcile_group(job, group, &allocs, input, &history);
        out.groups.insert(group.name.clone(), buckets);
    }
    out
}

/// `job.group[index]`, the name Nomad gives allocations.
pub fn alloc_name(job_id: &str, group: &str, index: u64) -> String {
    format!("{job_id}.{group}[{index}]")
}

#[cfg(test)]
mod tests;
