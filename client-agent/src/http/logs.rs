//! `GET /v1/client/fs/logs/:alloc`: a task's logs, framed as Nomad frames them, with
//! follow; and the decoding of those frames for the CLI.

use super::{find_alloc, flag, pick_task, HttpErr, HttpResult};
use crate::alloc_runner::AllocView;
use crate::handle::ClientHandle;
use crate::logs::{self, Origin};
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};

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

pub(super) async fn logs_handler(
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
    let (frames, cursor) =
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
    tokio::spawn(follow_logs(view, task, frames, cursor, plain, tx));
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

/// Sends `frames`, then what the task writes next, until the task is dead and its log
/// read to the end, or the client went away.
async fn follow_logs(
    view: AllocView,
    task: String,
    frames: Vec<logs::Frame>,
    mut cursor: logs::Cursor,
    plain: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
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
