//! Convergence under concurrent load, through the real binary: many jobs submitted at once
//! to a three-server cluster with hundreds of nodes are all placed exactly, the plan
//! applier never over-commits a node while workers race, and job summaries count what is
//! not placed yet as `Queued` (never "Queued 0" while allocations are missing).
//!
//! The nodes are simulated by the test: each registers through the route client agents
//! use and heartbeats from a tokio task, so hundreds of them cost no processes.

mod common;

use common::cluster::Cluster;
use common::wait_for;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// CPU of one allocation; a simulated node has room for a given number of them.
const ALLOC_CPU: i64 = 1000;
/// Slots of the nodes of the tests run in CI.
const SLOTS_PER_NODE: usize = 4;

fn fake_node(i: usize, slots: usize) -> api::Node {
    let healthy = api::DriverInfo {
        detected: true,
        healthy: true,
        ..Default::default()
    };
    serde_json::from_value(serde_json::json!({
        "ID": format!("00000000-0000-4000-8000-{i:012}"),
        "Name": format!("sim-{i}"),
        "Datacenter": "dc1",
        "Attributes": {"kernel.name": "linux", "cpu.arch": "amd64",
                       "unique.hostname": format!("sim-{i}")},
        "NodeResources": {
            "Cpu": {"CpuShares": ALLOC_CPU * slots as i64, "TotalCpuCores": slots},
            "Memory": {"MemoryMB": 16384},
            "Disk": {"DiskMB": 100000}
        },
        "Drivers": {"raw_exec": serde_json::to_value(&healthy).unwrap()},
        "Status": "ready"
    }))
    .expect("a node document")
}

fn job(id: &str, count: usize) -> api::Job {
    serde_json::from_value(serde_json::json!({
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": count, "Tasks": [{
            "Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/sleep", "args": ["3600"]},
            "Resources": {"CPU": ALLOC_CPU, "MemoryMB": 64}}]}]
    }))
    .expect("a job document")
}

/// Simulated client nodes: registered at once, then heartbeating until dropped.
struct FakeNodes {
    rt: tokio::runtime::Runtime,
    ids: Vec<String>,
}

impl FakeNodes {
    /// Registers `n` nodes through the agents' route (the servers' RPC listeners), spread
    /// over the servers; each heartbeats with the secret its registration returned.
    fn start(cluster: &Cluster, n: usize, slots: usize) -> FakeNodes {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let addrs: Vec<String> = cluster.servers.iter().map(|s| s.agent_addr()).collect();
        let nodes: Vec<api::Node> = (0..n).map(|i| fake_node(i, slots)).collect();
        let ids = nodes.iter().map(|n| n.id.clone()).collect();
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, node) in nodes.into_iter().enumerate() {
                let mut order = addrs.clone();
                order.rotate_left(i % addrs.len());
                let client = api::Client::with_addresses(&order);
                set.spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let secret = loop {
                        match client.register_node(&node, "").await {
                            Ok(r) => break r.secret_id,
                            Err(e) if Instant::now() > deadline => {
                                panic!("registering {} failed: {e}", node.name)
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                        }
                    };
                    (client, node.id, secret)
                });
            }
            while let Some(r) = set.join_next().await {
                let (client, id, secret) = r.expect("a registration task");
                tokio::spawn(async move {
                    loop {
                        // Well inside the default 10 s TTL; errors (a leader change)
                        // are retried on the next beat.
                        tokio::time::sleep(Duration::from_millis(2000 + spread_ms(&id) % 1000))
                            .await;
                        let _ = client.heartbeat(&id, &secret).await;
                    }
                });
            }
        });
        FakeNodes { rt, ids }
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        let rt = std::mem::replace(
            &mut self.rt,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        rt.shutdown_background();
    }
}

/// A stable per-node spread of heartbeat times.
fn spread_ms(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn wait_ready_nodes(cluster: &Cluster, n: usize) {
    wait_for(
        "every simulated node to be ready",
        Duration::from_secs(60),
        || {
            let nodes = cluster.get("/v1/nodes");
            let ready = nodes
                .as_array()?
                .iter()
                .filter(|n| n["Status"] == "ready")
                .count();
            (ready == n).then_some(())
        },
    );
}

/// Submits every job at once, each from its own task and to a server in turn.
fn submit_all(cluster: &Cluster, nodes: &FakeNodes, jobs: &[api::Job]) {
    let addrs: Vec<String> = cluster.servers.iter().map(|s| s.http()).collect();
    nodes.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, j) in jobs.iter().cloned().enumerate() {
            let mut order = addrs.clone();
            order.rotate_left(i % addrs.len());
            set.spawn(async move {
                let client = api::Client::with_addresses(&order);
                client
                    .register_job(&j)
                    .await
                    .unwrap_or_else(|e| panic!("registering job {} failed: {e}", j.id))
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("a submission task");
        }
    });
}

