//! Placement throughput (criterion reports placements per second as elements/s):
//!
//! - (a) one service job of 10,000 allocations on 5,000 nodes
//! - (b) 1,000 service jobs of 10 allocations on 1,000 nodes (each evaluation against the
//!   same snapshot)
//! - (c) as (b), with a spread, an affinity and constraints on every job
//! - (d) a system job on 10,000 nodes
//! - (e) one service job of 10 allocations on 5,000 nodes already running 20,000
//!   allocations: what bin-packing's per-evaluation pass over every node's allocations
//!   costs (a job of 10 scores ~130 nodes, but reads the usage of all 5,000)
//! - (f) as (a), every allocation with two dynamic ports: what assigning host ports costs
//!
//! Nodes come in a handful of computed classes, as real fleets do, so the feasibility memo
//! is exercised. Run with `cargo bench -p scheduler --bench placement`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scheduler::mock::{self, MemState};
use scheduler::{schedule, SchedulerConfig};
use std::time::Duration;

fn node(i: usize) -> api::Node {
    let mut n = mock::node(&format!("node-{i:05}"));
    n.computed_class = format!("class-{}", i % 8);
    n.node_class = format!("class-{}", i % 8);
    n.datacenter = format!("dc{}", 1 + i % 3);
    n.meta.insert("rack".into(), format!("r{}", i % 16));
    n.node_resources.memory.memory_mb = 8192 + 1024 * (i % 4) as i64;
    n
}

fn cluster(nodes: usize) -> MemState {
    MemState::new().with_nodes((0..nodes).map(node))
}

fn service(id: &str, count: i64) -> api::Job {
    let mut job = mock::job(id, api::JOB_TYPE_SERVICE);
    job.datacenters = vec!["dc*".into()];
    job.task_groups[0].count = count;
    let r = job.task_groups[0].tasks[0].resources.as_mut().unwrap();
    r.cpu = 100;
    r.memory_mb = 128;
    job
}

fn with_preferences(mut job: api::Job) -> api::Job {
    job.constraints.push(api::Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    });
    job.constraints.push(api::Constraint {
        l_target: "${node.class}".into(),
        r_target: "class-7".into(),
        operand: "!=".into(),
    });
    job.affinities.push(api::Affinity {
        l_target: "${node.datacenter}".into(),
        r_target: "dc1".into(),
        operand: "=".into(),
        weight: 50,
    });
    job.spreads.push(api::Spread {
        attribute: "${meta.rack}".into(),
        weight: 50,
        ..Default::default()
    });
    job
}

fn one_big_service_job(c: &mut Criterion) {
    big_service_job(
        c,
        "a: service, 10,000 allocs on 5,000 nodes",
        service("web", 10_000),
    );
}

fn one_big_service_job_with_ports(c: &mut Criterion) {
    let mut job = service("web", 10_000);
    let port = |label: &str| api::Port {
        label: label.into(),
        ..Default::default()
    };
    job.task_groups[0].networks = vec![api::NetworkResource {
        dynamic_ports: vec![port("http"), port("metrics")],
        ..Default::default()
    }];
    big_service_job(
        c,
        "f: service, 10,000 allocs with 2 dynamic ports on 5,000 nodes",
        job,
    );
}

fn big_service_job(c: &mut Criterion, name: &str, job: api::Job) {
    let state = cluster(5_000).with_jobs([job.clone()]);
    let eval = mock::eval(&job);
    let config = SchedulerConfig::default();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(10_000));
    let mut seed = 0u64;
    group.bench_function("binpack", |b| {
        b.iter(|| {
            seed += 1;
            let plan = schedule(&state, &eval, &config, seed).expect("schedule");
            assert_eq!(plan.placements(), 10_000);
            plan
        })
    });
    group.finish();
}

fn many_small_jobs(c: &mut Criterion, name: &str, decorate: fn(api::Job) -> api::Job) {
    let jobs: Vec<api::Job> = (0..1_000)
        .map(|i| decorate(service(&format!("job-{i:04}"), 10)))
        .collect();
    let state = cluster(1_000).with_jobs(jobs.clone());
    let evals: Vec<api::Evaluation> = jobs.iter().map(mock::eval).collect();
    let config = SchedulerConfig::default();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("binpack", |b| {
        b.iter(|| {
            let mut placed = 0;
            for (i, eval) in evals.iter().enumerate() {
                placed += schedule(&state, eval, &config, i as u64)
                    .expect("schedule")
                    .placements();
            }
            assert_eq!(placed, 10_000);
        })
    });
    group.finish();
}

fn small_jobs(c: &mut Criterion) {
    many_small_jobs(c, "b: 1,000 jobs x 10 allocs on 1,000 nodes", |j| j);
    many_small_jobs(
        c,
        "c: 1,000 jobs x 10 allocs on 1,000 nodes, spread + affinity + constraints",
        with_preferences,
    );
}

fn system_job(c: &mut Criterion) {
    let mut system = mock::job("agent", api::JOB_TYPE_SYSTEM);
    system.datacenters = vec!["dc*".into()];
    let state = cluster(10_000).with_jobs([system.clone()]);
    let eval = mock::eval(&system);
    let config = SchedulerConfig::default();
    let mut group = c.benchmark_group("d: system job on 10,000 nodes");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("system", |b| {
        b.iter(|| {
            let plan = schedule(&state, &eval, &config, 1).expect("schedule");
            assert_eq!(plan.placements(), 10_000);
            plan
        })
    });
    group.finish();
}

fn small_job_on_a_busy_cluster(c: &mut Criterion) {
    let filler = std::sync::Arc::new(service("filler", 20_000));
    let nodes: Vec<api::Node> = (0..5_000).map(node).collect();
    let allocs = (0..20_000u64).map(|i| mock::alloc(&filler, "web", i, &nodes[i as usize % 5_000]));
    let job = service("web", 10);
    let state = MemState::new()
        .with_nodes(nodes.clone())
        .with_jobs([(*filler).clone(), job.clone()])
        .with_allocs(allocs);
    let eval = mock::eval(&job);
    let config = SchedulerConfig::default();
    let mut group = c.benchmark_group("e: service, 10 allocs on 5,000 busy nodes");
    group.throughput(Throughput::Elements(10));
    group.bench_function("binpack", |b| {
        b.iter(|| {
            let plan = schedule(&state, &eval, &config, 1).expect("schedule");
            assert_eq!(plan.placements(), 10);
            plan
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = one_big_service_job, small_jobs, system_job, small_job_on_a_busy_cluster,
        one_big_service_job_with_ports
}
criterion_main!(benches);
