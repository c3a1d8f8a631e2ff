//! End-to-end behaviour of `schedule`: a MemState, an evaluation, a seed, and the plan.

use api::{
    Affinity, Allocation, Constraint, Job, NetworkResource, Node, Plan, Port, Spread, SpreadTarget,
    ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, ALLOC_CLIENT_LOST, JOB_TYPE_BATCH,
    JOB_TYPE_SERVICE, JOB_TYPE_SYSBATCH, JOB_TYPE_SYSTEM,
};
use scheduler::mock::{self, MemState};
use scheduler::{schedule, Algorithm, SchedulerConfig, SchedulerError, State};
use std::sync::Arc;

fn nodes(names: &[&str]) -> Vec<Node> {
    names.iter().map(|n| mock::node(n)).collect()
}

fn with_count(mut job: Job, count: i64) -> Job {
    job.task_groups[0].count = count;
    job
}

fn run(state: &MemState, job: &Job) -> Plan {
    run_with(state, job, Algorithm::BinPack, 7)
}

fn run_with(state: &MemState, job: &Job, algorithm: Algorithm, seed: u64) -> Plan {
    schedule(
        state,
        &mock::eval(job),
        &SchedulerConfig { algorithm },
        seed,
    )
    .expect("schedule")
}

fn placed(plan: &Plan) -> Vec<&Allocation> {
    plan.node_allocation.values().flatten().collect()
}

fn stopped(plan: &Plan) -> Vec<&Allocation> {
    plan.node_update.values().flatten().collect()
}

fn placed_names(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = placed(plan).iter().map(|a| a.name.to_string()).collect();
    names.sort();
    names
}

#[test]
fn service_places_every_index_with_complete_allocations() {
    let job = with_count(mock::job("web", JOB_TYPE_SERVICE), 3);
    let state = MemState::new()
        .with_nodes(nodes(&["a", "b", "c"]))
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    assert_eq!(
        placed_names(&plan),
        ["web.web[0]", "web.web[1]", "web.web[2]"]
    );
    assert_eq!(plan.snapshot_index, state.index());
    assert_eq!(plan.eval_id, "eval-web");
    assert_eq!(plan.queued_allocations["web"], 0);
    assert!(plan.failed_tg_allocs.is_empty() && plan.create_evals.is_empty());
    for a in placed(&plan) {
        assert_eq!(a.id.len(), 36, "a UUID");
        assert_eq!(a.namespace, "default");
        assert_eq!(a.eval_id, "eval-web");
        assert_eq!(a.job_id, "web");
        assert_eq!(a.job.as_ref().unwrap().version, job.version);
        assert_eq!(a.task_group, "web");
        assert_eq!(a.node_name, a.node_id);
        assert_eq!(a.desired_status, "run");
        assert_eq!(a.client_status, "pending");
        let r = a.resources.as_ref().unwrap();
        assert_eq!((r.cpu, r.memory_mb, r.disk_mb), (500, 256, 300));
        assert_eq!(a.task_resources.get("server").unwrap().cpu, 500);
    }
}

#[test]
fn same_seed_gives_the_same_plan_and_other_seeds_other_ids() {
    let job = with_count(mock::job("web", JOB_TYPE_SERVICE), 5);
    let state = MemState::new()
        .with_nodes(nodes(&["a", "b", "c", "d", "e", "f"]))
        .with_jobs([job.clone()]);
    let one = serde_json::to_string(&run_with(&state, &job, Algorithm::BinPack, 42)).unwrap();
    let two = serde_json::to_string(&run_with(&state, &job, Algorithm::BinPack, 42)).unwrap();
    assert_eq!(one, two);
    let other = serde_json::to_string(&run_with(&state, &job, Algorithm::BinPack, 43)).unwrap();
    assert_ne!(one, other);
}

#[test]
fn a_second_run_after_applying_the_plan_changes_nothing() {
    let job = with_count(mock::job("web", JOB_TYPE_SERVICE), 4);
    let mut state = MemState::new()
        .with_nodes(nodes(&["a", "b", "c"]))
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    state.apply_plan(&plan);
    let again = run(&state, &job);
    assert!(again.is_no_op(), "{again:?}");
}

