//! `agent-load`: start one `drover agent -dev` (a server and a client in one process) from
//! the release binary and measure its client side: time from job registration to task
//! running for one docker task and for N raw_exec tasks at once, against the floors on
//! the same machine (`docker run -d` and a bare fork+exec), and the agent's memory idle
//! and with N running tasks, with a count of the processes it keeps per task.
//!
//! The docker image is built locally from Debian's static busybox (never pulled) and
//! kept as `drover-bench-busybox:1`; everything else it starts (the agent, the jobs'
//! tasks and containers, the floor containers, the temp data dir) is removed on exit.
//!
//! `cargo build --release -p drover -p loadtest && target/release/agent-load [--tasks 100] [--docker-runs 3]`

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "drover-bench-busybox:1";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// One line of `/proc/<pid>/status` in KiB (`VmRSS:` and the like); 0 when gone.
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// `(pid, ppid, comm, start time)` of every process, from `/proc/<pid>/stat`.
fn processes() -> Vec<(u32, u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let comm = text[open + 1..close].to_string();
        let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
        // fields[0] is field 3 (state): ppid is field 4, start time field 22.
        let ppid = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        let start = fields.get(19).and_then(|v| v.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, comm, start));
    }
    out
}

/// Every descendant of `root` (not `root` itself), as `(pid, ppid, comm, start time)`.
fn descendants(root: u32) -> Vec<(u32, u32, String, u64)> {
    let all = processes();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for pr in all.iter().filter(|x| x.1 == p) {
            frontier.push(pr.0);
            found.push(pr.clone());
        }
    }
    found
}

/// A bare fork+exec of /bin/true, spawn to wait: the floor under starting any process.
fn fork_exec_floor(n: usize) -> Duration {
    let mut lat = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let st = Command::new("/bin/true").status();
        lat.push(t.elapsed());
        assert!(matches!(st, Ok(s) if s.success()), "/bin/true failed");
    }
    median(lat)
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !o.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Builds [`IMAGE`] (`FROM scratch` + /bin/busybox) from a temp context; never pulls.
fn build_image() -> anyhow::Result<()> {
    anyhow::ensure!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing (apt-get install busybox-static)"
    );
    let ctx = tempfile::Builder::new()
        .prefix("drover-bench-image-")
        .tempdir()?;
    std::fs::copy("/bin/busybox", ctx.path().join("busybox"))?;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sh\"]\n",
    )?;
    docker(&["build", "-q", "-t", IMAGE, &ctx.path().to_string_lossy()])?;
    Ok(())
}

