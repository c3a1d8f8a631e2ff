//! `c1m`: the C1M harness (issue 15). Three real servers on loopback plus the node
//! simulator (`node-sim`, a separate process) registering N nodes through the agent's
//! routes; J service jobs of C allocations are registered, and the harness reports the
//! time to all placed and all running, the placement rate over time (first 10% against
//! last 10%), p99 of reads (`GET /v1/jobs`) and of a small job registration issued during
//! the run, nodes marked down (must be 0), server RSS, data dir size and CPU seconds per
//! placement, and the simulator's own lag. A run where the simulator lagged or a node
//! went down does not count, and says so.
//!
//! Build, then run a rung of the ladder (bin-pack by default; `--algorithm spread` sets
//! the scheduler's algorithm to spread):
//!
//! ```text
//! cargo build --release -p drover -p loadtest
//! target/release/c1m --scale c10k     # 10 jobs x 1,000 allocs on 1,000 nodes (seconds)
//! target/release/c1m --scale c100k    # 100 jobs x 1,000 allocs on 5,000 nodes
//! target/release/c1m --scale c1m      # 1,000 jobs x 1,000 allocs on 5,000 nodes
//! ```
//!
//! `--jobs`, `--count`, `--nodes`, `--timeout-s`, `--start-delay-ms`, `--sample-ms`
//! override a rung; `--save-snapshot FILE` writes the leader's state at the end (what
//! `server`'s `state_memory` example weighs); `--election-timeout-ms` sets the servers' Raft election timeout; `--idle-s N` first measures
//! N seconds of the servers' CPU with every node registered and watching and no job;
//! `--memory-breakdown` ends the run by measuring the servers' RSS with the simulator
//! gone and a follower's after a restart from its data dir (the state alone).
//! `DROVER_BIN` names the `drover` binary (default `target/release/drover`),
//! `NODE_SIM_BIN` the simulator (default: beside this binary).
//! `loadtest/tests/c10k.rs` runs C10K against the debug build in CI. Exit status 0 only
//! when every allocation runs and no node was marked down.

mod cluster;

use anyhow::bail;
use cluster::{cpu_seconds, rss_mib, Server, Sim};
use loadtest::dir_bytes;
use loadtest::{arg, release_binary};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The value after `name` on the command line.
fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

struct Scale {
    jobs: u64,
    count: u64,
    nodes: u64,
}

fn scale() -> anyhow::Result<Scale> {
    let name = arg_str("--scale").unwrap_or_else(|| "c10k".into());
    let (jobs, count, nodes) = match name.as_str() {
        "c10k" => (10, 1000, 1000),
        "c100k" => (100, 1000, 5000),
        "c1m" => (1000, 1000, 5000),
        other => bail!("unknown --scale {other:?}: use c10k, c100k or c1m"),
    };
    Ok(Scale {
        jobs: arg("--jobs", jobs),
        count: arg("--count", count),
        nodes: arg("--nodes", nodes),
    })
}

/// A service job of `count` allocations of one mock task (small enough that 400 fit a
/// simulated node by CPU and 512 by memory).
fn job(id: &str, count: u64) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": count, "Tasks": [{
            "Name": "t", "Driver": "mock_driver", "Config": {},
            "Resources": {"CPU": 20, "MemoryMB": 32}}]}]}})
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// One look at the load jobs: (seconds since the first registration, placed, running).
type Sample = (f64, u64, u64);

/// Sums the load jobs' summaries in a `GET /v1/jobs` answer: allocations placed and
/// live (starting, running or unknown), running, and ended (complete, failed, lost:
/// none should, so any are extra placements the servers stopped or lost).
fn count_allocs(jobs: &serde_json::Value) -> (u64, u64, u64) {
    let (mut placed, mut running, mut ended) = (0, 0, 0);
    for j in jobs.as_array().into_iter().flatten() {
        if !j["ID"].as_str().unwrap_or("").starts_with("c1m-") {
            continue;
        }
        for g in j["JobSummary"]["Summary"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            let n = |k: &str| g[k].as_u64().unwrap_or(0);
            running += n("Running");
            placed += n("Running") + n("Starting") + n("Unknown");
            ended += n("Complete") + n("Failed") + n("Lost");
        }
    }
    (placed, running, ended)
}

