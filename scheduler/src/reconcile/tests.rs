use super::*;
use crate::mock;
use api::{
    ReschedulePolicy, ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, JOB_TYPE_BATCH, JOB_TYPE_SERVICE,
};
use std::collections::BTreeSet;

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
            deployment: None,
        });
        r.groups.get("web").cloned().unwrap_or_default()
    }
}

fn indices(place: &[Placement]) -> Vec<u64> {
    place.iter().map(|p| p.index).collect()
}

fn names(allocs: &[StopAlloc]) -> Vec<String> {
    allocs.iter().map(|s| s.alloc.name.to_string()).collect()
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
            deployment: None,
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
        deployment: None,
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

fn drain(f: &mut Fixture, node: usize) {
    let mut n = (*f.nodes[node]).clone();
    n.drain = true;
    n.scheduling_eligibility = api::NODE_INELIGIBLE.into();
    f.nodes[node] = Arc::new(n);
}

fn flag_migrate(alloc: &mut Allocation) {
    alloc.desired_transition.migrate = Some(true);
}

#[test]
fn drain_migrates_only_flagged_allocs() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 3);
    let mut flagged = f.alloc(0, 1);
    flag_migrate(&mut flagged);
    f.push(flagged.clone());
    f.alloc(1, 1); // same draining node, not flagged yet: the drainer paces
    f.alloc(2, 0);
    drain(&mut f, 1);
    let b = f.run();
    assert_eq!(b.migrate.len(), 1);
    assert_eq!(b.migrate[0].id, flagged.id);
    assert_eq!(indices(&b.place), [0]);
    assert_eq!(b.place[0].reason, PlacementReason::Migrate);
    assert_eq!(b.place[0].previous.as_ref().unwrap().id, flagged.id);
    assert_eq!(b.ignore.len(), 2);
    assert!(b.stop.is_empty() && b.lost.is_empty());
}

#[test]
fn migrate_flag_on_a_ready_node_is_ignored() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let mut a = f.alloc(0, 0);
    flag_migrate(&mut a);
    f.push(a);
    let b = f.run();
    assert!(b.migrate.is_empty() && b.place.is_empty());
}

#[test]
fn ineligible_nodes_migrate_flagged_allocs_too() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let mut a = f.alloc(0, 1);
    flag_migrate(&mut a);
    f.push(a);
    let mut n = (*f.nodes[1]).clone();
    n.scheduling_eligibility = api::NODE_INELIGIBLE.into();
    f.nodes[1] = Arc::new(n);
    assert_eq!(f.run().migrate.len(), 1);
}

#[test]
fn completed_batch_allocs_on_a_draining_node_are_ignored() {
    let mut f = Fixture::new(JOB_TYPE_BATCH, 1);
    let mut done = f.alloc(0, 1);
    done.client_status = ALLOC_CLIENT_COMPLETE.into();
    flag_migrate(&mut done);
    f.push(done);
    drain(&mut f, 1);
    let b = f.run();
    assert!(b.migrate.is_empty() && b.place.is_empty());
    assert_eq!(b.ignore.len(), 1);
}

#[test]
fn migrating_alloc_of_an_old_version_is_migrated_not_updated() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let mut a = f.alloc(0, 1);
    flag_migrate(&mut a);
    f.push(a);
    drain(&mut f, 1);
    let mut new = (*f.job).clone();
    new.version += 1;
    new.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    let b = f.run_with(Some(&new), "eval", 0);
    assert_eq!(b.migrate.len(), 1);
    assert!(b.destructive_update.is_empty());
    assert_eq!(b.place[0].reason, PlacementReason::Migrate);
}

fn destructive_update(f: &Fixture, strategy: api::UpdateStrategy) -> Job {
    let mut new = (*f.job).clone();
    new.version += 1;
    new.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    new.task_groups[0].update = Some(strategy);
    new
}

fn rolling(max_parallel: i64) -> api::UpdateStrategy {
    api::UpdateStrategy {
        max_parallel,
        min_healthy_time: api::secs(10),
        ..Default::default()
    }
}

#[test]
fn max_parallel_paces_destructive_updates_and_asks_for_a_follow_up() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 5);
    for i in 0..5 {
        f.alloc(i, (i % 2) as usize);
    }
    let new = destructive_update(&f, rolling(2));
    let b = f.run_with(Some(&new), "eval", api::secs(100));
    assert_eq!(indices(&b.place), [0, 1]);
    assert_eq!(b.destructive_update.len(), 2);
    assert_eq!(b.awaiting_update.len(), 3);
    assert_eq!(b.follow_up, Some(api::secs(110)));
}

