//! The deployments table: keys, reads and writes.

use super::{StateStore, StateWriter};
use crate::events::Event;
use api::{Allocation, Deployment};
use imbl::OrdMap;
use std::sync::Arc;

pub(super) fn deployment_key(d: &Deployment) -> (String, String, u64, String) {
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
}

impl StateWriter<'_> {
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

    /// Forget a job's deployments (the job was purged).
    pub fn delete_job_deployments(&mut self, ns: &str, job_id: &str) {
        for d in self.deployments_for_job(ns, job_id) {
            let s = &mut *self.state;
            s.deployments_by_job.remove(&deployment_key(&d));
            s.deployments.remove(&d.id);
            s.tables.deployments = self.index;
        }
    }
}
