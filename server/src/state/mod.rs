//! The in-memory state store: one persistent map per table, so a snapshot is an O(1) clone.
//!
//! Only the FSM (`fsm/`) mutates a `StateStore`, through [`StateWriter`] (`writer.rs`);
//! everyone else reads an immutable `Arc<StateStore>` published after each applied batch
//! of Raft entries. The services and deployments tables keep their keys, reads and writes
//! in `services.rs` and `deployments.rs`; `data.rs` is the serialised form.

use api::{
    Allocation, Deployment, Evaluation, Job, JobSummary, Node, ServiceRegistration,
    TaskGroupSummary,
};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod acl;
mod data;
mod deployments;
mod operator;
mod services;
mod variables;
mod writer;

pub use acl::AclTables;
use data::StateData;
use deployments::deployment_key;
pub use services::ServiceKey;
pub use variables::{RootKey, StoredVariable, VariableKey};
pub use writer::StateWriter;

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
    /// The operator's scheduler configuration; `None` until one is set (`operator.rs`).
    scheduler_config: Option<Arc<api::SchedulerConfiguration>>,
    /// Variables keyed `(namespace, path)`, items encrypted (`variables.rs`).
    variables: OrdMap<VariableKey, Arc<StoredVariable>>,
    /// Root keys the variables are encrypted with, by key ID.
    root_keys: OrdMap<String, Arc<RootKey>>,
    /// ACL policies, tokens, roles and the bootstrap index (`acl.rs`).
    acl: AclTables,
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
        self.job_summary_of(job, &self.allocs_for_job(job.ns(), &job.id))
    }

    /// `job_summary` over the job's allocations (`allocs_for_job`) a caller already read,
    /// so a page that also lists them reads a big job's allocations once.
    pub fn job_summary_of(&self, job: &Job, allocs: &[Arc<Allocation>]) -> JobSummary {
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
        for a in allocs {
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
            for a in allocs {
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