#[test]
fn unhealthy_replacements_use_up_max_parallel() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 3);
    for i in 0..3 {
        f.alloc(i, 0);
    }
    let new = Arc::new(destructive_update(&f, rolling(1)));
    // Index 0 was replaced already: its old alloc stopped, the new one just started.
    let mut old0 = (*f.allocs[0]).clone();
    old0.desired_status = api::ALLOC_DESIRED_STOP.into();
    old0.desired_description = DESC_UPDATING.into();
    f.push(old0);
    let mut new0 = mock::alloc(&new, "web", 0, &f.nodes[1]);
    new0.modify_time = api::secs(95);
    f.push(new0.clone());
    let b = f.run_with(Some(&new), "eval", api::secs(100));
    assert!(b.place.is_empty());
    assert_eq!(b.awaiting_update.len(), 2);
    assert!(b.follow_up.is_some());
    // Once it has been healthy for min_healthy_time, the next one goes.
    let b = f.run_with(Some(&new), "eval", api::secs(106));
    assert_eq!(indices(&b.place), [1]);
    // A client verdict overrides the timer.
    new0.deployment_status = Some(api::AllocDeploymentStatus {
        healthy: Some(false),
        ..Default::default()
    });
    f.push(new0);
    let b = f.run_with(Some(&new), "eval", api::secs(500));
    assert!(
        b.place.is_empty(),
        "an unhealthy replacement halts the rollout"
    );
}

#[test]
fn without_an_update_block_everything_is_replaced_at_once() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 4);
    for i in 0..4 {
        f.alloc(i, 0);
    }
    let mut new = destructive_update(&f, rolling(1));
    new.task_groups[0].update = None;
    let b = f.run_with(Some(&new), "eval", api::secs(100));
    assert_eq!(b.destructive_update.len(), 4);
    assert_eq!(b.follow_up, None);
}

#[test]
fn canaries_are_placed_beside_old_allocs_and_hold_the_update() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 3);
    for i in 0..3 {
        f.alloc(i, 0);
    }
    let new = destructive_update(
        &f,
        api::UpdateStrategy {
            canary: 1,
            ..rolling(1)
        },
    );
    let b = f.run_with(Some(&new), "eval", api::secs(100));
    assert_eq!(indices(&b.place), [0]);
    assert_eq!(b.place[0].reason, PlacementReason::Canary);
    assert!(b.place[0].previous.is_none());
    assert!(b.destructive_update.is_empty() && b.stop.is_empty());
    assert_eq!(b.awaiting_update.len(), 3);
    assert_eq!(
        b.follow_up, None,
        "without auto_promote, promotion is manual"
    );
}

#[test]
fn healthy_canaries_are_auto_promoted_then_the_update_rolls() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 3);
    for i in 0..3 {
        f.alloc(i, 0);
    }
    let new = Arc::new(destructive_update(
        &f,
        api::UpdateStrategy {
            canary: 1,
            auto_promote: true,
            ..rolling(1)
        },
    ));
    let mut canary = mock::alloc(&new, "web", 0, &f.nodes[1]);
    canary.id = "canary".into();
    canary.modify_time = api::secs(95);
    f.push(canary.clone());
    // Not healthy yet: wait, and watch.
    let b = f.run_with(Some(&new), "eval", api::secs(100));
    assert!(b.place.is_empty() && b.stop.is_empty());
    assert_eq!(b.canaries.len(), 1);
    assert!(b.follow_up.is_some());
    // Healthy: the canary replaces index 0's old alloc, and index 1 is replaced.
    let b = f.run_with(Some(&new), "eval", api::secs(200));
    assert_eq!(names(&b.stop), ["web.web[0]"]);
    assert_eq!(b.stop[0].description, DESC_CANARY_PROMOTED);
    assert_eq!(indices(&b.place), [1]);
    assert_eq!(b.awaiting_update.len(), 1);
}

