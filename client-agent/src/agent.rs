//! The agent's loops: register the node (retrying until a server answers), heartbeat at
//! about half the TTL, watch the node's allocations with a blocking query and keep one
//! AllocRunner per allocation, and send coalesced status updates in batches.
//!
//! Local state is restored before the first server sync, so tasks that survived an agent
//! restart are reattached rather than restarted. Server failover is the api::Client's
//! job: it rotates through the configured servers on connection errors.

use crate::alloc_runner::{self, AllocRunnerDeps, AllocRunnerHandle};
use crate::config::AgentConfig;
use crate::fingerprint;
use crate::handle::ClientHandle;
use crate::reporter::PendingUpdates;
use crate::services::ServiceRegistry;
use crate::state::{LocalAllocState, StateStore};
use anyhow::Context;
use api::{Allocation, Client, Node, QueryOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long one blocking query on the node's allocations may wait.
const ALLOC_QUERY_WAIT: Duration = Duration::from_secs(300);
/// How long status updates are gathered before one batch is sent.
const REPORT_COALESCE: Duration = Duration::from_millis(200);
/// Heartbeat TTL to assume when a server does not say.
const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last status batch.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// Exponential backoff: `base * 2^attempt`, at most `max`.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16)).min(max)
}

/// A pseudo-random fraction in [0, 1) from the clock; enough to spread heartbeats.
fn random_fraction() -> f64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    (n % 10_000) as f64 / 10_000.0
}

/// When the next heartbeat is due: half the TTL, less up to a tenth of it.
pub fn heartbeat_interval(ttl: Duration, fraction: f64) -> Duration {
    (ttl / 2).saturating_sub(ttl.mul_f64(fraction.clamp(0.0, 1.0) / 10.0))
}

fn ttl_of(resp: &api::NodeHeartbeatResponse) -> Duration {
    if resp.heartbeat_ttl > 0 {
        Duration::from_nanos(resp.heartbeat_ttl as u64).max(Duration::from_secs(1))
    } else {
        DEFAULT_TTL
    }
}

/// Sleeps for `d`; false if shutdown came first.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// What a node does with the allocations the servers place on it: the agent keeps an
/// alloc runner per allocation; the node simulator (`loadtest`) a light stand-in.
pub trait AllocSync: Send {
    /// Applies the servers' view of the node's allocations (every one of them).
    fn sync(&mut self, allocs: Vec<Allocation>);
}

/// Timings of one or many nodes' server loops, so that a simulator running thousands of
/// nodes can tell its own lag (a heartbeat sent late, an answer applied slowly) from the
/// servers' (a slow round trip). Durations in microseconds; the agent runs without one.
#[derive(Debug, Default)]
pub struct LoopProbe {
    pub heartbeats: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    /// Heartbeats that left more than a second after they were due.
    pub heartbeats_late: AtomicU64,
    /// The worst time a heartbeat left after it was due: the node's own lag.
    pub heartbeat_late_max_us: AtomicU64,
    /// The worst heartbeat round trip: the servers' lag (or the network's).
    pub heartbeat_rtt_max_us: AtomicU64,
    pub heartbeat_rtt_total_us: AtomicU64,
    /// The worst time between two acknowledged heartbeats of one node: past the TTL the
    /// servers mark the node down.
    pub heartbeat_gap_max_us: AtomicU64,
    pub watch_responses: AtomicU64,
    /// Answers at the index the watch asked from: its wait ran out with nothing to tell
    /// (not a wake-up).
    pub watch_waits_ended: AtomicU64,
    pub watch_failures: AtomicU64,
    /// The worst time one watch answer took to apply once it arrived.
    pub watch_apply_max_us: AtomicU64,
    /// Status batches sent, and the allocation updates in them.
    pub reports: AtomicU64,
    pub reported_allocs: AtomicU64,
}

impl LoopProbe {
    fn max(field: &AtomicU64, d: Duration) {
        field.fetch_max(d.as_micros() as u64, Ordering::Relaxed);
    }
    fn add(field: &AtomicU64, n: u64) {
        field.fetch_add(n, Ordering::Relaxed);
    }
}

