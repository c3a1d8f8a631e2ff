//! Hard placement limits and failure explanations, end to end through `schedule`.

use api::{Constraint, Job, Node, Plan, Spread, JOB_TYPE_SERVICE};
use scheduler::mock::{self, MemState};
use scheduler::{explain, schedule, Algorithm, SchedulerConfig};
use std::collections::BTreeMap;

fn rack_nodes(racks: &[(&str, &str)]) -> Vec<Node> {
    racks
        .iter()
        .map(|(name, rack)| {
            let mut n = mock::node(name);
            n.meta.insert("rack".into(), rack.to_string());
            n
        })
        .collect()
}

fn run(state: &MemState, job: &Job) -> Plan {
    schedule(state, &mock::eval(job), &SchedulerConfig::default(), 11).expect("schedule")
}

fn per_rack(plan: &Plan, nodes: &[Node]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in plan.node_allocation.values().flatten() {
        let node = nodes.iter().find(|n| n.id == a.node_id).unwrap();
        *out.entry(node.meta["rack"].clone()).or_default() += 1;
    }
    out
}

#[test]
fn max_skew_fails_placement_instead_of_stacking() {
    // r1 has two big nodes, r2 one small node that fits a single alloc.
    let mut nodes = rack_nodes(&[("a", "r1"), ("b", "r1"), ("c", "r2")]);
    nodes[2].node_resources.memory.memory_mb = 300;
    let mut job = mock::job("web", JOB_TYPE_SERVICE);
    job.task_groups[0].count = 5;
    job.task_groups[0].spreads.push(Spread {
        attribute: "${meta.rack}".into(),
        weight: 100,
        max_skew: 1,
        ..Default::default()
    });
    let state = MemState::new()
        .with_nodes(nodes.clone())
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    // r2 holds one; r1 may hold at most two; the other two fail with the reason.
    assert_eq!(
        per_rack(&plan, &nodes),
        BTreeMap::from([("r1".into(), 2), ("r2".into(), 1)])
    );
    let metric = &plan.failed_tg_allocs["web"];
    assert_eq!(metric.coalesced_failures, 1);
    let sentences = explain(metric);
    assert!(
        sentences.contains(&"2 nodes filtered by spread ${meta.rack} (max skew 1)".to_string()),
        "{sentences:?}"
    );
    assert!(
        sentences.contains(&"1 node exhausted memory".to_string()),
        "{sentences:?}"
    );
}

#[test]
fn distinct_property_allows_rtarget_allocs_per_value() {
    let nodes = rack_nodes(&[("a", "r1"), ("b", "r1"), ("c", "r2"), ("d", "r3")]);
    let mut job = mock::job("web", JOB_TYPE_SERVICE);
    job.task_groups[0].count = 5;
    job.constraints.push(Constraint {
        l_target: "${meta.rack}".into(),
        r_target: "2".into(),
        operand: "distinct_property".into(),
    });
    let state = MemState::new()
        .with_nodes(nodes.clone())
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    let counts = per_rack(&plan, &nodes);
    assert!(counts.values().all(|&n| n <= 2), "{counts:?}");
    assert_eq!(plan.placements(), 5);
    // Default limit 1: one per rack, the fourth placement fails.
    job.constraints[0].r_target = String::new();
    job.task_groups[0].count = 4;
    let state = MemState::new()
        .with_nodes(nodes.clone())
        .with_jobs([job.clone()]);
    let plan = run(&state, &job);
    assert_eq!(plan.placements(), 3);
    let sentences = explain(&plan.failed_tg_allocs["web"]);
    assert_eq!(
        sentences[0], "4 nodes filtered by distinct_property ${meta.rack} (limit 1)",
        "{sentences:?}"
    );
}

#[test]
fn failure_metrics_count_excluded_nodes_and_constraints() {
    let mut nodes = rack_nodes(&[("a", "r1"), ("b", "r1"), ("c", "r1"), ("d", "r1")]);
    nodes[0].drain = true;
    nodes[1]
        .attributes
        .insert("kernel.name".into(), "windows".into());
    nodes[2]
        .attributes
        .insert("kernel.name".into(), "windows".into());
    nodes[3].node_resources.memory.memory_mb = 100;
    let mut job = mock::job("web", JOB_TYPE_SERVICE);
    job.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    });
    let state = MemState::new().with_nodes(nodes).with_jobs([job.clone()]);
    let plan = run(&state, &job);
    let metric = &plan.failed_tg_allocs["web"];
    assert_eq!(metric.nodes_excluded["draining"], 1);
    assert_eq!(
        explain(metric)[..3],
        [
            "2 nodes filtered by constraint ${attr.kernel.name} = linux",
            "1 node exhausted memory",
            "1 node is draining",
        ]
    );
}

#[test]
fn spread_algorithm_fills_nodes_level_by_level() {
    let nodes: Vec<Node> = (0..37).map(|i| mock::node(&format!("n{i:02}"))).collect();
    for count in [37, 74, 100] {
        let mut job = mock::job("web", JOB_TYPE_SERVICE);
        job.task_groups[0].count = count;
        job.task_groups[0].tasks[0].resources.as_mut().unwrap().cpu = 10;
        job.task_groups[0].tasks[0]
            .resources
            .as_mut()
            .unwrap()
            .memory_mb = 10;
        job.task_groups[0].ephemeral_disk = None;
        let state = MemState::new()
            .with_nodes(nodes.clone())
            .with_jobs([job.clone()]);
        let plan = schedule(
            &state,
            &mock::eval(&job),
            &SchedulerConfig {
                algorithm: Algorithm::Spread,
            },
            5,
        )
        .unwrap();
        let per_node: Vec<usize> = nodes
            .iter()
            .map(|n| plan.node_allocation.get(&n.id).map_or(0, Vec::len))
            .collect();
        let (min, max) = (
            per_node.iter().min().unwrap(),
            per_node.iter().max().unwrap(),
        );
        assert!(max - min <= 1, "count {count}: {per_node:?}");
    }
}
