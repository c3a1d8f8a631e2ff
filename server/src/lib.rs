//! Drover's server: Raft-replicated state, scheduling, and the `/v1` HTTP API.
//!
//! Data flow: an HTTP write becomes one Raft entry (`fsm::Command`); the FSM applies it to
//! the in-memory state store and tells the leader's services (`Leader`) what changed; the
//! eval broker hands evaluations to workers, which run the pure scheduler on a snapshot and
//! send plans to the one plan applier, which commits what still fits.

pub mod broker;
pub mod client_updates;
pub mod cluster;
mod config;
pub mod deployments;
pub mod drainer;
pub mod events;
pub mod fsm;
pub mod gc;
pub mod heartbeat;
pub mod http;
pub mod keyring;
mod leader;
pub mod log_monitor;
pub mod metrics;
pub mod periodic;
pub mod plan_apply;
pub mod raft;
pub mod search;
pub mod state;
pub mod watchers;
pub mod worker;

pub use crate::config::{AclConfig, ServerConfig, ServerTls, DEFAULT_JOB_MAX_SOURCE_SIZE};

use crate::broker::EvalBroker;
use crate::fsm::{Command, Effects, Response};
use crate::heartbeat::Heartbeats;
use crate::raft::store::{ApplyHook, LogStore, StateMachine};
use crate::raft::{NodeId, Raft};
use crate::state::StateStore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Errors a write can end in, each with the HTTP status it maps to.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("no cluster leader")]
    NoLeader,
    #[error(
        "no cluster leader: the write did not commit within {0:?} (is a quorum of servers up?)"
    )]
    NoQuorum(Duration),
    #[error("this server is not the leader; the leader is at {0}")]
    NotLeader(String),
    #[error("timed out waiting for the write to commit")]
    Timeout,
    #[error("raft: {0}")]
    Raft(String),
    #[error("{0}")]
    Rejected(String),
}

tokio::task_local! {
    /// The token of the API request this task answers, when the request may be sent to a
    /// leader more than once (see `http::forward`).
    static REQUEST_TOKEN: (String, std::sync::atomic::AtomicU32);
}

/// Run `f` (an API request's handler) with `token` as its request token: each write it
/// makes is proposed with `token-N` (N counting its writes), which the state machine
/// applies once.
pub async fn with_request_token<F: std::future::Future>(token: String, f: F) -> F::Output {
    REQUEST_TOKEN
        .scope((token, std::sync::atomic::AtomicU32::new(0)), f)
        .await
}

/// The token of the next write of the current request, if it has one.
fn request_once_token() -> Option<String> {
    REQUEST_TOKEN
        .try_with(|(token, n)| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{token}-{n}")
        })
        .ok()
}

/// Unix nanoseconds now: the leader stamps this into commands; the FSM never reads a clock.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The shared core of a running server.
pub struct Server {
    pub config: ServerConfig,
    pub node_id: NodeId,
    pub raft: Raft,
    pub state: watch::Receiver<Arc<StateStore>>,
    pub broker: Arc<EvalBroker>,
    /// The event stream's buffer (every server publishes what it applies).
    pub events: Arc<events::EventBroker>,
    pub heartbeats: Arc<Heartbeats>,
    pub plans: mpsc::Sender<plan_apply::PlanRequest>,
    /// Plans sent to the applier and not yet answered, which workers plan beside.
    pub plans_in_flight: plan_apply::InFlight,
    /// Agents' status reports, written several to an entry (`client_updates.rs`).
    pub client_updates: mpsc::Sender<client_updates::Report>,
    /// When the leader last reached this server (followers), for `X-Nomad-LastContact`.
    pub last_leader_contact: std::sync::Mutex<Option<std::time::Instant>>,
    /// Snapshots received from a leader and installed (a lagging follower catching up).
    pub snapshots_installed: Arc<std::sync::atomic::AtomicU64>,
    /// Root keys that seal variables (`keyring.rs`).
    pub keyring: Arc<keyring::Keyring>,
    /// ACLs built per token (`http::auth`).
    pub acl_cache: http::auth::AclCache,
    /// Wake-ups by node for agents' allocation watches (`watchers.rs`).
    pub node_watchers: Arc<watchers::NodeWatchers>,
    log_store: LogStore,
}