#[test]
fn scale_down_stops_the_highest_indices() {
    let mut job = with_count(mock::job("web", JOB_TYPE_SERVICE), 4);
    let mut state = MemState::new()
        .with_nodes(nodes(&["a", "b"]))
        .with_jobs([job.clone()]);
    state.apply_plan(&run(&state, &job));
    job.task_groups[0].count = 1;
    job.version += 1;
    state.upsert_job(job.clone());
    let plan = run(&state, &job);
    let mut names: Vec<_> = stopped(&plan).iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["web.web[1]", "web.web[2]", "web.web[3]"]);
    assert!(stopped(&plan).iter().all(|a| a.desired_status == "stop"
        && a.desired_description == "alloc not needed due to job update"));
    // The remaining one takes the new version in place.
    assert_eq!(placed_names(&plan), ["web.web[0]"]);
}

#[test]
fn allocs_on_a_down_node_are_lost_and_replaced_elsewhere() {
    let job = Arc::new(with_count(mock::job("web", JOB_TYPE_SERVICE), 2));
    let all = nodes(&["a", "b"]);
    let mut down = all[1].clone();
    down.status = "down".into();
    let state = MemState::new()
        .with_nodes([all[0].clone(), down.clone()])
        .with_jobs([(*job).clone()])
        .with_allocs([
            mock::alloc(&job, "web", 0, &all[0]),
            mock::alloc(&job, "web", 1, &down),
        ]);
    let plan = run(&state, &job);
    let lost = stopped(&plan);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].client_status, ALLOC_CLIENT_LOST);
    assert_eq!(
        lost[0].desired_description,
        "alloc is lost since its node is down"
    );
    let new = placed(&plan);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].name, "web.web[1]");
    assert_eq!(new[0].node_id, "a");
    assert_eq!(new[0].previous_allocation, lost[0].id);
}

#[test]
fn completed_batch_allocs_are_not_replaced() {
    let job = Arc::new(with_count(mock::job("report", JOB_TYPE_BATCH), 2));
    let n = mock::node("a");
    let mut done = mock::alloc(&job, "web", 0, &n);
    done.client_status = ALLOC_CLIENT_COMPLETE.into();
    let state = MemState::new()
        .with_nodes([n])
        .with_jobs([(*job).clone()])
        .with_allocs([done]);
    assert_eq!(placed_names(&run(&state, &job)), ["report.web[1]"]);
}

#[test]
fn failed_alloc_is_rescheduled_away_from_its_node() {
    let job = Arc::new(mock::job("web", JOB_TYPE_SERVICE));
    let all = nodes(&["a", "b"]);
    let mut failed = mock::alloc(&job, "web", 0, &all[0]);
    failed.client_status = ALLOC_CLIENT_FAILED.into();
    let state = MemState::new()
        .with_nodes(all)
        .with_jobs([(*job).clone()])
        .with_allocs([failed.clone()]);
    for seed in 0..10 {
        let plan = run_with(&state, &job, Algorithm::BinPack, seed);
        let new = placed(&plan);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].node_id, "b", "seed {seed}");
        assert_eq!(new[0].previous_allocation, failed.id);
        let old = stopped(&plan);
        assert_eq!(old[0].id, failed.id);
        assert_eq!(
            old[0].desired_description,
            "alloc was rescheduled because it failed"
        );
    }
}

#[test]
fn failed_alloc_with_a_delay_gets_a_follow_up_evaluation() {
    let job = Arc::new(mock::job("web", JOB_TYPE_SERVICE)); // 30s exponential
    let n = mock::node("a");
    let mut failed = mock::alloc(&job, "web", 0, &n);
    failed.client_status = ALLOC_CLIENT_FAILED.into();
    failed.modify_time = api::secs(100);
    let state = MemState::new()
        .with_nodes([n])
        .with_jobs([(*job).clone()])
        .with_allocs([failed.clone()]);
    let mut eval = mock::eval(&job);
    eval.modify_time = api::secs(105);
    let plan = schedule(&state, &eval, &SchedulerConfig::default(), 1).unwrap();
    assert_eq!(plan.create_evals.len(), 1);
    let follow_up = &plan.create_evals[0];
    assert_eq!(follow_up.status, "pending");
    assert_eq!(follow_up.wait_until, api::secs(130));
    assert_eq!(follow_up.previous_eval, eval.id);
    let annotated = placed(&plan);
    assert_eq!(annotated.len(), 1);
    assert_eq!(annotated[0].id, failed.id);
    assert_eq!(annotated[0].followup_eval_id, follow_up.id);
}

