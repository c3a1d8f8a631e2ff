//! The state store's serialised form (snapshots, `operator snapshot save`).

use super::services::service_key;
use super::{RootKey, StateStore, StoredVariable, TableIndexes};
use api::{Allocation, Deployment, Evaluation, Job, Node, ServiceRegistration};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The state store, serialised (snapshots, `operator snapshot save`): plain lists, keys
/// rebuilt on load, and each job version written once however many allocations share it.
/// Read into this; written from the store by [`StateDataRef`], field for field.
#[derive(Deserialize)]
pub(super) struct StateData {
    index: u64,
    tables: TableIndexes,
    jobs: Vec<Arc<Job>>,
    job_versions: Vec<Arc<Job>>,
    /// Job versions allocations run, each once; allocations refer to them by position.
    alloc_jobs: Vec<Arc<Job>>,
    allocs: Vec<(Option<usize>, Allocation)>,
    evals: Vec<Arc<Evaluation>>,
    nodes: Vec<Arc<Node>>,
    /// Absent from snapshots taken before services were kept.
    #[serde(default)]
    services: Vec<Arc<ServiceRegistration>>,
    /// Absent from snapshots taken before deployments were kept.
    #[serde(default)]
    deployments: Vec<Arc<Deployment>>,
    /// Absent from snapshots taken before it could be set.
    #[serde(default)]
    scheduler_config: Option<Arc<api::SchedulerConfiguration>>,
    /// Absent from snapshots taken before variables were kept.
    #[serde(default)]
    variables: Vec<Arc<StoredVariable>>,
    #[serde(default)]
    root_keys: Vec<Arc<RootKey>>,
    /// Absent from snapshots taken before ACLs were kept.
    #[serde(default)]
    acl: super::AclTables,
    /// Absent (`None`) from snapshots taken before namespaces were kept.
    #[serde(default)]
    namespaces: Option<Vec<Arc<api::Namespace>>>,
}

/// [`StateData`] borrowed from a store: the same fields, written as they are walked, so a
/// snapshot of a hundred thousand allocations is never a second copy of them in memory
/// (each allocation is copied only while it is written, to leave its job out).
#[derive(Serialize)]
struct StateDataRef<'a> {
    index: u64,
    tables: &'a TableIndexes,
    jobs: Values<'a, (String, String), Arc<Job>>,
    job_versions: Values<'a, (String, String, u64), Arc<Job>>,
    alloc_jobs: &'a [Arc<Job>],
    allocs: AllocsRef<'a>,
    evals: Values<'a, String, Arc<Evaluation>>,
    nodes: Values<'a, String, Arc<Node>>,
    services: Values<'a, super::services::ServiceKey, Arc<ServiceRegistration>>,
    deployments: Values<'a, String, Arc<Deployment>>,
    scheduler_config: &'a Option<Arc<api::SchedulerConfiguration>>,
    variables: Values<'a, super::variables::VariableKey, Arc<StoredVariable>>,
    root_keys: Values<'a, String, Arc<RootKey>>,
    acl: &'a super::AclTables,
    namespaces: Values<'a, String, Arc<api::Namespace>>,
}

/// A table's values, written as a list.
struct Values<'a, K, V>(&'a imbl::OrdMap<K, V>);

impl<K: Ord + Clone, V: Clone + Serialize> Serialize for Values<'_, K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values())
    }
}

/// The allocations as `(position of their job in alloc_jobs, allocation without its job)`.
struct AllocsRef<'a> {
    allocs: &'a imbl::OrdMap<super::Key, Arc<Allocation>>,
    positions: &'a std::collections::HashMap<*const Job, usize>,
}

impl Serialize for AllocsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.allocs.values().map(|a| {
            let pos = a
                .job
                .as_ref()
                .and_then(|j| self.positions.get(&Arc::as_ptr(j)).copied());
            let mut a = (**a).clone();
            a.job = None;
            (pos, a)
        }))
    }
}

impl Serialize for StateStore {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        // Each job version allocations run, written once.
        let mut alloc_jobs: Vec<Arc<Job>> = Vec::new();
        let mut positions: std::collections::HashMap<*const Job, usize> = Default::default();
        for a in self.allocs.values() {
            if let Some(j) = &a.job {
                positions.entry(Arc::as_ptr(j)).or_insert_with(|| {
                    alloc_jobs.push(j.clone());
                    alloc_jobs.len() - 1
                });
            }
        }
        StateDataRef {
            index: self.index,
            tables: &self.tables,
            jobs: Values(&self.jobs),
            job_versions: Values(&self.job_versions),
            alloc_jobs: &alloc_jobs,
            allocs: AllocsRef {
                allocs: &self.allocs,
                positions: &positions,
            },
            evals: Values(&self.evals),
            nodes: Values(&self.nodes),
            services: Values(&self.services),
            deployments: Values(&self.deployments),
            scheduler_config: &self.scheduler_config,
            variables: Values(&self.variables),
            root_keys: Values(&self.root_keys),
            acl: &self.acl,
            namespaces: Values(&self.namespaces),
        }
        .serialize(ser)
    }
}

impl From<StateData> for StateStore {
    fn from(d: StateData) -> Self {
        let mut s = StateStore {
            index: d.index,
            tables: d.tables,
            ..Default::default()
        };
        for j in d.jobs {
            s.jobs.insert((j.ns().to_string(), j.id.clone()), j);
        }
        for j in d.job_versions {
            s.job_versions
                .insert((j.ns().to_string(), j.id.clone(), j.version), j);
        }
        // The strings restored so far, and the last allocation restored of each group
        // (to share its resources with).
        let mut strings = std::collections::HashSet::new();
        type Group = (api::ArcStr, api::ArcStr, api::ArcStr);
        let mut last_of_group: HashMap<Group, Arc<Allocation>> = HashMap::new();
        for (pos, mut a) in d.allocs {
            a.job = pos.and_then(|p| d.alloc_jobs.get(p).cloned());
            a.shrink_to_fit();
            super::intern_strings(&mut a, &mut strings);
            let group = (a.namespace.clone(), a.job_id.clone(), a.task_group.clone());
            super::share_parts(&mut a, last_of_group.get(&group).map(|p| &**p));
            let a = Arc::new(a);
            last_of_group.insert(group, a.clone());
            s.allocs.insert(a.id.clone(), a);
        }
        for e in d.evals {
            s.evals.insert(e.id.clone(), e);
        }
        for n in d.nodes {
            s.nodes.insert(n.id.clone(), n);
        }
        for r in d.services {
            s.services.insert(service_key(&r), r);
        }
        for dep in d.deployments {
            s.deployments.insert(dep.id.clone(), dep);
        }
        for v in d.variables {
            s.variables.insert(v.key(), v);
        }
        for k in d.root_keys {
            s.root_keys.insert(k.key_id.clone(), k);
        }
        s.scheduler_config = d.scheduler_config;
        s.acl = d.acl;
        match d.namespaces {
            Some(list) => {
                for ns in list {
                    s.namespaces.insert(ns.name.clone(), ns);
                }
            }
            // Before namespaces were kept, any namespace could be used: those in use
            // become namespaces, so their jobs and variables stay reachable.
            None => {
                for name in s.namespaces_in_use() {
                    let ns = api::Namespace {
                        name: name.clone(),
                        create_index: s.index,
                        modify_index: s.index,
                        ..Default::default()
                    };
                    s.namespaces.insert(name, Arc::new(ns));
                }
            }
        }
        s.reindex();
        s
    }
}
