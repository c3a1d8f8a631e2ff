//! `/v1/status/*`: the leader and the peers as Raft addresses them, and the regions.

use super::{reply, write_reply, ApiResult, AppState};
use axum::extract::State;

pub async fn leader(State(srv): State<AppState>) -> ApiResult {
    // Nomad answers the leader's RPC address (`ip:4647`), as Raft knows it.
    let addr = srv.leader_rpc_addr().unwrap_or_default();
    Ok(reply(&srv, srv.snapshot().index(), &addr))
}

pub async fn peers(State(srv): State<AppState>) -> ApiResult {
    let m = srv.raft.metrics().borrow().clone();
    let peers: Vec<String> = m
        .membership_config
        .membership()
        .voter_ids()
        .filter_map(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.rpc_addr.clone())
        })
        .collect();
    Ok(reply(&srv, srv.snapshot().index(), &peers))
}

pub async fn regions(State(srv): State<AppState>) -> ApiResult {
    Ok(reply(
        &srv,
        srv.snapshot().index(),
        &vec![srv.config.region.clone()],
    ))
}

/// `PUT /v1/internal/bench/noop`: one Raft write that changes nothing, for the load harness.
pub async fn noop(State(srv): State<AppState>) -> ApiResult {
    let r = srv.write(crate::fsm::Command::Noop).await?;
    Ok(write_reply(&srv, r.index))
}
