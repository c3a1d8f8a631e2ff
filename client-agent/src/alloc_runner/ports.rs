//! The host ports of the group's network blocks: restored from local state after an agent
//! restart, or assigned when the allocation starts.

use super::AllocRunner;
use crate::ports::AllocatedPort;
use std::sync::Arc;

impl AllocRunner {
    /// The group's ports with their host ports: restored from local state, or assigned
    /// now. An error fails every task of the group with a sentence.
    pub(super) fn ports(&mut self, group: &api::TaskGroup) -> Result<Arc<[AllocatedPort]>, String> {
        if !self.local.ports.is_empty() {
            self.deps.ports.reserve(&self.local.ports);
            return Ok(self.local.ports.clone().into());
        }
        if group.networks.is_empty() {
            return Ok(Arc::from(Vec::new()));
        }
        let host_ip = self
            .deps
            .node
            .attributes
            .get("unique.network.ip-address")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        match self.deps.ports.assign(&group.networks, &host_ip) {
            Ok(p) => {
                self.local.ports = p.clone();
                Ok(p.into())
            }
            Err(e) => {
                tracing::error!(alloc = %self.alloc_id(), error = %e, "cannot assign the group's ports");
                Err(format!("assigning the group's ports: {e}"))
            }
        }
    }
}