#[test]
fn count_change_updates_in_place_and_task_change_replaces() {
    let mut job = with_count(mock::job("web", JOB_TYPE_SERVICE), 2);
    let mut state = MemState::new()
        .with_nodes(nodes(&["a", "b"]))
        .with_jobs([job.clone()]);
    state.apply_plan(&run(&state, &job));
    let original: Vec<String> = state.allocs.keys().cloned().collect();

    job.version = 1;
    job.meta.insert("owner".into(), "ops".into());
    state.upsert_job(job.clone());
    let plan = run(&state, &job);
    assert!(stopped(&plan).is_empty());
    let mut ids: Vec<String> = placed(&plan).iter().map(|a| a.id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, original, "same allocations, new job version");
    assert!(placed(&plan)
        .iter()
        .all(|a| a.job.as_ref().unwrap().version == 1));
    state.apply_plan(&plan);

    job.version = 2;
    job.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    state.upsert_job(job.clone());
    let plan = run(&state, &job);
    assert_eq!(stopped(&plan).len(), 2);
    assert!(stopped(&plan)
        .iter()
        .all(|a| a.desired_description == "alloc is being updated due to job update"));
    assert_eq!(placed(&plan).len(), 2);
    assert!(placed(&plan)
        .iter()
        .all(|a| !original.contains(&a.id.to_string())
            && original.contains(&a.previous_allocation.to_string())));
}

#[test]
fn no_room_reports_exhaustion_and_creates_a_blocked_eval() {
    let mut job = with_count(mock::job("big", JOB_TYPE_SERVICE), 3);
    job.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = 5000;
    let state = MemState::new()
        .with_nodes(nodes(&["a", "b"]))
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    assert_eq!(plan.placements(), 2);
    let metric = &plan.failed_tg_allocs["web"];
    assert_eq!(metric.nodes_evaluated, 2);
    assert_eq!(metric.nodes_exhausted, 2);
    assert_eq!(metric.dimension_exhausted["memory"], 2);
    assert_eq!(plan.queued_allocations["web"], 1);
    let blocked = &plan.create_evals[0];
    assert_eq!(blocked.status, "blocked");
    assert_eq!(blocked.triggered_by, "queued-allocs");
    assert_eq!(blocked.job_id, "big");
    assert_eq!(blocked.eval_type, JOB_TYPE_SERVICE);
    assert_eq!(blocked.priority, job.priority);
    assert_eq!(blocked.previous_eval, "eval-big");
    assert_eq!(blocked.id.len(), 36);
}

#[test]
fn failures_after_the_first_are_coalesced() {
    let mut job = with_count(mock::job("big", JOB_TYPE_SERVICE), 4);
    job.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = 9000;
    let state = MemState::new()
        .with_nodes(nodes(&["a"]))
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    assert_eq!(plan.failed_tg_allocs["web"].coalesced_failures, 3);
    assert_eq!(plan.queued_allocations["web"], 4);
}

#[test]
fn constraint_failures_are_counted_per_constraint() {
    let mut job = mock::job("win", JOB_TYPE_SERVICE);
    job.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "windows".into(),
        operand: "=".into(),
    });
    let state = MemState::new()
        .with_nodes(nodes(&["a", "b", "c"]))
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    let metric = &plan.failed_tg_allocs["web"];
    assert_eq!(metric.nodes_filtered, 3);
    assert_eq!(
        metric.constraint_filtered["${attr.kernel.name} = windows"],
        3
    );
}

#[test]
fn datacenter_globs_and_driver_health_limit_placement() {
    let mut job = with_count(mock::job("web", JOB_TYPE_SERVICE), 3);
    job.datacenters = vec!["eu-*".into()];
    // Two fit on a node; the third has nowhere to go.
    job.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = 3500;
    let mut all = nodes(&["a", "b", "c"]);
    all[0].datacenter = "eu-west".into();
    all[1].datacenter = "eu-east".into();
    all[1].drivers.get_mut("exec").unwrap().healthy = false;
    let state = MemState::new().with_nodes(all).with_jobs([job.clone()]);
    let plan = run(&state, &job);
    assert!(placed(&plan).iter().all(|a| a.node_id == "a"));
    assert_eq!(plan.placements(), 2);
    let metric = &plan.failed_tg_allocs["web"];
    assert_eq!(metric.nodes_evaluated, 2, "node c is outside eu-*");
    assert_eq!(metric.constraint_filtered["missing drivers"], 1);
    assert_eq!(metric.nodes_exhausted, 1);
}

