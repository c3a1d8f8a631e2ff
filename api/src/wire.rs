//! Request and response bodies of the `/v1` API (Nomad's shapes), and of the internal
//! endpoints client agents use to register, heartbeat and report.

use crate::alloc::AllocClientUpdate;
use crate::job::Job;
use crate::node::Node;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Body of `PUT /v1/jobs` and `PUT /v1/job/:id`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterRequest {
    pub job: Option<Job>,
    pub enforce_index: bool,
    pub job_modify_index: u64,
    pub policy_override: bool,
    pub preserve_counts: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub warnings: String,
    pub index: u64,
    pub last_contact: u64,
    pub known_leader: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDeregisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub index: u64,
    pub last_contact: u64,
    pub known_leader: bool,
}

/// Body of `PUT /v1/internal/node/register`: the agent's fingerprinted node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeRegisterRequest {
    pub node: Node,
}

/// The header a client agent's heartbeats, allocation updates and registrations carry
/// its node's secret in.
pub const NODE_SECRET_HEADER: &str = "X-Nomad-Node-Secret";

/// Answer to a registration or a heartbeat: when the next heartbeat is due.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeHeartbeatResponse {
    /// Nanoseconds within which the next heartbeat must arrive.
    #[serde(rename = "HeartbeatTTL")]
    pub heartbeat_ttl: i64,
    pub index: u64,
    /// Servers' RPC addresses the agent may fail over to.
    pub servers: Vec<String>,
    /// On registration: the node's secret, which the agent keeps and sends with every
    /// later heartbeat, allocation update and registration (`X-Nomad-Node-Secret`).
    #[serde(rename = "SecretID", skip_serializing_if = "String::is_empty")]
    pub secret_id: String,
}

/// Body of `PUT /v1/internal/node/:id/allocs`: a batch of client status updates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocUpdateRequest {
    pub alloc: Vec<AllocClientUpdate>,
}

/// Answer to any write: the Raft index it committed at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WriteResponse {
    pub index: u64,
}

/// `GET /v1/agent/self`, reduced to what Drover knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentSelf {
    pub config: serde_json::Value,
    pub member: AgentMember,
    pub stats: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentMember {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub status: String,
    pub tags: BTreeMap<String, String>,
}

/// Body of `PUT /v1/jobs/parse`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobsParseRequest {
    #[serde(rename = "JobHCL")]
    pub job_hcl: String,
    pub canonicalize: bool,
    /// HCL2 variable values: `name = value` lines, as in a variables file.
    pub variables: String,
}

/// `GET /v1/job/:id/versions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobVersionsResponse {
    pub versions: Vec<Job>,
    /// With `?diffs=true`: each version against the one before it (newest first, one
    /// fewer than the versions).
    pub diffs: Option<Vec<crate::diff::JobDiff>>,
    pub index: u64,
}

/// Removes every `null` member of the objects in `v`, recursively. Nomad's clients send
/// `null` for empty lists and maps (`nomad job run -output`, python-nomad); Drover's
/// structs default every missing field, so a member that is `null` means the same as one
/// that is absent. The one place that decides this, for job files and API bodies.
pub fn strip_nulls(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod null_tests {
    #[test]
    fn null_members_read_as_absent_ones() {
        let mut v = serde_json::json!({"Job": {"ID": "x", "Meta": null, "TaskGroups": [{"Name": "g", "Networks": null}]}});
        super::strip_nulls(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"Job": {"ID": "x", "TaskGroups": [{"Name": "g"}]}})
        );
        let req: super::JobRegisterRequest = serde_json::from_value(v).unwrap();
        assert_eq!(req.job.unwrap().id, "x");
    }
}
