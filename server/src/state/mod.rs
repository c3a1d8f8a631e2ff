//! The in-memory state store: one persistent map per table, so a snapshot is an O(1) clone.
//!
//! Only the FSM (`fsm/`) mutates a `StateStore`, through [`StateWriter`] (`writer.rs`);
//! everyone else reads an immutable `Arc<StateStore>` published after each applied batch
//! of Raft entries. The services and deployments tables keep their keys, reads and writes
//! in `services.rs` and `deployments.rs`; `data.rs` is the serialised form.

use api::{Allocation, Deployment, Evaluation, Job, Node, ServiceRegistration};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod acl;
mod data;
mod deployments;
mod namespaces;
mod operator;
mod services;
mod summary;
mod variables;
mod writer;

pub use acl::AclTables;
use data::StateData;
use deployments::deployment_key;
pub use services::ServiceKey;
pub use summary::GroupCounts;
pub use variables::{RootKey, StoredVariable, VariableKey};
pub use writer::StateWriter;

/// The key of the allocation tables and of the per-node ones. Shared, not owned: a write
/// copies the persistent map's nodes it touches (the published snapshot still holds them),
/// and each copy clones up to 64 keys. With `String` keys that was a heap allocation per
/// key (at C1M, String clones and the frees of the old copies were a fifth of a follower's
/// CPU); an [`ArcStr`](api::ArcStr) clone is a counter increment, and the by-ID table's
/// key is the allocation's own ID (one copy, not two).
pub type Key = api::ArcStr;

fn key(s: &str) -> Key {
    Key::from(s)
}

/// Point `a`'s parts at equal copies one of `others` holds: its resources and the strings
/// allocations repeat (namespace, job, group, evaluation, node, descriptions; the ID and
/// name when `others` holds the version it replaces), so a job's thousand allocations keep
/// one copy of each rather than each its own. An allocation decoded from a Raft entry or a
/// snapshot shares nothing until it is stored; its status words and the default namespace
/// are made literals first ([`api::literal_word`]), which no allocation has to count.
fn share_parts<'a>(a: &mut Allocation, others: impl IntoIterator<Item = &'a Allocation>) {
    for w in [
        &mut a.namespace,
        &mut a.desired_status,
        &mut a.client_status,
    ] {
        if Key::as_static(w).is_none() {
            if let Some(lit) = api::literal_word(w) {
                *w = lit;
            }
        }
    }
    for s in others {
        if !Arc::ptr_eq(&a.task_resources, &s.task_resources)
            && a.task_resources == s.task_resources
        {
            a.task_resources = s.task_resources.clone();
        }
        if let (Some(mine), Some(theirs)) = (&a.resources, &s.resources) {
            if !Arc::ptr_eq(mine, theirs) && mine == theirs {
                a.resources = Some(theirs.clone());
            }
        }
        for (mine, theirs) in strings_mut(a).into_iter().zip(strings(s)) {
            if !Key::ptr_eq(mine, theirs) && *mine == *theirs {
                *mine = theirs.clone();
            }
        }
    }
}

/// How many of [`strings`]' fields, the first ones, repeat between allocations (a job's,
/// a node's, a plan's); the others are each allocation's own (its ID and name) or point
/// at one other allocation.
const REPEATED_STRINGS: usize = 10;

/// An allocation's string fields but its status words, those that repeat first.
fn strings(a: &Allocation) -> [&Key; 14] {
    [
        &a.namespace,
        &a.job_id,
        &a.task_group,
        &a.eval_id,
        &a.node_id,
        &a.node_name,
        &a.desired_description,
        &a.client_description,
        &a.followup_eval_id,
        &a.deployment_id,
        &a.id,
        &a.name,
        &a.previous_allocation,
        &a.next_allocation,
    ]
}

/// [`strings`], to change.
fn strings_mut(a: &mut Allocation) -> [&mut Key; 14] {
    [
        &mut a.namespace,
        &mut a.job_id,
        &mut a.task_group,
        &mut a.eval_id,
        &mut a.node_id,
        &mut a.node_name,
        &mut a.desired_description,
        &mut a.client_description,
        &mut a.followup_eval_id,
        &mut a.deployment_id,
        &mut a.id,
        &mut a.name,
        &mut a.previous_allocation,
        &mut a.next_allocation,
    ]
}

/// Point `a`'s repeated strings at the equal ones in `seen`, adding those it has not
/// seen: a snapshot restore shares a store's strings this way (one lookup per field),
/// since the allocations come back in ID order, not job by job or plan by plan.
fn intern_strings(a: &mut Allocation, seen: &mut std::collections::HashSet<Key>) {
    for f in strings_mut(a).into_iter().take(REPEATED_STRINGS) {
        if f.is_empty() || Key::as_static(f).is_some() {
            continue;
        }
        match seen.get(f.as_str()) {
            Some(k) => *f = k.clone(),
            None => {
                seen.insert(f.clone());
            }
        }
    }
}

