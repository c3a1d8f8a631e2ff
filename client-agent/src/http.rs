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
use crate::allocdir::{self, Links};
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
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
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

/// A log read error as an answer: a link or a non-file a task planted is a 403.
fn log_error(alloc: &str, e: std::io::Error) -> HttpErr {
    let msg = format!("Cannot read the logs of allocation {alloc}: {e}");
    match e.kind() {
        std::io::ErrorKind::InvalidInput => HttpErr::bad_request(msg),
        std::io::ErrorKind::PermissionDenied => HttpErr::forbidden(msg),
        std::io::ErrorKind::NotFound => HttpErr::not_found(msg),
        _ => HttpErr::internal(msg),
    }
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
    let dir = view.alloc_dir.root.clone();
    let (t, k) = (task.clone(), kind.clone());
    let (frames, mut cursor) =
        tokio::task::spawn_blocking(move || logs::read_existing(&dir, &t, &k, origin, offset))
            .await
            .map_err(|e| HttpErr::internal(format!("reading logs: {e}")))?
            .map_err(|e| log_error(&alloc, e))?;
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
    offset: Option<String>,
    limit: Option<String>,
}

/// The request's `path` (relative to the alloc dir; `/` is its root) as a checked
/// relative path: `..`, NUL and `\` are refused before anything is opened.
fn fs_path(p: Option<&str>) -> Result<PathBuf, HttpErr> {
    let raw = p.unwrap_or("/").trim();
    allocdir::relative("path", raw.trim_start_matches('/')).map_err(|e| HttpErr::bad_request(e.0))
}

/// Whether `rel` (relative to the alloc root) is in, or is, a task's `secrets` directory.
/// Compared without regard to case, as Nomad does.
fn is_secret(rel: &Path) -> bool {
    let mut c = rel.components();
    match (c.next(), c.next()) {
        (Some(Component::Normal(task)), Some(Component::Normal(dir))) => {
            task != "alloc" && dir.to_string_lossy().eq_ignore_ascii_case("secrets")
        }
        _ => false,
    }
}

fn secret_refused(shown: &str) -> HttpErr {
    HttpErr::forbidden(format!("Reading secret file prohibited: {shown}"))
}

/// Opens `rel` beneath the allocation directory for reading: `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so a symlink a task made that points out of
/// the alloc dir is refused (403); one that stays inside is followed, and where it lands
/// is checked again against the secrets rule. Never blocks on a FIFO.
fn open_in_alloc(
    root: &Path,
    rel: &Path,
    shown: &str,
    alloc: &str,
) -> Result<(OwnedFd, Stat), HttpErr> {
    if is_secret(rel) {
        return Err(secret_refused(shown));
    }
    let root_fd = allocdir::open_dir(root).map_err(|e| {
        HttpErr::not_found(format!("The directory of allocation {alloc} is gone: {e}"))
    })?;
    let fd = allocdir::open_beneath(
        root_fd.as_fd(),
        rel,
        OFlags::RDONLY | OFlags::NONBLOCK,
        Mode::empty(),
        Links::Beneath,
    )
    .map_err(|e| match e.kind() {
        _ if allocdir::is_link_refusal(&e) => HttpErr::forbidden(format!(
            "Path {shown:?} in allocation {alloc} leads out of the allocation directory \
             through a symbolic link; the agent does not follow it"
        )),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => HttpErr::not_found(
            format!("No file or directory {shown:?} in allocation {alloc}"),
        ),
        std::io::ErrorKind::PermissionDenied => HttpErr::forbidden(format!(
            "Reading {shown:?} in allocation {alloc} is not permitted: {e}"
        )),
        _ => HttpErr::internal(format!("opening {shown:?} in allocation {alloc}: {e}")),
    })?;
    // Where it landed (links inside the alloc dir were followed): still inside, and not
    // in a secrets directory.
    let real_root = allocdir::real_path(root_fd.as_fd())
        .map_err(|e| HttpErr::internal(format!("resolving allocation {alloc}'s directory: {e}")))?;
    let real = allocdir::real_path(fd.as_fd())
        .map_err(|e| HttpErr::internal(format!("resolving {shown:?}: {e}")))?;
    let Ok(real_rel) = real.strip_prefix(&real_root) else {
        return Err(HttpErr::forbidden(format!(
            "Path {shown:?} in allocation {alloc} resolves outside the allocation directory"
        )));
    };
    if is_secret(real_rel) {
        return Err(secret_refused(shown));
    }
    let st =
        rustix::fs::fstat(&fd).map_err(|e| HttpErr::internal(format!("reading {shown:?}: {e}")))?;
    Ok((fd, st))
}

/// Runs a blocking fs operation off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HttpErr> + Send + 'static,
) -> Result<T, HttpErr> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HttpErr::internal(format!("file access failed: {e}")))?
}

/// Opens a regular file for `cat`/`readat`.
fn open_regular(
    root: &Path,
    rel: &Path,
    shown: &str,
    alloc: &str,
) -> Result<std::fs::File, HttpErr> {
    let (fd, st) = open_in_alloc(root, rel, shown, alloc)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(std::fs::File::from(fd)),
        FileType::Directory => Err(HttpErr::bad_request(format!(
            "{shown:?} is a directory; use /v1/client/fs/ls"
        ))),
        _ => Err(HttpErr::bad_request(format!(
            "{shown:?} is not a regular file (a device, FIFO or socket); only files can be read"
        ))),
    }
}

