//! `job history`, `job revert`, `job scale` and `job promote`: a job's versions and its
//! deployments.

use super::{not_found, resolve_scoped};
use crate::cli::deployment;
use crate::cli::format::{api_error, kv, rfc3339};
use api::{Client, QueryOptions};

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Show each version's changes against the one before it.
    #[arg(short = 'p', long = "p")]
    pub diffs: bool,
    /// Show only this version.
    #[arg(long = "version", value_name = "N")]
    pub version: Option<u64>,
    #[arg(value_name = "JOB")]
    pub job: String,
}

#[derive(Debug, clap::Args)]
pub struct RevertArgs {
    /// Return at once, printing the evaluation ID.
    #[arg(long)]
    pub detach: bool,
    #[arg(value_name = "JOB")]
    pub job: String,
    /// The version to run again.
    #[arg(value_name = "VERSION")]
    pub version: u64,
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Return at once, printing the evaluation ID.
    #[arg(long)]
    pub detach: bool,
    #[arg(value_name = "JOB")]
    pub job: String,
    /// The task group (may be left out when the job has one group).
    #[arg(value_name = "GROUP")]
    pub group_or_count: String,
    #[arg(value_name = "COUNT")]
    pub count: Option<i64>,
}

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// Promote only this task group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    #[arg(value_name = "JOB")]
    pub job: String,
}

pub async fn history(client: &Client, args: HistoryArgs) -> anyhow::Result<i32> {
    let Some((id, client)) = resolve_scoped(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let client = &client;
    let (resp, _) = client
        .job_versions_with_diffs(&id)
        .await
        .map_err(|e| api_error("retrieving job versions", e))?;
    let diffs = resp.diffs.unwrap_or_default();
    let mut blocks = Vec::new();
    for (i, v) in resp.versions.iter().enumerate() {
        if args.version.is_some_and(|n| n != v.version) {
            continue;
        }
        let mut block = kv(&[
            ("Version", v.version.to_string()),
            ("Stable", v.stable.to_string()),
            ("Submit Date", rfc3339(v.submit_time)),
        ]);
        if args.diffs {
            if let Some(d) = diffs.get(i) {
                let text = serde_json::to_string_pretty(d)?;
                block.push_str(&format!("\nDiff =\n{text}"));
            }
        }
        blocks.push(block);
    }
    if blocks.is_empty() {
        eprintln!("No version of job {id:?} matches");
        return Ok(1);
    }
    println!("{}", blocks.join("\n\n"));
    Ok(0)
}

pub async fn revert(client: &Client, args: RevertArgs) -> anyhow::Result<i32> {
    let Some((id, client)) = resolve_scoped(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let client = &client;
    let r = client
        .revert_job(&id, args.version, None)
        .await
        .map_err(|e| api_error("reverting job", e))?;
    finish(client, &r.eval_id, args.detach).await
}

pub async fn scale(client: &Client, args: ScaleArgs) -> anyhow::Result<i32> {
    let Some((id, client)) = resolve_scoped(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let client = &client;
    let (group, count) = match args.count {
        Some(c) => (args.group_or_count, c),
        None => {
            let count: i64 = args
                .group_or_count
                .parse()
                .map_err(|_| anyhow::anyhow!("Error: COUNT must be a whole number"))?;
            let (job, _) = client
                .job(&id)
                .await
                .map_err(|e| api_error("retrieving job", e))?;
            match job.task_groups.as_slice() {
                [g] => (g.name.clone(), count),
                _ => anyhow::bail!(
                    "Error: job {id:?} has several task groups; name the one to scale"
                ),
            }
        }
    };
    let r = client
        .scale_job(&id, &group, count, "submitted using the drover CLI")
        .await
        .map_err(|e| api_error("scaling job", e))?;
    finish(client, &r.eval_id, args.detach).await
}

pub async fn promote(client: &Client, args: PromoteArgs) -> anyhow::Result<i32> {
    let Some((id, client)) = resolve_scoped(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let client = &client;
    let (d, _) = client
        .job_latest_deployment(&id, &QueryOptions::default())
        .await
        .map_err(|e| api_error("retrieving deployment", e))?;
    let Some(d) = d else {
        eprintln!("Job {id:?} has no deployment to promote");
        return Ok(1);
    };
    deployment::promote(client, &d, &args.groups).await
}

/// Print the evaluation, then follow it unless detached.
async fn finish(client: &Client, eval_id: &str, detach: bool) -> anyhow::Result<i32> {
    if detach || eval_id.is_empty() {
        println!("Evaluation ID: {eval_id}");
        return Ok(0);
    }
    crate::cli::monitor::monitor(client, eval_id, false).await
}