/// Do `a` and `o` share their resources (the test for "nothing more to share")?
fn shares_resources(a: &Allocation, o: &Allocation) -> bool {
    Arc::ptr_eq(&a.task_resources, &o.task_resources)
        && match (&a.resources, &o.resources) {
            (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs),
            (mine, theirs) => mine.is_none() && theirs.is_none(),
        }
}

/// `allocs_by_job`'s key for `a`: its own namespace, job and ID strings, which
/// [`share_parts`] made the ones its job's other allocations hold.
fn job_alloc_key(a: &Allocation) -> (Key, Key, Key) {
    (a.namespace.clone(), a.job_id.clone(), a.id.clone())
}

/// The allocations by ID ([`StateStore::alloc_table`]), read-only.
#[derive(Clone, Copy)]
pub struct AllocTable<'a>(&'a OrdMap<Key, Arc<Allocation>>);

impl<'a> AllocTable<'a> {
    pub fn get(&self, id: &str) -> Option<&'a Arc<Allocation>> {
        self.0.get(id)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every allocation, in ID order.
    pub fn values(&self) -> impl Iterator<Item = &'a Arc<Allocation>> + 'a {
        self.0.values()
    }

    /// The allocations whose ID is `from` or sorts after it, in ID order.
    pub fn from_id(&self, from: &str) -> impl Iterator<Item = &'a Arc<Allocation>> + 'a {
        self.0.range(key(from)..).map(|(_, a)| a)
    }
}

impl<Q: std::borrow::Borrow<str> + ?Sized> std::ops::Index<&Q> for AllocTable<'_> {
    type Output = Arc<Allocation>;
    fn index(&self, id: &Q) -> &Arc<Allocation> {
        let id = id.borrow();
        self.0
            .get(id)
            .unwrap_or_else(|| panic!("no allocation {id:?} in the table"))
    }
}

/// `(namespace, job id)`.
pub type JobKey = (String, String);

/// The index each table was last written at; blocking queries wait on these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableIndexes {
    pub jobs: u64,
    pub allocs: u64,
    pub evals: u64,
    pub nodes: u64,
    /// Service registrations (`provider = "nomad"`); absent from older snapshots.
    #[serde(default)]
    pub services: u64,
    /// Deployments; absent from older snapshots.
    #[serde(default)]
    pub deployments: u64,
    /// Variables; absent from older snapshots.
    #[serde(default)]
    pub variables: u64,
    /// ACL policies, tokens and roles; absent from older snapshots.
    #[serde(default)]
    pub acl: u64,
    /// Namespaces; absent from older snapshots.
    #[serde(default)]
    pub namespaces: u64,
}

/// Serialised by `data.rs` (written borrowed, read through `StateData`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "StateData")]
pub struct StateStore {
    /// The Raft index of the last applied entry.
    index: u64,
    tables: TableIndexes,
    jobs: OrdMap<JobKey, Arc<Job>>,
    /// Every version of every job, keyed `(namespace, id, version)`.
    job_versions: OrdMap<(String, String, u64), Arc<Job>>,
    allocs: OrdMap<Key, Arc<Allocation>>,
    evals: OrdMap<String, Arc<Evaluation>>,
    nodes: OrdMap<String, Arc<Node>>,
    /// Secondary indexes, rebuilt on snapshot restore.
    /// The allocations again, by `(namespace, job, id)` and by `(node, id)`: a range of
    /// either yields them without a lookup per allocation in `allocs` (a scheduler
    /// reading a thousand nodes' allocations spent most of its time in those lookups).
    allocs_by_job: OrdMap<(Key, Key, Key), Arc<Allocation>>,
    allocs_by_node: OrdMap<(Key, Key), Arc<Allocation>>,
    /// Per node, the Raft index of the last change to one of its allocations. A watch of
    /// a node's allocations blocks on this rather than on the whole allocation table, so
    /// a write wakes only the watchers of the nodes it concerns.
    node_alloc_index: OrdMap<Key, u64>,
    /// The same, moved only by the servers' changes (placed, updated, stopped, deleted):
    /// what the node's own agent watches, since its status reports would only be echoed
    /// back to it.
    node_alloc_server_index: OrdMap<Key, u64>,
    /// Per node, the summed load of its live allocations (`NodeLoad::of_alloc` each), so
    /// bin-packing reads one counter per node instead of adding up its allocations.
    node_loads: OrdMap<Key, scheduler::usage::NodeLoad>,
    /// Per `(namespace, job, group)`, what its allocations add up to (`summary.rs`).
    group_counts: OrdMap<summary::GroupKey, summary::GroupCounts>,
    evals_by_job: OrdSet<(String, String, String)>,
    /// Service registrations keyed `(namespace, service name, registration ID)`.
    services: OrdMap<ServiceKey, Arc<ServiceRegistration>>,
    /// Registration ID -> its key in `services`.
    service_ids: OrdMap<String, ServiceKey>,
    /// `(alloc ID, registration ID)`.
    services_by_alloc: OrdSet<(String, String)>,
    /// Deployments by ID.
    deployments: OrdMap<String, Arc<Deployment>>,
    /// `(namespace, job ID, create index, deployment ID)`: a job's deployments, oldest first.
    deployments_by_job: OrdSet<(String, String, u64, String)>,
    /// The operator's scheduler configuration; `None` until one is set (`operator.rs`).
    scheduler_config: Option<Arc<api::SchedulerConfiguration>>,
    /// Variables keyed `(namespace, path)`, items encrypted (`variables.rs`).
    variables: OrdMap<VariableKey, Arc<StoredVariable>>,
    /// Root keys the variables are encrypted with, by key ID.
    root_keys: OrdMap<String, Arc<RootKey>>,
    /// ACL policies, tokens, roles and the bootstrap index (`acl.rs`).
    acl: AclTables,
    /// Namespaces by name; `default` is answered even when absent (`namespaces.rs`).
    namespaces: OrdMap<String, Arc<api::Namespace>>,
}

