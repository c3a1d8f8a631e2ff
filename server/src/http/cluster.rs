//! `/v1/internal/cluster/*` (servers forming and joining a cluster) and `/v1/operator/*`.

use super::{parse_body, reply, write_reply, ApiErr, ApiResult, AppState, QueryParams};
use crate::cluster::{self, JoinRequest};
use crate::fsm::Command;
use crate::state::StateStore;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

pub async fn info(State(srv): State<AppState>) -> Json<cluster::ClusterInfo> {
    Json(cluster::info(&srv))
}

#[derive(Debug, Default, Deserialize)]
pub struct HoldQuery {
    pub ms: Option<u64>,
}

/// Do not stand for election for a while (the bystanders of a leadership transfer).
pub async fn hold_elections(State(srv): State<AppState>, Query(q): Query<HoldQuery>) -> ApiResult {
    let ms = q.ms.unwrap_or(5000).min(60_000);
    srv.raft.runtime_config().elect(false);
    let s = srv.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        s.raft.runtime_config().elect(true);
    });
    Ok(reply(&srv, srv.snapshot().index(), &serde_json::json!({})))
}

/// Stand for election now (the target side of a leadership transfer).
pub async fn elect(State(srv): State<AppState>) -> ApiResult {
    srv.raft
        .trigger()
        .elect()
        .await
        .map_err(|e| ApiErr(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(reply(&srv, srv.snapshot().index(), &serde_json::json!({})))
}

pub async fn join(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let req: JoinRequest = parse_body(&body)?;
    if !srv.is_leader() {
        // Relay to the leader's RPC address.
        let m = srv.raft.metrics().borrow().clone();
        let leader = m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
            .ok_or_else(|| ApiErr(StatusCode::SERVICE_UNAVAILABLE, "no cluster leader".into()))?;
        let r = srv
            .config
            .peer_client("join-relay", reqwest::Client::builder)
            .post(
                srv.config
                    .rpc_url(&leader.rpc_addr, "/v1/internal/cluster/join"),
            )
            .json(&req)
            .send()
            .await
            .map_err(|e| {
                ApiErr(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no cluster leader: {e}"),
                )
            })?;
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        return Ok((status, r.text().await.unwrap_or_default()).into_response());
    }
    cluster::add_server(&srv, req).await?;
    Ok(reply(&srv, srv.snapshot().index(), &serde_json::json!({})))
}

/// `GET /v1/operator/raft/configuration`, Nomad's shape.
pub async fn raft_configuration(State(srv): State<AppState>) -> ApiResult {
    let m = srv.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let servers: Vec<serde_json::Value> = membership
        .nodes()
        .map(|(id, n)| {
            serde_json::json!({
                "ID": id.to_string(),
                "Node": n.name,
                "Address": n.rpc_addr,
                "HTTPAddr": n.http_addr,
                "Leader": m.current_leader == Some(*id),
                "Voter": voters.contains(id),
                "RaftProtocol": "3",
            })
        })
        .collect();
    Ok(reply(
        &srv,
        srv.snapshot().index(),
        &serde_json::json!({ "Servers": servers, "Index": m.membership_config.log_id().map(|l| l.index).unwrap_or(0) }),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct PeerQuery {
    pub address: Option<String>,
    pub id: Option<String>,
}

/// `DELETE /v1/operator/raft/peer?address=|id=`.
pub async fn remove_peer(State(srv): State<AppState>, Query(q): Query<PeerQuery>) -> ApiResult {
    let id = match q.id.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiErr::bad_request(format!("invalid peer id {s:?}")))?,
        ),
    };
    if id.is_none() && q.address.as_deref().unwrap_or("").is_empty() {
        return Err(ApiErr::bad_request(
            "give the peer to remove as ?id= or ?address=",
        ));
    }
    if !srv.is_leader() {
        return Err(ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "peer changes go to the leader at {}",
                srv.leader_addr().unwrap_or_else(|| "(none)".into())
            ),
        ));
    }
    let removed = cluster::remove_server(&srv, id, q.address.as_deref()).await?;
    Ok(reply(
        &srv,
        srv.snapshot().index(),
        &serde_json::json!({ "Removed": removed.to_string() }),
    ))
}

/// `PUT /v1/operator/raft/transfer-leadership?id=`: ask that server to take over.
pub async fn transfer_leadership(
    State(srv): State<AppState>,
    Query(q): Query<PeerQuery>,
) -> ApiResult {
    let target = crate::cluster::transfer_target(&srv, q.id.as_deref(), q.address.as_deref())?;
    crate::cluster::transfer_leadership(&srv, target).await?;
    Ok(reply(
        &srv,
        srv.snapshot().index(),
        &serde_json::json!({ "Leader": target.to_string() }),
    ))
}

/// `GET /v1/operator/snapshot`: the whole state, as one JSON document, without node
/// secrets (restored nodes register again and are given new ones).
pub async fn snapshot_save(
    State(srv): State<AppState>,
    Query(_q): Query<QueryParams>,
) -> ApiResult {
    let state = srv.snapshot();
    let out = state.export_with_nodes(super::nodes::redacted);
    Ok(reply(&srv, state.index(), &out))
}

/// `PUT /v1/operator/snapshot`: replace the cluster's state with a saved one (through Raft).
pub async fn snapshot_restore(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let state: StateStore = parse_body(&body)?;
    let resp = srv
        .write(Command::RestoreState {
            state: Box::new(state),
        })
        .await?;
    Ok(write_reply(&srv, resp.index))
}
