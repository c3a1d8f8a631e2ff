//! Failed allocations: whether and when they are replaced, per the group's `reschedule`
//! policy, counting earlier attempts along the `previous_allocation` chain.

use api::{Allocation, ReschedulePolicy};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Links between replacement allocations, to count reschedule attempts.
pub(crate) struct History<'a> {
    by_id: HashMap<&'a str, &'a Allocation>,
    replaced: HashSet<&'a str>,
}

impl<'a> History<'a> {
    pub(crate) fn new(allocs: &'a [Arc<Allocation>]) -> Self {
        History {
            by_id: allocs.iter().map(|a| (a.id.as_str(), &**a)).collect(),
            replaced: allocs
                .iter()
                .filter(|a| !a.previous_allocation.is_empty() && !gave_way(a))
                .map(|a| a.previous_allocation.as_str())
                .collect(),
        }
    }

    /// Whether a replacement took over from `alloc` (one stopped because `alloc`
    /// reconnected does not count: `alloc` is the one running again).
    pub(crate) fn is_replaced(&self, alloc: &Allocation) -> bool {
        let next_took_over = match self.by_id.get(alloc.next_allocation.as_str()) {
            Some(next) => !gave_way(next),
            None => !alloc.next_allocation.is_empty(),
        };
        next_took_over || self.replaced.contains(alloc.id.as_str())
    }

    /// Earlier allocations in this one's replacement chain that failed, or that were
    /// judged unhealthy in this one's deployment, within `interval` before `now` (all of them when
    /// either is unknown).
    pub(crate) fn prior_attempts(&self, alloc: &Allocation, interval: i64, now: i64) -> i64 {
        let mut attempts = 0;
        let mut seen = HashSet::new();
        let mut prev = alloc.previous_allocation.as_str();
        while let Some(a) = self.by_id.get(prev) {
            if !seen.insert(prev) {
                break; // a cycle would be a state bug; do not loop on it
            }
            let in_window = interval <= 0 || now <= 0 || a.modify_time >= now - interval;
            let unhealthy = !a.deployment_id.is_empty()
                && a.deployment_id == alloc.deployment_id
                && a.deployment_status.as_ref().and_then(|s| s.healthy) == Some(false);
            if in_window && (a.client_status == api::ALLOC_CLIENT_FAILED || unhealthy) {
                attempts += 1;
            }
            prev = a.previous_allocation.as_str();
        }
        attempts
    }
}

/// A replacement stopped because the allocation it replaced came back from a disconnect.
fn gave_way(alloc: &Allocation) -> bool {
    alloc.desired_stop() && alloc.desired_description == super::DESC_RECONNECTED
}

/// Whether and when a failed allocation is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescheduleDecision {
    Now,
    Later(i64),
    Never,
}

/// The reschedule policy applied to one failed allocation with `prior_attempts` failures
/// before it in its chain.
pub fn reschedule_decision(
    alloc: &Allocation,
    policy: &ReschedulePolicy,
    prior_attempts: i64,
    eval_id: &str,
    now: i64,
) -> RescheduleDecision {
    if !policy.unlimited && prior_attempts >= policy.attempts {
        return RescheduleDecision::Never;
    }
    if !alloc.followup_eval_id.is_empty() && alloc.followup_eval_id == eval_id {
        return RescheduleDecision::Now;
    }
    let delay = reschedule_delay(policy, prior_attempts);
    if delay <= 0 || now <= 0 || alloc.modify_time <= 0 {
        return RescheduleDecision::Now;
    }
    let wait_until = alloc.modify_time.saturating_add(delay);
    if wait_until <= now {
        RescheduleDecision::Now
    } else {
        RescheduleDecision::Later(wait_until)
    }
}

/// Nanoseconds to wait before the next attempt, per `delay_function`.
pub fn reschedule_delay(policy: &ReschedulePolicy, prior_attempts: i64) -> i64 {
    let base = policy.delay.max(0);
    let n = prior_attempts.clamp(0, 62) as u32;
    let delay = match policy.delay_function.as_str() {
        "exponential" => base.saturating_mul(1i64.checked_shl(n).unwrap_or(i64::MAX)),
        "fibonacci" => {
            let (mut a, mut b) = (1i64, 1i64);
            for _ in 0..n {
                (a, b) = (b, a.saturating_add(b));
            }
            base.saturating_mul(a)
        }
        _ => base,
    };
    if policy.max_delay > 0 {
        delay.min(policy.max_delay)
    } else {
        delay
    }
}
