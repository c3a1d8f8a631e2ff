//! The services table (`provider = "nomad"` registrations): keys, reads and writes.

use super::{StateStore, StateWriter};
use crate::events::Event;
use api::ServiceRegistration;
use imbl::OrdMap;
use std::sync::Arc;

/// `(namespace, service name, registration ID)`.
pub type ServiceKey = (String, String, String);

pub(super) fn service_key(r: &ServiceRegistration) -> ServiceKey {
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

impl StateStore {
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
}

impl StateWriter<'_> {
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
}
