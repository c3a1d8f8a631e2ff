//! Raft RPCs as JSON over HTTP, between the servers' own HTTP listeners.
//!
//! Each server is reached at its `ServerNode.rpc_addr`; the routes are served by
//! `http::raft_routes`.

use super::ServerNode;
use super::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// Header carrying the snapshot's vote and metadata; the body is the raw snapshot.
pub const SNAPSHOT_META_HEADER: &str = "x-drover-snapshot-meta";

#[derive(Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote<NodeId>,
    pub meta: openraft::SnapshotMeta<NodeId, ServerNode>,
}

#[derive(Clone)]
pub struct HttpNetwork {
    http: reqwest::Client,
}

impl HttpNetwork {
    /// `local_ip`: send from the address we bind to, so peers (and firewalls) see the
    /// same address this server advertises.
    pub fn new(local_ip: Option<std::net::IpAddr>) -> Self {
        HttpNetwork {
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_millis(500))
                .local_address(local_ip)
                .build()
                .expect("static reqwest configuration"),
        }
    }
}

pub struct Connection {
    http: reqwest::Client,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> Connection {
        Connection {
            http: self.http.clone(),
            target,
            addr: node.rpc_addr.clone(),
        }
    }
}

impl Connection {
    async fn call<
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    >(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ServerNode, E>> {
        let url = format!("http://{}/v1/internal/raft/{path}", self.addr);
        let resp = self
            .http
            .post(url)
            .timeout(option.hard_ttl())
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let body: Result<Resp, E> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>>
    {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ServerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // Snapshots travel whole through `full_snapshot`.
        Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other("chunked snapshot transfer is not used"),
        )))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, openraft::error::Fatal<NodeId>>>
    {
        let header = serde_json::to_string(&SnapshotHeader {
            vote,
            meta: snapshot.meta.clone(),
        })
        .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let url = format!("http://{}/v1/internal/raft/snapshot", self.addr);
        let resp = self
            .http
            .post(url)
            .timeout(option.hard_ttl())
            .header(SNAPSHOT_META_HEADER, header)
            .body(snapshot.snapshot.into_inner())
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    StreamingError::Unreachable(Unreachable::new(&e))
                } else {
                    StreamingError::Network(NetworkError::new(&e))
                }
            })?;
        let body: Result<SnapshotResponse<NodeId>, openraft::error::Fatal<NodeId>> = resp
            .json()
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}
