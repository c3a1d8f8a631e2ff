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

use crate::alloc_runner::{AllocView, ControlError};
use crate::driver::{Driver, DriverError, TaskHandle};
use crate::handle::ClientHandle;
use crate::logs::{self, Origin};
use crate::stats;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
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
        .route("/v1/client/allocation/{alloc}/stats", get(alloc_stats))
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

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    task: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    follow: Option<String>,
    offset: Option<String>,
    origin: Option<String>,
    plain: Option<String>,
}

/// One frame as Nomad's `StreamFrame` JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FrameJson<'a> {
    offset: u64,
    data: String,
    file: &'a str,
}

fn encode(frame: &logs::Frame, plain: bool) -> Bytes {
    if plain {
        return Bytes::from(frame.data.clone());
    }
    let j = FrameJson {
        offset: frame.offset,
        data: base64::engine::general_purpose::STANDARD.encode(&frame.data),
        file: &frame.file,
    };
    let mut v = serde_json::to_vec(&j).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn task_dead(view: &AllocView, task: &str) -> bool {
    view.state
        .borrow()
        .tasks
        .get(task)
        .is_some_and(|t| t.state.state == api::TASK_STATE_DEAD)
}

async fn logs_handler(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let task = pick_task(&view, &alloc, q.task.as_deref())?;
    let kind = match q.kind.as_deref().unwrap_or("stdout") {
        k @ ("stdout" | "stderr") => k.to_string(),
        other => {
            return Err(HttpErr::bad_request(format!(
                "type must be stdout or stderr, got {other:?}"
            )))
        }
    };
    let origin = match q.origin.as_deref().unwrap_or("start") {
        "start" | "" => Origin::Start,
        "end" => Origin::End,
        other => {
            return Err(HttpErr::bad_request(format!(
                "origin must be start or end, got {other:?}"
            )))
        }
    };
    let offset = match q.offset.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            HttpErr::bad_request(format!("offset must be a non-negative integer, got {s:?}"))
        })?,
    };
    let follow = flag(&q.follow)?;
    let plain = flag(&q.plain)?;
    let dir = view.alloc_dir.logs();
    let (t, k) = (task.clone(), kind.clone());
    let (frames, mut cursor) =
        tokio::task::spawn_blocking(move || logs::read_existing(&dir, &t, &k, origin, offset))
            .await
            .map_err(|e| HttpErr::internal(format!("reading logs: {e}")))?
            .map_err(|e| HttpErr::internal(format!("reading logs: {e}")))?;
    let content_type = if plain {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    if !follow {
        let mut body = Vec::new();
        for f in &frames {
            body.extend_from_slice(&encode(f, plain));
        }
        return Ok(([("content-type", content_type)], body).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for f in &frames {
            if tx.send(encode(f, plain)).await.is_err() {
                return;
            }
        }
        loop {
            // Whether the task was dead before this look: then nothing more will come.
            let dead = task_dead(&view, &task);
            let res = tokio::task::spawn_blocking(move || {
                let r = cursor.poll();
                (cursor, r)
            })
            .await;
            let Ok((c, res)) = res else { return };
            cursor = c;
            match res {
                Ok(frames) => {
                    for f in &frames {
                        if tx.send(encode(f, plain)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "log follower stopped");
                    return;
                }
            }
            if dead || tx.is_closed() {
                return;
            }
            tokio::time::sleep(logs::FOLLOW_POLL).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(stream))
        .map_err(|e| HttpErr::internal(e.to_string()))
}

#[derive(Debug, Default, Deserialize)]
pub struct PathQuery {
    path: Option<String>,
}

/// `path` (relative to the alloc dir root) as a path inside it; `..` is refused.
fn resolve(root: &Path, p: Option<&str>) -> Result<PathBuf, HttpErr> {
    let rel = p.unwrap_or("/").trim();
    let rel_path = Path::new(rel.trim_start_matches('/'));
    if rel_path
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(HttpErr::bad_request(format!(
            "path {rel:?} leaves the allocation directory"
        )));
    }
    Ok(root.join(rel_path))
}

async fn cat(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let path = resolve(&view.alloc_dir.root, q.path.as_deref())?;
    let shown = q.path.clone().unwrap_or_default();
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|_| HttpErr::not_found(format!("No file {shown:?} in allocation {alloc}")))?;
    if meta.is_dir() {
        return Err(HttpErr::bad_request(format!(
            "{shown:?} is a directory; use /v1/client/fs/ls"
        )));
    }
    let data = tokio::fs::read(&path)
        .await
        .map_err(|e| HttpErr::internal(format!("reading {shown:?}: {e}")))?;
    Ok(([("content-type", "text/plain; charset=utf-8")], data).into_response())
}

/// One entry of `fs/ls`, as Nomad's `AllocFileInfo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocFileInfo {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub file_mode: String,
    /// RFC 3339.
    pub mod_time: String,
}

