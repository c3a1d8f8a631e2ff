//! Host ports through `schedule`: every placement carries `AllocatedResources` whose
//! dynamic ports hold free host ports of the node, chosen from the seed.

use api::{
    AllocatedResources, AllocatedSharedResources, Allocation, Job, NetworkResource, Plan, Port,
    JOB_TYPE_SERVICE, JOB_TYPE_SYSTEM,
};
use scheduler::mock::{self, MemState};
use scheduler::ports::DYNAMIC_PORTS;
use scheduler::{schedule, SchedulerConfig};
use std::collections::BTreeSet;
use std::sync::Arc;

fn job_with_dynamic_port(id: &str, job_type: &str, count: i64) -> Job {
    let mut job = mock::job(id, job_type);
    job.task_groups[0].count = count;
    job.task_groups[0].networks = vec![NetworkResource {
        dynamic_ports: vec![Port {
            label: "http".into(),
            ..Default::default()
        }],
        ..Default::default()
    }];
    job
}

fn run(state: &MemState, job: &Job, seed: u64) -> Plan {
    schedule(state, &mock::eval(job), &SchedulerConfig::default(), seed).expect("schedule")
}

fn placed(plan: &Plan) -> Vec<&Allocation> {
    plan.node_allocation.values().flatten().collect()
}

fn http_port(alloc: &Allocation) -> i64 {
    alloc
        .allocated_resources
        .as_ref()
        .and_then(|r| r.port("http"))
        .map(|p| p.value)
        .expect("an http port")
}

#[test]
fn placements_on_one_node_get_distinct_dynamic_ports_reproducible_from_the_seed() {
    let job = job_with_dynamic_port("web", JOB_TYPE_SERVICE, 6);
    let state = MemState::new()
        .with_nodes([mock::node("n1")])
        .with_jobs([job.clone()]);
    let ports = |seed| {
        let plan = run(&state, &job, seed);
        let mut by_name: Vec<(String, i64)> = placed(&plan)
            .iter()
            .map(|a| (a.name.to_string(), http_port(a)))
            .collect();
        by_name.sort();
        by_name
    };
    let first = ports(3);
    assert_eq!(first.len(), 6);
    let distinct: BTreeSet<i64> = first.iter().map(|(_, p)| *p).collect();
    assert_eq!(distinct.len(), 6, "{first:?}");
    assert!(distinct.iter().all(|p| DYNAMIC_PORTS.contains(p)));
    assert_eq!(ports(3), first, "same seed, same ports");
    assert_ne!(ports(4), first, "another seed draws other ports");

    let plan = run(&state, &job, 3);
    let a = placed(&plan)[0];
    let shared = &a.allocated_resources.as_ref().unwrap().shared;
    assert_eq!(shared.networks[0].ip, "127.0.0.1");
    assert_eq!(shared.networks[0].dynamic_ports[0].value, http_port(a));
    assert_eq!(shared.ports[0].host_ip, "127.0.0.1");
    // The legacy Resources.Networks carries the assigned value too, as in Nomad.
    let legacy = &a.resources.as_ref().unwrap().networks[0];
    assert_eq!(legacy.dynamic_ports[0].value, http_port(a));
}