impl StateStore {
    /// The key a node's allocations are stored under: the one already in the per-node
    /// index when there is one, so a node's thousand allocations share one copy of its ID
    /// rather than each holding its own.
    fn node_key(&self, node_id: &Key) -> Key {
        self.node_alloc_index
            .get_key_value(node_id.as_str())
            .map_or_else(|| node_id.clone(), |(k, _)| k.clone())
    }

    /// Rebuild the secondary indexes (after deserialising a snapshot).
    fn reindex(&mut self) {
        self.allocs_by_job = self
            .allocs
            .values()
            .map(|a| (job_alloc_key(a), a.clone()))
            .collect();
        // After a snapshot, every node that has allocations is stamped with the table's
        // index: at least the true last change, and below every later one, so a watch
        // may answer once more than needed but never misses a change.
        let stamp = self.tables.allocs;
        self.node_alloc_index = OrdMap::new();
        for a in self.allocs.values() {
            if !self.node_alloc_index.contains_key(a.node_id.as_str()) {
                self.node_alloc_index.insert(a.node_id.clone(), stamp);
            }
        }
        self.allocs_by_node = self
            .allocs
            .iter()
            .map(|(id, a)| ((self.node_key(&a.node_id), id.clone()), a.clone()))
            .collect();
        self.node_alloc_server_index = self.node_alloc_index.clone();
        self.node_loads = OrdMap::new();
        self.group_counts = OrdMap::new();
        for a in self.allocs.values().cloned().collect::<Vec<_>>() {
            self.count_alloc(None, Some(&a));
        }
        self.evals_by_job = self
            .evals
            .values()
            .map(|e| (e.namespace.clone(), e.job_id.clone(), e.id.clone()))
            .collect();
        self.service_ids = self
            .services
            .iter()
            .map(|(k, r)| (r.id.clone(), k.clone()))
            .collect();
        self.services_by_alloc = self
            .services
            .values()
            .map(|r| (r.alloc_id.clone(), r.id.clone()))
            .collect();
        self.deployments_by_job = self
            .deployments
            .values()
            .map(|d| deployment_key(d))
            .collect();
    }

    /// The Raft index of the last applied entry.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The index each table was last written at (what blocking queries wait on).
    pub fn tables(&self) -> &TableIndexes {
        &self.tables
    }

    /// The current version of every job, by `(namespace, id)`.
    pub fn job_table(&self) -> &OrdMap<JobKey, Arc<Job>> {
        &self.jobs
    }

