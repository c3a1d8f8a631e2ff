//! Raft: openraft wired to sled storage, our FSM, and JSON-over-HTTP transport.

pub mod network;
pub mod store;

use crate::fsm::{Command, Response};
use serde::{Deserialize, Serialize};

/// A server as Raft's membership records it: where peers reach its Raft RPCs, and where
/// followers forward API requests to when it leads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNode {
    pub name: String,
    pub rpc_addr: String,
    pub http_addr: String,
}

/// What a Raft entry carries: a command, and for a request that a server may send again
/// after its outcome became unknown (the leader died or stepped down while it ran), the
/// request's token, so the state machine applies it once however often it arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<String>,
    pub cmd: Command,
}

openraft::declare_raft_types!(
    /// Drover's Raft types: commands in, responses out, nodes addressed by HTTP.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = ServerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Wrap any error as an openraft storage I/O error.
pub(crate) fn io_err<E: std::error::Error + 'static>(write: bool, e: E) -> StorageError {
    let src = openraft::AnyError::new(&e);
    let io = if write {
        openraft::StorageIOError::write(src)
    } else {
        openraft::StorageIOError::read(src)
    };
    StorageError::IO { source: io }
}
