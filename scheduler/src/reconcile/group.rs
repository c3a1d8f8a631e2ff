//! One task group's reconciliation: its allocations sorted by what their status asks
//! for, then its count filled in priority order.

use super::reschedule::History;
use super::{
    alloc_name, pace, reschedule_decision, update_kind, update_strategy, DelayedReschedule,
    GroupBuckets, NodeHealth, Pacing, PacingInput, Placement, PlacementReason, ReconcileInput,
    RescheduleDecision, StopAlloc, UpdateKind, DESC_CANARY_PROMOTED, DESC_NOT_NEEDED,
    DESC_RECONNECTED, DESC_REPLACED_WHILE_DISCONNECTED, DESC_UPDATING, MIN_ROLLING_WAIT,
};
use api::{Allocation, Job, ReschedulePolicy, TaskGroup, UpdateStrategy};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// One task group's buckets. Fills the group's count in priority order: what is
/// settled, what runs (kept, updated or migrated, paced by the update strategy), then
/// replacements for lost, rescheduled and disconnected allocations, then new names.
pub(super) fn reconcile_group(
    job: &Job,
    group: &TaskGroup,
    allocs: &[Arc<Allocation>],
    input: &ReconcileInput<'_>,
    history: &History<'_>,
) -> GroupBuckets {
    let mut out = GroupBuckets::default();
    let sorted = classify(job, group, allocs, input, history, &mut out);
    // Whatever does not fit the count is stopped or left alone.
    let count = group.count.max(0) as usize;
    let mut room = Room {
        left: count.saturating_sub(sorted.settled.len()),
        names: sorted.settled.iter().map(|a| a.index()).collect(),
    };
    out.ignore.extend(sorted.settled);
    keep_live(
        job,
        group,
        allocs,
        input,
        history,
        sorted.live,
        &mut room,
        &mut out,
    );
    replace_missing(job, group, sorted.waiting, &mut room, &mut out);
    out.place.sort_by_key(|p| p.index);
    out
}

/// A group's allocations by what their status asks for (those with nothing to do are
/// already in `ignore`).
struct Classified {
    /// Terminal allocations that keep their name: a batch alloc that finished, or a failed
    /// one that may not be rescheduled. They count towards the group's count for good.
    settled: Vec<Arc<Allocation>>,
    live: Vec<Arc<Allocation>>,
    waiting: Waiting,
}

/// Allocations whose name is to be filled again, or held, once the live ones are kept.
#[derive(Default)]
struct Waiting {
    lost: Vec<Arc<Allocation>>,
    reschedule_now: Vec<Arc<Allocation>>,
    reschedule_later: Vec<DelayedReschedule>,
    /// Failed allocations that already have a follow-up evaluation on the way.
    awaiting_followup: Vec<Arc<Allocation>>,
    /// `unknown` allocations: on a node that is still disconnected (`away`), or on one
    /// that came back but whose client has not reported their real status yet (`back`).
    /// (The server marks them lost when the group's `max_client_disconnect` window ends,
    /// so an `unknown` allocation on an unhealthy node is always within its window.)
    unknown_away: Vec<Arc<Allocation>>,
    unknown_back: Vec<Arc<Allocation>>,
}

