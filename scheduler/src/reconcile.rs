//! Reconciliation for service and batch jobs: what to place, stop, replace and update.
//!
//! A pure function from the job, its allocations and the health of their nodes to plain
//! buckets per task group. It decides *what* changes, never *where*: placements carry a
//! name and the allocation they replace, and the generic scheduler picks their nodes.

use api::{Allocation, Job, Node, ReschedulePolicy, TaskGroup};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const DESC_LOST: &str = "alloc is lost since its node is down";
pub const DESC_JOB_STOPPED: &str = "alloc not needed as job is stopped";
pub const DESC_UPDATING: &str = "alloc is being updated due to job update";
pub const DESC_RESCHEDULED: &str = "alloc was rescheduled because it failed";
pub const DESC_NODE_TAINTED: &str = "alloc not needed as node is tainted";

/// How the scheduler treats a node that allocations run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Ready, eligible, not draining: takes new work.
    Ready,
    /// Up but not taking new work (ineligible, draining, initializing): its allocations
    /// keep running until the operator or the drainer stops them.
    Unschedulable,
    /// Down, disconnected or gone from the state: its allocations are lost.
    Lost,
}

impl NodeHealth {
    pub fn of(node: Option<&Node>) -> NodeHealth {
        match node {
            None => NodeHealth::Lost,
            Some(n) if n.is_down() || n.status == api::NODE_STATUS_DISCONNECTED => NodeHealth::Lost,
            Some(n) if n.ready_and_eligible() => NodeHealth::Ready,
            Some(_) => NodeHealth::Unschedulable,
        }
    }

    /// Health of every node by ID; IDs missing from the map are lost.
    pub fn map(nodes: &[Arc<Node>]) -> HashMap<String, NodeHealth> {
        nodes
            .iter()
            .map(|n| (n.id.clone(), NodeHealth::of(Some(n))))
            .collect()
    }
}

pub struct ReconcileInput<'a> {
    /// `None` when the job was deregistered or purged.
    pub job: Option<&'a Job>,
    /// All of the job's allocations, terminal ones included.
    pub allocs: &'a [Arc<Allocation>],
    pub node_health: &'a HashMap<String, NodeHealth>,
    /// The evaluation being processed: a failed alloc whose follow-up eval this is gets
    /// rescheduled now.
    pub eval_id: &'a str,
    /// Unix nanoseconds, from the evaluation (never a clock); 0 means unknown, which
    /// reschedules without delay.
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StopAlloc {
    pub alloc: Arc<Allocation>,
    pub description: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementReason {
    /// The group has fewer allocations than its count.
    Missing,
    /// Replaces an allocation on a lost node.
    Lost,
    /// Replaces a failed allocation.
    Reschedule,
    /// Replaces an allocation whose job changed in a way that needs a new one.
    DestructiveUpdate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// `job.group[index]`.
    pub name: String,
    pub index: u64,
    /// The allocation this one replaces.
    pub previous: Option<Arc<Allocation>>,
    pub reason: PlacementReason,
}

/// A failed allocation whose reschedule must wait until `wait_until` (Unix nanoseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct DelayedReschedule {
    pub alloc: Arc<Allocation>,
    pub wait_until: i64,
}

/// What happens to one task group. Every existing allocation of the group lands in exactly
/// one of `stop`, `lost`, `ignore`, `reschedule_now`, `reschedule_later`,
/// `inplace_update` or `destructive_update`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupBuckets {
    /// New allocations, including replacements for lost, rescheduled and destructively
    /// updated ones (which say so in `reason` and `previous`).
    pub place: Vec<Placement>,
    /// Live allocations no longer wanted (scale-down).
    pub stop: Vec<StopAlloc>,
    /// Allocations on lost nodes: stopped and marked lost.
    pub lost: Vec<Arc<Allocation>>,
    /// Nothing to do.
    pub ignore: Vec<Arc<Allocation>>,
    /// Failed allocations replaced now; stopped once their replacement is placed.
    pub reschedule_now: Vec<Arc<Allocation>>,
    /// Failed allocations to replace later, by a follow-up evaluation.
    pub reschedule_later: Vec<DelayedReschedule>,
    /// Running allocations that take the new job version where they are.
    pub inplace_update: Vec<Arc<Allocation>>,
    /// Running allocations replaced by a new one; stopped once it is placed.
    pub destructive_update: Vec<Arc<Allocation>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciliation {
    /// Per task group of the job.
    pub groups: BTreeMap<String, GroupBuckets>,
    /// Allocations of groups the job no longer has, or of a stopped or missing job.
    pub stop: Vec<StopAlloc>,
}

