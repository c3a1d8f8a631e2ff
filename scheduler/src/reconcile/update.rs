//! Job updates: in-place or destructive, and how destructive ones are paced
//! (`update.max_parallel`) and previewed (`update.canary`).

use api::{Allocation, Job, TaskGroup, UpdateStrategy};
use std::sync::Arc;

/// `triggered_by` of the evaluation a paced update asks for, to continue later.
pub const TRIGGER_ROLLING_UPDATE: &str = "rolling-update";
/// Shortest wait before a rolling-update follow-up, so a zero `min_healthy_time` does not
/// make the server re-run the job in a tight loop.
pub const MIN_ROLLING_WAIT: i64 = api::secs(1);

/// How an allocation of an older job version catches up with the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// Same job version.
    None,
    /// Only what does not touch the running tasks changed (count, meta, policies).
    InPlace,
    /// Tasks, resources, networks or placement rules changed: replace the allocation.
    Destructive,
}

pub fn update_kind(old: Option<&Job>, new: &Job, group: &str) -> UpdateKind {
    let Some(old) = old else {
        return UpdateKind::Destructive;
    };
    if old.version == new.version && old.job_modify_index == new.job_modify_index {
        return UpdateKind::None;
    }
    let (Some(old_group), Some(new_group)) = (old.task_group(group), new.task_group(group)) else {
        return UpdateKind::Destructive;
    };
    let placement_changed = old.datacenters != new.datacenters
        || old.node_pool != new.node_pool
        || old.constraints != new.constraints
        || old.affinities != new.affinities
        || old.spreads != new.spreads;
    if placement_changed || strip_in_place_fields(old_group) != strip_in_place_fields(new_group) {
        UpdateKind::Destructive
    } else {
        UpdateKind::InPlace
    }
}

/// The group without the fields a running allocation can take on without a restart.
fn strip_in_place_fields(group: &TaskGroup) -> TaskGroup {
    TaskGroup {
        count: 0,
        meta: Default::default(),
        update: None,
        migrate: None,
        restart_policy: None,
        reschedule_policy: None,
        ..group.clone()
    }
}

/// The group's `update` block, or the job's.
pub fn update_strategy<'a>(job: &'a Job, group: &'a TaskGroup) -> Option<&'a UpdateStrategy> {
    group.update.as_ref().or(job.update.as_ref())
}

/// Whether an allocation of the new version counts as healthy for pacing. The client's
/// verdict (`deployment_status.healthy`) decides when it has given one; until then, an
/// allocation is healthy once it has been running for `min_healthy_time` (judged from its
/// `modify_time`; at once when either time is unknown).
pub fn alloc_healthy(alloc: &Allocation, min_healthy_time: i64, now: i64) -> bool {
    if let Some(healthy) = alloc.deployment_status.as_ref().and_then(|d| d.healthy) {
        return healthy;
    }
    alloc.client_status == api::ALLOC_CLIENT_RUNNING
        && (now <= 0
            || alloc.modify_time <= 0
            || alloc.modify_time.saturating_add(min_healthy_time) <= now)
}

/// What the pacer knows about one group's destructive update.
pub struct PacingInput<'a> {
    pub strategy: Option<&'a UpdateStrategy>,
    /// Live allocations of older versions that need replacing, lowest index first.
    pub destructive: Vec<Arc<Allocation>>,
    /// Live allocations of the current version that share their name with a live older
    /// one: canaries waiting for promotion.
    pub canaries: Vec<Arc<Allocation>>,
    /// Other live allocations of the current version (replacements in flight or done).
    pub current: Vec<Arc<Allocation>>,
    /// Whether replacing has started already (an older allocation was stopped for the
    /// current version): canaries, if any, were promoted.
    pub started: bool,
    pub now: i64,
    /// What the current version's deployment allows (promotion, pause or failure).
    pub gate: crate::deployment::Gate,
}

