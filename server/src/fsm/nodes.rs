//! Commands about client nodes: registration, status, drain and eligibility.

use super::evals::{refresh_job_statuses, upsert_evals};
use super::services::drop_if_terminal;
use super::{AllocStatusChange, Effects, Response};
use crate::state::StateWriter;
use api::{Evaluation, Node};

/// Node events, newest last; only the most recent few are kept.
fn push_event(n: &mut Node, e: api::NodeEvent) {
    const MAX_NODE_EVENTS: usize = 10;
    n.events.push(e);
    if n.events.len() > MAX_NODE_EVENTS {
        let extra = n.events.len() - MAX_NODE_EVENTS;
        n.events.drain(..extra);
    }
}

/// `Command::UpsertNode`: a client agent registered (or re-registered) its node.
pub(super) fn upsert_node(
    w: &mut StateWriter,
    mut node: Node,
    evals: Vec<Evaluation>,
    fx: &mut Effects,
    resp: &mut Response,
) {
    let index = w.index();
    let old = w.node_table().get(&node.id).cloned();
    let became_ready = match old {
        // A node keeps the secret it was first given; a registration racing another one
        // for the same ID (with a different secret) loses.
        Some(old) if !old.secret_id.is_empty() && old.secret_id != node.secret_id => {
            resp.error = Some(format!(
                "node {} is already registered with another secret; refusing to replace it",
                node.id
            ));
            return;
        }
        Some(old) => {
            node.create_index = old.create_index;
            // Operator decisions outlive re-registration.
            node.scheduling_eligibility = old.scheduling_eligibility.clone();
            node.drain = old.drain;
            node.drain_strategy = old.drain_strategy.clone();
            node.last_drain = old.last_drain.clone();
            node.events = old.events.clone();
            old.status != node.status
        }
        None => {
            node.create_index = index;
            node.events = vec![api::NodeEvent {
                message: "Node registered".into(),
                subsystem: "Cluster".into(),
                timestamp: node.status_updated_at * 1_000_000_000,
                create_index: index,
                ..Default::default()
            }];
            true
        }
    };
    if node.scheduling_eligibility.is_empty() {
        node.scheduling_eligibility = api::NODE_ELIGIBLE.into();
    }
    node.modify_index = index;
    fx.capacity_changed |= became_ready && node.status == api::NODE_STATUS_READY;
    w.upsert_node(node);
    upsert_evals(w, evals, fx);
}

/// The arguments of `Command::UpdateNodeStatus`.
pub(super) struct StatusChange {
    pub node_id: String,
    pub status: String,
    pub now: i64,
    pub evals: Vec<Evaluation>,
    pub if_status: Option<String>,
    pub alloc_updates: Vec<AllocStatusChange>,
}

/// `Command::UpdateNodeStatus`: a heartbeat missed, a node back, a disconnect window over.
pub(super) fn update_node_status(w: &mut StateWriter, c: StatusChange, fx: &mut Effects) {
    let index = w.index();
    let Some(old) = w.node_table().get(&c.node_id).cloned() else {
        upsert_evals(w, c.evals, fx);
        return;
    };
    if c.if_status.is_some_and(|s| s != old.status) {
        // Overtaken (e.g. the node heartbeated meanwhile): nothing to do.
        return;
    }
    let mut touched = Vec::new();
    for change in c.alloc_updates {
        let Some(a) = w.alloc_table().get(&change.id) else {
            continue;
        };
        if a.node_id != c.node_id || a.client_status != change.from {
            continue;
        }
        let mut a = (**a).clone();
        a.client_status = change.client_status.into();
        a.client_description = change.client_description.into();
        a.modify_index = index;
        a.modify_time = c.now;
        fx.capacity_changed |= a.client_terminal();
        touched.push((a.namespace.clone(), a.job_id.clone()));
        drop_if_terminal(w, &a);
        w.upsert_alloc(a);
    }
    refresh_job_statuses(w, touched);
    if old.status != c.status {
        let mut n = (*old).clone();
        fx.capacity_changed |= c.status == api::NODE_STATUS_READY;
        let message = match (old.status.as_str(), c.status.as_str()) {
            (api::NODE_STATUS_DISCONNECTED, api::NODE_STATUS_DOWN) => {
                "Node did not reconnect within max_client_disconnect".to_string()
            }
            (_, api::NODE_STATUS_DOWN) => "Node heartbeat missed".to_string(),
            (_, api::NODE_STATUS_DISCONNECTED) => {
                "Node heartbeat missed; disconnected, its allocations are unknown".to_string()
            }
            (_, api::NODE_STATUS_READY) => "Node reregistered by heartbeat".to_string(),
            (_, other) => format!("Node status changed to {other}"),
        };
        push_event(
            &mut n,
            api::NodeEvent {
                message,
                subsystem: "Cluster".into(),
                timestamp: c.now,
                create_index: index,
                ..Default::default()
            },
        );
        n.status = c.status;
        n.status_updated_at = c.now / 1_000_000_000;
        n.modify_index = index;
        w.upsert_node(n);
    }
    upsert_evals(w, c.evals, fx);
}

