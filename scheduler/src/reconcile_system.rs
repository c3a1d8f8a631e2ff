//! Reconciliation for system and sysbatch jobs: one allocation per group per node.
//!
//! Like [`crate::reconcile`], a pure function returning plain buckets. Placements name a
//! node; the system scheduler then checks that node's feasibility and room.

use crate::reconcile::{
    alloc_name, of_current_groups, running_job, update_kind, NodeHealth, StopAlloc, UpdateKind,
    DESC_NOT_NEEDED,
};
use api::{Allocation, Job, Node, TaskGroup};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct SystemReconcileInput<'a> {
    /// `None` when the job was deregistered or purged.
    pub job: Option<&'a Job>,
    /// All of the job's allocations, terminal ones included.
    pub allocs: &'a [Arc<Allocation>],
    /// Nodes that may take new work for this job (ready, eligible, datacenter, pool).
    pub candidates: &'a [Arc<Node>],
    pub node_health: &'a HashMap<String, NodeHealth>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SystemPlacement {
    pub node_id: String,
    pub group: String,
    pub name: String,
    /// The allocation on this node this one replaces (a destructive update, or a lost one).
    pub previous: Option<Arc<Allocation>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemReconciliation {
    pub place: Vec<SystemPlacement>,
    /// Unwanted allocations: stopped job, removed group, duplicates on a node.
    pub stop: Vec<StopAlloc>,
    /// Allocations on lost nodes: stopped and marked lost, not replaced elsewhere.
    pub lost: Vec<Arc<Allocation>>,
    pub ignore: Vec<Arc<Allocation>>,
    pub inplace_update: Vec<Arc<Allocation>>,
    /// Replaced on the same node by the placement whose `previous` they are.
    pub destructive_update: Vec<Arc<Allocation>>,
    /// Flagged by the drainer on a draining or ineligible node: stopped, not replaced
    /// (the node is what a system job is for).
    pub migrate: Vec<Arc<Allocation>>,
}

pub fn reconcile_system(input: &SystemReconcileInput<'_>) -> SystemReconciliation {
    let mut out = SystemReconciliation::default();
    let job = match running_job(input.job, input.allocs) {
        Ok(job) => job,
        Err(stop) => {
            out.stop = stop;
            return out;
        }
    };

    // (group, node) -> allocations, oldest first.
    let mut by_slot: BTreeMap<(&str, &str), Vec<Arc<Allocation>>> = BTreeMap::new();
    for alloc in of_current_groups(job, input.allocs, &mut out.stop) {
        by_slot
            .entry((&alloc.task_group, &alloc.node_id))
            .or_default()
            .push(alloc.clone());
    }
    for allocs in by_slot.values_mut() {
        allocs.sort_by(|a, b| (a.create_index, &a.id).cmp(&(b.create_index, &b.id)));
    }

    let candidate_ids: std::collections::HashSet<&str> =
        input.candidates.iter().map(|n| n.id.as_str()).collect();
    for group in &job.task_groups {
        let name = alloc_name(&job.id, &group.name, 0);
        // Existing allocations, node by node (including nodes that are not candidates).
        let mut handled = std::collections::HashSet::new();
        for ((g, node_id), allocs) in &by_slot {
            if *g != group.name {
                continue;
            }
            handled.insert(*node_id);
            let is_candidate = candidate_ids.contains(*node_id);
            reconcile_slot(job, group, node_id, allocs, input, is_candidate, &mut out);
        }
        for node in input.candidates {
            if !handled.contains(node.id.as_str()) {
                out.place.push(SystemPlacement {
                    node_id: node.id.clone(),
                    group: group.name.clone(),
                    name: name.clone(),
                    previous: None,
                });
            }
        }
    }
    out.place
        .sort_by(|a, b| (&a.node_id, &a.group).cmp(&(&b.node_id, &b.group)));
    out
}

