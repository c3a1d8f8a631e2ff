//! `/v1/nodes`, `/v1/node/:id`, and the internal routes client agents use to register,
//! heartbeat and report allocation status.

use super::{
    found, parse_body, read_table, reply, write_reply, ApiErr, ApiResult, AppState, QueryParams,
    Table,
};
use crate::fsm::Command;
use crate::heartbeat::node_evals;
use crate::now_nanos;
use crate::state::StateStore;
use api::{AllocUpdateRequest, NodeHeartbeatResponse, NodeListStub, NodeRegisterRequest};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use std::collections::BTreeSet;

/// Evaluation trigger: an allocation of a node back from a disconnect reported its status.
const TRIGGER_RECONNECT: &str = "reconnect";

pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let filter = q.filter()?;
    read_table(&srv, &q, Table::Nodes, |state| {
        let out: Vec<NodeListStub> = state
            .node_table()
            .values()
            .filter(|n| q.prefix_matches(&n.id))
            .map(|n| {
                let mut stub = NodeListStub::from_node(n);
                if QueryParams::flag(&q.resources) {
                    stub = stub.with_resources(n);
                }
                if QueryParams::flag(&q.os) {
                    stub = stub.with_os(n);
                }
                stub
            })
            .collect();
        Ok(super::filter::apply(filter.as_ref(), out))
    })
    .await
}

pub async fn get_node(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Nodes, |state| {
        found("node", &id, state.node_table().get(&id)).map(|n| redacted(n))
    })
    .await
}

/// A node as public reads show it: without its secret (Nomad redacts `SecretID` too).
pub fn redacted(n: &api::Node) -> api::Node {
    api::Node {
        secret_id: String::new(),
        ..n.clone()
    }
}

/// The node secret a request carries (empty when it carries none).
fn given_secret(headers: &HeaderMap) -> &str {
    headers
        .get(api::NODE_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Compares secrets in time independent of where they first differ.
fn secrets_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The node an agent's request is for, once the request showed the node's secret: 404
/// for a node the servers do not know (the agent registers again), else [`check_secret`].
pub(super) fn registered_node<'s>(
    state: &'s crate::state::StateStore,
    node_id: &str,
    headers: &HeaderMap,
    what: &str,
) -> Result<&'s std::sync::Arc<api::Node>, ApiErr> {
    let Some(node) = state.node_table().get(node_id) else {
        return Err(ApiErr::not_found(format!(
            "node {node_id:?} not found; register it first"
        )));
    };
    check_secret(node, headers, what)?;
    Ok(node)
}

/// Refuses a request for `node` that does not carry the node's secret.
pub(super) fn check_secret(
    node: &api::Node,
    headers: &HeaderMap,
    what: &str,
) -> Result<(), ApiErr> {
    if node.secret_id.is_empty() {
        // Registered before nodes had secrets (or restored from a redacted snapshot): the
        // agent treats a 404 as "register again", which mints one.
        return Err(ApiErr::not_found(format!(
            "node {} has no secret yet; register it again",
            node.id
        )));
    }
    if !secrets_match(&node.secret_id, given_secret(headers)) {
        return Err(ApiErr(
            StatusCode::FORBIDDEN,
            format!(
                "{what} for node {} refused: the {} header is missing or does not match the \
                 secret the node was given when it registered",
                node.id,
                api::NODE_SECRET_HEADER
            ),
        ));
    }
    Ok(())
}

/// Full allocations of a node: what its agent must run. Agents hold this as a blocking query.
pub async fn allocations(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
    Query(watch): Query<NodeAllocsWatch>,
) -> ApiResult {
    // The node's own index, not the allocation table's: a write elsewhere in the cluster
    // wakes nobody watching this node (thousands of agents each watch their own).
    let echo = QueryParams::parse_bool("echo", &watch.echo.or(Some("true".into())))?;
    let index = |s: &StateStore| s.node_alloc_index(&id, !echo);
    let state = super::blocking_on(&srv, &q, index, super::WakeOn::NodeAllocs(&id)).await?;
    Ok(reply(&srv, index(&state), &state.allocs_for_node(&id)))
}

/// `GET /v1/node/:id/allocations`'s own parameter: `echo=false` is the node's agent
/// watching, which wakes for the servers' changes only, not its own status reports.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NodeAllocsWatch {
    pub echo: Option<String>,
}

