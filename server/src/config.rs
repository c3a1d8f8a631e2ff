//! [`ServerConfig`]: everything a server needs to start, with the defaults a `-dev` agent
//! and the tests start from.

use crate::{http, raft};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Nomad's default `job_max_source_size`, "1M": 1,000,000 bytes.
pub const DEFAULT_JOB_MAX_SOURCE_SIZE: usize = 1_000_000;

/// Everything a server needs to start. Timings are configurable so tests run in seconds.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the sled database lives.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on.
    pub http_addr: SocketAddr,
    /// Address peer servers send Raft RPCs to; `None` serves them on the HTTP listener.
    pub rpc_addr: Option<SocketAddr>,
    /// Addresses other servers and agents use to reach this one (default: the bound ones).
    pub advertise_http: Option<String>,
    pub advertise_rpc: Option<String>,
    /// How many servers form the first cluster; 1 bootstraps a single voter at once.
    pub bootstrap_expect: usize,
    /// RPC addresses of other servers to form or join a cluster with.
    pub join: Vec<String>,
    /// A write that cannot commit within this time fails with "no cluster leader".
    pub write_timeout: Duration,
    /// How long a write or a consistent read that arrives while there is no leader is held
    /// waiting for one (Nomad's `rpc_hold_timeout`) before it fails with a 503.
    pub rpc_hold_timeout: Duration,
    /// Nodes must heartbeat within this TTL or be marked down.
    pub heartbeat_ttl: Duration,
    /// Extra time given to every node after a leader takes over.
    pub heartbeat_grace: Duration,
    pub election_timeout: Duration,
    /// Log entries between FSM snapshots (log compaction).
    pub snapshot_threshold: u64,
    /// Log entries kept behind a snapshot, for followers that lag a little.
    pub logs_kept_after_snapshot: u64,
    /// Scheduling workers on the leader.
    pub workers: usize,
    /// Region and datacenter this server reports.
    pub region: String,
    pub datacenter: String,
    pub name: String,
    /// Extra routes mounted on the HTTP listener (the web UI).
    pub ui: Option<axum::Router>,
    /// The `/v1/client/...` routes of a client agent in this process (`-dev`), asked
    /// before a request is relayed to the allocation's node.
    pub client_routes: Option<axum::Router>,
    /// Serve the Raft and cluster routes on the RPC listener (off for the loopback RPC
    /// listener `-dev` opens only for its own client).
    pub serve_peers: bool,
    /// Connection limits of the public HTTP listener and of the RPC listener.
    pub http_limits: http::listen::ListenLimits,
    pub rpc_limits: http::listen::ListenLimits,
    /// Told the bound RPC address once the listener is up (`-dev` hands it to its client).
    pub rpc_bound: Option<Arc<watch::Sender<Option<SocketAddr>>>>,
    /// When `rpc_addr`'s port is taken, listen on a free one instead of failing (`-dev`
    /// asks for Nomad's 4647 but must start beside another agent).
    pub rpc_port_fallback: bool,
    /// `server { job_max_count }`: the most allocations (the sum of its groups' counts)
    /// one job may ask for; 0 means no limit. Nomad's default is 50,000.
    pub job_max_count: u64,
    /// `server { job_max_source_size }`: the largest job source (HCL plus variables, in
    /// bytes) `PUT /v1/jobs/parse` takes. Nomad's default is "1M".
    pub job_max_source_size: usize,
    /// Events the event stream keeps for subscribers that start from an older index or
    /// read slowly (Nomad's `event_buffer_size`); 0 keeps none.
    pub event_buffer_size: usize,
    /// How often `GET /v1/event/stream` sends its `{}` heartbeat (Nomad: 30 seconds).
    pub event_heartbeat: Duration,
    /// `telemetry { prometheus_metrics }`: answer `GET /v1/metrics?format=prometheus`.
    pub prometheus_metrics: bool,
    /// `acl { ... }`: token checks on every request (`http::auth`).
    pub acl: AclConfig,
    /// This process's log lines for `GET /v1/agent/monitor` (none: the route answers 501).
    pub log_monitor: Option<crate::log_monitor::LogMonitor>,
    /// `tls { ... }`: TLS on the HTTP API and/or mutual TLS on the RPC listener and to
    /// peers (none: plain HTTP everywhere, Nomad's default).
    pub tls: Option<ServerTls>,
    /// The HTTP clients for peers, one per use (their timeouts differ), built once and
    /// kept so their connections are reused: a client built per request paid a TCP
    /// connect for every request a follower forwarded.
    peer_clients: Arc<std::sync::Mutex<std::collections::HashMap<&'static str, reqwest::Client>>>,
}

/// A server's TLS, built once at start from the agent's `tls` block: the listeners'
/// acceptors and the configuration peers are dialled with (this server's certificate,
/// theirs checked for `server.<region>.nomad`).
#[derive(Clone)]
pub struct ServerTls {
    pub settings: Arc<drover_tls::AgentTls>,
    rpc_acceptor: Arc<drover_tls::rustls::ServerConfig>,
    http_acceptor: Arc<drover_tls::rustls::ServerConfig>,
    dialer: Arc<drover_tls::rustls::ClientConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.settings.fmt(f)
    }
}

impl ServerTls {
    pub fn new(settings: drover_tls::AgentTls) -> Result<Self, drover_tls::TlsError> {
        Ok(ServerTls {
            rpc_acceptor: settings.rpc_acceptor()?,
            http_acceptor: settings.http_acceptor()?,
            dialer: Arc::new(settings.dialer()?),
            settings: Arc::new(settings),
        })
    }
}

