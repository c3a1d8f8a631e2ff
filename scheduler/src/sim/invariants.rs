//! What must hold after every step of the simulation, as checks returning the first
//! violation in words.

use crate::constraint::constraint_holds;
use crate::feasible::{candidate_nodes, group_constraints, GroupFeasibility};
use crate::mock::MemState;
use crate::usage::{fit, Ask, NodeUsage};
use api::{Job, Plan};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Live usage of every node, from the state's live allocations.
pub fn node_usage(state: &MemState) -> HashMap<&str, NodeUsage> {
    let mut out: HashMap<&str, NodeUsage> = HashMap::new();
    for a in state.allocs.values().filter(|a| !a.terminal()) {
        let u = out.entry(a.node_id.as_str()).or_default();
        let ask = Ask::of_alloc(a);
        u.cpu += ask.cpu;
        u.memory_mb += ask.memory_mb;
        u.disk_mb += ask.disk_mb;
        for p in ask.host_ports() {
            *u.ports.entry(p).or_default() += 1;
        }
    }
    out
}

/// One node is not over-committed on any resource and holds no static port twice.
pub fn check_node_capacity(state: &MemState, node_id: &str) -> Result<(), String> {
    use crate::State;
    let mut u = NodeUsage::default();
    for a in state
        .allocs_by_node(node_id)
        .iter()
        .filter(|a| !a.terminal())
    {
        let ask = Ask::of_alloc(a);
        u.cpu += ask.cpu;
        u.memory_mb += ask.memory_mb;
        u.disk_mb += ask.disk_mb;
        for p in ask.host_ports() {
            *u.ports.entry(p).or_default() += 1;
        }
    }
    check_usage(state, node_id, &u)
}

/// No node over-committed on any resource; no static port held twice on a node.
pub fn check_capacity(state: &MemState) -> Result<(), String> {
    for (node_id, u) in node_usage(state) {
        check_usage(state, node_id, &u)?;
    }
    Ok(())
}

fn check_usage(state: &MemState, node_id: &str, u: &NodeUsage) -> Result<(), String> {
    let Some(node) = state.nodes.get(node_id) else {
        return Ok(());
    };
    let (cpu, mem, disk) = node.allocatable();
    if u.cpu > cpu || u.memory_mb > mem || u.disk_mb > disk {
        return Err(format!(
            "node {node_id} over-committed: cpu {}/{cpu}, memory {}/{mem}, disk {}/{disk}",
            u.cpu, u.memory_mb, u.disk_mb
        ));
    }
    if let Some((port, n)) = u.ports.iter().find(|(_, n)| **n > 1) {
        return Err(format!(
            "node {node_id}: port {port} held by {n} allocations"
        ));
    }
    Ok(())
}

/// New allocations of a plan land only on ready, eligible, non-draining nodes of the job's
/// datacenters, and satisfy every constraint.
pub fn check_placements(before: &MemState, plan: &Plan) -> Result<(), String> {
    for alloc in plan.node_allocation.values().flatten() {
        if before.allocs.contains_key(alloc.id.as_str()) {
            continue; // an in-place update or a follow-up marker
        }
        let node = before.nodes.get(alloc.node_id.as_str()).ok_or_else(|| {
            format!(
                "alloc {} placed on unknown node {}",
                alloc.name, alloc.node_id
            )
        })?;
        if !node.ready_and_eligible() {
            return Err(format!(
                "alloc {} placed on node {} (status {}, eligibility {}, drain {})",
                alloc.name, node.id, node.status, node.scheduling_eligibility, node.drain
            ));
        }
        let job = alloc.job.as_ref().ok_or("placed alloc without job")?;
        let group = job
            .task_group(&alloc.task_group)
            .ok_or("placed alloc of unknown group")?;
        for c in group_constraints(job, group) {
            if !c.operand.starts_with("distinct_") && !constraint_holds(c, node) {
                return Err(format!(
                    "alloc {} on node {} breaks constraint {}",
                    alloc.name,
                    node.id,
                    crate::constraint::describe(c)
                ));
            }
        }
        if candidate_nodes(std::slice::from_ref(node), job).is_empty() {
            return Err(format!(
                "alloc {} on node {} outside the job's datacenters or pool",
                alloc.name, node.id
            ));
        }
    }
    Ok(())
}

/// Whether one more allocation of `job`'s first group fits on some feasible node.
fn room_somewhere(state: &MemState, job: &Job, usage: &HashMap<&str, NodeUsage>) -> Option<String> {
    let group = &job.task_groups[0];
    let nodes: Vec<Arc<api::Node>> = state.nodes.values().cloned().collect();
    let mut feasibility = GroupFeasibility::new(job, group);
    let ask = Ask::for_group(group);
    let empty = NodeUsage::default();
    candidate_nodes(&nodes, job)
        .into_iter()
        .find(|n| {
            feasibility.check(n).is_ok()
                && fit(n, usage.get(n.id.as_str()).unwrap_or(&empty), &ask).is_ok()
        })
        .map(|n| n.id.clone())
}

/// Once the cluster is quiet: every service group has its count (or no feasible node has
/// room for another), and every system job runs on every feasible node with room.
pub fn check_converged(state: &MemState) -> Result<(), String> {
    check_capacity(state)?;
    let usage = node_usage(state);
    let mut live: HashSet<(&str, &str)> = HashSet::new();
    let mut per_job: HashMap<&str, usize> = HashMap::new();
    for a in state.allocs.values().filter(|a| !a.terminal()) {
        live.insert((a.job_id.as_str(), a.node_id.as_str()));
        *per_job.entry(a.job_id.as_str()).or_default() += 1;
    }
    for job in state.jobs.values().filter(|j| !j.stop) {
        let group = &job.task_groups[0];
        match job.job_type.as_str() {
            api::JOB_TYPE_SERVICE => {
                let running = per_job.get(job.id.as_str()).copied().unwrap_or(0);
                if (running as i64) < group.count {
                    if let Some(node) = room_somewhere(state, job, &usage) {
                        return Err(format!(
                            "job {} runs {running} of {} allocations although node {node} has room",
                            job.id, group.count
                        ));
                    }
                }
            }
            api::JOB_TYPE_SYSTEM => {
                let nodes: Vec<Arc<api::Node>> = state.nodes.values().cloned().collect();
                let mut feasibility = GroupFeasibility::new(job, group);
                let ask = Ask::for_group(group);
                let empty = NodeUsage::default();
                for n in candidate_nodes(&nodes, job) {
                    if live.contains(&(job.id.as_str(), n.id.as_str()))
                        || feasibility.check(&n).is_err()
                    {
                        continue;
                    }
                    if fit(&n, usage.get(n.id.as_str()).unwrap_or(&empty), &ask).is_ok() {
                        return Err(format!(
                            "system job {} is missing from feasible node {} with room",
                            job.id, n.id
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
