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
use loadtest::{arg, free_port, release_binary, rss_kib};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod agent;
mod docker;
mod procs;

use agent::*;
use docker::*;
use procs::*;

const IMAGE: &str = "drover-bench-busybox:1";

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
    let bin = release_binary("cargo build --release -p drover")?;
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
        measure_docker(&c, &base, docker_runs, res).await?;
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
        report_busy_agent(agent.pid(), tasks, idle, res).await;
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

/// One docker task, `runs` times: job register to alloc running (and the job stopped).
async fn measure_docker(
    c: &reqwest::Client,
    base: &str,
    docker_runs: usize,
    res: &mut Results,
) -> anyhow::Result<()> {
    let mut first = Vec::new();
    for i in 0..docker_runs.max(1) {
        let job = format!("bench-docker-{i}");
        let t0 = Instant::now();
        c.put(format!("{base}/v1/jobs"))
            .json(&docker_job(&job))
            .send()
            .await?
            .error_for_status()?;
        let r = wait_status(c, base, &job, 1, "running", t0, Duration::from_secs(60)).await;
        let stopped = stop_job(c, base, &job).await;
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
    Ok(())
}

/// The agent's memory and processes while `tasks` raw_exec tasks run (`idle`: its RSS
/// before any).
async fn report_busy_agent(pid: u32, tasks: usize, idle: u64, res: &mut Results) {
    let busy = settled_rss(pid, 15).await;
    let kids = descendants(pid);
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
}
