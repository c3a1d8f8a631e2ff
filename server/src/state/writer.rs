//! [`StateWriter`]: the one way to change a [`StateStore`].

use super::{job_alloc_key, StateStore, TableIndexes};
use crate::events::Event;
use api::{Allocation, Evaluation, Job, Node};
use std::sync::Arc;

/// The only way to change a `StateStore`: typed writes that keep the table indexes.
///
/// It can be built only with a [`crate::fsm::WriteToken`], which only the FSM can make, so
/// every state change goes through `fsm::apply` (a test in `fsm` checks that no other
/// module names the constructor). Reads go through `Deref` to the store.
pub struct StateWriter<'a> {
    pub(super) state: &'a mut StateStore,
    pub(super) index: u64,
    /// What this entry changed, for the event stream (`crate::events`; the FSM types them).
    events: Vec<Event>,
    /// The nodes whose allocation index this entry moved (`crate::watchers`).
    pub(super) wakes: crate::watchers::NodeWakes,
    /// The allocation this entry wrote last: the next one most likely shares its strings
    /// (`StateStore::share_stored`).
    last: Option<Arc<Allocation>>,
}

impl<'a> StateWriter<'a> {
    /// Start applying the Raft entry at `index`: the store's index moves to it.
    pub fn new(state: &'a mut StateStore, index: u64, _: crate::fsm::WriteToken) -> Self {
        state.index = index;
        StateWriter {
            state,
            index,
            events: Vec::new(),
            wakes: Default::default(),
            last: None,
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

    /// Write an allocation changed on the servers' side: every watch of its node wakes.
    pub fn upsert_alloc(&mut self, a: Allocation) {
        let node = self.state.node_key(&a.node_id);
        self.state.node_alloc_server_index.insert(node, self.index);
        self.upsert_client_alloc(a);
    }

    /// Write an allocation as its node reported it: everything moves but the node's own
    /// agent's watch, which would only echo the report back to the agent that sent it.
    pub fn upsert_client_alloc(&mut self, mut a: Allocation) {
        // Stored for its life: no decoded vector's spare room with it.
        a.shrink_to_fit();
        self.wakes.nodes.push(a.node_id.to_string());
        let s = &mut *self.state;
        // Its ID is the stored one's after this, its node ID the per-node index's.
        s.share_stored(&mut a, self.last.as_deref());
        let node = a.node_id.clone();
        s.node_alloc_index.insert(node.clone(), self.index);
        let a = Arc::new(a);
        let id = a.id.clone();
        let old = s.allocs.insert(id.clone(), a.clone());
        if let Some(o) = old.as_ref().filter(|o| o.node_id != a.node_id) {
            s.allocs_by_node.remove(&(o.node_id.clone(), id.clone()));
        }
        if let Some(o) = old
            .as_ref()
            .filter(|o| (&o.namespace, &o.job_id) != (&a.namespace, &a.job_id))
        {
            s.allocs_by_job.remove(&job_alloc_key(o));
        }
        s.allocs_by_job.insert(job_alloc_key(&a), a.clone());
        s.allocs_by_node.insert((node, id), a.clone());
        self.last = Some(a.clone());
        s.count_alloc(old.as_deref(), Some(&a));
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

    /// The nodes whose allocation watches must wake (the FSM hands them to `Effects`).
    pub fn take_wakes(&mut self) -> crate::watchers::NodeWakes {
        std::mem::take(&mut self.wakes)
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
            variables: self.index,
            acl: self.index,
            namespaces: self.index,
        };
        *self.state = restored;
        self.wakes.all = true;
    }
}

impl std::ops::Deref for StateWriter<'_> {
    type Target = StateStore;
    fn deref(&self) -> &StateStore {
        self.state
    }
}
