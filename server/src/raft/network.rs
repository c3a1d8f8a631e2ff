//! Raft RPCs as JSON over HTTP, between the servers' own HTTP listeners.
//!
//! Each server is reached at its `ServerNode.rpc_addr`; the routes are served by the RPC
//! listener (`http::rpc_router`). With `tls { rpc = true }` the calls go over https with
//! this server's certificate (`ServerConfig::peer_client`).

use super::ServerNode;
use super::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Header carrying a snapshot chunk's vote, metadata, offset and `done`; the body is the
/// chunk's raw bytes. Snapshots travel in chunks (openraft's `snapshot_max_chunk_size`,
/// 3 MiB by default), each far under the RPC listener's body cap.
pub const SNAPSHOT_META_HEADER: &str = "x-drover-snapshot-meta";

/// The largest snapshot a follower accepts (its chunks are written to a file as they
/// arrive).
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

#[derive(Serialize, Deserialize)]
pub struct SnapshotChunkHeader {
    pub vote: Vote<NodeId>,
    pub meta: openraft::SnapshotMeta<NodeId, ServerNode>,
    pub offset: u64,
    pub done: bool,
}

#[derive(Clone)]
pub struct HttpNetwork {
    http: reqwest::Client,
    scheme: &'static str,
}

impl HttpNetwork {
    /// `local_ip`: send from the address we bind to, so peers (and firewalls) see the
    /// same address this server advertises.
    pub fn new(local_ip: Option<std::net::IpAddr>, config: &crate::ServerConfig) -> Self {
        HttpNetwork {
            http: config.peer_client("raft", || {
                reqwest::Client::builder()
                    .connect_timeout(std::time::Duration::from_millis(500))
                    // Under the peers' header-read timeout, which closes idle connections.
                    .pool_idle_timeout(std::time::Duration::from_secs(3))
                    .local_address(local_ip)
            }),
            scheme: config.rpc_scheme(),
        }
    }
}

pub struct Connection {
    http: reqwest::Client,
    target: NodeId,
    addr: String,
    scheme: &'static str,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> Connection {
        Connection {
            http: self.http.clone(),
            target,
            addr: node.rpc_addr.clone(),
            scheme: self.scheme,
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
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_raw(path, body, option).await
    }

    async fn call_raw<Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ServerNode, E>> {
        let url = format!("{}://{}/v1/internal/raft/{path}", self.scheme, self.addr);
        let resp = self
            .http
            .post(url)
            .timeout(option.hard_ttl())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(send_failed)?;
        let body: Result<Resp, E> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A request that got no answer: `Unreachable` when the connection was refused (openraft
/// backs off from the peer), a network error otherwise.
fn send_failed<E: std::error::Error>(e: reqwest::Error) -> RPCError<NodeId, ServerNode, E> {
    if e.is_connect() {
        RPCError::Unreachable(Unreachable::new(&e))
    } else {
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>>
    {
        // A batch over the RPC body cap is refused here, before it is sent: openraft then
        // retries with fewer entries (each entry is far smaller than the cap).
        let n = rpc.entries.len() as u64;
        let body =
            serde_json::to_vec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if n > 1 && body.len() > crate::http::RPC_MAX_BODY_BYTES {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(n / 2),
            ));
        }
        self.call_raw("append", body, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ServerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let header = serde_json::to_string(&SnapshotChunkHeader {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            done: rpc.done,
        })
        .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = format!("{}://{}/v1/internal/raft/snapshot", self.scheme, self.addr);
        let resp = self
            .http
            .post(url)
            .timeout(option.hard_ttl())
            .header(SNAPSHOT_META_HEADER, header)
            .body(rpc.data)
            .send()
            .await
            .map_err(send_failed)?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!("snapshot chunk refused with {status}: {text}")),
            )));
        }
        let body: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> =
            resp.json()
                .await
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
    // `full_snapshot` is openraft's default: the snapshot in `install_snapshot` chunks.
}