pub fn reconcile(input: &ReconcileInput<'_>) -> Reconciliation {
    let mut out = Reconciliation::default();
    let Some(job) = input.job.filter(|j| !j.stop) else {
        out.stop = input
            .allocs
            .iter()
            .filter(|a| !a.terminal())
            .map(|a| StopAlloc {
                alloc: a.clone(),
                description: DESC_JOB_STOPPED,
            })
            .collect();
        return out;
    };

    let mut by_group: BTreeMap<&str, Vec<Arc<Allocation>>> = BTreeMap::new();
    for alloc in input.allocs {
        if job.task_group(&alloc.task_group).is_some() {
            by_group
                .entry(&alloc.task_group)
                .or_default()
                .push(alloc.clone());
        } else if !alloc.terminal() {
            out.stop.push(StopAlloc {
                alloc: alloc.clone(),
                description: DESC_NOT_NEEDED,
            });
        }
    }
    let history = History::new(input.allocs);
    for group in &job.task_groups {
        let mut allocs = by_group.remove(group.name.as_str()).unwrap_or_default();
        allocs.sort_by(|a, b| (a.index(), &a.id).cmp(&(b.index(), &b.id)));
        let buckets = reconcile_group(job, group, &allocs, input, &history);
        out.groups.insert(group.name.clone(), buckets);
    }
    out
}

/// Links between replacement allocations, to count reschedule attempts.
struct History<'a> {
    by_id: HashMap<&'a str, &'a Allocation>,
    replaced: HashSet<&'a str>,
}

impl<'a> History<'a> {
    fn new(allocs: &'a [Arc<Allocation>]) -> Self {
        History {
            by_id: allocs.iter().map(|a| (a.id.as_str(), &**a)).collect(),
            replaced: allocs
                .iter()
                .filter(|a| !a.previous_allocation.is_empty())
                .map(|a| a.previous_allocation.as_str())
                .collect(),
        }
    }

    fn is_replaced(&self, alloc: &Allocation) -> bool {
        !alloc.next_allocation.is_empty() || self.replaced.contains(alloc.id.as_str())
    }

    /// Earlier allocations in this one's replacement chain that failed within `interval`
    /// before `now` (all of them when either is unknown).
    fn prior_attempts(&self, alloc: &Allocation, interval: i64, now: i64) -> i64 {
        let mut attempts = 0;
        let mut seen = HashSet::new();
        let mut prev = alloc.previous_allocation.as_str();
        while let Some(a) = self.by_id.get(prev) {
            if !seen.insert(prev) {
                break; // a cycle would be a state bug; do not loop on it
            }
            let in_window = interval <= 0 || now <= 0 || a.modify_time >= now - interval;
            if in_window && a.client_status == api::ALLOC_CLIENT_FAILED {
                attempts += 1;
            }
            prev = a.previous_allocation.as_str();
        }
        attempts
    }
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

/// How an allocation of an older job version catches up with the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// Same job version.
    None,
    /// Only what does not touch the running tasks changed (count, meta, policies).
    InPlace,
    /// Tasks, resources, networks or placement rules changed: replace the allocation.
    Destructive,
}

pub fn update_kind(old: Option<&Job>, new: &Job, group: &str) -> UpdateKind {
    let Some(old) = old else {
        return UpdateKind::Destructive;
    };
    if old.version == new.version && old.job_modify_index == new.job_modify_index {
        return UpdateKind::None;
    }
    let (Some(old_group), Some(new_group)) = (old.task_group(group), new.task_group(group)) else {
        return UpdateKind::Destructive;
    };
    let placement_changed = old.datacenters != new.datacenters
        || old.node_pool != new.node_pool
        || old.constraints != new.constraints
        || old.affinities != new.affinities
        || old.spreads != new.spreads;
    if placement_changed || strip_in_place_fields(old_group) != strip_in_place_fields(new_group) {
        UpdateKind::Destructive
    } else {
        UpdateKind::InPlace
    }
}

/// The group without the fields a running allocation can take on without a restart.
fn strip_in_place_fields(group: &TaskGroup) -> TaskGroup {
    TaskGroup {
        count: 0,
        meta: Default::default(),
        update: None,
        migrate: None,
        restart_policy: None,
        reschedule_policy: None,
        ..group.clone()
    }
}

