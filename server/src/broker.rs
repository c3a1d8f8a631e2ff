//! The eval broker: hands pending evaluations to scheduling workers, one per job at a time.
//!
//! Enabled only on the leader. It is fed by the FSM's apply hook (every evaluation written)
//! and, when leadership is gained, by a scan of the state store. Blocked evaluations wait
//! here until capacity changes; delayed ones until their `WaitUntil`.

use api::Evaluation;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

type JobKey = (String, String);

fn job_key(e: &Evaluation) -> JobKey {
    (e.namespace.clone(), e.job_id.clone())
}

#[derive(Default)]
struct Inner {
    enabled: bool,
    /// Ready to run, highest priority first, then oldest first.
    ready: BTreeMap<(std::cmp::Reverse<i32>, u64, String), Arc<Evaluation>>,
    /// Evaluations handed to a worker and not yet acknowledged, with the lease's token.
    unacked: HashMap<String, (JobKey, u64)>,
    /// Jobs with an evaluation in a worker's hands.
    inflight_jobs: HashSet<JobKey>,
    /// Evaluations waiting for their job's in-flight evaluation to finish.
    waiting: HashMap<JobKey, VecDeque<Arc<Evaluation>>>,
    blocked: HashMap<String, Arc<Evaluation>>,
    /// Keyed by `WaitUntil` (unix nanos).
    delayed: BTreeMap<(i64, String), Arc<Evaluation>>,
    /// Every evaluation id held anywhere above, to make enqueue idempotent.
    known: HashSet<String>,
}

#[derive(Default)]
pub struct EvalBroker {
    inner: Mutex<Inner>,
    notify: Notify,
    /// The last lease token handed out. Never reset, not even when leadership goes and
    /// comes back, so a worker that outlived a leadership change holds a token that no
    /// longer matches anything (Nomad's eval token).
    last_token: std::sync::atomic::AtomicU64,
}

/// An evaluation handed to one worker: only the holder of the current lease may have its
/// plan applied, acknowledge or hand it back.
#[derive(Debug, Clone)]
pub struct Lease {
    pub eval: Arc<Evaluation>,
    pub token: u64,
}

impl std::ops::Deref for Lease {
    type Target = Evaluation;
    fn deref(&self) -> &Evaluation {
        &self.eval
    }
}

/// Counts for `/v1/agent/self` stats and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BrokerStats {
    pub ready: usize,
    pub unacked: usize,
    pub blocked: usize,
    pub delayed: usize,
}

