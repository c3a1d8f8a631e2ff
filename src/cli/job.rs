//! `drover job ...`: run, plan, status, stop, inspect, validate and allocs.

use crate::cli::alloc::{alloc_table, AllocTableKind};
use crate::cli::format::{api_error, kv, now_nanos, rfc3339, table};
use crate::cli::{is_stdin, monitor, parse_key_value};
use api::diff::{DiffType, FieldDiff, JobDiff, ObjectDiff};
use api::{Client, Evaluation, Job, JobListStub, JobPlanRequest, JobPlanResponse, QueryOptions};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Return as soon as the job is registered, without following its evaluation.
    #[arg(long)]
    pub detach: bool,
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
    /// Register only if the job's modify index is still N (0: only if it does not exist).
    #[arg(long = "check-index", value_name = "N")]
    pub check_index: Option<u64>,
    /// Set a jobspec variable (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub vars: Vec<(String, String)>,
    /// Read jobspec variables from a file of `name = value` lines, or JSON (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
    /// Print the job as JSON instead of submitting it.
    #[arg(long)]
    pub output: bool,
    /// The job file (HCL or JSON); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    /// Only the header block, no summary or allocations.
    #[arg(long)]
    pub short: bool,
    /// A job ID or prefix; without it, list all jobs.
    #[arg(value_name = "JOB")]
    pub job: Option<String>,
}

