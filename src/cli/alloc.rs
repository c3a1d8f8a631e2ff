//! `drover alloc status`, and the allocation tables the job and node views share.

use crate::cli::format::{api_error, id, kv, now_nanos, or_none, rfc3339, table, time_cell};
use crate::cli::lookup::{self, Kind};
use api::{Allocation, AllocationListStub, Client, TaskEvent};
use client_agent::http::{ClientApi, ExecResponse};
use client_agent::stats::AllocResourceUsage;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    /// Also show each task's CPU and memory use next to what it reserved.
    #[arg(long)]
    pub stats: bool,
    /// An allocation ID or a prefix of one.
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
}

/// Which identifying columns an allocation table carries besides the allocation's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocTableKind {
    /// A job's allocations: which node each is on.
    Job,
    /// A node's allocations: which job each belongs to.
    Node,
    /// Allocations of anything: both.
    Any,
}

/// Allocations as a table: `ID  Node ID  Task Group  Version  Desired  Status  Created
/// Modified`, with the eval and node name and exact times under `-verbose`.
pub fn alloc_table(
    allocs: &[AllocationListStub],
    verbose: bool,
    now: i64,
    kind: AllocTableKind,
) -> String {
    let with_node = kind != AllocTableKind::Node;
    let with_job = kind != AllocTableKind::Job;
    let mut header = vec!["ID"];
    if verbose {
        header.push("Eval ID");
    }
    if with_job {
        header.push("Job ID");
    }
    if with_node {
        header.push("Node ID");
        if verbose {
            header.push("Node Name");
        }
    }
    header.extend([
        "Task Group",
        "Version",
        "Desired",
        "Status",
        "Created",
        "Modified",
    ]);
    let rows = allocs
        .iter()
        .map(|a| {
            let mut row = vec![id(&a.id, verbose).to_string()];
            if verbose {
                row.push(a.eval_id.to_string());
            }
            if with_job {
                row.push(a.job_id.to_string());
            }
            if with_node {
                row.push(id(&a.node_id, verbose).to_string());
                if verbose {
                    row.push(a.node_name.to_string());
                }
            }
            row.extend([
                a.task_group.to_string(),
                a.job_version.to_string(),
                a.desired_status.to_string(),
                a.client_status.to_string(),
                time_cell(a.create_time, verbose, now),
                time_cell(a.modify_time, verbose, now),
            ]);
            row
        })
        .collect();
    table(&header, rows)
}

/// Allocations whose ID starts with `prefix`; just the one if an ID equals it.
pub async fn matching(client: &Client, prefix: &str) -> anyhow::Result<Vec<AllocationListStub>> {
    if prefix.is_empty() {
        anyhow::bail!("An allocation ID (or a prefix of one) is required");
    }
    let ns = client.namespace();
    lookup::matching(
        Kind::Alloc,
        prefix,
        |o| async move {
            let (allocs, meta) = client.allocations(&o).await?;
            let allocs = allocs
                .into_iter()
                .filter(|a| lookup::in_namespace(ns, &a.namespace))
                .collect();
            Ok((allocs, meta))
        },
        |a| &a.id,
    )
    .await
}

/// The allocation table listing the allocations a prefix matched.
pub(crate) fn matches_table(allocs: &[AllocationListStub], verbose: bool) -> String {
    alloc_table(allocs, verbose, now_nanos(), AllocTableKind::Any)
}

pub async fn status(client: &Client, args: StatusArgs) -> anyhow::Result<i32> {
    let verbose = args.verbose;
    let matches = matching(client, &args.alloc).await?;
    let table = |m: &[AllocationListStub]| matches_table(m, verbose);
    let Some(AllocationListStub { id, .. }) =
        lookup::one_or_tell(Kind::Alloc, &args.alloc, matches, table)
    else {
        return Ok(1);
    };
    let alloc = match client.allocation(&id).await {
        Ok((a, _)) => a,
        Err(e) if e.is_not_found() => return Ok(lookup::not_found(Kind::Alloc, &args.alloc)),
        Err(e) => return Err(api_error("querying allocation", e)),
    };
    print!("{}", render_alloc(&alloc, verbose, now_nanos()));
    if args.stats {
        let api = ClientApi::new(client.address()).with_token(client.token());
        match api
            .json(
                "GET",
                &format!("/v1/client/allocation/{}/stats", alloc.id),
                None,
            )
            .await
        {
            Ok(v) => {
                let usage: AllocResourceUsage = serde_json::from_value(v)
                    .map_err(|e| anyhow::anyhow!("Error reading allocation stats: {e}"))?;
                print!("\n{}", render_usage(&alloc, &usage));
            }
            Err(e) => eprintln!("\nError reading allocation stats: {e}"),
        }
    }
    Ok(0)
}