fn reconcile_group(
    job: &Job,
    group: &TaskGroup,
    allocs: &[Arc<Allocation>],
    input: &ReconcileInput<'_>,
    history: &History<'_>,
) -> GroupBuckets {
    let mut out = GroupBuckets::default();
    let is_batch = job.job_type == api::JOB_TYPE_BATCH;
    let policy = group
        .reschedule_policy
        .clone()
        .unwrap_or_else(|| ReschedulePolicy::default_for(&job.job_type));

    // Terminal allocations that keep their name: a batch alloc that finished, or a failed
    // one that may not be rescheduled. They count towards the group's count for good.
    let mut settled: Vec<Arc<Allocation>> = Vec::new();
    let mut live = Vec::new();
    let mut lost = Vec::new();
    let mut reschedule_now = Vec::new();
    let mut reschedule_later = Vec::new();
    // Failed allocations that already have a follow-up evaluation on the way.
    let mut awaiting_followup = Vec::new();

    for alloc in allocs {
        if alloc.desired_stop() {
            out.ignore.push(alloc.clone());
            continue;
        }
        match alloc.client_status.as_str() {
            api::ALLOC_CLIENT_COMPLETE if is_batch => settled.push(alloc.clone()),
            // A finished service alloc frees its name: the service should be running.
            api::ALLOC_CLIENT_COMPLETE => out.ignore.push(alloc.clone()),
            api::ALLOC_CLIENT_FAILED if history.is_replaced(alloc) => {
                out.ignore.push(alloc.clone())
            }
            api::ALLOC_CLIENT_FAILED => {
                let attempts = history.prior_attempts(alloc, policy.interval, input.now);
                match reschedule_decision(alloc, &policy, attempts, input.eval_id, input.now) {
                    RescheduleDecision::Now => reschedule_now.push(alloc.clone()),
                    RescheduleDecision::Later(_) if !alloc.followup_eval_id.is_empty() => {
                        awaiting_followup.push(alloc.clone())
                    }
                    RescheduleDecision::Later(wait_until) => {
                        reschedule_later.push(DelayedReschedule {
                            alloc: alloc.clone(),
                            wait_until,
                        })
                    }
                    RescheduleDecision::Never => settled.push(alloc.clone()),
                }
            }
            api::ALLOC_CLIENT_LOST => lost.push(alloc.clone()),
            _ => match input
                .node_health
                .get(&alloc.node_id)
                .copied()
                .unwrap_or(NodeHealth::Lost)
            {
                NodeHealth::Lost => lost.push(alloc.clone()),
                NodeHealth::Ready | NodeHealth::Unschedulable => live.push(alloc.clone()),
            },
        }
    }

    // Fill the count in priority order: what is settled, what runs, replacements for lost
    // allocs, then reschedules. Whatever does not fit is stopped or left alone.
    let count = group.count.max(0) as usize;
    let mut room = count.saturating_sub(settled.len());
    let mut names_taken: BTreeSet<u64> = settled.iter().map(|a| a.index()).collect();
    out.ignore.extend(settled);

    let keep = live.len().min(room);
    room -= keep;
    // `live` is sorted by index, so the extras are the highest indices.
    for alloc in live.drain(keep..).rev() {
        out.stop.push(StopAlloc {
            alloc,
            description: DESC_NOT_NEEDED,
        });
    }
    for alloc in live {
        names_taken.insert(alloc.index());
        match update_kind(alloc.job.as_deref(), job, &group.name) {
            UpdateKind::None => out.ignore.push(alloc),
            UpdateKind::InPlace => out.inplace_update.push(alloc),
            UpdateKind::Destructive => {
                out.place
                    .push(replacement(&alloc, PlacementReason::DestructiveUpdate));
                out.destructive_update.push(alloc);
            }
        }
    }

    for alloc in lost {
        if room > 0 && names_taken.insert(alloc.index()) {
            room -= 1;
            out.place.push(replacement(&alloc, PlacementReason::Lost));
        }
        out.lost.push(alloc);
    }
    for alloc in reschedule_now {
        if room > 0 && names_taken.insert(alloc.index()) {
            room -= 1;
            out.place
                .push(replacement(&alloc, PlacementReason::Reschedule));
            out.reschedule_now.push(alloc);
        } else {
            out.ignore.push(alloc);
        }
    }
    for alloc in awaiting_followup {
        if room > 0 && names_taken.insert(alloc.index()) {
            room -= 1;
        }
        out.ignore.push(alloc);
    }
    for delayed in reschedule_later {
        if room > 0 && names_taken.insert(delayed.alloc.index()) {
            room -= 1;
            out.reschedule_later.push(delayed);
        } else {
            out.ignore.push(delayed.alloc);
        }
    }

    // New allocations take the lowest free names.
    let mut index = 0u64;
    while room > 0 {
        if names_taken.insert(index) {
            room -= 1;
            out.place.push(Placement {
                name: alloc_name(&job.id, &group.name, index),
                index,
                previous: None,
                reason: PlacementReason::Missing,
            });
        }
        index += 1;
    }
    out.place.sort_by_key(|p| p.index);
    out
}