impl StatusArgs {
    pub fn for_id(job: String, verbose: bool) -> Self {
        StatusArgs {
            verbose,
            short: false,
            job: Some(job),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Also remove the job from the cluster's state.
    #[arg(long)]
    pub purge: bool,
    /// Return as soon as the job is deregistered; print the evaluation ID.
    #[arg(long)]
    pub detach: bool,
    /// Do not ask for confirmation when JOB is only a prefix.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
    #[arg(value_name = "JOB")]
    pub job: String,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[arg(value_name = "JOB")]
    pub job: String,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Set a jobspec variable (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub vars: Vec<(String, String)>,
    /// Read jobspec variables from a file of `name = value` lines, or JSON (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
    /// The job file (HCL or JSON); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `job plan`: exits 0 when no allocation would be created or destroyed, 1 when some
/// would, 255 on an error (Nomad's codes).
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Also show the fields of added and removed jobs, groups and tasks.
    #[arg(long)]
    pub verbose: bool,
    /// Set a jobspec variable (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub vars: Vec<(String, String)>,
    /// Read jobspec variables from a file of `name = value` lines, or JSON (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
    /// The job file (HCL or JSON); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct AllocsArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    #[arg(value_name = "JOB")]
    pub job: String,
}

/// Parse a job file (or stdin) with its variables: `NOMAD_VAR_<name>` from the
/// environment, then the variables files, then `-var` values, later ones winning. The
/// error is ready to print.
pub fn load_job(
    path: &Path,
    vars: &[(String, String)],
    var_files: &[PathBuf],
) -> Result<Job, String> {
    let inputs = jobspecs::VarInputs {
        cli: vars.iter().cloned().collect(),
        files: var_files.to_vec(),
        env: jobspecs::VarInputs::env_vars(),
        values: Vec::new(),
    };
    let shown = if is_stdin(path) {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let parsed = if is_stdin(path) {
        let mut src = String::new();
        std::io::stdin()
            .read_to_string(&mut src)
            .map_err(|e| format!("Error reading job file from standard input: {e}"))?;
        // As in Nomad's CLI, `file()` in a job read from standard input is relative to
        // the working directory.
        jobspecs::parse_str_with_files(
            &src,
            &shown,
            &inputs,
            jobspecs::Files::RelativeTo(PathBuf::new()),
        )
    } else {
        jobspecs::parse_file_with_inputs(path, &inputs)
    };
    let parsed = parsed.map_err(|d| format!("Error parsing job file {shown}:\n{d}"))?;
    // What Drover accepted but does not act on yet must not pass silently.
    for w in &parsed.warnings {
        eprintln!("Warning: {w}");
    }
    Ok(parsed.job)
}

/// `{"Job": ...}`, pretty, as `-output` and `inspect` print it.
fn job_json(job: &Job) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(
        &serde_json::json!({ "Job": job }),
    )?)
}

pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<i32> {
    let job = match load_job(&args.file, &args.vars, &args.var_files) {
        Ok(job) => job,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(1);
        }
    };
    if args.output {
        println!("{}", job_json(&job)?);
        return Ok(0);
    }
    let resp = client
        .register_job_opts(&job, args.check_index)
        .await
        .map_err(|e| api_error("submitting job", e))?;
    if !resp.warnings.is_empty() {
        println!("Job Warnings:\n{}\n", resp.warnings.trim_end());
    }
    if args.detach || resp.eval_id.is_empty() {
        println!("Job registration successful");
        if !resp.eval_id.is_empty() {
            println!("Evaluation ID: {}", resp.eval_id);
        }
        return Ok(0);
    }
    monitor::monitor(client, &resp.eval_id, args.verbose).await
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<i32> {
    let mut job = match load_job(&args.file, &args.vars, &args.var_files) {
        Ok(job) => job,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(1);
        }
    };
    // The jobspec parser checks the file; these are the checks the server will make.
    job.canonicalize();
    let errs = job.validate();
    if !errs.is_empty() {
        eprintln!("Job validation errors:");
        for e in errs {
            eprintln!("  * {e}");
        }
        return Ok(1);
    }
    println!("Job validation successful");
    Ok(0)
}

/// `job plan`: a dry run on the servers, shown as a diff against the registered job,
/// what the scheduler would do, and the index to pass to `job run -check-index`.
pub async fn plan(client: &Client, args: PlanArgs) -> anyhow::Result<i32> {
    const ERROR: i32 = 255;
    let job = match load_job(&args.file, &args.vars, &args.var_files) {
        Ok(job) => job,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(ERROR);
        }
    };
    let req = JobPlanRequest {
        job: Some(job.clone()),
        diff: true,
        policy_override: false,
    };
    let path = format!("/v1/job/{}/plan", path_segment(&job.id));
    let resp: JobPlanResponse = match client.put(&path, &req).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error during plan: {e}");
            return Ok(ERROR);
        }
    };
    if let Some(diff) = &resp.diff {
        println!("{}", render_diff(diff, args.verbose));
    }
    println!("{}", render_dry_run(&resp));
    let file = args.file.display();
    println!(
        "\nJob Modify Index: {index}\n\
         To submit the job with version verification run:\n\n\
         drover job run -check-index {index} {file}\n\n\
         When running the job with the check-index flag, the job will only be run if the\n\
         job modify index given matches the server-side version. If the index has\n\
         changed, another user has modified the job and the plan's results are\n\
         potentially invalid.",
        index = resp.job_modify_index
    );
    let changes = resp.annotations.as_ref().is_some_and(|a| {
        a.desired_tg_updates
            .values()
            .any(|u| u.creates_or_destroys())
    });
    Ok(i32::from(changes))
}

/// A job ID as one URL path segment.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `Scheduler dry-run:` and whether every allocation would find a node.
fn render_dry_run(resp: &JobPlanResponse) -> String {
    let mut lines = vec!["Scheduler dry-run:".to_string()];
    if resp.failed_tg_allocs.is_empty() {
        lines.push("- All tasks successfully allocated.".into());
    } else {
        lines.push("- WARNING: Failed to place all allocations.".into());
        for (group, metric) in &resp.failed_tg_allocs {
            let n = 1 + metric.coalesced_failures;
            let s = if n == 1 { "" } else { "s" };
            lines.push(format!(
                "  Task Group {group:?} (failed to place {n} allocation{s}):"
            ));
            lines.extend(monitor::render_metric(metric, "    "));
        }
    }
    lines.join("\n")
}

