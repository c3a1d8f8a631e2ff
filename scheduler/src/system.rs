//! The system and sysbatch scheduler: one allocation of each group on every feasible node.
//!
//! There is no ranking: the reconciler names the node. A node that fails feasibility is
//! skipped without a word (the job does not want it); a feasible node without room is a
//! failed placement, reported in `failed_tg_allocs` and retried by a blocked evaluation.

use crate::feasible::{candidate_nodes, excluded_nodes};
use crate::plan_builder::PlanBuilder;
use crate::reconcile::{NodeHealth, DESC_MIGRATING, DESC_NODE_TAINTED, DESC_UPDATING};
use crate::reconcile_system::{reconcile_system, SystemReconcileInput};
use crate::select::{GroupSelector, NodeVerdict};
use crate::State;
use api::Job;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn schedule_system<S: State>(b: &mut PlanBuilder<'_, S>, job: &Arc<Job>) {
    let mut allocs = b.state.allocs_by_job(job.ns(), &job.id);
    allocs.sort_by(|x, y| x.id.cmp(&y.id));
    let nodes = b.state.nodes();
    let health = NodeHealth::map(&nodes);
    let candidates = candidate_nodes(&nodes, job);
    let recon = reconcile_system(&SystemReconcileInput {
        job: Some(job),
        allocs: &allocs,
        candidates: &candidates,
        node_health: &health,
    });

    b.expect_groups(job);
    for s in &recon.stop {
        b.stop(&s.alloc, s.description);
    }
    for alloc in &recon.lost {
        b.stop_lost(alloc);
    }
    for alloc in &recon.migrate {
        b.stop(alloc, DESC_MIGRATING);
    }
    for alloc in &recon.inplace_update {
        b.update_in_place(alloc, job);
    }

    let by_id: HashMap<&str, &Arc<api::Node>> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let algorithm = b.config.algorithm;
    let excluded = excluded_nodes(&nodes, job);
    let mut selectors: HashMap<&str, GroupSelector<'_>> = job
        .task_groups
        .iter()
        .map(|g| {
            let sel = GroupSelector::new(
                job,
                g,
                &candidates,
                &[],
                algorithm,
                None::<&mut rand_chacha::ChaCha8Rng>,
            )
            .with_exclusions(excluded.clone());
            (g.name.as_str(), sel)
        })
        .collect();

    for placement in &recon.place {
        let (Some(node), Some(group), Some(selector)) = (
            by_id.get(placement.node_id.as_str()),
            job.task_group(&placement.group),
            selectors.get_mut(placement.group.as_str()),
        ) else {
            continue;
        };
        // A destructive update may reuse the room of the allocation it replaces.
        let replaced = placement.previous.as_deref().filter(|p| !p.terminal());
        if let Some(old) = replaced {
            b.usage.stop(old);
        }
        let verdict = match selector.check_node(node, b.usage.node(&node.id)) {
            NodeVerdict::Fits => {
                let previous = placement.previous.as_deref();
                match b.place(job, group, placement.name.clone(), node, previous, false) {
                    Ok(()) => NodeVerdict::Fits,
                    Err(e) => NodeVerdict::Exhausted(e.dimension()),
                }
            }
            other => other,
        };
        match &verdict {
            NodeVerdict::Fits => {
                selector.record(node);
                if let Some(old) = replaced {
                    b.stop(old, DESC_UPDATING);
                }
            }
            NodeVerdict::Filtered(_) => {
                // The new version does not want this node: its old allocation goes.
                if let Some(old) = replaced {
                    b.stop(old, DESC_NODE_TAINTED);
                }
            }
            NodeVerdict::Exhausted(_) => {
                if let Some(old) = replaced {
                    b.usage.unstop(old);
                }
                let base = selector.empty_metric();
                b.fail_on_node(&group.name, base, node, &verdict);
            }
        }
    }
}
