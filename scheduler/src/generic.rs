//! The service and batch scheduler: reconcile, then find a node for each placement.
//!
//! Stops come first so the room they free is visible to the placements. A destructive
//! update or a reschedule stops the allocation it replaces only once the replacement has a
//! node; an allocation on a lost node is stopped regardless.

use crate::feasible::{candidate_nodes, excluded_nodes};
use crate::plan_builder::PlanBuilder;
use crate::reconcile::{
    reconcile, NodeHealth, PlacementReason, ReconcileInput, DESC_MIGRATING, DESC_RESCHEDULED,
    DESC_UPDATING,
};
use crate::select::GroupSelector;
use crate::State;
use api::{Allocation, Job};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

pub(crate) fn schedule_generic<S: State>(b: &mut PlanBuilder<'_, S>, job: &Arc<Job>) {
    let mut allocs = b.state.allocs_by_job(job.ns(), &job.id);
    allocs.sort_by(|x, y| x.id.cmp(&y.id));
    let nodes = b.state.nodes();
    let health = NodeHealth::map(&nodes);
    let recon = reconcile(&ReconcileInput {
        job: Some(job),
        allocs: &allocs,
        node_health: &health,
        eval_id: &b.eval.id,
        now: b.eval.modify_time,
        deployment: b.state.latest_deployment(job.ns(), &job.id).as_deref(),
    });

    b.expect_groups(job);
    for s in &recon.stop {
        b.stop(&s.alloc, s.description);
    }
    for buckets in recon.groups.values() {
        for s in &buckets.stop {
            b.stop(&s.alloc, s.description);
        }
        for alloc in &buckets.lost {
            b.stop_lost(alloc);
        }
        for alloc in &buckets.inplace_update {
            b.update_in_place(alloc, job);
        }
        let mut by_time: BTreeMap<i64, Vec<Arc<Allocation>>> = BTreeMap::new();
        for delayed in &buckets.reschedule_later {
            by_time
                .entry(delayed.wait_until)
                .or_default()
                .push(delayed.alloc.clone());
        }
        for (wait_until, allocs) in by_time {
            b.follow_up(job, wait_until, &allocs);
        }
    }
    // One rolling-update evaluation for the job, at the earliest time a group needs it.
    if let Some(wait_until) = recon.groups.values().filter_map(|g| g.follow_up).min() {
        b.rolling_follow_up(job, wait_until);
    }

    let candidates = candidate_nodes(&nodes, job);
    let excluded = excluded_nodes(&nodes, job);
    // Every live allocation of the job, by node, plus this run's placements: for
    // job-level distinct_property limits.
    let mut job_nodes = live_nodes(b, &allocs, None, &health);
    for group in &job.task_groups {
        let Some(buckets) = recon.groups.get(&group.name) else {
            continue;
        };
        if buckets.place.is_empty() {
            continue;
        }
        let existing = live_nodes(b, &allocs, Some(&group.name), &health);
        let algorithm = b.config.algorithm;
        let mut selector = GroupSelector::new(
            job,
            group,
            &candidates,
            &existing,
            algorithm,
            Some(&mut b.rng),
        )
        .with_job_allocs(&job_nodes)
        .with_exclusions(excluded.clone());
        for placement in &buckets.place {
            let previous = placement.previous.as_deref();
            if b.has_failures(&group.name) {
                // The cluster had no room for the previous one; it has none for this.
                if let (PlacementReason::Migrate, Some(old)) = (placement.reason, previous) {
                    if drain_deadline_passed(
                        b.state.node(&old.node_id).as_deref(),
                        b.eval.modify_time,
                    ) {
                        b.stop(old, DESC_MIGRATING);
                    }
                }
                b.fail(&group.name, selector.empty_metric());
                continue;
            }
            let destructive = placement.reason == PlacementReason::DestructiveUpdate;
            if let (true, Some(old)) = (destructive, previous) {
                // The replacement may take the old allocation's room.
                b.usage.stop(old);
            }
            let penalty: Vec<String> = match (placement.reason, previous) {
                (PlacementReason::Reschedule, Some(old)) => vec![old.node_id.to_string()],
                _ => vec![],
            };
            let chosen = match selector.select(&mut b.usage, &penalty) {
                Ok(node) => {
                    let canary = placement.reason == PlacementReason::Canary;
                    match b.place(job, group, placement.name.clone(), &node, previous, canary) {
                        Ok(()) => Ok(node),
                        Err(e) => Err(Box::new(selector.exhausted_metric(&node, &e))),
                    }
                }
                Err(metric) => Err(metric),
            };
            match chosen {
                Ok(node) => {
                    job_nodes.push(node.clone());
                    match (placement.reason, previous) {
                        (PlacementReason::DestructiveUpdate, Some(old)) => {
                            b.stop(old, DESC_UPDATING)
                        }
                        (PlacementReason::Reschedule, Some(old)) => b.stop(old, DESC_RESCHEDULED),
                        (PlacementReason::Migrate, Some(old)) => b.stop(old, DESC_MIGRATING),
                        _ => {}
                    }
                }
                Err(metric) => {
                    if let (true, Some(old)) = (destructive, previous) {
                        b.usage.unstop(old);
                    }
                    if let (PlacementReason::Migrate, Some(old)) = (placement.reason, previous) {
                        // No room elsewhere: the alloc keeps running on its draining node
                        // (the blocked evaluation retries) unless the drain's deadline
                        // has passed, when it is stopped regardless, as Nomad does.
                        if drain_deadline_passed(
                            b.state.node(&old.node_id).as_deref(),
                            b.eval.modify_time,
                        ) {
                            b.stop(old, DESC_MIGRATING);
                        }
                    }
                    b.fail(&group.name, *metric);
                }
            }
        }
    }
}

/// A forced drain (`deadline` -1), or one whose deadline is behind `now`.
fn drain_deadline_passed(node: Option<&api::Node>, now: i64) -> bool {
    let Some(strategy) = node.and_then(|n| n.drain_strategy.as_ref()) else {
        return false;
    };
    strategy.deadline < 0 || (strategy.force_deadline > 0 && now >= strategy.force_deadline)
}

/// Nodes of the group's (or with `None`, the job's) allocations that keep running, one
/// entry per allocation, for spread counts and property limits.
fn live_nodes<S: State>(
    b: &PlanBuilder<'_, S>,
    allocs: &[Arc<Allocation>],
    group: Option<&str>,
    health: &std::collections::HashMap<String, NodeHealth>,
) -> Vec<Arc<api::Node>> {
    let mut seen = HashSet::new();
    allocs
        .iter()
        .filter(|a| group.is_none_or(|g| a.task_group == g) && !a.terminal())
        .filter(|a| health.get(a.node_id.as_str()) != Some(&NodeHealth::Lost))
        .filter(|a| seen.insert(a.id.clone()))
        .filter_map(|a| b.state.node(&a.node_id))
        .collect()
}