/// A job diff as `job plan` prints it: `+` added, `-` deleted, `+/-` edited. Without
/// `verbose`, added and deleted jobs, groups and tasks show only their header line.
pub fn render_diff(diff: &JobDiff, verbose: bool) -> String {
    let mut out = Vec::new();
    let head = |t: DiffType| {
        if t == DiffType::None {
            String::new()
        } else {
            format!("{} ", t.marker())
        }
    };
    out.push(format!("{}Job: {:?}", head(diff.diff_type), diff.id));
    let expand = |t: DiffType| verbose || t == DiffType::Edited;
    if expand(diff.diff_type) {
        render_fields(&diff.fields, &diff.objects, 0, &mut out);
    }
    for g in &diff.task_groups {
        let counts = [
            "create",
            "destroy",
            "migrate",
            "in-place update",
            "create/destroy update",
            "canary",
            "ignore",
        ]
        .iter()
        .filter_map(|k| g.updates.get(*k).map(|n| format!("{n} {k}")))
        .collect::<Vec<_>>();
        let counts = if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        };
        out.push(format!(
            "{}Task Group: {:?}{counts}",
            head(g.diff_type),
            g.name
        ));
        if expand(g.diff_type) {
            render_fields(&g.fields, &g.objects, 1, &mut out);
        }
        for t in &g.tasks {
            let notes = if t.annotations.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.annotations.join(", "))
            };
            let marker = if t.diff_type == DiffType::None {
                "   ".to_string()
            } else {
                head(t.diff_type)
            };
            out.push(format!("  {marker}Task: {:?}{notes}", t.name));
            if expand(t.diff_type) {
                render_fields(&t.fields, &t.objects, 2, &mut out);
            }
        }
    }
    out.join("\n") + "\n"
}

fn render_fields(
    fields: &[FieldDiff],
    objects: &[ObjectDiff],
    depth: usize,
    out: &mut Vec<String>,
) {
    let pad = "  ".repeat(depth);
    for f in fields {
        let notes = if f.annotations.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.annotations.join(", "))
        };
        let value = match f.diff_type {
            DiffType::Added => format!("{:?}", f.new),
            DiffType::Deleted => format!("{:?}", f.old),
            _ => format!("{:?} => {:?}", f.old, f.new),
        };
        out.push(format!(
            "{pad}{} {}: {value}{notes}",
            f.diff_type.marker(),
            f.name
        ));
    }
    for o in objects {
        out.push(format!("{pad}{} {} {{", o.diff_type.marker(), o.name));
        render_fields(&o.fields, &o.objects, depth + 1, out);
        out.push(format!("{pad}  }}"));
    }
}

/// Jobs whose ID starts with `prefix`; just the one if an ID equals it.
pub async fn matching(client: &Client, prefix: &str) -> anyhow::Result<Vec<JobListStub>> {
    let opts = QueryOptions {
        prefix: Some(prefix.to_string()),
        ..Default::default()
    };
    let (jobs, _) = client
        .jobs(&opts)
        .await
        .map_err(|e| api_error("querying jobs", e))?;
    Ok(narrow(jobs, prefix, |j| &j.id))
}

/// Keep what starts with `prefix` (in case a server ignores `?prefix=`), and only the
/// exact match if there is one.
pub fn narrow<T>(items: Vec<T>, prefix: &str, id: impl Fn(&T) -> &str) -> Vec<T> {
    let mut items: Vec<T> = items
        .into_iter()
        .filter(|i| id(i).starts_with(prefix))
        .collect();
    if let Some(pos) = items.iter().position(|i| id(i) == prefix) {
        return vec![items.swap_remove(pos)];
    }
    items
}

