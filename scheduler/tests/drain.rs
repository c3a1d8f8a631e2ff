//! Draining nodes and paced updates, end to end through `schedule`: what lands in the plan.

use api::{Job, Node, Plan, JOB_TYPE_SERVICE, JOB_TYPE_SYSTEM};
use scheduler::mock::{self, MemState};
use scheduler::{schedule, SchedulerConfig};
use std::sync::Arc;

fn draining(name: &str) -> Node {
    let mut n = mock::node(name);
    n.drain = true;
    n.scheduling_eligibility = api::NODE_INELIGIBLE.into();
    n.drain_strategy = Some(api::DrainStrategy::default());
    n
}

fn flagged(job: &Arc<Job>, index: u64, node: &Node) -> api::Allocation {
    let mut a = mock::alloc(job, "web", index, node);
    a.desired_transition.migrate = Some(true);
    a
}

fn run(state: &MemState, job: &Job, now: i64) -> Plan {
    let mut eval = mock::eval(job);
    eval.modify_time = now;
    schedule(state, &eval, &SchedulerConfig::default(), 3).expect("schedule")
}

#[test]
fn drain_migrates_flagged_allocs_in_one_plan() {
    let mut job = mock::job("web", JOB_TYPE_SERVICE);
    job.task_groups[0].count = 2;
    let job = Arc::new(job);
    let (ready, drained) = (mock::node("a"), draining("b"));
    let moving = flagged(&job, 0, &drained);
    let staying = mock::alloc(&job, "web", 1, &drained);
    let state = MemState::new()
        .with_nodes([ready, drained])
        .with_jobs([(*job).clone()])
        .with_allocs([moving.clone(), staying]);
    let plan = run(&state, &job, 0);
    let placed: Vec<_> = plan.node_allocation.values().flatten().collect();
    let stopped: Vec<_> = plan.node_update.values().flatten().collect();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].node_id, "a");
    assert_eq!(placed[0].name, "web.web[0]");
    assert_eq!(placed[0].previous_allocation, moving.id);
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].id, moving.id);
    assert_eq!(stopped[0].desired_status, api::ALLOC_DESIRED_STOP);
    assert_eq!(stopped[0].desired_description, "alloc is being migrated");
}

#[test]
fn migration_without_room_keeps_the_alloc_until_the_drain_deadline() {
    let job = Arc::new(mock::job("web", JOB_TYPE_SERVICE));
    let mut drained = draining("b");
    let moving = flagged(&job, 0, &drained);
    let state = MemState::new()
        .with_nodes([drained.clone()])
        .with_jobs([(*job).clone()])
        .with_allocs([moving.clone()]);
    let plan = run(&state, &job, api::secs(100));
    assert_eq!(plan.stops(), 0, "no room elsewhere: keep it running");
    assert!(plan.failed_tg_allocs.contains_key("web"));
    assert_eq!(plan.create_evals[0].status, api::EVAL_STATUS_BLOCKED);
    // Past the deadline it is stopped regardless.
    drained.drain_strategy = Some(api::DrainStrategy {
        deadline: api::secs(60),
        force_deadline: api::secs(90),
        ..Default::default()
    });
    let state = MemState::new()
        .with_nodes([drained])
        .with_jobs([(*job).clone()])
        .with_allocs([moving]);
    let plan = run(&state, &job, api::secs(100));
    assert_eq!(plan.stops(), 1);
}

#[test]
fn system_allocs_on_a_draining_node_stop_only_when_flagged() {
    let job = Arc::new(mock::job("agent", JOB_TYPE_SYSTEM));
    let (a, b) = (draining("a"), draining("b"));
    let state = MemState::new()
        .with_nodes([a.clone(), b.clone()])
        .with_jobs([(*job).clone()])
        .with_allocs([flagged(&job, 0, &a), mock::alloc(&job, "web", 0, &b)]);
    let plan = run(&state, &job, 0);
    assert_eq!(plan.placements(), 0);
    let stopped: Vec<_> = plan.node_update.values().flatten().collect();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].node_id, "a");
    assert_eq!(stopped[0].desired_description, "alloc is being migrated");
}

#[test]
fn system_update_leaves_draining_nodes_on_the_old_version() {
    let job = mock::job("agent", JOB_TYPE_SYSTEM);
    let old = Arc::new(job.clone());
    let mut new = job;
    new.version = 1;
    new.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    let drained = draining("a");
    let state = MemState::new()
        .with_nodes([drained.clone()])
        .with_jobs([new.clone()])
        .with_allocs([mock::alloc(&old, "web", 0, &drained)]);
    assert!(run(&state, &new, 0).is_no_op());
}

#[test]
fn paced_update_carries_a_rolling_update_evaluation() {
    let mut job = mock::job("web", JOB_TYPE_SERVICE);
    job.task_groups[0].count = 4;
    let old = Arc::new(job.clone());
    let mut new = job;
    new.version = 1;
    new.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    new.task_groups[0].update = Some(api::UpdateStrategy {
        max_parallel: 1,
        min_healthy_time: api::secs(10),
        ..Default::default()
    });
    let nodes = [mock::node("a"), mock::node("b")];
    let state = MemState::new()
        .with_nodes(nodes.clone())
        .with_jobs([new.clone()])
        .with_allocs((0..4).map(|i| mock::alloc(&old, "web", i, &nodes[(i % 2) as usize])));
    let plan = run(&state, &new, api::secs(1000));
    assert_eq!(plan.placements(), 1);
    assert_eq!(plan.stops(), 1);
    let follow: Vec<_> = plan
        .create_evals
        .iter()
        .filter(|e| e.triggered_by == "rolling-update")
        .collect();
    assert_eq!(follow.len(), 1);
    assert_eq!(follow[0].status, api::EVAL_STATUS_PENDING);
    assert_eq!(follow[0].wait_until, api::secs(1010));
}
