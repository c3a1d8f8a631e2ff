//! The host ports of the group's network blocks: restored from local state after an agent
//! restart, taken from the servers' assignment (`AllocatedResources.Shared.Ports`), or, for
//! an allocation placed before the servers assigned ports, chosen by the agent.

use super::AllocRunner;
use crate::ports::AllocatedPort;
use std::sync::Arc;

impl AllocRunner {
    /// The group's ports with their host ports. An error fails every task of the group
    /// with a sentence.
    pub(super) fn ports(&mut self, group: &api::TaskGroup) -> Result<Arc<[AllocatedPort]>, String> {
        if !self.local.ports.is_empty() {
            self.deps.ports.reserve(&self.local.ports);
            return Ok(self.local.ports.clone().into());
        }
        let host_ip = self
            .deps
            .node
            .attributes
            .get("unique.network.ip-address")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        let assigned = match &self.local.alloc.allocated_resources {
            Some(resources) => crate::ports::from_allocated(&resources.shared.ports, &host_ip),
            None if group.networks.is_empty() => return Ok(Arc::from(Vec::new())),
            None => self.deps.ports.assign(&group.networks, &host_ip),
        };
        match assigned {
            Ok(p) => {
                // Ports the servers chose are marked taken too, so the fallback for older
                // allocations never hands them out.
                self.deps.ports.reserve(&p);
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