/// The pacer's decision for one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pacing {
    /// Replace these now (placement first, then stop).
    pub replace: Vec<Arc<Allocation>>,
    /// Held back by `max_parallel` or by unpromoted canaries.
    pub wait: Vec<Arc<Allocation>>,
    /// Older allocations to place a canary beside (same name, current version).
    pub new_canaries: Vec<Arc<Allocation>>,
    /// (canary, older allocation it replaces): the older one is stopped.
    pub promote: Vec<(Arc<Allocation>, Arc<Allocation>)>,
    /// Canaries left waiting for promotion.
    pub unpromoted: Vec<Arc<Allocation>>,
    /// New placements for missing names must wait for the canaries' verdict.
    pub hold_new_placements: bool,
    /// A follow-up evaluation is needed to continue (more to replace, or canary health
    /// to watch for `auto_promote`).
    pub follow_up: bool,
}

/// Paces a destructive update: at most `max_parallel` replacements not yet healthy at a
/// time and, with `canary` set, first that many canaries beside the old allocations,
/// promoted (their old allocations stopped) once all are healthy if `auto_promote` is set.
pub fn pace(input: PacingInput<'_>) -> Pacing {
    let mut out = Pacing::default();
    let Some(strategy) = input.strategy else {
        // No update block: everything at once, as Nomad does.
        out.replace = input.destructive;
        out.promote = pair_canaries(input.canaries, &mut out.replace);
        return out;
    };
    let healthy = |a: &Allocation| alloc_healthy(a, strategy.min_healthy_time, input.now);
    if input.gate.halted {
        // A paused or failed deployment: nothing new for this version until resumed.
        out.wait = input.destructive;
        out.unpromoted = input.canaries;
        out.hold_new_placements = true;
        return out;
    }
    let mut destructive = input.destructive;
    let canary_count = strategy.canary.max(0) as usize;
    if canary_count > 0 && !input.started && !destructive.is_empty() {
        let missing = canary_count
            .min(destructive.len())
            .saturating_sub(input.canaries.len());
        // The deployment's `Promoted` decides (set by the promote API or, with
        // `auto_promote`, by the deployment watcher); without one, auto_promote and health.
        let promoted = match input.gate.promoted {
            Some(p) => p,
            None => strategy.auto_promote && input.canaries.iter().all(|c| healthy(c)),
        };
        if missing > 0 || !promoted {
            let has_canary = |a: &Allocation| input.canaries.iter().any(|c| c.name == a.name);
            out.new_canaries = destructive
                .iter()
                .filter(|a| !has_canary(a))
                .take(missing)
                .cloned()
                .collect();
            out.wait = destructive;
            out.unpromoted = input.canaries;
            out.hold_new_placements = true;
            // With a deployment, its watcher (or the promote API) asks for the next run.
            out.follow_up = strategy.auto_promote && input.gate.promoted.is_none();
            return out;
        }
    }
    // Promotion (automatic, or implied because replacing already started).
    out.promote = pair_canaries(input.canaries, &mut destructive);
    let max_parallel = if strategy.max_parallel > 0 {
        strategy.max_parallel as usize
    } else {
        usize::MAX
    };
    let in_flight = input.current.iter().filter(|a| !healthy(a)).count();
    let budget = max_parallel
        .saturating_sub(in_flight)
        .min(destructive.len());
    out.wait = destructive.split_off(budget);
    out.replace = destructive;
    out.follow_up = !out.wait.is_empty();
    out
}

/// Matches each canary with the older allocation of the same name, which leaves the
/// destructive list: the canary replaces it.
fn pair_canaries(
    canaries: Vec<Arc<Allocation>>,
    destructive: &mut Vec<Arc<Allocation>>,
) -> Vec<(Arc<Allocation>, Arc<Allocation>)> {
    let mut pairs = Vec::new();
    for canary in canaries {
        if let Some(i) = destructive.iter().position(|a| a.name == canary.name) {
            let old = destructive.remove(i);
            pairs.push((canary, old));
        }
    }
    pairs
}