fn heartbeat_reply(srv: &AppState, index: u64) -> NodeHeartbeatResponse {
    let ttl = srv.heartbeats.ttl;
    let m = srv.raft.metrics().borrow().clone();
    let servers = m
        .membership_config
        .membership()
        .nodes()
        .map(|(_, n)| n.rpc_addr.clone())
        .collect();
    NodeHeartbeatResponse {
        heartbeat_ttl: ttl.as_nanos() as i64,
        index,
        servers,
        secret_id: String::new(),
    }
}

pub async fn register(State(srv): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let req: NodeRegisterRequest = parse_body(&body)?;
    let mut node = req.node;
    if node.id.trim().is_empty() {
        return Err(ApiErr::bad_request("node ID is missing"));
    }
    if node.name.trim().is_empty() {
        return Err(ApiErr::bad_request("node name is missing"));
    }
    if node.datacenter.is_empty() {
        node.datacenter = "dc1".into();
    }
    if node.node_pool.is_empty() {
        node.node_pool = "default".into();
    }
    let now = now_nanos();
    node.status = api::NODE_STATUS_READY.into();
    node.status_updated_at = now / 1_000_000_000;
    let state = srv.snapshot();
    // A known node re-registers with its secret; a new one (or one from before secrets)
    // is given a fresh secret, chosen here on the leader and carried in the command.
    node.secret_id = match state.node_table().get(&node.id) {
        Some(old) if !old.secret_id.is_empty() => {
            check_secret(old, &headers, "registration")?;
            old.secret_id.clone()
        }
        _ => api::new_id(),
    };
    let changed = state
        .node_table()
        .get(&node.id)
        .is_none_or(|old| old.status != api::NODE_STATUS_READY);
    let evals = if changed {
        node_evals(&state, &node.id, now)
    } else {
        vec![]
    };
    let node_id = node.id.clone();
    let secret = node.secret_id.clone();
    let resp = srv
        .write(Command::UpsertNode { node, evals })
        .await
        .map_err(|e| match e {
            // Another registration of this ID committed first with another secret.
            crate::WriteError::Rejected(m) => ApiErr(StatusCode::FORBIDDEN, m),
            e => e.into(),
        })?;
    srv.heartbeats.reset(&node_id);
    let mut out = heartbeat_reply(&srv, resp.index);
    out.secret_id = secret;
    Ok(reply(&srv, resp.index, &out))
}

pub async fn heartbeat(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let state = srv.snapshot();
    let node = registered_node(&state, &id, &headers, "heartbeat")?;
    let mut index = state.index();
    if node.status != api::NODE_STATUS_READY {
        let now = now_nanos();
        let resp = srv
            .write(Command::UpdateNodeStatus {
                node_id: id.clone(),
                status: api::NODE_STATUS_READY.into(),
                now,
                evals: node_evals(&state, &id, now),
                if_status: None,
                // Its `unknown` allocations stay so until the client reports them.
                alloc_updates: vec![],
            })
            .await?;
        index = resp.index;
    }
    srv.heartbeats.reset(&id);
    Ok(reply(&srv, index, &heartbeat_reply(&srv, index)))
}

