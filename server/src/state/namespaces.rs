//! The namespaces table: reads and writes.
//!
//! `default` always exists: until someone writes it (a new description, meta), reads
//! answer [`api::Namespace::default_namespace`], so an empty state and a snapshot taken
//! before namespaces were kept both have it without a write.

use super::{StateStore, StateWriter};
use api::Namespace;
use std::sync::Arc;

impl StateStore {
    /// The namespace called `name`; `default` always exists.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(name).cloned().or_else(|| {
            (name == api::DEFAULT_NAMESPACE).then(|| Arc::new(Namespace::default_namespace()))
        })
    }

    pub fn namespace_exists(&self, name: &str) -> bool {
        name == api::DEFAULT_NAMESPACE || self.namespaces.contains_key(name)
    }

    /// Every namespace, ordered by name, `default` included.
    pub fn namespace_list(&self) -> Vec<Arc<Namespace>> {
        let mut out: Vec<Arc<Namespace>> = self.namespaces.values().cloned().collect();
        if !self.namespaces.contains_key(api::DEFAULT_NAMESPACE) {
            out.push(Arc::new(Namespace::default_namespace()));
            out.sort_by(|a, b| a.name.cmp(&b.name));
        }
        out
    }

    /// Why the namespace cannot be deleted yet: a job in it that is not dead, or a
    /// variable in it (`None`: nothing holds it).
    pub fn namespace_holder(&self, name: &str) -> Option<String> {
        let lo = (name.to_string(), String::new());
        let live = self
            .jobs
            .range(lo.clone()..)
            .take_while(|((ns, _), _)| ns == name)
            .find(|(_, j)| j.status != api::JOB_STATUS_DEAD);
        if let Some((_, j)) = live {
            return Some(format!(
                "job {:?} is not terminal; stop and purge the namespace's jobs first",
                j.id
            ));
        }
        let var = self
            .variables
            .range(lo..)
            .take_while(|((ns, _), _)| ns == name)
            .next();
        var.map(|((_, path), _)| {
            format!("it holds variable {path:?}; delete the namespace's variables first")
        })
    }

    /// Namespaces that objects of an older state live in (jobs, variables), for a
    /// snapshot taken before namespaces were kept: each becomes a namespace of its own so
    /// its jobs can still be updated.
    pub(super) fn namespaces_in_use(&self) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> = Default::default();
        names.extend(self.jobs.keys().map(|(ns, _)| ns.clone()));
        names.extend(self.variables.keys().map(|(ns, _)| ns.clone()));
        names.remove(api::DEFAULT_NAMESPACE);
        names.retain(|n| api::namespace_name_problem(n).is_none());
        names.into_iter().collect()
    }
}

impl StateWriter<'_> {
    /// Create or replace a namespace; its create index is kept from the stored one (or
    /// from the built-in `default`). Returns the stored copy.
    pub fn put_namespace(&mut self, mut ns: Namespace) -> Arc<Namespace> {
        ns.create_index = match self.state.namespace(&ns.name) {
            Some(old) => old.create_index,
            None => self.index,
        };
        ns.modify_index = self.index;
        let ns = Arc::new(ns);
        self.state.namespaces.insert(ns.name.clone(), ns.clone());
        self.state.tables.namespaces = self.index;
        ns
    }

    /// Forget a namespace; false when there was none stored.
    pub fn delete_namespace(&mut self, name: &str) -> bool {
        let gone = self.state.namespaces.remove(name).is_some();
        if gone {
            self.state.tables.namespaces = self.index;
        }
        gone
    }
}