#[test]
fn distinct_hosts_puts_each_alloc_on_its_own_node() {
    let mut job = with_count(mock::job("web", JOB_TYPE_SERVICE), 3);
    job.constraints.push(Constraint {
        operand: "distinct_hosts".into(),
        r_target: "true".into(),
        ..Default::default()
    });
    let state = MemState::new()
        .with_nodes(nodes(&["a", "b"]))
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    let mut used: Vec<_> = placed(&plan).iter().map(|a| a.node_id.clone()).collect();
    used.sort();
    assert_eq!(used, ["a", "b"]);
    assert_eq!(
        plan.failed_tg_allocs["web"].constraint_filtered["distinct_hosts"],
        2
    );
}

#[test]
fn static_ports_do_not_collide() {
    let mut job = with_count(mock::job("web", JOB_TYPE_SERVICE), 2);
    job.task_groups[0].networks.push(NetworkResource {
        reserved_ports: vec![Port {
            label: "http".into(),
            value: 8080,
            ..Default::default()
        }],
        ..Default::default()
    });
    let state = MemState::new()
        .with_nodes(nodes(&["a"]))
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    assert_eq!(plan.placements(), 1);
    assert_eq!(
        plan.failed_tg_allocs["web"].dimension_exhausted["network: reserved port collision"],
        1
    );
}

#[test]
fn binpack_fills_one_node_and_spread_uses_them_all() {
    let job = with_count(mock::job("web", JOB_TYPE_SERVICE), 4);
    let state = MemState::new()
        .with_nodes(nodes(&["a", "b", "c", "d"]))
        .with_jobs([job.clone()]);
    let distinct = |plan: &Plan| {
        let mut n: Vec<_> = placed(plan).iter().map(|a| a.node_id.clone()).collect();
        n.sort();
        n.dedup();
        n.len()
    };
    // Job anti-affinity still nudges bin-packing apart a little; spread must use all four.
    assert_eq!(distinct(&run_with(&state, &job, Algorithm::Spread, 3)), 4);
    let packed = distinct(&run_with(&state, &job, Algorithm::BinPack, 3));
    assert!(packed <= 4);
}

#[test]
fn affinity_steers_placements_to_matching_nodes() {
    // One placement: with more, job anti-affinity (as strong as a full-weight affinity)
    // pushes the later ones off the matching node, as in Nomad.
    let mut job = mock::job("web", JOB_TYPE_SERVICE);
    job.affinities.push(Affinity {
        l_target: "${node.class}".into(),
        r_target: "fast".into(),
        operand: "=".into(),
        weight: 100,
    });
    let mut all = nodes(&["a", "b", "c", "d", "e", "f", "g", "h"]);
    all[5].node_class = "fast".into();
    let state = MemState::new().with_nodes(all).with_jobs([job.clone()]);
    for seed in 0..5 {
        let plan = run_with(&state, &job, Algorithm::BinPack, seed);
        assert!(
            placed(&plan).iter().all(|a| a.node_id == "f"),
            "seed {seed}"
        );
    }
}

#[test]
fn spread_targets_split_allocations_by_percentage() {
    let mut job = with_count(mock::job("web", JOB_TYPE_SERVICE), 10);
    job.datacenters = vec!["*".into()];
    job.spreads.push(Spread {
        attribute: "${node.datacenter}".into(),
        weight: 100,
        spread_target: vec![
            SpreadTarget {
                value: "dc1".into(),
                percent: 70,
            },
            SpreadTarget {
                value: "dc2".into(),
                percent: 30,
            },
        ],
        max_skew: 0,
    });
    let mut all = nodes(&["a", "b", "c", "d"]);
    all[2].datacenter = "dc2".into();
    all[3].datacenter = "dc2".into();
    let state = MemState::new().with_nodes(all).with_jobs([job.clone()]);
    let plan = run(&state, &job);
    let in_dc2 = placed(&plan)
        .iter()
        .filter(|a| a.node_id == "c" || a.node_id == "d")
        .count();
    assert_eq!(in_dc2, 3);
}

#[test]
fn stopped_and_purged_jobs_stop_their_allocs() {
    let mut job = with_count(mock::job("web", JOB_TYPE_SERVICE), 2);
    let mut state = MemState::new()
        .with_nodes(nodes(&["a"]))
        .with_jobs([job.clone()]);
    state.apply_plan(&run(&state, &job));
    job.stop = true;
    state.upsert_job(job.clone());
    let plan = run(&state, &job);
    assert_eq!(plan.stops(), 2);
    assert!(stopped(&plan)
        .iter()
        .all(|a| a.desired_description == "alloc not needed as job is stopped"));
    assert!(plan.create_evals.is_empty());

    state.jobs.clear();
    let plan = run(&state, &job);
    assert_eq!(plan.stops(), 2);
}