/// Connects the FSM's apply hook to the brokers without a reference cycle.
struct Hook {
    broker: Arc<EvalBroker>,
    events: Arc<events::EventBroker>,
    node_watchers: Arc<watchers::NodeWatchers>,
}

impl ApplyHook for Hook {
    fn applied(&self, _state: &Arc<StateStore>, mut effects: Effects) {
        self.node_watchers.wake(&effects.wakes);
        self.events.publish(std::mem::take(&mut effects.events));
        let now = now_nanos();
        for e in effects.evals {
            self.broker.enqueue(e, now);
        }
        if effects.capacity_changed {
            self.broker.unblock_all();
        }
    }
}

impl Server {
    /// The newest applied state: an O(1) immutable snapshot.
    pub fn snapshot(&self) -> Arc<StateStore> {
        self.state.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// The leader's HTTP address, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.http_addr.clone())
    }

    /// The leader's RPC address (where followers forward requests), if one is known.
    pub fn leader_rpc_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.rpc_addr.clone())
    }

    /// Milliseconds since this server last heard from the leader (0 on the leader).
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        self.last_leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or(u64::MAX / 2)
    }

    /// Propose a command and wait for it to be applied. While there is no leader (an
    /// election is running) the write is held up to `rpc_hold_timeout` and proposed again
    /// if this server wins; nothing was appended when openraft refuses with
    /// `ForwardToLeader`, so proposing again cannot apply the command twice.
    pub async fn write(&self, cmd: Command) -> Result<Response, WriteError> {
        let hold_until = tokio::time::Instant::now() + self.config.rpc_hold_timeout;
        let once = request_once_token();
        loop {
            let started = std::time::Instant::now();
            let fut = self.raft.client_write(raft::Proposal {
                once: once.clone(),
                cmd: cmd.clone(),
            });
            let limit = self.config.write_timeout;
            let res = tokio::time::timeout(limit, fut)
                .await
                .map_err(|_| WriteError::NoQuorum(limit))?;
            if res.is_ok() {
                // Proposed to applied on this server: Nomad's leader-side commit time.
                ::metrics::histogram!("nomad.raft.commitTime").record(metrics::ms_since(started));
                ::metrics::counter!("nomad.raft.apply").increment(1);
            }
            return match res {
                Ok(r) => match r.data.error.clone() {
                    Some(e) => Err(WriteError::Rejected(e)),
                    None => Ok(r.data),
                },
                Err(openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ForwardToLeader(f),
                )) => match f.leader_node {
                    Some(n) => Err(WriteError::NotLeader(n.http_addr)),
                    None => match self.wait_for_leader(hold_until).await {
                        Some(id) if id == self.node_id => continue,
                        Some(_) => match self.leader_addr() {
                            Some(addr) => Err(WriteError::NotLeader(addr)),
                            None => Err(WriteError::NoLeader),
                        },
                        None => Err(WriteError::NoLeader),
                    },
                },
                Err(e) => Err(WriteError::Raft(e.to_string())),
            };
        }
    }

    /// Wait (until `deadline`) for the cluster to have a leader; returns its node id.
    pub async fn wait_for_leader(&self, deadline: tokio::time::Instant) -> Option<NodeId> {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(l) = metrics.borrow_and_update().current_leader {
                return Some(l);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or Raft shut down.
                _ => return None,
            }
        }
    }

    /// Wait until the state has applied at least `index` (bounded by `timeout`).
    pub async fn wait_for_index(&self, index: u64, timeout: Duration) -> Arc<StateStore> {
        let mut rx = self.state.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = rx.borrow_and_update().clone();
            if s.index() >= index {
                return s;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return s;
            }
        }
    }

    /// Bytes sled occupies on disk.
    pub fn disk_size(&self) -> u64 {
        self.log_store.disk_size()
    }
}