#[test]
fn duplicate_live_allocs_of_one_name_are_stopped() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    f.alloc(0, 0);
    let mut dup = mock::alloc(&f.job, "web", 0, &f.nodes[1]);
    dup.id = "zzz".into();
    dup.create_index = 9;
    f.push(dup);
    let b = f.run();
    assert_eq!(b.stop.len(), 1);
    assert_eq!(b.stop[0].alloc.id, "zzz");
}

// Disconnected clients (`max_client_disconnect`): the server marks a disconnected node's
// allocations `unknown`; the reconciler replaces them without stopping them, and keeps
// one copy per name when the node comes back.

fn set_node_status(f: &mut Fixture, node: usize, status: &str) {
    let mut n = (*f.nodes[node]).clone();
    n.status = status.into();
    f.nodes[node] = Arc::new(n);
}

fn with_status(mut a: Allocation, status: &str) -> Allocation {
    a.client_status = status.into();
    a
}

/// `original` on node 1 replaced by `replacement` on node 0, linked both ways.
fn replaced_pair(f: &mut Fixture, index: u64) -> (Allocation, Allocation) {
    let mut original = f.alloc(index, 1);
    let mut replacement = mock::alloc(&f.job, "web", index, &f.nodes[0]);
    replacement.id = format!("{}-replacement", original.id).into();
    replacement.previous_allocation = original.id.clone();
    replacement.create_index = original.create_index + 10;
    original.next_allocation = replacement.id.clone();
    original.client_status = api::ALLOC_CLIENT_UNKNOWN.into();
    f.push(original.clone());
    f.push(replacement.clone());
    (original, replacement)
}

#[test]
fn unknown_allocs_on_disconnected_nodes_are_replaced_but_not_stopped() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 2);
    f.alloc(0, 0);
    let away = with_status(f.alloc(1, 1), api::ALLOC_CLIENT_UNKNOWN);
    f.push(away.clone());
    set_node_status(&mut f, 1, api::NODE_STATUS_DISCONNECTED);
    let b = f.run();
    assert!(b.stop.is_empty() && b.lost.is_empty(), "{b:?}");
    assert_eq!(b.disconnected.len(), 1);
    assert_eq!(b.disconnected[0].id, away.id);
    assert_eq!(indices(&b.place), [1]);
    assert_eq!(b.place[0].reason, PlacementReason::Disconnected);
    assert_eq!(b.place[0].previous.as_ref().unwrap().id, away.id);
}

#[test]
fn other_allocs_on_disconnected_nodes_are_lost_as_on_down_nodes() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    f.alloc(0, 1);
    set_node_status(&mut f, 1, api::NODE_STATUS_DISCONNECTED);
    let b = f.run();
    assert_eq!(b.lost.len(), 1);
    assert!(b.disconnected.is_empty());
    assert_eq!(b.place[0].reason, PlacementReason::Lost);
}

#[test]
fn a_replaced_unknown_alloc_is_not_replaced_again() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let (original, replacement) = replaced_pair(&mut f, 0);
    set_node_status(&mut f, 1, api::NODE_STATUS_DISCONNECTED);
    let b = f.run();
    assert!(b.place.is_empty() && b.stop.is_empty(), "{b:?}");
    assert_eq!(b.disconnected[0].id, original.id);
    assert!(b.ignore.iter().any(|a| a.id == replacement.id));
}

#[test]
fn a_reconnected_running_original_is_kept_and_its_replacement_stopped() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 2);
    f.alloc(1, 0);
    let (original, replacement) = replaced_pair(&mut f, 0);
    f.push(with_status(original.clone(), api::ALLOC_CLIENT_RUNNING));
    let b = f.run();
    assert!(b.place.is_empty(), "{b:?}");
    assert_eq!(b.stop.len(), 1);
    assert_eq!(b.stop[0].alloc.id, replacement.id);
    assert_eq!(b.stop[0].description, DESC_RECONNECTED);
    assert!(b.ignore.iter().any(|a| a.id == original.id));
}

#[test]
fn a_reconnected_original_that_is_not_running_gives_way_to_its_replacement() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let (original, replacement) = replaced_pair(&mut f, 0);
    f.push(with_status(original.clone(), api::ALLOC_CLIENT_PENDING));
    let b = f.run();
    assert!(b.place.is_empty(), "{b:?}");
    assert_eq!(b.stop.len(), 1);
    assert_eq!(b.stop[0].alloc.id, original.id);
    assert_eq!(b.stop[0].description, DESC_REPLACED_WHILE_DISCONNECTED);
    assert!(b.ignore.iter().any(|a| a.id == replacement.id));
}