/// The one job ID `prefix` names; `None` when no job matches. Several matches are an
/// error listing them.
pub async fn resolve(client: &Client, prefix: &str) -> anyhow::Result<Option<String>> {
    let mut jobs = matching(client, prefix).await?;
    match jobs.len() {
        0 => Ok(None),
        1 => Ok(Some(jobs.remove(0).id)),
        _ => anyhow::bail!("Prefix matched multiple jobs\n\n{}", job_list_table(&jobs)),
    }
}

fn not_found(prefix: &str) -> anyhow::Result<i32> {
    eprintln!("No job(s) with prefix or ID {prefix:?} found");
    Ok(1)
}

/// `running`, or `dead (stopped)` for a job someone stopped.
pub fn status_word(status: &str, stop: bool) -> String {
    if stop {
        format!("{status} (stopped)")
    } else {
        status.to_string()
    }
}

fn job_list_table(jobs: &[JobListStub]) -> String {
    table(
        &["ID", "Type", "Priority", "Status", "Submit Date"],
        jobs.iter()
            .map(|j| {
                vec![
                    j.id.clone(),
                    j.job_type.clone(),
                    j.priority.to_string(),
                    status_word(&j.status, j.stop),
                    rfc3339(j.submit_time),
                ]
            })
            .collect(),
    )
}

/// The job list (`job status` and `status` without an ID).
pub async fn list(client: &Client, _verbose: bool) -> anyhow::Result<i32> {
    let (jobs, _) = client
        .jobs(&QueryOptions::default())
        .await
        .map_err(|e| api_error("querying jobs", e))?;
    if jobs.is_empty() {
        println!("No running jobs");
    } else {
        println!("{}", job_list_table(&jobs));
    }
    Ok(0)
}

pub async fn status(client: &Client, args: StatusArgs) -> anyhow::Result<i32> {
    let Some(prefix) = args.job else {
        return list(client, args.verbose).await;
    };
    let Some(id) = resolve(client, &prefix).await? else {
        return not_found(&prefix);
    };
    let job = match client.job(&id).await {
        Ok((job, _)) => job,
        Err(e) if e.is_not_found() => return not_found(&prefix),
        Err(e) => return Err(api_error("querying job", e)),
    };
    println!("{}", job_header(&job));
    if args.short {
        return Ok(0);
    }

    let summary = match client.job_summary(&id).await {
        Ok((s, _)) => s.summary,
        Err(e) if e.is_not_found() => BTreeMap::new(),
        Err(e) => return Err(api_error("querying job summary", e)),
    };
    println!("\nSummary\n{}", summary_table(&job, &summary));

    // Evaluations only explain failed placements; a server without them is no error.
    if let Ok((evals, _)) = client.job_evaluations(&id).await {
        if let Some(text) = placement_failure(&evals) {
            println!("\nPlacement Failure\n{text}");
        }
    }

    let (mut allocs, _) = client
        .job_allocations(&id, &QueryOptions::default())
        .await
        .map_err(|e| api_error("querying job allocations", e))?;
    allocs.sort_by_key(|a| std::cmp::Reverse(a.create_index));
    println!("\nAllocations");
    if allocs.is_empty() {
        println!("No allocations placed");
    } else {
        println!(
            "{}",
            alloc_table(&allocs, args.verbose, now_nanos(), AllocTableKind::Job)
        );
    }
    Ok(0)
}

fn job_header(job: &Job) -> String {
    let dcs = if job.datacenters.is_empty() {
        "*".to_string()
    } else {
        job.datacenters.join(",")
    };
    let name = if job.name.is_empty() {
        &job.id
    } else {
        &job.name
    };
    let pool = if job.node_pool.is_empty() {
        "default"
    } else {
        &job.node_pool
    };
    kv(&[
        ("ID", job.id.clone()),
        ("Name", name.clone()),
        ("Submit Date", rfc3339(job.submit_time)),
        ("Type", job.job_type.clone()),
        ("Priority", job.priority.to_string()),
        ("Datacenters", dcs),
        ("Namespace", job.ns().to_string()),
        ("Node Pool", pool.to_string()),
        ("Status", status_word(&job.status, job.stop)),
        ("Periodic", job.periodic.is_some().to_string()),
        ("Parameterized", job.parameterized_job.is_some().to_string()),
    ])
}

