//! The state store's serialised form (snapshots, `operator snapshot save`).

use super::services::service_key;
use super::{RootKey, StateStore, StoredVariable, TableIndexes};
use api::{Allocation, Deployment, Evaluation, Job, Node, ServiceRegistration};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The state store, serialised (snapshots, `operator snapshot save`): plain lists, keys
/// rebuilt on load, and each job version written once however many allocations share it.
#[derive(Serialize, Deserialize)]
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

impl From<StateStore> for StateData {
    fn from(s: StateStore) -> Self {
        let mut alloc_jobs: Vec<Arc<Job>> = Vec::new();
        let mut positions: std::collections::HashMap<*const Job, usize> = Default::default();
        let allocs = s
            .allocs
            .values()
            .map(|a| {
                let mut a = (**a).clone();
                let pos = a.job.take().map(|j| {
                    *positions.entry(Arc::as_ptr(&j)).or_insert_with(|| {
                        alloc_jobs.push(j.clone());
                        alloc_jobs.len() - 1
                    })
                });
                (pos, a)
            })
            .collect();
        StateData {
            index: s.index,
            tables: s.tables.clone(),
            jobs: s.jobs.values().cloned().collect(),
            job_versions: s.job_versions.values().cloned().collect(),
            alloc_jobs,
            allocs,
            evals: s.evals.values().cloned().collect(),
            nodes: s.nodes.values().cloned().collect(),
            services: s.services.values().cloned().collect(),
            deployments: s.deployments.values().cloned().collect(),
            scheduler_config: s.scheduler_config.clone(),
            variables: s.variables.values().cloned().collect(),
            root_keys: s.root_keys.values().cloned().collect(),
            acl: s.acl.clone(),
            namespaces: Some(s.namespaces.values().cloned().collect()),
        }
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
        for (pos, mut a) in d.allocs {
            a.job = pos.and_then(|p| d.alloc_jobs.get(p).cloned());
            s.allocs.insert(a.id.clone(), Arc::new(a));
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
