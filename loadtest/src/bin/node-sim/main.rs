//! `node-sim`: thousands of client nodes in one process, talking to real servers through
//! the client agent's own code: `client_agent::agent::register_node` and `serve_node`
//! (registration, heartbeats on the servers' TTL, the blocking allocation watch, the
//! batching status reporter) over the servers' RPC addresses. Allocations run on the
//! mock driver (running after `--start-delay-ms`, no process), so the servers do the work
//! real agents cause them.
//!
//! It measures its own lag, so a run can tell whether the simulator or the servers were
//! late: heartbeats sent after they were due, the worst gap between acknowledged
//! heartbeats, watch answers applied slowly, and its runtime's scheduling delay. Once a
//! second it prints one JSON line of counters on stdout (the `c1m` harness reads them).
//!
//! `node-sim --servers 127.0.0.1:4647,127.0.0.1:4648 --nodes 1000 [--start-delay-ms 100]
//!  [--cpu 8000] [--memory-mb 16384] [--register-concurrency 64]`

mod allocs;

/// The same allocator as the `drover` binary, so the simulated nodes cost what agents do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use allocs::{AllocCounters, SimAllocs};
use anyhow::Context;
use client_agent::agent::{register_node, serve_node, LoopProbe, NodeSecret};
use client_agent::driver::{Drivers, MockDriver};
use client_agent::reporter::PendingUpdates;
use client_agent::AgentConfig;
use loadtest::arg;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The value after `name` on the command line.
fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// One node as the real fingerprint makes it, then given its own identity and the
/// simulated machine's size (the computed class stays shared, as on a uniform fleet).
fn sim_node(template: &api::Node, i: u64, cpu: i64, memory_mb: i64) -> api::Node {
    let mut n = template.clone();
    n.id = uuid::Uuid::new_v4().to_string();
    n.name = format!("sim-{i}");
    n.secret_id = String::new();
    n.attributes
        .insert("unique.hostname".into(), format!("sim-{i}"));
    n.node_resources.cpu.cpu_shares = cpu;
    n.node_resources.memory.memory_mb = memory_mb;
    n.attributes
        .insert("cpu.totalcompute".into(), cpu.to_string());
    n.attributes.insert(
        "memory.totalbytes".into(),
        (memory_mb * 1024 * 1024).to_string(),
    );
    n.computed_class = client_agent::fingerprint::computed_class(&n);
    n
}

/// Counters shared by every simulated node.
#[derive(Default)]
struct Shared {
    probe: Arc<LoopProbe>,
    allocs: Arc<AllocCounters>,
    registered: AtomicU64,
    register_max_us: AtomicU64,
    /// The worst delay of the runtime's 100 ms tick: the simulator's own starvation.
    tick_lag_max_us: AtomicU64,
}