/// One row per task group, including groups the summary does not know yet.
fn summary_table(job: &Job, summary: &BTreeMap<String, api::TaskGroupSummary>) -> String {
    let mut groups: BTreeMap<&str, api::TaskGroupSummary> = job
        .task_groups
        .iter()
        .map(|g| (g.name.as_str(), Default::default()))
        .collect();
    for (name, s) in summary {
        groups.insert(name, s.clone());
    }
    table(
        &[
            "Task Group",
            "Queued",
            "Starting",
            "Running",
            "Failed",
            "Complete",
            "Lost",
            "Unknown",
        ],
        groups
            .into_iter()
            .map(|(name, s)| {
                vec![
                    name.to_string(),
                    s.queued.to_string(),
                    s.starting.to_string(),
                    s.running.to_string(),
                    s.failed.to_string(),
                    s.complete.to_string(),
                    s.lost.to_string(),
                    s.unknown.to_string(),
                ]
            })
            .collect(),
    )
}

/// While a blocked evaluation waits for capacity, the newest evaluation that failed to
/// place says why.
fn placement_failure(evals: &[Evaluation]) -> Option<String> {
    if !evals.iter().any(|e| e.status == api::EVAL_STATUS_BLOCKED) {
        return None;
    }
    let failed = evals
        .iter()
        .filter(|e| !e.failed_tg_allocs.is_empty())
        .max_by_key(|e| e.create_index)?;
    let mut lines = Vec::new();
    for (group, metric) in &failed.failed_tg_allocs {
        lines.push(format!("Task Group {group:?}:"));
        lines.extend(monitor::render_metric(metric, "  "));
    }
    Some(lines.join("\n"))
}

pub async fn stop(client: &Client, args: StopArgs) -> anyhow::Result<i32> {
    let Some(id) = resolve(client, &args.job).await? else {
        return not_found(&args.job);
    };
    if id != args.job && !args.yes {
        match confirm(&format!("Are you sure you want to stop job {id:?}? [y/N] ")) {
            Confirm::Yes => {}
            Confirm::No => {
                println!("Cancelling job stop");
                return Ok(0);
            }
            Confirm::Unclear => {
                println!("No confirmation detected. For confirmation, an exact 'y' is required.");
                return Ok(1);
            }
        }
    }
    let resp = client
        .deregister_job(&id, args.purge)
        .await
        .map_err(|e| api_error("deregistering job", e))?;
    if resp.eval_id.is_empty() {
        return Ok(0);
    }
    if args.detach {
        println!("{}", resp.eval_id);
        return Ok(0);
    }
    monitor::monitor(client, &resp.eval_id, args.verbose).await
}

enum Confirm {
    Yes,
    No,
    Unclear,
}

/// Ask on the terminal; only an exact `y` is yes, nothing or anything starting with `n`
/// is no.
fn confirm(question: &str) -> Confirm {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return Confirm::No;
    }
    confirm_answer(answer.trim())
}

fn confirm_answer(answer: &str) -> Confirm {
    match answer {
        "y" => Confirm::Yes,
        "" => Confirm::No,
        a if a.to_ascii_lowercase().starts_with('n') => Confirm::No,
        _ => Confirm::Unclear,
    }
}