fn mode_string(mode: u32, dir: bool) -> String {
    let mut s = String::from(if dir { "d" } else { "-" });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

async fn ls(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    use std::os::unix::fs::PermissionsExt;
    let view = find_alloc(&h, &alloc)?;
    let path = resolve(&view.alloc_dir.root, q.path.as_deref())?;
    let shown = q.path.clone().unwrap_or_else(|| "/".into());
    let mut rd = tokio::fs::read_dir(&path)
        .await
        .map_err(|_| HttpErr::not_found(format!("No directory {shown:?} in allocation {alloc}")))?;
    let mut out = Vec::new();
    while let Ok(Some(e)) = rd.next_entry().await {
        let Ok(m) = e.metadata().await else { continue };
        let mod_time = m
            .modified()
            .ok()
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
            .unwrap_or_default();
        out.push(AllocFileInfo {
            name: e.file_name().to_string_lossy().into_owned(),
            is_dir: m.is_dir(),
            size: m.len(),
            file_mode: mode_string(m.permissions().mode(), m.is_dir()),
            mod_time,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out).into_response())
}

/// The running tasks of an allocation with their drivers and handles.
fn running_tasks(h: &ClientHandle, view: &AllocView) -> Vec<(String, Arc<dyn Driver>, TaskHandle)> {
    let st = view.state.borrow();
    st.tasks
        .iter()
        .filter_map(|(name, t)| {
            let handle = t.handle.clone()?;
            let driver = h.drivers().get(&handle.driver)?;
            Some((name.clone(), driver, handle))
        })
        .collect()
}

async fn alloc_stats(State(h): State<ClientHandle>, UrlPath(alloc): UrlPath<String>) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let tasks = running_tasks(&h, &view);
    let mhz = stats::mhz_per_core(h.node().as_deref());
    let usage = stats::alloc_usage(tasks, mhz).await;
    Ok(Json(usage).into_response())
}

async fn host_stats(State(h): State<ClientHandle>) -> HttpResult {
    let mhz = stats::mhz_per_core(h.node().as_deref());
    let dir = h.data_dir().join("alloc");
    let dir = if dir.exists() {
        dir
    } else {
        h.data_dir().to_path_buf()
    };
    Ok(Json(stats::host_stats(&dir, mhz).await).into_response())
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, HttpErr> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| HttpErr::bad_request(format!("invalid JSON body: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartBody {
    task_name: String,
    all_tasks: bool,
}

async fn restart(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    body: Bytes,
) -> HttpResult {
    let b: RestartBody = parse_json(&body)?;
    let view = find_alloc(&h, &alloc)?;
    let task = if b.task_name.trim().is_empty() || b.all_tasks {
        None
    } else {
        Some(pick_task(&view, &alloc, Some(&b.task_name))?)
    };
    h.restart(&alloc, task).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SignalBody {
    task: String,
    signal: String,
}

async fn signal(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    body: Bytes,
) -> HttpResult {
    let b: SignalBody = parse_json(&body)?;
    let view = find_alloc(&h, &alloc)?;
    let sig = if b.signal.trim().is_empty() {
        "SIGKILL".to_string()
    } else {
        b.signal.trim().to_string()
    };
    if crate::driver::process::parse_signal(&sig).is_none() {
        return Err(HttpErr::bad_request(format!("unknown signal {sig:?}")));
    }
    let task = if b.task.trim().is_empty() {
        None
    } else {
        Some(pick_task(&view, &alloc, Some(&b.task))?)
    };
    h.signal(&alloc, task, sig).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    task: String,
    cmd: Vec<String>,
}

/// The answer of a non-interactive exec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecResponse {
    pub exit_code: i64,
    /// Base64.
    pub stdout: String,
    /// Base64.
    pub stderr: String,
}

impl ExecResponse {
    /// Decodes `Stdout` and `Stderr`.
    pub fn output(&self) -> (Vec<u8>, Vec<u8>) {
        let dec = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_default()
        };
        (dec(&self.stdout), dec(&self.stderr))
    }
}

async fn exec(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    body: Bytes,
) -> HttpResult {
    let b: ExecBody = parse_json(&body)?;
    if b.cmd.is_empty() || b.cmd[0].trim().is_empty() {
        return Err(HttpErr::bad_request(
            "Cmd must name a command to run, e.g. [\"sh\", \"-c\", \"ls\"]",
        ));
    }
    let view = find_alloc(&h, &alloc)?;
    let task = pick_task(
        &view,
        &alloc,
        Some(&b.task).filter(|t| !t.is_empty()).map(|t| t.as_str()),
    )?;
    let handle = view
        .state
        .borrow()
        .tasks
        .get(&task)
        .and_then(|t| t.handle.clone());
    let Some(handle) = handle else {
        return Err(HttpErr::bad_request(format!(
            "task \"{task}\" is not running"
        )));
    };
    let driver = h
        .drivers()
        .get(&handle.driver)
        .ok_or_else(|| HttpErr::internal(format!("driver {:?} is gone", handle.driver)))?;
    match driver.exec(&handle, &b.cmd, EXEC_TIMEOUT).await {
        Ok(out) => {
            let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
            Ok(Json(ExecResponse {
                exit_code: out.exit_code,
                stdout: b64(&out.stdout),
                stderr: b64(&out.stderr),
            })
            .into_response())
        }
        Err(DriverError::Unsupported(m)) => Err(HttpErr {
            status: StatusCode::NOT_IMPLEMENTED,
            msg: m,
            not_here: false,
        }),
        Err(e) => Err(HttpErr::bad_request(format!(
            "exec in task \"{task}\" failed: {e}"
        ))),
    }
}

/// Decodes the frames of a framed logs answer (JSON objects back to back) into bytes.
pub fn decode_frames(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    for v in stream {
        let v = v.map_err(|e| format!("bad log frame: {e}"))?;
        if let Some(d) = v.get("Data").and_then(|d| d.as_str()) {
            out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .map_err(|e| format!("bad log frame data: {e}"))?,
            );
        }
    }
    Ok(out)
}

/// Map of query parameters, for callers building URLs.
pub fn query_string(params: &BTreeMap<&str, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Serves [`client_router`] on `addr` until `shutdown` (a client-only agent's listener).
pub async fn serve(
    addr: std::net::SocketAddr,
    handle: ClientHandle,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the client HTTP API: {e}"))?;
    tracing::info!(%addr, "client HTTP API listening");
    axum::serve(listener, client_router(handle))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| anyhow::anyhow!("client HTTP API: {e}"))
}

/// A small HTTP client for the client endpoints (through any server or the agent
/// itself), for the CLI: errors are the server's sentence with its status.
#[derive(Debug, Clone)]
pub struct ClientApi {
    base: String,
    http: reqwest::Client,
}

impl ClientApi {
    /// `base` is an address such as `http://127.0.0.1:4646`.
    pub fn new(base: &str) -> Self {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        ClientApi {
            base,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("static reqwest configuration"),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, String> {
        let url = format!("{}{path_and_query}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("{} ({status})", text.trim()));
        }
        Ok(resp)
    }

    /// A JSON request and its JSON answer.
    pub async fn json(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let resp = self.send(m, path_and_query, body).await?;
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON answer: {e}"))
    }

    /// A GET whose body is handed to `sink` chunk by chunk as it arrives.
    pub async fn stream(
        &self,
        path_and_query: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), String> {
        let mut resp = self
            .send(reqwest::Method::GET, path_and_query, None)
            .await?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("the stream broke off: {e}"))?
        {
            sink(&chunk);
        }
        Ok(())
    }
}
