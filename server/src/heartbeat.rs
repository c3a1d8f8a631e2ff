//! Node heartbeat timers, kept on the leader only.
//!
//! A heartbeat resets a timer in memory (no Raft write); a node whose timer runs out is
//! marked down through Raft, with evaluations for every job that had work on it. A new
//! leader gives every node a fresh TTL plus a grace period, so a failover does not mark
//! the fleet down at once.

use crate::fsm::Command;
use crate::state::StateStore;
use crate::{now_nanos, Server};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub struct Heartbeats {
    pub ttl: Duration,
    pub grace: Duration,
    deadlines: Mutex<HashMap<String, Instant>>,
}

impl Heartbeats {
    pub fn new(ttl: Duration, grace: Duration) -> Self {
        Heartbeats {
            ttl,
            grace,
            deadlines: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.deadlines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A heartbeat arrived: the node has another TTL (plus grace for a missed beat).
    pub fn reset(&self, node_id: &str) -> Duration {
        self.lock()
            .insert(node_id.to_string(), Instant::now() + self.ttl + self.grace);
        self.ttl
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn initialize(&self, state: &StateStore) {
        let deadline = Instant::now() + self.ttl + self.grace;
        let mut g = self.lock();
        g.clear();
        for n in state.nodes.values() {
            if n.status != api::NODE_STATUS_DOWN {
                g.insert(n.id.clone(), deadline);
            }
        }
    }

    fn take_expired(&self) -> Vec<String> {
        let now = Instant::now();
        let mut g = self.lock();
        let expired: Vec<String> = g
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            g.remove(id);
        }
        expired
    }
}

/// Evaluations for every job with a live allocation on the node.
pub fn node_evals(state: &StateStore, node_id: &str, now: i64) -> Vec<api::Evaluation> {
    let mut jobs = std::collections::BTreeSet::new();
    for a in state.allocs_for_node(node_id) {
        if !a.terminal() {
            jobs.insert((a.namespace.clone(), a.job_id.clone()));
        }
    }
    // System jobs must cover a node that (re)appears.
    for j in state.jobs.values() {
        if j.job_type == api::JOB_TYPE_SYSTEM || j.job_type == api::JOB_TYPE_SYSBATCH {
            jobs.insert((j.ns().to_string(), j.id.clone()));
        }
    }
    jobs.into_iter()
        .filter_map(|(ns, id)| {
            let job = state.job(&ns, &id)?;
            Some(api::Evaluation {
                id: api::new_id(),
                namespace: ns,
                priority: job.priority,
                eval_type: job.job_type.clone(),
                triggered_by: api::TRIGGER_NODE_UPDATE.into(),
                job_id: id,
                node_id: node_id.to_string(),
                status: api::EVAL_STATUS_PENDING.into(),
                create_time: now,
                modify_time: now,
                ..Default::default()
            })
        })
        .collect()
}

/// Mark nodes whose heartbeats stopped as down.
pub async fn expire(server: &Arc<Server>) {
    for node_id in server.heartbeats.take_expired() {
        let state = server.snapshot();
        let Some(node) = state.nodes.get(&node_id) else {
            continue;
        };
        if node.status == api::NODE_STATUS_DOWN {
            continue;
        }
        let now = now_nanos();
        tracing::warn!(node_id, "node missed its heartbeat TTL; marking it down");
        let cmd = Command::UpdateNodeStatus {
            node_id: node_id.clone(),
            status: api::NODE_STATUS_DOWN.into(),
            now,
            evals: node_evals(&state, &node_id, now),
        };
        if let Err(e) = server.write(cmd).await {
            tracing::warn!(node_id, error = %e, "could not mark node down; will retry");
            server.heartbeats.lock().insert(node_id, Instant::now());
        }
    }
}
