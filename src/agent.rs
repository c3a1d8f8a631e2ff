//! `drover agent`: runs a server, a client, or both (`-dev`) in this process.

use crate::agent_config::{parse_duration, AgentFile};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything `drover agent` can be told on its command line.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// One process holding a single-voter server and a client, raw_exec enabled.
    pub dev: bool,
    pub server: bool,
    pub client: bool,
    /// Where state lives; defaults to a `drover-data` dir.
    pub data_dir: Option<PathBuf>,
    /// Address to bind the HTTP API to (default 127.0.0.1).
    pub bind: Option<String>,
    /// HTTP API port (default 4646).
    pub http_port: Option<u16>,
    /// Raft RPC port (default: shared with the HTTP port).
    pub rpc_port: Option<u16>,
    /// Servers expected before the first cluster forms (default 1).
    pub bootstrap_expect: Option<usize>,
    /// RPC addresses of servers to form or join a cluster with.
    pub join: Vec<String>,
    /// Servers a client agent talks to (`-servers`), HTTP addresses.
    pub servers: Vec<String>,
    pub node_name: Option<String>,
    pub datacenter: Option<String>,
    pub node_class: Option<String>,
    /// `-meta k=v`, repeated.
    pub meta: Vec<(String, String)>,
    /// `-config FILE`, repeated (agent configuration in HCL).
    pub config_files: Vec<PathBuf>,
    /// `-log-level` (trace, debug, info, warn, error).
    pub log_level: Option<String>,
}

/// The default data dir: `drover-data` under the OS data location, else the working dir.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match base {
        Some(b) => b.join("drover-data"),
        None => PathBuf::from("drover-data"),
    }
}

/// A duration from an environment variable (whole milliseconds), for tuning timings in tests.
fn env_duration(name: &str) -> Option<Duration> {
    let v = std::env::var(name).ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_millis)
}

pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    // Config files first, in order; command-line flags win over them.
    let mut file = AgentFile::default();
    for f in &opts.config_files {
        file = file.merge(AgentFile::load(f)?);
    }
    let server_block = file.server.take().unwrap_or_default();
    let client_block = file.client.take().unwrap_or_default();
    let run_server = opts.dev || opts.server || server_block.enabled == Some(true);
    let run_client = opts.dev || opts.client || client_block.enabled == Some(true);
    anyhow::ensure!(
        run_server || run_client,
        "nothing to run: pass -dev, -server or -client (or enable them in a -config file)"
    );
    let data_dir = opts
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let ports = file.ports.take().unwrap_or_default();
    let bind = opts
        .bind
        .clone()
        .or(file.bind_addr.clone())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let port = opts.http_port.or(ports.http).unwrap_or(4646);
    let http_addr: SocketAddr = format!("{bind}:{port}")
        .parse()
        .with_context(|| format!("invalid bind address {bind:?} or port {port}"))?;
    let rpc_addr = match opts.rpc_port.or(ports.rpc) {
        Some(p) => Some(
            format!("{bind}:{p}")
                .parse::<SocketAddr>()
                .with_context(|| format!("invalid RPC port {p}"))?,
        ),
        None => None,
    };
    let datacenter = opts.datacenter.clone().or(file.datacenter.clone());
    let name = opts.node_name.clone().or(file.name.clone());
    tracing::info!(data_dir = %data_dir.display(), %http_addr, dev = opts.dev, "starting Drover agent");

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));

    let mut tasks = tokio::task::JoinSet::new();
    let client_cfg = run_client.then(|| {
        let mut servers = if opts.servers.is_empty() {
            client_block.servers.clone()
        } else {
            opts.servers.clone()
        };
        if servers.is_empty() {
            servers.push(format!("http://{http_addr}"));
        }
        let mut meta = client_block.meta.clone();
        meta.extend(opts.meta.iter().cloned());
        client_agent::AgentConfig {
            data_dir: data_dir.join("client"),
            servers,
            node_name: name.clone().unwrap_or_default(),
            datacenter: datacenter.clone().unwrap_or_default(),
            node_class: opts
                .node_class
                .clone()
                .or(client_block.node_class.clone())
                .unwrap_or_default(),
            node_pool: client_block.node_pool.clone().unwrap_or_default(),
            meta,
            // As in Nomad: raw_exec runs anything as the agent's user, so it is opt-in.
            raw_exec_enabled: opts.dev || file.plugin_enabled("raw_exec") == Some(true),
            http_addr: http_addr.to_string(),
        }
    });
    let client_handle = client_cfg.as_ref().map(client_agent::ClientHandle::new);
    if run_server {
        let mut cfg = server::ServerConfig::new(data_dir.join("server"), http_addr);
        cfg.ui = Some(ui::router());
        // The client API of this process's own client is served on the same listener.
        cfg.client_routes = client_handle.clone().map(client_agent::client_router);
        cfg.rpc_addr = rpc_addr;
        if let Some(adv) = file.advertise.take() {
            cfg.advertise_http = adv.http;
            cfg.advertise_rpc = adv.rpc;
        }
        cfg.bootstrap_expect = opts
            .bootstrap_expect
            .or(server_block.bootstrap_expect)
            .unwrap_or(1);
        cfg.join = if opts.join.is_empty() {
            server_block
                .server_join
                .map(|j| j.retry_join)
                .unwrap_or_default()
        } else {
            opts.join.clone()
        };
        if let Some(dc) = &datacenter {
            cfg.datacenter = dc.clone();
        }
        if let Some(r) = &file.region {
            cfg.region = r.clone();
        }
        if let Some(n) = &name {
            cfg.name = n.clone();
        }
        if let Some(d) = &server_block.min_heartbeat_ttl {
            cfg.heartbeat_ttl = parse_duration(d)?;
        }
        if let Some(d) = &server_block.heartbeat_grace {
            cfg.heartbeat_grace = parse_duration(d)?;
        }
        if let Some(d) = env_duration("DROVER_HEARTBEAT_TTL_MS") {
            cfg.heartbeat_ttl = d;
        }
        if let Some(d) = env_duration("DROVER_HEARTBEAT_GRACE_MS") {
            cfg.heartbeat_grace = d;
        }
        if let Some(d) = env_duration("DROVER_ELECTION_TIMEOUT_MS") {
            cfg.election_timeout = d;
        }
        if let Some(d) = env_duration("DROVER_WRITE_TIMEOUT_MS") {
            cfg.write_timeout = d;
        }
        if let Some(n) = std::env::var("DROVER_LOGS_KEPT_AFTER_SNAPSHOT")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            cfg.logs_kept_after_snapshot = n;
        }
        if let Some(n) = std::env::var("DROVER_SNAPSHOT_THRESHOLD")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            cfg.snapshot_threshold = n;
        }
        let token = shutdown.clone();
        tasks.spawn(async move { server::run(cfg, token).await.context("server") });
    }
    if let (Some(cfg), Some(handle)) = (client_cfg, client_handle) {
        if !run_server {
            // A client-only agent serves its client API on its own HTTP port.
            let (h, token) = (handle.clone(), shutdown.clone());
            tasks.spawn(async move {
                client_agent::http::serve(http_addr, h, token)
                    .await
                    .context("client HTTP API")
            });
        }
        let token = shutdown.clone();
        tasks.spawn(async move {
            client_agent::run_with(cfg, token, handle)
                .await
                .context("client")
        });
    }
    // The first part to stop (cleanly or not) stops the agent.
    let mut result = Ok(());
    while let Some(res) = tasks.join_next().await {
        shutdown.cancel();
        let r = res.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = r {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    tracing::info!("agent stopped");
    result
}

async fn wait_for_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("caught SIGTERM; shutting down"),
        _ = int.recv() => tracing::info!("caught SIGINT; shutting down"),
        _ = token.cancelled() => return,
    }
    token.cancel();
}