    pub fn alloc_table(&self) -> AllocTable<'_> {
        AllocTable(&self.allocs)
    }

    pub fn eval_table(&self) -> &OrdMap<String, Arc<Evaluation>> {
        &self.evals
    }

    pub fn node_table(&self) -> &OrdMap<String, Arc<Node>> {
        &self.nodes
    }

    pub fn job(&self, ns: &str, id: &str) -> Option<Arc<Job>> {
        self.jobs.get(&(ns.to_string(), id.to_string())).cloned()
    }

    pub fn job_versions(&self, ns: &str, id: &str) -> Vec<Arc<Job>> {
        let lo = (ns.to_string(), id.to_string(), 0);
        let hi = (ns.to_string(), id.to_string(), u64::MAX);
        let mut v: Vec<_> = self
            .job_versions
            .range(lo..=hi)
            .map(|(_, j)| j.clone())
            .collect();
        v.reverse();
        v
    }

    pub fn allocs_for_job(&self, ns: &str, job_id: &str) -> Vec<Arc<Allocation>> {
        self.job_alloc_range(ns, job_id)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// A job's entries in `allocs_by_job`, in ID order.
    fn job_alloc_range<'a>(
        &'a self,
        ns: &'a str,
        job_id: &'a str,
    ) -> impl Iterator<Item = (&'a (Key, Key, Key), &'a Arc<Allocation>)> + 'a {
        let lo = (key(ns), key(job_id), key(""));
        self.allocs_by_job
            .range(lo..)
            .take_while(move |((n, j, _), _)| &**n == ns && &**j == job_id)
    }

    /// [`share_parts`] with the stored allocations most likely to hold `a`'s: the version
    /// it replaces (an update, most writes: the agents' reports, is done there), else
    /// `last` (the allocation written before it in the same entry: a plan's placements
    /// share a job, an evaluation, often a node), one of its job's first few (a group's
    /// allocations ask for the same) and one of its node's (the node's ID and name).
    fn share_stored(&self, a: &mut Allocation, last: Option<&Allocation>) {
        if let Some(old) = self.allocs.get(a.id.as_str()) {
            share_parts(a, [&**old]);
            if shares_resources(a, old) {
                return;
            }
        }
        share_parts(a, last);
        let (ns, job) = (a.namespace.clone(), a.job_id.clone());
        let siblings = self.job_alloc_range(&ns, &job).take(8).map(|(_, s)| &**s);
        share_parts(a, siblings);
        a.node_id = self.node_key(&a.node_id);
        let neighbour = self
            .allocs_by_node
            .range((a.node_id.clone(), Key::new())..)
            .next()
            .filter(|((n, _), _)| Key::ptr_eq(n, &a.node_id))
            .map(|(_, s)| s.clone());
        share_parts(a, neighbour.as_deref());
    }

    /// Moves the per-node load and per-group summary counters from what `old` counted
    /// for to what `new` counts for (either may be absent: a placement, a deletion).
    fn count_alloc(&mut self, old: Option<&Allocation>, new: Option<&Allocation>) {
        use scheduler::usage::NodeLoad;
        use summary::GroupCounts;
        for (a, add) in [(old, false), (new, true)] {
            let Some(a) = a else { continue };
            let load = NodeLoad::of_alloc(a);
            if load != NodeLoad::default() {
                let apply = |entry: &mut NodeLoad| {
                    if add {
                        entry.add(load);
                    } else {
                        entry.sub(load);
                    }
                };
                // Looked up by `&str`: an entry would build a key on every write.
                if let Some(entry) = self.node_loads.get_mut(a.node_id.as_str()) {
                    apply(entry);
                } else {
                    let mut entry = NodeLoad::default();
                    apply(&mut entry);
                    let node = self.node_key(&a.node_id);
                    self.node_loads.insert(node, entry);
                }
            }
            let key = summary::group_key(a);
            let counts = GroupCounts::of_alloc(a);
            if add {
                self.group_counts.entry(key).or_default().add(counts);
            } else if let Some(c) = self.group_counts.get_mut(&key) {
                c.sub(counts);
                if c.allocs == 0 {
                    self.group_counts.remove(&key);
                }
            }
        }
    }

    /// The index a watch of `node_id`'s allocations blocks on: moved by every change to
    /// them, or (`server_changes_only`, the node's own agent) only by the servers'. 1 for
    /// a node that never had one, so a first read answers at once and the next blocks.
    pub fn node_alloc_index(&self, node_id: &str, server_changes_only: bool) -> u64 {
        let map = if server_changes_only {
            &self.node_alloc_server_index
        } else {
            &self.node_alloc_index
        };
        map.get(node_id).copied().unwrap_or(1)
    }

    pub fn allocs_for_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        let lo = (key(node_id), key(""));
        self.allocs_by_node
            .range(lo..)
            .take_while(|((n, _), _)| &**n == node_id)
            .map(|(_, a)| a.clone())
            .collect()
    }

    pub fn evals_for_job(&self, ns: &str, job_id: &str) -> Vec<Arc<Evaluation>> {
        let lo = (ns.to_string(), job_id.to_string(), String::new());
        self.evals_by_job
            .range(lo..)
            .take_while(|(n, j, _)| n == ns && j == job_id)
            .filter_map(|(_, _, id)| self.evals.get(id).cloned())
            .collect()
    }

    /// A copy for export (`operator snapshot save`) with each node that holds a secret
    /// passed through `redact`; the store itself is unchanged.
    pub fn export_with_nodes(&self, redact: impl Fn(&Node) -> Node) -> StateStore {
        let mut out = self.clone();
        for n in self.nodes.values().filter(|n| !n.secret_id.is_empty()) {
            out.nodes.insert(n.id.clone(), Arc::new(redact(n)));
        }
        out
    }
}

