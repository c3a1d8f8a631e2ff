//! `/v1/status/*` and `/v1/agent/*`.

use super::{reply, write_reply, ApiResult, AppState};
use axum::extract::State;
use std::collections::BTreeMap;

pub async fn leader(State(srv): State<AppState>) -> ApiResult {
    let addr = srv.leader_addr().unwrap_or_default();
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
                .map(|n| n.http_addr.clone())
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

pub async fn agent_self(State(srv): State<AppState>) -> ApiResult {
    let m = srv.raft.metrics().borrow().clone();
    let b = srv.broker.stats();
    let mut stats = BTreeMap::new();
    stats.insert(
        "raft".to_string(),
        BTreeMap::from([
            ("state".to_string(), format!("{:?}", m.state)),
            ("term".to_string(), m.current_term.to_string()),
            (
                "last_log_index".to_string(),
                m.last_log_index.unwrap_or(0).to_string(),
            ),
            (
                "applied_index".to_string(),
                m.last_applied.map(|l| l.index).unwrap_or(0).to_string(),
            ),
            ("disk_bytes".to_string(), srv.disk_size().to_string()),
            (
                "snapshots_installed".to_string(),
                srv.snapshots_installed
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "last_snapshot_index".to_string(),
                m.snapshot.map(|l| l.index).unwrap_or(0).to_string(),
            ),
            (
                "last_purged_index".to_string(),
                m.purged.map(|l| l.index).unwrap_or(0).to_string(),
            ),
        ]),
    );
    stats.insert(
        "broker".to_string(),
        BTreeMap::from([
            ("ready".to_string(), b.ready.to_string()),
            ("unacked".to_string(), b.unacked.to_string()),
            ("blocked".to_string(), b.blocked.to_string()),
            ("delayed".to_string(), b.delayed.to_string()),
        ]),
    );
    let body = api::AgentSelf {
        config: serde_json::json!({
            "Region": srv.config.region,
            "Datacenter": srv.config.datacenter,
            "NodeName": srv.config.name,
            "DataDir": srv.config.data_dir,
            "Version": { "Version": env!("CARGO_PKG_VERSION") },
            "Server": { "Enabled": true },
        }),
        member: api::AgentMember {
            name: srv.config.name.clone(),
            addr: srv.config.http_addr.ip().to_string(),
            port: srv.config.http_addr.port(),
            status: "alive".into(),
            tags: BTreeMap::from([
                ("region".to_string(), srv.config.region.clone()),
                ("dc".to_string(), srv.config.datacenter.clone()),
                ("role".to_string(), "nomad".to_string()),
                ("build".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ]),
        },
        stats,
    };
    Ok(reply(&srv, srv.snapshot().index(), &body))
}

pub async fn health(State(srv): State<AppState>) -> ApiResult {
    let ok = srv.raft.metrics().borrow().current_leader.is_some();
    Ok(reply(
        &srv,
        srv.snapshot().index(),
        &serde_json::json!({ "server": { "ok": ok, "message": if ok { "ok" } else { "no cluster leader" } } }),
    ))
}

/// `PUT /v1/internal/bench/noop`: one Raft write that changes nothing, for the load harness.
pub async fn noop(State(srv): State<AppState>) -> ApiResult {
    let r = srv.write(crate::fsm::Command::Noop).await?;
    Ok(write_reply(&srv, r.index))
}