/// `Task  CPU  Memory` with used next to reserved, as Nomad's `alloc status -stats`.
pub fn render_usage(a: &Allocation, usage: &AllocResourceUsage) -> String {
    let group = a.job.as_ref().and_then(|j| j.task_group(&a.task_group));
    let mut rows = Vec::new();
    let mut names: Vec<&String> = a.task_states.keys().collect();
    names.sort();
    for name in names {
        let reserved = group
            .and_then(|g| g.tasks.iter().find(|t| &t.name == name))
            .and_then(|t| t.resources.clone())
            .unwrap_or_default();
        let (cpu, mem) = match usage.tasks.get(name) {
            Some(u) => (
                format!(
                    "{:.0}/{} MHz ({:.1}%)",
                    u.resource_usage.cpu_stats.total_ticks,
                    reserved.cpu,
                    u.resource_usage.cpu_stats.percent
                ),
                format!(
                    "{}/{} MiB",
                    mib(u
                        .resource_usage
                        .memory_stats
                        .rss
                        .max(u.resource_usage.memory_stats.usage)),
                    reserved.memory_mb
                ),
            ),
            None => (
                format!("-/{} MHz", reserved.cpu),
                format!("-/{} MiB", reserved.memory_mb),
            ),
        };
        rows.push(vec![name.clone(), cpu, mem]);
    }
    format!(
        "Task Resources:\n{}\n",
        table(&["Task", "CPU", "Memory"], rows)
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The one allocation `prefix` names, with its job; an error sentence otherwise.
async fn resolve(client: &Client, prefix: &str) -> anyhow::Result<Allocation> {
    let matches = matching(client, prefix).await?;
    let id = lookup::one(Kind::Alloc, prefix, matches, |m| matches_table(m, false))?.id;
    let (alloc, _) = client
        .allocation(&id)
        .await
        .map_err(|e| api_error("querying allocation", e))?;
    Ok(alloc)
}

/// The task a command names, or the group's only task.
fn task_of(a: &Allocation, task: Option<&str>) -> anyhow::Result<String> {
    let names: Vec<String> = a
        .job
        .as_ref()
        .and_then(|j| j.task_group(&a.task_group))
        .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect())
        .unwrap_or_else(|| a.task_states.keys().cloned().collect());
    match task {
        Some(t) if names.iter().any(|n| n == t) => Ok(t.to_string()),
        Some(t) => anyhow::bail!(
            "Could not find task named {t:?} in allocation {} (tasks: {})",
            a.id,
            names.join(", ")
        ),
        None if names.len() == 1 => Ok(names[0].clone()),
        None => anyhow::bail!(
            "Allocation {} has several tasks; name one (tasks: {})",
            a.id,
            names.join(", ")
        ),
    }
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Keep printing new output as the task writes it.
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
    /// Show the task's standard error instead of its standard output.
    #[arg(long)]
    pub stderr: bool,
    /// Show only the end of the log (the last -n lines).
    #[arg(long)]
    pub tail: bool,
    /// Lines to show with -tail.
    #[arg(short = 'n', default_value_t = 10)]
    pub lines: usize,
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
    /// Optional when the allocation's group has a single task.
    #[arg(value_name = "TASK")]
    pub task: Option<String>,
}

/// How far back `-tail` reads to find its lines.
const TAIL_BYTES: u64 = 1024 * 1024;

pub async fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<i32> {
    use std::io::Write;
    let alloc = resolve(client, &args.alloc).await?;
    let task = task_of(&alloc, args.task.as_deref())?;
    let kind = if args.stderr { "stderr" } else { "stdout" };
    let api = ClientApi::new(client.address()).with_token(client.token());
    let base = format!(
        "/v1/client/fs/logs/{}?task={}&type={kind}&plain=true",
        alloc.id,
        api::url::encode(&task)
    );
    let mut out = std::io::stdout();
    let mut print = |b: &[u8]| {
        let _ = out.write_all(b);
        let _ = out.flush();
    };
    if args.tail {
        let mut buf = Vec::new();
        api.stream(&format!("{base}&origin=end&offset={TAIL_BYTES}"), |b| {
            buf.extend_from_slice(b)
        })
        .await
        .map_err(|e| anyhow::anyhow!("Error reading logs: {e}"))?;
        print(last_lines(&buf, args.lines));
        if !args.follow {
            return Ok(0);
        }
        api.stream(&format!("{base}&origin=end&offset=0&follow=true"), print)
            .await
            .map_err(|e| anyhow::anyhow!("Error following logs: {e}"))?;
        return Ok(0);
    }
    let follow = if args.follow { "&follow=true" } else { "" };
    api.stream(&format!("{base}&origin=start&offset=0{follow}"), print)
        .await
        .map_err(|e| anyhow::anyhow!("Error reading logs: {e}"))?;
    Ok(0)
}

/// The last `n` lines of `buf` (a trailing newline does not start a line).
pub fn last_lines(buf: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &buf[buf.len()..];
    }
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &buf[i + 1..];
            }
        }
    }
    buf
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The task to run the command in (optional when the group has one task).
    #[arg(long)]
    pub task: Option<String>,
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
    /// The command and its arguments.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub cmd: Vec<String>,
}

