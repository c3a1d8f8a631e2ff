//! `cluster-load`: start a three-server Drover cluster of real processes on loopback and
//! measure its write path: committed writes per second and commit latency (job
//! registrations and no-op writes), leader failover time, and disk and memory after many
//! writes with log compaction. Also measures the disk's own fsync latency, the floor a
//! durable write path cannot go under.
//!
//! `cargo build --release && cargo run --release -p loadtest -- [--writes N] [--concurrency C]`

use anyhow::{bail, Context};
use loadtest::{arg, dir_bytes, free_port, release_binary, rss_kib};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Server {
    http: String,
    /// The RPC listener, where the no-op bench write lives (it is not a public route).
    rpc: String,
    child: Child,
    dir: PathBuf,
}

fn start_server(
    bin: &Path,
    dir: &Path,
    http: u16,
    rpc: u16,
    join: &[String],
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["agent", "-server", "-bootstrap-expect", "3", "-data-dir"])
        .arg(dir.join("data"))
        .args([
            "-http-port",
            &http.to_string(),
            "-rpc-port",
            &rpc.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .env("DROVER_ELECTION_TIMEOUT_MS", "500")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for j in join {
        cmd.args(["-join", j]);
    }
    Ok(Server {
        http: format!("http://127.0.0.1:{http}"),
        rpc: format!("http://127.0.0.1:{rpc}"),
        child: cmd.spawn().context("starting drover")?,
        dir: dir.to_path_buf(),
    })
}

async fn leader(c: &reqwest::Client, servers: &[Server]) -> Option<usize> {
    for (i, s) in servers.iter().enumerate() {
        if let Ok(r) = c.get(format!("{}/v1/agent/self", s.http)).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["Stats"]["raft"]["state"] == "Leader" {
                    return Some(i);
                }
            }
        }
    }
    None
}

async fn wait_leader(c: &reqwest::Client, servers: &[Server]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(l) = leader(c, servers).await {
            return Ok(l);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no leader within 30s")
}

fn job(n: u64) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": format!("load-{n}"), "Type": "batch", "Meta": {"n": n.to_string()},
        "TaskGroups": [{"Name": "g", "Count": 0, "Tasks": [{
            "Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]}})
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Job,
    Noop,
}

/// Fire `n` writes with `conc` in flight at `server` (jobs to its HTTP API, no-ops to
/// its RPC listener); returns (writes/s, sorted latencies).
async fn run_writes(
    c: &reqwest::Client,
    server: &Server,
    kind: Kind,
    start: u64,
    n: u64,
    conc: usize,
) -> (f64, Vec<Duration>) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(start));
    let end = start + n;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let base = match kind {
            Kind::Job => server.http.clone(),
            Kind::Noop => server.rpc.clone(),
        };
        let (c, next) = (c.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= end {
                    return lat;
                }
                let t = Instant::now();
                let r = match kind {
                    Kind::Job => c.put(format!("{base}/v1/jobs")).json(&job(i)).send().await,
                    Kind::Noop => {
                        c.put(format!("{base}/v1/internal/bench/noop"))
                            .json(&serde_json::json!({}))
                            .send()
                            .await
                    }
                };
                if matches!(r, Ok(ref r) if r.status().is_success()) {
                    lat.push(t.elapsed());
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let secs = t0.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / secs, all)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// p50/p99 of write(4 KiB) + fdatasync on the directory's disk.
fn fsync_latency(dir: &Path) -> (Duration, Duration) {
    use std::io::Write;
    use std::os::unix::io::AsRawFd;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let buf = [7u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        f.write_all(&buf).unwrap();
        unsafe { libc::fdatasync(f.as_raw_fd()) };
        lat.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

/// The measurement, phase after phase against one running cluster (hence its length:
/// the phases share the cluster and print in order).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = release_binary("cargo build --release")?;
    let writes = arg("--writes", 20_000);
    let total = arg("--total", 100_000);
    let conc = arg("--concurrency", 64) as usize;
    let tmp = tempfile::Builder::new().prefix("drover-load-").tempdir()?;
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let joins: Vec<String> = ports
        .iter()
        .map(|(_, r)| format!("127.0.0.1:{r}"))
        .collect();
    let mut servers = Vec::new();
    for (i, (h, r)) in ports.iter().enumerate() {
        servers.push(start_server(
            &bin,
            &tmp.path().join(format!("s{i}")),
            *h,
            *r,
            &joins,
        )?);
    }
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(conc)
        .build()?;
    let l = wait_leader(&c, &servers).await?;
    let (f50, f99) = fsync_latency(tmp.path());
    println!(
        "machine: {} cores; disk fsync (4 KiB write + fdatasync): p50 {f50:?}, p99 {f99:?}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // Warm up connections and the leader.
    run_writes(&c, &servers[l], Kind::Noop, 0, 500, conc).await;
    let (noop_rate, noop_lat) = run_writes(&c, &servers[l], Kind::Noop, 0, writes, conc).await;
    println!(
        "no-op writes: {noop_rate:.0}/s, commit latency p50 {:?} p99 {:?} ({conc} in flight)",
        pct(&noop_lat, 0.5),
        pct(&noop_lat, 0.99)
    );
    let (job_rate, job_lat) = run_writes(&c, &servers[l], Kind::Job, 0, writes, conc).await;
    println!(
        "job registrations: {job_rate:.0}/s, latency p50 {:?} p99 {:?} ({conc} in flight)",
        pct(&job_lat, 0.5),
        pct(&job_lat, 0.99)
    );
    let (one_rate, one_lat) = run_writes(&c, &servers[l], Kind::Noop, 0, 2000, 1).await;
    println!(
        "no-op writes, one at a time: {one_rate:.0}/s, latency p50 {:?} p99 {:?}",
        pct(&one_lat, 0.5),
        pct(&one_lat, 0.99)
    );

    // Fill up to `total` writes, then read disk and memory.
    let done = 500 + 2 * writes + 2000;
    if total > done {
        run_writes(&c, &servers[l], Kind::Noop, 0, total - done, conc).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, s) in servers.iter().enumerate() {
        println!(
            "server {i}: RSS {} MiB, data dir {} MiB after {total} writes",
            rss_kib(s.child.id()) / 1024,
            dir_bytes(&s.dir.join("data")) / (1024 * 1024)
        );
    }

    // Failover: kill -9 the leader, time until a write commits again.
    let l = wait_leader(&c, &servers).await?;
    servers[l].child.kill()?;
    let killed = Instant::now();
    let others: Vec<String> = servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != l)
        .map(|(_, s)| s.rpc.clone())
        .collect();
    let fast = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let failover = loop {
        let mut ok = false;
        for base in &others {
            if let Ok(r) = fast
                .put(format!("{base}/v1/internal/bench/noop"))
                .json(&serde_json::json!({}))
                .send()
                .await
            {
                ok |= r.status().is_success();
            }
        }
        if ok {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(60) {
            bail!("no write committed within 60s of the leader's death");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("leader failover (kill -9 to first committed write, election timeout 500-1000 ms): {failover:?}");
    for mut s in servers {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
    Ok(())
}
