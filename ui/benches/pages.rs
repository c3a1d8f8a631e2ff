//! Rendering the heaviest pages over a synthetic state: 1,000 jobs of 10 allocations plus
//! one job of 10,000 allocations, on 5,000 nodes. Each page is rendered whole (layout
//! included), as the handler does; the HTML size of each is printed once.
//!
//! Run: `cargo bench -p ui -- --quick`

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use server::state::StateStore;
use ui::layout::{self, Nav};
use ui::pages::{allocs, clients, job, jobs, topology};

const JOBS: usize = 1_000;
const ALLOCS_PER_JOB: usize = 10;
const BIG_ALLOCS: usize = 10_000;
const NODES: usize = 5_000;
const NOW: i64 = 1_700_000_000_000_000_000;

fn job_json(id: &str, count: usize) -> Value {
    json!({
        "ID": id, "Name": id, "Namespace": "default", "Type": "service", "Priority": 50,
        "Status": "running", "Datacenters": ["dc1"], "Version": 0, "SubmitTime": NOW,
        "TaskGroups": [{"Name": "main", "Count": count,
            "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/sleep"}}]}]
    })
}

fn synthetic_state() -> StateStore {
    let statuses = [
        "running", "running", "running", "pending", "complete", "failed",
    ];
    let mut jobs = Vec::with_capacity(JOBS + 1);
    let mut allocs = Vec::with_capacity(JOBS * ALLOCS_PER_JOB + BIG_ALLOCS);
    let mut n = 0usize;
    let mut alloc = |job: &str, i: usize| {
        n += 1;
        let node = n % NODES;
        json!([null, {
            "ID": format!("{n:08x}-0000-4000-8000-{n:012x}"), "Namespace": "default",
            "JobID": job, "TaskGroup": "main", "Name": format!("{job}.main[{i}]"),
            "NodeID": format!("node-{node:05}"), "NodeName": format!("node-{node:05}"),
            "DesiredStatus": "run", "ClientStatus": statuses[n % statuses.len()],
            "CreateIndex": n as u64 + 10, "ModifyIndex": n as u64 + 10, "CreateTime": NOW,
            "Resources": {"CPU": 100, "MemoryMB": 64}
        }])
    };
    for j in 0..JOBS {
        let id = format!("job-{j:04}");
        jobs.push(job_json(&id, ALLOCS_PER_JOB));
        for i in 0..ALLOCS_PER_JOB {
            allocs.push(alloc(&id, i));
        }
    }
    jobs.push(job_json("big", BIG_ALLOCS));
    for i in 0..BIG_ALLOCS {
        allocs.push(alloc("big", i));
    }
    let nodes: Vec<Value> = (0..NODES)
        .map(|i| {
            json!({
                "ID": format!("node-{i:05}"), "Name": format!("node-{i:05}"), "Datacenter": "dc1",
                "Status": "ready", "SchedulingEligibility": "eligible", "StatusUpdatedAt": NOW / 1_000_000_000,
                "NodeResources": {"Cpu": {"CpuShares": 4000}, "Memory": {"MemoryMB": 8192}, "Disk": {"DiskMB": 10000}}
            })
        })
        .collect();
    serde_json::from_value(json!({
        "index": 200_000,
        "tables": {"jobs": 1, "allocs": 1, "evals": 1, "nodes": 1},
        "jobs": jobs.clone(),
        "job_versions": jobs,
        "alloc_jobs": [],
        "allocs": allocs,
        "evals": [],
        "nodes": nodes,
    }))
    .expect("a synthetic state")
}

fn pages(c: &mut Criterion) {
    let state = synthetic_state();
    let big = state.job("default", "big").expect("the big job");
    let small = state.job("default", "job-0500").expect("a small job");
    let node = state
        .node_table()
        .get("node-00042")
        .cloned()
        .expect("a node");
    let index = state.index();
    let jobs_q = jobs::JobsQuery::default();
    let job_q = job::JobQuery::default();
    let clients_q = clients::ClientsQuery::default();

    type Render<'a> = Box<dyn Fn() -> String + 'a>;
    let cases: Vec<(&str, Render)> = vec![
        (
            "jobs list",
            Box::new(|| {
                layout::page("Jobs", Nav::Jobs, index, jobs::render(&state, &jobs_q)).into_string()
            }),
        ),
        (
            "job of 10 allocs",
            Box::new(|| {
                layout::page("Job", Nav::Jobs, index, job::render(&state, &small, &job_q))
                    .into_string()
            }),
        ),
        (
            "job of 10,000 allocs",
            Box::new(|| {
                layout::page("Job", Nav::Jobs, index, job::render(&state, &big, &job_q))
                    .into_string()
            }),
        ),
        (
            "clients list",
            Box::new(|| {
                layout::page(
                    "Clients",
                    Nav::Clients,
                    index,
                    clients::render_list(&state, &clients_q, NOW),
                )
                .into_string()
            }),
        ),
        (
            "client page",
            Box::new(|| {
                layout::page(
                    "Client",
                    Nav::Clients,
                    index,
                    clients::render_node(&state, &node, &clients_q, NOW),
                )
                .into_string()
            }),
        ),
        (
            "topology",
            Box::new(|| {
                layout::page(
                    "Topology",
                    Nav::Topology,
                    index,
                    topology::render(&state, &Default::default()),
                )
                .into_string()
            }),
        ),
        (
            "allocations list",
            Box::new(|| {
                layout::page(
                    "Allocations",
                    Nav::Allocations,
                    index,
                    allocs::render(&state, &Default::default()),
                )
                .into_string()
            }),
        ),
    ];
    for (name, render) in &cases {
        println!("{name}: {} bytes of HTML", render().len());
        c.bench_function(name, |b| b.iter(|| std::hint::black_box(render())));
    }
}

criterion_group!(benches, pages);
criterion_main!(benches);