pub async fn inspect(client: &Client, args: InspectArgs) -> anyhow::Result<i32> {
    let Some(id) = resolve(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let job = match client.job(&id).await {
        Ok((job, _)) => job,
        Err(e) if e.is_not_found() => return not_found(&args.job),
        Err(e) => return Err(api_error("inspecting job", e)),
    };
    println!("{}", job_json(&job)?);
    Ok(0)
}

pub async fn allocs(client: &Client, args: AllocsArgs) -> anyhow::Result<i32> {
    let Some(id) = resolve(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let (mut allocs, _) = client
        .job_allocations(&id, &QueryOptions::default())
        .await
        .map_err(|e| api_error("querying job allocations", e))?;
    allocs.sort_by_key(|a| std::cmp::Reverse(a.create_index));
    if allocs.is_empty() {
        println!("No allocations placed");
    } else {
        println!(
            "{}",
            alloc_table(&allocs, args.verbose, now_nanos(), AllocTableKind::Job)
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_diff_shows_headers_only_for_new_things_unless_verbose() {
        let job = Job {
            id: "web".into(),
            priority: 50,
            task_groups: vec![api::TaskGroup {
                name: "api".into(),
                count: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let added = api::diff::job_diff(None, &job);
        let short = render_diff(&added, false);
        assert_eq!(short, "+ Job: \"web\"\n+ Task Group: \"api\"\n");
        let long = render_diff(&added, true);
        assert!(long.contains("+ Priority: \"50\""), "{long}");
        assert!(long.contains("  + Count: \"2\""), "{long}");

        let mut more = job.clone();
        more.task_groups[0].count = 1;
        more.datacenters = vec!["dc1".into()];
        let edited = api::diff::job_diff(Some(&job), &more);
        let text = render_diff(&edited, false);
        assert!(
            text.starts_with("+/- Job: \"web\"\n+ Datacenters {\n  + Datacenters: \"dc1\"\n  }\n"),
            "{text}"
        );
        assert!(
            text.contains("+/- Task Group: \"api\"\n  +/- Count: \"2\" => \"1\""),
            "{text}"
        );
    }

    #[test]
    fn stopped_jobs_say_so() {
        assert_eq!(status_word("dead", true), "dead (stopped)");
        assert_eq!(status_word("running", false), "running");
    }

    #[test]
    fn exact_id_wins_over_longer_prefix_matches() {
        let ids = vec!["web".to_string(), "web-2".to_string(), "api".to_string()];
        assert_eq!(narrow(ids.clone(), "web", |s| s), vec!["web".to_string()]);
        assert_eq!(
            narrow(ids, "we", |s| s),
            vec!["web".to_string(), "web-2".to_string()]
        );
    }

    #[test]
    fn only_an_exact_y_confirms() {
        assert!(matches!(confirm_answer("y"), Confirm::Yes));
        assert!(matches!(confirm_answer(""), Confirm::No));
        assert!(matches!(confirm_answer("No"), Confirm::No));
        assert!(matches!(confirm_answer("yes"), Confirm::Unclear));
    }

    #[test]
    fn summary_lists_groups_the_server_has_not_counted_yet() {
        let job = Job {
            id: "web".into(),
            task_groups: vec![
                api::TaskGroup {
                    name: "a".into(),
                    ..Default::default()
                },
                api::TaskGroup {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut s = BTreeMap::new();
        s.insert(
            "b".to_string(),
            api::TaskGroupSummary {
                running: 2,
                ..Default::default()
            },
        );
        let out = summary_table(&job, &s);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("a "));
        assert!(lines[2].split_whitespace().nth(3) == Some("2"));
    }

    #[test]
    fn placement_failure_shows_only_while_blocked() {
        let mut failed = Evaluation {
            status: "complete".into(),
            create_index: 5,
            ..Default::default()
        };
        failed.failed_tg_allocs.insert(
            "g".into(),
            api::AllocMetric {
                nodes_evaluated: 1,
                nodes_exhausted: 1,
                ..Default::default()
            },
        );
        assert_eq!(placement_failure(std::slice::from_ref(&failed)), None);
        let blocked = Evaluation {
            status: "blocked".into(),
            create_index: 6,
            ..Default::default()
        };
        assert_eq!(
            placement_failure(&[failed, blocked]).unwrap(),
            "Task Group \"g\":\n  * Resources exhausted on 1 nodes"
        );
    }
}
