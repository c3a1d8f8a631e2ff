//! `drover job ...`: run, plan, status, stop, inspect, validate and allocs.

use crate::cli::alloc::{alloc_table, AllocTableKind};
use crate::cli::format::{api_error, now_nanos};
use crate::cli::lookup::{self, Kind};
use crate::cli::{is_stdin, parse_key_value};
use api::{Client, Job, JobListStub, QueryOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

mod dispatch;
mod init;
mod plan;
mod run;
mod status;
mod stop;
mod versions;
mod watch;

pub use dispatch::{dispatch, periodic_force, DispatchArgs, PeriodicForceArgs};
pub use init::{init, InitArgs};
pub use plan::plan;
pub use run::{run, validate};
use status::job_list_table;
pub use status::{list, status};
pub use stop::stop;
pub use versions::{
    history, promote, revert, scale, HistoryArgs, PromoteArgs, RevertArgs, ScaleArgs,
};

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

/// Puts a job read from a file in its namespace as Nomad's `job run` does: the file's
/// `namespace` wins; a file without one goes to the command's `-namespace` (or
/// `NOMAD_NAMESPACE`). The parser reads a missing `namespace` as `default`, so a file
/// that says `default` explicitly also follows the flag. Returns a client for the job's
/// namespace, for the requests about the job that follow.
pub(crate) fn place_in_namespace(client: &Client, job: &mut Job) -> Client {
    let from_file = (!job.namespace.is_empty() && job.namespace != api::DEFAULT_NAMESPACE)
        .then(|| job.namespace.clone());
    let from_cli = client.namespace().filter(|ns| *ns != "*");
    if let (None, Some(ns)) = (&from_file, from_cli) {
        job.namespace = ns.to_string();
        // Nomad services carry their job's namespace.
        job.canonicalize_services();
    }
    client.clone().with_namespace(Some(job.ns().to_string()))
}

/// `{"Job": ...}`, pretty, as `-output` and `inspect` print it.
fn job_json(job: &Job) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(
        &serde_json::json!({ "Job": job }),
    )?)
}

/// Jobs whose ID starts with `prefix`; just the one if an ID equals it.
pub async fn matching(client: &Client, prefix: &str) -> anyhow::Result<Vec<JobListStub>> {
    lookup::matching(
        Kind::Job,
        prefix,
        |o| async move {
            let (jobs, meta) = client.jobs(&o).await?;
            let ns = client.namespace();
            let jobs = jobs
                .into_iter()
                .filter(|j| lookup::in_namespace(ns, &j.namespace))
                .collect();
            Ok((jobs, meta))
        },
        |j| &j.id,
    )
    .await
}

/// The one job ID `prefix` names; `None` when no job matches. Several matches are an
/// error listing them.
pub async fn resolve(client: &Client, prefix: &str) -> anyhow::Result<Option<String>> {
    Ok(resolve_stub(client, prefix).await?.map(|job| job.id))
}

/// [`resolve`], with a client for the job's namespace: the command's, or with
/// `-namespace '*'` the one the job was found in.
pub async fn resolve_scoped(
    client: &Client,
    prefix: &str,
) -> anyhow::Result<Option<(String, Client)>> {
    Ok(resolve_stub(client, prefix).await?.map(|job| {
        let scoped = if client.namespace() == Some("*") && !job.namespace.is_empty() {
            client.clone().with_namespace(Some(job.namespace.clone()))
        } else {
            client.clone()
        };
        (job.id, scoped)
    }))
}

/// [`resolve`], with the job as the list shows it (its namespace, for a UI link).
pub async fn resolve_stub(client: &Client, prefix: &str) -> anyhow::Result<Option<JobListStub>> {
    let jobs = matching(client, prefix).await?;
    match lookup::one(Kind::Job, prefix, jobs, job_list_table) {
        Ok(job) => Ok(Some(job)),
        Err(lookup::Miss::NotFound { .. }) => Ok(None),
        Err(many) => Err(many.into()),
    }
}

fn not_found(prefix: &str) -> anyhow::Result<i32> {
    Ok(lookup::not_found(Kind::Job, prefix))
}

pub async fn inspect(client: &Client, args: InspectArgs) -> anyhow::Result<i32> {
    let Some((id, client)) = resolve_scoped(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let client = &client;
    let job = match client.job(&id).await {
        Ok((job, _)) => job,
        Err(e) if e.is_not_found() => return not_found(&args.job),
        Err(e) => return Err(api_error("inspecting job", e)),
    };
    println!("{}", job_json(&job)?);
    Ok(0)
}

pub async fn allocs(client: &Client, args: AllocsArgs) -> anyhow::Result<i32> {
    let Some((id, client)) = resolve_scoped(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let client = &client;
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
