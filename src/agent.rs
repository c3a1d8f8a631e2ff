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
    /// RPC port: peers, client agents and forwarded requests (default: none; `-dev` and a
    /// server running its own client open a loopback one).
    pub rpc_port: Option<u16>,
    /// Servers expected before the first cluster forms (default 1).
    pub bootstrap_expect: Option<usize>,
    /// RPC addresses of servers to form or join a cluster with.
    pub join: Vec<String>,
    /// Servers a client agent talks to (`-servers`): their RPC addresses.
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
    /// `-acl-enabled`: as `acl { enabled = true }`.
    pub acl_enabled: bool,
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

/// The RPC port `-dev` asks for first: Nomad's default.
const DEV_RPC_PORT: u16 = 4647;

/// Runs the agent; `logs` is this process's log fan-out, served at `/v1/agent/monitor`.
pub async fn run(opts: AgentOptions, logs: server::log_monitor::LogMonitor) -> anyhow::Result<()> {
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
    let (http_limits, rpc_limits) = listen_limits(file.limits.take().unwrap_or_default())?;
    let telemetry = file.telemetry.take().unwrap_or_default();
    if let Some(d) = &telemetry.collection_interval {
        parse_duration(d).context("telemetry.collection_interval")?;
    }
    // A server without an RPC port that runs this process's client (`-dev`) opens a
    // loopback RPC listener on 4647 (a free port when that is taken), for that client
    // only: no peer routes.
    let local_rpc = run_server && run_client && rpc_addr.is_none();
    let forms_cluster = opts
        .bootstrap_expect
        .or(server_block.bootstrap_expect)
        .unwrap_or(1)
        > 1
        || !opts.join.is_empty()
        || server_block
            .server_join
            .as_ref()
            .is_some_and(|j| !j.retry_join.is_empty());
    anyhow::ensure!(
        !(run_server && forms_cluster && rpc_addr.is_none()),
        "a server that forms or joins a cluster needs an RPC port for its peers and client \
         agents: pass -rpc-port (Nomad's is 4647) or set ports {{ rpc = 4647 }}"
    );
    let datacenter = opts.datacenter.clone().or(file.datacenter.clone());
    let name = opts.node_name.clone().or(file.name.clone());
    // `tls { ... }`: loaded (and checked) before anything listens; a missing, unreadable
    // or mismatched file stops the agent with a sentence naming it.
    let region = file
        .region
        .clone()
        .unwrap_or_else(|| drover_tls::DEFAULT_REGION.to_string());
    let tls = match &file.tls {
        Some(block) => {
            drover_tls::AgentTls::load(&block.options(&region)).map_err(anyhow::Error::msg)?
        }
        None => None,
    };
    if let Some(t) = &tls {
        tracing::info!(
            http = t.http,
            rpc = t.rpc,
            verify_server_hostname = t.verify_server_hostname,
            verify_https_client = t.verify_https_client,
            "TLS enabled"
        );
    }
    let servers_tls = match &tls {
        Some(t) => client_agent::config::ServersTls::new(t).map_err(anyhow::Error::msg)?,
        None => None,
    };
    tracing::info!(data_dir = %data_dir.display(), %http_addr, dev = opts.dev, "starting Drover agent");

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));

    let mut tasks = tokio::task::JoinSet::new();
    // Driver settings are checked even when this agent runs no client: a wrong one is
    // an error at start, not when the first task needs it.
    let exec_cfg = client_agent::driver::exec::ExecConfig::from_agent_config(
        file.plugin_config("exec"),
        &client_block.options,
    )
    .map_err(anyhow::Error::msg)?;
    let docker_cfg = client_agent::driver::docker::DockerPluginConfig::from_agent_config(
        file.plugin_config("docker"),
    )
    .map_err(anyhow::Error::msg)?;
    let client_cfg = run_client.then(|| {
        let mut servers = if opts.servers.is_empty() {
            client_block.servers.clone()
        } else {
            opts.servers.clone()
        };
        if servers.is_empty() && !run_server {
            return Err(anyhow::anyhow!(
                "a client agent needs its servers' RPC addresses: pass -servers 10.0.0.1:4647 \
                 or set client {{ servers = [\"10.0.0.1:4647\"] }}"
            ));
        }
        // Empty with a server in this process: its RPC address, once it listens.
        servers.retain(|s| !s.trim().is_empty());
        let mut meta = client_block.meta.clone();
        meta.extend(opts.meta.iter().cloned());
        Ok(client_agent::AgentConfig {
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
            exec: exec_cfg.clone(),
            docker: docker_cfg.clone(),
            http_addr: http_addr.to_string(),
            tls: servers_tls.clone(),
        })
    });
    let client_cfg = client_cfg.transpose()?;
    let (rpc_bound_tx, rpc_bound) = tokio::sync::watch::channel(None);
    let client_handle = client_cfg.as_ref().map(client_agent::ClientHandle::new);
    if let Some(h) = client_handle.clone() {
        // Nomad publishes host metrics only when asked; -dev asks.
        let host = telemetry.publish_node_metrics.unwrap_or(opts.dev);
        server::metrics::global().add_source(move || {
            client_agent::metrics::gauges(&h, host)
                .into_iter()
                .map(|(name, labels, value)| server::metrics::Gauge {
                    name,
                    labels,
                    value,
                })
                .collect()
        });
    }
    if run_server {
        let mut cfg = server::ServerConfig::new(data_dir.join("server"), http_addr);
        cfg.ui = Some(ui::router());
        // The client API of this process's own client is served on the same listener.
        cfg.client_routes = client_handle.clone().map(client_agent::client_router);
        cfg.rpc_addr = rpc_addr;
        if local_rpc {
            // Nomad's dev agent answers RPC on 4647 beside HTTP on 4646; another agent
            // holding it moves this one to a free port (logged) rather than failing. An
            // agent told another HTTP port (tests, several dev agents) takes a free one.
            let default_ports = opts.http_port.or(ports.http).is_none();
            let port = if default_ports { DEV_RPC_PORT } else { 0 };
            cfg.rpc_addr = Some(SocketAddr::from(([127, 0, 0, 1], port)));
            cfg.rpc_port_fallback = true;
            cfg.serve_peers = false;
        }
        // Nomad answers ?format=prometheus only with prometheus_metrics = true; -dev
        // turns it on, since a developer's first scrape should work.
        cfg.prometheus_metrics = telemetry.prometheus_metrics.unwrap_or(opts.dev);
        cfg.log_monitor = Some(logs.clone());
        cfg.tls = tls
            .clone()
            .map(server::ServerTls::new)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        if let Some(a) = &file.acl {
            cfg.acl.enabled = a.enabled.unwrap_or(false);
            for (text, slot) in [
                (&a.token_ttl, &mut cfg.acl.token_ttl),
                (&a.policy_ttl, &mut cfg.acl.policy_ttl),
                (&a.role_ttl, &mut cfg.acl.role_ttl),
                (
                    &a.token_min_expiration_ttl,
                    &mut cfg.acl.token_min_expiration_ttl,
                ),
                (
                    &a.token_max_expiration_ttl,
                    &mut cfg.acl.token_max_expiration_ttl,
                ),
            ] {
                if let Some(t) = text {
                    *slot = parse_duration(t)?;
                }
            }
        }
        cfg.acl.enabled |= opts.acl_enabled;
        cfg.http_limits = http_limits;
        cfg.rpc_limits = rpc_limits;
        cfg.rpc_bound = Some(std::sync::Arc::new(rpc_bound_tx));
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
        if let Some(d) = &server_block.rpc_hold_timeout {
            cfg.rpc_hold_timeout = parse_duration(d)?;
        }
        if let Some(d) = env_duration("DROVER_RPC_HOLD_TIMEOUT_MS") {
            cfg.rpc_hold_timeout = d;
        }
        if let Some(d) = env_duration("DROVER_EVENT_HEARTBEAT_MS") {
            cfg.event_heartbeat = d;
        }
        if let Some(n) = std::env::var("DROVER_EVENT_BUFFER_SIZE")
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            cfg.event_buffer_size = n;
        }
        if let Some(n) = server_block.job_max_count {
            cfg.job_max_count = n;
        }
        if let Some(n) = server_block.num_schedulers {
            anyhow::ensure!(
                (1..=128).contains(&n),
                "server block: num_schedulers must be between 1 and 128, not {n} (a server \
                 that leads needs a worker to schedule anything)"
            );
            cfg.workers = n;
        }
        if let Some(size) = &server_block.job_max_source_size {
            let bytes = crate::agent_config::parse_byte_size(size)
                .context("server block: job_max_source_size")?;
            cfg.job_max_source_size = usize::try_from(bytes).unwrap_or(usize::MAX);
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
            // A client-only agent serves its client API on its own HTTP port (over TLS
            // with `tls { http = true }`).
            let (h, token) = (handle.clone(), shutdown.clone());
            let acl =
                opts.acl_enabled || file.acl.as_ref().is_some_and(|a| a.enabled == Some(true));
            let listen = client_agent::http::ListenOptions {
                tls: match &tls {
                    Some(t) => client_agent::http::HttpTls::new(t).map_err(anyhow::Error::msg)?,
                    None => None,
                },
                header_read_timeout: http_limits.header_read_timeout,
            };
            tasks.spawn(async move {
                if acl {
                    client_agent::http::serve_relayed_only(http_addr, h, listen, token).await
                } else {
                    client_agent::http::serve(http_addr, h, listen, token).await
                }
                .context("client HTTP API")
            });
        }
        let token = shutdown.clone();
        let mut rpc_bound = rpc_bound;
        tasks.spawn(async move {
            let mut cfg = cfg;
            if cfg.servers.is_empty() {
                // This process's server: talk to it on its RPC listener.
                let addr = tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    a = rpc_bound.wait_for(Option::is_some) => a.ok().and_then(|a| *a),
                };
                let Some(addr) = addr else {
                    anyhow::bail!("the server stopped before its RPC listener was up");
                };
                cfg.servers = vec![addr.to_string()];
            }
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

/// The listeners' limits from the agent's `limits` block (Nomad's defaults otherwise).
fn listen_limits(
    l: crate::agent_config::Limits,
) -> anyhow::Result<(
    server::http::listen::ListenLimits,
    server::http::listen::ListenLimits,
)> {
    let mut http = server::http::listen::ListenLimits::default();
    let mut rpc = http;
    if let Some(n) = l.http_max_conns_per_client {
        http.max_conns_per_client = n;
    }
    if let Some(n) = l.rpc_max_conns_per_client {
        rpc.max_conns_per_client = n;
    }
    if let Some(d) = &l.https_handshake_timeout {
        http.header_read_timeout = parse_duration(d).context("limits.https_handshake_timeout")?;
    }
    if let Some(d) = &l.rpc_handshake_timeout {
        rpc.header_read_timeout = parse_duration(d).context("limits.rpc_handshake_timeout")?;
    }
    // For tests that simulate a fleet from one address.
    let env_count = |name: &str| std::env::var(name).ok()?.trim().parse::<usize>().ok();
    if let Some(n) = env_count("DROVER_HTTP_MAX_CONNS_PER_CLIENT") {
        http.max_conns_per_client = n;
    }
    if let Some(n) = env_count("DROVER_RPC_MAX_CONNS_PER_CLIENT") {
        rpc.max_conns_per_client = n;
    }
    Ok((http, rpc))
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
    // A stop that hangs (storage gone under it, a peer that never answers) must not keep
    // the process: a second signal ends it at once, and a watchdog thread (which needs
    // no runtime, in case the runtime is what hangs) ends it after the grace period.
    // Acknowledged writes are already on disk, so exiting loses none of them.
    let grace = shutdown_grace();
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        eprintln!("drover: shutdown did not finish within {grace:?}; exiting");
        std::process::exit(1);
    });
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("drover: second signal during shutdown; exiting now");
    std::process::exit(1);
}

/// How long a stop may take before the agent exits anyway: `DROVER_SHUTDOWN_GRACE_MS`,
/// else 30 seconds (tasks' kill timeouts run on the client, not in this wait).
fn shutdown_grace() -> Duration {
    env_duration("DROVER_SHUTDOWN_GRACE_MS").unwrap_or(Duration::from_secs(30))
}
