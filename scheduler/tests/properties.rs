//! Properties over random clusters and jobs: whatever the cluster looks like, a plan never
//! over-commits a node, never places on a node that may not take work, honours
//! constraints, covers every feasible node for system jobs, and is reproducible.

use api::{Allocation, Constraint, Job, NetworkResource, Node, Plan, Port};
use proptest::prelude::*;
use scheduler::mock::{self, MemState};
use scheduler::usage::{fit, Ask, NodeUsage};
use scheduler::{schedule, Algorithm, SchedulerConfig, State};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct NodeSpec {
    cpu: i64,
    memory_mb: i64,
    status: &'static str,
    eligible: bool,
    drain: bool,
    dc: &'static str,
    kernel: &'static str,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        500i64..8000,
        512i64..16384,
        prop_oneof![
            6 => Just(api::NODE_STATUS_READY),
            1 => Just(api::NODE_STATUS_DOWN),
            1 => Just(api::NODE_STATUS_INIT),
        ],
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.1),
        prop_oneof![Just("dc1"), Just("dc2")],
        prop_oneof![3 => Just("linux"), 1 => Just("windows")],
    )
        .prop_map(
            |(cpu, memory_mb, status, eligible, drain, dc, kernel)| NodeSpec {
                cpu,
                memory_mb,
                status,
                eligible,
                drain,
                dc,
                kernel,
            },
        )
}

#[derive(Debug, Clone)]
struct JobSpec {
    job_type: &'static str,
    count: i64,
    cpu: i64,
    memory_mb: i64,
    linux_only: bool,
    distinct_hosts: bool,
    static_port: bool,
    all_dcs: bool,
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        prop_oneof![
            Just(api::JOB_TYPE_SERVICE),
            Just(api::JOB_TYPE_BATCH),
            Just(api::JOB_TYPE_SYSTEM),
            Just(api::JOB_TYPE_SYSBATCH),
        ],
        0i64..15,
        100i64..2000,
        64i64..4096,
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(
            |(
                job_type,
                count,
                cpu,
                memory_mb,
                linux_only,
                distinct_hosts,
                static_port,
                all_dcs,
            )| {
                JobSpec {
                    job_type,
                    count,
                    cpu,
                    memory_mb,
                    linux_only,
                    distinct_hosts,
                    static_port,
                    all_dcs,
                }
            },
        )
}

fn build_node(i: usize, spec: &NodeSpec) -> Node {
    let mut n = mock::node(&format!("node-{i:02}"));
    n.node_resources.cpu.cpu_shares = spec.cpu;
    n.node_resources.memory.memory_mb = spec.memory_mb;
    n.status = spec.status.into();
    n.scheduling_eligibility = if spec.eligible {
        api::NODE_ELIGIBLE
    } else {
        api::NODE_INELIGIBLE
    }
    .into();
    n.drain = spec.drain;
    n.datacenter = spec.dc.into();
    n.attributes
        .insert("kernel.name".into(), spec.kernel.into());
    // The class summarises exactly what constraints read, so memoising on it is sound.
    n.computed_class = format!("{}-{}", spec.dc, spec.kernel);
    n
}

