//! `drover system gc|reconcile summaries`, `drover job eval` and `drover node eval`.

use super::format::api_error;
use super::lookup::{self, Kind};
use super::{job, monitor, node};
use api::Client;
use serde_json::Value;

#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Collect terminal evaluations, allocations and dead jobs now.
    Gc,
    /// Reconcile the cluster's bookkeeping.
    Reconcile {
        #[command(subcommand)]
        cmd: ReconcileCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ReconcileCommand {
    /// Recompute every job's summary from its allocations.
    Summaries,
}

pub async fn run(client: &Client, cmd: SystemCommand) -> anyhow::Result<i32> {
    match cmd {
        SystemCommand::Gc => {
            let _: Value = client
                .put("/v1/system/gc", &serde_json::json!({}))
                .await
                .map_err(|e| api_error("running the garbage collector", e))?;
            Ok(0)
        }
        SystemCommand::Reconcile {
            cmd: ReconcileCommand::Summaries,
        } => {
            let _: Value = client
                .put("/v1/system/reconcile/summaries", &serde_json::json!({}))
                .await
                .map_err(|e| api_error("reconciling job summaries", e))?;
            println!("Reconciled job summaries");
            Ok(0)
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct JobEvalArgs {
    /// Reschedule the job's failed allocations now, whatever their reschedule delay.
    #[arg(long = "force-reschedule")]
    pub force_reschedule: bool,
    /// Return as soon as the evaluation is created, without following it.
    #[arg(long)]
    pub detach: bool,
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
    /// The job's ID (or a prefix of it).
    #[arg(value_name = "JOB")]
    pub job: String,
}

/// `drover job eval JOB`: a new evaluation of the job, followed like `job run`'s.
pub async fn job_eval(client: &Client, args: JobEvalArgs) -> anyhow::Result<i32> {
    let Some(id) = job::resolve(client, &args.job).await? else {
        return Ok(lookup::not_found(Kind::Job, &args.job));
    };
    let body = serde_json::json!({
        "JobID": id,
        "EvalOptions": { "ForceReschedule": args.force_reschedule },
    });
    let path = format!("/v1/job/{}/evaluate", api::url::encode(&id));
    let resp: Value = client
        .put(&path, &body)
        .await
        .map_err(|e| api_error("evaluating the job", e))?;
    let eval_id = resp["EvalID"].as_str().unwrap_or_default().to_string();
    if args.detach {
        println!("Job evaluation successful");
        println!("Evaluation ID: {eval_id}");
        return Ok(0);
    }
    monitor::monitor(client, &eval_id, args.verbose).await
}

#[derive(Debug, clap::Args)]
pub struct NodeEvalArgs {
    /// The node's ID (or a prefix of it).
    #[arg(value_name = "NODE")]
    pub node: String,
}

/// `drover node eval NODE`: evaluate every job with allocations on the node.
pub async fn node_eval(client: &Client, args: NodeEvalArgs) -> anyhow::Result<i32> {
    let nodes = node::matching(client, &args.node).await?;
    let Some(n) = lookup::one_or_tell(Kind::Node, &args.node, nodes, |n| {
        node::node_list_table(n, false)
    }) else {
        return Ok(1);
    };
    let path = format!("/v1/node/{}/evaluate", api::url::encode(&n.id));
    let resp: Value = client
        .put(&path, &serde_json::json!({}))
        .await
        .map_err(|e| api_error("evaluating the node", e))?;
    let ids: Vec<&str> = resp["EvalIDs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        println!(
            "No evaluations created: no job has allocations on node {}",
            n.id
        );
    } else {
        println!("Created {} evaluation(s) for node {}:", ids.len(), n.id);
        for id in ids {
            println!("  {id}");
        }
    }
    Ok(0)
}
