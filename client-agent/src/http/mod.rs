//! The client agent's HTTP API: Nomad's `/v1/client/...` endpoints for the allocations
//! running on this agent (logs, files, resource usage, restart, signal, exec).
//!
//! Errors are a status and a sentence, like the servers' API: 404 for an allocation or a
//! task that is not here, 400 for bad parameters. A 404 for an unknown allocation also
//! carries [`ALLOC_NOT_HERE_HEADER`], so that a server that mounts this router in front
//! of its proxy knows to relay the request to the allocation's node instead.
//!
//! `exec` is a non-interactive version of Nomad's websocket exec: the command runs to
//! completion and its exit code and output come back in one JSON answer.
//!
//! This file holds the router and what every handler shares (errors, finding the
//! allocation and the task); the handlers live beside it by concern: `logs`, `fs`,
//! `stream` (a file followed as it grows), `control` (stats, restart, signal), `checks`
//! (service check results), `exec`, and `agent` (the server list and garbage collection);
//! `client` is the CLI's side; `listen` is a client-only agent's listener (TLS with
//! `tls { http = true }`).

mod agent;
mod checks;
mod client;
mod control;
mod exec;
mod fs;
mod listen;
mod logs;
mod stream;

pub use client::ClientApi;
pub use exec::ExecResponse;
pub use fs::{AllocFileInfo, PathQuery};
pub use listen::{HttpTls, ListenOptions};
pub use logs::{decode_frames, LogsQuery};

use crate::alloc_runner::{AllocView, ControlError};
use crate::handle::ClientHandle;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use checks::alloc_checks;
use control::{alloc_stats, host_stats, restart, signal};
use exec::exec;
use fs::{cat, ls, readat, stat};
use logs::logs_handler;
use std::time::Duration;

/// Set on the 404 of an allocation this agent does not run.
pub const ALLOC_NOT_HERE_HEADER: &str = "x-drover-alloc-not-here";
/// Longest a non-interactive exec may run.
const EXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// An error answer: a status and a sentence.
#[derive(Debug)]
pub struct HttpErr {
    status: StatusCode,
    msg: String,
    not_here: bool,
}

impl HttpErr {
    fn bad_request(msg: impl Into<String>) -> Self {
        HttpErr {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
            not_here: false,
        }
    }
    fn not_found(msg: impl Into<String>) -> Self {
        HttpErr {
            status: StatusCode::NOT_FOUND,
            msg: msg.into(),
            not_here: false,
        }
    }
    fn forbidden(msg: impl Into<String>) -> Self {
        HttpErr {
            status: StatusCode::FORBIDDEN,
            msg: msg.into(),
            not_here: false,
        }
    }
    fn internal(msg: impl Into<String>) -> Self {
        HttpErr {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            msg: msg.into(),
            not_here: false,
        }
    }
}

impl IntoResponse for HttpErr {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.msg).into_response();
        if self.not_here {
            r.headers_mut()
                .insert(ALLOC_NOT_HERE_HEADER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<ControlError> for HttpErr {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(m) => HttpErr::not_found(m),
            ControlError::Failed(m) => HttpErr::bad_request(m),
        }
    }
}

type HttpResult = Result<Response, HttpErr>;

/// The router serving `/v1/client/...` for the allocations of `handle`'s agent.
pub fn client_router(handle: ClientHandle) -> Router {
    Router::new()
        .route("/v1/client/fs/logs/{alloc}", get(logs_handler))
        .route("/v1/client/fs/cat/{alloc}", get(cat))
        .route("/v1/client/fs/ls/{alloc}", get(ls))
        .route("/v1/client/fs/stat/{alloc}", get(stat))
        .route("/v1/client/fs/readat/{alloc}", get(readat))
        .route("/v1/client/fs/stream/{alloc}", get(stream::stream))
        .route(
            "/v1/client/allocation/{alloc}/gc",
            get(agent::gc_alloc)
                .put(agent::gc_alloc)
                .post(agent::gc_alloc),
        )
        .route(
            "/v1/client/gc",
            get(agent::gc_all).put(agent::gc_all).post(agent::gc_all),
        )
        .route("/v1/agent/health", get(agent::health))
        .route(
            "/v1/agent/servers",
            get(agent::servers)
                .put(agent::set_servers)
                .post(agent::set_servers),
        )
        .route("/v1/client/allocation/{alloc}/stats", get(alloc_stats))
        .route("/v1/client/allocation/{alloc}/checks", get(alloc_checks))
        .route("/v1/client/stats", get(host_stats))
        .route(
            "/v1/client/allocation/{alloc}/restart",
            post(restart).put(restart),
        )
        .route(
            "/v1/client/allocation/{alloc}/signal",
            post(signal).put(signal),
        )
        .route("/v1/client/allocation/{alloc}/exec", post(exec).put(exec))
        .with_state(handle)
}

