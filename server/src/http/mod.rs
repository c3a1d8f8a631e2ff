//! The `/v1` HTTP API: Nomad's routes and JSON shapes, blocking queries, and the internal
//! routes client agents and peer servers use.
//!
//! Two routers, as Nomad is shaped: the public HTTP listener serves the `/v1` API (and
//! the UI) and never `/v1/internal/*`; the RPC listener (`-rpc-port`) serves the same API
//! plus what agents and peers need (node registration, heartbeats, allocation updates,
//! Raft, cluster join) and the requests followers forward to the leader. Only the RPC
//! listener honours the forwarded mark; the public one strips it.

mod acl;
mod agent;
mod allocs;
pub mod auth;
mod client_proxy;
mod cluster;
mod deployments;
mod dispatch;
mod drain;
mod events;
pub mod filter;
pub mod forward;
mod job_path;
mod jobs;
pub mod listen;
mod metrics;
mod monitor;
mod namespaces;
mod nodes;
mod operator;
mod peer_identity;
mod plan;
mod raft_rpc;
mod relay;
mod scaling;
mod search;
mod services;
mod status;
mod system;
mod variables;

use crate::state::StateStore;
use crate::{Server, WriteError};
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub type AppState = Arc<Server>;

/// Largest request body accepted (a job with many groups fits easily).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest request body the RPC listener accepts: room for Raft appends carrying
/// public-sized entries (bigger batches are split by the sender; snapshots travel in
/// 3 MiB chunks).
pub const RPC_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// An API error: a status and a sentence, sent as plain text like Nomad's.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub String);

impl ApiErr {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiErr(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiErr(StatusCode::NOT_FOUND, msg.into())
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<WriteError> for ApiErr {
    fn from(e: WriteError) -> Self {
        let status = match &e {
            WriteError::Rejected(m) if m.contains("not found") => StatusCode::NOT_FOUND,
            WriteError::Rejected(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiErr(status, e.to_string())
    }
}

pub type ApiResult = Result<Response, ApiErr>;

/// Parse a JSON body ourselves so every malformed body gets a 400 and a sentence,
/// whatever its content type.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiErr> {
    if body.is_empty() {
        return Err(ApiErr::bad_request("request body is empty; expected JSON"));
    }
    let bad = |e: serde_json::Error| ApiErr::bad_request(format!("invalid JSON body: {e}"));
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        // Nomad's clients send `null` for empty lists and maps; read those as absent.
        Err(first) => {
            let mut value: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
            api::wire::strip_nulls(&mut value);
            serde_json::from_value(value).map_err(|_| bad(first))
        }
    }
}

/// Query parameters every read understands.
#[derive(Debug, Default, Deserialize)]
pub struct QueryParams {
    pub index: Option<String>,
    pub wait: Option<String>,
    pub prefix: Option<String>,
    pub stale: Option<String>,
    pub namespace: Option<String>,
    pub purge: Option<String>,
    /// `?consistent`: confirm leadership with a quorum before reading (linearizable).
    pub consistent: Option<String>,
    /// `?filter=`: an expression over each listed object (`filter.rs`).
    pub filter: Option<String>,
    /// `?resources=true`: node and allocation stubs carry their resources.
    pub resources: Option<String>,
    /// `?os=true`: node stubs carry `os.name` and `os.version`.
    pub os: Option<String>,
}

impl QueryParams {
    pub fn namespace(&self) -> &str {
        match self.namespace.as_deref() {
            None | Some("") => api::DEFAULT_NAMESPACE,
            Some(n) => n,
        }
    }

    /// The parsed `?filter=` (none when absent or blank), or a 400 naming the column.
    /// Lists parse it before blocking, so a bad one is refused at once.
    pub fn filter(&self) -> Result<Option<filter::Filter>, ApiErr> {
        filter::parse_param(self.filter.as_deref()).map_err(ApiErr::bad_request)
    }

    /// Whether an object in namespace `ns` is in the request's namespace (`*`: all).
    pub fn namespace_matches(&self, ns: &str) -> bool {
        let want = self.namespace();
        want == "*" || want == ns
    }

    pub fn prefix_matches(&self, id: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| id.starts_with(p))
    }

    /// A boolean parameter read as Nomad reads one (Go's `strconv.ParseBool`): absent or
    /// empty is false; anything but 1/t/true/0/f/false (in Go's spellings) is a 400.
    pub fn parse_bool(name: &str, v: &Option<String>) -> Result<bool, ApiErr> {
        match v.as_deref() {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiErr::bad_request(format!(
                "Failed to parse value of {name:?} ({other:?}) as a bool: expected true or false"
            ))),
        }
    }

