//! The plan applier: the only creator of allocations.
//!
//! Plans from all workers queue here and are applied one at a time against the newest
//! state, so two workers' plans can never over-commit a node between them. Whatever no
//! longer fits is refused per node and the worker re-plans from a fresher snapshot.

use crate::fsm::{AllocStop, Command};
use crate::state::StateStore;
use crate::{now_nanos, Server, WriteError};
use api::{Allocation, Evaluation, Plan, PlanResult};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub struct PlanRequest {
    pub plan: Plan,
    /// The evaluation's final state, committed with the plan when all of it fits.
    pub eval_update: Option<Evaluation>,
    pub respond: oneshot::Sender<Result<PlanResult, WriteError>>,
}

pub async fn run(server: Arc<Server>, mut rx: mpsc::Receiver<PlanRequest>) {
    while let Some(req) = rx.recv().await {
        let res = apply_one(&server, req.plan, req.eval_update).await;
        let _ = req.respond.send(res);
    }
}

/// Which nodes of the plan still fit on the newest state.
pub fn evaluate(state: &StateStore, plan: &Plan) -> (Vec<String>, Vec<String>) {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let stopping: HashSet<&str> = plan
        .node_update
        .values()
        .flatten()
        .map(|a| a.id.as_str())
        .collect();
    for (node_id, allocs) in &plan.node_allocation {
        if allocs.is_empty() {
            continue;
        }
        let fits = match state.nodes.get(node_id) {
            None => false,
            Some(node) => {
                let updating: HashSet<&str> = allocs.iter().map(|a| a.id.as_str()).collect();
                let all_updates = allocs.iter().all(|a| state.allocs.contains_key(&a.id));
                if !all_updates && !node.ready_and_eligible() {
                    false
                } else {
                    let (cpu, mem, disk) = node.allocatable();
                    let (mut ucpu, mut umem, mut udisk) = (0, 0, 0);
                    let existing = state.allocs_for_node(node_id);
                    let live = existing.iter().filter(|a| {
                        !a.terminal()
                            && !stopping.contains(a.id.as_str())
                            && !updating.contains(a.id.as_str())
                    });
                    // Re-sent terminal allocs (to record a follow-up eval) take no room.
                    let placed = allocs.iter().filter(|a| !a.client_terminal());
                    for a in live.map(|a| a.as_ref()).chain(placed) {
                        if let Some(r) = &a.resources {
                            ucpu += r.cpu;
                            umem += r.memory_mb;
                            udisk += r.disk_mb;
                        }
                    }
                    ucpu <= cpu && umem <= mem && udisk <= disk
                }
            }
        };
        if fits {
            accepted.push(node_id.clone());
        } else {
            rejected.push(node_id.clone());
        }
    }
    (accepted, rejected)
}

async fn apply_one(
    server: &Arc<Server>,
    plan: Plan,
    eval_update: Option<Evaluation>,
) -> Result<PlanResult, WriteError> {
    let state = server.snapshot();
    let (accepted, rejected) = evaluate(&state, &plan);
    let mut job = None;
    let mut allocs: Vec<Allocation> = Vec::new();
    let mut result = PlanResult::default();
    for node_id in &accepted {
        let list = plan.node_allocation[node_id].clone();
        for mut a in list.iter().cloned() {
            if job.is_none() {
                job = a.job.as_deref().cloned();
            }
            a.job = None;
            allocs.push(a);
        }
        result.node_allocation.insert(node_id.clone(), list);
    }
    let stops: Vec<AllocStop> = plan
        .node_update
        .values()
        .flatten()
        .map(|a| AllocStop {
            id: a.id.clone(),
            desired_status: a.desired_status.clone(),
            desired_description: a.desired_description.clone(),
            client_status: (a.client_status == api::ALLOC_CLIENT_LOST)
                .then(|| api::ALLOC_CLIENT_LOST.to_string()),
            followup_eval_id: a.followup_eval_id.clone(),
        })
        .collect();
    result.node_update = plan.node_update.clone();
    let complete = rejected.is_empty();
    let cmd = Command::ApplyPlan {
        job,
        allocs,
        stops,
        eval: if complete { eval_update } else { None },
        create_evals: if complete { plan.create_evals } else { vec![] },
        now: now_nanos(),
    };
    let resp = server.write(cmd).await?;
    result.alloc_index = resp.index;
    if !complete {
        result.refresh_index = resp.index;
        result.rejected_nodes = rejected;
    }
    Ok(result)
}