/// Runs a command in a task and exits with its exit code. Non-interactive: the output
/// is printed once the command has finished.
pub async fn exec(client: &Client, args: ExecArgs) -> anyhow::Result<i32> {
    use std::io::Write;
    let alloc = resolve(client, &args.alloc).await?;
    let task = task_of(&alloc, args.task.as_deref())?;
    let api = ClientApi::new(client.address()).with_token(client.token());
    let body = serde_json::json!({"Task": task, "Cmd": args.cmd});
    let v = api
        .json(
            "POST",
            &format!("/v1/client/allocation/{}/exec", alloc.id),
            Some(&body),
        )
        .await
        .map_err(|e| anyhow::anyhow!("Error running the command: {e}"))?;
    let r: ExecResponse = serde_json::from_value(v)
        .map_err(|e| anyhow::anyhow!("Error reading the exec answer: {e}"))?;
    let (stdout, stderr) = r.output();
    let _ = std::io::stdout().write_all(&stdout);
    let _ = std::io::stderr().write_all(&stderr);
    Ok(r.exit_code.clamp(0, 255) as i32)
}

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
    /// Restart only this task (default: every running task).
    #[arg(value_name = "TASK")]
    pub task: Option<String>,
}

/// Asks the agent running the allocation the user named to `action` (`restart`,
/// `signal`) it, or only its task `task`; `body` is the request for the task's name
/// (empty for every task), `doing` names the action in the error. Returns the allocation
/// and that name.
async fn task_action(
    client: &Client,
    alloc: &str,
    task: Option<&str>,
    (action, doing): (&str, &str),
    body: impl FnOnce(&str) -> serde_json::Value,
) -> anyhow::Result<(Allocation, String)> {
    let alloc = resolve(client, alloc).await?;
    let task = match task {
        Some(t) => task_of(&alloc, Some(t))?,
        None => String::new(),
    };
    let api = ClientApi::new(client.address()).with_token(client.token());
    api.json(
        "PUT",
        &format!("/v1/client/allocation/{}/{action}", alloc.id),
        Some(&body(&task)),
    )
    .await
    .map_err(|e| anyhow::anyhow!("Error {doing} allocation: {e}"))?;
    Ok((alloc, task))
}