#[test]
fn evaluations_without_a_job_or_with_an_unknown_type_are_errors() {
    let state = MemState::new();
    let mut eval = mock::eval(&mock::job("x", JOB_TYPE_SERVICE));
    eval.job_id.clear();
    assert!(matches!(
        schedule(&state, &eval, &SchedulerConfig::default(), 0),
        Err(SchedulerError::MissingJobId { .. })
    ));
    let mut odd = mock::job("x", JOB_TYPE_SERVICE);
    odd.job_type = "cron".into();
    let state = MemState::new().with_jobs([odd.clone()]);
    let err = schedule(&state, &mock::eval(&odd), &SchedulerConfig::default(), 0).unwrap_err();
    assert!(err.to_string().contains("\"cron\""));
}

#[test]
fn system_job_runs_on_every_feasible_node() {
    let mut job = mock::job("agent", JOB_TYPE_SYSTEM);
    job.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    });
    let mut all = nodes(&["a", "b", "c", "d", "e"]);
    all[1]
        .attributes
        .insert("kernel.name".into(), "windows".into()); // filtered, silently
    all[2].scheduling_eligibility = "ineligible".into();
    all[3].node_resources.memory.memory_mb = 100; // feasible but full
    let state = MemState::new().with_nodes(all).with_jobs([job.clone()]);
    let plan = run(&state, &job);
    let mut on: Vec<_> = placed(&plan).iter().map(|a| a.node_id.clone()).collect();
    on.sort();
    assert_eq!(on, ["a", "e"]);
    assert!(placed(&plan).iter().all(|a| a.name == "agent.web[0]"));
    let metric = &plan.failed_tg_allocs["web"];
    assert_eq!(metric.nodes_exhausted, 1);
    assert_eq!(metric.dimension_exhausted["memory"], 1);
    assert!(metric.constraint_filtered.is_empty());
    assert_eq!(plan.queued_allocations["web"], 1);
    assert_eq!(plan.create_evals[0].status, "blocked");
}

#[test]
fn system_job_follows_new_nodes_and_lost_ones() {
    let job = mock::job("agent", JOB_TYPE_SYSTEM);
    let mut state = MemState::new()
        .with_nodes(nodes(&["a"]))
        .with_jobs([job.clone()]);
    state.apply_plan(&run(&state, &job));
    state.upsert_node(mock::node("b"));
    let plan = run(&state, &job);
    assert_eq!(placed(&plan).len(), 1);
    assert_eq!(placed(&plan)[0].node_id, "b");
    state.apply_plan(&plan);

    let mut down = (*state.node("a").unwrap()).clone();
    down.status = "down".into();
    state.upsert_node(down);
    let plan = run(&state, &job);
    assert!(placed(&plan).is_empty());
    assert_eq!(stopped(&plan).len(), 1);
    assert_eq!(stopped(&plan)[0].client_status, ALLOC_CLIENT_LOST);
}

#[test]
fn sysbatch_does_not_rerun_completed_allocs() {
    let job = mock::job("once", JOB_TYPE_SYSBATCH);
    let mut state = MemState::new()
        .with_nodes(nodes(&["a", "b"]))
        .with_jobs([job.clone()]);
    state.apply_plan(&run(&state, &job));
    let ids: Vec<String> = state.allocs.keys().cloned().collect();
    for id in &ids {
        state.set_client_status(id, ALLOC_CLIENT_COMPLETE);
    }
    assert!(run(&state, &job).is_no_op());
}

#[test]
fn system_destructive_update_replaces_on_the_same_node() {
    let mut job = mock::job("agent", JOB_TYPE_SYSTEM);
    let mut state = MemState::new()
        .with_nodes(nodes(&["a"]))
        .with_jobs([job.clone()]);
    state.apply_plan(&run(&state, &job));
    job.version = 1;
    // Needs most of the node: only fits because the old alloc's room is reused.
    job.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = 7000;
    state.upsert_job(job.clone());
    let plan = run(&state, &job);
    assert_eq!(placed(&plan).len(), 1);
    assert_eq!(stopped(&plan).len(), 1);
    assert_eq!(placed(&plan)[0].previous_allocation, stopped(&plan)[0].id);
}