/// One group's allocations on one node (oldest first): the one live allocation kept,
/// updated, migrated or marked lost, extras stopped, and a placement when the node is a
/// candidate and nothing holds it.
fn reconcile_slot(
    job: &Job,
    group: &TaskGroup,
    node_id: &str,
    allocs: &[Arc<Allocation>],
    input: &SystemReconcileInput<'_>,
    is_candidate: bool,
    out: &mut SystemReconciliation,
) {
    let name = alloc_name(&job.id, &group.name, 0);
    let health = input
        .node_health
        .get(node_id)
        .copied()
        .unwrap_or(NodeHealth::Lost);
    let mut live = allocs.iter().filter(|a| !a.terminal());
    let first_live = live.next();
    for extra in live {
        out.stop.push(StopAlloc {
            alloc: extra.clone(),
            description: DESC_NOT_NEEDED,
        });
    }
    if let Some(alloc) = first_live {
        if health == NodeHealth::Lost {
            out.lost.push(alloc.clone());
            return;
        }
        out.ignore
            .extend(allocs.iter().filter(|a| a.terminal()).cloned());
        if health == NodeHealth::Draining && alloc.desired_transition.should_migrate() {
            out.migrate.push(alloc.clone());
            return;
        }
        match update_kind(alloc.job.as_deref(), job, &group.name) {
            UpdateKind::None => out.ignore.push(alloc.clone()),
            // A node that takes no new work keeps the old version running.
            UpdateKind::Destructive if health != NodeHealth::Ready => {
                out.ignore.push(alloc.clone())
            }
            UpdateKind::InPlace => out.inplace_update.push(alloc.clone()),
            UpdateKind::Destructive => {
                out.destructive_update.push(alloc.clone());
                out.place.push(SystemPlacement {
                    node_id: node_id.to_string(),
                    group: group.name.clone(),
                    name: name.clone(),
                    previous: Some(alloc.clone()),
                });
            }
        }
        return;
    }
    // No live allocation here: a finished or failed one of the current version
    // holds the node (sysbatch runs once; a failing system task is not retried in
    // a loop), anything else leaves it open.
    out.ignore.extend(allocs.iter().cloned());
    let settled = allocs.iter().any(|a| {
        !a.desired_stop()
            && matches!(
                a.client_status.as_str(),
                api::ALLOC_CLIENT_COMPLETE | api::ALLOC_CLIENT_FAILED
            )
            && update_kind(a.job.as_deref(), job, &group.name) != UpdateKind::Destructive
    });
    if !settled && is_candidate {
        out.place.push(SystemPlacement {
            node_id: node_id.to_string(),
            group: group.name.clone(),
            name: name.clone(),
            previous: allocs.last().cloned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use crate::reconcile::DESC_JOB_STOPPED;
    use api::{ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, JOB_TYPE_SYSBATCH, JOB_TYPE_SYSTEM};

    fn run(job: Option<&Job>, allocs: &[Allocation], nodes: &[Node]) -> SystemReconciliation {
        let nodes: Vec<Arc<Node>> = nodes.iter().cloned().map(Arc::new).collect();
        let allocs: Vec<Arc<Allocation>> = allocs.iter().cloned().map(Arc::new).collect();
        let health = NodeHealth::map(&nodes);
        let candidates = match job {
            Some(j) => crate::feasible::candidate_nodes(&nodes, j),
            None => vec![],
        };
        reconcile_system(&SystemReconcileInput {
            job,
            allocs: &allocs,
            candidates: &candidates,
            node_health: &health,
        })
    }

    fn placed_nodes(r: &SystemReconciliation) -> Vec<&str> {
        r.place.iter().map(|p| p.node_id.as_str()).collect()
    }

    #[test]
    fn places_one_per_schedulable_node() {
        let job = mock::job("agent", JOB_TYPE_SYSTEM);
        let mut drained = mock::node("c");
        drained.drain = true;
        let nodes = [mock::node("a"), mock::node("b"), drained];
        let running = mock::alloc(&Arc::new(job.clone()), "web", 0, &nodes[0]);
        let r = run(Some(&job), &[running], &nodes);
        assert_eq!(placed_nodes(&r), ["b"]);
        assert_eq!(r.place[0].name, "agent.web[0]");
        assert_eq!(r.ignore.len(), 1);
    }

    #[test]
    fn allocs_on_down_nodes_are_lost_not_replaced() {
        let job = mock::job("agent", JOB_TYPE_SYSTEM);
        let mut down = mock::node("a");
        down.status = api::NODE_STATUS_DOWN.into();
        let alloc = mock::alloc(&Arc::new(job.clone()), "web", 0, &down);
        let r = run(Some(&job), &[alloc], &[down]);
        assert_eq!(r.lost.len(), 1);
        assert!(r.place.is_empty());
    }

    #[test]
    fn sysbatch_does_not_rerun_completed_allocs() {
        let job = mock::job("once", JOB_TYPE_SYSBATCH);
        let nodes = [mock::node("a"), mock::node("b")];
        let mut done = mock::alloc(&Arc::new(job.clone()), "web", 0, &nodes[0]);
        done.client_status = ALLOC_CLIENT_COMPLETE.into();
        let r = run(Some(&job), &[done], &nodes);
        assert_eq!(placed_nodes(&r), ["b"]);
    }

    #[test]
    fn failed_system_alloc_of_current_version_is_not_retried_but_new_version_is() {
        let job = mock::job("agent", JOB_TYPE_SYSTEM);
        let nodes = [mock::node("a")];
        let mut failed = mock::alloc(&Arc::new(job.clone()), "web", 0, &nodes[0]);
        failed.client_status = ALLOC_CLIENT_FAILED.into();
        assert!(run(Some(&job), &[failed.clone()], &nodes).place.is_empty());
        let mut new = job.clone();
        new.version += 1;
        new.task_groups[0].tasks[0]
            .env
            .insert("X".into(), "1".into());
        let r = run(Some(&new), &[failed.clone()], &nodes);
        assert_eq!(placed_nodes(&r), ["a"]);
        assert_eq!(r.place[0].previous.as_ref().unwrap().id, failed.id);
    }

    #[test]
    fn job_update_is_in_place_or_destructive() {
        let job = mock::job("agent", JOB_TYPE_SYSTEM);
        let nodes = [mock::node("a")];
        let alloc = mock::alloc(&Arc::new(job.clone()), "web", 0, &nodes[0]);
        let mut meta_only = job.clone();
        meta_only.version += 1;
        meta_only.meta.insert("k".into(), "v".into());
        let r = run(Some(&meta_only), std::slice::from_ref(&alloc), &nodes);
        assert_eq!(r.inplace_update.len(), 1);
        assert!(r.place.is_empty());
        let mut changed = job.clone();
        changed.version += 1;
        changed.task_groups[0].tasks[0].driver = "docker".into();
        let r = run(Some(&changed), &[alloc], &nodes);
        assert_eq!(r.destructive_update.len(), 1);
        assert_eq!(placed_nodes(&r), ["a"]);
    }

    #[test]
    fn stopped_job_stops_everything_live() {
        let mut job = mock::job("agent", JOB_TYPE_SYSTEM);
        let nodes = [mock::node("a")];
        let alloc = mock::alloc(&Arc::new(job.clone()), "web", 0, &nodes[0]);
        job.stop = true;
        let r = run(Some(&job), std::slice::from_ref(&alloc), &nodes);
        assert_eq!(r.stop.len(), 1);
        assert_eq!(r.stop[0].description, DESC_JOB_STOPPED);
        let r = run(None, &[alloc], &nodes);
        assert_eq!(r.stop.len(), 1);
    }

    #[test]
    fn duplicate_allocs_on_a_node_are_stopped() {
        let job = mock::job("agent", JOB_TYPE_SYSTEM);
        let nodes = [mock::node("a")];
        let first = mock::alloc(&Arc::new(job.clone()), "web", 0, &nodes[0]);
        let mut second = first.clone();
        second.id = "zzz".into();
        second.create_index = 99;
        let r = run(Some(&job), &[first, second], &nodes);
        assert_eq!(r.stop.len(), 1);
        assert_eq!(r.stop[0].alloc.id, "zzz");
    }
}