fn classify(
    job: &Job,
    group: &TaskGroup,
    allocs: &[Arc<Allocation>],
    input: &ReconcileInput<'_>,
    history: &History<'_>,
    out: &mut GroupBuckets,
) -> Classified {
    let is_batch = job.job_type == api::JOB_TYPE_BATCH;
    let policy = group
        .reschedule_policy
        .clone()
        .unwrap_or_else(|| ReschedulePolicy::default_for(&job.job_type));
    let mut settled = Vec::new();
    let mut live = Vec::new();
    let mut w = Waiting::default();
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
                    RescheduleDecision::Now => w.reschedule_now.push(alloc.clone()),
                    RescheduleDecision::Later(_) if !alloc.followup_eval_id.is_empty() => {
                        w.awaiting_followup.push(alloc.clone())
                    }
                    RescheduleDecision::Later(wait_until) => {
                        w.reschedule_later.push(DelayedReschedule {
                            alloc: alloc.clone(),
                            wait_until,
                        })
                    }
                    // Out of attempts, it keeps its name, unless a newer version
                    // replaces it anyway (as a destructive update would; auto_revert
                    // relies on it).
                    RescheduleDecision::Never
                        if update_kind(alloc.job.as_deref(), job, &group.name)
                            == UpdateKind::Destructive =>
                    {
                        out.ignore.push(alloc.clone())
                    }
                    RescheduleDecision::Never => settled.push(alloc.clone()),
                }
            }
            api::ALLOC_CLIENT_LOST => w.lost.push(alloc.clone()),
            api::ALLOC_CLIENT_UNKNOWN => match node_health(input, alloc) {
                NodeHealth::Lost => w.unknown_away.push(alloc.clone()),
                _ => w.unknown_back.push(alloc.clone()),
            },
            _ => match node_health(input, alloc) {
                NodeHealth::Lost => w.lost.push(alloc.clone()),
                NodeHealth::Ready | NodeHealth::Draining | NodeHealth::Unschedulable => {
                    live.push(alloc.clone())
                }
            },
        }
    }
    Classified {
        settled,
        live,
        waiting: w,
    }
}

/// The group's room while its count is filled: how many more allocations it may keep
/// or place, and the names (indices) taken.
struct Room {
    left: usize,
    names: BTreeSet<u64>,
}

impl Room {
    /// Takes the name `index` and one place, if there is a place and the name is free.
    fn take(&mut self, index: u64) -> bool {
        if self.left > 0 && self.names.insert(index) {
            self.left -= 1;
            true
        } else {
            false
        }
    }
}

/// The live allocations: one per name up to the count (the rest stopped), each kept,
/// migrated off a draining node or updated in place or destructively, with destructive
/// updates and canaries paced by the group's update strategy. One the client judged
/// unhealthy in the running deployment is rescheduled while its policy allows
/// (`unhealthy_replaceable`); its replacement is in flight for the pacing.
#[allow(clippy::too_many_arguments)]
fn keep_live(
    job: &Job,
    group: &TaskGroup,
    allocs: &[Arc<Allocation>],
    input: &ReconcileInput<'_>,
    history: &History<'_>,
    live: Vec<Arc<Allocation>>,
    room: &mut Room,
    out: &mut GroupBuckets,
) {
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
    let keep = primaries.len().min(room.left);
    room.left -= keep;
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
        room.names.insert(alloc.index());
        let draining = input.node_health.get(alloc.node_id.as_str()) == Some(&NodeHealth::Draining);
        if draining && alloc.desired_transition.should_migrate() {
            out.place
                .push(replacement(&alloc, PlacementReason::Migrate));
            out.migrate.push(alloc);
            continue;
        }
        match update_kind(alloc.job.as_deref(), job, &group.name) {
            UpdateKind::None if unhealthy_replaceable(job, group, input, history, &alloc) => {
                out.place
                    .push(replacement(&alloc, PlacementReason::Reschedule));
                current.push(alloc.clone());
                out.reschedule_now.push(alloc);
            }
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
        gate: crate::deployment::gate(job, input.deployment, &group.name),
    });
    if apply_pacing(pacing, strategy, input.now, out) {
        room.left = 0;
    }
}

/// A live allocation of the current version that its running deployment's client judged
/// unhealthy, in a group with a progress deadline, with reschedule attempts left (earlier
/// unhealthy or failed allocations of its chain count): Nomad replaces it now. Otherwise
/// it stays, and the deployment watcher fails the deployment (at once, or at its
/// progress deadline).
fn unhealthy_replaceable(
    job: &Job,
    group: &TaskGroup,
    input: &ReconcileInput<'_>,
    history: &History<'_>,
    alloc: &Allocation,
) -> bool {
    if !crate::deployment::replaces_unhealthy(job, input.deployment, alloc) {
        return false;
    }
    let policy = group
        .reschedule_policy
        .clone()
        .unwrap_or_else(|| ReschedulePolicy::default_for(&job.job_type));
    policy.unlimited || history.prior_attempts(alloc, policy.interval, input.now) < policy.attempts
}

