//! The `drover agent -dev` under test and the HTTP waits the measurements use.

use super::*;

pub struct Agent {
    pub base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start(bin: &Path) -> anyhow::Result<Agent> {
        let dir = tempfile::Builder::new()
            .prefix("drover-agent-load-")
            .tempdir()?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("agent.log"))?;
        let child = Command::new(bin)
            .args(["agent", "-dev", "-data-dir"])
            .arg(dir.path().join("data"))
            .args(["-http-port", &port.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting drover agent -dev")?;
        Ok(Agent {
            base: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 20 s.
    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the agent's node is ready with `driver` healthy; returns the node ID.
pub async fn wait_node(c: &reqwest::Client, base: &str, driver: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = c.get(format!("{base}/v1/nodes")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                for n in v.as_array().into_iter().flatten() {
                    let healthy = n["Drivers"][driver]["Healthy"] == true;
                    if n["Status"] == "ready" && healthy {
                        return Ok(n["ID"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no ready node with a healthy {driver} driver within 60s")
}

pub fn raw_exec_job(id: &str, count: u64) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": count,
            "EphemeralDisk": {"SizeMB": 10},
            "Tasks": [{"Name": "t", "Driver": "raw_exec",
                "Config": {"command": "/bin/sleep", "args": ["3600"]},
                "Resources": {"CPU": 10, "MemoryMB": 10}}]}]}})
}

pub fn docker_job(id: &str) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": 1,
            "EphemeralDisk": {"SizeMB": 10},
            "Tasks": [{"Name": "t", "Driver": "docker",
                "Config": {"image": IMAGE, "command": "/bin/busybox", "args": ["sleep", "3600"]},
                "Resources": {"CPU": 100, "MemoryMB": 32}}]}]}})
}

/// A job's allocations as `(ID, ClientStatus)` at a blocking-query index; waits up to
/// 5 s for the index to pass `index`.
pub async fn job_allocs(
    c: &reqwest::Client,
    base: &str,
    job: &str,
    index: u64,
) -> anyhow::Result<(Vec<(String, String)>, u64)> {
    let r = c
        .get(format!("{base}/v1/job/{job}/allocations"))
        .query(&[("index", index.to_string()), ("wait", "5s".to_string())])
        .send()
        .await?;
    let next = r
        .headers()
        .get("X-Nomad-Index")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(index);
    let v: serde_json::Value = r.error_for_status()?.json().await?;
    let allocs = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["ID"].as_str().unwrap_or_default().to_string(),
                a["ClientStatus"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Ok((allocs, next))
}

/// When a job's allocations got where they were waited for, measured from registration.
#[derive(Debug, Default)]
pub struct Reached {
    /// All `want` allocations exist (scheduled and committed).
    pub placed: Duration,
    /// The first one is in the wanted status.
    pub first: Duration,
    /// All of them are.
    pub all: Duration,
    pub ids: Vec<String>,
}

/// Waits (blocking queries) until `want` allocations of `job` are in `status`, or one
/// has failed.
pub async fn wait_status(
    c: &reqwest::Client,
    base: &str,
    job: &str,
    want: usize,
    status: &str,
    t0: Instant,
    limit: Duration,
) -> anyhow::Result<Reached> {
    let mut index = 0;
    let mut placed = None;
    let mut first = None;
    loop {
        let (allocs, next) = job_allocs(c, base, job, index).await?;
        index = next;
        if allocs.len() >= want && placed.is_none() {
            placed = Some(t0.elapsed());
        }
        let n = allocs.iter().filter(|a| a.1 == status).count();
        if n > 0 && first.is_none() {
            first = Some(t0.elapsed());
        }
        if n >= want {
            return Ok(Reached {
                placed: placed.unwrap_or_default(),
                first: first.unwrap_or_default(),
                all: t0.elapsed(),
                ids: allocs.into_iter().map(|a| a.0).collect(),
            });
        }
        if let Some(bad) = allocs.iter().find(|a| a.1 == "failed") {
            bail!("allocation {} of {job} failed", bad.0);
        }
        if t0.elapsed() > limit {
            bail!("only {n} of {want} allocations of {job} {status} after {limit:?}");
        }
    }
}

/// Stops `job` (without purging, so its allocations stay listed), then waits until none of its allocations is running.
pub async fn stop_job(c: &reqwest::Client, base: &str, job: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    c.delete(format!("{base}/v1/job/{job}"))
        .send()
        .await?
        .error_for_status()?;
    let mut index = 0;
    loop {
        let (allocs, next) = job_allocs(c, base, job, index).await?;
        index = next;
        if allocs.iter().all(|a| a.1 != "running" && a.1 != "pending") {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("{job} still has running allocations 120s after stop");
        }
    }
}

/// The agent's RSS once it has settled: the last of several samples a second apart,
/// once two in a row differ by less than 256 KiB (or after `max` samples).
pub async fn settled_rss(pid: u32, max: usize) -> u64 {
    let mut last = rss_kib(pid);
    for _ in 0..max {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = rss_kib(pid);
        if now.abs_diff(last) < 256 {
            return now;
        }
        last = now;
    }
    last
}
