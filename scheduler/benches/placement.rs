//! Placement throughput: 10,000 nodes, one service job of 1,000 allocations, from nothing.
//! Nodes come in a handful of computed classes, as real fleets do, so the feasibility memo
//! is exercised.

use criterion::{criterion_group, criterion_main, Criterion};
use scheduler::mock::{self, MemState};
use scheduler::{schedule, SchedulerConfig};

fn cluster(nodes: usize) -> MemState {
    MemState::new().with_nodes((0..nodes).map(|i| {
        let mut n = mock::node(&format!("node-{i:05}"));
        n.computed_class = format!("class-{}", i % 8);
        n.node_resources.memory.memory_mb = 4096 + 1024 * (i % 4) as i64;
        n
    }))
}

fn place_1000_on_10000_nodes(c: &mut Criterion) {
    let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
    job.task_groups[0].count = 1_000;
    job.constraints.push(api::Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    });
    let state = cluster(10_000).with_jobs([job.clone()]);
    let eval = mock::eval(&job);
    let config = SchedulerConfig::default();
    let mut seed = 0u64;
    c.bench_function("service: place 1,000 allocs on 10,000 nodes", |b| {
        b.iter(|| {
            seed += 1;
            let plan = schedule(&state, &eval, &config, seed).expect("schedule");
            assert_eq!(plan.placements(), 1_000);
            plan
        })
    });

    let system = mock::job("agent", api::JOB_TYPE_SYSTEM);
    let state = cluster(10_000).with_jobs([system.clone()]);
    let eval = mock::eval(&system);
    c.bench_function("system: place on 10,000 nodes", |b| {
        b.iter(|| {
            let plan = schedule(&state, &eval, &config, 1).expect("schedule");
            assert_eq!(plan.placements(), 10_000);
            plan
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = place_1000_on_10000_nodes
}
criterion_main!(benches);
