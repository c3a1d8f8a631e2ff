//! Node heartbeat timers, kept on the leader only.
//!
//! A heartbeat resets a timer in memory (no Raft write); a node whose timer runs out is
//! marked down through Raft, with evaluations for every job that had work on it. A new
//! leader gives every node a fresh TTL plus a grace period, so a failover does not mark
//! the fleet down at once.
//!
//! Disconnected clients: when the node runs a live allocation of a service or batch group
//! with `max_client_disconnect`, it is marked `disconnected` instead, those allocations
//! `unknown` (the scheduler replaces them elsewhere without stopping them) and the rest
//! lost as usual. Each `unknown` allocation becomes `lost` once its group's window has
//! passed since the disconnect, and the node `down` once none is left within its window.
//! The window is measured from the node's `status_updated_at` in the replicated state, not
//! from a timer, so it survives a leader failover. The decisions are pure functions of a
//! state snapshot (`missed_heartbeat`, `disconnect_expiry`).

use crate::fsm::{AllocStatusChange, Command};
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

    /// Nodes with a live TTL timer (`nomad.nomad.heartbeat.active`).
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn initialize(&self, state: &StateStore) {
        let deadline = Instant::now() + self.ttl + self.grace;
        let mut g = self.lock();
        g.clear();
        for n in state.node_table().values() {
            // A disconnected node's fate is in its allocations' windows, not in a TTL.
            if n.status != api::NODE_STATUS_DOWN && n.status != api::NODE_STATUS_DISCONNECTED {
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

pub const DESC_UNKNOWN: &str =
    "node stopped heartbeating; the alloc's state is unknown until the node reconnects";
pub const DESC_LOST_AFTER_DISCONNECT: &str =
    "node did not reconnect within the group's max_client_disconnect";

/// What the leader writes for a node: its new status and the client statuses that change
/// with it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatusDecision {
    pub status: &'static str,
    pub alloc_updates: Vec<AllocStatusChange>,
}

impl NodeStatusDecision {
    /// The write that carries it out, applied only while the node is still `if_status`,
    /// with the evaluations the node's jobs need.
    fn command(self, state: &StateStore, node_id: &str, if_status: &str, now: i64) -> Command {
        Command::UpdateNodeStatus {
            node_id: node_id.to_string(),
            status: self.status.into(),
            now,
            evals: node_evals(state, node_id, now),
            if_status: Some(if_status.to_string()),
            alloc_updates: self.alloc_updates,
        }
    }
}

/// The `max_client_disconnect` (nanoseconds) of an allocation's group, if it has one.
/// System and sysbatch allocations are lost with their node, as before (their reconciler
/// does not know `unknown` yet).
pub fn disconnect_window(alloc: &api::Allocation) -> Option<i64> {
    let job = alloc.job.as_ref()?;
    if job.job_type != api::JOB_TYPE_SERVICE && job.job_type != api::JOB_TYPE_BATCH {
        return None;
    }
    job.task_group(&alloc.task_group)?
        .max_client_disconnect
        .filter(|w| *w > 0)
}

/// A node missed its heartbeat TTL: `disconnected` (its allocations with a disconnect
/// window become `unknown`) when it runs any such allocation, `down` otherwise. `None`
/// when the node is gone or already down or disconnected.
pub fn missed_heartbeat(state: &StateStore, node_id: &str) -> Option<NodeStatusDecision> {
    let node = state.node_table().get(node_id)?;
    if node.status == api::NODE_STATUS_DOWN || node.status == api::NODE_STATUS_DISCONNECTED {
        return None;
    }
    let mut allocs = state.allocs_for_node(node_id);
    allocs.sort_by(|a, b| a.id.cmp(&b.id));
    let alloc_updates: Vec<AllocStatusChange> = allocs
        .iter()
        .filter(|a| !a.terminal() && disconnect_window(a).is_some())
        .map(|a| AllocStatusChange {
            id: a.id.to_string(),
            from: a.client_status.to_string(),
            client_status: api::ALLOC_CLIENT_UNKNOWN.into(),
            client_description: DESC_UNKNOWN.into(),
        })
        .collect();
    let status = if alloc_updates.is_empty() {
        api::NODE_STATUS_DOWN
    } else {
        api::NODE_STATUS_DISCONNECTED
    };
    Some(NodeStatusDecision {
        status,
        alloc_updates,
    })
}

/// For a disconnected node at `now` (Unix nanoseconds): its `unknown` allocations whose
/// window has passed become `lost`, and the node goes `down` when none is left within its
/// window. `None` when nothing is due. The disconnect time is `status_updated_at` (whole
/// seconds) rounded up, so a window never ends early.
pub fn disconnect_expiry(
    state: &StateStore,
    node: &api::Node,
    now: i64,
) -> Option<NodeStatusDecision> {
    if node.status != api::NODE_STATUS_DISCONNECTED {
        return None;
    }
    let since = (node.status_updated_at + 1).saturating_mul(1_000_000_000);
    let mut allocs = state.allocs_for_node(&node.id);
    allocs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut within_window = false;
    let mut alloc_updates = Vec::new();
    for a in allocs
        .iter()
        .filter(|a| a.client_status == api::ALLOC_CLIENT_UNKNOWN)
    {
        let ends = since.saturating_add(disconnect_window(a).unwrap_or(0));
        if now < ends {
            within_window = true;
            continue;
        }
        alloc_updates.push(AllocStatusChange {
            id: a.id.to_string(),
            from: api::ALLOC_CLIENT_UNKNOWN.into(),
            client_status: api::ALLOC_CLIENT_LOST.into(),
            client_description: DESC_LOST_AFTER_DISCONNECT.into(),
        });
    }
    if within_window && alloc_updates.is_empty() {
        return None;
    }
    let status = if within_window {
        api::NODE_STATUS_DISCONNECTED
    } else {
        api::NODE_STATUS_DOWN
    };
    Some(NodeStatusDecision {
        status,
        alloc_updates,
    })
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
    for j in state.job_table().values() {
        if j.job_type == api::JOB_TYPE_SYSTEM || j.job_type == api::JOB_TYPE_SYSBATCH {
            jobs.insert((j.ns().to_string().into(), j.id.as_str().into()));
        }
    }
    jobs.into_iter()
        .filter_map(|(ns, id)| {
            let job = state.job(&ns, &id)?;
            let trigger = api::TRIGGER_NODE_UPDATE;
            Some(api::Evaluation {
                node_id: node_id.to_string(),
                ..api::Evaluation::new_for_job(&job, trigger, now, api::new_id())
            })
        })
        .collect()
}

/// Mark nodes whose heartbeats stopped as down, or disconnected (see the module docs).
pub async fn expire(server: &Arc<Server>) {
    for node_id in server.heartbeats.take_expired() {
        let state = server.snapshot();
        let Some(node) = state.node_table().get(&node_id) else {
            continue;
        };
        let Some(decision) = missed_heartbeat(&state, &node_id) else {
            continue;
        };
        let now = now_nanos();
        tracing::warn!(
            node_id,
            status = decision.status,
            unknown_allocs = decision.alloc_updates.len(),
            "node missed its heartbeat TTL"
        );
        let cmd = decision.command(&state, &node_id, &node.status, now);
        if let Err(e) = server.write(cmd).await {
            tracing::warn!(node_id, error = %e, "could not update the node's status; will retry");
            server.heartbeats.lock().insert(node_id, Instant::now());
        }
    }
}

/// End the disconnect windows that have passed (leader only; every tick). A failed write
/// is retried on the next tick, since the decision is made from the state again.
pub async fn expire_disconnects(server: &Arc<Server>) {
    let state = server.snapshot();
    let now = now_nanos();
    let due: Vec<_> = state
        .node_table()
        .values()
        .filter(|n| n.status == api::NODE_STATUS_DISCONNECTED)
        .filter_map(|n| Some((n.id.clone(), disconnect_expiry(&state, n, now)?)))
        .collect();
    for (node_id, decision) in due {
        tracing::warn!(
            node_id,
            status = decision.status,
            lost_allocs = decision.alloc_updates.len(),
            "disconnect window over"
        );
        let cmd = decision.command(&state, &node_id, api::NODE_STATUS_DISCONNECTED, now);
        if let Err(e) = server.write(cmd).await {
            tracing::warn!(node_id, error = %e, "could not end the disconnect window; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{apply, Effects};
    use scheduler::mock;

    const SECOND: i64 = 1_000_000_000;

    fn job(id: &str, job_type: &str, window_secs: Option<i64>) -> Arc<api::Job> {
        let mut j = mock::job(id, job_type);
        j.task_groups[0].max_client_disconnect = window_secs.map(|s| s * SECOND);
        Arc::new(j)
    }

    /// Node `n1` with one running alloc of each job.
    fn state_with(jobs: &[Arc<api::Job>]) -> StateStore {
        let mut s = StateStore::default();
        let node = mock::node("n1");
        for j in jobs {
            crate::fsm::test_put_alloc(&mut s, mock::alloc(j, "web", 0, &node));
        }
        crate::fsm::test_put_node(&mut s, node);
        s
    }

    fn alloc_id(j: &api::Job) -> String {
        format!("{}.web[0]@n1", j.id)
    }

    /// Applies a decision for `n1` as the leader would, at `now`.
    fn commit(s: &mut StateStore, index: u64, d: NodeStatusDecision, now: i64) {
        let if_status = Some(s.node_table()["n1"].status.clone());
        apply(
            s,
            index,
            Command::UpdateNodeStatus {
                node_id: "n1".into(),
                status: d.status.into(),
                now,
                evals: vec![],
                if_status,
                alloc_updates: d.alloc_updates,
            },
            &mut Effects::default(),
        );
    }

    #[test]
    fn a_missed_heartbeat_disconnects_a_node_running_a_group_with_a_window() {
        let with = job("with", api::JOB_TYPE_SERVICE, Some(30));
        let without = job("without", api::JOB_TYPE_SERVICE, None);
        let s = state_with(&[with.clone(), without.clone()]);
        let d = missed_heartbeat(&s, "n1").unwrap();
        assert_eq!(d.status, api::NODE_STATUS_DISCONNECTED);
        assert_eq!(d.alloc_updates.len(), 1);
        assert_eq!(d.alloc_updates[0].id, alloc_id(&with));
        assert_eq!(d.alloc_updates[0].from, api::ALLOC_CLIENT_RUNNING);
        assert_eq!(d.alloc_updates[0].client_status, api::ALLOC_CLIENT_UNKNOWN);
    }

    #[test]
    fn a_missed_heartbeat_marks_a_node_down_without_such_live_allocs() {
        let without = job("without", api::JOB_TYPE_SERVICE, None);
        let system = job("sys", api::JOB_TYPE_SYSTEM, Some(30));
        let mut s = state_with(&[without, system]);
        // A finished alloc of a group with a window does not hold the node either.
        let done = job("done", api::JOB_TYPE_BATCH, Some(30));
        let mut a = mock::alloc(&done, "web", 0, &s.node_table()["n1"]);
        a.client_status = api::ALLOC_CLIENT_COMPLETE.into();
        crate::fsm::test_put_alloc(&mut s, a);
        let d = missed_heartbeat(&s, "n1").unwrap();
        assert_eq!(d.status, api::NODE_STATUS_DOWN);
        assert!(d.alloc_updates.is_empty());
    }

    #[test]
    fn nodes_already_down_or_disconnected_are_left_to_their_windows() {
        let mut s = state_with(&[job("with", api::JOB_TYPE_SERVICE, Some(30))]);
        for status in [api::NODE_STATUS_DOWN, api::NODE_STATUS_DISCONNECTED] {
            let mut n = (*s.node_table()["n1"]).clone();
            n.status = status.into();
            crate::fsm::test_put_node(&mut s, n);
            assert_eq!(missed_heartbeat(&s, "n1"), None);
        }
        assert_eq!(missed_heartbeat(&s, "gone"), None);
    }

    #[test]
    fn the_window_is_measured_from_the_replicated_disconnect_time() {
        let with = job("with", api::JOB_TYPE_SERVICE, Some(30));
        let mut s = state_with(std::slice::from_ref(&with));
        let t0 = 1_700_000_000 * SECOND + SECOND / 2;
        let d = missed_heartbeat(&s, "n1").unwrap();
        commit(&mut s, 2, d, t0);
        let node = s.node_table()["n1"].clone();
        assert_eq!(node.status, api::NODE_STATUS_DISCONNECTED);
        assert_eq!(
            s.alloc_table()[&alloc_id(&with)].client_status,
            api::ALLOC_CLIENT_UNKNOWN
        );

        // Any leader reading this state decides the same: nothing is due within 30s...
        assert_eq!(disconnect_expiry(&s, &node, t0 + 30 * SECOND - 1), None);
        // ...and after it, the alloc is lost and the node down.
        let d = disconnect_expiry(&s, &node, t0 + 31 * SECOND).unwrap();
        assert_eq!(d.status, api::NODE_STATUS_DOWN);
        assert_eq!(d.alloc_updates.len(), 1);
        assert_eq!(d.alloc_updates[0].client_status, api::ALLOC_CLIENT_LOST);
        commit(&mut s, 3, d, t0 + 31 * SECOND);
        assert_eq!(s.node_table()["n1"].status, api::NODE_STATUS_DOWN);
        assert_eq!(
            s.alloc_table()[&alloc_id(&with)].client_status,
            api::ALLOC_CLIENT_LOST
        );
        assert_eq!(
            disconnect_expiry(&s, &s.node_table()["n1"], t0 + 60 * SECOND),
            None
        );
    }

    #[test]
    fn each_alloc_is_lost_after_its_own_groups_window() {
        let short = job("short", api::JOB_TYPE_SERVICE, Some(5));
        let long = job("long", api::JOB_TYPE_BATCH, Some(60));
        let mut s = state_with(&[short.clone(), long.clone()]);
        let t0 = 1_700_000_000 * SECOND;
        let d = missed_heartbeat(&s, "n1").unwrap();
        assert_eq!(d.alloc_updates.len(), 2);
        commit(&mut s, 2, d, t0);

        let node = s.node_table()["n1"].clone();
        let d = disconnect_expiry(&s, &node, t0 + 10 * SECOND).unwrap();
        assert_eq!(d.status, api::NODE_STATUS_DISCONNECTED);
        assert_eq!(d.alloc_updates.len(), 1);
        assert_eq!(d.alloc_updates[0].id, alloc_id(&short));
        commit(&mut s, 3, d, t0 + 10 * SECOND);
        // Only the allocation changed: the node keeps its disconnect time.
        assert_eq!(
            s.node_table()["n1"].status_updated_at,
            node.status_updated_at
        );
        assert_eq!(
            s.alloc_table()[&alloc_id(&long)].client_status,
            api::ALLOC_CLIENT_UNKNOWN
        );

        let d = disconnect_expiry(&s, &s.node_table()["n1"], t0 + 62 * SECOND).unwrap();
        assert_eq!(d.status, api::NODE_STATUS_DOWN);
        assert_eq!(d.alloc_updates[0].id, alloc_id(&long));
    }

    #[test]
    fn a_decision_overtaken_by_a_reconnect_changes_nothing() {
        let with = job("with", api::JOB_TYPE_SERVICE, Some(1));
        let mut s = state_with(std::slice::from_ref(&with));
        let d = missed_heartbeat(&s, "n1").unwrap();
        commit(&mut s, 2, d, SECOND);
        let late = disconnect_expiry(&s, &s.node_table()["n1"], 10 * SECOND).unwrap();
        // The node heartbeats and its client reports before the decision commits.
        let mut n = (*s.node_table()["n1"]).clone();
        n.status = api::NODE_STATUS_READY.into();
        crate::fsm::test_put_node(&mut s, n);
        apply(
            &mut s,
            3,
            Command::UpdateNodeStatus {
                node_id: "n1".into(),
                status: late.status.into(),
                now: 10 * SECOND,
                evals: vec![],
                if_status: Some(api::NODE_STATUS_DISCONNECTED.into()),
                alloc_updates: late.alloc_updates,
            },
            &mut Effects::default(),
        );
        assert_eq!(s.node_table()["n1"].status, api::NODE_STATUS_READY);
        assert_eq!(
            s.alloc_table()[&alloc_id(&with)].client_status,
            api::ALLOC_CLIENT_UNKNOWN
        );
    }
}