impl scheduler::State for StateStore {
    fn index(&self) -> u64 {
        self.index
    }
    fn node_load(&self, node_id: &str) -> Option<scheduler::usage::NodeLoad> {
        Some(self.node_loads.get(node_id).copied().unwrap_or_default())
    }
    fn job(&self, namespace: &str, id: &str) -> Option<Arc<Job>> {
        StateStore::job(self, namespace, id)
    }
    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.values().cloned().collect()
    }
    fn node(&self, id: &str) -> Option<Arc<Node>> {
        self.nodes.get(id).cloned()
    }
    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Allocation>> {
        self.allocs_for_job(namespace, job_id)
    }
    fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        self.allocs_for_node(node_id)
    }
    fn latest_deployment(&self, namespace: &str, job_id: &str) -> Option<Arc<Deployment>> {
        StateStore::latest_deployment(self, namespace, job_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::test_writer;

    #[test]
    fn state_round_trips_through_json_sharing_job_versions() {
        let job = Arc::new(Job {
            id: "web".into(),
            namespace: "default".into(),
            version: 3,
            ..Default::default()
        });
        let mut s = StateStore::default();
        let mut w = test_writer(&mut s, 9);
        w.upsert_job_version(job.clone());
        for i in 0..3 {
            w.upsert_alloc(Allocation {
                id: format!("a{i}").into(),
                namespace: "default".into(),
                job_id: "web".into(),
                node_id: "n1".into(),
                job: Some(job.clone()),
                ..Default::default()
            });
        }
        w.upsert_eval(Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            ..Default::default()
        });
        let text = serde_json::to_string(&s).unwrap();
        // One copy of the job for the allocations, however many share it.
        assert_eq!(text.matches("\"Version\":3").count(), 3);
        let back: StateStore = serde_json::from_str(&text).unwrap();
        assert_eq!(back.index(), 9);
        assert_eq!(back.allocs_for_job("default", "web").len(), 3);
        assert_eq!(back.allocs_for_node("n1").len(), 3);
        assert_eq!(back.evals_for_job("default", "web").len(), 1);
        let a = &back.alloc_table()["a1"];
        assert_eq!(a.job.as_ref().unwrap().version, 3);
        assert!(Arc::ptr_eq(
            a.job.as_ref().unwrap(),
            back.alloc_table()["a2"].job.as_ref().unwrap()
        ));
    }

    #[test]
    fn a_nodes_and_a_jobs_allocations_share_one_copy_of_their_keys_written_or_restored() {
        let mut s = StateStore::default();
        let mut w = test_writer(&mut s, 3);
        for i in 0..3 {
            w.upsert_alloc(Allocation {
                id: format!("a{i}").into(),
                namespace: "default".into(),
                job_id: "web".into(),
                node_id: "n1".into(),
                ..Default::default()
            });
        }
        // Another job's allocation, on the same node and between web's in key order.
        w.upsert_alloc(Allocation {
            id: "a15".into(),
            namespace: "default".into(),
            job_id: "api".into(),
            node_id: "n2".into(),
            ..Default::default()
        });
        // An update (a client's report) keeps sharing it too.
        let mut a1 = (*w.alloc_table()["a1"]).clone();
        a1.client_status = api::ALLOC_CLIENT_RUNNING.into();
        w.upsert_client_alloc(a1);
        let shared = |s: &StateStore| {
            let (index_key, _) = s.node_alloc_index.get_key_value("n1").unwrap();
            let by_node: Vec<&Key> = s
                .allocs_by_node
                .keys()
                .filter(|(n, _)| &**n == "n1")
                .map(|(n, _)| n)
                .collect();
            assert_eq!(by_node.len(), 3);
            let by_job: Vec<&(Key, Key, Key)> = s.allocs_by_job.keys().collect();
            let jobs: Vec<&str> = by_job.iter().map(|(_, j, _)| &**j).collect();
            assert_eq!(jobs, ["api", "web", "web", "web"]);
            let web = &by_job[1];
            by_job[2..]
                .iter()
                .all(|k| Key::ptr_eq(&k.0, &web.0) && Key::ptr_eq(&k.1, &web.1))
                && by_node.iter().all(|k| Key::ptr_eq(k, index_key))
                && Key::ptr_eq(
                    s.node_alloc_server_index.get_key_value("n1").unwrap().0,
                    index_key,
                )
                && Key::ptr_eq(
                    s.node_loads
                        .get_key_value("n1")
                        .map_or(index_key, |(k, _)| k),
                    index_key,
                )
        };
        assert!(
            shared(&s),
            "written allocations share the node's and the job's keys"
        );
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(
            shared(&back),
            "restored allocations share the node's and the job's keys"
        );
    }

    #[test]
    fn a_groups_allocations_share_one_copy_of_their_resources_written_or_restored() {
        // Each decoded on its own, as Raft entries are: equal, not shared.
        let decoded = |id: &str, group: &str, cpu: i64| -> Allocation {
            serde_json::from_value(serde_json::json!({
                "ID": id, "Namespace": "default", "JobID": "web", "NodeID": "n1",
                "TaskGroup": group,
                "Resources": {"CPU": cpu, "MemoryMB": 64},
                "TaskResources": {"t": {"CPU": cpu, "MemoryMB": 64}},
            }))
            .unwrap()
        };
        let mut s = StateStore::default();
        let mut w = test_writer(&mut s, 3);
        for (id, group, cpu) in [("a1", "g", 100), ("a2", "g", 100), ("a3", "other", 200)] {
            w.upsert_alloc(decoded(id, group, cpu));
        }
        // A client's report of a1 (decoded afresh) shares too.
        w.upsert_client_alloc(decoded("a1", "g", 100));
        let check = |s: &StateStore| {
            let t = s.alloc_table();
            let (a1, a2, a3) = (t["a1"].clone(), t["a2"].clone(), t["a3"].clone());
            assert!(Arc::ptr_eq(&a1.task_resources, &a2.task_resources));
            assert!(Arc::ptr_eq(
                a1.resources.as_ref().unwrap(),
                a2.resources.as_ref().unwrap()
            ));
            assert!(!Arc::ptr_eq(&a1.task_resources, &a3.task_resources));
            assert_eq!(a3.task_resources.get("t").unwrap().cpu, 200, "unequal kept");
            assert_eq!(a3.resources.as_ref().unwrap().cpu, 200);
        };
        check(&s);
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        check(&back);
    }

    #[test]
    fn allocations_share_their_jobs_nodes_and_evaluations_strings_written_or_restored() {
        // Each decoded on its own, as Raft entries are: equal strings, separate copies.
        let decoded = |id: &str, job: &str, node: &str, eval: &str| -> Allocation {
            serde_json::from_value(serde_json::json!({
                "ID": id, "Namespace": "default", "JobID": job, "TaskGroup": "g",
                "NodeID": node, "NodeName": format!("name-{node}"), "EvalID": eval,
                "DesiredStatus": "run", "ClientStatus": "pending",
                "ClientDescription": "No tasks have started",
            }))
            .unwrap()
        };
        let mut s = StateStore::default();
        let mut w = test_writer(&mut s, 3);
        // Two plans' entries: web's first placements, then one more of web and one of api.
        for (id, job, node) in [
            ("a1", "web", "n1"),
            ("a2", "web", "n2"),
            ("a3", "web", "n1"),
        ] {
            w.upsert_alloc(decoded(id, job, node, "e1"));
        }
        drop(w);
        let mut w = test_writer(&mut s, 4);
        w.upsert_alloc(decoded("a4", "web", "n2", "e2"));
        w.upsert_alloc(decoded("b1", "api", "n1", "e2"));
        // A client's report of a1, decoded afresh, with a new status.
        let mut report = decoded("a1", "web", "n1", "e1");
        report.client_status = "running".into();
        w.upsert_client_alloc(report);
        drop(w);
        let check = |s: &StateStore, when: &str| {
            let t = s.alloc_table();
            let one = |pick: &dyn Fn(&Allocation) -> &Key, ids: &[&str]| {
                let first = pick(&t[ids[0]]);
                ids.iter().all(|id| Key::ptr_eq(pick(&t[*id]), first))
            };
            assert!(
                one(&|a| &a.job_id, &["a1", "a2", "a3", "a4"]),
                "{when}: job"
            );
            assert!(one(&|a| &a.task_group, &["a1", "a2", "a3", "a4"]), "{when}");
            assert!(one(&|a| &a.node_id, &["a1", "a3", "b1"]), "{when}: node");
            assert!(one(&|a| &a.node_name, &["a1", "a3", "b1"]), "{when}");
            assert!(one(&|a| &a.eval_id, &["a4", "b1"]), "{when}: a plan's eval");
            assert!(
                one(&|a| &a.client_description, &["a2", "a3", "b1"]),
                "{when}"
            );
            assert!(!Key::ptr_eq(&t["a1"].job_id, &t["b1"].job_id), "{when}");
            assert_eq!(
                &*t["b1"].job_id, "api",
                "{when}: unequal ones keep their own"
            );
            // Status words and the default namespace are literals: nothing to count.
            for a in t.values() {
                for w in [&a.namespace, &a.desired_status, &a.client_status] {
                    assert!(Key::as_static(w).is_some(), "{when}: {w} is a literal");
                }
            }
            assert_eq!(&*t["a1"].client_status, "running");
            // The by-ID table's key is the allocation's own ID.
            for (k, a) in s.allocs.iter() {
                assert!(Key::ptr_eq(k, &a.id), "{when}: {k}");
            }
        };
        check(&s, "written");
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        check(&back, "restored");
    }

    /// What the scheduler would add up itself from the node's allocations.
    fn scanned_load(s: &StateStore, node: &str) -> scheduler::usage::NodeLoad {
        let mut sum = scheduler::usage::NodeLoad::default();
        for a in s.allocs_for_node(node) {
            sum.add(scheduler::usage::NodeLoad::of_alloc(&a));
        }
        sum
    }

    #[test]
    fn alloc_indexes_answer_each_allocations_newest_version_after_moves_deletes_and_snapshots() {
        let alloc = |id: &str, job: &str, node: &str, status: &str| Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            node_id: node.into(),
            desired_status: api::ALLOC_DESIRED_RUN.into(),
            client_status: status.into(),
            ..Default::default()
        };
        // What the table holds, per node and per job, as (id, node, job, status).
        type Row = (String, String, String, String);
        let row = |a: &Allocation| -> Row {
            let (i, n, j, c) = (&a.id, &a.node_id, &a.job_id, &a.client_status);
            (i.to_string(), n.to_string(), j.to_string(), c.to_string())
        };
        // The table scanned for `keep`, against what an index answered.
        let same =
            |s: &StateStore, keep: &dyn Fn(&Allocation) -> bool, indexed: Vec<Arc<Allocation>>| {
                let scanned: Vec<Row> = s
                    .alloc_table()
                    .values()
                    .filter(|a| keep(a))
                    .map(|a| row(a))
                    .collect();
                let indexed: Vec<Row> = indexed.iter().map(|a| row(a)).collect();
                indexed == scanned
            };
        let check = |s: &StateStore| {
            for n in ["n1", "n2"] {
                let by_node = s.allocs_for_node(n);
                assert!(same(s, &|a| a.node_id == n, by_node), "node {n}");
            }
            for j in ["web", "api"] {
                let by_job = s.allocs_for_job("default", j);
                assert!(same(s, &|a| a.job_id == j, by_job), "job {j}");
            }
        };
        let mut s = StateStore::default();
        type Step<'a> = Box<dyn Fn(&mut StateWriter<'_>) + 'a>;
        let steps: Vec<Step<'_>> = vec![
            Box::new(|w| w.upsert_alloc(alloc("a1", "web", "n1", "pending"))),
            Box::new(|w| w.upsert_alloc(alloc("a2", "web", "n1", "pending"))),
            // A report changes the stored version: the indexes must answer the new one.
            Box::new(|w| w.upsert_client_alloc(alloc("a1", "web", "n1", "running"))),
            // Moved to another node and to another job: gone from the old entries.
            Box::new(|w| w.upsert_alloc(alloc("a2", "web", "n2", "running"))),
            Box::new(|w| w.upsert_alloc(alloc("a2", "api", "n2", "failed"))),
            Box::new(|w| {
                w.delete_alloc("a1");
            }),
            Box::new(|w| w.upsert_alloc(alloc("a3", "api", "n1", "complete"))),
        ];
        for (i, step) in steps.iter().enumerate() {
            let mut w = test_writer(&mut s, 10 + i as u64);
            step(&mut w);
            drop(w);
            check(&s);
        }
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        check(&back);
        assert_eq!(back.allocs_for_node("n2")[0].client_status, "failed");
    }

    #[test]
    fn node_load_counters_match_a_scan_through_placements_reports_stops_and_snapshots() {
        use scheduler::State as _;
        let job = Arc::new(Job {
            id: "web".into(),
            namespace: "default".into(),
            job_type: api::JOB_TYPE_SERVICE.into(),
            ..Default::default()
        });
        let alloc = |i: u64, node: &str| Allocation {
            id: format!("a{i}").into(),
            namespace: "default".into(),
            job_id: "web".into(),
            node_id: node.into(),
            job: Some(job.clone()),
            resources: Some(Arc::new(api::Resources {
                cpu: 100 + i as i64,
                memory_mb: 64 + i as i64,
                ..Default::default()
            })),
            desired_status: api::ALLOC_DESIRED_RUN.into(),
            client_status: api::ALLOC_CLIENT_PENDING.into(),
            ..Default::default()
        };
        let mut s = StateStore::default();
        let nodes = ["n1", "n2", "n3"];
        let check = |s: &StateStore| {
            for n in nodes {
                assert_eq!(s.node_load(n), Some(scanned_load(s, n)), "node {n}");
            }
        };
        let mut index = 10;
        for i in 0..30u64 {
            index += 1;
            let mut w = test_writer(&mut s, index);
            w.upsert_alloc(alloc(i, nodes[(i % 3) as usize]));
            match i % 5 {
                // The client reports it running, then failed (terminal: no load).
                1 => {
                    let mut a = alloc(i, nodes[(i % 3) as usize]);
                    a.client_status = api::ALLOC_CLIENT_RUNNING.into();
                    w.upsert_client_alloc(a.clone());
                    a.client_status = api::ALLOC_CLIENT_FAILED.into();
                    w.upsert_client_alloc(a);
                }
                // The servers stop an earlier one, then the GC forgets another.
                2 => {
                    let mut a = (*w.alloc_table()[&format!("a{}", i - 2)]).clone();
                    a.desired_status = api::ALLOC_DESIRED_STOP.into();
                    w.upsert_alloc(a);
                    w.delete_alloc(&format!("a{}", i - 1));
                }
                _ => {}
            }
            drop(w);
            check(&s);
        }
        assert!(s.node_load("n1").unwrap().cpu > 0);
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        check(&back);
        assert_eq!(back.node_load("n2"), s.node_load("n2"));
    }

    #[test]
    fn a_nodes_own_reports_do_not_wake_its_agents_watch_but_wake_other_readers() {
        let mut s = StateStore::default();
        assert_eq!(s.node_alloc_index("n1", true), 1);
        let a = Allocation {
            id: "a1".into(),
            node_id: "n1".into(),
            ..Default::default()
        };
        test_writer(&mut s, 5).upsert_alloc(a.clone());
        assert_eq!(s.node_alloc_index("n1", true), 5);
        assert_eq!(s.node_alloc_index("n2", true), 1);
        test_writer(&mut s, 6).upsert_client_alloc(a);
        assert_eq!(s.node_alloc_index("n1", true), 5);
        assert_eq!(s.node_alloc_index("n1", false), 6);
        test_writer(&mut s, 7).delete_alloc("a1");
        assert_eq!(s.node_alloc_index("n1", true), 7);
        // After a snapshot the node is stamped with the table's index: never below the
        // last change, so a watcher misses nothing.
        let back: StateStore = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.node_alloc_index("n1", true), 1);
    }

    fn counted_job(count: i64) -> Arc<Job> {
        let mut j = Job {
            id: "web".into(),
            namespace: "default".into(),
            task_groups: vec![api::TaskGroup {
                name: "g".into(),
                count,
                ..Default::default()
            }],
            ..Default::default()
        };
        j.canonicalize();
        Arc::new(j)
    }

    fn put_allocs(s: &mut StateStore, job: &Arc<Job>, n: usize, client_status: &str) {
        let base = s.alloc_table().len();
        let index = s.index() + 1;
        let mut w = test_writer(s, index);
        for i in base..base + n {
            w.upsert_alloc(Allocation {
                id: format!("a{i}").into(),
                namespace: "default".into(),
                job_id: job.id.as_str().into(),
                task_group: "g".into(),
                job: Some(job.clone()),
                desired_status: api::ALLOC_DESIRED_RUN.into(),
                client_status: client_status.into(),
                ..Default::default()
            });
        }
    }

    #[test]
    fn summary_counts_every_wanted_unplaced_allocation_as_queued() {
        let job = counted_job(10);
        let mut s = StateStore::default();
        test_writer(&mut s, 1).upsert_job(job.clone());
        // Nothing placed yet (the evaluation has not run): all ten are queued.
        assert_eq!(s.job_summary(&job).summary["g"].queued, 10);
        put_allocs(&mut s, &job, 6, api::ALLOC_CLIENT_RUNNING);
        put_allocs(&mut s, &job, 1, api::ALLOC_CLIENT_PENDING);
        // An evaluation that failed with nothing queued does not hide the missing three.
        test_writer(&mut s, 9).upsert_eval(Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            status: api::EVAL_STATUS_FAILED.into(),
            queued_allocations: [("g".to_string(), 0)].into(),
            ..Default::default()
        });
        let g = s.job_summary(&job).summary["g"].clone();
        assert_eq!((g.queued, g.running, g.starting), (3, 6, 1));
        // A failed allocation is not placed work: still wanted.
        put_allocs(&mut s, &job, 1, api::ALLOC_CLIENT_FAILED);
        assert_eq!(s.job_summary(&job).summary["g"].queued, 3);
        put_allocs(&mut s, &job, 3, api::ALLOC_CLIENT_RUNNING);
        assert_eq!(s.job_summary(&job).summary["g"].queued, 0);
        let mut stopped = (*job).clone();
        stopped.stop = true;
        let mut fewer = StateStore::default();
        put_allocs(&mut fewer, &job, 2, api::ALLOC_CLIENT_RUNNING);
        assert_eq!(fewer.job_summary(&stopped).summary["g"].queued, 0);
    }

    #[test]
    fn system_summary_takes_queued_from_the_newest_finished_evaluation() {
        let mut j = (*counted_job(1)).clone();
        j.job_type = api::JOB_TYPE_SYSTEM.into();
        let job = Arc::new(j);
        let mut s = StateStore::default();
        for (i, (status, queued)) in [("blocked", 4), ("complete", 2), ("pending", 0)]
            .into_iter()
            .enumerate()
        {
            test_writer(&mut s, i as u64 + 1).upsert_eval(Evaluation {
                id: format!("e{i}"),
                namespace: "default".into(),
                job_id: "web".into(),
                status: status.into(),
                queued_allocations: [("g".to_string(), queued)].into(),
                modify_index: i as u64 + 1,
                ..Default::default()
            });
        }
        assert_eq!(s.job_summary(&job).summary["g"].queued, 2);
    }
}