    pub fn flag(v: &Option<String>) -> bool {
        v.as_deref()
            .is_some_and(|s| s.is_empty() || s.eq_ignore_ascii_case("true") || s == "1")
    }
}

/// Parse `?wait=` as Nomad takes it: a Go duration ("30s", "5m", "250ms", "1m30s"), or a
/// bare number of seconds. Huge, negative or malformed values are an error sentence.
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(n) if n <= 1 << 33 => Ok(Duration::from_secs(n)),
            _ => Err(format!(
                "invalid duration {s:?}: it is out of range (at most about 292 years)"
            )),
        };
    }
    api::duration::parse_go_duration(s)
}

/// Run a blocking query: wait until `table(state)` passes `?index=` or `?wait=` runs out.
pub async fn blocking(
    srv: &Server,
    q: &QueryParams,
    table: impl Fn(&StateStore) -> u64,
) -> Result<Arc<StateStore>, ApiErr> {
    blocking_on(srv, q, table, WakeOn::AnyWrite).await
}

/// Read-index: prove this server still leads and has applied everything it committed
/// (`for_what` names the request in the 503 when it cannot).
///
/// openraft's read index is the larger of its committed index and its term's first
/// entry; but a leader restarted from its data dir resumes leading without a new first
/// entry and with only the committed index it had last saved, which can be below writes
/// it acknowledged before it died (the fault test's seed 1 read a value older than an
/// acknowledged write that way). So the read also waits until everything in this
/// leader's log is applied: its log holds every acknowledged write.
pub async fn caught_up(srv: &Server, for_what: &str) -> Result<(), ApiErr> {
    let confirm = async {
        srv.raft
            .ensure_linearizable()
            .await
            .map_err(|e| e.to_string())?;
        let last = srv.raft.metrics().borrow().last_log_index.unwrap_or(0);
        srv.raft
            .wait(None)
            .applied_index_at_least(Some(last), "a consistent read")
            .await
            .map_err(|e| e.to_string())
    };
    let confirmed = tokio::time::timeout(srv.config.write_timeout, confirm)
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r);
    confirmed.map(|_| ()).map_err(|e| {
        ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no cluster leader: cannot confirm leadership for {for_what} ({e})"),
        )
    })
}

/// What wakes a waiting blocking query to look at the state again.
#[derive(Debug, Clone, Copy)]
pub enum WakeOn<'a> {
    /// Every applied batch of entries.
    AnyWrite,
    /// Only a batch that changed this node's allocations (`crate::watchers`).
    NodeAllocs(&'a str),
}

/// [`blocking`], woken only by what `wake` names.
pub async fn blocking_on(
    srv: &Server,
    q: &QueryParams,
    table: impl Fn(&StateStore) -> u64,
    wake: WakeOn<'_>,
) -> Result<Arc<StateStore>, ApiErr> {
    let min = match q.index.as_deref() {
        None | Some("") => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            ApiErr::bad_request(format!("invalid index {s:?}: expected an integer"))
        })?,
    };
    let wait = match q.wait.as_deref() {
        None | Some("") => Duration::from_secs(300),
        Some(s) => parse_wait(s).map_err(|e| ApiErr::bad_request(format!("invalid wait: {e}")))?,
    }
    .min(Duration::from_secs(600));
    if q.consistent.is_some() {
        caught_up(srv, "a consistent read").await?;
    }
    let mut rx = srv.state.clone();
    {
        // Not held while waiting: thousands of watchers each pinning the snapshot they
        // started from would keep every version of every changed table alive.
        let state = rx.borrow_and_update().clone();
        if min == 0 || table(&state) > min {
            return Ok(state);
        }
    }
    // Nomad adds up to 1/16 of jitter so many watchers do not wake together.
    let jitter = wait.mul_f64(rand::random::<f64>() / 16.0);
    let deadline = tokio::time::Instant::now() + wait + jitter;
    if let WakeOn::NodeAllocs(node) = wake {
        let watch = srv.node_watchers.watch(node);
        loop {
            // Enabled before the state is read: a change published after the read wakes it.
            let notified = watch.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = rx.borrow_and_update().clone();
            if table(&state) > min {
                return Ok(state);
            }
            drop(state);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(rx.borrow().clone());
            }
        }
    }
    loop {
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Ok(rx.borrow().clone());
        }
        let state = rx.borrow_and_update().clone();
        if table(&state) > min {
            return Ok(state);
        }
    }
}