fn build_job(id: &str, spec: &JobSpec) -> Job {
    let mut job = mock::job(id, spec.job_type);
    job.datacenters = if spec.all_dcs {
        vec!["dc*".into()]
    } else {
        vec!["dc1".into()]
    };
    let group = &mut job.task_groups[0];
    group.count = spec.count;
    let r = group.tasks[0].resources.as_mut().unwrap();
    r.cpu = spec.cpu;
    r.memory_mb = spec.memory_mb;
    if spec.linux_only {
        job.constraints.push(Constraint {
            l_target: "${attr.kernel.name}".into(),
            r_target: "linux".into(),
            operand: "=".into(),
        });
    }
    if spec.distinct_hosts {
        job.constraints.push(Constraint {
            operand: "distinct_hosts".into(),
            r_target: "true".into(),
            ..Default::default()
        });
    }
    if spec.static_port {
        job.task_groups[0].networks.push(NetworkResource {
            reserved_ports: vec![Port {
                label: "http".into(),
                value: 8080,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    job
}

fn run(state: &MemState, job: &Job, algorithm: Algorithm, seed: u64) -> Plan {
    schedule(
        state,
        &mock::eval(job),
        &SchedulerConfig { algorithm },
        seed,
    )
    .expect("schedule")
}

fn node_accepts(node: &Node, job: &Job) -> bool {
    let dc_ok = job
        .datacenters
        .iter()
        .any(|d| d == &node.datacenter || (d == "dc*" && node.datacenter.starts_with("dc")));
    node.ready_and_eligible() && dc_ok
}

fn constraints_hold(node: &Node, job: &Job) -> bool {
    job.constraints
        .iter()
        .all(|c| c.operand == "distinct_hosts" || scheduler::constraint::constraint_holds(c, node))
}

fn live(state: &MemState) -> Vec<Arc<Allocation>> {
    state
        .allocs
        .values()
        .filter(|a| !a.terminal())
        .cloned()
        .collect()
}

fn usage_of(state: &MemState, node_id: &str) -> NodeUsage {
    let mut u = NodeUsage::default();
    for a in live(state).iter().filter(|a| a.node_id == node_id) {
        let ask = Ask::of_alloc(a);
        u.cpu += ask.cpu;
        u.memory_mb += ask.memory_mb;
        u.disk_mb += ask.disk_mb;
        for p in ask.reserved_ports {
            *u.ports.entry(p).or_default() += 1;
        }
    }
    u
}

fn check_invariants(state: &MemState, jobs: &[Job]) -> Result<(), TestCaseError> {
    // No node over-committed; no static port held twice.
    for node in state.nodes.values() {
        let u = usage_of(state, &node.id);
        let (cpu, mem, disk) = node.allocatable();
        prop_assert!(u.cpu <= cpu, "cpu over-committed on {}", node.id);
        prop_assert!(u.memory_mb <= mem, "memory over-committed on {}", node.id);
        prop_assert!(u.disk_mb <= disk, "disk over-committed on {}", node.id);
        prop_assert!(
            u.ports.values().all(|&n| n <= 1),
            "port collision on {}",
            node.id
        );
    }
    for job in jobs {
        let allocs: Vec<_> = live(state)
            .into_iter()
            .filter(|a| a.job_id == job.id)
            .collect();
        let mut per_node: HashMap<&str, u32> = HashMap::new();
        for a in &allocs {
            let node = &state.nodes[a.node_id.as_str()];
            prop_assert!(node_accepts(node, job), "{} placed on {:?}", a.name, node);
            prop_assert!(
                constraints_hold(node, job),
                "constraint broken by {}",
                a.name
            );
            *per_node.entry(&a.node_id).or_default() += 1;
        }
        let distinct = job
            .constraints
            .iter()
            .any(|c| c.operand == "distinct_hosts");
        let system = matches!(job.job_type.as_str(), "system" | "sysbatch");
        if distinct || system {
            prop_assert!(
                per_node.values().all(|&n| n <= 1),
                "two allocs of {} on a node",
                job.id
            );
        }
        if system {
            // Every feasible node runs it, or really has no room for it.
            let ask = Ask::for_group(&job.task_groups[0]);
            for node in state.nodes.values() {
                if node_accepts(node, job)
                    && constraints_hold(node, job)
                    && !per_node.contains_key(node.id.as_str())
                {
                    prop_assert!(
                        fit(node, &usage_of(state, &node.id), &ask).is_err(),
                        "system job {} skipped {} which has room",
                        job.id,
                        node.id
                    );
                }
            }
        } else {
            prop_assert!(allocs.len() as i64 <= job.task_groups[0].count);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn plans_respect_capacity_eligibility_and_constraints(
        node_specs in prop::collection::vec(node_spec(), 1..40),
        first in job_spec(),
        second in job_spec(),
        spread in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let algorithm = if spread { Algorithm::Spread } else { Algorithm::BinPack };
        let nodes: Vec<Node> = node_specs.iter().enumerate().map(|(i, s)| build_node(i, s)).collect();
        let jobs = vec![build_job("first", &first), build_job("second", &second)];
        let mut state = MemState::new().with_nodes(nodes).with_jobs(jobs.clone());
        for job in &jobs {
            let plan = run(&state, job, algorithm, seed);
            // Placed + queued is what was asked for (service and batch start from nothing).
            if !matches!(job.job_type.as_str(), "system" | "sysbatch") {
                let queued: u64 = plan.queued_allocations.values().sum();
                prop_assert_eq!(plan.placements() as u64 + queued, job.task_groups[0].count as u64);
                prop_assert_eq!(queued > 0, plan.create_evals.iter().any(|e| e.status == "blocked"));
            }
            state.apply_plan(&plan);
        }
        check_invariants(&state, &jobs)?;

        // A second round on the same state changes nothing that fits.
        for job in &jobs {
            let plan = run(&state, job, algorithm, seed.wrapping_add(1));
            prop_assert_eq!(plan.stops(), 0);
            state.apply_plan(&plan);
        }
        check_invariants(&state, &jobs)?;
    }

    #[test]
    fn same_seed_same_plan(
        node_specs in prop::collection::vec(node_spec(), 1..40),
        spec in job_spec(),
        seed in any::<u64>(),
    ) {
        let nodes: Vec<Node> = node_specs.iter().enumerate().map(|(i, s)| build_node(i, s)).collect();
        let job = build_job("job", &spec);
        let state = MemState::new().with_nodes(nodes).with_jobs([job.clone()]);
        let a = serde_json::to_string(&run(&state, &job, Algorithm::BinPack, seed)).unwrap();
        let b = serde_json::to_string(&run(&state, &job, Algorithm::BinPack, seed)).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn nodes_going_down_lose_their_allocs_and_replacements_land_on_ready_nodes(
        node_specs in prop::collection::vec(node_spec(), 2..30),
        spec in job_spec(),
        fail_every in 2usize..5,
        seed in any::<u64>(),
    ) {
        let nodes: Vec<Node> = node_specs.iter().enumerate().map(|(i, s)| build_node(i, s)).collect();
        let job = build_job("job", &spec);
        let mut state = MemState::new().with_nodes(nodes.clone()).with_jobs([job.clone()]);
        state.apply_plan(&run(&state, &job, Algorithm::BinPack, seed));
        for (i, n) in nodes.iter().enumerate() {
            if i % fail_every == 0 {
                let mut down = n.clone();
                down.status = api::NODE_STATUS_DOWN.into();
                state.upsert_node(down);
            }
        }
        let plan = run(&state, &job, Algorithm::BinPack, seed);
        for a in plan.node_update.values().flatten() {
            let node = state.node(&a.node_id).unwrap();
            if node.is_down() {
                prop_assert_eq!(&a.client_status, "lost");
            }
        }
        state.apply_plan(&plan);
        check_invariants(&state, &[job])?;
    }
}
