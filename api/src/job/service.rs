//! `service` and `check` blocks of a job: what a group or task offers and how its health
//! is judged. Registered instances are [`crate::ServiceRegistration`]s.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SERVICE_PROVIDER_NOMAD: &str = "nomad";
pub const SERVICE_PROVIDER_CONSUL: &str = "consul";

/// A service a group or task offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    pub name: String,
    /// The task a group-level service belongs to, or the task of a task-level one.
    pub task_name: String,
    /// A port label of the group's network, or a port number.
    pub port_label: String,
    /// "auto" (default), "host", "driver" or "alloc".
    pub address_mode: String,
    /// A fixed address to advertise instead of the node's.
    pub address: String,
    pub enable_tag_override: bool,
    pub tags: Vec<String>,
    /// Tags used instead of `tags` while the allocation is an unpromoted canary.
    pub canary_tags: Vec<String>,
    pub checks: Vec<ServiceCheck>,
    pub meta: BTreeMap<String, String>,
    pub canary_meta: BTreeMap<String, String>,
    pub namespace: String,
    /// "require_healthy" (default), "ignore_warnings" or "ignore".
    pub on_update: String,
    /// "consul" (default, recorded only) or "nomad".
    pub provider: String,
    pub cluster: String,
}

/// A health check of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    pub name: String,
    /// "http", "tcp", "grpc" or "script".
    #[serde(rename = "Type")]
    pub check_type: String,
    pub command: String,
    pub args: Vec<String>,
    pub path: String,
    /// "http" (default) or "https".
    pub protocol: String,
    pub port_label: String,
    pub address_mode: String,
    /// Nanoseconds.
    pub interval: i64,
    /// Nanoseconds.
    pub timeout: i64,
    pub initial_status: String,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub check_restart: Option<CheckRestart>,
    pub task_name: String,
    pub success_before_passing: i64,
    pub failures_before_critical: i64,
    pub failures_before_warning: i64,
    /// "require_healthy" (default), "ignore_warnings" or "ignore".
    pub on_update: String,
    #[serde(rename = "GRPCService")]
    pub grpc_service: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    pub expose: bool,
}

/// Restart a task whose check keeps failing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckRestart {
    /// Consecutive failures before the task is restarted; 0 disables.
    pub limit: i64,
    /// Nanoseconds after the task starts during which failures are not counted.
    pub grace: i64,
    pub ignore_warnings: bool,
}