/// Stable node id for this server's Raft identity, kept in the data dir.
fn load_node_id(config: &ServerConfig, bootstrap: bool) -> anyhow::Result<NodeId> {
    let path = config.data_dir.join("node-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return s.trim().parse().map_err(|_| {
            damaged_data_dir(
                config,
                raft::store::Damage(format!(
                    "{} holds {:?}, not a node id",
                    path.display(),
                    s.chars().take(40).collect::<String>()
                )),
            )
        });
    }
    // A single bootstrapping server is node 1; servers that join pick a random id.
    let id: NodeId = if bootstrap {
        1
    } else {
        rand::random::<u64>() >> 1
    };
    std::fs::write(&path, id.to_string())?;
    Ok(id)
}

/// The sentence a server stops with when its data dir fails a check: what is damaged,
/// and the one step that recovers it.
fn damaged_data_dir(config: &ServerConfig, damage: raft::store::Damage) -> anyhow::Error {
    let dir = config.data_dir.display();
    let recovery = if config.bootstrap_expect > 1 || !config.join.is_empty() {
        format!(
            "To recover this server of a cluster, remove {dir} and start it again with the \
             same flags: it rejoins through its -join addresses, replaces its old entry in \
             the Raft configuration and is caught up by a snapshot from the leader"
        )
    } else {
        format!(
            "This single server holds the only copy: restore {dir} from a backup (or remove \
             it to start over empty)"
        )
    };
    tracing::error!(%damage, "the Raft data is damaged; refusing to start");
    anyhow::anyhow!(
        "refusing to start: the Raft data is damaged: {damage}. Serving it could lose \
         acknowledged writes. {recovery}."
    )
}

/// Start a server and serve its HTTP API until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    if config.rpc_addr.is_none() && (config.bootstrap_expect > 1 || !config.join.is_empty()) {
        anyhow::bail!(
            "a server that forms or joins a cluster needs an RPC port for its peers and client \
             agents: pass -rpc-port (Nomad's is 4647) or set ports {{ rpc = 4647 }}"
        );
    }
    let (server, listener, rpc_listener) = start(config).await?;
    // Event streams never end by themselves: end them so shutdown need not wait for them.
    let (events, token) = (server.events.clone(), shutdown.clone());
    tokio::spawn(async move {
        token.cancelled().await;
        events.close();
    });
    let mut rpc_task = None;
    if let Some(rpc) = rpc_listener {
        let addr = rpc.local_addr()?;
        tracing::info!(%addr, "RPC listening (peers and client agents)");
        if let Some(tx) = &server.config.rpc_bound {
            tx.send_replace(Some(addr));
        }
        let app = http::rpc_router(server.clone());
        let (token, limits) = (shutdown.clone(), server.config.rpc_limits);
        let exempt = peer_ips(server.clone());
        rpc_task = Some(tokio::spawn(http::listen::serve(
            rpc,
            app,
            limits,
            Some(exempt),
            server.config.rpc_listen_tls(),
            token,
        )));
    }
    if server.config.bootstrap_expect > 1 || !server.config.join.is_empty() {
        tokio::spawn(cluster::join_loop(server.clone(), shutdown.clone()));
    }
    let app = http::router(server.clone());
    tracing::info!(addr = %server.config.http_addr, "HTTP API listening");
    let res = http::listen::serve(
        listener,
        app,
        server.config.http_limits,
        None,
        server.config.http_listen_tls(),
        shutdown.clone(),
    )
    .await;
    if let Some(t) = rpc_task {
        let _ = t.await;
    }
    tracing::info!("server shutting down");
    let _ = server.raft.shutdown().await;
    server.log_store.flush().await.ok();
    res.map_err(Into::into)
}

/// Is an address one of the cluster's servers (by the IPs in Raft membership)? Followers
/// forward blocking queries to the leader's RPC listener, one connection each, so the
/// per-client connection cap does not apply to them.
fn peer_ips(server: Arc<Server>) -> http::listen::Exempt {
    Arc::new(move |ip| {
        let m = server.raft.metrics().borrow().clone();
        let members = m.membership_config.membership();
        let is_peer = members.nodes().any(|(_, n)| {
            [&n.rpc_addr, &n.http_addr]
                .iter()
                .any(|a| a.parse::<SocketAddr>().is_ok_and(|a| a.ip() == ip))
        });
        is_peer
    })
}

type Listener = tokio::net::TcpListener;

/// At most this many log entries per AppendEntries request (see [`raft_config`]).
const MAX_RAFT_PAYLOAD_ENTRIES: u64 = 32;

