//! Cluster membership: forming a cluster from `-bootstrap-expect` and `-join`, adding
//! servers to a running one, and removing them.
//!
//! Forming: every server polls the peers it was told to join. While no cluster exists,
//! the server with the lowest node id among the `bootstrap_expect` it can see initialises
//! Raft with all of them as voters; the others wait for its first append. Once a cluster
//! exists, a new server asks it (any member forwards to the leader) to be added.

use crate::raft::{NodeId, ServerNode};
use crate::{Server, WriteError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a server says about itself to a peer that wants to join.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterInfo {
    #[serde(rename = "NodeID")]
    pub node_id: NodeId,
    pub node: ServerNode,
    /// This server belongs to a formed cluster (it has a membership config).
    pub initialized: bool,
    pub leader: Option<NodeId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinRequest {
    #[serde(rename = "NodeID")]
    pub node_id: NodeId,
    pub node: ServerNode,
}

pub fn info(server: &Server) -> ClusterInfo {
    let m = server.raft.metrics().borrow().clone();
    ClusterInfo {
        node_id: server.node_id,
        node: server.config.server_node(),
        initialized: m
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some(),
        leader: m.current_leader,
    }
}

fn is_member(server: &Server) -> bool {
    let m = server.raft.metrics().borrow().clone();
    let member = m
        .membership_config
        .membership()
        .voter_ids()
        .any(|id| id == server.node_id);
    member
}

/// Runs until this server belongs to a cluster (or shutdown).
pub async fn join_loop(server: Arc<Server>, shutdown: CancellationToken) {
    let config = &server.config;
    let http = config.peer_client("join", || {
        reqwest::Client::builder().timeout(Duration::from_secs(2))
    });
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if is_member(&server) {
            tracing::info!("this server is a member of the cluster");
            return;
        }
        let mut peers = Vec::new();
        for addr in &server.config.join {
            if let Ok(r) = http
                .get(config.rpc_url(addr, "/v1/internal/cluster/info"))
                .send()
                .await
            {
                if let Ok(info) = r.json::<ClusterInfo>().await {
                    peers.push((addr.clone(), info));
                }
            }
        }
        // A cluster exists: ask to be added.
        if let Some((addr, _)) = peers
            .iter()
            .find(|(_, i)| i.initialized && i.leader.is_some())
        {
            let req = JoinRequest {
                node_id: server.node_id,
                node: server.config.server_node(),
            };
            match http
                .post(config.rpc_url(addr, "/v1/internal/cluster/join"))
                .timeout(Duration::from_secs(30))
                .json(&req)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(via = %addr, "joined the cluster")
                }
                Ok(r) => {
                    tracing::info!(via = %addr, status = %r.status(), "join refused; retrying")
                }
                Err(e) => tracing::info!(via = %addr, error = %e, "join failed; retrying"),
            }
            continue;
        }
        // No cluster yet: the lowest id among enough servers forms it.
        let mut candidates: BTreeMap<NodeId, ServerNode> = peers
            .into_iter()
            .filter(|(_, i)| !i.initialized)
            .map(|(_, i)| (i.node_id, i.node))
            .collect();
        candidates.insert(server.node_id, server.config.server_node());
        let expect = server.config.bootstrap_expect.max(1);
        if candidates.len() >= expect
            && candidates.keys().next() == Some(&server.node_id)
            && !server.raft.is_initialized().await.unwrap_or(true)
        {
            let members: BTreeMap<NodeId, ServerNode> =
                candidates.into_iter().take(expect).collect();
            tracing::info!(servers = ?members.keys().collect::<Vec<_>>(), "bootstrapping the cluster");
            if let Err(e) = server.raft.initialize(members).await {
                tracing::warn!(error = %e, "bootstrap failed; retrying");
            }
        }
    }
}

fn raft_err<E: std::fmt::Display>(e: E) -> WriteError {
    WriteError::Raft(e.to_string())
}