/// The one read shape most `GET` handlers share: a blocking query on one table's index
/// (`?index`, `?wait`, `?stale`, `?consistent` as [`blocking`] reads them), `read` on the
/// state it returns, and the answer stamped with that table's index.
pub async fn read_table<T: Serialize>(
    srv: &Server,
    q: &QueryParams,
    table: Table,
    read: impl FnOnce(&StateStore) -> Result<T, ApiErr>,
) -> ApiResult {
    let state = blocking(srv, q, |s| table.index(s)).await?;
    let body = read(&state)?;
    Ok(reply(srv, table.index(&state), &body))
}

/// The table (or tables) a [`read_table`] read depends on.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Jobs,
    Allocs,
    Evals,
    Nodes,
    Deployments,
    Variables,
    /// Job lists and summaries: the jobs and the allocations they count.
    JobsAndAllocs,
}

impl Table {
    fn index(self, state: &StateStore) -> u64 {
        let t = state.tables();
        match self {
            Table::Jobs => t.jobs,
            Table::Allocs => t.allocs,
            Table::Evals => t.evals,
            Table::Nodes => t.nodes,
            Table::Deployments => t.deployments,
            Table::Variables => t.variables,
            Table::JobsAndAllocs => t.jobs.max(t.allocs),
        }
    }
}

/// Allocations as every allocation list shows them.
pub fn alloc_stubs<'a>(
    allocs: impl IntoIterator<Item = &'a Arc<api::Allocation>>,
) -> Vec<api::AllocationListStub> {
    allocs
        .into_iter()
        .map(|a| api::AllocationListStub::from_alloc(a))
        .collect()
}

/// The answer to a write: its Raft index, in the headers and the body.
pub fn write_reply(srv: &Server, index: u64) -> Response {
    reply(srv, index, &api::WriteResponse { index })
}

/// `found` or a 404 with the sentence every lookup uses: `<what> "<id>" not found`.
pub fn found<T>(what: &str, id: &str, v: Option<T>) -> Result<T, ApiErr> {
    v.ok_or_else(|| ApiErr::not_found(format!("{what} {id:?} not found")))
}

/// Evaluations as the API lists them: newest first.
pub fn newest_first<'a>(
    evals: impl Iterator<Item = &'a std::sync::Arc<api::Evaluation>>,
) -> Vec<api::Evaluation> {
    let mut out: Vec<api::Evaluation> = evals.map(|e| (**e).clone()).collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.create_index));
    out
}

/// A JSON reply with Nomad's query-meta headers.
pub fn reply<T: Serialize>(srv: &Server, index: u64, body: &T) -> Response {
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    h.insert("X-Nomad-Index", HeaderValue::from(index.max(1)));
    let known = srv.raft.metrics().borrow().current_leader.is_some();
    h.insert(
        "X-Nomad-KnownLeader",
        HeaderValue::from_static(if known { "true" } else { "false" }),
    );
    h.insert(
        "X-Nomad-LastContact",
        HeaderValue::from(srv.last_contact_ms()),
    );
    resp
}