fn find_alloc(h: &ClientHandle, id: &str) -> Result<AllocView, HttpErr> {
    h.alloc(id).ok_or_else(|| HttpErr {
        status: StatusCode::NOT_FOUND,
        msg: format!("Unknown allocation \"{id}\": it is not running on this client"),
        not_here: true,
    })
}

/// The group's task names.
fn task_names(view: &AllocView) -> Vec<String> {
    let st = view.state.borrow();
    st.alloc
        .job
        .as_ref()
        .and_then(|j| j.task_group(&st.alloc.task_group))
        .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect())
        .unwrap_or_else(|| st.tasks.keys().cloned().collect())
}

/// The task a request names, or the only task of the group when it names none.
fn pick_task(view: &AllocView, alloc: &str, task: Option<&str>) -> Result<String, HttpErr> {
    let names = task_names(view);
    match task.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if names.iter().any(|n| n == t) => Ok(t.to_string()),
        Some(t) => Err(HttpErr::not_found(format!(
            "Unknown task \"{t}\" in allocation \"{alloc}\" (tasks: {})",
            names.join(", ")
        ))),
        None if names.len() == 1 => Ok(names[0].clone()),
        None => Err(HttpErr::bad_request(format!(
            "Allocation \"{alloc}\" has several tasks; name one with task= (tasks: {})",
            names.join(", ")
        ))),
    }
}

fn flag(v: &Option<String>) -> Result<bool, HttpErr> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(false),
        Some(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(false),
        Some(s) => Err(HttpErr::bad_request(format!(
            "expected true or false, got {s:?}"
        ))),
    }
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, HttpErr> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| HttpErr::bad_request(format!("invalid JSON body: {e}")))
}

/// Serves [`client_router`] on `addr` until `shutdown` (a client-only agent's listener,
/// over TLS when `opts.tls` is set).
pub async fn serve(
    addr: std::net::SocketAddr,
    handle: ClientHandle,
    opts: ListenOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    serve_router(addr, client_router(handle), opts, shutdown).await
}

/// [`serve`] for an agent with ACLs enabled: the client API answers only requests a
/// server relayed. The servers check the caller's token before relaying (`/v1/client/*`
/// is an ACL-checked route there) and prove the relay with this node's own secret in
/// `X-Nomad-Node-Secret`, which only the servers and this node know; anything else
/// (a token sent straight to this port included) is a 403, but for `/v1/agent/health`.
pub async fn serve_relayed_only(
    addr: std::net::SocketAddr,
    handle: ClientHandle,
    opts: ListenOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let secret_file = handle.data_dir().join("node-secret");
    let router = client_router(handle).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let secret_file = secret_file.clone();
            async move {
                // Health is open, as in Nomad: a load balancer's check carries no token.
                if req.uri().path() == "/v1/agent/health" {
                    return next.run(req).await;
                }
                let own = std::fs::read_to_string(&secret_file).unwrap_or_default();
                let sent = req
                    .headers()
                    .get(api::wire::NODE_SECRET_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if own.trim().is_empty() || sent != own.trim() {
                    return (StatusCode::FORBIDDEN, "Permission denied").into_response();
                }
                next.run(req).await
            }
        },
    ));
    serve_router(addr, router, opts, shutdown).await
}

async fn serve_router(
    addr: std::net::SocketAddr,
    router: Router,
    opts: ListenOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the client HTTP API: {e}"))?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "client HTTP API listening");
    listen::serve(listener, router, opts, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("client HTTP API: {e}"))
}
