//! The node drainer (leader only): moves allocations off draining nodes without an outage.
//!
//! For each draining node it flags allocations for migration (`DesiredTransition.Migrate`)
//! and creates an evaluation; the scheduler then places each flagged alloc's replacement
//! elsewhere and stops the original in one plan. Per task group it keeps at most
//! `migrate.max_parallel` migrations in flight, where a migration is in flight until its
//! original has stopped on the client AND its replacement reports healthy. Batch allocs
//! are left to finish until the deadline; system allocs go last (unless ignored). At the
//! deadline everything left is flagged at once. The drain is complete only when every
//! allocation on the node has actually stopped on the client.
//!
//! The decision is a pure function of a state snapshot (`plan_drain`), so it survives a
//! leader failover: the new leader simply continues from the state.

use crate::fsm::Command;
use crate::state::StateStore;
use crate::{now_nanos, Server};
use api::{Allocation, DesiredTransition, Evaluation, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the drainer wants done for one node right now.
#[derive(Debug, Default, PartialEq)]
pub struct DrainStep {
    /// Allocations to flag for migration now.
    pub migrate: Vec<String>,
    /// Jobs that need an evaluation for those.
    pub jobs: BTreeSet<(String, String)>,
    /// Every allocation has stopped: the drain is done.
    pub complete: bool,
    /// The deadline passed (everything left was flagged).
    pub deadline_reached: bool,
}

fn job_type(a: &Allocation) -> &str {
    a.job
        .as_ref()
        .map(|j| j.job_type.as_str())
        .unwrap_or(api::JOB_TYPE_SERVICE)
}

fn max_parallel(a: &Allocation) -> usize {
    a.job
        .as_ref()
        .and_then(|j| j.task_group(&a.task_group))
        .and_then(|g| g.migrate.as_ref())
        .map(|m| m.max_parallel)
        .filter(|m| *m > 0)
        .unwrap_or(1) as usize
}

/// Is the migration of `old` still under way (not stopped, or replacement not healthy)?
fn in_flight(state: &StateStore, old: &Allocation) -> bool {
    if !old.client_terminal() {
        return true;
    }
    // Find the replacement: the alloc that names `old` as its previous one.
    let replacement = state
        .allocs_for_job(&old.namespace, &old.job_id)
        .into_iter()
        .find(|a| a.previous_allocation == old.id);
    match replacement {
        // Not placed yet (no capacity?): it counts against the parallelism.
        None => !old.desired_stop(),
        Some(r) => {
            !r.client_terminal()
                && r.deployment_status.as_ref().and_then(|d| d.healthy) != Some(true)
        }
    }
}

pub fn plan_drain(state: &StateStore, node: &Node, now: i64) -> DrainStep {
    let mut step = DrainStep::default();
    let Some(strategy) = &node.drain_strategy else {
        return step;
    };
    let allocs = state.allocs_for_node(&node.id);
    let live: Vec<&Arc<Allocation>> = allocs.iter().filter(|a| !a.client_terminal()).collect();
    let ignored = |a: &Allocation| {
        strategy.ignore_system_jobs
            && matches!(job_type(a), api::JOB_TYPE_SYSTEM | api::JOB_TYPE_SYSBATCH)
    };
    let remaining: Vec<&Arc<Allocation>> = live.iter().copied().filter(|a| !ignored(a)).collect();
    if remaining.is_empty() {
        step.complete = true;
        return step;
    }
    let force = strategy.deadline < 0;
    let past_deadline = force || (strategy.force_deadline > 0 && now >= strategy.force_deadline);
    let flag = |a: &Allocation, step: &mut DrainStep| {
        if !a.desired_transition.should_migrate() && !a.desired_stop() {
            step.migrate.push(a.id.to_string());
            step.jobs
                .insert((a.namespace.to_string(), a.job_id.to_string()));
        }
    };
    if past_deadline {
        step.deadline_reached = true;
        for a in &remaining {
            flag(a, &mut step);
        }
        return step;
    }
    // Service allocs, a few per group at a time.
    let mut groups: BTreeMap<(String, String, String), Vec<&Arc<Allocation>>> = BTreeMap::new();
    for a in allocs
        .iter()
        .filter(|a| job_type(a) == api::JOB_TYPE_SERVICE)
    {
        groups
            .entry((
                a.namespace.to_string(),
                a.job_id.to_string(),
                a.task_group.to_string(),
            ))
            .or_default()
            .push(a);
    }
    let mut service_left = false;
    for list in groups.values() {
        let flagged_in_flight = list
            .iter()
            .filter(|a| a.desired_transition.should_migrate() || a.desired_stop())
            .filter(|a| in_flight(state, a))
            .count();
        let waiting: Vec<_> = list
            .iter()
            .filter(|a| {
                !a.client_terminal() && !a.desired_transition.should_migrate() && !a.desired_stop()
            })
            .collect();
        service_left |= !waiting.is_empty() || flagged_in_flight > 0;
        let room = max_parallel(list[0]).saturating_sub(flagged_in_flight);
        for a in waiting.into_iter().take(room) {
            flag(a, &mut step);
        }
    }
    // System allocs go once the services have left (they may serve them until then).
    let batch_left = remaining.iter().any(|a| job_type(a) == api::JOB_TYPE_BATCH);
    if !service_left && !batch_left {
        for a in remaining
            .iter()
            .filter(|a| matches!(job_type(a), api::JOB_TYPE_SYSTEM | api::JOB_TYPE_SYSBATCH))
        {
            flag(a, &mut step);
        }
    }
    step
}

fn eval_for(
    state: &StateStore,
    ns: &str,
    job_id: &str,
    node_id: &str,
    now: i64,
) -> Option<Evaluation> {
    let job = state.job(ns, job_id)?;
    Some(Evaluation {
        node_id: node_id.to_string(),
        ..Evaluation::new_for_job(&job, "node-drain", now, api::new_id())
    })
}

/// One pass over every draining node.
pub async fn run_once(server: &Arc<Server>) {
    let state = server.snapshot();
    let now = now_nanos();
    let draining: Vec<Arc<Node>> = state
        .node_table()
        .values()
        .filter(|n| n.drain_strategy.is_some())
        .cloned()
        .collect();
    for node in draining {
        let step = plan_drain(&state, &node, now);
        if step.complete {
            tracing::info!(node_id = %node.id, "drain complete");
            let cmd = Command::UpdateNodeDrain {
                node_id: node.id.clone(),
                strategy: None,
                mark_eligible: false,
                drain_status: "complete".into(),
                event: Some(api::NodeEvent {
                    message: "Node drain complete".into(),
                    subsystem: "Drain".into(),
                    timestamp: now,
                    ..Default::default()
                }),
                evals: vec![],
                now,
            };
            if let Err(e) = server.write(cmd).await {
                tracing::warn!(node_id = %node.id, error = %e, "could not mark the drain complete");
            }
            continue;
        }
        if step.migrate.is_empty() {
            continue;
        }
        if step.deadline_reached {
            tracing::info!(node_id = %node.id, allocs = step.migrate.len(), "drain deadline reached; stopping what is left");
        }
        let evals = step
            .jobs
            .iter()
            .filter_map(|(ns, id)| eval_for(&state, ns, id, &node.id, now))
            .collect();
        let transitions = step
            .migrate
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    DesiredTransition {
                        migrate: Some(true),
                        ..Default::default()
                    },
                )
            })
            .collect();
        if let Err(e) = server
            .write(Command::AllocDesiredTransitions { transitions, evals })
            .await
        {
            tracing::warn!(node_id = %node.id, error = %e, "could not flag allocations for migration");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, job_type: &str, max_parallel: i64) -> Arc<api::Job> {
        let mut j = api::Job {
            id: id.into(),
            job_type: job_type.into(),
            task_groups: vec![api::TaskGroup {
                name: "g".into(),
                count: 9,
                migrate: Some(api::MigrateStrategy {
                    max_parallel,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        j.canonicalize();
        Arc::new(j)
    }

    fn alloc(id: &str, node: &str, job: &Arc<api::Job>) -> Allocation {
        Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.id.as_str().into(),
            node_id: node.into(),
            task_group: "g".into(),
            job: Some(job.clone()),
            desired_status: "run".into(),
            client_status: "running".into(),
            ..Default::default()
        }
    }

    fn draining(deadline: i64, force_deadline: i64) -> Node {
        Node {
            id: "n1".into(),
            drain: true,
            drain_strategy: Some(api::DrainStrategy {
                deadline,
                force_deadline,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_allocs_migrate_max_parallel_at_a_time() {
        let web = job("web", "service", 2);
        let mut s = StateStore::default();
        for i in 0..6 {
            crate::fsm::test_put_alloc(&mut s, alloc(&format!("a{i}"), "n1", &web));
        }
        let node = draining(3600, 0);
        let step = plan_drain(&s, &node, 0);
        assert_eq!(step.migrate.len(), 2);
        assert!(!step.complete);
        // Flagged and replaced, replacement not yet healthy: nothing more moves.
        for id in &step.migrate {
            let mut a = (*s.alloc_table()[id]).clone();
            a.desired_transition.migrate = Some(true);
            a.desired_status = "stop".into();
            a.client_status = "complete".into();
            crate::fsm::test_put_alloc(&mut s, a);
            let mut r = alloc(&format!("r-{id}"), "n2", &web);
            r.previous_allocation = id.as_str().into();
            crate::fsm::test_put_alloc(&mut s, r);
        }
        assert!(plan_drain(&s, &node, 0).migrate.is_empty());
        // One replacement turns healthy: one more may go.
        let mut r = (*s.alloc_table()["r-a0"]).clone();
        r.deployment_status = Some(api::AllocDeploymentStatus {
            healthy: Some(true),
            ..Default::default()
        });
        crate::fsm::test_put_alloc(&mut s, r);
        assert_eq!(plan_drain(&s, &node, 0).migrate.len(), 1);
    }

    #[test]
    fn system_allocs_go_last_and_batch_waits_for_the_deadline() {
        let web = job("web", "service", 1);
        let sys = job("sys", "system", 1);
        let bat = job("bat", "batch", 1);
        let mut s = StateStore::default();
        crate::fsm::test_put_alloc(&mut s, alloc("w", "n1", &web));
        crate::fsm::test_put_alloc(&mut s, alloc("s", "n1", &sys));
        crate::fsm::test_put_alloc(&mut s, alloc("b", "n1", &bat));
        let node = draining(3600, 1_000);
        assert_eq!(plan_drain(&s, &node, 0).migrate, vec!["w".to_string()]);
        let mut w = (*s.alloc_table()["w"]).clone();
        w.client_status = "complete".into();
        w.desired_status = "stop".into();
        crate::fsm::test_put_alloc(&mut s, w);
        // The batch alloc still runs: system waits too.
        assert!(plan_drain(&s, &node, 0).migrate.is_empty());
        // At the deadline everything left goes.
        let step = plan_drain(&s, &node, 1_000);
        assert!(step.deadline_reached);
        assert_eq!(step.migrate.len(), 2);
    }

    #[test]
    fn drain_completes_only_when_everything_stopped_on_the_client() {
        let web = job("web", "service", 1);
        let mut s = StateStore::default();
        let mut a = alloc("w", "n1", &web);
        a.desired_status = "stop".into();
        crate::fsm::test_put_alloc(&mut s, a.clone());
        let node = draining(-1, 0);
        assert!(!plan_drain(&s, &node, 0).complete);
        a.client_status = "complete".into();
        crate::fsm::test_put_alloc(&mut s, a);
        assert!(plan_drain(&s, &node, 0).complete);
    }
}