/// The jobs to evaluate again because of a node's alloc reports, with the trigger.
type Retriggers = BTreeSet<(api::ArcStr, api::ArcStr, &'static str)>;

/// The reports a node may make (its own allocations, client statuses it may set), and the
/// jobs whose allocations ended on their own or came back from `unknown`.
fn checked_updates(
    state: &crate::state::StateStore,
    node_id: &str,
    reports: Vec<api::AllocClientUpdate>,
) -> Result<(Vec<api::AllocClientUpdate>, Retriggers), ApiErr> {
    let mut updates = Vec::new();
    let mut jobs_to_eval = BTreeSet::new();
    for u in reports {
        let Some(old) = state.alloc_table().get(&u.id) else {
            continue;
        };
        if old.node_id != node_id {
            return Err(ApiErr(
                StatusCode::FORBIDDEN,
                format!(
                    "alloc {} is not placed on node {node_id}; a node may only report its own allocations",
                    u.id
                ),
            ));
        }
        let valid = [
            api::ALLOC_CLIENT_PENDING,
            api::ALLOC_CLIENT_RUNNING,
            api::ALLOC_CLIENT_COMPLETE,
            api::ALLOC_CLIENT_FAILED,
        ];
        if !valid.contains(&u.client_status.as_str()) {
            return Err(ApiErr::bad_request(format!(
                "invalid client status {:?} for alloc {}",
                u.client_status, u.id
            )));
        }
        // A live allocation that ended on its own needs the scheduler to look again.
        let ended = !old.client_terminal()
            && (u.client_status == api::ALLOC_CLIENT_FAILED
                || u.client_status == api::ALLOC_CLIENT_COMPLETE)
            && !old.desired_stop();
        // An alloc that was `unknown` is back: keep one copy of it or of its replacement.
        let reconnected = old.client_status == api::ALLOC_CLIENT_UNKNOWN;
        // A deployment's allocation got its health verdict: the rollout may continue.
        let decided = |d: &Option<api::AllocDeploymentStatus>| d.as_ref().and_then(|d| d.healthy);
        if !old.deployment_id.is_empty()
            && decided(&u.deployment_status).is_some()
            && decided(&old.deployment_status).is_none()
        {
            jobs_to_eval.insert((
                old.namespace.clone(),
                old.job_id.clone(),
                api::TRIGGER_ALLOC_HEALTH,
            ));
        }
        if ended || reconnected {
            let trigger = if reconnected {
                TRIGGER_RECONNECT
            } else {
                api::TRIGGER_ALLOC_FAILURE
            };
            jobs_to_eval.insert((old.namespace.clone(), old.job_id.clone(), trigger));
        }
        updates.push(u);
    }
    Ok((updates, jobs_to_eval))
}

pub async fn update_allocs(
    State(srv): State<AppState>,
    Path(node_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: AllocUpdateRequest = parse_body(&body)?;
    let mut state = srv.snapshot();
    registered_node(&state, &node_id, &headers, "allocation update")?;
    if req
        .alloc
        .iter()
        .any(|u| !state.alloc_table().contains_key(&u.id))
    {
        // An agent can learn of an allocation from a follower that applied the plan
        // before this server did (watches are served by any server): its report may
        // arrive first. Catch up with everything committed before taking an allocation
        // for unknown (a report for an unknown allocation is skipped: it was collected).
        // Only a node with its secret gets this far: nobody else can make the leader
        // confirm itself per request.
        super::caught_up(
            &srv,
            "an allocation report naming allocations not applied here",
        )
        .await?;
        state = srv.snapshot();
        registered_node(&state, &node_id, &headers, "allocation update")?;
    }
    let now = now_nanos();
    if state
        .node_table()
        .get(&node_id)
        .is_some_and(|n| n.status == api::NODE_STATUS_DISCONNECTED)
    {
        // Accepted now, a report would make an `unknown` alloc look running on a node the
        // scheduler still treats as away (and stops). The agent retries; its heartbeat
        // reconnects the node first.
        return Err(ApiErr(
            StatusCode::CONFLICT,
            format!(
                "node {node_id} is disconnected; it must heartbeat before reporting allocations"
            ),
        ));
    }
    let (updates, jobs_to_eval) = checked_updates(&state, &node_id, req.alloc)?;
    if updates.is_empty() {
        return Ok(write_reply(&srv, state.index()));
    }
    let mut seen = BTreeSet::new();
    let evals = jobs_to_eval
        .into_iter()
        .filter(|(ns, id, _)| seen.insert((ns.clone(), id.clone())))
        .filter_map(|(ns, id, trigger)| {
            let job = state.job(&ns, &id)?;
            Some(api::Evaluation::new_for_job(
                &job,
                trigger,
                now,
                api::new_id(),
            ))
        })
        .collect();
    let (respond, answer) = tokio::sync::oneshot::channel();
    let report = crate::client_updates::Report {
        updates,
        evals,
        now,
        respond,
    };
    let stopped = || {
        ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping".into(),
        )
    };
    srv.client_updates
        .send(report)
        .await
        .map_err(|_| stopped())?;
    let index = answer.await.map_err(|_| stopped())??;
    Ok(write_reply(&srv, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("abc", "ab"));
        assert!(!secrets_match("abc", ""));
    }

    #[test]
    fn public_node_reads_carry_no_secret() {
        let n = api::Node {
            id: "n".into(),
            secret_id: "s3cret".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(redacted(&n)).unwrap();
        assert!(v.get("SecretID").is_none(), "{v}");
        assert_eq!(v["ID"], "n");
    }
}