/// Raft timings from the server's configuration.
fn raft_config(config: &ServerConfig) -> anyhow::Result<openraft::Config> {
    let et = config.election_timeout.as_millis() as u64;
    let raft_config = openraft::Config {
        cluster_name: "drover".into(),
        // openraft gives every AppendEntries the heartbeat interval as its deadline: at a
        // quarter of the election timeout, a follower that needed longer than 250 ms to
        // decode and flush a batch of large plans (C100K spread on a loaded 2-core
        // machine) saw the same batch re-sent until the cluster lost its leader. Half
        // the election timeout still heartbeats twice per timeout.
        heartbeat_interval: (et / 2).max(50),
        // ... and no batch is allowed to grow huge: a plan entry can carry a thousand
        // allocations, and openraft's default of 300 entries per request could mean
        // hundreds of megabytes of JSON in one deadline.
        max_payload_entries: MAX_RAFT_PAYLOAD_ENTRIES,
        election_timeout_min: et,
        election_timeout_max: et * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_threshold),
        max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
        ..Default::default()
    }
    .validate()?;
    Ok(raft_config)
}

/// Bind the HTTP listener (and the Raft RPC one when it has its own port), recording the
/// addresses actually bound (port 0 picks a free one).
async fn bind_listeners(config: &mut ServerConfig) -> anyhow::Result<(Listener, Option<Listener>)> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http_addr))?;
    config.http_addr = listener.local_addr()?;
    let rpc_listener = match config.rpc_addr {
        Some(addr) if addr != config.http_addr => {
            let l = match tokio::net::TcpListener::bind(addr).await {
                Err(e) if config.rpc_port_fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
                    let free = SocketAddr::new(addr.ip(), 0);
                    let l = tokio::net::TcpListener::bind(free).await.map_err(|e| {
                        anyhow::anyhow!("cannot listen on {free} for Raft RPC: {e}")
                    })?;
                    tracing::warn!(
                        wanted = %addr,
                        bound = %l.local_addr()?,
                        "the RPC port is taken; listening for RPC on a free port instead"
                    );
                    l
                }
                r => r.map_err(|e| anyhow::anyhow!("cannot listen on {addr} for Raft RPC: {e}"))?,
            };
            config.rpc_addr = Some(l.local_addr()?);
            Some(l)
        }
        _ => None,
    };

    Ok((listener, rpc_listener))
}