/// Streams `len` bytes (or to the end) of `file` from its current position as a body.
fn file_body(mut file: std::fs::File, len: Option<u64>) -> Response {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len.unwrap_or(u64::MAX);
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match file.read(&mut buf[..want]) {
                Ok(0) => return,
                Ok(n) => {
                    left -= n as u64;
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    (
        [("content-type", "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn cat(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let rel = fs_path(q.path.as_deref())?;
    let shown = q.path.clone().unwrap_or_default();
    let root = view.alloc_dir.root.clone();
    let file = blocking(move || open_regular(&root, &rel, &shown, &alloc)).await?;
    Ok(file_body(file, None))
}

fn parse_u64(name: &str, v: Option<&str>) -> Result<Option<u64>, HttpErr> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
            HttpErr::bad_request(format!("{name} must be a non-negative integer, got {s:?}"))
        }),
    }
}

/// `GET /v1/client/fs/readat/:alloc?path=&offset=&limit=`: `limit` bytes from `offset`.
async fn readat(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let rel = fs_path(q.path.as_deref())?;
    let offset = parse_u64("offset", q.offset.as_deref())?.unwrap_or(0);
    let limit = parse_u64("limit", q.limit.as_deref())?;
    let shown = q.path.clone().unwrap_or_default();
    let root = view.alloc_dir.root.clone();
    let file = blocking(move || {
        use std::io::{Seek, SeekFrom};
        let mut f = open_regular(&root, &rel, &shown, &alloc)?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| HttpErr::bad_request(format!("cannot seek {shown:?} to {offset}: {e}")))?;
        Ok(f)
    })
    .await?;
    Ok(file_body(file, limit))
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

/// Go's `FileMode.String()` for the kinds an alloc dir holds (`d`, `L` for a link).
fn mode_string(mode: u32, kind: FileType) -> String {
    let mut s = String::from(match kind {
        FileType::Directory => "d",
        FileType::Symlink => "L",
        FileType::Fifo => "p",
        FileType::Socket => "S",
        FileType::CharacterDevice => "Dc",
        FileType::BlockDevice => "D",
        _ => "-",
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn file_info(name: String, st: &Stat) -> AllocFileInfo {
    let kind = FileType::from_raw_mode(st.st_mode);
    let mod_time =
        chrono::DateTime::<chrono::Utc>::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
    AllocFileInfo {
        name,
        is_dir: kind == FileType::Directory,
        size: st.st_size as u64,
        file_mode: mode_string(st.st_mode, kind),
        mod_time,
    }
}

async fn ls(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let rel = fs_path(q.path.as_deref())?;
    let shown = q.path.clone().unwrap_or_else(|| "/".into());
    let root = view.alloc_dir.root.clone();
    let out = blocking(move || {
        let (fd, st) = open_in_alloc(&root, &rel, &shown, &alloc)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(HttpErr::bad_request(format!(
                "{shown:?} is not a directory; use /v1/client/fs/cat or /v1/client/fs/stat"
            )));
        }
        let dir = rustix::fs::Dir::read_from(&fd)
            .map_err(|e| HttpErr::internal(format!("listing {shown:?}: {e}")))?;
        let mut out = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            // The entry itself: a link is listed as a link, never followed.
            let Ok(st) = rustix::fs::statat(&fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            out.push(file_info(name, &st));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await?;
    Ok(Json(out).into_response())
}

/// `GET /v1/client/fs/stat/:alloc?path=`: one `AllocFileInfo`.
async fn stat(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let rel = fs_path(q.path.as_deref())?;
    let shown = q.path.clone().unwrap_or_else(|| "/".into());
    let root = view.alloc_dir.root.clone();
    let info = blocking(move || {
        let (_fd, st) = open_in_alloc(&root, &rel, &shown, &alloc)?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        Ok(file_info(name, &st))
    })
    .await?;
    Ok(Json(info).into_response())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_dirs_of_tasks_are_recognised_in_any_case_but_not_the_shared_dir() {
        for p in ["web/secrets", "web/secrets/token", "web/SeCrEtS/x"] {
            assert!(is_secret(Path::new(p)), "{p}");
        }
        for p in [
            "",
            "web",
            "web/local/secrets",
            "alloc/secrets",
            "web/secretsx",
        ] {
            assert!(!is_secret(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn fs_paths_are_relative_to_the_alloc_dir_and_never_climb_out() {
        assert_eq!(fs_path(None).unwrap(), Path::new(""));
        assert_eq!(
            fs_path(Some("/web/local/")).unwrap(),
            Path::new("web/local")
        );
        for bad in ["../x", "/web/../../x", "a\0b", "a\\b"] {
            let e = fs_path(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn a_link_outside_the_alloc_dir_is_a_403_and_a_link_inside_is_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a1");
        std::fs::create_dir_all(root.join("web/local")).unwrap();
        std::fs::create_dir_all(root.join("web/secrets")).unwrap();
        std::fs::write(root.join("web/local/f"), "in").unwrap();
        std::fs::write(root.join("web/secrets/t"), "tok").unwrap();
        std::fs::write(tmp.path().join("host"), "host").unwrap();
        std::os::unix::fs::symlink("../../../host", root.join("web/local/up")).unwrap();
        std::os::unix::fs::symlink("f", root.join("web/local/alias")).unwrap();
        std::os::unix::fs::symlink("../secrets/t", root.join("web/local/s")).unwrap();
        let open = |p: &str| open_regular(&root, &fs_path(Some(p)).unwrap(), p, "a1");
        let e = open("web/local/up").unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN, "{}", e.msg);
        let e = open("web/local/s").unwrap_err();
        assert!(
            e.msg.contains("Reading secret file prohibited"),
            "{}",
            e.msg
        );
        let mut s = String::new();
        use std::io::Read;
        open("web/local/alias")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "in");
        assert_eq!(
            open("web/local/none").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            open("web/local").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