fn line(shared: &Shared, driver: &MockDriver, t0: Instant) -> serde_json::Value {
    let p = &shared.probe;
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let ms = |a: &AtomicU64| ld(a) as f64 / 1000.0;
    let hb = ld(&p.heartbeats).max(1);
    serde_json::json!({
        "t": t0.elapsed().as_secs_f64(),
        "registered": ld(&shared.registered),
        "register_max_ms": ms(&shared.register_max_us),
        "heartbeats": ld(&p.heartbeats),
        "heartbeat_failures": ld(&p.heartbeat_failures),
        "heartbeats_late": ld(&p.heartbeats_late),
        "heartbeat_late_max_ms": ms(&p.heartbeat_late_max_us),
        "heartbeat_rtt_max_ms": ms(&p.heartbeat_rtt_max_us),
        "heartbeat_rtt_mean_ms": ld(&p.heartbeat_rtt_total_us) as f64 / 1000.0 / hb as f64,
        "heartbeat_gap_max_ms": ms(&p.heartbeat_gap_max_us),
        "watch_responses": ld(&p.watch_responses),
        "watch_waits_ended": ld(&p.watch_waits_ended),
        "watch_failures": ld(&p.watch_failures),
        "watch_apply_max_ms": ms(&p.watch_apply_max_us),
        "reports": ld(&p.reports),
        "reported_allocs": ld(&p.reported_allocs),
        "tick_lag_max_ms": ms(&shared.tick_lag_max_us),
        "allocs_received": ld(&shared.allocs.received),
        "allocs_running": ld(&shared.allocs.running),
        "allocs_stopped": ld(&shared.allocs.stopped),
        "tasks_running": driver.running(),
        "watch_answers_unchanged": ld(&shared.allocs.answers_unchanged),
        "watch_answer_allocs": ld(&shared.allocs.answer_allocs),
        "watch_answer_bytes_mean": ld(&shared.allocs.sampled_bytes) as f64
            / ld(&shared.allocs.sampled_answers).max(1) as f64,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let servers: Vec<String> = arg_str("--servers")
        .context("--servers host:port,... (the servers' RPC addresses) is required")?
        .split(',')
        .map(str::to_string)
        .collect();
    let nodes = arg("--nodes", 1000);
    let delay = Duration::from_millis(arg("--start-delay-ms", 100));
    let cpu = arg("--cpu", 8000) as i64;
    let memory_mb = arg("--memory-mb", 16384) as i64;
    let concurrency = arg("--register-concurrency", 64) as usize;

    let driver = Arc::new(MockDriver::new(delay));
    let mut drivers = Drivers::default();
    drivers.add(driver.clone());
    // The harness passes a directory inside its own, which it removes: the simulator is
    // killed, so a temporary directory of its own would outlive it.
    let tmp = match arg_str("--data-dir") {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            tempfile::Builder::new().prefix("sim-").tempdir_in(d)?
        }
        None => tempfile::Builder::new().prefix("drover-sim-").tempdir()?,
    };
    let config = AgentConfig {
        data_dir: tmp.path().to_path_buf(),
        servers: servers.clone(),
        http_addr: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let template = client_agent::fingerprint::fingerprint(&config, &drivers)
        .await
        .context("fingerprinting the template node")?;

    // One client (one connection pool) per server order: each node fails over like an
    // agent, and the nodes start on different servers, as a fleet configured with the
    // servers in different orders would.
    let clients: Vec<api::Client> = (0..servers.len())
        .map(|k| {
            let mut order = servers.clone();
            order.rotate_left(k);
            api::Client::with_addresses(&order)
        })
        .collect();
    let shutdown = CancellationToken::new();
    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();

    tokio::spawn({
        let shared = shared.clone();
        async move {
            let tick = Duration::from_millis(100);
            loop {
                let due = Instant::now() + tick;
                tokio::time::sleep(tick).await;
                let lag = Instant::now().saturating_duration_since(due);
                shared
                    .tick_lag_max_us
                    .fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
            }
        }
    });
    tokio::spawn({
        let (shared, driver) = (shared.clone(), driver.clone());
        async move {
            loop {
                println!("{}", line(&shared, &driver, t0));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });

    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..nodes {
        let node = sim_node(&template, i, cpu, memory_mb);
        let client = clients[i as usize % clients.len()].clone();
        let (shared, driver, shutdown, gate) = (
            shared.clone(),
            driver.clone(),
            shutdown.clone(),
            gate.clone(),
        );
        tasks.spawn(async move {
            let secret = NodeSecret::in_memory();
            let started = Instant::now();
            let registered = {
                let _permit = gate.acquire().await;
                register_node(&client, node, &secret, &shutdown).await
            };
            let Some((node, ttl)) = registered else {
                return;
            };
            shared
                .register_max_us
                .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            shared.registered.fetch_add(1, Ordering::Relaxed);
            let updates = PendingUpdates::new();
            let mut allocs =
                SimAllocs::new(node.clone(), driver, updates.clone(), shared.allocs.clone());
            serve_node(
                &client,
                node,
                ttl,
                &secret,
                &updates,
                &mut allocs,
                Some(shared.probe.clone()),
                &shutdown,
            )
            .await;
        });
    }

    // Runs until stdin closes (the harness dropped it) or a signal.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut buf = String::new();
        while std::io::stdin()
            .read_line(&mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            buf.clear();
        }
    });
    tokio::select! {
        _ = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("{}", line(&shared, &driver, t0));
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