/// When the samples first reached `target` placed, interpolated between two samples.
fn time_to(samples: &[Sample], target: u64, pick: impl Fn(&Sample) -> u64) -> Option<f64> {
    let mut prev = (0.0, 0u64);
    for s in samples {
        let v = pick(s);
        if v >= target {
            let (t0, v0) = prev;
            if v == v0 {
                return Some(s.0);
            }
            return Some(t0 + (s.0 - t0) * (target - v0) as f64 / (v - v0) as f64);
        }
        prev = (s.0, v);
    }
    None
}

/// What the run saw while it ran, filled in by the sampler tasks.
#[derive(Default)]
struct Observed {
    samples: Vec<Sample>,
    reads: Vec<Duration>,
    /// Reads answered with an error or not at all (a follower's relay timing out).
    read_errors: u64,
    registrations: Vec<Duration>,
    registration_errors: u64,
    max_down: u64,
    /// Load allocations that ended (see [`count_allocs`]), at the last sample.
    ended: u64,
    peak_rss_mib: Vec<f64>,
}

async fn nodes_status(c: &reqwest::Client, http: &str) -> anyhow::Result<(u64, u64)> {
    let v: serde_json::Value = c
        .get(format!("{http}/v1/nodes"))
        .send()
        .await?
        .json()
        .await?;
    let (mut ready, mut down) = (0, 0);
    for n in v.as_array().into_iter().flatten() {
        match n["Status"].as_str() {
            Some("ready") => ready += 1,
            Some("down") => down += 1,
            _ => {}
        }
    }
    Ok((ready, down))
}

/// The sampler: reads the job list (a read latency sample and the placement count),
/// the servers' memory, and now and then the nodes' statuses, until `stop`.
async fn sample_loop(
    c: reqwest::Client,
    http: Vec<String>,
    pids: Vec<u32>,
    t0: Instant,
    every: Duration,
    obs: Arc<Mutex<Observed>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut n = 0u64;
    while !stop.is_cancelled() {
        let target = &http[n as usize % http.len()];
        let sent = Instant::now();
        let jobs = async {
            c.get(format!("{target}/v1/jobs"))
                .send()
                .await?
                .error_for_status()?
                .json::<serde_json::Value>()
                .await
        }
        .await;
        let took = sent.elapsed();
        if jobs.is_err() {
            obs.lock().unwrap_or_else(|e| e.into_inner()).read_errors += 1;
        }
        if let Ok(jobs) = jobs {
            let (placed, running, ended) = count_allocs(&jobs);
            let mut o = obs.lock().unwrap_or_else(|e| e.into_inner());
            o.ended = ended;
            o.reads.push(took);
            o.samples
                .push((t0.elapsed().as_secs_f64(), placed, running));
            for (i, pid) in pids.iter().enumerate() {
                o.peak_rss_mib[i] = o.peak_rss_mib[i].max(rss_mib(*pid));
            }
        }
        if n.is_multiple_of(5) {
            if let Ok((_, down)) = nodes_status(&c, &http[0]).await {
                let mut o = obs.lock().unwrap_or_else(|e| e.into_inner());
                o.max_down = o.max_down.max(down);
            }
        }
        n += 1;
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(every.saturating_sub(sent.elapsed())) => {}
        }
    }
}