impl EvalBroker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turn the broker on (leader) or off (follower: everything held is dropped).
    pub fn set_enabled(&self, enabled: bool) {
        let mut g = self.lock();
        if !enabled {
            *g = Inner::default();
        }
        g.enabled = enabled;
        drop(g);
        self.notify.notify_waiters();
    }

    pub fn enabled(&self) -> bool {
        self.lock().enabled
    }

    /// Take note of an evaluation as written to the state store. `now` is unix nanos.
    pub fn enqueue(&self, eval: Arc<Evaluation>, now: i64) {
        let mut g = self.lock();
        if !g.enabled {
            return;
        }
        match eval.status.as_str() {
            api::EVAL_STATUS_PENDING => {
                if g.known.contains(&eval.id) {
                    return;
                }
                g.known.insert(eval.id.clone());
                if eval.wait_until > now {
                    g.delayed.insert((eval.wait_until, eval.id.clone()), eval);
                } else {
                    Self::make_ready(&mut g, eval);
                }
            }
            api::EVAL_STATUS_BLOCKED => {
                if g.unacked.contains_key(&eval.id) {
                    // The worker re-blocked the eval it holds; it is parked on ack.
                }
                g.blocked.insert(eval.id.clone(), eval);
            }
            _ => {
                g.blocked.remove(&eval.id);
            }
        }
        drop(g);
        self.notify.notify_one();
    }

    fn make_ready(g: &mut Inner, eval: Arc<Evaluation>) {
        let key = job_key(&eval);
        if g.inflight_jobs.contains(&key) {
            g.waiting.entry(key).or_default().push_back(eval);
        } else {
            g.ready.insert(
                (
                    std::cmp::Reverse(eval.priority),
                    eval.create_index,
                    eval.id.clone(),
                ),
                eval,
            );
        }
    }

    /// Wait for the next evaluation to schedule.
    pub async fn dequeue(&self) -> Lease {
        loop {
            let notified = self.notify.notified();
            if let Some(e) = self.try_dequeue() {
                return e;
            }
            notified.await;
        }
    }

    pub fn try_dequeue(&self) -> Option<Lease> {
        let mut g = self.lock();
        if !g.enabled {
            return None;
        }
        let eval = loop {
            let (_, eval) = g.ready.pop_first()?;
            let key = job_key(&eval);
            // Queued before its job's other evaluation went out: wait behind it.
            if g.inflight_jobs.contains(&key) {
                g.waiting.entry(key).or_default().push_back(eval);
                continue;
            }
            break eval;
        };
        let token = 1 + self
            .last_token
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        g.inflight_jobs.insert(job_key(&eval));
        g.unacked.insert(eval.id.clone(), (job_key(&eval), token));
        Some(Lease { eval, token })
    }

    /// Whether `token` is the current lease of evaluation `eval_id`: false once it was
    /// acknowledged or handed back, and after a leadership change.
    pub fn outstanding(&self, eval_id: &str, token: u64) -> bool {
        self.lock()
            .unacked
            .get(eval_id)
            .is_some_and(|(_, t)| *t == token)
    }

    /// Takes the lease back if `token` is current (a stale holder's word changes nothing).
    fn release(g: &mut Inner, eval_id: &str, token: u64) -> Option<JobKey> {
        match g.unacked.get(eval_id) {
            Some((_, t)) if *t == token => g.unacked.remove(eval_id).map(|(k, _)| k),
            _ => None,
        }
    }

    /// The worker is done with this evaluation; the job's next one may run.
    pub fn ack(&self, lease: &Lease) {
        let mut g = self.lock();
        let eval_id = lease.eval.id.as_str();
        if let Some(key) = Self::release(&mut g, eval_id, lease.token) {
            g.known.remove(eval_id);
            g.inflight_jobs.remove(&key);
            let next = g.waiting.get_mut(&key).and_then(|q| q.pop_front());
            if g.waiting.get(&key).is_some_and(|q| q.is_empty()) {
                g.waiting.remove(&key);
            }
            if let Some(next) = next {
                Self::make_ready(&mut g, next);
            }
        }
        drop(g);
        self.notify.notify_one();
    }

    /// The worker failed to process it: release the job and run it again.
    pub fn nack(&self, lease: Lease) {
        let mut g = self.lock();
        if let Some(key) = Self::release(&mut g, &lease.eval.id, lease.token) {
            g.inflight_jobs.remove(&key);
            Self::make_ready(&mut g, lease.eval);
        }
        drop(g);
        self.notify.notify_one();
    }

    /// Capacity changed: every blocked evaluation gets another try.
    pub fn unblock_all(&self) {
        let mut g = self.lock();
        if g.blocked.is_empty() {
            return;
        }
        let blocked: Vec<_> = g.blocked.drain().map(|(_, e)| e).collect();
        for e in blocked {
            if g.known.insert(e.id.clone()) {
                Self::make_ready(&mut g, e);
            }
        }
        drop(g);
        self.notify.notify_waiters();
    }

    /// Move delayed evaluations whose time has come to the ready queue.
    pub fn promote_delayed(&self, now: i64) {
        let mut g = self.lock();
        let due: Vec<_> = g
            .delayed
            .range(..(now + 1, String::new()))
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        for k in due {
            if let Some(e) = g.delayed.remove(&k) {
                Self::make_ready(&mut g, e);
            }
        }
        drop(g);
        self.notify.notify_waiters();
    }

    pub fn stats(&self) -> BrokerStats {
        let g = self.lock();
        BrokerStats {
            ready: g.ready.len() + g.waiting.values().map(VecDeque::len).sum::<usize>(),
            unacked: g.unacked.len(),
            blocked: g.blocked.len(),
            delayed: g.delayed.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(id: &str, job: &str, priority: i32, index: u64) -> Arc<Evaluation> {
        Arc::new(Evaluation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            priority,
            status: "pending".into(),
            create_index: index,
            ..Default::default()
        })
    }

    #[test]
    fn one_evaluation_per_job_is_in_flight() {
        let b = EvalBroker::default();
        b.set_enabled(true);
        b.enqueue(eval("a1", "a", 50, 1), 0);
        b.enqueue(eval("a2", "a", 50, 2), 0);
        b.enqueue(eval("b1", "b", 50, 3), 0);
        let first = b.try_dequeue().unwrap();
        assert_eq!(first.id, "a1");
        // a2 waits for a1; b1 may run.
        assert_eq!(b.try_dequeue().unwrap().id, "b1");
        assert!(b.try_dequeue().is_none());
        b.ack(&first);
        assert_eq!(b.try_dequeue().unwrap().id, "a2");
    }

    #[test]
    fn a_lease_from_before_a_leadership_change_matches_nothing_and_changes_nothing() {
        let b = EvalBroker::default();
        b.set_enabled(true);
        b.enqueue(eval("e", "job", 50, 1), 0);
        let stale = b.try_dequeue().unwrap();
        assert!(b.outstanding("e", stale.token));
        // Leadership lost and won back: the evaluation is enqueued again from state.
        b.set_enabled(false);
        b.set_enabled(true);
        b.enqueue(eval("e", "job", 50, 1), 0);
        let current = b.try_dequeue().unwrap();
        assert_ne!(current.token, stale.token);
        assert!(!b.outstanding("e", stale.token));
        assert!(b.outstanding("e", current.token));
        // The stale worker's ack or nack neither frees the job nor requeues the eval.
        b.ack(&stale);
        b.nack(stale);
        assert!(b.outstanding("e", current.token));
        assert!(b.try_dequeue().is_none());
        b.ack(&current);
        assert!(!b.outstanding("e", current.token));
    }

    #[test]
    fn higher_priority_runs_first_and_duplicates_are_ignored() {
        let b = EvalBroker::default();
        b.set_enabled(true);
        b.enqueue(eval("lo", "x", 10, 1), 0);
        b.enqueue(eval("hi", "y", 90, 2), 0);
        b.enqueue(eval("hi", "y", 90, 2), 0);
        assert_eq!(b.try_dequeue().unwrap().id, "hi");
        assert_eq!(b.try_dequeue().unwrap().id, "lo");
        assert!(b.try_dequeue().is_none());
    }

    #[test]
    fn disabled_broker_holds_nothing() {
        let b = EvalBroker::default();
        b.enqueue(eval("a", "a", 50, 1), 0);
        assert!(b.try_dequeue().is_none());
        b.set_enabled(true);
        b.enqueue(eval("a", "a", 50, 1), 0);
        b.set_enabled(false);
        b.set_enabled(true);
        assert!(b.try_dequeue().is_none());
    }

    #[test]
    fn delayed_and_blocked_evaluations_wait() {
        let b = EvalBroker::default();
        b.set_enabled(true);
        let mut d = (*eval("d", "d", 50, 1)).clone();
        d.wait_until = 100;
        b.enqueue(Arc::new(d), 0);
        let mut bl = (*eval("bl", "b", 50, 2)).clone();
        bl.status = "blocked".into();
        b.enqueue(Arc::new(bl), 0);
        assert!(b.try_dequeue().is_none());
        b.promote_delayed(100);
        assert_eq!(b.try_dequeue().unwrap().id, "d");
        b.unblock_all();
        assert_eq!(b.try_dequeue().unwrap().id, "bl");
    }
}