/// On the leader: add a server as a learner, let it catch up, then make it a voter.
pub async fn add_server(server: &Server, req: JoinRequest) -> Result<(), WriteError> {
    if !server.is_leader() {
        return Err(WriteError::NoLeader);
    }
    let m = server.raft.metrics().borrow().clone();
    if m.membership_config
        .membership()
        .voter_ids()
        .any(|id| id == req.node_id)
    {
        return Ok(());
    }
    // A server that comes back from a wiped data dir has a new id but the same address:
    // its old entry is replaced, so the dead id does not count towards the quorum.
    let stale: BTreeSet<NodeId> = m
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, n)| **id != req.node_id && n.rpc_addr == req.node.rpc_addr)
        .map(|(id, _)| *id)
        .collect();
    server
        .raft
        .add_learner(req.node_id, req.node, true)
        .await
        .map_err(raft_err)?;
    let change = if stale.is_empty() {
        ChangeMembers::AddVoterIds(BTreeSet::from([req.node_id]))
    } else {
        tracing::info!(new = req.node_id, old = ?stale, "a server rejoined with a new id at the same address; replacing its old entry");
        let voters: BTreeSet<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| !stale.contains(id))
            .chain([req.node_id])
            .collect();
        ChangeMembers::ReplaceAllVoters(voters)
    };
    server
        .raft
        .change_membership(change, false)
        .await
        .map_err(raft_err)?;
    Ok(())
}

/// On the leader: remove a server (by id, or by its RPC or HTTP address) from the voters.
pub async fn remove_server(
    server: &Server,
    id: Option<NodeId>,
    addr: Option<&str>,
) -> Result<NodeId, WriteError> {
    let m = server.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let target = membership
        .nodes()
        .find(|(nid, n)| {
            Some(**nid) == id || addr.is_some_and(|a| n.rpc_addr == a || n.http_addr == a)
        })
        .map(|(nid, _)| *nid)
        .ok_or_else(|| {
            WriteError::Rejected("no such peer in the Raft configuration: not found".into())
        })?;
    server
        .raft
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([target])), false)
        .await
        .map_err(raft_err)?;
    Ok(target)
}

/// Resolve `-peer-id`/`-peer-address` to a voter's node id.
pub fn transfer_target(
    server: &Server,
    id: Option<&str>,
    addr: Option<&str>,
) -> Result<NodeId, WriteError> {
    let m = server.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let id = match id {
        None | Some("") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            WriteError::Rejected(format!("invalid peer id {s:?}: expected a number"))
        })?),
    };
    let found = membership
        .nodes()
        .find(|(nid, n)| {
            Some(**nid) == id
                || addr.is_some_and(|a| !a.is_empty() && (n.rpc_addr == a || n.http_addr == a))
        })
        .map(|(nid, _)| *nid)
        .filter(|nid| membership.voter_ids().any(|v| v == *nid));
    found.ok_or_else(|| {
        WriteError::Rejected("no such voter in the Raft configuration: not found".into())
    })
}

/// Hand leadership to `target`: the other followers hold their elections, the leader stops
/// sending heartbeats so the followers' leader leases run out, and the target stands for
/// election. If anyone else ends up leading, that is reported as an error.
pub async fn transfer_leadership(server: &Server, target: NodeId) -> Result<(), WriteError> {
    let m = server.raft.metrics().borrow().clone();
    if m.current_leader == Some(target) {
        return Ok(());
    }
    if !server.is_leader() {
        return Err(WriteError::Rejected(format!(
            "leadership transfers start on the leader at {}",
            server.leader_addr().unwrap_or_else(|| "(none)".into())
        )));
    }
    let node = m
        .membership_config
        .membership()
        .get_node(&target)
        .cloned()
        .ok_or_else(|| WriteError::Rejected("target not found".into()))?;
    let http = server
        .config
        .peer_client("transfer", reqwest::Client::builder);
    // Keep the other followers from standing themselves while the leases run out.
    let hold = server.config.election_timeout * 10;
    for (id, n) in m.membership_config.membership().nodes() {
        if *id != target && *id != server.node_id {
            let _ = http
                .post(server.config.rpc_url(
                    &n.rpc_addr,
                    &format!(
                        "/v1/internal/cluster/hold-elections?ms={}",
                        hold.as_millis()
                    ),
                ))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
        }
    }
    server.raft.runtime_config().heartbeat(false);
    let deadline = tokio::time::Instant::now() + server.config.election_timeout * 6;
    let mut result = Err(WriteError::Rejected(format!(
        "server {target} did not take over in time"
    )));
    tokio::time::sleep(server.config.election_timeout * 2).await;
    while tokio::time::Instant::now() < deadline {
        let _ = http
            .post(
                server
                    .config
                    .rpc_url(&node.rpc_addr, "/v1/internal/cluster/elect"),
            )
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        tokio::time::sleep(server.config.election_timeout / 2).await;
        let leader = server.raft.metrics().borrow().current_leader;
        match leader {
            Some(l) if l == target => {
                result = Ok(());
                break;
            }
            Some(l) if l != server.node_id => {
                result = Err(WriteError::Rejected(format!(
                    "server {l} won the election instead of {target}; try again"
                )));
                break;
            }
            _ => {}
        }
    }
    server.raft.runtime_config().heartbeat(true);
    result
}
