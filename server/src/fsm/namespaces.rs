//! `Command::Namespace`: create, update and delete namespaces.
//!
//! Every refusal is decided here, on the state the entry applies to, so it is the same
//! on every server: an invalid namespace, deleting `default`, or deleting a namespace
//! that still holds a live job or a variable. A refused batch changes nothing.

use super::Response;
use crate::state::StateWriter;
use api::Namespace;
use serde::{Deserialize, Serialize};

/// What a refusal to delete a namespace still in use contains (the HTTP layer answers
/// 409 for it).
pub const NAMESPACE_IN_USE: &str = " is in use: ";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NamespaceCommand {
    /// Create or replace these namespaces (create indexes are kept).
    Upsert(Vec<Namespace>),
    /// Delete these namespaces.
    Delete(Vec<String>),
}

pub(super) fn apply(w: &mut StateWriter, cmd: NamespaceCommand, resp: &mut Response) {
    let refusal = match &cmd {
        NamespaceCommand::Upsert(list) => list.iter().find_map(Namespace::problem),
        NamespaceCommand::Delete(names) => names.iter().find_map(|n| delete_refusal(w, n)),
    };
    if let Some(e) = refusal {
        resp.error = Some(e);
        return;
    }
    match cmd {
        NamespaceCommand::Upsert(list) => {
            for ns in list {
                w.put_namespace(ns);
            }
        }
        NamespaceCommand::Delete(names) => {
            for n in names {
                w.delete_namespace(&n);
            }
        }
    }
}

/// Why `name` cannot be deleted now (`None`: it can).
fn delete_refusal(w: &StateWriter, name: &str) -> Option<String> {
    if name == api::DEFAULT_NAMESPACE {
        return Some("the default namespace cannot be deleted".into());
    }
    if !w.namespace_exists(name) {
        return Some(format!("namespace {name:?} not found"));
    }
    w.namespace_holder(name)
        .map(|why| format!("namespace {name:?}{NAMESPACE_IN_USE}{why}"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, register};
    use super::super::{apply, Command, Effects};
    use super::*;
    use crate::state::StateStore;

    fn ns(name: &str, description: &str) -> Namespace {
        Namespace {
            name: name.into(),
            description: description.into(),
            ..Default::default()
        }
    }

    fn run(s: &mut StateStore, index: u64, cmd: NamespaceCommand) -> Response {
        apply(s, index, Command::Namespace(cmd), &mut Effects::default())
    }

    #[test]
    fn default_exists_in_an_empty_state_and_cannot_be_deleted() {
        let mut s = StateStore::default();
        let d = s.namespace("default").unwrap();
        assert_eq!(d.description, "Default shared namespace");
        assert_eq!(s.namespace_list().len(), 1);
        let r = run(&mut s, 2, NamespaceCommand::Delete(vec!["default".into()]));
        assert_eq!(
            r.error.as_deref(),
            Some("the default namespace cannot be deleted")
        );
        assert!(s.namespace_exists("default"));
        assert_eq!(s.tables().namespaces, 0);
    }

    #[test]
    fn updates_keep_the_create_index_and_invalid_batches_change_nothing() {
        let mut s = StateStore::default();
        assert!(run(
            &mut s,
            3,
            NamespaceCommand::Upsert(vec![ns("team-a", "one")])
        )
        .error
        .is_none());
        run(
            &mut s,
            5,
            NamespaceCommand::Upsert(vec![ns("team-a", "two")]),
        );
        let a = s.namespace("team-a").unwrap();
        assert_eq!(
            (a.create_index, a.modify_index, a.description.as_str()),
            (3, 5, "two")
        );
        // One bad name refuses the whole batch.
        let r = run(
            &mut s,
            6,
            NamespaceCommand::Upsert(vec![ns("team-b", ""), ns("bad name", "")]),
        );
        assert!(r.error.unwrap().contains("invalid namespace name"));
        assert!(!s.namespace_exists("team-b"));
        // Updating default keeps its built-in create index.
        run(
            &mut s,
            7,
            NamespaceCommand::Upsert(vec![ns("default", "shared")]),
        );
        let d = s.namespace("default").unwrap();
        assert_eq!((d.create_index, d.modify_index), (1, 7));
        assert_eq!(s.tables().namespaces, 7);
    }

    #[test]
    fn a_namespace_with_a_live_job_or_a_variable_cannot_be_deleted() {
        let mut s = StateStore::default();
        run(&mut s, 1, NamespaceCommand::Upsert(vec![ns("team-a", "")]));
        let mut j = job("web", 1);
        j.namespace = "team-a".into();
        register(&mut s, 2, j);
        let r = run(&mut s, 3, NamespaceCommand::Delete(vec!["team-a".into()]));
        let e = r.error.unwrap();
        assert!(e.contains(NAMESPACE_IN_USE) && e.contains("\"web\""), "{e}");
        assert!(s.namespace_exists("team-a"));
        // Purged, the job no longer holds it; a variable does.
        let purge = Command::DeregisterJob {
            namespace: "team-a".into(),
            job_id: "web".into(),
            purge: true,
            eval: None,
            now: 1,
        };
        apply(&mut s, 4, purge, &mut Effects::default());
        let var = crate::state::StoredVariable {
            namespace: "team-a".into(),
            path: "app/db".into(),
            ..Default::default()
        };
        let put = Command::PutVariable { var, cas: None };
        apply(&mut s, 5, put, &mut Effects::default());
        let e = run(&mut s, 6, NamespaceCommand::Delete(vec!["team-a".into()]))
            .error
            .unwrap();
        assert!(
            e.contains(NAMESPACE_IN_USE) && e.contains("variable"),
            "{e}"
        );
        let del = Command::DeleteVariable {
            namespace: "team-a".into(),
            path: "app/db".into(),
            cas: None,
        };
        apply(&mut s, 7, del, &mut Effects::default());
        assert!(
            run(&mut s, 8, NamespaceCommand::Delete(vec!["team-a".into()]))
                .error
                .is_none()
        );
        assert!(!s.namespace_exists("team-a"));
        let e = run(&mut s, 9, NamespaceCommand::Delete(vec!["team-a".into()]))
            .error
            .unwrap();
        assert_eq!(e, "namespace \"team-a\" not found");
    }

    #[test]
    fn namespaces_survive_a_snapshot_and_old_snapshots_gain_the_ones_in_use() {
        let mut s = StateStore::default();
        run(
            &mut s,
            1,
            NamespaceCommand::Upsert(vec![ns("team-a", "kept")]),
        );
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.namespace("team-a").unwrap().description, "kept");
        assert_eq!(back.tables().namespaces, 1);
        // A snapshot from before namespaces: no table, a job in "prod".
        let mut old = StateStore::default();
        let mut j = job("web", 1);
        j.namespace = "prod".into();
        register(&mut old, 4, j);
        let mut v = serde_json::to_value(&old).unwrap();
        v.as_object_mut().unwrap().remove("namespaces");
        v["tables"].as_object_mut().unwrap().remove("namespaces");
        let back: StateStore = serde_json::from_value(v).unwrap();
        assert!(back.namespace_exists("prod"));
        assert!(back.namespace_exists("default"));
        assert_eq!(back.namespace_list().len(), 2);
    }
}
