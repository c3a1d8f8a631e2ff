//! Reconciliation for service and batch jobs: what to place, stop, replace and update.
//!
//! A pure function from the job, its allocations and the health of their nodes to plain
//! buckets per task group. It decides *what* changes, never *where*: placements carry a
//! name and the allocation they replace, and the generic scheduler picks their nodes.

mod reschedule;
mod update;

pub use reschedule::{reschedule_decision, reschedule_delay, RescheduleDecision};
pub use update::{
    alloc_healthy, pace, update_kind, update_strategy, Pacing, PacingInput, UpdateKind,
    MIN_ROLLING_WAIT, TRIGGER_ROLLING_UPDATE,
};

use api::{Allocation, Job, Node, ReschedulePolicy, TaskGroup};
use reschedule::History;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const DESC_LOST: &str = "alloc is lost since its node is down";
pub const DESC_JOB_STOPPED: &str = "alloc not needed as job is stopped";
pub const DESC_UPDATING: &str = "alloc is being updated due to job update";
pub const DESC_RESCHEDULED: &str = "alloc was rescheduled because it failed";
pub const DESC_NODE_TAINTED: &str = "alloc not needed as node is tainted";
pub const DESC_MIGRATING: &str = "alloc is being migrated";
pub const DESC_CANARY_PROMOTED: &str = "alloc was replaced by a promoted canary";
pub const DESC_RECONNECTED: &str =
    "alloc not needed as the allocation it replaced reconnected and is running";
pub const DESC_REPLACED_WHILE_DISCONNECTED: &str =
    "alloc was replaced while its node was disconnected";