#[test]
fn a_reconnected_original_on_an_older_job_version_gives_way() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let (original, mut replacement) = replaced_pair(&mut f, 0);
    let mut newer = (*f.job).clone();
    newer.version = 1;
    let newer = Arc::new(newer);
    replacement.job = Some(newer.clone());
    f.push(replacement);
    f.push(with_status(original.clone(), api::ALLOC_CLIENT_RUNNING));
    let b = f.run_with(Some(&newer), "eval", 0);
    assert_eq!(b.stop.len(), 1, "{b:?}");
    assert_eq!(b.stop[0].alloc.id, original.id);
    assert!(b.place.is_empty());
}

#[test]
fn a_reconnected_original_that_failed_while_away_leaves_its_replacement_alone() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let (original, _) = replaced_pair(&mut f, 0);
    f.push(with_status(original, ALLOC_CLIENT_FAILED));
    let b = f.run();
    assert!(b.place.is_empty() && b.stop.is_empty() && b.reschedule_now.is_empty());
    assert_eq!(b.ignore.len(), 2);
}

#[test]
fn an_unknown_alloc_back_before_its_client_reports_waits_for_the_report() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let (original, _) = replaced_pair(&mut f, 0);
    // Node 1 is ready again; the original is still `unknown`.
    let b = f.run();
    assert!(b.place.is_empty() && b.stop.is_empty(), "{b:?}");
    assert!(b.ignore.iter().any(|a| a.id == original.id));
}

#[test]
fn an_unreplaced_unknown_alloc_that_comes_back_keeps_its_name() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 2);
    f.alloc(0, 0);
    let back = with_status(f.alloc(1, 1), api::ALLOC_CLIENT_UNKNOWN);
    f.push(back);
    let b = f.run();
    assert!(b.place.is_empty() && b.stop.is_empty(), "{b:?}");
    assert_eq!(b.ignore.len(), 2);
}

#[test]
fn a_kept_original_that_fails_later_is_rescheduled() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let (original, mut replacement) = replaced_pair(&mut f, 0);
    replacement.desired_status = api::ALLOC_DESIRED_STOP.into();
    replacement.desired_description = DESC_RECONNECTED.into();
    replacement.client_status = ALLOC_CLIENT_COMPLETE.into();
    f.push(replacement);
    f.push(with_status(original.clone(), ALLOC_CLIENT_FAILED));
    let b = f.run();
    assert_eq!(b.reschedule_now.len(), 1, "{b:?}");
    assert_eq!(b.reschedule_now[0].id, original.id);
    assert_eq!(indices(&b.place), [0]);
}

#[test]
fn reconnecting_never_leaves_more_live_allocs_than_the_count() {
    // Three names, each replaced while node 1 was away; the node comes back with one
    // original running, one pending and one still unknown.
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 3);
    let (a, _) = replaced_pair(&mut f, 0);
    let (b0, _) = replaced_pair(&mut f, 1);
    replaced_pair(&mut f, 2);
    f.push(with_status(a, api::ALLOC_CLIENT_RUNNING));
    f.push(with_status(b0, api::ALLOC_CLIENT_PENDING));
    let b = f.run();
    assert!(b.place.is_empty(), "{b:?}");
    let stopped: BTreeSet<&str> = b.stop.iter().map(|s| s.alloc.id.as_str()).collect();
    let live_after = f
        .allocs
        .iter()
        .filter(|a| !a.terminal() && a.client_status != api::ALLOC_CLIENT_UNKNOWN)
        .filter(|a| !stopped.contains(a.id.as_str()))
        .count();
    assert_eq!(live_after, 3);
    assert_eq!(b.stop.len(), 2);
}

#[test]
fn a_failed_alloc_out_of_attempts_keeps_its_name_until_a_new_version_replaces_it() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 1);
    let mut job = (*f.job).clone();
    job.task_groups[0].reschedule_policy = Some(ReschedulePolicy {
        attempts: 0,
        unlimited: false,
        ..Default::default()
    });
    f.job = Arc::new(job);
    let mut failed = f.alloc(0, 0);
    failed.client_status = ALLOC_CLIENT_FAILED.into();
    f.push(failed);
    let b = f.run();
    assert!(b.place.is_empty(), "same version: not retried");
    // A new version (an auto-revert, say) runs under its name.
    let mut new = (*f.job).clone();
    new.version += 1;
    new.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    let b = f.run_with(Some(&new), "eval", 0);
    assert_eq!(indices(&b.place), [0]);
}