/// Registers a 10-allocation job every two seconds and times the API call.
async fn probe_loop(
    c: reqwest::Client,
    http: Vec<String>,
    obs: Arc<Mutex<Observed>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut k = 0usize;
    while !stop.is_cancelled() {
        let target = &http[k % http.len()];
        let t = Instant::now();
        let r = c
            .put(format!("{target}/v1/jobs"))
            .json(&job(&format!("probe-{k}"), 10))
            .send()
            .await;
        let ok = matches!(r, Ok(ref r) if r.status().is_success());
        {
            let mut o = obs.lock().unwrap_or_else(|e| e.into_inner());
            if ok {
                o.registrations.push(t.elapsed());
            } else {
                o.registration_errors += 1;
            }
        }
        k += 1;
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// The server's Raft term (0 when it does not answer).
async fn raft_term(c: &reqwest::Client, http: &str) -> u64 {
    raft_stat(c, http, "term").await
}

/// A number from `GET /v1/agent/self`'s `Stats.raft` (0 when the server does not answer).
async fn raft_stat(c: &reqwest::Client, http: &str, key: &str) -> u64 {
    let v: serde_json::Value = match c.get(format!("{http}/v1/agent/self")).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => return 0,
    };
    v["Stats"]["raft"][key]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// RSS once it stops moving (within 1% over two seconds, 30 s at most): memory the
/// allocator frees goes back to the system a moment later.
async fn settled_rss_mib(pid: u32) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = rss_mib(pid);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = rss_mib(pid);
        if (now - last).abs() <= last * 0.01 || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Where the servers' memory is, after the run (`--memory-breakdown`): their RSS with
/// the simulator gone (its connections and watches closed), and a follower's after it
/// is restarted from its data dir and has caught up with the leader (the state alone,
/// as loaded from the snapshot and the log after it).
async fn memory_breakdown(
    c: &reqwest::Client,
    servers: &mut [Server],
    bin: &std::path::Path,
    leader: usize,
) -> anyhow::Result<()> {
    let mut quiet = Vec::new();
    for s in servers.iter() {
        quiet.push(format!("{:.0}", settled_rss_mib(s.pid()).await));
    }
    println!(
        "  memory: servers' RSS with the simulator gone: {} MiB",
        quiet.join(", ")
    );
    let f = (leader + 1) % servers.len();
    let target = raft_stat(c, &servers[leader].http, "applied_index").await;
    let started = Instant::now();
    servers[f].restart(bin)?;
    let deadline = started + Duration::from_secs(300);
    while raft_stat(c, &servers[f].http, "applied_index").await < target {
        if Instant::now() > deadline {
            bail!("server {f} had not caught up 300 s after its restart");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = started.elapsed();
    println!(
        "  memory: server {f} restarted from its data dir caught up in {:.1} s; RSS {:.0} MiB (peak {:.0})",
        caught_up.as_secs_f64(),
        settled_rss_mib(servers[f].pid()).await,
        loadtest::status_kib(servers[f].pid(), "VmHWM:") as f64 / 1024.0
    );
    Ok(())
}

/// Best effort: the servers' own timers from `GET /v1/metrics` (when the build has it).
async fn server_timers(c: &reqwest::Client, http: &str) -> Vec<String> {
    let Ok(r) = c.get(format!("{http}/v1/metrics")).send().await else {
        return vec![];
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return vec![];
    };
    v["Samples"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Count"].as_u64().unwrap_or(0) > 0)
        .map(|s| {
            format!(
                "  {} count {} mean {:.2} ms max {:.2} ms sum {:.1} s",
                s["Name"].as_str().unwrap_or("?"),
                s["Count"],
                s["Mean"].as_f64().unwrap_or(0.0),
                s["Max"].as_f64().unwrap_or(0.0),
                s["Sum"].as_f64().unwrap_or(0.0) / 1000.0
            )
        })
        .collect()
}

fn sim_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(p) = std::env::var("NODE_SIM_BIN") {
        return Ok(p.into());
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("node-sim");
    anyhow::ensure!(
        p.exists(),
        "{} not found: run `cargo build --release -p loadtest` (or set NODE_SIM_BIN)",
        p.display()
    );
    Ok(p)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sc = scale()?;
    let total = sc.jobs * sc.count;
    let timeout = Duration::from_secs(arg("--timeout-s", 900));
    let every = Duration::from_millis(arg("--sample-ms", 500));
    let algorithm = arg_str("--algorithm").unwrap_or_else(|| "binpack".into());
    let bin = release_binary("cargo build --release -p drover -p loadtest")?;
    let sim_bin = sim_binary()?;
    let tmp = tempfile::Builder::new().prefix("drover-c1m-").tempdir()?;
    println!(
        "c1m: {} jobs x {} allocs = {total} on {} nodes, {algorithm}; {} cores, load {}; servers {}",
        sc.jobs,
        sc.count,
        sc.nodes,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load(),
        bin.display()
    );

    let election = arg_str("--election-timeout-ms").and_then(|v| v.parse().ok());
    let schedulers = arg_str("--schedulers").and_then(|v| v.parse().ok());
    let mut servers = cluster::start_servers(&bin, tmp.path(), election, schedulers)?;
    let res = run(
        &sc,
        &servers,
        &sim_bin,
        tmp.path(),
        timeout,
        every,
        &algorithm,
    )
    .await;
    if res.is_ok() && std::env::args().any(|a| a == "--memory-breakdown") {
        let c = reqwest::Client::new();
        let leader = cluster::wait_leader(&c, &servers).await?;
        memory_breakdown(&c, &mut servers, &bin, leader).await?;
    }
    for s in &mut servers {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
    if std::env::var_os("C1M_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
    let ok = res?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// The run against a started cluster; `Ok(false)` when it did not complete cleanly.
async fn run(
    sc: &Scale,
    servers: &[Server],
    sim_bin: &std::path::Path,
    dir: &std::path::Path,
    timeout: Duration,
    every: Duration,
    algorithm: &str,
) -> anyhow::Result<bool> {
    let total = sc.jobs * sc.count;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let leader = cluster::wait_leader(&c, servers).await?;
    let http: Vec<String> = servers.iter().map(|s| s.http.clone()).collect();
    if algorithm != "binpack" {
        let r = c
            .put(format!(
                "{}/v1/operator/scheduler/configuration",
                http[leader]
            ))
            .json(&serde_json::json!({"SchedulerAlgorithm": algorithm}))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "setting the scheduler algorithm: {}",
            r.text().await?
        );
    }

    // The simulator, and every node ready before the first job.
    let rpc: Vec<String> = servers.iter().map(|s| s.rpc_addr.clone()).collect();
    let mut sim = Sim::start(
        sim_bin,
        &[
            "--servers".into(),
            rpc.join(","),
            "--nodes".into(),
            sc.nodes.to_string(),
            "--start-delay-ms".into(),
            arg("--start-delay-ms", 100).to_string(),
            "--data-dir".into(),
            dir.join("node-sim").display().to_string(),
        ],
        &dir.join("node-sim.log"),
    )?;
    let reg_start = Instant::now();
    loop {
        let (ready, _) = nodes_status(&c, &http[leader]).await.unwrap_or((0, 0));
        if ready >= sc.nodes {
            break;
        }
        if reg_start.elapsed() > Duration::from_secs(300) {
            let _ = sim.child.kill();
            bail!("only {ready} of {} nodes ready after 300 s", sc.nodes);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "nodes: {} ready in {:.1} s (worst registration {:.0} ms); load {}",
        sc.nodes,
        reg_start.elapsed().as_secs_f64(),
        sim.stat("register_max_ms"),
        load()
    );

    let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    // What every node heartbeating and watching costs the servers before any job runs.
    let idle_s: u64 = arg("--idle-s", 0);
    if idle_s > 0 {
        let cpu: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
        let answers = sim.stat("watch_responses");
        let beats = sim.stat("heartbeats");
        tokio::time::sleep(Duration::from_secs(idle_s)).await;
        let used: Vec<String> = pids
            .iter()
            .zip(&cpu)
            .enumerate()
            .map(|(i, (p, c0))| {
                let pct = (cpu_seconds(*p) - c0) / idle_s as f64 * 100.0;
                format!("{pct:.1}%{}", if i == leader { " (leader)" } else { "" })
            })
            .collect();
        println!(
            "idle for {idle_s} s with {} nodes heartbeating and watching: server CPU {} of a core; {:.0} heartbeats, {:.0} watch answers",
            sc.nodes,
            used.join(", "),
            sim.stat("heartbeats") - beats,
            sim.stat("watch_responses") - answers,
        );
    }
    // What the servers hold with every node registered and watching and no allocation:
    // the baseline the memory per allocation is counted from.
    let rss0: Vec<String> = pids.iter().map(|p| format!("{:.0}", rss_mib(*p))).collect();
    println!("servers' RSS before the first job: {} MiB", rss0.join(", "));
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let sim_cpu0 = cpu_seconds(sim.child.id());
    let obs = Arc::new(Mutex::new(Observed {
        peak_rss_mib: vec![0.0; servers.len()],
        ..Default::default()
    }));
    let stop = tokio_util::sync::CancellationToken::new();
    let t0 = Instant::now();
    let sampler = tokio::spawn(sample_loop(
        c.clone(),
        http.clone(),
        pids.clone(),
        t0,
        every,
        obs.clone(),
        stop.clone(),
    ));
    let prober = tokio::spawn(probe_loop(
        c.clone(),
        http.clone(),
        obs.clone(),
        stop.clone(),
    ));

    // Register the load jobs, a few in flight, across the servers.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let term0 = raft_term(&c, &http[leader]).await;
    let mut submitters = Vec::new();
    for _ in 0..4 {
        let (c, http, next, retries, count, jobs) = (
            c.clone(),
            http.clone(),
            next.clone(),
            retries.clone(),
            sc.count,
            sc.jobs,
        );
        submitters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs {
                    return Ok::<_, anyhow::Error>(());
                }
                // As a user would: retry (another server) when the cluster has no
                // leader for a moment; the retries are reported.
                let mut attempt = 0;
                loop {
                    let target = &http[(i as usize + attempt) % http.len()];
                    let r = c
                        .put(format!("{target}/v1/jobs"))
                        .json(&job(&format!("c1m-{i}"), count))
                        .send()
                        .await;
                    let why = match r {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) => r.text().await.unwrap_or_default(),
                        Err(e) => e.to_string(),
                    };
                    attempt += 1;
                    retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    anyhow::ensure!(attempt < 30, "registering c1m-{i}: {why}");
                    eprintln!("registering c1m-{i} failed (retrying): {why}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    for s in submitters {
        s.await??;
    }
    let submitted = t0.elapsed();
    println!(
        "submitted {} jobs in {:.1} s ({} retried registrations)",
        sc.jobs,
        submitted.as_secs_f64(),
        retries.load(std::sync::atomic::Ordering::Relaxed)
    );

    // Until every allocation runs (or the time is up).
    let mut last_print = Instant::now();
    let complete = loop {
        let (placed, running) = {
            let o = obs.lock().unwrap_or_else(|e| e.into_inner());
            o.samples.last().map(|s| (s.1, s.2)).unwrap_or((0, 0))
        };
        if running >= total {
            break true;
        }
        if t0.elapsed() > timeout {
            break false;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "  {:>5.0} s: placed {placed}, running {running}; load {}; sim heartbeat late max {:.0} ms, tick lag max {:.0} ms",
                t0.elapsed().as_secs_f64(),
                load(),
                sim.stat("heartbeat_late_max_ms"),
                sim.stat("tick_lag_max_ms")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let run_secs = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| cpu_seconds(*p) - c0)
        .collect();
    let sim_cpu = cpu_seconds(sim.child.id()) - sim_cpu0;
    let sim_rss = rss_mib(sim.child.id());
    let sim_peak = loadtest::status_kib(sim.child.id(), "VmHWM:") as f64 / 1024.0;
    // A last look at the nodes, a few heartbeats after the end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let _ = sampler.await;
    let _ = prober.await;
    let (_, down_now) = nodes_status(&c, &http[leader]).await.unwrap_or((0, 0));
    let mut term1 = 0;
    for h in &http {
        term1 = term1.max(raft_term(&c, h).await);
    }
    let timers = server_timers(&c, &http[leader]).await;
    if let Some(path) = arg_str("--save-snapshot") {
        // The leader's state, for `cargo run --release -p server --example state_memory`.
        let body = c
            .get(format!("{}/v1/operator/snapshot", http[leader]))
            .send()
            .await?
            .bytes()
            .await?;
        std::fs::write(&path, &body)?;
        println!("snapshot: {} bytes written to {path}", body.len());
    }
    let s = sim.latest();
    drop(sim.child.stdin.take());
    let _ = sim.child.kill();
    let _ = sim.child.wait();

    let mut o = obs.lock().unwrap_or_else(|e| e.into_inner());
    let placed_at = |f: f64| time_to(&o.samples, (total as f64 * f) as u64, |s| s.1);
    let all_placed = placed_at(1.0);
    let all_running = time_to(&o.samples, total, |s| s.2);
    let tenth = total as f64 / 10.0;
    let first_rate = placed_at(0.1).map(|t| tenth / t);
    let last_rate = match (placed_at(0.9), all_placed) {
        (Some(a), Some(b)) if b > a => Some(tenth / (b - a)),
        _ => None,
    };
    let placed_final = o.samples.last().map(|s| s.1).unwrap_or(0);
    let down = o.max_down.max(down_now);
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    println!(
        "\nresults ({} samples, load at end {}):",
        o.samples.len(),
        load()
    );
    println!(
        "  all placed {} s, all running {} s (jobs submitted in {:.1} s); {placed_final} of {total} placed",
        f(all_placed),
        f(all_running),
        submitted.as_secs_f64()
    );
    if o.ended > 0 {
        println!(
            "  {} allocations of the load jobs ended (complete, failed or lost): extra placements the servers stopped, or lost ones",
            o.ended
        );
    }
    println!(
        "  placement rate: first 10% {}/s, last 10% {}/s, overall {}/s",
        f(first_rate),
        f(last_rate),
        f(all_placed.map(|t| total as f64 / t))
    );
    let (read_errors, registration_errors) = (o.read_errors, o.registration_errors);
    let reads = o.reads.len();
    let regs = o.registrations.len();
    println!(
        "  p99 GET /v1/jobs {:?} ({reads} reads, {} failed); p99 10-alloc job registration {:?} ({regs}, {} failed)",
        pct(&mut o.reads, 0.99),
        read_errors,
        pct(&mut o.registrations, 0.99),
        registration_errors
    );
    println!(
        "  nodes marked down: {down}; Raft term {term0} -> {term1} ({} elections during the run)",
        term1.saturating_sub(term0)
    );
    for (i, srv) in servers.iter().enumerate() {
        let data = dir_bytes(&srv.dir.join("data"));
        println!(
            "  server {i}{}: RSS {:.0} MiB (peak {:.0}), data dir {:.1} MiB, CPU {:.1} s = {:.1} µs per placement",
            if i == leader { " (leader)" } else { "" },
            rss_mib(srv.pid()),
            o.peak_rss_mib[i],
            data as f64 / 1048576.0,
            cpu[i],
            cpu[i] * 1e6 / placed_final.max(1) as f64
        );
    }
    let g = |k: &str| s[k].as_f64().unwrap_or(0.0);
    println!(
        "  simulator: RSS {sim_rss:.0} MiB (peak {sim_peak:.0}); CPU {sim_cpu:.1} s; heartbeats {} ({} failed, {} late > 1 s), late max {:.0} ms, rtt mean {:.1} ms max {:.0} ms, gap max {:.0} ms; watch answers {} (failed {}), apply max {:.1} ms; reports {} ({} alloc updates); runtime tick lag max {:.0} ms",
        g("heartbeats"), g("heartbeat_failures"), g("heartbeats_late"),
        g("heartbeat_late_max_ms"), g("heartbeat_rtt_mean_ms"), g("heartbeat_rtt_max_ms"),
        g("heartbeat_gap_max_ms"), g("watch_responses"), g("watch_failures"),
        g("watch_apply_max_ms"), g("reports"), g("reported_allocs"), g("tick_lag_max_ms")
    );
    let answers = g("watch_responses").max(1.0);
    println!(
        "  watch answers: {:.0}, {:.0} with nothing new ({:.0}%; {:.0} at the index asked from: a wait that ran out, not a wake-up), {:.1} allocations and ~{:.0} KiB each on average; {:.2} answers per placement",
        g("watch_responses"),
        g("watch_answers_unchanged"),
        100.0 * g("watch_answers_unchanged") / answers,
        g("watch_waits_ended"),
        g("watch_answer_allocs") / answers,
        g("watch_answer_bytes_mean") / 1024.0,
        g("watch_responses") / placed_final.max(1) as f64
    );
    if !timers.is_empty() {
        println!("  leader's timers (GET /v1/metrics):");
        for t in &timers {
            println!("{t}");
        }
    }
    let sim_lagged = g("heartbeat_late_max_ms") > 1000.0 || g("tick_lag_max_ms") > 1000.0;
    let verdict = match (complete, down, sim_lagged) {
        (false, _, _) => "DOES NOT COUNT: not every allocation ran within the timeout",
        (_, d, _) if d > 0 => "DOES NOT COUNT: nodes were marked down",
        (_, _, true) => {
            "DOES NOT COUNT: the simulator lagged (a heartbeat or its runtime over 1 s late)"
        }
        _ => "counts",
    };
    println!("  verdict: {verdict}");
    println!(
        "RESULT {}",
        serde_json::json!({
            "total": total, "placed": placed_final, "complete": complete, "ended": o.ended,
            "nodes_down": down, "sim_lagged": sim_lagged,
            "all_placed_s": all_placed, "all_running_s": all_running,
            "run_s": run_secs,
        })
    );
    Ok(complete && down == 0)
}
