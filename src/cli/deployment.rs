//! `drover deployment list|status|promote|fail|pause|resume`.

use crate::cli::format::{api_error, id, kv, rfc3339, table};
use crate::cli::lookup;
use api::{Client, Deployment, QueryOptions};

#[derive(Debug, clap::Subcommand)]
pub enum DeploymentCommand {
    /// List deployments, newest first.
    List(ListArgs),
    /// Show a deployment and its task groups' progress.
    Status(IdArgs),
    /// Promote a deployment's canaries (all groups unless -group is given).
    Promote(PromoteArgs),
    /// Mark a deployment failed (rolls back with `auto_revert`).
    Fail(IdArgs),
    /// Pause a deployment: nothing new is placed for it, its deadline does not run out.
    Pause(IdArgs),
    /// Resume a paused deployment.
    Resume(IdArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
    /// A deployment ID or prefix.
    #[arg(value_name = "DEPLOYMENT")]
    pub deployment: String,
}

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// Promote only this task group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
    /// A deployment ID or prefix.
    #[arg(value_name = "DEPLOYMENT")]
    pub deployment: String,
}

pub async fn run(client: &Client, cmd: DeploymentCommand) -> anyhow::Result<i32> {
    match cmd {
        DeploymentCommand::List(a) => list(client, a.verbose).await,
        DeploymentCommand::Status(a) => {
            let Some(d) = resolve(client, &a.deployment).await? else {
                return Ok(1);
            };
            println!("{}", status_text(&d, a.verbose));
            Ok(0)
        }
        DeploymentCommand::Promote(a) => {
            let Some(d) = resolve(client, &a.deployment).await? else {
                return Ok(1);
            };
            promote(client, &d, &a.groups).await
        }
        DeploymentCommand::Fail(a) => change(client, &a, Change::Fail).await,
        DeploymentCommand::Pause(a) => change(client, &a, Change::Pause).await,
        DeploymentCommand::Resume(a) => change(client, &a, Change::Resume).await,
    }
}

/// The deployment table `deployment list` prints.
pub fn list_table(ds: &[Deployment], verbose: bool) -> String {
    table(
        &["ID", "Job ID", "Job Version", "Status", "Description"],
        ds.iter()
            .map(|d| {
                vec![
                    id(&d.id, verbose).to_string(),
                    d.job_id.clone(),
                    d.job_version.to_string(),
                    d.status.clone(),
                    d.status_description.clone(),
                ]
            })
            .collect(),
    )
}

async fn list(client: &Client, verbose: bool) -> anyhow::Result<i32> {
    let (ds, _) = client
        .deployments(&QueryOptions::default())
        .await
        .map_err(|e| api_error("retrieving deployments", e))?;
    if ds.is_empty() {
        println!("No deployments found");
    } else {
        println!("{}", list_table(&ds, verbose));
    }
    Ok(0)
}

/// The one deployment `prefix` names, or `None` after saying why not.
pub async fn resolve(client: &Client, prefix: &str) -> anyhow::Result<Option<Deployment>> {
    let opts = QueryOptions {
        prefix: Some(prefix.to_string()),
        ..Default::default()
    };
    let (ds, _) = client
        .deployments(&opts)
        .await
        .map_err(|e| api_error("retrieving deployments", e))?;
    let mut ds = lookup::narrow(ds, prefix, |d| &d.id);
    match ds.len() {
        0 => {
            eprintln!("No deployment(s) with prefix or ID {prefix:?} found");
            Ok(None)
        }
        1 => Ok(Some(ds.remove(0))),
        _ => {
            eprintln!(
                "Prefix matched multiple deployments\n\n{}",
                list_table(&ds, true)
            );
            Ok(None)
        }
    }
}

/// `deployment status` (and the deployment part of `job status`).
pub fn status_text(d: &Deployment, verbose: bool) -> String {
    let mut out = kv(&[
        ("ID", id(&d.id, verbose).to_string()),
        ("Job ID", d.job_id.clone()),
        ("Job Version", d.job_version.to_string()),
        ("Status", d.status.clone()),
        ("Description", d.status_description.clone()),
    ]);
    out.push_str("\n\nDeployed\n");
    out.push_str(&groups_table(d));
    out
}

/// The "Latest Deployment" block of `job status`.
pub fn latest_block(d: &Deployment, verbose: bool) -> String {
    let head = kv(&[
        ("ID", id(&d.id, verbose).to_string()),
        ("Status", d.status.clone()),
        ("Description", d.status_description.clone()),
    ]);
    format!("{head}\n\nDeployed\n{}", groups_table(d))
}

/// One row per task group, with Nomad's columns (Auto Revert and Promoted only when
/// some group uses them).
pub fn groups_table(d: &Deployment) -> String {
    let revert = d.task_groups.values().any(|g| g.auto_revert);
    let canaries = d.task_groups.values().any(|g| g.desired_canaries > 0);
    let mut header = vec!["Task Group"];
    if revert {
        header.push("Auto Revert");
    }
    if canaries {
        header.push("Promoted");
    }
    header.extend(["Desired"]);
    if canaries {
        header.push("Canaries");
    }
    header.extend(["Placed", "Healthy", "Unhealthy", "Progress Deadline"]);
    let rows = d
        .task_groups
        .iter()
        .map(|(name, g)| {
            let mut row = vec![name.clone()];
            if revert {
                row.push(g.auto_revert.to_string());
            }
            if canaries {
                row.push(if g.desired_canaries > 0 {
                    g.promoted.to_string()
                } else {
                    "N/A".into()
                });
            }
            row.push(g.desired_total.to_string());
            if canaries {
                row.push(g.desired_canaries.to_string());
            }
            row.push(g.placed_allocs.to_string());
            row.push(g.healthy_allocs.to_string());
            row.push(g.unhealthy_allocs.to_string());
            row.push(rfc3339(g.require_progress_by));
            row
        })
        .collect();
    table(&header, rows)
}

/// Promote `d`'s canaries; the server refuses (with its sentence) until they are healthy.
pub async fn promote(client: &Client, d: &Deployment, groups: &[String]) -> anyhow::Result<i32> {
    let r = client
        .promote_deployment(&d.id, groups)
        .await
        .map_err(|e| api_error("promoting deployment", e))?;
    println!(
        "Deployment {} promoted (evaluation {})",
        api::short_id(&d.id),
        api::short_id(&r.eval_id)
    );
    Ok(0)
}

enum Change {
    Fail,
    Pause,
    Resume,
}

async fn change(client: &Client, a: &IdArgs, what: Change) -> anyhow::Result<i32> {
    let Some(d) = resolve(client, &a.deployment).await? else {
        return Ok(1);
    };
    let short = id(&d.id, a.verbose);
    match what {
        Change::Fail => {
            client
                .fail_deployment(&d.id)
                .await
                .map_err(|e| api_error("failing deployment", e))?;
            println!("Deployment {short} failed");
        }
        Change::Pause => {
            client
                .pause_deployment(&d.id, true)
                .await
                .map_err(|e| api_error("pausing deployment", e))?;
            println!("Deployment {short} paused");
        }
        Change::Resume => {
            client
                .pause_deployment(&d.id, false)
                .await
                .map_err(|e| api_error("resuming deployment", e))?;
            println!("Deployment {short} resumed");
        }
    }
    Ok(0)
}
