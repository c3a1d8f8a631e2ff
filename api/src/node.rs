//! Client nodes: what an agent fingerprinted and how the servers see it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const NODE_STATUS_INIT: &str = "initializing";
pub const NODE_STATUS_READY: &str = "ready";
pub const NODE_STATUS_DOWN: &str = "down";
pub const NODE_STATUS_DISCONNECTED: &str = "disconnected";

pub const NODE_ELIGIBLE: &str = "eligible";
pub const NODE_INELIGIBLE: &str = "ineligible";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    /// The node's secret, minted by the servers at its first registration: its agent
    /// must present it to heartbeat, report allocations or register again. Never
    /// returned by public reads (Nomad redacts it too).
    #[serde(rename = "SecretID", skip_serializing_if = "String::is_empty")]
    pub secret_id: String,
    pub name: String,
    pub datacenter: String,
    pub node_class: String,
    pub node_pool: String,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    pub attributes: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub node_resources: NodeResources,
    pub reserved_resources: NodeReservedResources,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub status: String,
    pub status_description: String,
    pub status_updated_at: i64,
    pub scheduling_eligibility: String,
    pub drain: bool,
    /// Set while a drain is in progress.
    pub drain_strategy: Option<DrainStrategy>,
    /// How the last drain went.
    pub last_drain: Option<DrainMetadata>,
    /// What happened to the node, newest last (registration, drain, down...).
    pub events: Vec<NodeEvent>,
    pub computed_class: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Node {
    /// Whether the scheduler may place new work here.
    pub fn ready_and_eligible(&self) -> bool {
        self.status == NODE_STATUS_READY
            && self.scheduling_eligibility != NODE_INELIGIBLE
            && !self.drain
    }

    /// Is this node terminally gone (its allocations are lost)?
    pub fn is_down(&self) -> bool {
        self.status == NODE_STATUS_DOWN
    }

    /// Capacity the scheduler may hand out (total minus what the operator reserved).
    pub fn allocatable(&self) -> (i64, i64, i64) {
        let r = &self.node_resources;
        let v = &self.reserved_resources;
        (
            r.cpu.cpu_shares - v.cpu.cpu_shares,
            r.memory.memory_mb - v.memory.memory_mb,
            r.disk.disk_mb - v.disk.disk_mb,
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeResources {
    pub cpu: NodeCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedResources {
    pub cpu: NodeCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeCpuResources {
    /// Total compute in MHz (cores x per-core MHz).
    pub cpu_shares: i64,
    pub total_cpu_cores: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDiskResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub detected: bool,
    pub healthy: bool,
    pub health_description: String,
    pub attributes: BTreeMap<String, String>,
}

/// How to drain a node (`PUT /v1/node/:id/drain`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainStrategy {
    /// Nanoseconds allowed before what is left is stopped; -1 stops everything at once
    /// (force), 0 waits forever (no deadline).
    pub deadline: i64,
    pub ignore_system_jobs: bool,
    /// Unix nanoseconds at which the deadline falls (0: none).
    pub force_deadline: i64,
    /// Unix nanoseconds the drain started.
    pub started_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainMetadata {
    pub started_at: i64,
    pub updated_at: i64,
    /// "draining", "complete" or "canceled".
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeEvent {
    pub message: String,
    pub subsystem: String,
    pub details: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub timestamp: i64,
    pub create_index: u64,
}

/// One row of `GET /v1/nodes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeListStub {
    pub address: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub datacenter: String,
    pub node_class: String,
    pub node_pool: String,
    pub version: String,
    pub drain: bool,
    pub scheduling_eligibility: String,
    pub status: String,
    pub status_description: String,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub create_index: u64,
    pub modify_index: u64,
    /// Only with `?resources=true`, as in Nomad.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_resources: Option<NodeResources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_resources: Option<NodeReservedResources>,
    /// Only with `?os=true`: `os.name` and `os.version` (Nomad 1.8+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
}

impl NodeListStub {
    /// The stub with the node's resources (`?resources=true`).
    pub fn with_resources(mut self, n: &Node) -> Self {
        self.node_resources = Some(n.node_resources.clone());
        self.reserved_resources = Some(n.reserved_resources.clone());
        self
    }

    /// The stub with the node's operating system attributes (`?os=true`).
    pub fn with_os(mut self, n: &Node) -> Self {
        self.attributes = Some(
            ["os.name", "os.version"]
                .into_iter()
                .filter_map(|k| n.attributes.get(k).map(|v| (k.to_string(), v.clone())))
                .collect(),
        );
        self
    }

    pub fn from_node(n: &Node) -> Self {
        NodeListStub {
            address: n
                .attributes
                .get("unique.network.ip-address")
                .cloned()
                .unwrap_or_default(),
            id: n.id.clone(),
            name: n.name.clone(),
            datacenter: n.datacenter.clone(),
            node_class: n.node_class.clone(),
            node_pool: n.node_pool.clone(),
            version: n
                .attributes
                .get("nomad.version")
                .cloned()
                .unwrap_or_default(),
            drain: n.drain,
            scheduling_eligibility: n.scheduling_eligibility.clone(),
            status: n.status.clone(),
            status_description: n.status_description.clone(),
            drivers: n.drivers.clone(),
            create_index: n.create_index,
            modify_index: n.modify_index,
            node_resources: None,
            reserved_resources: None,
            attributes: None,
        }
    }
}