/// Puts what the update pacing decided into the buckets; true when new placements must
/// wait (canaries not promoted yet).
fn apply_pacing(
    pacing: Pacing,
    strategy: Option<&UpdateStrategy>,
    now: i64,
    out: &mut GroupBuckets,
) -> bool {
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
        out.follow_up = Some(if now > 0 { now + wait } else { 0 });
    }
    pacing.hold_new_placements
}

/// Fills what is left of the count: names held by allocations back from a disconnect,
/// replacements for lost ones, reschedules, replacements for disconnected ones, then
/// new allocations under the lowest free names.
fn replace_missing(
    job: &Job,
    group: &TaskGroup,
    w: Waiting,
    room: &mut Room,
    out: &mut GroupBuckets,
) {
    // Back from a disconnect, status not reported yet: it holds its name unless its
    // replacement does (then the client's report decides, in `resolve_reconnects`).
    for alloc in w.unknown_back {
        if room.names.insert(alloc.index()) {
            room.left = room.left.saturating_sub(1);
        }
        out.ignore.push(alloc);
    }
    for alloc in w.lost {
        if room.take(alloc.index()) {
            out.place.push(replacement(&alloc, PlacementReason::Lost));
        }
        out.lost.push(alloc);
    }
    for alloc in w.reschedule_now {
        if room.take(alloc.index()) {
            out.place
                .push(replacement(&alloc, PlacementReason::Reschedule));
            out.reschedule_now.push(alloc);
        } else {
            out.ignore.push(alloc);
        }
    }
    // Their follow-up evaluation will replace them: hold their names meanwhile.
    for alloc in w.awaiting_followup {
        room.take(alloc.index());
        out.ignore.push(alloc);
    }
    for delayed in w.reschedule_later {
        if room.take(delayed.alloc.index()) {
            out.reschedule_later.push(delayed);
        } else {
            out.ignore.push(delayed.alloc);
        }
    }
    // After reschedules: a failed replacement of a disconnected alloc keeps its own
    // reschedule chain rather than being replaced afresh.
    for alloc in w.unknown_away {
        if room.take(alloc.index()) {
            out.place
                .push(replacement(&alloc, PlacementReason::Disconnected));
        }
        out.disconnected.push(alloc);
    }

    // New allocations take the lowest free names.
    let mut index = 0u64;
    while room.left > 0 {
        if room.take(index) {
            out.place.push(Placement {
                name: alloc_name(&job.id, &group.name, index),
                index,
                previous: None,
                reason: PlacementReason::Missing,
            });
        }
        index += 1;
    }
}

fn node_health(input: &ReconcileInput<'_>, alloc: &Allocation) -> NodeHealth {
    input
        .node_health
        .get(alloc.node_id.as_str())
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
        if stopped.contains(original.id.as_str()) || stopped.contains(newer.id.as_str()) {
            continue;
        }
        let keep_original = original.client_status == api::ALLOC_CLIENT_RUNNING
            && original.job_version() >= newer.job_version();
        let (loser, description) = if keep_original {
            (newer, DESC_RECONNECTED)
        } else {
            (*original, DESC_REPLACED_WHILE_DISCONNECTED)
        };
        stopped.insert(loser.id.to_string());
        stops.push(StopAlloc {
            alloc: loser.clone(),
            description,
        });
    }
    let live = live
        .into_iter()
        .filter(|a| !stopped.contains(a.id.as_str()))
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
        name: alloc.name.to_string(),
        index: alloc.index(),
        previous: Some(alloc.clone()),
        reason,
    }
}
