//! Peer-server Raft RPCs (see `raft::network` for the sending side).

use super::{ApiErr, AppState};
use crate::raft::network::{SnapshotChunkHeader, MAX_SNAPSHOT_BYTES, SNAPSHOT_META_HEADER};
use crate::raft::TypeConfig;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

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

/// One chunk of a snapshot from the leader; openraft reassembles the chunks and installs
/// the snapshot after the last one.
pub async fn snapshot(
    State(srv): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let header = headers
        .get(SNAPSHOT_META_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiErr::bad_request(format!(
                "a snapshot chunk needs its metadata in the {SNAPSHOT_META_HEADER} header"
            ))
        })?;
    let h: SnapshotChunkHeader = serde_json::from_str(header)
        .map_err(|e| ApiErr::bad_request(format!("invalid snapshot chunk metadata: {e}")))?;
    let end = h.offset.checked_add(body.len() as u64);
    if end.is_none_or(|end| end > MAX_SNAPSHOT_BYTES) {
        return Err(ApiErr(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "snapshot chunk at offset {} would make the snapshot larger than {MAX_SNAPSHOT_BYTES} bytes",
                h.offset
            ),
        ));
    }
    let req = InstallSnapshotRequest {
        vote: h.vote,
        meta: h.meta,
        offset: h.offset,
        data: body.to_vec(),
        done: h.done,
    };
    let res = srv.raft.install_snapshot(req).await;
    Ok(Json(serde_json::to_value(res).unwrap_or_default()))
}
