//! `/v1/agent/*`: this agent itself. Its configuration and health, the servers it knows
//! (`members`: Nomad's gossip view, here the Raft membership probed for liveness), the
//! servers its client agent talks to (`servers`), and joining or forcing out servers.
//!
//! These are answered by the agent asked, never forwarded to the leader.

use super::{reply, MAX_BODY_BYTES};
use super::{ApiErr, ApiResult, AppState};
use crate::cluster::{self, ClusterInfo, JoinRequest};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::time::Duration;
use tower::ServiceExt;

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

/// `GET /v1/agent/health`: the server's part (a leader is known) and, on an agent that
/// runs a client, the client's part as its router answers it; 500 while either is not
/// healthy, as Nomad answers, with the same body.
pub async fn health(State(srv): State<AppState>) -> ApiResult {
    let ok = srv.raft.metrics().borrow().current_leader.is_some();
    let mut body = serde_json::json!({ "server": { "ok": ok, "message": if ok { "ok" } else { "no cluster leader" } } });
    let mut healthy = ok;
    if let Some(local) = srv.config.client_routes.clone() {
        let client = local_client_health(local).await;
        healthy &= client["ok"].as_bool() == Some(true);
        body["client"] = client;
    }
    let mut resp = reply(&srv, srv.snapshot().index(), &body);
    if !healthy {
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    Ok(resp)
}

/// The `client` part of this process's client's `/v1/agent/health` answer.
async fn local_client_health(local: axum::Router) -> serde_json::Value {
    let unknown = || serde_json::json!({ "ok": false, "message": "the client did not answer" });
    let req = axum::http::Request::get("/v1/agent/health")
        .body(axum::body::Body::empty())
        .unwrap_or_default();
    let resp = local.oneshot(req).await.unwrap_or_else(|e| match e {});
    let Ok(bytes) = axum::body::to_bytes(resp.into_body(), 64 * 1024).await else {
        return unknown();
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|mut v| v.get_mut("client").map(serde_json::Value::take))
        .unwrap_or_else(unknown)
}

/// `GET /v1/agent/members`: the servers, Nomad's shape.
pub async fn members(State(srv): State<AppState>) -> ApiResult {
    let m = srv.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let http = srv.config.peer_client("members", || {
        reqwest::Client::builder().timeout(std::time::Duration::from_millis(500))
    });
    let probes = membership.nodes().map(|(id, n)| {
        let http = http.clone();
        let url = srv.config.rpc_url(&n.rpc_addr, "/v1/internal/cluster/info");
        let me = *id == srv.node_id;
        async move {
            me || http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    });
    let alive = futures_util::future::join_all(probes).await;
    let members: Vec<serde_json::Value> = membership
        .nodes()
        .zip(alive)
        .map(|((id, n), alive)| {
            let (host, port) = n.rpc_addr.rsplit_once(':').unwrap_or((&n.rpc_addr, "0"));
            serde_json::json!({
                "Name": if n.name.is_empty() { id.to_string() } else { n.name.clone() },
                "Addr": host,
                "Port": port.parse::<u16>().unwrap_or(0),
                "Status": if alive { "alive" } else { "failed" },
                // Nomad's gossip protocol versions; constant, as Drover has no gossip.
                "ProtocolMin": 1,
                "ProtocolMax": 5,
                "ProtocolCur": 2,
                "DelegateMin": 2,
                "DelegateMax": 5,
                "DelegateCur": 4,
                "Tags": {
                    "id": id.to_string(),
                    "role": "nomad",
                    "region": srv.config.region,
                    "dc": srv.config.datacenter,
                    "build": env!("CARGO_PKG_VERSION"),
                    "http": n.http_addr,
                    "leader": (m.current_leader == Some(*id)).to_string(),
                    "voter": membership.voter_ids().any(|v| v == *id).to_string(),
                },
            })
        })
        .collect();
    Ok(reply(
        &srv,
        srv.snapshot().index(),
        &serde_json::json!({
            "ServerName": srv.config.name,
            "ServerRegion": srv.config.region,
            "ServerDC": srv.config.datacenter,
            "Members": members,
        }),
    ))
}

/// `GET|PUT /v1/agent/servers`: the servers this agent's client talks to. Answered by
/// the client agent of this process (its router holds the list); Nomad's answer on an
/// agent without a client is a 501.
pub async fn servers(State(srv): State<AppState>, req: Request) -> Response {
    let Some(local) = srv.config.client_routes.clone() else {
        return ApiErr(
            StatusCode::NOT_IMPLEMENTED,
            "Invalid method: this agent runs no client, so it has no server list".into(),
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return ApiErr(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}"))
                .into_response()
        }
    };
    let mut local_req = Request::new(axum::body::Body::from(bytes));
    *local_req.method_mut() = parts.method;
    // Nesting under /v1 stripped the prefix; the client router routes on the full path.
    *local_req.uri_mut() = match parts.uri.query() {
        Some(q) => format!("/v1/agent/servers?{q}"),
        None => "/v1/agent/servers".to_string(),
    }
    .parse()
    .unwrap_or_default();
    *local_req.headers_mut() = parts.headers;
    local
        .oneshot(local_req)
        .await
        .unwrap_or_else(|e| match e {})
}

#[derive(Debug, serde::Serialize)]
struct JoinResult {
    num_joined: usize,
    error: String,
}

/// `PUT /v1/agent/join?address=...`: join this server to the cluster of each address
/// (another server's RPC address). As in Nomad the answer is 200 with how many joined
/// and the errors of the others in one sentence.
pub async fn join(State(srv): State<AppState>, uri: axum::http::Uri) -> ApiResult {
    let addrs = query_values(uri.query(), "address");
    if addrs.is_empty() {
        return Err(ApiErr::bad_request(
            "missing address to join: pass ?address=",
        ));
    }
    let http = srv.config.peer_client("agent-join", || {
        reqwest::Client::builder().timeout(Duration::from_secs(5))
    });
    let mut joined = 0;
    let mut errors = Vec::new();
    for addr in &addrs {
        match join_one(&srv, &http, addr).await {
            Ok(()) => joined += 1,
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    let body = JoinResult {
        num_joined: joined,
        error: errors.join("; "),
    };
    Ok(reply(&srv, srv.snapshot().index(), &body))
}

/// Join the cluster `addr` belongs to: nothing to do when it is ours already; a server
/// that is not yet in a cluster asks that cluster's leader to add it.
async fn join_one(srv: &AppState, http: &reqwest::Client, addr: &str) -> Result<(), String> {
    let me = srv.config.server_node();
    if addr == me.rpc_addr || addr == me.http_addr {
        return Ok(());
    }
    let info: ClusterInfo = http
        .get(srv.config.rpc_url(addr, "/v1/internal/cluster/info"))
        .send()
        .await
        .map_err(|e| format!("cannot reach a server there: {e}"))?
        .error_for_status()
        .map_err(|e| format!("not a server's RPC address: {e}"))?
        .json()
        .await
        .map_err(|e| format!("not a server's RPC address: {e}"))?;
    let ours = cluster::info(srv);
    let m = srv.raft.metrics().borrow().clone();
    if info.node_id == srv.node_id
        || m.membership_config
            .membership()
            .get_node(&info.node_id)
            .is_some()
    {
        return Ok(());
    }
    if ours.initialized {
        return Err("this server already belongs to another cluster".into());
    }
    if !info.initialized || info.leader.is_none() {
        return Err("that server has no cluster leader yet".into());
    }
    let req = JoinRequest {
        node_id: srv.node_id,
        node: srv.config.server_node(),
    };
    let r = http
        .post(srv.config.rpc_url(addr, "/v1/internal/cluster/join"))
        .timeout(Duration::from_secs(30))
        .json(&req)
        .send()
        .await
        .map_err(|e| format!("join request failed: {e}"))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "join refused: {}",
            r.text().await.unwrap_or_default().trim()
        ))
    }
}

/// `PUT /v1/agent/force-leave?node=NAME`: remove a server that is gone from the cluster
/// (by its name, ID or RPC address). An unknown name is not an error, as in Nomad.
pub async fn force_leave(State(srv): State<AppState>, uri: axum::http::Uri) -> ApiResult {
    let Some(node) = query_values(uri.query(), "node").into_iter().next() else {
        return Err(ApiErr::bad_request(
            "missing node to force leave: pass ?node=",
        ));
    };
    let m = srv.raft.metrics().borrow().clone();
    let target = m
        .membership_config
        .membership()
        .nodes()
        .find(|(id, n)| n.name == node || id.to_string() == node || n.rpc_addr == node)
        .map(|(id, _)| *id);
    if let Some(id) = target {
        if id == srv.node_id {
            return Err(ApiErr::bad_request(format!(
                "{node:?} is this agent's own server; it cannot force itself out"
            )));
        }
        if !srv.is_leader() {
            return Err(ApiErr(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "removing a server goes to the leader at {}",
                    srv.leader_addr().unwrap_or_else(|| "(none)".into())
                ),
            ));
        }
        cluster::remove_server(&srv, Some(id), None).await?;
    }
    Ok(reply(&srv, srv.snapshot().index(), &serde_json::json!({})))
}

/// Every value of `name` in a query string, percent-decoded (`?address=a&address=b`).
fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    let Ok(url) = reqwest::Url::parse(&format!("http://q/?{}", query.unwrap_or(""))) else {
        return Vec::new();
    };
    url.query_pairs()
        .filter(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
        .collect()
}
