//! Registered service instances (`provider = "nomad"`) and the results of their checks.

use serde::{Deserialize, Serialize};

/// One instance of a service, as `GET /v1/service/:name` lists it. The agent running the
/// allocation registers it; the servers delete it when the allocation stops or is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistration {
    /// `_nomad-task-<alloc id>-<task name or group-<group name>>-<service>-<port label>`.
    #[serde(rename = "ID")]
    pub id: String,
    pub service_name: String,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub datacenter: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    #[serde(rename = "AllocID")]
    pub alloc_id: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: i64,
    pub create_index: u64,
    pub modify_index: u64,
}

impl ServiceRegistration {
    /// Nomad's registration ID. `owner` is the task name for a task-level service and
    /// `group-<name>` for a group-level one.
    pub fn make_id(alloc_id: &str, owner: &str, service: &str, port_label: &str) -> String {
        format!("_nomad-task-{alloc_id}-{owner}-{service}-{port_label}")
    }
}

/// One entry of `GET /v1/services`: a service name and the union of its instances' tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceStub {
    pub service_name: String,
    pub tags: Vec<String>,
}

/// `GET /v1/services`: the services of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistrationListStub {
    pub namespace: String,
    pub services: Vec<ServiceStub>,
}

/// What an agent sends to `PUT /v1/internal/node/:id/services`: instances to add or
/// update, and instance IDs to remove. Every instance must belong to an allocation of
/// that node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceUpdateRequest {
    pub upsert: Vec<ServiceRegistration>,
    #[serde(rename = "DeleteIDs")]
    pub delete_ids: Vec<String>,
}

pub const CHECK_STATUS_PENDING: &str = "pending";
pub const CHECK_STATUS_SUCCESS: &str = "success";
pub const CHECK_STATUS_FAILURE: &str = "failure";

/// The latest result of one check, as `GET /v1/client/allocation/:id/checks` reports it
/// (a map from check ID to this).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckQueryResult {
    #[serde(rename = "ID")]
    pub id: String,
    pub check: String,
    pub group: String,
    /// "healthiness" or "readiness".
    pub mode: String,
    pub output: String,
    pub service: String,
    /// "pending", "success" or "failure".
    pub status: String,
    pub status_code: i64,
    pub task: String,
    /// Unix seconds of the result.
    pub timestamp: i64,
}