fn replacement(alloc: &Arc<Allocation>, reason: PlacementReason) -> Placement {
    Placement {
        name: alloc.name.clone(),
        index: alloc.index(),
        previous: Some(alloc.clone()),
        reason,
    }
}

/// `job.group[index]`, the name Nomad gives allocations.
pub fn alloc_name(job_id: &str, group: &str, index: u64) -> String {
    format!("{job_id}.{group}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use api::{ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, JOB_TYPE_BATCH, JOB_TYPE_SERVICE};

    struct Fixture {
        job: Arc<Job>,
        nodes: Vec<Arc<Node>>,
        allocs: Vec<Arc<Allocation>>,
    }

    impl Fixture {
        fn new(job_type: &str, count: i64) -> Self {
            let mut job = mock::job("web", job_type);
            job.task_groups[0].count = count;
            Fixture {
                job: Arc::new(job),
                nodes: vec![Arc::new(mock::node("n1")), Arc::new(mock::node("n2"))],
                allocs: vec![],
            }
        }

        fn alloc(&mut self, index: u64, node: usize) -> Allocation {
            let a = mock::alloc(&self.job, "web", index, &self.nodes[node]);
            self.allocs.push(Arc::new(a.clone()));
            a
        }

        fn push(&mut self, alloc: Allocation) {
            self.allocs.retain(|a| a.id != alloc.id);
            self.allocs.push(Arc::new(alloc));
        }

        fn run(&self) -> GroupBuckets {
            self.run_with(Some(&self.job), "eval", 0)
        }

        fn run_with(&self, job: Option<&Job>, eval_id: &str, now: i64) -> GroupBuckets {
            let health = NodeHealth::map(&self.nodes);
            let r = reconcile(&ReconcileInput {
                job,
                allocs: &self.allocs,
                node_health: &health,
                eval_id,
                now,
            });
            r.groups.get("web").cloned().unwrap_or_default()
        }
    }

    fn indices(place: &[Placement]) -> Vec<u64> {
        place.iter().map(|p| p.index).collect()
    }

    fn names(allocs: &[StopAlloc]) -> Vec<String> {
        allocs.iter().map(|s| s.alloc.name.clone()).collect()
    }

    #[test]
    fn places_missing_indices() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 4);
        f.alloc(1, 0);
        let b = f.run();
        assert_eq!(indices(&b.place), [0, 2, 3]);
        assert!(b.place.iter().all(|p| p.reason == PlacementReason::Missing));
        assert_eq!(b.place[0].name, "web.web[0]");
        assert_eq!(b.ignore.len(), 1);
    }

    #[test]
    fn scale_down_stops_highest_indices_first() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 2);
        for i in 0..5 {
            f.alloc(i, (i % 2) as usize);
        }
        let b = f.run();
        assert!(b.place.is_empty());
        assert_eq!(names(&b.stop), ["web.web[4]", "web.web[3]", "web.web[2]"]);
        assert!(b.stop.iter().all(|s| s.description == DESC_NOT_NEEDED));
    }

    #[test]
    fn allocs_on_down_nodes_are_lost_and_replaced() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 2);
        f.alloc(0, 0);
        let on_down = f.alloc(1, 1);
        let mut down = (*f.nodes[1]).clone();
        down.status = api::NODE_STATUS_DOWN.into();
        f.nodes[1] = Arc::new(down);
        let b = f.run();
        assert_eq!(b.lost.len(), 1);
        assert_eq!(b.lost[0].id, on_down.id);
        assert_eq!(indices(&b.place), [1]);
        assert_eq!(b.place[0].reason, PlacementReason::Lost);
        assert_eq!(b.place[0].previous.as_ref().unwrap().id, on_down.id);
    }

    #[test]
    fn allocs_on_missing_nodes_are_lost() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        f.alloc(0, 1);
        f.nodes.truncate(1);
        let b = f.run();
        assert_eq!(b.lost.len(), 1);
        assert_eq!(indices(&b.place), [0]);
    }

    #[test]
    fn allocs_on_draining_or_ineligible_nodes_keep_running() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        f.alloc(0, 1);
        let mut draining = (*f.nodes[1]).clone();
        draining.drain = true;
        f.nodes[1] = Arc::new(draining);
        let b = f.run();
        assert!(b.place.is_empty() && b.stop.is_empty() && b.lost.is_empty());
        assert_eq!(b.ignore.len(), 1);
    }

    #[test]
    fn completed_batch_allocs_are_not_replaced() {
        let mut f = Fixture::new(JOB_TYPE_BATCH, 2);
        let mut done = f.alloc(0, 0);
        done.client_status = ALLOC_CLIENT_COMPLETE.into();
        f.push(done);
        let b = f.run();
        assert_eq!(indices(&b.place), [1]);
        assert_eq!(b.ignore.len(), 1);
    }

    #[test]
    fn completed_service_allocs_are_replaced() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        let mut done = f.alloc(0, 0);
        done.client_status = ALLOC_CLIENT_COMPLETE.into();
        f.push(done);
        let b = f.run();
        assert_eq!(indices(&b.place), [0]);
        assert_eq!(b.place[0].reason, PlacementReason::Missing);
    }

    #[test]
    fn failed_allocs_are_rescheduled_now_without_a_clock() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        let mut failed = f.alloc(0, 0);
        failed.client_status = ALLOC_CLIENT_FAILED.into();
        f.push(failed.clone());
        let b = f.run();
        assert_eq!(b.reschedule_now.len(), 1);
        assert_eq!(b.place.len(), 1);
        assert_eq!(b.place[0].reason, PlacementReason::Reschedule);
        assert_eq!(b.place[0].previous.as_ref().unwrap().id, failed.id);
    }

    #[test]
    fn failed_allocs_already_replaced_are_ignored() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        let mut failed = f.alloc(0, 0);
        failed.client_status = ALLOC_CLIENT_FAILED.into();
        f.push(failed.clone());
        let mut replacement = f.alloc(0, 1);
        replacement.id = "replacement".into();
        replacement.previous_allocation = failed.id.clone();
        f.push(replacement);
        let b = f.run();
        assert!(b.place.is_empty() && b.reschedule_now.is_empty());
        assert_eq!(b.ignore.len(), 2);
    }

    #[test]
    fn batch_failures_past_their_attempts_are_not_rescheduled() {
        // Batch default: one attempt in 24h.
        let mut f = Fixture::new(JOB_TYPE_BATCH, 1);
        let mut first = f.alloc(0, 0);
        first.client_status = ALLOC_CLIENT_FAILED.into();
        first.next_allocation = "second".into();
        f.push(first.clone());
        let mut second = f.alloc(0, 1);
        second.id = "second".into();
        second.previous_allocation = first.id.clone();
        second.client_status = ALLOC_CLIENT_FAILED.into();
        f.push(second);
        let b = f.run();
        assert!(b.place.is_empty() && b.reschedule_now.is_empty());
        assert_eq!(b.ignore.len(), 2);
    }

    #[test]
    fn reschedule_waits_for_the_policy_delay_when_time_is_known() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1); // 30s exponential
        let mut failed = f.alloc(0, 0);
        failed.client_status = ALLOC_CLIENT_FAILED.into();
        failed.modify_time = api::secs(1000);
        f.push(failed.clone());
        let b = f.run_with(Some(&f.job), "eval", api::secs(1010));
        assert!(b.place.is_empty());
        assert_eq!(b.reschedule_later.len(), 1);
        assert_eq!(b.reschedule_later[0].wait_until, api::secs(1030));
        // Once the delay has passed, it goes now.
        let b = f.run_with(Some(&f.job), "eval", api::secs(1031));
        assert_eq!(b.reschedule_now.len(), 1);
        // The follow-up evaluation itself reschedules now.
        failed.followup_eval_id = "followup".into();
        f.push(failed);
        let b = f.run_with(Some(&f.job), "followup", api::secs(1029));
        assert_eq!(b.reschedule_now.len(), 1);
        // Another evaluation before then leaves it to the follow-up.
        let b = f.run_with(Some(&f.job), "other", api::secs(1015));
        assert!(b.place.is_empty() && b.reschedule_later.is_empty());
    }

    #[test]
    fn reschedule_delay_functions() {
        let mut p = ReschedulePolicy {
            delay: 10,
            delay_function: "exponential".into(),
            max_delay: 100,
            ..Default::default()
        };
        assert_eq!(
            [0, 1, 2, 3, 4].map(|n| reschedule_delay(&p, n)),
            [10, 20, 40, 80, 100]
        );
        p.delay_function = "fibonacci".into();
        assert_eq!(
            [0, 1, 2, 3, 4].map(|n| reschedule_delay(&p, n)),
            [10, 10, 20, 30, 50]
        );
        p.delay_function = "constant".into();
        assert_eq!(reschedule_delay(&p, 7), 10);
    }

    #[test]
    fn count_only_change_is_an_in_place_update() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        f.alloc(0, 0);
        let mut new = (*f.job).clone();
        new.version += 1;
        new.task_groups[0].count = 2;
        new.task_groups[0].meta.insert("owner".into(), "ops".into());
        new.meta.insert("team".into(), "a".into());
        let b = f.run_with(Some(&new), "eval", 0);
        assert_eq!(b.inplace_update.len(), 1);
        assert!(b.destructive_update.is_empty());
        assert_eq!(indices(&b.place), [1]);
    }

    #[test]
    fn task_change_is_a_destructive_update() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 2);
        f.alloc(0, 0);
        f.alloc(1, 1);
        let mut new = (*f.job).clone();
        new.version += 1;
        new.task_groups[0].tasks[0]
            .env
            .insert("VERSION".into(), "2".into());
        let b = f.run_with(Some(&new), "eval", 0);
        assert_eq!(b.destructive_update.len(), 2);
        assert_eq!(indices(&b.place), [0, 1]);
        assert!(b
            .place
            .iter()
            .all(|p| p.reason == PlacementReason::DestructiveUpdate));
    }

    #[test]
    fn update_kind_rules() {
        let old = mock::job("web", JOB_TYPE_SERVICE);
        assert_eq!(update_kind(Some(&old), &old, "web"), UpdateKind::None);
        let mut new = old.clone();
        new.version = 1;
        assert_eq!(update_kind(Some(&old), &new, "web"), UpdateKind::InPlace);
        new.datacenters = vec!["dc9".into()];
        assert_eq!(
            update_kind(Some(&old), &new, "web"),
            UpdateKind::Destructive
        );
        let mut new = old.clone();
        new.version = 1;
        new.task_groups[0].tasks[0].resources.as_mut().unwrap().cpu += 1;
        assert_eq!(
            update_kind(Some(&old), &new, "web"),
            UpdateKind::Destructive
        );
        assert_eq!(update_kind(None, &new, "web"), UpdateKind::Destructive);
    }

    #[test]
    fn stopped_or_missing_job_stops_every_live_alloc() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 2);
        f.alloc(0, 0);
        let mut done = f.alloc(1, 1);
        done.client_status = ALLOC_CLIENT_COMPLETE.into();
        f.push(done);
        let health = NodeHealth::map(&f.nodes);
        let mut stopped = (*f.job).clone();
        stopped.stop = true;
        for job in [Some(&stopped), None] {
            let r = reconcile(&ReconcileInput {
                job,
                allocs: &f.allocs,
                node_health: &health,
                eval_id: "e",
                now: 0,
            });
            assert!(r.groups.is_empty());
            assert_eq!(names(&r.stop), ["web.web[0]"]);
            assert_eq!(r.stop[0].description, DESC_JOB_STOPPED);
        }
    }

    #[test]
    fn allocs_of_removed_groups_are_stopped() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        let mut a = f.alloc(0, 0);
        a.task_group = "old".into();
        a.name = "web.old[0]".into();
        f.push(a);
        let health = NodeHealth::map(&f.nodes);
        let r = reconcile(&ReconcileInput {
            job: Some(&f.job),
            allocs: &f.allocs,
            node_health: &health,
            eval_id: "e",
            now: 0,
        });
        assert_eq!(names(&r.stop), ["web.old[0]"]);
        assert_eq!(indices(&r.groups["web"].place), [0]);
    }

    #[test]
    fn scale_down_does_not_replace_lost_allocs() {
        let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
        f.alloc(0, 0);
        f.alloc(1, 1);
        f.nodes.truncate(1);
        let b = f.run();
        assert_eq!(b.lost.len(), 1);
        assert!(b.place.is_empty());
    }
}