/// How the scheduler treats a node that allocations run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Ready, eligible, not draining: takes new work.
    Ready,
    /// Up but draining or marked ineligible: its allocations keep running, except those
    /// the drainer flagged for migration (`desired_transition.migrate`), which move.
    Draining,
    /// Up but not taking new work yet (initializing): its allocations keep running.
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
            Some(n) if n.drain || n.scheduling_eligibility == api::NODE_INELIGIBLE => {
                NodeHealth::Draining
            }
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
    /// Replaces an allocation the drainer moves off its node.
    Migrate,
    /// A canary of the new version beside the old allocation of the same name; it
    /// replaces nothing until promoted.
    Canary,
    /// Stands in for an `unknown` allocation on a disconnected node, which is not stopped:
    /// when the node reconnects, one of the two is kept (see `resolve_reconnects`).
    Disconnected,
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
/// one of `stop`, `lost`, `ignore`, `reschedule_now`, `reschedule_later`, `migrate`,
/// `inplace_update`, `destructive_update`, `awaiting_update`, `canaries` or `disconnected`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupBuckets {
    /// New allocations, including replacements for lost, rescheduled and destructively
    /// updated ones (which say so in `reason` and `previous`).
    pub place: Vec<Placement>,
    /// Live allocations no longer wanted (scale-down).
    pub stop: Vec<StopAlloc>,
    /// Allocations on lost nodes: stopped and marked lost.
    pub lost: Vec<Arc<Allocation>>,
    /// `unknown` allocations on a disconnected node (within the group's
    /// `max_client_disconnect`): left alone, and replaced elsewhere (a `Disconnected`
    /// placement) unless a replacement already holds their name.
    pub disconnected: Vec<Arc<Allocation>>,
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
    /// Allocations the drainer flagged on a draining or ineligible node: each is replaced
    /// elsewhere (a `Migrate` placement) and stopped in the same plan.
    pub migrate: Vec<Arc<Allocation>>,
    /// Running allocations that need a destructive update but wait their turn
    /// (`update.max_parallel`) or for the canaries to be promoted.
    pub awaiting_update: Vec<Arc<Allocation>>,
    /// Canaries of the current version waiting for promotion.
    pub canaries: Vec<Arc<Allocation>>,
    /// When the update must continue: the plan carries a pending `rolling-update`
    /// evaluation with this `wait_until` (Unix nanoseconds; 0: as soon as possible).
    pub follow_up: Option<i64>,
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
    // `unknown` allocations: on a node that is still disconnected, or on one that came
    // back but whose client has not reported their real status yet. (The server marks
    // them lost when the group's `max_client_disconnect` window ends, so an `unknown`
    // allocation on an unhealthy node is always within its window.)
    let mut unknown_away = Vec::new();
    let mut unknown_back = Vec::new();

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
            api::ALLOC_CLIENT_UNKNOWN => match node_health(input, alloc) {
                NodeHealth::Lost => unknown_away.push(alloc.clone()),
                _ => unknown_back.push(alloc.clone()),
            },
            _ => match node_health(input, alloc) {
                NodeHealth::Lost => lost.push(alloc.clone()),
                NodeHealth::Ready | NodeHealth::Draining | NodeHealth::Unschedulable => {
                    live.push(alloc.clone())
                }
            },
        }
    }

    // Fill the count in priority order: what is settled, what runs, replacements for lost
    // allocs, then reschedules. Whatever does not fit is stopped or left alone.
    let count = group.count.max(0) as usize;
    let mut room = count.saturating_sub(settled.len());
    let mut names_taken: BTreeSet<u64> = settled.iter().map(|a| a.index()).collect();
    out.ignore.extend(settled);

    let (live, reconnect_stops) = resolve_reconnects(live);
    out.stop.extend(reconnect_stops);
    let LiveSplit {
        mut primaries,
        canaries,
        duplicates,
    } = split_live(job, group, live);
    out.stop
        .extend(duplicates.into_iter().map(|alloc| StopAlloc {
            alloc,
            description: DESC_NOT_NEEDED,
        }));
    let keep = primaries.len().min(room);
    room -= keep;
    // `primaries` are sorted by index, so the extras are the highest indices.
    let mut canaries = canaries;
    for alloc in primaries.drain(keep..).rev() {
        // A canary of a name that goes away goes with it.
        if let Some(i) = canaries.iter().position(|c| c.name == alloc.name) {
            out.stop.push(StopAlloc {
                alloc: canaries.remove(i),
                description: DESC_NOT_NEEDED,
            });
        }
        out.stop.push(StopAlloc {
            alloc,
            description: DESC_NOT_NEEDED,
        });
    }
    let mut destructive = Vec::new();
    let mut current = Vec::new();
    for alloc in primaries {
        names_taken.insert(alloc.index());
        let draining = input.node_health.get(&alloc.node_id) == Some(&NodeHealth::Draining);
        if draining && alloc.desired_transition.should_migrate() {
            out.place
                .push(replacement(&alloc, PlacementReason::Migrate));
            out.migrate.push(alloc);
            continue;
        }
        match update_kind(alloc.job.as_deref(), job, &group.name) {
            UpdateKind::None => {
                current.push(alloc.clone());
                out.ignore.push(alloc)
            }
            UpdateKind::InPlace => out.inplace_update.push(alloc),
            UpdateKind::Destructive => destructive.push(alloc),
        }
    }
    let strategy = update_strategy(job, group);
    let pacing = pace(PacingInput {
        strategy,
        destructive,
        started: update_started(job, group, allocs, &current),
        canaries,
        current,
        now: input.now,
    });
    for alloc in pacing.replace {
        out.place
            .push(replacement(&alloc, PlacementReason::DestructiveUpdate));
        out.destructive_update.push(alloc);
    }
    for alloc in pacing.new_canaries {
        out.place.push(Placement {
            previous: None,
            ..replacement(&alloc, PlacementReason::Canary)
        });
    }
    for (canary, old) in pacing.promote {
        out.ignore.push(canary);
        out.stop.push(StopAlloc {
            alloc: old,
            description: DESC_CANARY_PROMOTED,
        });
    }
    out.awaiting_update = pacing.wait;
    out.canaries = pacing.unpromoted;
    if pacing.follow_up {
        let wait = strategy
            .map_or(0, |s| s.min_healthy_time)
            .max(MIN_ROLLING_WAIT);
        out.follow_up = Some(if input.now > 0 { input.now + wait } else { 0 });
    }
    if pacing.hold_new_placements {
        room = 0;
    }

    // Back from a disconnect, status not reported yet: it holds its name unless its
    // replacement does (then the client's report decides, in `resolve_reconnects`).
    for alloc in unknown_back {
        if names_taken.insert(alloc.index()) {
            room = room.saturating_sub(1);
        }
        out.ignore.push(alloc);
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
    // After reschedules: a failed replacement of a disconnected alloc keeps its own
    // reschedule chain rather than being replaced afresh.
    for alloc in unknown_away {
        if room > 0 && names_taken.insert(alloc.index()) {
            room -= 1;
            out.place
                .push(replacement(&alloc, PlacementReason::Disconnected));
        }
        out.disconnected.push(alloc);
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

fn node_health(input: &ReconcileInput<'_>, alloc: &Allocation) -> NodeHealth {
    input
        .node_health
        .get(&alloc.node_id)
        .copied()
        .unwrap_or(NodeHealth::Lost)
}

/// Keeps one of each pair of live allocations where one replaced the other: that happens
/// only when a node came back from a disconnect after its `unknown` allocation had been
/// replaced elsewhere (every other replacement stops its predecessor in the same plan).
///
/// The rule: the original is kept and its replacement stopped when the original is
/// running and on a job version at least as new; otherwise (it is still pending, e.g.
/// restarting, or the job was updated meanwhile) the replacement is kept. An original that
/// failed or completed while away is not live and never gets here; its replacement stays.
/// Keeping the original avoids moving a workload that was fine all along.
fn resolve_reconnects(live: Vec<Arc<Allocation>>) -> (Vec<Arc<Allocation>>, Vec<StopAlloc>) {
    let by_id: HashMap<&str, &Arc<Allocation>> = live.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut stopped: BTreeSet<String> = BTreeSet::new();
    let mut stops = Vec::new();
    for newer in &live {
        let Some(original) = by_id.get(newer.previous_allocation.as_str()) else {
            continue;
        };
        if stopped.contains(&original.id) || stopped.contains(&newer.id) {
            continue;
        }
        let keep_original = original.client_status == api::ALLOC_CLIENT_RUNNING
            && original.job_version() >= newer.job_version();
        let (loser, description) = if keep_original {
            (newer, DESC_RECONNECTED)
        } else {
            (*original, DESC_REPLACED_WHILE_DISCONNECTED)
        };
        stopped.insert(loser.id.clone());
        stops.push(StopAlloc {
            alloc: loser.clone(),
            description,
        });
    }
    let live = live
        .into_iter()
        .filter(|a| !stopped.contains(&a.id))
        .collect();
    (live, stops)
}

/// A group's live allocations, one per name, apart from canaries and stray duplicates.
struct LiveSplit {
    primaries: Vec<Arc<Allocation>>,
    canaries: Vec<Arc<Allocation>>,
    duplicates: Vec<Arc<Allocation>>,
}

/// Normally each name has one live allocation. Two share a name when a canary of the
/// current version runs beside the older allocation it is to replace; anything more is a
/// duplicate to stop (the newest version is kept).
fn split_live(job: &Job, group: &TaskGroup, live: Vec<Arc<Allocation>>) -> LiveSplit {
    let mut out = LiveSplit {
        primaries: Vec::new(),
        canaries: Vec::new(),
        duplicates: Vec::new(),
    };
    let mut by_index: BTreeMap<u64, Vec<Arc<Allocation>>> = BTreeMap::new();
    for alloc in live {
        by_index.entry(alloc.index()).or_default().push(alloc);
    }
    for (_, mut same_name) in by_index {
        // Newest version first, then oldest allocation.
        same_name.sort_by(|a, b| {
            (b.job_version(), a.create_index, &a.id).cmp(&(a.job_version(), b.create_index, &b.id))
        });
        let kind = |a: &Allocation| update_kind(a.job.as_deref(), job, &group.name);
        let mut rest = same_name.into_iter();
        let Some(first) = rest.next() else { continue };
        let mut rest: Vec<_> = rest.collect();
        if kind(&first) == UpdateKind::None {
            if let Some(i) = rest.iter().position(|a| kind(a) == UpdateKind::Destructive) {
                out.primaries.push(rest.remove(i));
                out.canaries.push(first);
                out.duplicates.extend(rest);
                continue;
            }
        }
        out.primaries.push(first);
        out.duplicates.extend(rest);
    }
    out
}

/// Replacing has started for the current version when an older allocation was stopped for
/// it (a destructive replacement or a promoted canary) and a current one holds its name.
fn update_started(
    job: &Job,
    group: &TaskGroup,
    allocs: &[Arc<Allocation>],
    current: &[Arc<Allocation>],
) -> bool {
    allocs.iter().any(|a| {
        a.desired_stop()
            && matches!(
                a.desired_description.as_str(),
                DESC_UPDATING | DESC_CANARY_PROMOTED
            )
            && update_kind(a.job.as_deref(), job, &group.name) == UpdateKind::Destructive
            && current.iter().any(|c| c.name == a.name)
    })
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
mod tests;
