//! `drover server members` and `drover operator raft|snapshot|scheduler ...`.

use super::format::{api_error, table};
use api::{Client, QueryOptions};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum ServerCommand {
    /// List the servers of the cluster and whether each answers.
    Members,
}

#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Inspect and change the Raft configuration.
    Raft {
        #[command(subcommand)]
        cmd: RaftCommand,
    },
    /// Save or restore the cluster's state.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCommand,
    },
    /// Read or change the scheduler configuration (algorithm, preemption, brakes).
    Scheduler {
        #[command(subcommand)]
        cmd: SchedulerCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SchedulerCommand {
    /// Show the scheduler configuration.
    GetConfig {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the scheduler configuration; settings not given keep their value.
    SetConfig(SetConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetConfigArgs {
    /// Write only if the configuration is still at this modify index.
    #[arg(long = "check-index", value_name = "INDEX")]
    pub check_index: Option<u64>,
    /// "binpack" (fill nodes up) or "spread" (prefer the emptiest node).
    #[arg(long = "scheduler-algorithm", value_name = "ALGORITHM")]
    pub scheduler_algorithm: Option<String>,
    #[arg(long = "memory-oversubscription", value_name = "BOOL")]
    pub memory_oversubscription: Option<bool>,
    #[arg(long = "reject-job-registration", value_name = "BOOL")]
    pub reject_job_registration: Option<bool>,
    #[arg(long = "pause-eval-broker", value_name = "BOOL")]
    pub pause_eval_broker: Option<bool>,
    #[arg(long = "preempt-batch-scheduler", value_name = "BOOL")]
    pub preempt_batch_scheduler: Option<bool>,
    #[arg(long = "preempt-service-scheduler", value_name = "BOOL")]
    pub preempt_service_scheduler: Option<bool>,
    #[arg(long = "preempt-sysbatch-scheduler", value_name = "BOOL")]
    pub preempt_sysbatch_scheduler: Option<bool>,
    #[arg(long = "preempt-system-scheduler", value_name = "BOOL")]
    pub preempt_system_scheduler: Option<bool>,
}

#[derive(Debug, clap::Subcommand)]
pub enum RaftCommand {
    /// Show the servers in the Raft configuration, their roles and addresses.
    ListPeers,
    /// Remove a server from the Raft configuration.
    RemovePeer(PeerArgs),
    /// Make another server the leader.
    TransferLeadership(PeerArgs),
}

#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// The server's RPC (or HTTP) address, host:port.
    #[arg(long = "peer-address", value_name = "ADDR")]
    pub peer_address: Option<String>,
    /// The server's Raft ID.
    #[arg(long = "peer-id", value_name = "ID")]
    pub peer_id: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Write the cluster's state to FILE.
    Save { file: PathBuf },
    /// Replace the cluster's state with the one saved in FILE.
    Restore { file: PathBuf },
}

pub async fn members(client: &Client) -> anyhow::Result<i32> {
    let (v, _): (Value, _) = client
        .get("/v1/agent/members", &QueryOptions::default())
        .await
        .map_err(|e| api_error("querying servers", e))?;
    let rows = v["Members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            vec![
                m["Name"].as_str().unwrap_or("").to_string(),
                m["Addr"].as_str().unwrap_or("").to_string(),
                m["Port"].to_string(),
                m["Status"].as_str().unwrap_or("").to_string(),
                m["Tags"]["leader"].as_str().unwrap_or("false").to_string(),
                m["Tags"]["build"].as_str().unwrap_or("").to_string(),
                m["Tags"]["dc"].as_str().unwrap_or("").to_string(),
                m["Tags"]["region"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "Name",
                "Address",
                "Port",
                "Status",
                "Leader",
                "Build",
                "Datacenter",
                "Region"
            ],
            rows
        )
    );
    Ok(0)
}

pub async fn operator(client: &Client, cmd: OperatorCommand) -> anyhow::Result<i32> {
    match cmd {
        OperatorCommand::Raft {
            cmd: RaftCommand::ListPeers,
        } => list_peers(client).await,
        OperatorCommand::Raft {
            cmd: RaftCommand::RemovePeer(p),
        } => remove_peer(client, p).await,
        OperatorCommand::Raft {
            cmd: RaftCommand::TransferLeadership(p),
        } => transfer_leadership(client, p).await,
        OperatorCommand::Snapshot {
            cmd: SnapshotCommand::Save { file },
        } => snapshot_save(client, file).await,
        OperatorCommand::Snapshot {
            cmd: SnapshotCommand::Restore { file },
        } => snapshot_restore(client, file).await,
        OperatorCommand::Scheduler {
            cmd: SchedulerCommand::GetConfig { json },
        } => scheduler_get_config(client, json).await,
        OperatorCommand::Scheduler {
            cmd: SchedulerCommand::SetConfig(a),
        } => scheduler_set_config(client, a).await,
    }
}

const SCHEDULER_CONFIG_PATH: &str = "/v1/operator/scheduler/configuration";

async fn read_scheduler_config(
    client: &Client,
) -> anyhow::Result<api::SchedulerConfigurationResponse> {
    let (v, _) = client
        .get(SCHEDULER_CONFIG_PATH, &QueryOptions::default())
        .await
        .map_err(|e| api_error("reading the scheduler configuration", e))?;
    Ok(v)
}

async fn scheduler_get_config(client: &Client, json: bool) -> anyhow::Result<i32> {
    let resp = read_scheduler_config(client).await?;
    let c = resp.scheduler_config;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(0);
    }
    let p = &c.preemption_config;
    let rows = [
        ("Scheduler Algorithm", c.scheduler_algorithm.clone()),
        (
            "Memory Oversubscription",
            c.memory_oversubscription_enabled.to_string(),
        ),
        (
            "Reject Job Registration",
            c.reject_job_registration.to_string(),
        ),
        ("Pause Eval Broker", c.pause_eval_broker.to_string()),
        (
            "Preemption System Scheduler",
            p.system_scheduler_enabled.to_string(),
        ),
        (
            "Preemption Service Scheduler",
            p.service_scheduler_enabled.to_string(),
        ),
        (
            "Preemption Batch Scheduler",
            p.batch_scheduler_enabled.to_string(),
        ),
        (
            "Preemption SysBatch Scheduler",
            p.sys_batch_scheduler_enabled.to_string(),
        ),
        ("Modify Index", c.modify_index.to_string()),
    ];
    for (k, v) in rows {
        println!("{k:<30}= {v}");
    }
    Ok(0)
}

async fn scheduler_set_config(client: &Client, a: SetConfigArgs) -> anyhow::Result<i32> {
    let mut c = read_scheduler_config(client).await?.scheduler_config;
    if let Some(v) = a.scheduler_algorithm {
        c.scheduler_algorithm = v;
    }
    c.validate().map_err(anyhow::Error::msg)?;
    let set = |field: &mut bool, v: Option<bool>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(
        &mut c.memory_oversubscription_enabled,
        a.memory_oversubscription,
    );
    set(&mut c.reject_job_registration, a.reject_job_registration);
    set(&mut c.pause_eval_broker, a.pause_eval_broker);
    let p = &mut c.preemption_config;
    set(&mut p.batch_scheduler_enabled, a.preempt_batch_scheduler);
    set(
        &mut p.service_scheduler_enabled,
        a.preempt_service_scheduler,
    );
    set(
        &mut p.sys_batch_scheduler_enabled,
        a.preempt_sysbatch_scheduler,
    );
    set(&mut p.system_scheduler_enabled, a.preempt_system_scheduler);
    let path = match a.check_index {
        Some(i) => format!("{SCHEDULER_CONFIG_PATH}?cas={i}"),
        None => SCHEDULER_CONFIG_PATH.to_string(),
    };
    let resp: api::SchedulerSetConfigurationResponse = client
        .put(&path, &c)
        .await
        .map_err(|e| api_error("updating the scheduler configuration", e))?;
    if !resp.updated {
        eprintln!(
            "Scheduler configuration not updated: it changed since index {} (check-index)",
            a.check_index.unwrap_or_default()
        );
        return Ok(1);
    }
    println!("Scheduler configuration updated!");
    Ok(0)
}

async fn list_peers(client: &Client) -> anyhow::Result<i32> {
    let (v, _): (Value, _) = client
        .get("/v1/operator/raft/configuration", &QueryOptions::default())
        .await
        .map_err(|e| api_error("reading the Raft configuration", e))?;
    let rows = v["Servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let state = if s["Leader"] == true {
                "leader"
            } else {
                "follower"
            };
            vec![
                s["Node"].as_str().unwrap_or("").to_string(),
                s["ID"].as_str().unwrap_or("").to_string(),
                s["Address"].as_str().unwrap_or("").to_string(),
                state.to_string(),
                s["Voter"].to_string(),
                s["RaftProtocol"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["Node", "ID", "Address", "State", "Voter", "RaftProtocol"],
            rows
        )
    );
    Ok(0)
}

async fn remove_peer(client: &Client, p: PeerArgs) -> anyhow::Result<i32> {
    let q = peer_query(&p)?;
    let v: Value = client
        .delete("/v1/operator/raft/peer", &q)
        .await
        .map_err(|e| api_error("removing the peer", e))?;
    println!(
        "Removed peer with ID {}",
        v["Removed"].as_str().unwrap_or("?")
    );
    Ok(0)
}

async fn transfer_leadership(client: &Client, p: PeerArgs) -> anyhow::Result<i32> {
    let q = peer_query(&p)?;
    let path = format!(
        "/v1/operator/raft/transfer-leadership?{}",
        q.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let v: Value = client
        .put(&path, &serde_json::json!({}))
        .await
        .map_err(|e| api_error("transferring leadership", e))?;
    println!(
        "Leadership transferred to server {}",
        v["Leader"].as_str().unwrap_or("?")
    );
    Ok(0)
}

async fn snapshot_save(client: &Client, file: PathBuf) -> anyhow::Result<i32> {
    let (v, meta): (Value, _) = client
        .get("/v1/operator/snapshot", &QueryOptions::default())
        .await
        .map_err(|e| api_error("saving a snapshot", e))?;
    let bytes = serde_json::to_vec(&v)?;
    let tmp = file.with_extension("partial");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &file)?;
    println!(
        "State file written to {} ({} bytes, index {})",
        file.display(),
        bytes.len(),
        meta.last_index
    );
    Ok(0)
}

async fn snapshot_restore(client: &Client, file: PathBuf) -> anyhow::Result<i32> {
    let text =
        std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a Drover snapshot: {e}", file.display()))?;
    let _: Value = client
        .put("/v1/operator/snapshot", &v)
        .await
        .map_err(|e| api_error("restoring the snapshot", e))?;
    println!("Snapshot restored");
    Ok(0)
}

fn peer_query(p: &PeerArgs) -> anyhow::Result<Vec<(String, String)>> {
    match (&p.peer_address, &p.peer_id) {
        (Some(a), _) => Ok(vec![("address".to_string(), a.clone())]),
        (None, Some(id)) => Ok(vec![("id".to_string(), id.clone())]),
        (None, None) => anyhow::bail!("give the server with -peer-address or -peer-id"),
    }
}
