//! Commands about service registrations (`provider = "nomad"`): what agents register and
//! deregister, and the registrations that go when their allocation ends.
//!
//! The HTTP layer checks a request against a snapshot; this module checks again against
//! the state the entry applies to, so a registration can never outlive (or resurrect) its
//! allocation whatever was committed in between.

use crate::state::StateWriter;
use api::ServiceRegistration;

/// `Command::UpsertServices`: one agent's registrations and deregistrations. Deletions of
/// another node's registrations, and registrations whose allocation is gone, is not on
/// `node_id` or has ended on the client, are skipped.
pub(super) fn upsert_services(
    w: &mut StateWriter,
    node_id: &str,
    upsert: Vec<ServiceRegistration>,
    delete_ids: Vec<String>,
) {
    for id in delete_ids {
        if w.service(&id).is_some_and(|r| r.node_id == node_id) {
            w.delete_service(&id);
        }
    }
    for r in upsert {
        let live = w
            .alloc_table()
            .get(&r.alloc_id)
            .is_some_and(|a| a.node_id == node_id && !a.terminal());
        if live && r.node_id == node_id {
            w.upsert_service(r);
        }
    }
}

/// `Command::DeleteServices`: an operator's `DELETE /v1/service/:name/:id`.
pub(super) fn delete_services(w: &mut StateWriter, ids: Vec<String>) {
    for id in ids {
        w.delete_service(&id);
    }
}

/// Forget every registration of an allocation that has ended on its client (complete,
/// failed, lost) or is gone. Every FSM path that makes an allocation client-terminal, or
/// forgets its job, calls this in the same apply, so no stale instance survives a crash.
pub(super) fn drop_alloc_services(w: &mut StateWriter, alloc_id: &str) {
    for r in w.services_for_alloc(alloc_id) {
        w.delete_service(&r.id);
    }
}