/// The node's secret: minted by the servers at its first registration, kept in
/// `<data_dir>/node-secret` (mode 0600) so a restarted agent is still the same node.
#[derive(Clone)]
pub struct NodeSecret {
    path: std::path::PathBuf,
    value: Arc<std::sync::Mutex<String>>,
}

impl NodeSecret {
    /// A secret kept in memory only (the node simulator's thousands of nodes).
    pub fn in_memory() -> Self {
        NodeSecret {
            path: std::path::PathBuf::new(),
            value: Arc::default(),
        }
    }

    /// Loads the secret kept in `data_dir` (empty when the node never registered).
    pub fn load(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = data_dir.join("node-secret");
        let value = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot read the node secret from {}", path.display())
                })
            }
        };
        Ok(NodeSecret {
            path,
            value: Arc::new(std::sync::Mutex::new(value)),
        })
    }

    pub fn get(&self) -> String {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the secret a server returned (on disk first, so a crash cannot lose it).
    fn set(&self, secret: &str) -> anyhow::Result<()> {
        if secret.is_empty() || self.get() == secret {
            return Ok(());
        }
        if !self.path.as_os_str().is_empty() {
            write_private(&self.path, secret.as_bytes()).with_context(|| {
                format!("cannot keep the node secret in {}", self.path.display())
            })?;
        }
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = secret.to_string();
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically, readable by the agent's user only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Registers `node` with its secret and keeps the secret the server answers with.
async fn register_once(
    client: &Client,
    node: &Node,
    secret: &NodeSecret,
) -> Result<api::NodeHeartbeatResponse, anyhow::Error> {
    let resp = client.register_node(node, &secret.get()).await?;
    secret.set(&resp.secret_id)?;
    // The node's identity on every later request (its allocation watch, templates'
    // reads), which servers with ACLs enabled accept in place of a token.
    client.set_node_secret(&resp.secret_id);
    Ok(resp)
}

/// Registers `node`, retrying with backoff until a server accepts it; `None` on shutdown.
async fn register(
    client: &Client,
    node: &Node,
    secret: &NodeSecret,
    shutdown: &CancellationToken,
) -> Option<Duration> {
    let mut attempt = 0;
    loop {
        let res = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = register_once(client, node, secret) => r,
        };
        match res {
            Ok(resp) => {
                tracing::info!(node = %node.id, status = %node.status, server = %client.address(), "node registered");
                return Some(ttl_of(&resp));
            }
            Err(e) => {
                let wait = backoff(Duration::from_secs(1), Duration::from_secs(30), attempt);
                let status = e.downcast_ref::<api::ApiError>().and_then(|e| e.status());
                if status == Some(404) {
                    tracing::error!(error = %e, server = %client.address(), retry_in = ?wait, "cannot register the node: the server has no agent routes there; -servers must name the servers' RPC addresses (e.g. 10.0.0.1:4647), not their HTTP API");
                } else if status == Some(403) {
                    tracing::error!(error = %e, retry_in = ?wait, "cannot register the node: the servers know this node ID with another secret; if this data dir was copied from another node, remove its node-id and node-secret files");
                } else {
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot register the node");
                }
                attempt += 1;
                if !sleep_or_shutdown(wait, shutdown).await {
                    return None;
                }
            }
        }
    }
}

async fn heartbeat_loop(
    client: Client,
    node: Arc<Node>,
    secret: NodeSecret,
    mut ttl: Duration,
    probe: Option<Arc<LoopProbe>>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut last_ok = Instant::now();
    loop {
        let wait = if failures == 0 {
            heartbeat_interval(ttl, random_fraction())
        } else {
            backoff(
                Duration::from_millis(500),
                Duration::from_secs(5),
                failures - 1,
            )
        };
        let due = Instant::now() + wait;
        if !sleep_or_shutdown(wait, &shutdown).await {
            return;
        }
        let sent = Instant::now();
        let key = secret.get();
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.heartbeat(&node.id, &key) => r,
        };
        if let Some(p) = &probe {
            let late = sent.saturating_duration_since(due);
            LoopProbe::max(&p.heartbeat_late_max_us, late);
            if late > Duration::from_secs(1) {
                LoopProbe::add(&p.heartbeats_late, 1);
            }
            let rtt = sent.elapsed();
            LoopProbe::max(&p.heartbeat_rtt_max_us, rtt);
            LoopProbe::add(&p.heartbeat_rtt_total_us, rtt.as_micros() as u64);
            match &res {
                Ok(_) => {
                    LoopProbe::add(&p.heartbeats, 1);
                    LoopProbe::max(&p.heartbeat_gap_max_us, last_ok.elapsed());
                }
                Err(_) => LoopProbe::add(&p.heartbeat_failures, 1),
            }
        }
        match res {
            Ok(resp) => {
                ttl = ttl_of(&resp);
                failures = 0;
                last_ok = Instant::now();
            }
            Err(e) if e.is_forbidden() => {
                tracing::error!(error = %e, node = %node.id, "the servers refused this node's secret; if this data dir was copied from another node, remove its node-id and node-secret files");
                failures += 1;
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!("the servers do not know this node; registering again");
                match register_once(&client, &node, &secret).await {
                    Ok(resp) => {
                        ttl = ttl_of(&resp);
                        failures = 0;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register the node again");
                        failures += 1;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                failures += 1;
            }
        }
    }
}

async fn report_loop(
    client: Client,
    node_id: String,
    secret: NodeSecret,
    updates: PendingUpdates,
    probe: Option<Arc<LoopProbe>>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        if failures == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = updates.changed() => {}
            }
            // Gather what else changes in the next moments into the same batch.
            if !sleep_or_shutdown(REPORT_COALESCE, &shutdown).await {
                return;
            }
        }
        let batch = updates.take();
        if batch.is_empty() {
            failures = 0;
            continue;
        }
        let key = secret.get();
        let res = tokio::select! {
            _ = shutdown.cancelled() => {
                updates.requeue(batch);
                return;
            }
            r = client.update_allocs(&node_id, &key, batch.clone()) => r,
        };
        match res {
            Ok(_) => {
                failures = 0;
                if let Some(p) = &probe {
                    LoopProbe::add(&p.reports, 1);
                    LoopProbe::add(&p.reported_allocs, batch.len() as u64);
                }
            }
            Err(e) => {
                let wait = backoff(
                    Duration::from_millis(500),
                    Duration::from_secs(10),
                    failures,
                );
                tracing::warn!(error = %e, allocs = batch.len(), retry_in = ?wait, "cannot report alloc status");
                updates.requeue(batch);
                failures += 1;
                if !sleep_or_shutdown(wait, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// The allocation runners of this node, by allocation ID.
struct Runners {
    deps: AllocRunnerDeps,
    /// What the client HTTP API sees of them.
    handle: ClientHandle,
    by_id: BTreeMap<String, AllocRunnerHandle>,
    /// Runners destroying their allocation; joined at shutdown.
    dying: Vec<AllocRunnerHandle>,
}

impl AllocSync for Runners {
    fn sync(&mut self, allocs: Vec<Allocation>) {
        let known: BTreeSet<String> = allocs.iter().map(|a| a.id.to_string()).collect();
        for a in allocs {
            if let Some(r) = self.by_id.get(a.id.as_str()) {
                if a.client_status == api::ALLOC_CLIENT_UNKNOWN {
                    // The servers lost sight of this node for a while (its tasks kept
                    // running): tell them how the alloc really is.
                    self.report_again(r);
                }
                r.update(Arc::new(a));
                continue;
            }
            // Terminal on the server's side and not running here: nothing to do.
            if a.terminal() {
                continue;
            }
            if a.job.is_none() {
                tracing::warn!(alloc = %a.id, "allocation arrived without its job; skipped");
                continue;
            }
            // The id names the alloc dir: one that could leave the data dir is never used.
            if let Err(e) = crate::allocdir::check_name("allocation ID", &a.id) {
                tracing::error!(alloc = ?a.id, "allocation refused: {e}");
                continue;
            }
            tracing::info!(alloc = %a.id, job = %a.job_id, group = %a.task_group, "starting allocation");
            let id = a.id.clone();
            let local = LocalAllocState {
                alloc: a,
                ..Default::default()
            };
            let r = alloc_runner::spawn(self.deps.clone(), local, false);
            self.handle.insert(&id, r.view());
            self.by_id.insert(id.to_string(), r);
        }
        // The servers no longer have these (garbage collected or purged).
        let gone: Vec<String> = self
            .by_id
            .keys()
            .filter(|id| !known.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            tracing::info!(alloc = %id, "allocation is gone from the servers; removing it");
            let r = self.by_id.remove(&id).expect("listed above");
            self.handle.remove(&id);
            r.destroy();
            self.dying.push(r);
        }
        self.dying.retain(|r| !r.is_finished());
    }
}

impl Runners {
    /// Queues the runner's latest status again, unchanged or not.
    fn report_again(&self, r: &AllocRunnerHandle) {
        let st = r.view().state.borrow().clone();
        if st.client_status.is_empty() {
            return; // it has not reported anything yet; it will
        }
        tracing::info!(alloc = %st.alloc.id, status = %st.client_status, "servers see the allocation as unknown; reporting its status again");
        self.deps.updates.push(api::AllocClientUpdate {
            id: st.alloc.id.to_string(),
            client_status: st.client_status.clone(),
            client_description: st.client_description.clone(),
            task_states: st
                .tasks
                .iter()
                .map(|(k, v)| (k.clone(), v.state.clone()))
                .collect(),
            deployment_status: st.alloc.deployment_status.clone(),
        });
    }

    async fn join_all(self) {
        for r in self.by_id.into_values().chain(self.dying) {
            r.join().await;
        }
    }
}

async fn watch_allocs(
    client: &Client,
    node_id: &str,
    runners: &mut impl AllocSync,
    probe: Option<&LoopProbe>,
    shutdown: &CancellationToken,
) {
    let mut index = 0u64;
    let mut failures = 0u32;
    // Any server answers the watch from its own state (`stale`), so thousands of nodes'
    // watches are spread over all the servers instead of being relayed to the leader. A
    // follower behind what this agent has already seen can answer an older list (when
    // its wait ends before it catches up): that answer is not applied (it could stop an
    // allocation the agent already runs) and the next read asks the leader, whose
    // answer stands even when its index is lower (a cluster rebuilt from scratch).
    let mut ask_leader = false;
    loop {
        let asked_from = if ask_leader { 0 } else { index };
        let mut opts = QueryOptions::blocking(asked_from, ALLOC_QUERY_WAIT);
        opts.stale = !ask_leader;
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.node_allocations_watch(node_id, &opts) => r,
        };
        match res {
            Ok((_, meta)) if opts.stale && meta.last_index < index => {
                tracing::debug!(
                    seen = index,
                    answered = meta.last_index,
                    "a server behind this agent answered the allocation watch; asking the leader"
                );
                ask_leader = true;
            }
            Ok((allocs, meta)) => {
                failures = 0;
                ask_leader = false;
                let t = Instant::now();
                runners.sync(allocs);
                if let Some(p) = probe {
                    LoopProbe::add(&p.watch_responses, 1);
                    if asked_from != 0 && meta.last_index == asked_from {
                        LoopProbe::add(&p.watch_waits_ended, 1);
                    }
                    LoopProbe::max(&p.watch_apply_max_us, t.elapsed());
                }
                // An index of 0 would not block; do not spin.
                index = meta.last_index;
                if index == 0 && !sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
                    return;
                }
            }
            Err(e) => {
                let wait = backoff(Duration::from_secs(1), Duration::from_secs(30), failures);
                tracing::warn!(error = %e, retry_in = ?wait, "cannot read the node's allocations");
                if let Some(p) = probe {
                    LoopProbe::add(&p.watch_failures, 1);
                }
                failures += 1;
                if !sleep_or_shutdown(wait, shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Registers `node` with the servers, first as initializing, then as ready; returns the
/// ready node and its heartbeat TTL, or `None` when `shutdown` came first.
pub async fn register_node(
    client: &Client,
    mut node: Node,
    secret: &NodeSecret,
    shutdown: &CancellationToken,
) -> Option<(Arc<Node>, Duration)> {
    register(client, &node, secret, shutdown).await?;
    node.status = api::NODE_STATUS_READY.into();
    let node = Arc::new(node);
    let ttl = register(client, &node, secret, shutdown).await?;
    Some((node, ttl))
}

/// A registered node's side of the servers' protocol until `shutdown`: heartbeats every
/// about half `ttl`, sends `updates` in batches, and keeps `allocs` in step with the
/// node's allocations through a blocking query. The agent runs it with its alloc
/// runners; the node simulator runs thousands of nodes through it in one process.
#[allow(clippy::too_many_arguments)] // each is one of the node's separate parts
pub async fn serve_node(
    client: &Client,
    node: Arc<Node>,
    ttl: Duration,
    secret: &NodeSecret,
    updates: &PendingUpdates,
    allocs: &mut impl AllocSync,
    probe: Option<Arc<LoopProbe>>,
    shutdown: &CancellationToken,
) {
    let heartbeats = tokio::spawn(heartbeat_loop(
        client.clone(),
        node.clone(),
        secret.clone(),
        ttl,
        probe.clone(),
        shutdown.clone(),
    ));
    let reports = tokio::spawn(report_loop(
        client.clone(),
        node.id.clone(),
        secret.clone(),
        updates.clone(),
        probe.clone(),
        shutdown.clone(),
    ));
    watch_allocs(client, &node.id, allocs, probe.as_deref(), shutdown).await;
    let _ = heartbeats.await;
    let _ = reports.await;
}

/// Runs the client agent until `shutdown` is cancelled. Running tasks are left running
/// on shutdown, and their state is on disk for the next agent to reattach.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handle = ClientHandle::new(&config);
    run_with(config, shutdown, handle).await
}

/// [`run`], with the [`ClientHandle`] the client HTTP API serves from (make it with
/// [`ClientHandle::new`] from the same config, and mount [`crate::http::client_router`]
/// before calling this).
// Long on purpose: the agent's whole life in the order it happens (fingerprint, restore,
// register, heartbeat and watch, shut down); each step is one call.
pub async fn run_with(
    config: AgentConfig,
    shutdown: CancellationToken,
    handle: ClientHandle,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.servers.is_empty(),
        "the client agent needs at least one server address to register with"
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let drivers = handle.drivers().clone();
    let node = fingerprint::fingerprint(&config, &drivers)
        .await
        .context("fingerprinting the node")?;
    tracing::info!(node = %node.id, name = %node.name, drivers = ?node.drivers.keys().collect::<Vec<_>>(), "node fingerprinted");

    let store = StateStore::new(&config.data_dir);
    let secret = NodeSecret::load(&config.data_dir)?;
    let updates = PendingUpdates::new();
    let services = ServiceRegistry::new();
    let shutdown = shutdown.child_token();
    let client = config.servers_client()?;
    handle.set_servers_client(client.clone());

    handle.set_node(Arc::new(node.clone()));
    let mut runners = Runners {
        handle: handle.clone(),
        deps: AllocRunnerDeps {
            data_dir: config.data_dir.clone(),
            node: Arc::new(node.clone()),
            drivers,
            store: store.clone(),
            updates: updates.clone(),
            ports: crate::ports::PortAllocator::new(),
            services: services.clone(),
            client: Some(client.clone()),
            shutdown: shutdown.clone(),
        },
        by_id: BTreeMap::new(),
        dying: Vec::new(),
    };
    for st in store.load_all().context("reading local alloc state")? {
        tracing::info!(alloc = %st.alloc.id, "restoring allocation from local state");
        let id = st.alloc.id.clone();
        let r = alloc_runner::spawn(runners.deps.clone(), st, true);
        handle.insert(&id, r.view());
        runners.by_id.insert(id.to_string(), r);
    }

    // Restored tasks are supervised from here on, even while no server answers.
    // Register as initializing first, then as ready now that the node is set up.
    let Some((node, ttl)) = register_node(&client, node, &secret, &shutdown).await else {
        runners.join_all().await;
        return Ok(());
    };
    handle.set_registered();
    // Service registrations go through the same client and node secret as status.
    let registrations = tokio::spawn(services.sync_loop(
        client.clone(),
        node.id.clone(),
        {
            let secret = secret.clone();
            move || secret.get()
        },
        shutdown.clone(),
    ));
    serve_node(
        &client,
        node.clone(),
        ttl,
        &secret,
        &updates,
        &mut runners,
        None,
        &shutdown,
    )
    .await;

    tracing::info!("client agent shutting down; tasks keep running");
    runners.join_all().await;
    let _ = registrations.await;
    let last = updates.take();
    if !last.is_empty() {
        let _ = tokio::time::timeout(
            FINAL_FLUSH,
            client.update_allocs(&node.id, &secret.get(), last),
        )
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_come_at_about_half_the_ttl() {
        let ttl = Duration::from_secs(10);
        assert_eq!(heartbeat_interval(ttl, 0.0), Duration::from_secs(5));
        let low = heartbeat_interval(ttl, 0.999_999);
        assert!(low >= Duration::from_secs(4) && low < Duration::from_millis(4001));
        let mid = heartbeat_interval(ttl, 0.5);
        assert!(mid > Duration::from_secs(4) && mid < Duration::from_secs(5));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = |n| backoff(Duration::from_secs(1), Duration::from_secs(30), n);
        assert_eq!(b(0), Duration::from_secs(1));
        assert_eq!(b(3), Duration::from_secs(8));
        assert_eq!(b(10), Duration::from_secs(30));
        assert_eq!(b(100), Duration::from_secs(30));
    }

    /// A server that answers the allocation watch like a cluster whose follower lags: the
    /// leader (a read without `stale`) is at index 7 with allocation `a`, the follower
    /// (`stale`) first at index 5 with `a`, then behind it, at index 3 with nothing.
    async fn lagging_follower() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::extract::{Query, State};
        type Log = Arc<std::sync::Mutex<Vec<String>>>;
        async fn allocs(
            State(log): State<Log>,
            Query(q): Query<std::collections::HashMap<String, String>>,
        ) -> ([(&'static str, String); 1], axum::Json<Vec<Allocation>>) {
            let stale = q.contains_key("stale");
            let n = {
                let mut log = log.lock().unwrap();
                log.push(format!(
                    "stale={stale} index={}",
                    q.get("index").map_or("0", |s| s)
                ));
                log.len()
            };
            let a = Allocation {
                id: "a".into(),
                ..Default::default()
            };
            let (index, list) = match (stale, n) {
                (false, _) => (7, vec![a]),
                (true, 1) => (5, vec![a]),
                (true, _) => (3, vec![]),
            };
            if stale && n > 3 {
                // Later reads block (as a real server's would) until the test ends.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            ([("X-Nomad-Index", index.to_string())], axum::Json(list))
        }
        let log: Log = Default::default();
        let app = axum::Router::new()
            .route("/v1/node/{id}/allocations", axum::routing::get(allocs))
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, log)
    }

    #[derive(Default)]
    struct Applied(Arc<std::sync::Mutex<Vec<Vec<String>>>>);

    impl AllocSync for Applied {
        fn sync(&mut self, allocs: Vec<Allocation>) {
            let ids = allocs.into_iter().map(|a| a.id.to_string()).collect();
            self.0.lock().unwrap().push(ids);
        }
    }

    #[tokio::test]
    async fn the_allocation_watch_reads_any_server_but_never_applies_an_answer_older_than_it_has_seen(
    ) {
        let (addr, log) = lagging_follower().await;
        let client = Client::new(&addr);
        let applied = Applied::default();
        let seen = applied.0.clone();
        let mut runners = applied;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let watch = tokio::spawn(async move {
            watch_allocs(&client, "n1", &mut runners, None, &stop).await;
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.lock().unwrap().len() < 4 {
            assert!(
                Instant::now() < deadline,
                "the watch stopped asking: {log:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        watch.await.unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "stale=true index=0",
                // The follower's index-3 answer is behind the 5 already seen: not applied,
                // and the leader is asked.
                "stale=true index=5",
                "stale=false index=0",
                "stale=true index=7",
            ]
        );
        let a = vec!["a".to_string()];
        assert_eq!(
            *seen.lock().unwrap(),
            [a.clone(), a],
            "the empty list was never applied"
        );
    }
}