fn running_deployment(job: &Job, progress_deadline: i64) -> api::Deployment {
    let mut d = api::Deployment {
        id: "d1".into(),
        job_id: job.id.clone(),
        job_version: job.version,
        job_create_index: job.create_index,
        status: api::DEPLOYMENT_STATUS_RUNNING.into(),
        ..Default::default()
    };
    d.task_groups.insert(
        "web".into(),
        api::DeploymentState {
            progress_deadline,
            desired_total: 3,
            ..Default::default()
        },
    );
    d
}

fn unhealthy_in(mut a: Allocation, deployment: &str) -> Allocation {
    a.deployment_id = deployment.into();
    a.deployment_status = Some(api::AllocDeploymentStatus {
        healthy: Some(false),
        ..Default::default()
    });
    a
}

impl Fixture {
    fn run_deployment(&self, job: &Job, d: &api::Deployment, now: i64) -> GroupBuckets {
        let health = NodeHealth::map(&self.nodes);
        let r = reconcile(&ReconcileInput {
            job: Some(job),
            allocs: &self.allocs,
            node_health: &health,
            eval_id: "eval",
            now,
            deployment: Some(d),
        });
        r.groups.get("web").cloned().unwrap_or_default()
    }
}

#[test]
fn an_unhealthy_deployment_alloc_is_rescheduled_only_with_a_progress_deadline() {
    let mut f = Fixture::new(JOB_TYPE_SERVICE, 3);
    for i in 0..3 {
        f.alloc(i, 0);
    }
    let mut new = destructive_update(&f, rolling(1));
    new.task_groups[0].reschedule_policy = Some(ReschedulePolicy {
        attempts: 1,
        interval: api::secs(3600),
        ..Default::default()
    });
    let new = Arc::new(new);
    let mut old0 = (*f.allocs[0]).clone();
    old0.desired_status = api::ALLOC_DESIRED_STOP.into();
    old0.desired_description = DESC_UPDATING.into();
    f.push(old0);
    let new0 = unhealthy_in(mock::alloc(&new, "web", 0, &f.nodes[1]), "d1");
    f.push(new0.clone());

    // With a progress deadline: replaced now, and the replacement uses up max_parallel.
    let d = running_deployment(&new, api::secs(600));
    let b = f.run_deployment(&new, &d, api::secs(100));
    assert_eq!(indices(&b.place), [0]);
    assert_eq!(b.place[0].reason, PlacementReason::Reschedule);
    assert_eq!(b.place[0].previous.as_ref().unwrap().id, new0.id);
    assert_eq!(b.reschedule_now.len(), 1);
    assert_eq!(
        b.awaiting_update.len(),
        2,
        "max_parallel still holds the rest"
    );
    assert!(!b.ignore.iter().any(|a| a.id == new0.id));

    // Without one the watcher fails the deployment; the scheduler leaves it alone.
    let b = f.run_deployment(&new, &running_deployment(&new, 0), api::secs(100));
    assert!(b.place.is_empty() && b.reschedule_now.is_empty());

    // A halted deployment, or one of another version, replaces nothing either.
    let mut failed = d.clone();
    failed.status = api::DEPLOYMENT_STATUS_FAILED.into();
    let b = f.run_deployment(&new, &failed, api::secs(100));
    assert!(b.place.is_empty());
    let mut other = d.clone();
    other.id = "d0".into();
    let b = f.run_deployment(&new, &other, api::secs(100));
    assert!(b.place.is_empty());

    // Its replacement, unhealthy too, is out of attempts (1): it stays, and the progress
    // deadline decides.
    let mut stopped0 = new0.clone();
    stopped0.desired_status = api::ALLOC_DESIRED_STOP.into();
    stopped0.modify_time = api::secs(100);
    f.push(stopped0);
    let mut next0 = unhealthy_in(mock::alloc(&new, "web", 0, &f.nodes[0]), "d1");
    next0.previous_allocation = new0.id.clone();
    f.push(next0);
    let b = f.run_deployment(&new, &d, api::secs(150));
    assert!(b.place.is_empty() && b.reschedule_now.is_empty());
}