impl ServerConfig {
    /// The scheme of peer servers' RPC addresses: `https` with `tls { rpc = true }`.
    pub fn rpc_scheme(&self) -> &'static str {
        match &self.tls {
            Some(t) if t.settings.rpc => "https",
            _ => "http",
        }
    }

    /// `http(s)://<addr>` for a peer's RPC address.
    pub fn rpc_url(&self, addr: &str, path_and_query: &str) -> String {
        format!("{}://{addr}{path_and_query}", self.rpc_scheme())
    }

    /// An HTTP client for peer servers' RPC listeners, built from `builder` (timeouts)
    /// the first time `purpose` asks, and kept: with `tls { rpc = true }` it presents
    /// this server's certificate and checks theirs.
    pub fn peer_client(
        &self,
        purpose: &'static str,
        builder: impl FnOnce() -> reqwest::ClientBuilder,
    ) -> reqwest::Client {
        let mut clients = self.peer_clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(purpose)
            .or_insert_with(|| {
                let b = builder();
                let b = match self.tls.as_ref().filter(|t| t.settings.rpc) {
                    Some(tls) => b.use_preconfigured_tls((*tls.dialer).clone()),
                    None => b,
                };
                b.build().expect("static reqwest configuration")
            })
            .clone()
    }

    /// The RPC listener's TLS, with `tls { rpc = true }`.
    pub fn rpc_listen_tls(&self) -> Option<http::listen::ListenTls> {
        let t = self.tls.as_ref().filter(|t| t.settings.rpc)?;
        Some(http::listen::ListenTls {
            config: t.rpc_acceptor.clone(),
            region: t.settings.region.clone(),
        })
    }

    /// The HTTP API's TLS, with `tls { http = true }`.
    pub fn http_listen_tls(&self) -> Option<http::listen::ListenTls> {
        let t = self.tls.as_ref().filter(|t| t.settings.http)?;
        Some(http::listen::ListenTls {
            config: t.http_acceptor.clone(),
            region: t.settings.region.clone(),
        })
    }
}

/// `acl { enabled token_ttl policy_ttl role_ttl }`, Nomad's names. The TTLs bound how
/// long a built ACL is cached (it is also dropped whenever the ACL tables change).
#[derive(Debug, Clone)]
pub struct AclConfig {
    pub enabled: bool,
    pub token_ttl: Duration,
    pub policy_ttl: Duration,
    pub role_ttl: Duration,
    /// Bounds on a token's `ExpirationTTL` (Nomad: 1 minute and 24 hours).
    pub token_min_expiration_ttl: Duration,
    pub token_max_expiration_ttl: Duration,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            token_ttl: Duration::from_secs(30),
            policy_ttl: Duration::from_secs(30),
            role_ttl: Duration::from_secs(30),
            token_min_expiration_ttl: Duration::from_secs(60),
            token_max_expiration_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, http_addr: SocketAddr) -> Self {
        ServerConfig {
            data_dir,
            http_addr,
            rpc_addr: None,
            advertise_http: None,
            advertise_rpc: None,
            bootstrap_expect: 1,
            join: Vec::new(),
            write_timeout: Duration::from_secs(10),
            rpc_hold_timeout: Duration::from_secs(5),
            heartbeat_ttl: Duration::from_secs(10),
            heartbeat_grace: Duration::from_secs(10),
            election_timeout: Duration::from_millis(1000),
            snapshot_threshold: 10_000,
            logs_kept_after_snapshot: 1_000,
            workers: 2,
            region: api::DEFAULT_REGION.into(),
            datacenter: "dc1".into(),
            name: "drover-server".into(),
            ui: None,
            client_routes: None,
            serve_peers: true,
            http_limits: Default::default(),
            rpc_limits: Default::default(),
            rpc_bound: None,
            rpc_port_fallback: false,
            job_max_count: api::DEFAULT_JOB_MAX_COUNT,
            job_max_source_size: DEFAULT_JOB_MAX_SOURCE_SIZE,
            event_buffer_size: 10_000,
            event_heartbeat: Duration::from_secs(30),
            prometheus_metrics: true,
            acl: AclConfig::default(),
            log_monitor: None,
            tls: None,
            peer_clients: Default::default(),
        }
    }

    /// This server as Raft membership records it.
    pub fn server_node(&self) -> raft::ServerNode {
        let http = self
            .advertise_http
            .clone()
            .unwrap_or_else(|| self.http_addr.to_string());
        let rpc = self
            .advertise_rpc
            .clone()
            .or_else(|| self.rpc_addr.map(|a| a.to_string()))
            .unwrap_or_else(|| http.clone());
        raft::ServerNode {
            name: self.name.clone(),
            rpc_addr: rpc,
            http_addr: http,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_client_is_built_once_per_purpose_and_kept_so_connections_are_reused() {
        let config = ServerConfig::new(std::env::temp_dir(), "127.0.0.1:0".parse().unwrap());
        let built = std::sync::atomic::AtomicUsize::new(0);
        let builder = || {
            built.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            reqwest::Client::builder()
        };
        config.peer_client("forward", builder);
        config.peer_client("forward", builder);
        // A clone of the configuration (what each listener holds) shares the clients.
        config.clone().peer_client("forward", builder);
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 1);
        config.peer_client("join", builder);
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
