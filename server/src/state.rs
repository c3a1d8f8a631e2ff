//! The in-memory state store: one persistent map per table, so a snapshot is an O(1) clone.
//!
//! Only the FSM (`fsm.rs`) mutates a `StateStore`; everyone else reads an immutable
//! `Arc<StateStore>` published after each applied batch of Raft entries.

use api::{
    Allocation, Deployment, Evaluation, Job, JobSummary, Node, ServiceRegistration,
    TaskGroupSummary,
};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::events::Event;

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
}

/// The state store, serialised (snapshots, `operator snapshot save`): plain lists, keys
/// rebuilt on load, and each job version written once however many allocations share it.
#[derive(Serialize, Deserialize)]
struct StateData {
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
        s.reindex();
        s
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "StateData", into = "StateData")]
pub struct StateStore {
    /// The Raft index of the last applied entry.
    index: u64,
    tables: TableIndexes,
    jobs: OrdMap<JobKey, Arc<Job>>,
    /// Every version of every job, keyed `(namespace, id, version)`.
    job_versions: OrdMap<(String, String, u64), Arc<Job>>,
    allocs: OrdMap<String, Arc<Allocation>>,
    evals: OrdMap<String, Arc<Evaluation>>,
    nodes: OrdMap<String, Arc<Node>>,
    /// Secondary indexes, rebuilt on snapshot restore.
    allocs_by_job: OrdSet<(String, String, String)>,
    allocs_by_node: OrdSet<(String, String)>,
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
}

/// `(namespace, service name, registration ID)`.
pub type ServiceKey = (String, String, String);

fn service_key(r: &ServiceRegistration) -> ServiceKey {
    (r.namespace.clone(), r.service_name.clone(), r.id.clone())
}

/// A registration's event on the `Service` topic (keyed by ID; `Service:<job>` and
/// `Service:<name>` match it too).
fn service_event(r: &Arc<ServiceRegistration>, kind: &'static str) -> Event {
    use crate::events::{Payload, Topic};
    Event::new(
        Topic::Service,
        &r.id,
        &r.namespace,
        Payload::other("Service", r.clone()),
    )
    .with_filter_keys([r.job_id.as_str(), r.service_name.as_str()])
    .with_type(kind)
}

fn deployment_key(d: &Deployment) -> (String, String, u64, String) {
    (
        d.namespace.clone(),
        d.job_id.clone(),
        d.create_index,
        d.id.clone(),
    )
}

/// A deployment's event on the `Deployment` topic (keyed by ID; `Deployment:<job>` too).
fn deployment_event(d: &Arc<Deployment>, kind: &'static str) -> Event {
    use crate::events::{Payload, Topic};
    Event::new(
        Topic::Deployment,
        &d.id,
        &d.namespace,
        Payload::other("Deployment", d.clone()),
    )
    .with_filter_keys([d.job_id.as_str()])
    .with_type(kind)
}