/// The arguments of `Command::UpdateNodeDrain`.
pub(super) struct DrainChange {
    pub node_id: String,
    pub strategy: Option<api::DrainStrategy>,
    pub mark_eligible: bool,
    pub drain_status: String,
    pub event: Option<api::NodeEvent>,
    pub evals: Vec<Evaluation>,
    pub now: i64,
}

/// `Command::UpdateNodeDrain`: start, update or end a node's drain.
pub(super) fn update_node_drain(w: &mut StateWriter, c: DrainChange, fx: &mut Effects) {
    if let Some(old) = w.node_table().get(&c.node_id) {
        let mut n = (**old).clone();
        let started = c.strategy.as_ref().map(|s| s.started_at);
        n.drain = c.strategy.is_some();
        if c.strategy.is_some() {
            n.scheduling_eligibility = api::NODE_INELIGIBLE.into();
        } else if c.mark_eligible {
            n.scheduling_eligibility = api::NODE_ELIGIBLE.into();
            fx.capacity_changed = true;
        }
        let prev_start = n.last_drain.as_ref().map(|d| d.started_at).unwrap_or(c.now);
        n.last_drain = Some(api::DrainMetadata {
            started_at: started.unwrap_or(prev_start),
            updated_at: c.now,
            status: c.drain_status,
        });
        n.drain_strategy = c.strategy;
        if let Some(mut e) = c.event {
            e.create_index = w.index();
            push_event(&mut n, e);
        }
        n.modify_index = w.index();
        w.upsert_node(n);
    }
    upsert_evals(w, c.evals, fx);
}

/// `Command::UpdateNodeEligibility`: `drover node eligibility -enable|-disable`.
pub(super) fn update_node_eligibility(
    w: &mut StateWriter,
    node_id: &str,
    eligibility: String,
    evals: Vec<Evaluation>,
    now: i64,
    fx: &mut Effects,
) {
    if let Some(old) = w.node_table().get(node_id) {
        let mut n = (**old).clone();
        fx.capacity_changed |= eligibility == api::NODE_ELIGIBLE;
        push_event(
            &mut n,
            api::NodeEvent {
                message: format!("Node marked as {eligibility}"),
                subsystem: "Cluster".into(),
                timestamp: now,
                create_index: w.index(),
                ..Default::default()
            },
        );
        n.scheduling_eligibility = eligibility;
        n.modify_index = w.index();
        w.upsert_node(n);
    }
    upsert_evals(w, evals, fx);
}

#[cfg(test)]
mod tests {
    use super::super::{apply, AllocStatusChange, Command, Effects};
    use crate::state::StateStore;

    fn ready(secret: &str, name: &str) -> api::Node {
        api::Node {
            id: "n1".into(),
            name: name.into(),
            secret_id: secret.into(),
            status: api::NODE_STATUS_READY.into(),
            ..Default::default()
        }
    }

    fn upsert(s: &mut StateStore, index: u64, node: api::Node, fx: &mut Effects) -> Option<String> {
        let cmd = Command::UpsertNode {
            node,
            evals: vec![],
        };
        apply(s, index, cmd, fx).error
    }

    #[test]
    fn a_node_keeps_the_secret_of_its_first_registration() {
        let mut state = StateStore::default();
        let mut fx = Effects::default();
        assert_eq!(upsert(&mut state, 1, ready("first", "a"), &mut fx), None);
        assert!(fx.capacity_changed);
        let err = upsert(&mut state, 2, ready("second", "impostor"), &mut fx);
        assert!(err.unwrap().contains("another secret"));
        assert_eq!(state.node_table()["n1"].secret_id, "first");
        assert_eq!(state.node_table()["n1"].name, "a");
        assert_eq!(state.tables().nodes, 1);
        assert_eq!(upsert(&mut state, 3, ready("first", "b"), &mut fx), None);
        let n = &state.node_table()["n1"];
        assert_eq!(
            (n.name.as_str(), n.create_index, n.modify_index),
            ("b", 1, 3)
        );
        assert_eq!(state.tables().nodes, 3);
    }

