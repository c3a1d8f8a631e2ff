//! Nodes, status and agent reads, and the internal endpoints client agents call
//! (on the servers' RPC listener).

use super::*;
use crate::url::encode;

impl Client {
    pub async fn nodes(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<NodeListStub>, QueryMeta), ApiError> {
        self.get("/v1/nodes", opts).await
    }

    pub async fn node(&self, id: &str) -> Result<(Node, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/node/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// The full allocations of a node (what an agent must run); a blocking query.
    pub async fn node_allocations(
        &self,
        node_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<Allocation>, QueryMeta), ApiError> {
        self.get(&format!("/v1/node/{}/allocations", encode(node_id)), opts)
            .await
    }

    /// The node's own agent's watch of its allocations: the servers answer when they
    /// changed one of them, not when the agent's own status reports landed (`echo=false`).
    pub async fn node_allocations_watch(
        &self,
        node_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<Allocation>, QueryMeta), ApiError> {
        let path = format!("/v1/node/{}/allocations?echo=false", encode(node_id));
        self.get(&path, opts).await
    }

    // ---- status, agent ----

    pub async fn leader(&self) -> Result<String, ApiError> {
        Ok(self
            .get("/v1/status/leader", &QueryOptions::default())
            .await?
            .0)
    }

    pub async fn peers(&self) -> Result<Vec<String>, ApiError> {
        Ok(self
            .get("/v1/status/peers", &QueryOptions::default())
            .await?
            .0)
    }

    pub async fn agent_self(&self) -> Result<AgentSelf, ApiError> {
        Ok(self
            .get("/v1/agent/self", &QueryOptions::default())
            .await?
            .0)
    }

    // ---- internal endpoints used by client agents (on the servers' RPC listener) ----

    /// Registers (or re-registers) a node. `secret` is the one the servers returned at its
    /// first registration (empty for a new node); the answer carries the node's secret.
    pub async fn register_node(
        &self,
        node: &Node,
        secret: &str,
    ) -> Result<NodeHeartbeatResponse, ApiError> {
        self.put_with_headers(
            "/v1/internal/node/register",
            &NodeRegisterRequest { node: node.clone() },
            &secret_header(secret),
        )
        .await
    }

    pub async fn heartbeat(
        &self,
        node_id: &str,
        secret: &str,
    ) -> Result<NodeHeartbeatResponse, ApiError> {
        self.put_with_headers(
            &format!("/v1/internal/node/{}/heartbeat", encode(node_id)),
            &serde_json::json!({}),
            &secret_header(secret),
        )
        .await
    }

    pub async fn update_allocs(
        &self,
        node_id: &str,
        secret: &str,
        updates: Vec<AllocClientUpdate>,
    ) -> Result<WriteResponse, ApiError> {
        self.put_with_headers(
            &format!("/v1/internal/node/{}/allocs", encode(node_id)),
            &AllocUpdateRequest { alloc: updates },
            &secret_header(secret),
        )
        .await
    }
}
