//! The operator's scheduler configuration: one value, read by the scheduling workers.

use super::{StateStore, StateWriter};
use api::SchedulerConfiguration;
use std::sync::Arc;

impl StateStore {
    /// The scheduler configuration in force (Nomad's defaults until an operator sets one).
    pub fn scheduler_config(&self) -> Arc<SchedulerConfiguration> {
        self.scheduler_config.clone().unwrap_or_default()
    }

    /// Whether an operator ever set one (its modify index tells when).
    pub fn scheduler_config_set(&self) -> bool {
        self.scheduler_config.is_some()
    }
}

impl StateWriter<'_> {
    /// Store `config` at this entry's index (kept create index on an update).
    pub fn set_scheduler_config(&mut self, mut config: SchedulerConfiguration) {
        config.create_index = self
            .state
            .scheduler_config
            .as_ref()
            .map_or(self.index, |c| c.create_index);
        config.modify_index = self.index;
        self.state.scheduler_config = Some(Arc::new(config));
    }
}

/// Deletions for the garbage collector (`fsm::operator::garbage_collect`).
impl StateWriter<'_> {
    /// Forget an allocation; false when it was not there.
    pub fn delete_alloc(&mut self, id: &str) -> bool {
        let s = &mut *self.state;
        let Some(a) = s.allocs.remove(id) else {
            return false;
        };
        let node = s.node_key(&a.node_id);
        s.allocs_by_job.remove(&super::job_alloc_key(&a));
        s.allocs_by_node.remove(&(node.clone(), a.id.clone()));
        s.count_alloc(Some(&a), None);
        self.wakes.nodes.push(a.node_id.to_string());
        s.node_alloc_index.insert(node.clone(), self.index);
        s.node_alloc_server_index.insert(node, self.index);
        s.tables.allocs = self.index;
        true
    }

    /// Forget an evaluation; false when it was not there.
    pub fn delete_eval(&mut self, id: &str) -> bool {
        let s = &mut *self.state;
        let Some(e) = s.evals.remove(id) else {
            return false;
        };
        s.evals_by_job
            .remove(&(e.namespace.clone(), e.job_id.clone(), e.id.clone()));
        s.tables.evals = self.index;
        true
    }
}

impl StateWriter<'_> {
    /// Forget a deployment whose job is gone and which is no longer running.
    pub fn delete_deployment(&mut self, id: &str) {
        let Some(d) = self.state.deployments.get(id).cloned() else {
            return;
        };
        if self.state.job(&d.namespace, &d.job_id).is_some() || d.active() {
            return;
        }
        let s = &mut *self.state;
        s.deployments_by_job
            .remove(&super::deployments::deployment_key(&d));
        s.deployments.remove(id);
        s.tables.deployments = self.index;
    }
}