/// `drop_alloc_services` for an allocation just written, when it is client-terminal.
pub(super) fn drop_if_terminal(w: &mut StateWriter, alloc: &api::Allocation) {
    if alloc.client_terminal() {
        drop_alloc_services(w, &alloc.id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, register};
    use super::super::{apply, test_put_alloc, AllocStatusChange, AllocStop, Command, Effects};
    use crate::state::StateStore;
    use api::{AllocClientUpdate, Allocation, ServiceRegistration};

    fn alloc(id: &str, node: &str, status: &str) -> Allocation {
        Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "a".into(),
            node_id: node.into(),
            task_group: "g".into(),
            desired_status: "run".into(),
            client_status: status.into(),
            ..Default::default()
        }
    }

    fn reg(alloc_id: &str, node: &str, name: &str) -> ServiceRegistration {
        ServiceRegistration {
            id: ServiceRegistration::make_id(alloc_id, "t", name, "http"),
            service_name: name.into(),
            namespace: "default".into(),
            node_id: node.into(),
            job_id: "a".into(),
            alloc_id: alloc_id.into(),
            tags: vec!["x".into()],
            address: "127.0.0.1".into(),
            port: 8080,
            ..Default::default()
        }
    }

    fn upsert(node: &str, upsert: Vec<ServiceRegistration>, delete: Vec<String>) -> Command {
        Command::UpsertServices {
            node_id: node.into(),
            upsert,
            delete_ids: delete,
        }
    }

    /// Node `node` registers alloc `alloc_id`'s service `web` in the entry at `index`.
    fn register_web(s: &mut StateStore, index: u64, alloc_id: &str, node: &str) {
        let cmd = upsert(node, vec![reg(alloc_id, node, "web")], vec![]);
        apply(s, index, cmd, &mut fx());
    }

    /// A state with job `a` registered and allocations a1 (running on n1) and a2 (running
    /// on n2), at index 2.
    fn state() -> StateStore {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 2));
        crate::fsm::advance(&mut s, 2);
        test_put_alloc(&mut s, alloc("a1", "n1", "running"));
        test_put_alloc(&mut s, alloc("a2", "n2", "running"));
        s
    }

    fn fx() -> Effects {
        Effects::default()
    }

    #[test]
    fn registrations_are_stored_indexed_and_re_upserting_the_same_one_changes_nothing() {
        let mut s = state();
        let mut effects = fx();
        apply(
            &mut s,
            3,
            upsert("n1", vec![reg("a1", "n1", "web")], vec![]),
            &mut effects,
        );
        let kinds: Vec<_> = effects
            .events
            .iter()
            .map(|e| (e.topic.as_str(), e.kind))
            .collect();
        assert_eq!(kinds, [("Service", "ServiceRegistration")]);
        let id = ServiceRegistration::make_id("a1", "t", "web", "http");
        let r = s.service(&id).unwrap();
        assert_eq!((r.create_index, r.modify_index), (3, 3));
        assert_eq!(s.tables().services, 3);
        assert_eq!(s.services_named("default", "web").len(), 1);
        assert_eq!(s.services_for_alloc("a1").len(), 1);
        // An agent restart re-sends it: nothing moves.
        register_web(&mut s, 4, "a1", "n1");
        assert_eq!(s.service(&id).unwrap().modify_index, 3);
        assert_eq!(s.tables().services, 3);
        // A changed port is a change.
        let mut moved = reg("a1", "n1", "web");
        moved.port = 9090;
        apply(&mut s, 5, upsert("n1", vec![moved], vec![]), &mut fx());
        let r = s.service(&id).unwrap();
        assert_eq!((r.create_index, r.modify_index, r.port), (3, 5, 9090));
        assert_eq!(s.tables().services, 5);
        // Survives a snapshot round trip, indexes rebuilt.
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.services_for_alloc("a1").len(), 1);
        assert_eq!(back.service(&id).unwrap().port, 9090);
        assert_eq!(back.tables().services, 5);
    }

    #[test]
    fn a_snapshot_from_before_services_loads_with_none() {
        let s = state();
        let mut v = serde_json::to_value(&s).unwrap();
        v.as_object_mut().unwrap().remove("services");
        v["tables"].as_object_mut().unwrap().remove("services");
        let back: StateStore = serde_json::from_value(v).unwrap();
        assert!(back.service_table().is_empty());
        assert_eq!(back.tables().services, 0);
        assert_eq!(back.alloc_table().len(), 2);
    }

    #[test]
    fn registrations_for_other_nodes_unknown_or_ended_allocs_are_skipped() {
        let mut s = state();
        test_put_alloc(&mut s, alloc("done", "n1", "complete"));
        let cmd = upsert(
            "n1",
            vec![
                reg("a2", "n1", "web"),    // alloc on n2
                reg("ghost", "n1", "web"), // no such alloc
                reg("done", "n1", "web"),  // ended: must not come back
                reg("a1", "n2", "web"),    // claims another node
            ],
            vec![],
        );
        apply(&mut s, 3, cmd, &mut fx());
        assert!(s.service_table().is_empty());
        assert_eq!(s.tables().services, 0);
    }

    #[test]
    fn a_node_deletes_only_its_own_registrations() {
        let mut s = state();
        register_web(&mut s, 3, "a1", "n1");
        register_web(&mut s, 4, "a2", "n2");
        let theirs = reg("a2", "n2", "web").id;
        let mine = reg("a1", "n1", "web").id;
        apply(
            &mut s,
            5,
            upsert("n1", vec![], vec![theirs.clone()]),
            &mut fx(),
        );
        assert!(s.service(&theirs).is_some());
        let mut effects = fx();
        apply(
            &mut s,
            6,
            upsert("n1", vec![], vec![mine.clone()]),
            &mut effects,
        );
        assert!(s.service(&mine).is_none());
        assert_eq!(effects.events[0].kind, "ServiceDeregistration");
        assert_eq!(s.tables().services, 6);
        let del = Command::DeleteServices {
            ids: vec![theirs.clone()],
        };
        apply(&mut s, 7, del, &mut fx());
        assert!(s.service_table().is_empty());
    }

    #[test]
    fn registrations_go_when_the_client_reports_the_alloc_ended() {
        let mut s = state();
        register_web(&mut s, 3, "a1", "n1");
        let running = Command::ClientAllocUpdate {
            updates: vec![AllocClientUpdate {
                id: "a1".into(),
                client_status: "running".into(),
                ..Default::default()
            }],
            evals: vec![],
            now: 4,
        };
        apply(&mut s, 4, running, &mut fx());
        assert_eq!(s.services_for_alloc("a1").len(), 1);
        let failed = Command::ClientAllocUpdate {
            updates: vec![AllocClientUpdate {
                id: "a1".into(),
                client_status: "failed".into(),
                ..Default::default()
            }],
            evals: vec![],
            now: 5,
        };
        apply(&mut s, 5, failed, &mut fx());
        assert!(s.services_for_alloc("a1").is_empty());
        assert_eq!(s.tables().services, 5);
    }

    #[test]
    fn registrations_go_when_the_node_is_lost_or_the_plan_marks_the_alloc_lost() {
        let mut s = state();
        test_put_alloc_node(&mut s);
        register_web(&mut s, 3, "a1", "n1");
        register_web(&mut s, 4, "a2", "n2");
        let down = Command::UpdateNodeStatus {
            node_id: "n1".into(),
            status: api::NODE_STATUS_DOWN.into(),
            now: 5,
            evals: vec![],
            if_status: None,
            alloc_updates: vec![AllocStatusChange {
                id: "a1".into(),
                from: "running".into(),
                client_status: "lost".into(),
                client_description: "node down".into(),
            }],
        };
        apply(&mut s, 5, down, &mut fx());
        assert!(s.services_for_alloc("a1").is_empty());
        let lost = Command::ApplyPlan {
            job: None,
            allocs: vec![],
            stops: vec![AllocStop {
                id: "a2".into(),
                desired_status: "stop".into(),
                desired_description: "node lost".into(),
                client_status: Some("lost".into()),
                followup_eval_id: String::new(),
            }],
            eval: None,
            create_evals: vec![],
            now: 6,
            deployment: None,
            deployment_updates: vec![],
        };
        apply(&mut s, 6, lost, &mut fx());
        assert!(s.service_table().is_empty());
    }

    fn test_put_alloc_node(s: &mut StateStore) {
        crate::fsm::test_put_node(
            s,
            api::Node {
                id: "n1".into(),
                status: api::NODE_STATUS_READY.into(),
                ..Default::default()
            },
        );
    }

    #[test]
    fn purging_the_job_removes_its_registrations() {
        let mut s = state();
        register_web(&mut s, 3, "a1", "n1");
        let stop = |purge| Command::DeregisterJob {
            namespace: "default".into(),
            job_id: "a".into(),
            purge,
            eval: None,
            now: 4,
        };
        apply(&mut s, 4, stop(false), &mut fx());
        // Stopping alone leaves them to the agent (shutdown_delay, deregistration).
        assert_eq!(s.services_for_alloc("a1").len(), 1);
        apply(&mut s, 5, stop(true), &mut fx());
        assert!(s.service_table().is_empty());
        assert_eq!(s.tables().services, 5);
    }
}