/// An allocation of another job that holds every dynamic port but `free`.
fn hog(node: &api::Node, free: &[i64]) -> Allocation {
    let other = Arc::new(mock::job("hog", JOB_TYPE_SERVICE));
    let mut alloc = mock::alloc(&other, "web", 0, node);
    alloc.allocated_resources = Some(AllocatedResources {
        shared: AllocatedSharedResources {
            networks: vec![NetworkResource {
                dynamic_ports: DYNAMIC_PORTS
                    .filter(|p| !free.contains(p))
                    .map(|value| Port {
                        label: format!("p{value}"),
                        value,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    });
    alloc
}

#[test]
fn dynamic_ports_avoid_ports_of_live_allocs_old_static_ports_and_the_same_plan() {
    let node = mock::node("n1");
    // Three ports are free of the hog; an old allocation (no AllocatedResources) holds
    // one of them through its group's static port.
    let hogger = hog(&node, &[21_000, 27_777, 30_000]);
    let mut legacy_job = mock::job("legacy", JOB_TYPE_SERVICE);
    legacy_job.task_groups[0].networks = vec![NetworkResource {
        reserved_ports: vec![Port {
            label: "db".into(),
            value: 21_000,
            ..Default::default()
        }],
        ..Default::default()
    }];
    let legacy = mock::alloc(&Arc::new(legacy_job), "web", 0, &node);
    assert!(legacy.allocated_resources.is_none());
    let job = job_with_dynamic_port("web", JOB_TYPE_SERVICE, 3);
    let state = MemState::new()
        .with_nodes([node.clone()])
        .with_allocs([hogger, legacy])
        .with_jobs([job.clone()]);
    for seed in 0..5 {
        let plan = run(&state, &job, seed);
        let mut got: Vec<i64> = placed(&plan).iter().map(|a| http_port(a)).collect();
        got.sort();
        assert_eq!(got, [27_777, 30_000], "seed {seed}");
        // The third has no port left: Nomad's dimension, and a blocked evaluation.
        let metric = &plan.failed_tg_allocs["web"];
        assert_eq!(
            metric.dimension_exhausted["network: dynamic port selection failed"],
            1
        );
        let sentences = scheduler::explain(metric).join("; ");
        assert!(sentences.contains("no free dynamic port"), "{sentences}");
        assert_eq!(plan.create_evals.len(), 1);
    }
}

#[test]
fn an_in_place_update_keeps_the_ports_it_holds() {
    let mut job = job_with_dynamic_port("web", JOB_TYPE_SERVICE, 2);
    let mut state = MemState::new()
        .with_nodes([mock::node("n1"), mock::node("n2")])
        .with_jobs([job.clone()]);
    state.apply_plan(&run(&state, &job, 1));
    let before: BTreeSet<(String, i64)> = state
        .allocs
        .values()
        .map(|a| (a.id.to_string(), http_port(a)))
        .collect();

    job.version = 1;
    job.meta.insert("owner".into(), "ops".into());
    state.upsert_job(job.clone());
    let plan = run(&state, &job, 99);
    assert!(plan.node_update.is_empty(), "in place, nothing stops");
    let after: BTreeSet<(String, i64)> = placed(&plan)
        .iter()
        .map(|a| (a.id.to_string(), http_port(a)))
        .collect();
    assert_eq!(after, before);
    // And the plan applier's check accepts them beside themselves.
    for (node_id, allocs) in &plan.node_allocation {
        let none = std::collections::HashSet::new();
        assert_eq!(
            scheduler::usage::check_node_plan(&state, node_id, &none, allocs),
            Ok(())
        );
    }
}

#[test]
fn system_allocations_get_ports_too() {
    let job = job_with_dynamic_port("agent", JOB_TYPE_SYSTEM, 1);
    let state = MemState::new()
        .with_nodes([mock::node("n1"), mock::node("n2")])
        .with_jobs([job.clone()]);
    let plan = run(&state, &job, 5);
    assert_eq!(placed(&plan).len(), 2);
    assert!(placed(&plan)
        .iter()
        .all(|a| DYNAMIC_PORTS.contains(&http_port(a))));
    // A node with no free dynamic port fails with Nomad's dimension.
    let full = hog(&mock::node("n1"), &[]);
    let state = state.with_allocs([full]);
    let plan = run(&state, &job, 5);
    assert_eq!(placed(&plan).len(), 1);
    assert_eq!(
        plan.failed_tg_allocs["web"].dimension_exhausted["network: dynamic port selection failed"],
        1
    );
}

#[test]
fn many_jobs_placed_one_after_another_never_share_a_host_port_on_a_node() {
    // 400 dynamic ports, which bin-packing puts on one or two nodes: drawn without
    // looking at the node, some would collide (the birthday bound is near certainty).
    let nodes = [mock::node("n1"), mock::node("n2"), mock::node("n3")];
    let mut state = MemState::new().with_nodes(nodes.clone());
    for i in 0..40 {
        let mut job = job_with_dynamic_port(&format!("job{i}"), JOB_TYPE_SERVICE, 5);
        let resources = job.task_groups[0].tasks[0].resources.as_mut().unwrap();
        (resources.cpu, resources.memory_mb) = (10, 16);
        job.task_groups[0].networks[0].dynamic_ports.push(Port {
            label: "metrics".into(),
            ..Default::default()
        });
        state.upsert_job(job.clone());
        let plan = run(&state, &job, i);
        assert_eq!(
            placed(&plan).len(),
            5,
            "job{i}: {:?}",
            plan.failed_tg_allocs
        );
        state.apply_plan(&plan);
    }
    let mut total = 0;
    for node in &nodes {
        let mut seen = BTreeSet::new();
        let live = state
            .allocs
            .values()
            .filter(|a| a.node_id == node.id && !a.terminal());
        for alloc in live {
            for port in scheduler::usage::Ask::of_alloc(alloc).host_ports() {
                assert!(seen.insert(port), "port {port} held twice on {}", node.id);
            }
        }
        total += seen.len();
    }
    assert_eq!(total, 400);
}