/// Open storage, start Raft and the leader's services; returns the bound listeners
/// (HTTP, and Raft RPC when it has its own port). One sequence on purpose (hence its
/// length): each step takes the handles the one before made, and the order matters
/// (storage verified before Raft starts, listeners bound before a new cluster initialises).
pub async fn start(
    config: ServerConfig,
) -> anyhow::Result<(Arc<Server>, Listener, Option<Listener>)> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data dir {}: {e}",
            config.data_dir.display()
        )
    })?;
    let node_id = load_node_id(&config, config.bootstrap_expect <= 1)?;
    let keyring = Arc::new(keyring::Keyring::open(&config.data_dir)?);
    let (db, marks, verified) =
        raft::store::open_verified(&config.data_dir).map_err(|d| damaged_data_dir(&config, d))?;
    tracing::info!(
        first = ?verified.first_index,
        last = ?verified.last_index,
        snapshot = ?verified.snapshot_index,
        committed = ?verified.committed,
        "verified the Raft data: every record passes its checksum and the log is whole"
    );
    let log_store = LogStore::new(&db, marks)?;
    let broker = EvalBroker::new();
    let event_broker = events::EventBroker::new(config.event_buffer_size);
    let node_watchers = Arc::new(watchers::NodeWatchers::default());
    let (tx, rx) = watch::channel(Arc::new(StateStore::default()));
    let snapshots_installed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sm = StateMachine::open(
        &db,
        &raft::store::snapshot_dir(&config.data_dir.join(raft::store::SLED_DIR)),
        tx,
        Arc::new(Hook {
            broker: broker.clone(),
            events: event_broker.clone(),
            node_watchers: node_watchers.clone(),
        }),
        snapshots_installed.clone(),
    )?;

    let raft_config = raft_config(&config)?;
    let raft = Raft::new(
        node_id,
        Arc::new(raft_config),
        raft::network::HttpNetwork::new(
            Some(config.http_addr.ip()).filter(|ip| !ip.is_unspecified()),
            &config,
        ),
        log_store.clone(),
        sm,
    )
    .await?;

    // Bind before initialising so the advertised address answers.
    let mut config = config;
    let (listener, rpc_listener) = bind_listeners(&mut config).await?;

    if config.bootstrap_expect <= 1 && config.join.is_empty() && !raft.is_initialized().await? {
        let mut members = BTreeMap::new();
        members.insert(node_id, config.server_node());
        raft.initialize(members).await?;
        tracing::info!(node_id, "initialised a new single-server cluster");
    }

    let (plan_tx, plan_rx) = mpsc::channel(64);
    let (updates_tx, updates_rx) = mpsc::channel(4096);
    let heartbeats = Arc::new(Heartbeats::new(
        config.heartbeat_ttl,
        config.heartbeat_grace,
    ));
    let server = Arc::new(Server {
        config,
        node_id,
        raft,
        state: rx,
        broker,
        events: event_broker,
        heartbeats,
        plans: plan_tx,
        plans_in_flight: Default::default(),
        client_updates: updates_tx,
        last_leader_contact: std::sync::Mutex::new(None),
        snapshots_installed,
        keyring,
        acl_cache: Default::default(),
        node_watchers,
        log_store,
    });
    let weak = Arc::downgrade(&server);
    metrics::global().add_source(move || {
        weak.upgrade()
            .map(|s| metrics::server_gauges(&s))
            .unwrap_or_default()
    });
    tokio::spawn(plan_apply::run(server.clone(), plan_rx));
    tokio::spawn(client_updates::run(server.clone(), updates_rx));
    for i in 0..server.config.workers.max(1) {
        tokio::spawn(worker::run(server.clone(), i));
    }
    tokio::spawn(leader::leadership_loop(server.clone()));
    Ok((server, listener, rpc_listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bootstrap_expect: usize, join: &[&str]) -> ServerConfig {
        let mut c = ServerConfig::new(
            "/var/lib/drover/server".into(),
            "127.0.0.1:0".parse().unwrap(),
        );
        c.bootstrap_expect = bootstrap_expect;
        c.join = join.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn a_damaged_data_dir_names_the_file_and_the_recovery_step() {
        let damage = || {
            raft::store::Damage(
                "/var/lib/drover/server/raft.sled: record vote fails its checksum".into(),
            )
        };
        let member = damaged_data_dir(&config(3, &["10.0.0.2:4647"]), damage()).to_string();
        assert!(
            member.starts_with(
                "refusing to start: the Raft data is damaged: /var/lib/drover/server/raft.sled"
            ),
            "{member}"
        );
        assert!(
            member.contains("remove /var/lib/drover/server and start it again with the same flags"),
            "{member}"
        );
        let single = damaged_data_dir(&config(1, &[]), damage()).to_string();
        assert!(
            single.contains("restore /var/lib/drover/server from a backup"),
            "{single}"
        );
    }

    #[test]
    fn an_unreadable_node_id_is_refused_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let c = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        std::fs::write(dir.path().join("node-id"), "1\u{0}7x").unwrap();
        let err = load_node_id(&c, true).unwrap_err().to_string();
        assert!(
            err.contains("node-id holds") && err.contains("not a node id"),
            "{err}"
        );
        std::fs::write(dir.path().join("node-id"), "42\n").unwrap();
        assert_eq!(load_node_id(&c, true).unwrap(), 42);
    }

    #[tokio::test]
    async fn a_taken_rpc_port_moves_a_fallback_listener_to_a_free_port_and_fails_otherwise() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap();
        let mut c = config(1, &[]);
        c.rpc_addr = Some(taken);
        let err = bind_listeners(&mut c.clone())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("for Raft RPC"), "{err}");
        c.rpc_port_fallback = true;
        let (_http, rpc) = bind_listeners(&mut c).await.unwrap();
        let bound = rpc.unwrap().local_addr().unwrap();
        assert_ne!(bound, taken);
        assert_eq!(c.rpc_addr, Some(bound));
    }
}
