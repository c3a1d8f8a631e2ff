//! Coalesces allocation status updates from the alloc runners until the agent sends them
//! to the servers in one batch: only the latest update per allocation is kept.

use api::AllocClientUpdate;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct PendingUpdates {
    inner: Arc<Mutex<BTreeMap<String, AllocClientUpdate>>>,
    notify: Arc<Notify>,
}

impl PendingUpdates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `update`, replacing any older one for the same allocation.
    pub fn push(&self, update: AllocClientUpdate) {
        self.inner
            .lock()
            .expect("pending updates lock")
            .insert(update.id.clone(), update);
        self.notify.notify_one();
    }

    /// Takes everything queued.
    pub fn take(&self) -> Vec<AllocClientUpdate> {
        std::mem::take(&mut *self.inner.lock().expect("pending updates lock"))
            .into_values()
            .collect()
    }

    /// Puts back updates that could not be sent, unless a newer one arrived meanwhile.
    pub fn requeue(&self, updates: Vec<AllocClientUpdate>) {
        let mut m = self.inner.lock().expect("pending updates lock");
        for u in updates {
            m.entry(u.id.clone()).or_insert(u);
        }
    }

    /// Forgets the queued update of an allocation that is gone.
    pub fn forget(&self, alloc_id: &str) {
        self.inner
            .lock()
            .expect("pending updates lock")
            .remove(alloc_id);
    }

    pub fn is_empty(&self) -> bool {
        self.inner.lock().expect("pending updates lock").is_empty()
    }

    /// Resolves when something was pushed since the last call.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(id: &str, status: &str) -> AllocClientUpdate {
        AllocClientUpdate {
            id: id.into(),
            client_status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn updates_coalesce_and_failed_sends_do_not_override_newer_ones() {
        let p = PendingUpdates::new();
        p.push(upd("a", "pending"));
        p.push(upd("a", "running"));
        p.push(upd("b", "running"));
        let batch = p.take();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].client_status, "running");
        assert!(p.is_empty());
        p.push(upd("a", "complete"));
        p.requeue(batch);
        let again = p.take();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].client_status, "complete");
        assert_eq!(again[1].id, "b");
    }
}