/// `docker run --rm -d IMAGE busybox sleep 1`: (CLI return time, time until `docker
/// inspect` says running). `-d` returns once the container has started, so the two are
/// nearly the same; the second costs one more CLI round trip.
fn docker_run_floor(i: usize) -> anyhow::Result<(Duration, Duration)> {
    let name = format!("drover-bench-floor-{}-{i}", std::process::id());
    let t = Instant::now();
    let run = docker(&[
        "run",
        "--rm",
        "-d",
        "--name",
        &name,
        IMAGE,
        "/bin/busybox",
        "sleep",
        "1",
    ]);
    let returned = t.elapsed();
    if let Err(e) = run {
        let _ = docker(&["rm", "-f", &name]);
        return Err(e);
    }
    let running = loop {
        match docker(&["inspect", "-f", "{{.State.Running}}", &name]) {
            Ok(s) if s == "true" => break t.elapsed(),
            // Already exited and removed: it did run.
            Err(_) => break t.elapsed(),
            _ if t.elapsed() > Duration::from_secs(30) => bail!("{name} never ran"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let _ = docker(&["rm", "-f", &name]);
    Ok((returned, running))
}

struct Agent {
    base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(bin: &Path) -> anyhow::Result<Agent> {
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 20 s.
    fn stop(mut self) {
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
async fn wait_node(c: &reqwest::Client, base: &str, driver: &str) -> anyhow::Result<String> {
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

fn raw_exec_job(id: &str, count: u64) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": count,
            "EphemeralDisk": {"SizeMB": 10},
            "Tasks": [{"Name": "t", "Driver": "raw_exec",
                "Config": {"command": "/bin/sleep", "args": ["3600"]},
                "Resources": {"CPU": 10, "MemoryMB": 10}}]}]}})
}

fn docker_job(id: &str) -> serde_json::Value {
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
async fn job_allocs(
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
struct Reached {
    /// All `want` allocations exist (scheduled and committed).
    placed: Duration,
    /// The first one is in the wanted status.
    first: Duration,
    /// All of them are.
    all: Duration,
    ids: Vec<String>,
}

/// Waits (blocking queries) until `want` allocations of `job` are in `status`, or one
/// has failed.
async fn wait_status(
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
async fn stop_job(c: &reqwest::Client, base: &str, job: &str) -> anyhow::Result<Duration> {
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
async fn settled_rss(pid: u32, max: usize) -> u64 {
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

struct Results {
    rows: Vec<(String, String)>,
}

impl Results {
    fn add(&mut self, what: impl Into<String>, figure: impl Into<String>) {
        let (what, figure) = (what.into(), figure.into());
        println!("{what}: {figure}");
        self.rows.push((what, figure));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = std::env::var("DROVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/release/drover"));
    anyhow::ensure!(
        bin.exists(),
        "{} not found: run `cargo build --release -p drover` first",
        bin.display()
    );
    let tasks = arg("--tasks", 100) as usize;
    let docker_runs = arg("--docker-runs", 3) as usize;
    let mut res = Results { rows: Vec::new() };
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // Floors first, with nothing else of ours running.
    let fork = fork_exec_floor(100);
    res.add(
        "floor: fork+exec of /bin/true (spawn to exit), median of 100",
        ms(fork),
    );
    let docker_ok = match build_image() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("\n!!!!! docker rows SKIPPED: {e} !!!!!\n");
            false
        }
    };
    if docker_ok {
        let mut ret = Vec::new();
        let mut run = Vec::new();
        for i in 0..docker_runs.max(1) {
            let (r, u) = docker_run_floor(i)?;
            ret.push(r);
            run.push(u);
        }
        res.add(
            format!(
                "floor: `docker run --rm -d` until running, median of {}",
                run.len()
            ),
            format!("{} (CLI returned: {})", ms(median(run)), ms(median(ret))),
        );
    }

    let agent = Agent::start(&bin)?;
    let outcome = measure_agent(&agent, tasks, docker_ok, docker_runs, &mut res).await;
    if outcome.is_err() {
        eprintln!("agent log tail:\n{}", tail(&agent.log(), 40));
    }
    let mut task_pids = outcome.as_ref().map(|o| o.clone()).unwrap_or_default();
    task_pids.extend(descendants(agent.pid()).into_iter().map(|p| (p.0, p.3)));
    agent.stop();
    // Tasks outlive their agent by design (a restarted agent reattaches); the jobs were
    // stopped above, so anything of ours still alive here is killed by pid.
    let alive: Vec<_> = processes()
        .into_iter()
        .filter(|p| task_pids.iter().any(|t| t.0 == p.0 && t.1 == p.3))
        .collect();
    for p in &alive {
        unsafe { libc::kill(p.0 as i32, libc::SIGKILL) };
    }
    if !alive.is_empty() {
        eprintln!(
            "killed {} task processes left after the job stop",
            alive.len()
        );
    }
    outcome?;

    println!("\n| what | figure |\n|---|---|");
    for (what, figure) in &res.rows {
        println!("| {what} | {figure} |");
    }
    if docker_ok {
        println!("\n(image {IMAGE} kept; `docker rmi {IMAGE}` removes it)");
    }
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Everything measured against the running agent. Returns the (pid, start time) of
/// every task process it saw, so the caller can make sure none outlives the run.
async fn measure_agent(
    agent: &Agent,
    tasks: usize,
    docker_ok: bool,
    docker_runs: usize,
    res: &mut Results,
) -> anyhow::Result<Vec<(u32, u64)>> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = agent.base.clone();
    let t = Instant::now();
    wait_node(&c, &base, "raw_exec").await?;
    if docker_ok {
        wait_node(&c, &base, "docker").await?;
    }
    res.add(
        "agent start to node ready (process spawn to registered, drivers fingerprinted)",
        ms(t.elapsed()),
    );
    let idle = settled_rss(agent.pid(), 15).await;
    res.add(
        "agent RSS, idle (server + client in one process)",
        format!("{:.1} MiB", idle as f64 / 1024.0),
    );
    let mut task_pids = Vec::new();

    if docker_ok {
        let mut first = Vec::new();
        for i in 0..docker_runs.max(1) {
            let job = format!("bench-docker-{i}");
            let t0 = Instant::now();
            c.put(format!("{base}/v1/jobs"))
                .json(&docker_job(&job))
                .send()
                .await?
                .error_for_status()?;
            let r = wait_status(&c, &base, &job, 1, "running", t0, Duration::from_secs(60)).await;
            let stopped = stop_job(&c, &base, &job).await;
            // The driver names containers `<task>-<alloc>`; remove any the stop left.
            if let Ok(r) = &r {
                for id in &r.ids {
                    let _ = docker(&["rm", "-f", &format!("t-{id}")]);
                }
            }
            let r = r?;
            stopped?;
            first.push(r.all);
        }
        let all: Vec<String> = first.iter().map(|d| ms(*d)).collect();
        res.add(
            format!(
                "one docker task: job register to alloc running, median of {}",
                first.len()
            ),
            format!("{} (runs: {})", ms(median(first.clone())), all.join(", ")),
        );
    }

    let job = "bench-raw";
    let t0 = Instant::now();
    c.put(format!("{base}/v1/jobs"))
        .json(&raw_exec_job(job, tasks as u64))
        .send()
        .await?
        .error_for_status()?;
    let waited = wait_status(
        &c,
        &base,
        job,
        tasks,
        "running",
        t0,
        Duration::from_secs(300),
    )
    .await;
    let outcome = async {
        let r = waited?;
        let fork_again = fork_exec_floor(100);
        res.add(
            format!("{tasks} raw_exec tasks (one job, count {tasks}): register to all {tasks} allocations placed"),
            ms(r.placed),
        );
        res.add(
            format!("{tasks} raw_exec tasks: register to the first reported running"),
            ms(r.first),
        );
        res.add(
            format!("{tasks} raw_exec tasks: register to all {tasks} running"),
            format!(
                "{} ({} per task; floor: {tasks} x fork+exec = {}, from a fork+exec median of {} measured now)",
                ms(r.all),
                ms(r.all / tasks as u32),
                ms(fork_again * tasks as u32),
                ms(fork_again)
            ),
        );
        let busy = settled_rss(agent.pid(), 15).await;
        let kids = descendants(agent.pid());
        let task_procs: Vec<_> = kids.iter().filter(|p| p.2 == "sleep").collect();
        let helpers: Vec<_> = kids.iter().filter(|p| p.2 != "sleep").collect();
        let mut helper_kinds = BTreeMap::new();
        for h in &helpers {
            *helper_kinds.entry(h.2.clone()).or_insert(0) += 1;
        }
        let helper_rss: u64 = helpers.iter().map(|p| rss_kib(p.0)).sum();
        let task_rss: u64 = task_procs.iter().map(|p| rss_kib(p.0)).sum();
        res.add(
            format!("agent RSS with {tasks} running raw_exec tasks"),
            format!(
                "{:.1} MiB (+{:.1} MiB over idle, {:.0} KiB per task)",
                busy as f64 / 1024.0,
                busy.saturating_sub(idle) as f64 / 1024.0,
                busy.saturating_sub(idle) as f64 / tasks as f64
            ),
        );
        res.add(
            "processes besides the task itself, per task (Nomad: a logmon and an executor)",
            format!(
                "{} ({} task processes are the agent's direct children; helper processes: {}{})",
                helpers.len() / tasks.max(1),
                task_procs.len(),
                helpers.len(),
                if helpers.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {:?}, {:.1} MiB RSS in all",
                        helper_kinds,
                        helper_rss as f64 / 1024.0
                    )
                }
            ),
        );
        println!(
            "(the {} sleep tasks themselves: {:.1} MiB RSS in all)",
            task_procs.len(),
            task_rss as f64 / 1024.0
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    task_pids.extend(descendants(agent.pid()).into_iter().map(|p| (p.0, p.3)));
    let stopped = stop_job(&c, &base, job).await;
    outcome?;
    let stopped = stopped?;
    res.add(
        format!("job stop of {tasks} raw_exec tasks until none running"),
        ms(stopped),
    );
    Ok(task_pids)
}
