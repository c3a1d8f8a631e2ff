//! [`ServiceRegistry`]: the instances this agent wants registered, per allocation, and
//! what the servers acknowledged. Alloc runners set their allocation's desired set (the
//! latest wins); [`ServiceRegistry::sync_loop`] sends the difference
//! (`PUT /v1/internal/node/:id/services`) and retries with backoff until the servers
//! acknowledge it, so nothing is dropped while they are unreachable.

use api::{ServiceRegistration, ServiceUpdateRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// How long changes are gathered before one request is sent.
const COALESCE: Duration = Duration::from_millis(50);
/// The most changes one request carries (the servers accept 1024); the rest follow.
const MAX_CHANGES: usize = 1000;

#[derive(Debug, Default)]
struct AllocEntry {
    desired: BTreeMap<String, ServiceRegistration>,
    /// What the servers have as far as we know; `None`: may be registered, content
    /// unknown (restored after an agent restart).
    sent: BTreeMap<String, Option<ServiceRegistration>>,
}

impl AllocEntry {
    fn in_sync(&self) -> bool {
        self.desired.len() == self.sent.len()
            && self
                .desired
                .iter()
                .all(|(id, r)| self.sent.get(id).is_some_and(|s| s.as_ref() == Some(r)))
    }
}

/// One allocation's part of a request, and the desired set it brings the servers to.
#[derive(Debug, Clone)]
struct AllocDiff {
    alloc: String,
    upsert: Vec<ServiceRegistration>,
    delete: Vec<String>,
    desired: BTreeMap<String, ServiceRegistration>,
}

/// Shared by the alloc runners (which set) and the agent's sync loop (which sends).
#[derive(Debug, Clone, Default)]
pub struct ServiceRegistry {
    allocs: Arc<Mutex<BTreeMap<String, AllocEntry>>>,
    notify: Arc<Notify>,
    /// Bumped after every acknowledged request (waiters re-check their allocation).
    acked: Arc<watch::Sender<u64>>,
}

impl ServiceRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AllocEntry>> {
        self.allocs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instances `alloc` wants registered from now on (replacing what it wanted).
    pub fn set(&self, alloc: &str, regs: Vec<ServiceRegistration>) {
        let desired: BTreeMap<String, ServiceRegistration> =
            regs.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut m = self.lock();
        let e = m.entry(alloc.to_string()).or_default();
        if e.desired == desired {
            return;
        }
        e.desired = desired;
        let wake = !e.in_sync();
        drop(m);
        if wake {
            self.notify.notify_one();
        } else {
            self.acked.send_modify(|n| *n += 1);
        }
    }

    /// After an agent restart: these instances of `alloc` may still be registered, so
    /// the next sync deletes the ones not desired and re-sends the others.
    pub fn assume_registered(&self, alloc: &str, ids: impl IntoIterator<Item = String>) {
        let mut m = self.lock();
        let e = m.entry(alloc.to_string()).or_default();
        for id in ids {
            e.sent.entry(id).or_insert(None);
        }
        drop(m);
        self.notify.notify_one();
    }

    /// What `alloc` wants registered now.
    pub fn desired(&self, alloc: &str) -> Vec<ServiceRegistration> {
        self.lock()
            .get(alloc)
            .map(|e| e.desired.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Acknowledges everything pending, as servers would (for tests without servers).
    #[cfg(test)]
    pub(crate) fn ack_all(&self) {
        let p = self.pending();
        if !p.is_empty() {
            self.confirm(&p);
        }
    }

    /// Whether the servers acknowledged what `alloc` wants now.
    pub fn in_sync(&self, alloc: &str) -> bool {
        self.lock().get(alloc).is_none_or(AllocEntry::in_sync)
    }

    /// Resolves once the servers acknowledged what `alloc` wants (bound it with a timeout).
    pub async fn wait_synced(&self, alloc: &str) {
        let mut rx = self.acked.subscribe();
        loop {
            if self.in_sync(alloc) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The differences to send, per allocation.
    fn pending(&self) -> Vec<AllocDiff> {
        let m = self.lock();
        m.iter()
            .filter(|(_, e)| !e.in_sync())
            .map(|(alloc, e)| AllocDiff {
                alloc: alloc.clone(),
                upsert: e
                    .desired
                    .iter()
                    .filter(|(id, r)| e.sent.get(*id).is_none_or(|s| s.as_ref() != Some(*r)))
                    .map(|(_, r)| r.clone())
                    .collect(),
                delete: e
                    .sent
                    .keys()
                    .filter(|id| !e.desired.contains_key(*id))
                    .cloned()
                    .collect(),
                desired: e.desired.clone(),
            })
            .collect()
    }

    /// Records that the servers acknowledged `diffs`; forgets allocations with nothing
    /// left registered or wanted.
    fn confirm(&self, diffs: &[AllocDiff]) {
        let mut m = self.lock();
        for d in diffs {
            if let Some(e) = m.get_mut(&d.alloc) {
                e.sent = d
                    .desired
                    .iter()
                    .map(|(id, r)| (id.clone(), Some(r.clone())))
                    .collect();
                if e.desired.is_empty() && e.sent.is_empty() {
                    m.remove(&d.alloc);
                }
            }
        }
        drop(m);
        self.acked.send_modify(|n| *n += 1);
    }

    fn request(diffs: &[AllocDiff]) -> ServiceUpdateRequest {
        let mut req = ServiceUpdateRequest::default();
        for d in diffs {
            req.upsert.extend(d.upsert.iter().cloned());
            req.delete_ids.extend(d.delete.iter().cloned());
        }
        req
    }

    /// Sends what changed until `shutdown`, retrying with backoff. A request the servers
    /// refuse for what it says (a 4xx other than 403, 408 or 429) is retried allocation
    /// by allocation, and an allocation refused on its own is given up with an error in
    /// the log: it cannot succeed by waiting.
    pub async fn sync_loop(
        self,
        client: api::Client,
        node_id: String,
        secret: impl Fn() -> String + Send + 'static,
        shutdown: CancellationToken,
    ) {
        let mut failures = 0u32;
        let mut more = false;
        loop {
            if failures == 0 && !more {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.notify.notified() => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(COALESCE) => {}
                }
            }
            let mut diffs = self.pending();
            let mut changes = 0;
            let keep = diffs
                .iter()
                .take_while(|d| {
                    changes += d.upsert.len() + d.delete.len();
                    changes <= MAX_CHANGES
                })
                .count()
                .max(1);
            more = diffs.len() > keep;
            diffs.truncate(keep);
            if diffs.is_empty() {
                failures = 0;
                continue;
            }
            let (key, req) = (secret(), Self::request(&diffs));
            let res = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = client.update_services(&node_id, &key, &req) => r,
            };
            let transient = match res {
                Ok(_) => {
                    self.confirm(&diffs);
                    false
                }
                Err(e) if refused(&e) => {
                    let mut transient = false;
                    for d in &diffs {
                        let one = std::slice::from_ref(d);
                        let (key, req) = (secret(), Self::request(one));
                        match client.update_services(&node_id, &key, &req).await {
                            Ok(_) => self.confirm(one),
                            Err(e) if refused(&e) => {
                                tracing::error!(alloc = %d.alloc, error = %e, "the servers refused this allocation's service registrations; giving them up");
                                self.confirm(one);
                            }
                            Err(e) => {
                                tracing::warn!(alloc = %d.alloc, error = %e, "cannot send service registrations");
                                transient = true;
                            }
                        }
                    }
                    transient
                }
                Err(e) => {
                    tracing::warn!(error = %e, allocs = diffs.len(), "cannot send service registrations");
                    true
                }
            };
            if transient {
                let wait = crate::agent::backoff(
                    Duration::from_millis(250),
                    Duration::from_secs(10),
                    failures,
                );
                failures += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            } else {
                failures = 0;
            }
        }
    }
}

/// A refusal of what the request says, which waiting cannot fix.
fn refused(e: &api::ApiError) -> bool {
    e.status()
        .is_some_and(|s| (400..500).contains(&s) && !matches!(s, 403 | 408 | 429))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(alloc: &str, id: &str, port: i64) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            alloc_id: alloc.into(),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn the_latest_desired_set_wins_and_only_the_difference_is_sent() {
        let r = ServiceRegistry::new();
        r.set("a", vec![reg("a", "x", 1), reg("a", "y", 2)]);
        r.set("a", vec![reg("a", "x", 1)]);
        let d = r.pending();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].upsert, vec![reg("a", "x", 1)]);
        assert!(d[0].delete.is_empty());
        assert!(!r.in_sync("a"));
        r.confirm(&d);
        assert!(r.in_sync("a"));
        assert!(r.pending().is_empty());
        r.set("a", vec![reg("a", "x", 5)]);
        assert_eq!(r.pending()[0].upsert, vec![reg("a", "x", 5)]);
        r.confirm(&r.pending());
        r.set("a", vec![]);
        let d = r.pending();
        assert_eq!(d[0].delete, vec!["x".to_string()]);
        r.confirm(&d);
        assert!(
            r.lock().is_empty(),
            "a fully deregistered alloc is forgotten"
        );
    }

    #[test]
    fn a_change_made_while_a_request_was_in_flight_is_sent_next() {
        let r = ServiceRegistry::new();
        r.set("a", vec![reg("a", "x", 1)]);
        let inflight = r.pending();
        r.set("a", vec![]);
        r.confirm(&inflight);
        assert!(!r.in_sync("a"));
        assert_eq!(r.pending()[0].delete, vec!["x".to_string()]);
    }

    #[test]
    fn restored_registrations_are_resent_or_deleted() {
        let r = ServiceRegistry::new();
        r.assume_registered("a", ["x".to_string(), "y".to_string()]);
        r.set("a", vec![reg("a", "x", 1)]);
        let d = r.pending();
        assert_eq!(d[0].upsert, vec![reg("a", "x", 1)]);
        assert_eq!(d[0].delete, vec!["y".to_string()]);
    }

    #[tokio::test]
    async fn wait_synced_resolves_once_acknowledged() {
        let r = ServiceRegistry::new();
        r.set("a", vec![reg("a", "x", 1)]);
        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.wait_synced("a").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        r.confirm(&r.pending());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
    }
}
