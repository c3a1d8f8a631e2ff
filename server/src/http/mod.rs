//! The `/v1` HTTP API: Nomad's routes and JSON shapes, blocking queries, and the internal
//! routes client agents and peer servers use.

mod allocs;
mod client_proxy;
mod cluster;
mod drain;
pub mod forward;
mod jobs;
mod nodes;
mod plan;
mod raft_rpc;
mod status;

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
    serde_json::from_slice(body).map_err(|e| ApiErr::bad_request(format!("invalid JSON body: {e}")))
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
}

impl QueryParams {
    pub fn namespace(&self) -> &str {
        match self.namespace.as_deref() {
            None | Some("") => api::DEFAULT_NAMESPACE,
            Some(n) => n,
        }
    }

    pub fn prefix_matches(&self, id: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| id.starts_with(p))
    }

    pub fn flag(v: &Option<String>) -> bool {
        v.as_deref()
            .is_some_and(|s| s.is_empty() || s.eq_ignore_ascii_case("true") || s == "1")
    }
}

/// Parse Go-style durations as Nomad's `wait` takes them: "30s", "5m", "250ms", "1m30s".
pub fn parse_wait(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let secs = match unit.as_str() {
            "ns" => v / 1e9,
            "us" | "µs" => v / 1e6,
            "ms" => v / 1e3,
            "s" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

/// Run a blocking query: wait until `table(state)` passes `?index=` or `?wait=` runs out.
pub async fn blocking(
    srv: &Server,
    q: &QueryParams,
    table: impl Fn(&StateStore) -> u64,
) -> Result<Arc<StateStore>, ApiErr> {
    let min = match q.index.as_deref() {
        None | Some("") => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            ApiErr::bad_request(format!("invalid index {s:?}: expected an integer"))
        })?,
    };
    let wait = match q.wait.as_deref() {
        None | Some("") => Duration::from_secs(300),
        Some(s) => parse_wait(s).ok_or_else(|| {
            ApiErr::bad_request(format!("invalid wait {s:?}: expected a duration like 30s"))
        })?,
    }
    .min(Duration::from_secs(600));
    if q.consistent.is_some() {
        // Read-index: prove this server still leads and has applied what it committed.
        let confirmed =
            tokio::time::timeout(srv.config.write_timeout, srv.raft.ensure_linearizable())
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = confirmed {
            return Err(ApiErr(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no cluster leader: cannot confirm leadership for a consistent read ({e})"),
            ));
        }
    }
    let mut rx = srv.state.clone();
    let state = rx.borrow_and_update().clone();
    if min == 0 || table(&state) > min {
        return Ok(state);
    }
    // Nomad adds up to 1/16 of jitter so many watchers do not wake together.
    let jitter = wait.mul_f64(rand::random::<f64>() / 16.0);
    let deadline = tokio::time::Instant::now() + wait + jitter;
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

/// The Raft RPC listener's router (`-rpc-port`).
pub fn rpc_router(srv: AppState) -> Router {
    Router::new()
        .nest("/v1", peer_routes())
        .fallback(not_found)
        .with_state(srv)
        .layer(axum::extract::DefaultBodyLimit::disable())
}

pub fn router(srv: AppState) -> Router {
    let v1 = Router::new()
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
        .route("/job/{id}/evaluations", get(jobs::evaluations))
        .route("/job/{id}/summary", get(jobs::summary))
        .route("/job/{id}/versions", get(jobs::versions))
        .route("/job/{id}/plan", put(plan::plan).post(plan::plan))
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
        .route("/agent/self", get(status::agent_self))
        .route("/agent/health", get(status::health))
        .route("/internal/bench/noop", put(status::noop))
        .route("/internal/node/register", put(nodes::register))
        .route("/internal/node/{id}/heartbeat", put(nodes::heartbeat))
        .route("/internal/node/{id}/allocs", put(nodes::update_allocs))
        .route("/agent/members", get(cluster::members))
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
        .fallback(not_found);
    // Without its own RPC port, a server takes peer traffic on the HTTP listener.
    let v1 = if srv.config.rpc_addr.is_none() {
        v1.merge(peer_routes())
    } else {
        v1
    };
    let mut app = Router::new().nest("/v1", v1);
    if let Some(ui) = srv.config.ui.clone() {
        app = app
            .nest_service("/ui", ui)
            .route("/", get(|| async { axum::response::Redirect::to("/ui") }));
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_like_go_durations() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_wait("5x"), None);
        assert_eq!(parse_wait("s5"), None);
    }
}