pub async fn restart(client: &Client, args: RestartArgs) -> anyhow::Result<i32> {
    let body = |task: &str| serde_json::json!({ "TaskName": task });
    let action = ("restart", "restarting");
    let (alloc, task) =
        task_action(client, &args.alloc, args.task.as_deref(), action, body).await?;
    if task.is_empty() {
        println!("Restarted the tasks of allocation {}", alloc.id);
    } else {
        println!("Restarted task {task:?} of allocation {}", alloc.id);
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct SignalArgs {
    /// The signal to send (default SIGKILL, as Nomad).
    #[arg(short = 's', default_value = "SIGKILL")]
    pub signal: String,
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
    /// Signal only this task (default: every running task).
    #[arg(value_name = "TASK")]
    pub task: Option<String>,
}

pub async fn signal(client: &Client, args: SignalArgs) -> anyhow::Result<i32> {
    let body = |task: &str| serde_json::json!({ "Task": task, "Signal": args.signal });
    let action = ("signal", "signalling");
    let (alloc, _) = task_action(client, &args.alloc, args.task.as_deref(), action, body).await?;
    println!("Sent {} to allocation {}", args.signal, alloc.id);
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
}

/// Stops one allocation (the scheduler replaces it if its job still wants it).
pub async fn stop(client: &Client, args: StopArgs) -> anyhow::Result<i32> {
    let alloc = resolve(client, &args.alloc).await?;
    let api = ClientApi::new(client.address()).with_token(client.token());
    let v = api
        .json("PUT", &format!("/v1/allocation/{}/stop", alloc.id), None)
        .await
        .map_err(|e| anyhow::anyhow!("Error stopping allocation: {e}"))?;
    let eval = v.get("EvalID").and_then(|e| e.as_str()).unwrap_or_default();
    println!("Stopping allocation {}", alloc.id);
    if !eval.is_empty() {
        println!("Evaluation ID: {eval}");
    }
    Ok(0)
}

/// The whole `alloc status` page.
pub fn render_alloc(a: &Allocation, verbose: bool, now: i64) -> String {
    let mut pairs = vec![
        ("ID", id(&a.id, verbose).to_string()),
        ("Eval ID", id(&a.eval_id, verbose).to_string()),
        ("Name", a.name.to_string()),
        ("Node ID", id(&a.node_id, verbose).to_string()),
        ("Node Name", a.node_name.to_string()),
        ("Job ID", a.job_id.to_string()),
        ("Job Version", a.job_version().to_string()),
        ("Client Status", a.client_status.to_string()),
        ("Client Description", or_none(&a.client_description)),
        ("Desired Status", a.desired_status.to_string()),
        ("Desired Description", or_none(&a.desired_description)),
        ("Created", time_cell(a.create_time, verbose, now)),
        ("Modified", time_cell(a.modify_time, verbose, now)),
    ];
    if !a.previous_allocation.is_empty() {
        pairs.push((
            "Rescheduled Alloc ID",
            id(&a.previous_allocation, verbose).to_string(),
        ));
    }
    if !a.next_allocation.is_empty() {
        pairs.push((
            "Replacement Alloc ID",
            id(&a.next_allocation, verbose).to_string(),
        ));
    }
    if !a.followup_eval_id.is_empty() {
        pairs.push((
            "Follow-up Eval ID",
            id(&a.followup_eval_id, verbose).to_string(),
        ));
    }
    let mut out = kv(&pairs);
    out.push('\n');
    for (name, state) in &a.task_states {
        let st = if state.state.is_empty() {
            api::TASK_STATE_PENDING
        } else {
            &state.state
        };
        out.push_str(&format!("\nTask {name:?} is {st:?}\n"));
        if state.restarts > 0 {
            out.push_str(&format!("Restarts: {}\n", state.restarts));
        }
        out.push_str("Recent Events:\n");
        let rows = state
            .events
            .iter()
            .rev()
            .map(|e| {
                vec![
                    rfc3339(e.time),
                    e.event_type.to_string(),
                    event_description(e),
                ]
            })
            .collect();
        out.push_str(&table(&["Time", "Type", "Description"], rows));
        out.push('\n');
    }
    out
}

/// What a task event says: its display message, else a sentence built from its fields.
pub fn event_description(e: &TaskEvent) -> String {
    if !e.display_message.is_empty() {
        return e.display_message.to_string();
    }
    let (kind, e) = (e.event_type.as_str(), e.detail());
    let exit = || {
        let mut s = format!("Exit Code: {}", e.exit_code);
        if e.signal != 0 {
            s.push_str(&format!(", Signal: {}", e.signal));
        }
        s
    };
    match kind {
        "Terminated" => exit(),
        "Restarting" if !e.restart_reason.is_empty() => e.restart_reason.clone(),
        "Driver Failure" | "Failed Validation" if !e.driver_error.is_empty() => {
            e.driver_error.clone()
        }
        _ if !e.message.is_empty() => e.message.clone(),
        _ if !e.driver_error.is_empty() => e.driver_error.clone(),
        "Started" => "Task started by client".to_string(),
        "Received" => "Task received by client".to_string(),
        "Killed" => "Task successfully killed".to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