impl StateStore {
    /// Rebuild the secondary indexes (after deserialising a snapshot).
    fn reindex(&mut self) {
        self.allocs_by_job = self
            .allocs
            .values()
            .map(|a| (a.namespace.clone(), a.job_id.clone(), a.id.clone()))
            .collect();
        self.allocs_by_node = self
            .allocs
            .values()
            .map(|a| (a.node_id.clone(), a.id.clone()))
            .collect();
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

    pub fn alloc_table(&self) -> &OrdMap<String, Arc<Allocation>> {
        &self.allocs
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
        let lo = (ns.to_string(), job_id.to_string(), String::new());
        self.allocs_by_job
            .range(lo..)
            .take_while(|(n, j, _)| n == ns && j == job_id)
            .filter_map(|(_, _, id)| self.allocs.get(id).cloned())
            .collect()
    }

    pub fn allocs_for_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        let lo = (node_id.to_string(), String::new());
        self.allocs_by_node
            .range(lo..)
            .take_while(|(n, _)| n == node_id)
            .filter_map(|(_, id)| self.allocs.get(id).cloned())
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

    /// Every service registration, ordered by namespace, service name and ID.
    pub fn service_table(&self) -> &OrdMap<ServiceKey, Arc<ServiceRegistration>> {
        &self.services
    }

    /// One registration by its ID.
    pub fn service(&self, id: &str) -> Option<Arc<ServiceRegistration>> {
        let key = self.service_ids.get(id)?;
        self.services.get(key).cloned()
    }

    /// The instances of service `name` in namespace `ns`, ordered by ID.
    pub fn services_named(&self, ns: &str, name: &str) -> Vec<Arc<ServiceRegistration>> {
        let lo = (ns.to_string(), name.to_string(), String::new());
        self.services
            .range(lo..)
            .take_while(|((n, s, _), _)| n == ns && s == name)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The registrations of one allocation, ordered by ID.
    pub fn services_for_alloc(&self, alloc_id: &str) -> Vec<Arc<ServiceRegistration>> {
        let lo = (alloc_id.to_string(), String::new());
        self.services_by_alloc
            .range(lo..)
            .take_while(|(a, _)| a == alloc_id)
            .filter_map(|(_, id)| self.service(id))
            .collect()
    }

    /// Every deployment, by ID.
    pub fn deployment_table(&self) -> &OrdMap<String, Arc<Deployment>> {
        &self.deployments
    }

    pub fn deployment(&self, id: &str) -> Option<Arc<Deployment>> {
        self.deployments.get(id).cloned()
    }

    /// A job's deployments, newest first.
    pub fn deployments_for_job(&self, ns: &str, job_id: &str) -> Vec<Arc<Deployment>> {
        let lo = (ns.to_string(), job_id.to_string(), 0, String::new());
        let mut v: Vec<_> = self
            .deployments_by_job
            .range(lo..)
            .take_while(|(n, j, _, _)| n == ns && j == job_id)
            .filter_map(|(_, _, _, id)| self.deployments.get(id).cloned())
            .collect();
        v.reverse();
        v
    }

    /// A job's newest deployment.
    pub fn latest_deployment(&self, ns: &str, job_id: &str) -> Option<Arc<Deployment>> {
        self.deployments_for_job(ns, job_id).into_iter().next()
    }

    /// The allocations a deployment placed.
    pub fn allocs_for_deployment(&self, d: &Deployment) -> Vec<Arc<Allocation>> {
        let mut v = self.allocs_for_job(&d.namespace, &d.job_id);
        v.retain(|a| a.deployment_id == d.id);
        v
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

    /// Allocation counts per task group and client status, as `GET /v1/job/:id/summary`.
    pub fn job_summary(&self, job: &Job) -> JobSummary {
        let mut summary = JobSummary {
            job_id: job.id.clone(),
            namespace: job.ns().to_string(),
            create_index: job.create_index,
            modify_index: job.modify_index,
            ..Default::default()
        };
        for g in &job.task_groups {
            summary
                .summary
                .insert(g.name.clone(), TaskGroupSummary::default());
        }
        for a in self.allocs_for_job(job.ns(), &job.id) {
            let s = summary.summary.entry(a.task_group.clone()).or_default();
            match a.client_status.as_str() {
                api::ALLOC_CLIENT_PENDING => s.starting += 1,
                api::ALLOC_CLIENT_RUNNING => s.running += 1,
                api::ALLOC_CLIENT_COMPLETE => s.complete += 1,
                api::ALLOC_CLIENT_FAILED => s.failed += 1,
                api::ALLOC_CLIENT_LOST => s.lost += 1,
                api::ALLOC_CLIENT_UNKNOWN => s.unknown += 1,
                _ => {}
            }
        }
        // Queued: every wanted allocation not placed (Nomad: desired minus placed, kept
        // from the evaluations' QueuedAllocations). For service and batch groups the
        // count says what is wanted, so it is derived from the allocations themselves and
        // can never say 0 while some are missing (an evaluation that failed or was never
        // run included). System groups have no count: their newest finished evaluation
        // says how many nodes still wait.
        if job.stop || job.status == api::JOB_STATUS_DEAD {
            return summary;
        }
        let counted = matches!(
            job.job_type.as_str(),
            api::JOB_TYPE_SERVICE | api::JOB_TYPE_BATCH | ""
        );
        if counted {
            let batch = job.job_type == api::JOB_TYPE_BATCH;
            let mut placed: std::collections::HashMap<&str, u64> = Default::default();
            let allocs = self.allocs_for_job(job.ns(), &job.id);
            for a in &allocs {
                let wanted = !a.desired_stop()
                    && (matches!(
                        a.client_status.as_str(),
                        api::ALLOC_CLIENT_PENDING
                            | api::ALLOC_CLIENT_RUNNING
                            | api::ALLOC_CLIENT_UNKNOWN
                    ) || (batch && a.client_status == api::ALLOC_CLIENT_COMPLETE));
                if wanted {
                    *placed.entry(a.task_group.as_str()).or_default() += 1;
                }
            }
            for g in &job.task_groups {
                let want = g.count.max(0) as u64;
                let have = placed.get(g.name.as_str()).copied().unwrap_or(0);
                if let Some(s) = summary.summary.get_mut(&g.name) {
                    s.queued = want.saturating_sub(have);
                }
            }
        } else if let Some(e) = self
            .evals_for_job(job.ns(), &job.id)
            .into_iter()
            .filter(|e| {
                e.status != api::EVAL_STATUS_PENDING && e.status != api::EVAL_STATUS_CANCELED
            })
            .max_by_key(|e| e.modify_index)
        {
            for (g, n) in &e.queued_allocations {
                summary.summary.entry(g.clone()).or_default().queued = *n;
            }
        }
        summary
    }
}

/// The only way to change a `StateStore`: typed writes that keep the table indexes.
///
/// It can be built only with a [`crate::fsm::WriteToken`], which only the FSM can make, so
/// every state change goes through `fsm::apply` (a test in `fsm` checks that no other
/// module names the constructor). Reads go through `Deref` to the store.
pub struct StateWriter<'a> {
    state: &'a mut StateStore,
    index: u64,
    /// What this entry changed, for the event stream (`crate::events`; the FSM types them).
    events: Vec<Event>,
}

impl<'a> StateWriter<'a> {
    /// Start applying the Raft entry at `index`: the store's index moves to it.
    pub fn new(state: &'a mut StateStore, index: u64, _: crate::fsm::WriteToken) -> Self {
        state.index = index;
        StateWriter {
            state,
            index,
            events: Vec::new(),
        }
    }

    /// The index of the entry being applied.
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn upsert_node(&mut self, node: Node) {
        let node = Arc::new(node);
        self.record(Event::node(&node));
        self.state.nodes.insert(node.id.clone(), node);
        self.state.tables.nodes = self.index;
    }

    pub fn upsert_alloc(&mut self, a: Allocation) {
        let s = &mut *self.state;
        s.allocs_by_job
            .insert((a.namespace.clone(), a.job_id.clone(), a.id.clone()));
        s.allocs_by_node.insert((a.node_id.clone(), a.id.clone()));
        let a = Arc::new(a);
        s.allocs.insert(a.id.clone(), a.clone());
        s.tables.allocs = self.index;
        self.record(Event::alloc(&a));
    }

    /// Write an evaluation and return the stored copy.
    pub fn upsert_eval(&mut self, e: Evaluation) -> Arc<Evaluation> {
        let s = &mut *self.state;
        s.evals_by_job
            .insert((e.namespace.clone(), e.job_id.clone(), e.id.clone()));
        let e = Arc::new(e);
        s.evals.insert(e.id.clone(), e.clone());
        s.tables.evals = self.index;
        self.record(Event::eval(&e));
        e
    }

    /// Replace a job's current entry (its status, its stop flag) without a new version.
    pub fn upsert_job(&mut self, job: Arc<Job>) {
        self.record(Event::job(&job));
        self.state
            .jobs
            .insert((job.ns().to_string(), job.id.clone()), job);
        self.state.tables.jobs = self.index;
    }

    /// Write a job as its current entry and as the version it carries.
    pub fn upsert_job_version(&mut self, job: Arc<Job>) {
        self.state.job_versions.insert(
            (job.ns().to_string(), job.id.clone(), job.version),
            job.clone(),
        );
        self.upsert_job(job);
    }

    /// Forget a job and every version of it.
    pub fn delete_job(&mut self, ns: &str, id: &str) {
        let s = &mut *self.state;
        let old = s.jobs.remove(&(ns.to_string(), id.to_string()));
        let lo = (ns.to_string(), id.to_string(), 0);
        let hi = (ns.to_string(), id.to_string(), u64::MAX);
        let versions: Vec<_> = s
            .job_versions
            .range(lo..=hi)
            .map(|(k, _)| k.clone())
            .collect();
        for k in versions {
            s.job_versions.remove(&k);
        }
        s.tables.jobs = self.index;
        if let Some(j) = old {
            self.record(Event::job(&j));
        }
    }

    /// Add or update a service registration; its create and modify indexes are set here.
    /// Returns false (and writes nothing) when an identical registration is stored, so an
    /// agent re-sending what it registered does not wake watchers.
    pub fn upsert_service(&mut self, mut r: ServiceRegistration) -> bool {
        let old = self.service(&r.id);
        if let Some(old) = &old {
            r.create_index = old.create_index;
            r.modify_index = old.modify_index;
            if **old == r {
                return false;
            }
            // A renamed service (or moved namespace) leaves its old key.
            self.remove_service(old);
        } else {
            r.create_index = self.index;
        }
        r.modify_index = self.index;
        let s = &mut *self.state;
        let key = service_key(&r);
        s.service_ids.insert(r.id.clone(), key.clone());
        s.services_by_alloc
            .insert((r.alloc_id.clone(), r.id.clone()));
        let r = Arc::new(r);
        s.services.insert(key, r.clone());
        s.tables.services = self.index;
        self.record(service_event(&r, "ServiceRegistration"));
        true
    }

    /// Delete a service registration by ID; false when there was none.
    pub fn delete_service(&mut self, id: &str) -> bool {
        match self.service(id) {
            Some(old) => {
                self.remove_service(&old);
                self.state.tables.services = self.index;
                self.record(service_event(&old, "ServiceDeregistration"));
                true
            }
            None => false,
        }
    }

    fn remove_service(&mut self, r: &ServiceRegistration) {
        let s = &mut *self.state;
        s.services.remove(&service_key(r));
        s.service_ids.remove(&r.id);
        s.services_by_alloc
            .remove(&(r.alloc_id.clone(), r.id.clone()));
    }

    /// Add or replace a deployment; its create and modify indexes are set here. `kind`
    /// types its event (`DeploymentStatusUpdate`, `DeploymentPromotion`, ...).
    pub fn upsert_deployment(&mut self, mut d: Deployment, kind: &'static str) -> Arc<Deployment> {
        match self.state.deployments.get(&d.id) {
            Some(old) => {
                d.create_index = old.create_index;
                self.state.deployments_by_job.remove(&deployment_key(old));
            }
            None => d.create_index = self.index,
        }
        d.modify_index = self.index;
        let s = &mut *self.state;
        s.deployments_by_job.insert(deployment_key(&d));
        let d = Arc::new(d);
        s.deployments.insert(d.id.clone(), d.clone());
        s.tables.deployments = self.index;
        self.record(deployment_event(&d, kind));
        d
    }

    /// Mark one version of a job stable (or not); the current entry too when it is that
    /// version. False when the version is unknown.
    pub fn set_job_stable(&mut self, ns: &str, id: &str, version: u64, stable: bool) -> bool {
        let key = (ns.to_string(), id.to_string(), version);
        let Some(v) = self.state.job_versions.get(&key).cloned() else {
            return false;
        };
        if v.stable != stable {
            let mut j = (*v).clone();
            j.stable = stable;
            self.state.job_versions.insert(key, Arc::new(j));
            self.state.tables.jobs = self.index;
        }
        if let Some(cur) = self.job(ns, id).filter(|c| c.version == version) {
            if cur.stable != stable {
                let mut j = (*cur).clone();
                j.stable = stable;
                self.upsert_job(Arc::new(j));
            }
        }
        true
    }

    /// Forget a job's deployments (the job was purged).
    pub fn delete_job_deployments(&mut self, ns: &str, job_id: &str) {
        for d in self.deployments_for_job(ns, job_id) {
            let s = &mut *self.state;
            s.deployments_by_job.remove(&deployment_key(&d));
            s.deployments.remove(&d.id);
            s.tables.deployments = self.index;
        }
    }

    /// Record a change for the event stream, at this entry's index. The FSM gives it the
    /// command's type unless it has one (`Event::with_type`).
    pub fn record(&mut self, mut event: Event) {
        event.index = self.index;
        self.events.push(event);
    }

    /// The changes recorded so far (the FSM hands them to `Effects::events`).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Replace the whole state with a saved one; every table counts as written now.
    pub fn restore(&mut self, mut restored: StateStore) {
        restored.reindex();
        restored.index = self.index;
        restored.tables = TableIndexes {
            jobs: self.index,
            allocs: self.index,
            evals: self.index,
            nodes: self.index,
            services: self.index,
            deployments: self.index,
        };
        *self.state = restored;
    }
}

impl std::ops::Deref for StateWriter<'_> {
    type Target = StateStore;
    fn deref(&self) -> &StateStore {
        self.state
    }
}

impl scheduler::State for StateStore {
    fn index(&self) -> u64 {
        self.index
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
                id: format!("a{i}"),
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
                id: format!("a{i}"),
                namespace: "default".into(),
                job_id: job.id.clone(),
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