async fn not_found(uri: axum::http::Uri) -> ApiErr {
    ApiErr::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiErr {
    ApiErr(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not supported on {}", uri.path()),
    )
}

/// Routes peer servers use: Raft RPCs and cluster formation.
fn peer_routes() -> Router<AppState> {
    Router::new()
        .route("/internal/raft/append", post(raft_rpc::append))
        .route("/internal/raft/vote", post(raft_rpc::vote))
        .route("/internal/raft/snapshot", post(raft_rpc::snapshot))
        .route("/internal/cluster/info", get(cluster::info))
        .route("/internal/cluster/join", post(cluster::join))
        .route("/internal/cluster/elect", post(cluster::elect))
        .route(
            "/internal/cluster/hold-elections",
            post(cluster::hold_elections),
        )
}

/// Routes client agents use (each checks the node's secret), and the load test's no-op.
fn agent_routes() -> Router<AppState> {
    Router::new()
        .route("/internal/node/register", put(nodes::register))
        .route("/internal/node/{id}/heartbeat", put(nodes::heartbeat))
        .route("/internal/node/{id}/allocs", put(nodes::update_allocs))
        .route("/internal/node/{id}/services", put(services::update))
        .route("/internal/bench/noop", put(status::noop))
}

/// The public `/v1` API, as Nomad's HTTP listener serves it. A route table: long because
/// the API is, one line a route.
fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(acl::routes())
        .route(
            "/jobs",
            get(jobs::list).put(jobs::register).post(jobs::register),
        )
        .route("/jobs/parse", put(jobs::parse).post(jobs::parse))
        .route("/validate/job", put(jobs::validate).post(jobs::validate))
        .route(
            "/job/{id}",
            get(jobs::get_job)
                .put(jobs::register_at)
                .post(jobs::register_at)
                .delete(jobs::deregister),
        )
        .route("/job/{id}/allocations", get(jobs::allocations))
        .route(
            "/job/{id}/dispatch",
            put(dispatch::dispatch).post(dispatch::dispatch),
        )
        .route(
            "/job/{id}/periodic/force",
            put(dispatch::periodic_force).post(dispatch::periodic_force),
        )
        .route("/job/{id}/evaluations", get(jobs::evaluations))
        .route("/job/{id}/summary", get(jobs::summary))
        .route("/job/{id}/versions", get(jobs::versions))
        .route("/job/{id}/plan", put(plan::plan).post(plan::plan))
        .route("/job/{id}/deployments", get(deployments::job_deployments))
        .route(
            "/job/{id}/deployment",
            get(deployments::job_latest_deployment),
        )
        .route(
            "/job/{id}/revert",
            put(deployments::revert).post(deployments::revert),
        )
        .route(
            "/job/{id}/stable",
            put(deployments::stable).post(deployments::stable),
        )
        .route(
            "/job/{id}/scale",
            get(deployments::scale_status)
                .put(deployments::scale)
                .post(deployments::scale),
        )
        .route("/deployments", get(deployments::list))
        .route("/deployment/{id}", get(deployments::get_deployment))
        .route(
            "/deployment/allocations/{id}",
            get(deployments::allocations),
        )
        .route(
            "/deployment/promote/{id}",
            put(deployments::promote).post(deployments::promote),
        )
        .route(
            "/deployment/fail/{id}",
            put(deployments::fail).post(deployments::fail),
        )
        .route(
            "/deployment/pause/{id}",
            put(deployments::pause).post(deployments::pause),
        )
        .route(
            "/deployment/allocation-health/{id}",
            put(deployments::allocation_health).post(deployments::allocation_health),
        )
        .route("/event/stream", get(events::stream))
        .route("/job/{id}/services", get(services::job_services))
        .route("/services", get(services::list))
        .route("/service/{name}", get(services::get_service))
        .route(
            "/service/{name}/{id}",
            axum::routing::delete(services::delete),
        )
        .route("/allocation/{id}/services", get(services::alloc_services))
        .route("/namespaces", get(namespaces::list))
        .route(
            "/namespace",
            put(namespaces::create).post(namespaces::create),
        )
        .route(
            "/namespace/{name}",
            get(namespaces::get_namespace)
                .put(namespaces::update)
                .post(namespaces::update)
                .delete(namespaces::delete),
        )
        .route("/vars", get(variables::list))
        .route(
            "/var/{*path}",
            get(variables::get_var)
                .put(variables::put_var)
                .post(variables::put_var)
                .delete(variables::delete_var),
        )
        .route("/allocations", get(allocs::list))
        .route("/allocation/{id}", get(allocs::get_alloc))
        .route("/evaluations", get(allocs::list_evals))
        .route("/evaluation/{id}", get(allocs::get_eval))
        .route("/evaluation/{id}/allocations", get(allocs::eval_allocs))
        .route("/nodes", get(nodes::list))
        .route("/node/{id}", get(nodes::get_node))
        .route("/node/{id}/allocations", get(nodes::allocations))
        .route("/node/{id}/drain", put(drain::drain).post(drain::drain))
        .route(
            "/node/{id}/eligibility",
            put(drain::eligibility).post(drain::eligibility),
        )
        .route(
            "/allocation/{id}/stop",
            put(drain::stop_alloc).post(drain::stop_alloc),
        )
        .route("/status/leader", get(status::leader))
        .route("/status/peers", get(status::peers))
        .route("/regions", get(status::regions))
        .route("/scaling/policies", get(scaling::list))
        .route("/scaling/policy/{id}", get(scaling::get_policy))
        .route("/search", put(search::prefix).post(search::prefix))
        .route("/search/fuzzy", put(search::fuzzy).post(search::fuzzy))
        .route("/agent/self", get(agent::agent_self))
        .route("/agent/health", get(agent::health))
        .route("/agent/members", get(agent::members))
        .route("/agent/monitor", get(monitor::monitor))
        .route(
            "/agent/servers",
            get(agent::servers).put(agent::servers).post(agent::servers),
        )
        .route("/agent/join", put(agent::join).post(agent::join))
        .route(
            "/agent/force-leave",
            put(agent::force_leave).post(agent::force_leave),
        )
        .route("/metrics", get(metrics::metrics))
        .route(
            "/operator/scheduler/configuration",
            get(operator::get_config)
                .put(operator::set_config)
                .post(operator::set_config),
        )
        .route("/system/gc", put(system::gc).post(system::gc))
        .route(
            "/system/reconcile/summaries",
            put(system::reconcile_summaries).post(system::reconcile_summaries),
        )
        .route(
            "/job/{id}/evaluate",
            put(system::evaluate_job).post(system::evaluate_job),
        )
        .route(
            "/node/{id}/evaluate",
            put(system::evaluate_node).post(system::evaluate_node),
        )
        .route("/client/{*rest}", axum::routing::any(client_proxy::handle))
        .route(
            "/operator/raft/configuration",
            get(cluster::raft_configuration),
        )
        .route(
            "/operator/raft/peer",
            axum::routing::delete(cluster::remove_peer),
        )
        .route(
            "/operator/raft/transfer-leadership",
            put(cluster::transfer_leadership).post(cluster::transfer_leadership),
        )
        .route(
            "/operator/snapshot",
            get(cluster::snapshot_save).put(cluster::snapshot_restore),
        )
}