/// Live (wanted, not terminal) allocations of a job, from one read.
fn live_allocs(cluster: &Cluster, job: &str) -> Vec<serde_json::Value> {
    cluster
        .get(&format!("/v1/job/{job}/allocations"))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| {
            a["DesiredStatus"] == "run"
                && !matches!(
                    a["ClientStatus"].as_str(),
                    Some("complete" | "failed" | "lost")
                )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct GroupSummary {
    queued: u64,
    starting: u64,
    running: u64,
}

fn summary(cluster: &Cluster, job: &str) -> Option<GroupSummary> {
    let s = cluster.get(&format!("/v1/job/{job}/summary"));
    let g = s.get("Summary")?.get("g")?;
    Some(GroupSummary {
        queued: g["Queued"].as_u64()?,
        starting: g["Starting"].as_u64()?,
        running: g["Running"].as_u64()?,
    })
}

fn evals_of(cluster: &Cluster, job: &str) -> Vec<serde_json::Value> {
    cluster
        .get(&format!("/v1/job/{job}/evaluations"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// No node holds more allocations than fit on it: the plan applier refused every
/// over-commit however the workers raced.
fn assert_no_node_overcommitted(cluster: &Cluster, slots: usize) {
    let allocs = cluster.get("/v1/allocations");
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for a in allocs.as_array().expect("an allocation list") {
        if a["DesiredStatus"] == "run" {
            *per_node
                .entry(a["NodeID"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    if let Some((node, n)) = per_node.iter().find(|(_, n)| **n > slots) {
        panic!("node {node} holds {n} allocations; only {slots} fit");
    }
}

/// Submits `n_jobs` jobs of `count` allocations at once to `n_nodes` nodes of `slots`
/// slots each and waits for every job's exact count, checking the summaries all along.
fn converge(n_nodes: usize, slots: usize, n_jobs: usize, count: usize, env: &[(&str, &str)]) {
    // The simulated nodes all connect from one address: no per-client connection cap.
    let mut env = env.to_vec();
    env.push(("DROVER_RPC_MAX_CONNS_PER_CLIENT", "0"));
    let cluster = Cluster::start(&env);
    let nodes = FakeNodes::start(&cluster, n_nodes, slots);
    wait_ready_nodes(&cluster, nodes.ids.len());

    let jobs: Vec<api::Job> = (0..n_jobs)
        .map(|i| job(&format!("load-{i}"), count))
        .collect();
    let started = Instant::now();
    submit_all(&cluster, &nodes, &jobs);

    let mut converged_at: BTreeMap<String, Duration> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last = Vec::new();
    while converged_at.len() < jobs.len() {
        if Instant::now() > deadline {
            let logs = cluster.logs();
            let tail: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("refused"))
                .collect();
            panic!(
                "timed out after 240s waiting for every job's exact count with Queued 0; \
                 converged: {converged_at:?}\nlast reads (job, live, summary): {last:?}\n\
                 last warnings:\n{}",
                tail[tail.len().saturating_sub(40)..].join("\n")
            );
        }
        last.clear();
        for j in &jobs {
            if converged_at.contains_key(&j.id) {
                continue;
            }
            // The summary is read before the allocations, which only grow here: a
            // summary saying Queued 0 must be followed by the full count.
            let Some(s) = summary(&cluster, &j.id) else {
                continue;
            };
            assert_eq!(
                s.queued + s.starting + s.running,
                count as u64,
                "job {}: the summary must account for every wanted allocation: {s:?}",
                j.id
            );
            let live = live_allocs(&cluster, &j.id).len();
            assert!(
                live <= count,
                "job {} has {live} allocations, over its count {count}",
                j.id
            );
            if s.queued == 0 {
                assert_eq!(
                    live, count,
                    "job {}: summary says Queued 0 with {live} of {count} placed",
                    j.id
                );
            }
            if live == count && s.queued == 0 {
                converged_at.insert(j.id.clone(), started.elapsed());
            }
            last.push((j.id.clone(), live, s));
        }
        // Each round reads every job's allocations: pace it to leave the servers CPU.
        std::thread::sleep(Duration::from_millis(250));
    }
    let took = started.elapsed();
    println!(
        "placed {} allocations of {n_jobs} jobs on {n_nodes} nodes in {took:.1?} ({:.0} allocs/s); slowest job {:.1?}",
        n_jobs * count,
        (n_jobs * count) as f64 / took.as_secs_f64(),
        converged_at.values().max().copied().unwrap_or_default()
    );
    assert_no_node_overcommitted(&cluster, slots);

    // Every evaluation that failed has a follow-up; report how often workers gave up.
    let mut failed = 0;
    for j in &jobs {
        let evals = evals_of(&cluster, &j.id);
        for e in evals.iter().filter(|e| e["Status"] == "failed") {
            failed += 1;
            let next = e["NextEval"].as_str().unwrap_or_default();
            assert!(
                evals
                    .iter()
                    .any(|f| f["ID"] == next && f["TriggeredBy"] == "failed-follow-up"),
                "failed evaluation {} of job {} has no follow-up: {e}",
                e["ID"],
                j.id
            );
        }
    }
    let logs = cluster.logs();
    println!(
        "plans partly refused: {}; evaluations failed (each followed up): {failed}",
        logs.matches("plan partly refused").count()
    );
    if std::env::var_os("DROVER_TEST_SHOW_REFUSALS").is_some() {
        for line in logs
            .lines()
            .filter(|l| l.contains("refused") || l.contains("failed"))
        {
            println!("{line}");
        }
    }
    drop(nodes);
}

#[test]
fn many_jobs_submitted_at_once_to_many_nodes_all_reach_their_exact_count() {
    // 1,800 allocations on 2,000 slots: racing workers collide on the last free ones.
    converge(500, SLOTS_PER_NODE, 20, 90, &[]);
}

/// The load of issue 11 (20 jobs x 500 on 1,000 nodes). Heavy for CI on two cores:
/// `cargo test --test convergence -- --ignored --nocapture` prints its throughput. The
/// debug build on a loaded machine misses 400 ms election timeouts at this size, so
/// this one runs with Drover's default Raft timings.
#[test]
#[ignore]
fn issue_scale_load_converges() {
    converge(
        1000,
        12,
        20,
        500,
        &[
            ("DROVER_ELECTION_TIMEOUT_MS", "1000"),
            ("DROVER_WRITE_TIMEOUT_MS", "10000"),
        ],
    );
}

#[test]
fn short_capacity_leaves_the_shortfall_queued_with_a_blocked_evaluation() {
    const NODES: usize = 20; // 80 slots
    const JOBS: usize = 3;
    const COUNT: usize = 30; // 90 wanted: 10 short
                             // The simulated nodes all connect from one address: no per-client connection cap.
    let cluster = Cluster::start(&[("DROVER_RPC_MAX_CONNS_PER_CLIENT", "0")]);
    let nodes = FakeNodes::start(&cluster, NODES, SLOTS_PER_NODE);
    wait_ready_nodes(&cluster, NODES);
    let jobs: Vec<api::Job> = (0..JOBS)
        .map(|i| job(&format!("short-{i}"), COUNT))
        .collect();
    submit_all(&cluster, &nodes, &jobs);

    let capacity = NODES * SLOTS_PER_NODE;
    let shortfall = JOBS * COUNT - capacity;
    let outcome = wait_for(
        "every slot filled, the shortfall queued and blocked evaluations waiting",
        Duration::from_secs(120),
        || {
            let mut placed_total = 0;
            let mut queued_total = 0;
            let mut per_job = Vec::new();
            for j in &jobs {
                let live = live_allocs(&cluster, &j.id).len();
                let s = summary(&cluster, &j.id)?;
                if live != (s.starting + s.running) as usize {
                    return None; // read between two writes: try again
                }
                let blocked = evals_of(&cluster, &j.id)
                    .iter()
                    .any(|e| e["Status"] == "blocked");
                placed_total += live;
                queued_total += s.queued as usize;
                per_job.push((j.id.clone(), live, s.queued, blocked));
            }
            let settled = placed_total == capacity
                && per_job.iter().all(|(_, live, queued, blocked)| {
                    (*live + *queued as usize == COUNT) && (*queued == 0 || *blocked)
                });
            settled.then_some((queued_total, per_job))
        },
    );
    let (queued_total, per_job) = outcome;
    assert_eq!(queued_total, shortfall, "{per_job:?}");
    assert!(
        per_job
            .iter()
            .any(|(_, _, queued, blocked)| *queued > 0 && *blocked),
        "{per_job:?}"
    );
    assert_no_node_overcommitted(&cluster, SLOTS_PER_NODE);
    drop(nodes);
}