    #[test]
    fn a_missed_heartbeat_marks_the_node_down_and_its_allocs_lost_unless_overtaken() {
        let mut s = StateStore::default();
        let mut fx = Effects::default();
        upsert(&mut s, 1, ready("x", "a"), &mut fx);
        let alloc = api::Allocation {
            id: "a1".into(),
            namespace: "default".into(),
            job_id: "j".into(),
            node_id: "n1".into(),
            client_status: api::ALLOC_CLIENT_RUNNING.into(),
            ..Default::default()
        };
        let plan = Command::ApplyPlan {
            job: None,
            allocs: vec![alloc],
            stops: vec![],
            eval: None,
            create_evals: vec![],
            now: 1,
            deployment: None,
            deployment_updates: vec![],
        };
        apply(&mut s, 2, plan, &mut fx);
        let down = |if_status: &str| Command::UpdateNodeStatus {
            node_id: "n1".into(),
            status: api::NODE_STATUS_DOWN.into(),
            now: 9_000_000_000,
            evals: vec![],
            if_status: Some(if_status.into()),
            alloc_updates: vec![AllocStatusChange {
                id: "a1".into(),
                from: api::ALLOC_CLIENT_RUNNING.into(),
                client_status: api::ALLOC_CLIENT_LOST.into(),
                client_description: "node down".into(),
            }],
        };
        // Decided on a snapshot where the node was already down: overtaken, no change.
        apply(&mut s, 3, down(api::NODE_STATUS_DOWN), &mut fx);
        assert_eq!(s.node_table()["n1"].status, api::NODE_STATUS_READY);
        let mut fx = Effects::default();
        apply(&mut s, 4, down(api::NODE_STATUS_READY), &mut fx);
        let n = &s.node_table()["n1"];
        assert_eq!((n.status.as_str(), n.status_updated_at), ("down", 9));
        assert_eq!(n.events.last().unwrap().message, "Node heartbeat missed");
        assert_eq!(s.alloc_table()["a1"].client_status, api::ALLOC_CLIENT_LOST);
        assert!(fx.capacity_changed);
        assert_eq!((s.tables().nodes, s.tables().allocs), (4, 4));
    }

    #[test]
    fn draining_makes_a_node_ineligible_and_ending_it_can_restore_eligibility() {
        let mut s = StateStore::default();
        upsert(&mut s, 1, ready("x", "a"), &mut Effects::default());
        let drain = |strategy: Option<api::DrainStrategy>, status: &str| Command::UpdateNodeDrain {
            node_id: "n1".into(),
            strategy,
            mark_eligible: true,
            drain_status: status.into(),
            event: Some(api::NodeEvent {
                message: format!("drain {status}"),
                ..Default::default()
            }),
            evals: vec![],
            now: 50,
        };
        let strategy = api::DrainStrategy {
            started_at: 40,
            ..Default::default()
        };
        apply(
            &mut s,
            2,
            drain(Some(strategy), "draining"),
            &mut Effects::default(),
        );
        let n = s.node_table()["n1"].clone();
        assert!(n.drain);
        assert_eq!(n.scheduling_eligibility, api::NODE_INELIGIBLE);
        assert_eq!(n.events.last().unwrap().create_index, 2);
        let mut fx = Effects::default();
        apply(&mut s, 3, drain(None, "complete"), &mut fx);
        let n = &s.node_table()["n1"];
        assert!(!n.drain && fx.capacity_changed);
        assert_eq!(n.scheduling_eligibility, api::NODE_ELIGIBLE);
        let last = n.last_drain.as_ref().unwrap();
        assert_eq!((last.started_at, last.status.as_str()), (40, "complete"));
    }

    #[test]
    fn eligibility_changes_are_recorded_as_node_events() {
        let mut s = StateStore::default();
        upsert(&mut s, 1, ready("x", "a"), &mut Effects::default());
        let cmd = Command::UpdateNodeEligibility {
            node_id: "n1".into(),
            eligibility: api::NODE_INELIGIBLE.into(),
            evals: vec![],
            now: 7,
        };
        let mut fx = Effects::default();
        apply(&mut s, 2, cmd, &mut fx);
        let n = &s.node_table()["n1"];
        assert_eq!(n.scheduling_eligibility, api::NODE_INELIGIBLE);
        assert_eq!(
            n.events.last().unwrap().message,
            "Node marked as ineligible"
        );
        assert!(!fx.capacity_changed);
        assert_eq!(s.tables().nodes, 2);
    }
}