/// The layers every listener has: forwarding to the leader, a panic turned into a 500,
/// the body cap, and request tracing.
fn finish(app: Router<AppState>, srv: AppState, body_cap: usize) -> Router {
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside forwarding: the server that answers checks the token on its own state.
        .layer(axum::middleware::from_fn_with_state(
            srv.clone(),
            auth::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            srv.clone(),
            forward::forward,
        ))
        .with_state(srv)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the request handler panicked; this is a bug",
                )
                    .into_response()
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_cap))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// The public listener's edge, before anything else (forwarding included) sees a request:
/// `/v1/internal/*` does not exist here, and the forwarded mark is removed (only a server,
/// on the RPC listener, may say a request was already forwarded).
async fn public_edge(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if is_internal(req.uri().path()) {
        return not_found(req.uri().clone()).await.into_response();
    }
    req.headers_mut().remove(forward::FORWARDED_HEADER);
    next.run(req).await
}

/// Is this path one of the agent or peer routes (never served on the public listener)?
/// Matched after collapsing repeated slashes, so `//v1//internal` is caught too.
fn is_internal(path: &str) -> bool {
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    parts.next() == Some("v1") && parts.next() == Some("internal")
}

/// The RPC listener's router (`-rpc-port`): the `/v1` API, the agents' routes, and (for a
/// server that has peers) the Raft and cluster routes.
pub fn rpc_router(srv: AppState) -> Router {
    let mut v1 = api_routes().merge(agent_routes());
    if srv.config.serve_peers {
        v1 = v1.merge(peer_routes());
    }
    v1 = v1.fallback(not_found);
    let app = finish(
        Router::new().nest("/v1", v1),
        srv.clone(),
        RPC_MAX_BODY_BYTES,
    );
    // Outermost: with RPC TLS, the caller's certificate decides the internal routes.
    app.layer(axum::middleware::from_fn_with_state(
        srv,
        peer_identity::check,
    ))
}

/// The public HTTP listener's router: the `/v1` API and the UI, never `/v1/internal/*`.
pub fn router(srv: AppState) -> Router {
    let v1 = api_routes().fallback(not_found);
    let mut app = Router::new().nest("/v1", v1);
    if let Some(ui) = srv.config.ui.clone() {
        app = app
            // The UI reads this server's snapshot directly (an `Extension<AppState>`).
            .nest_service("/ui", ui.layer(axum::Extension(srv.clone())))
            .route("/", get(|| async { axum::response::Redirect::to("/ui") }));
    }
    finish(app, srv, MAX_BODY_BYTES).layer(axum::middleware::from_fn(public_edge))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_like_go_durations() {
        assert_eq!(parse_wait("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_wait("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_wait("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_wait("10"), Ok(Duration::from_secs(10)));
        assert!(parse_wait("5x").is_err());
        assert!(parse_wait("s5").is_err());
    }

    #[test]
    fn internal_paths_are_recognised_however_they_are_spelt() {
        assert!(is_internal("/v1/internal/node/register"));
        assert!(is_internal("//v1//internal/cluster/join"));
        assert!(is_internal("/v1/internal"));
        assert!(!is_internal("/v1/internals"));
        assert!(!is_internal("/v1/jobs"));
        assert!(!is_internal("/ui/v1/internal"));
    }

    #[test]
    fn huge_negative_and_nan_waits_are_errors_not_panics() {
        for w in [
            "99999999999999999999s",
            "99999999999999999999",
            "-5s",
            "NaN",
            "inf",
            "1e400s",
            "18446744073709551616",
        ] {
            let e = parse_wait(w).unwrap_err();
            assert!(e.starts_with("invalid duration"), "{w}: {e}");
        }
    }
}
