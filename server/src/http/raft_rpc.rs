//! Peer-server Raft RPCs (see `raft::network` for the sending side).

use super::{ApiErr, AppState};
use crate::raft::network::{SnapshotHeader, SNAPSHOT_META_HEADER};
use crate::raft::TypeConfig;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Snapshot;
use std::io::Cursor;

pub async fn append(
    State(srv): State<AppState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let req: AppendEntriesRequest<TypeConfig> = super::parse_body(&body)?;
    let res = srv.raft.append_entries(req).await;
    if matches!(&res, Ok(r) if r.is_success()) {
        *srv.last_leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }
    Ok(Json(serde_json::to_value(res).unwrap_or_default()))
}

pub async fn vote(
    State(srv): State<AppState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let req: VoteRequest<u64> = super::parse_body(&body)?;
    let res = srv.raft.vote(req).await;
    Ok(Json(serde_json::to_value(res).unwrap_or_default()))
}

pub async fn snapshot(
    State(srv): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let header = headers
        .get(SNAPSHOT_META_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiErr::bad_request("missing snapshot metadata header"))?;
    let h: SnapshotHeader = serde_json::from_str(header)
        .map_err(|e| ApiErr::bad_request(format!("invalid snapshot metadata: {e}")))?;
    let snap = Snapshot {
        meta: h.meta,
        snapshot: Box::new(Cursor::new(body.to_vec())),
    };
    let res = srv.raft.install_full_snapshot(h.vote, snap).await;
    Ok(Json(serde_json::to_value(res).unwrap_or_default()))
}
