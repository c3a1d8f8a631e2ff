//! Commands about Nomad Variables: writes and deletes with their check-and-set index,
//! and the root keys the items are encrypted with.
//!
//! The check-and-set is decided here, on the state the entry applies to, so two writers
//! racing with the same index cannot both win: the second is refused with
//! [`CAS_CONFLICT`] and nothing changes.

use super::Response;
use crate::state::{RootKey, StateWriter, StoredVariable};

/// How a refused check-and-set's error starts (the HTTP layer answers 409 for it).
pub const CAS_CONFLICT: &str = "cas conflict";

/// Does the stored variable at `modify_index` (`None`: absent) pass `cas`? 0 means "only
/// if absent"; no `cas` always passes.
fn cas_passes(current: Option<u64>, cas: Option<u64>) -> bool {
    match (cas, current) {
        (None, _) => true,
        (Some(0), None) => true,
        (Some(n), Some(m)) => n == m,
        (Some(_), None) => false,
    }
}

fn conflict(ns: &str, path: &str, current: Option<u64>, cas: u64) -> String {
    match current {
        Some(m) => format!(
            "{CAS_CONFLICT}: variable {path:?} in namespace {ns:?} has modify index {m}, \
             not {cas}"
        ),
        None => format!(
            "{CAS_CONFLICT}: variable {path:?} in namespace {ns:?} does not exist (check \
             index {cas})"
        ),
    }
}

/// `Command::PutVariable`.
pub(super) fn put_variable(
    w: &mut StateWriter,
    var: StoredVariable,
    cas: Option<u64>,
    resp: &mut Response,
) {
    let current = w
        .variable(&var.namespace, &var.path)
        .map(|v| v.modify_index);
    if !cas_passes(current, cas) {
        resp.error = Some(conflict(
            &var.namespace,
            &var.path,
            current,
            cas.unwrap_or(0),
        ));
        return;
    }
    w.put_variable(var);
}

/// `Command::DeleteVariable`. Deleting an absent variable without `cas` succeeds.
pub(super) fn delete_variable(
    w: &mut StateWriter,
    namespace: &str,
    path: &str,
    cas: Option<u64>,
    resp: &mut Response,
) {
    let current = w.variable(namespace, path).map(|v| v.modify_index);
    if !cas_passes(current, cas) {
        resp.error = Some(conflict(namespace, path, current, cas.unwrap_or(0)));
        return;
    }
    w.delete_variable(namespace, path);
}

/// `Command::UpsertRootKey`: keep a root key (once; repeats change nothing).
pub(super) fn upsert_root_key(w: &mut StateWriter, key: RootKey) {
    w.put_root_key(key);
}

#[cfg(test)]
mod tests {
    use super::super::{apply, Command, Effects};
    use super::*;
    use crate::state::StateStore;

    fn var(path: &str, sealed: &str) -> StoredVariable {
        StoredVariable {
            namespace: "default".into(),
            path: path.into(),
            create_time: 5,
            modify_time: 5,
            key_id: "k".into(),
            nonce: "n".into(),
            ciphertext: sealed.into(),
            ..Default::default()
        }
    }

    fn put(s: &mut StateStore, index: u64, v: StoredVariable, cas: Option<u64>) -> Response {
        let cmd = Command::PutVariable { var: v, cas };
        apply(s, index, cmd, &mut Effects::default())
    }

    #[test]
    fn check_and_set_is_decided_on_apply_and_a_loser_changes_nothing() {
        let mut s = StateStore::default();
        assert!(put(&mut s, 3, var("a/b", "one"), Some(0)).error.is_none());
        let v = s.variable("default", "a/b").unwrap();
        assert_eq!((v.create_index, v.modify_index), (3, 3));
        // Created only if absent: a second create loses.
        let r = put(&mut s, 4, var("a/b", "two"), Some(0));
        assert!(r.error.unwrap().starts_with(CAS_CONFLICT));
        // Two writers with the same index: the first wins, the second loses.
        assert!(put(&mut s, 5, var("a/b", "three"), Some(3)).error.is_none());
        assert!(put(&mut s, 6, var("a/b", "four"), Some(3)).error.is_some());
        let v = s.variable("default", "a/b").unwrap();
        assert_eq!((v.create_index, v.modify_index), (3, 5));
        assert_eq!(v.ciphertext, "three");
        assert_eq!(s.tables().variables, 5);
        // Delete with a stale index is refused; with the current one it goes.
        let del = |s: &mut StateStore, i, cas| {
            let cmd = Command::DeleteVariable {
                namespace: "default".into(),
                path: "a/b".into(),
                cas,
            };
            apply(s, i, cmd, &mut Effects::default())
        };
        assert!(del(&mut s, 7, Some(3)).error.is_some());
        assert!(s.variable("default", "a/b").is_some());
        assert!(del(&mut s, 8, Some(5)).error.is_none());
        assert!(s.variable("default", "a/b").is_none());
        assert!(del(&mut s, 9, None).error.is_none());
    }

    #[test]
    fn variables_and_root_keys_survive_a_snapshot_round_trip() {
        let mut s = StateStore::default();
        put(&mut s, 1, var("x", "sealed"), None);
        let key = RootKey {
            key_id: "k1".into(),
            key: "c2VjcmV0".into(),
            create_time: 1,
            create_index: 0,
        };
        let cmd = Command::UpsertRootKey { key };
        apply(&mut s, 2, cmd, &mut Effects::default());
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.variable("default", "x").unwrap().ciphertext, "sealed");
        assert_eq!(back.active_root_key().unwrap().key_id, "k1");
        assert_eq!(back.tables().variables, 1);
    }
}
