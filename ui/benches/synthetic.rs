//! The synthetic cluster the UI is measured on, shared by `benches/pages.rs` and
//! `examples/ui.rs`: 1,000 jobs of 10 allocations plus one job of 10,000 allocations on
//! 5,000 nodes, one evaluation per job; and every page rendered whole (layout included) as
//! its handler does, each under the URL it answers at.

use serde_json::{json, Value};
use server::state::StateStore;
use ui::layout::{self, Nav};
use ui::pages::{alloc, allocs, clients, evals, files, job, jobs, logs, run, search, topology};

pub const JOBS: usize = 1_000;
pub const ALLOCS_PER_JOB: usize = 10;
pub const BIG_ALLOCS: usize = 10_000;
pub const NODES: usize = 5_000;
pub const NOW: i64 = 1_700_000_000_000_000_000;

fn job_json(id: &str, count: usize) -> Value {
    json!({
        "ID": id, "Name": id, "Namespace": "default", "Type": "service", "Priority": 50,
        "Status": "running", "Datacenters": ["dc1"], "Version": 0, "SubmitTime": NOW,
        "TaskGroups": [{"Name": "main", "Count": count,
            "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/sleep"}}]}]
    })
}

pub fn synthetic_state() -> StateStore {
    let statuses = [
        "running", "running", "running", "pending", "complete", "failed",
    ];
    let mut jobs = Vec::with_capacity(JOBS + 1);
    let mut allocs = Vec::with_capacity(JOBS * ALLOCS_PER_JOB + BIG_ALLOCS);
    let mut evals = Vec::with_capacity(JOBS + 1);
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
            "EvalID": format!("eval-{job}"),
            "Resources": {"CPU": 100, "MemoryMB": 64},
            "TaskStates": {"t": {"State": "running", "Events": [
                {"Type": "Received", "Time": NOW, "DisplayMessage": "Task received by client"},
                {"Type": "Started", "Time": NOW, "DisplayMessage": "Task started by client"}]}}
        }])
    };
    let eval = |job: &str, i: usize| {
        json!({
            "ID": format!("eval-{job}"), "Namespace": "default", "JobID": job,
            "Type": "service", "TriggeredBy": "job-register", "Status": "complete",
            "Priority": 50, "CreateIndex": i as u64 + 5, "ModifyIndex": i as u64 + 6,
            "CreateTime": NOW, "ModifyTime": NOW
        })
    };
    for j in 0..JOBS {
        let id = format!("job-{j:04}");
        jobs.push(job_json(&id, ALLOCS_PER_JOB));
        evals.push(eval(&id, j));
        for i in 0..ALLOCS_PER_JOB {
            allocs.push(alloc(&id, i));
        }
    }
    jobs.push(job_json("big", BIG_ALLOCS));
    evals.push(eval("big", JOBS));
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
        "evals": evals,
        "nodes": nodes,
    }))
    .expect("a synthetic state")
}

/// Renders one page to its HTML.
pub type Render<'a> = Box<dyn Fn() -> String + Send + Sync + 'a>;

/// Every page over `state`: (name, URL, renderer). The servers page is not here: it reads
/// Raft's membership, not the state (three rows on a three-server cluster).
pub fn pages(state: &StateStore) -> Vec<(&'static str, String, Render<'_>)> {
    let index = state.index();
    let big = state.job("default", "big").expect("the big job");
    let small = state.job("default", "job-0500").expect("a small job");
    let node = state
        .node_table()
        .get("node-00042")
        .cloned()
        .expect("a node");
    let a = alloc::find_alloc(state, "00000001-0000-4000-8000-000000000001").expect("an alloc");
    let eval = state
        .eval_table()
        .get("eval-job-0500")
        .cloned()
        .expect("an eval");
    let dir = files::FsView::Dir(
        (0..20)
            .map(|i| json!({"Name": format!("file-{i}.log"), "IsDir": false, "Size": 1024 * i, "ModTime": "2026-12-01T00:00:00Z"}))
            .collect(),
    );
    let a_id = a.id.clone();
    let whole = move |title: &'static str, nav: Nav, body: maud::Markup| {
        layout::page(title, nav, index, body).into_string()
    };
    vec![
        (
            "jobs list",
            "/ui/jobs".into(),
            Box::new(move || whole("Jobs", Nav::Jobs, jobs::render(state, &Default::default()))),
        ),
        (
            "job of 10 allocs",
            "/ui/jobs/job-0500".into(),
            Box::new(move || {
                whole(
                    "Job",
                    Nav::Jobs,
                    job::render(state, &small, &Default::default()),
                )
            }),
        ),
        (
            "job of 10,000 allocs",
            "/ui/jobs/big".into(),
            Box::new(move || {
                whole(
                    "Job",
                    Nav::Jobs,
                    job::render(state, &big, &Default::default()),
                )
            }),
        ),
        (
            "run a job",
            "/ui/jobs/run".into(),
            Box::new(move || {
                whole(
                    "Run a job",
                    Nav::Jobs,
                    run::render(&Default::default(), &run::Outcome::Nothing),
                )
            }),
        ),
        (
            "allocation",
            format!("/ui/allocations/{a_id}"),
            Box::new({
                let a = a.clone();
                move || {
                    whole(
                        "Allocation",
                        Nav::Jobs,
                        alloc::render(state, &a, None, None),
                    )
                }
            }),
        ),
        (
            "logs",
            format!("/ui/allocations/{a_id}/t/logs"),
            Box::new({
                let a = a.clone();
                move || whole("Logs", Nav::Jobs, logs::render(&a, "t", "stdout"))
            }),
        ),
        (
            "files",
            format!("/ui/allocations/{a_id}/fs"),
            Box::new(move || {
                whole(
                    "Files",
                    Nav::Jobs,
                    files::render(&a_id, "/alloc/logs", &dir),
                )
            }),
        ),
        (
            "clients list",
            "/ui/clients".into(),
            Box::new(move || {
                whole(
                    "Clients",
                    Nav::Clients,
                    clients::render_list(state, &Default::default(), NOW),
                )
            }),
        ),
        (
            "client page",
            "/ui/clients/node-00042".into(),
            Box::new(move || {
                whole(
                    "Client",
                    Nav::Clients,
                    clients::render_node(state, &node, &Default::default(), NOW),
                )
            }),
        ),
        (
            "evaluations",
            "/ui/evaluations".into(),
            Box::new(move || {
                whole(
                    "Evaluations",
                    Nav::Evaluations,
                    evals::render(state, &Default::default()),
                )
            }),
        ),
        (
            "evaluation",
            "/ui/evaluations/eval-job-0500".into(),
            Box::new(move || whole("Evaluation", Nav::Evaluations, evals::render_eval(&eval))),
        ),
        (
            "allocations list",
            "/ui/allocations".into(),
            Box::new(move || {
                whole(
                    "Allocations",
                    Nav::Allocations,
                    allocs::render(state, &Default::default()),
                )
            }),
        ),
        (
            "topology",
            "/ui/topology".into(),
            Box::new(move || {
                whole(
                    "Topology",
                    Nav::Topology,
                    topology::render(state, &Default::default()),
                )
            }),
        ),
        (
            "search",
            "/ui/search?q=job-0".into(),
            Box::new(move || {
                let found = search::matches(state, "job-0");
                whole("Search", Nav::None, search::render("job-0", &found))
            }),
        ),
    ]
}
