//! `GET /v1/client/fs/stream/:alloc?path=&offset=&origin=&plain=`: a file of the
//! allocation directory from an offset, then what is appended to it, as Nomad's
//! `StreamFrame`s (or the raw bytes with `plain=true`) until the reader goes away.

use super::fs::{blocking, fs_target, open_regular, parse_u64, PathQuery};
use super::{flag, HttpErr, HttpResult};
use crate::handle::ClientHandle;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};

#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    path: Option<String>,
    offset: Option<String>,
    origin: Option<String>,
    plain: Option<String>,
}

/// One frame as Nomad's `StreamFrame` JSON; `FileEvent` says the file was truncated.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Frame<'a> {
    offset: u64,
    data: String,
    file: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    file_event: &'a str,
}

fn frame(offset: u64, data: &[u8], file: &str, event: &str, plain: bool) -> Bytes {
    if plain {
        return Bytes::copy_from_slice(data);
    }
    let f = Frame {
        offset,
        data: base64::engine::general_purpose::STANDARD.encode(data),
        file,
        file_event: event,
    };
    let mut v = serde_json::to_vec(&f).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub(super) async fn stream(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<StreamQuery>,
) -> HttpResult {
    let origin_end = match q.origin.as_deref().map(str::trim) {
        None | Some("") | Some("start") => false,
        Some("end") => true,
        Some(o) => {
            return Err(HttpErr::bad_request(format!(
                "origin must be start or end, got {o:?}"
            )))
        }
    };
    let offset = parse_u64("offset", q.offset.as_deref())?.unwrap_or(0);
    let plain = flag(&q.plain)?;
    let pq = PathQuery {
        path: q.path.clone(),
        offset: None,
        limit: None,
    };
    let (root, rel, shown) = fs_target(&h, &alloc, &pq, "")?;
    let name = shown.clone();
    let (file, start) = blocking(move || {
        // As Nomad: a file that cannot be streamed is the request's fault (400).
        let mut f = open_regular(&root, &rel, &shown, &alloc).map_err(|mut e| {
            if e.status == StatusCode::NOT_FOUND {
                e.status = StatusCode::BAD_REQUEST;
            }
            e
        })?;
        let len = f
            .metadata()
            .map_err(|e| HttpErr::internal(format!("reading {shown:?}: {e}")))?
            .len();
        let start = if origin_end {
            len.saturating_sub(offset)
        } else {
            offset.min(len)
        };
        f.seek(SeekFrom::Start(start))
            .map_err(|e| HttpErr::bad_request(format!("cannot seek {shown:?} to {start}: {e}")))?;
        Ok((f, start))
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || follow(file, start, &name, plain, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let content_type = if plain {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(stream))
        .map_err(|e| HttpErr::internal(e.to_string()))
}

/// Reads `file` from `pos` to its end, then keeps looking for more until the reader is
/// gone; a file that shrank is read again from its start, after a "file truncated" frame.
fn follow(
    mut file: std::fs::File,
    mut pos: u64,
    name: &str,
    plain: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => {
                if tx.is_closed() {
                    return;
                }
                let len = file.metadata().map(|m| m.len()).unwrap_or(pos);
                if len < pos {
                    pos = 0;
                    if file.seek(SeekFrom::Start(0)).is_err()
                        || tx
                            .blocking_send(frame(0, &[], name, "file truncated", plain))
                            .is_err()
                    {
                        return;
                    }
                    continue;
                }
                std::thread::sleep(crate::logs::FOLLOW_POLL);
            }
            Ok(n) => {
                if tx
                    .blocking_send(frame(pos, &buf[..n], name, "", plain))
                    .is_err()
                {
                    return;
                }
                pos += n as u64;
            }
            Err(_) => return,
        }
    }
}
