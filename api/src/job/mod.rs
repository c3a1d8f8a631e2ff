//! Jobs, task groups and tasks: the desired state a user submits.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod policies;
mod service;
mod summary;
mod template;
mod validate;

pub use policies::*;
pub use service::*;
pub use summary::*;
pub use template::*;
pub use validate::*;

pub const JOB_TYPE_SERVICE: &str = "service";
pub const JOB_TYPE_BATCH: &str = "batch";
pub const JOB_TYPE_SYSTEM: &str = "system";
pub const JOB_TYPE_SYSBATCH: &str = "sysbatch";

pub const JOB_STATUS_PENDING: &str = "pending";
pub const JOB_STATUS_RUNNING: &str = "running";
pub const JOB_STATUS_DEAD: &str = "dead";

/// A job as the API carries it (`PUT /v1/jobs`, `GET /v1/job/:id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub region: String,
    #[serde(rename = "Type")]
    pub job_type: String,
    pub priority: i32,
    pub all_at_once: bool,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    pub task_groups: Vec<TaskGroup>,
    pub update: Option<UpdateStrategy>,
    pub meta: BTreeMap<String, String>,
    /// Set for a periodic (cron) job.
    pub periodic: Option<PeriodicConfig>,
    /// Set for a parameterized job, launched by dispatch.
    pub parameterized_job: Option<ParameterizedJobConfig>,
    pub stop: bool,
    #[serde(rename = "ParentID")]
    pub parent_id: String,
    /// A dispatched job's payload, base64 as Nomad's JSON carries bytes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub payload: String,
    pub status: String,
    pub status_description: String,
    pub stable: bool,
    pub version: u64,
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

impl Job {
    /// The namespace, with the default filled in.
    pub fn ns(&self) -> &str {
        if self.namespace.is_empty() {
            crate::DEFAULT_NAMESPACE
        } else {
            &self.namespace
        }
    }

    pub fn task_group(&self, name: &str) -> Option<&TaskGroup> {
        self.task_groups.iter().find(|g| g.name == name)
    }

    /// Fill in what Nomad fills in when a job is registered without it.
    pub fn canonicalize(&mut self) {
        if self.namespace.is_empty() {
            self.namespace = crate::DEFAULT_NAMESPACE.into();
        }
        if self.name.is_empty() {
            self.name = self.id.clone();
        }
        if self.region.is_empty() {
            self.region = crate::DEFAULT_REGION.into();
        }
        if self.job_type.is_empty() {
            self.job_type = JOB_TYPE_SERVICE.into();
        }
        if self.priority == 0 {
            self.priority = 50;
        }
        if self.node_pool.is_empty() {
            self.node_pool = "default".into();
        }
        if self.datacenters.is_empty() {
            self.datacenters = vec!["*".into()];
        }
        let job_type = self.job_type.clone();
        for g in &mut self.task_groups {
            g.canonicalize(&job_type);
        }
        self.canonicalize_services();
    }

    /// Nomad's service defaults (names, modes, check names...), the one place they are
    /// decided; part of `canonicalize`.
    pub fn canonicalize_services(&mut self) {
        let job_name = if self.name.is_empty() {
            self.id.clone()
        } else {
            self.name.clone()
        };
        let namespace = self.ns().to_string();
        for g in &mut self.task_groups {
            for s in &mut g.services {
                s.canonicalize(&job_name, &g.name, None, &namespace);
            }
            for t in &mut g.tasks {
                for s in &mut t.services {
                    s.canonicalize(&job_name, &g.name, Some(&t.name), &namespace);
                }
            }
        }
    }
}

/// A group of tasks placed together on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    pub name: String,
    pub count: i64,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    pub tasks: Vec<Task>,
    pub restart_policy: Option<RestartPolicy>,
    pub reschedule_policy: Option<ReschedulePolicy>,
    pub ephemeral_disk: Option<EphemeralDisk>,
    pub update: Option<UpdateStrategy>,
    pub migrate: Option<MigrateStrategy>,
    pub networks: Vec<NetworkResource>,
    pub meta: BTreeMap<String, String>,
    pub services: Vec<Service>,
    pub volumes: BTreeMap<String, VolumeRequest>,
    /// Nanoseconds between deregistering the group's services and killing its tasks.
    pub shutdown_delay: Option<i64>,
    /// Nanoseconds after which a disconnected client stops this group's allocations.
    pub stop_after_client_disconnect: Option<i64>,
    /// Nanoseconds an allocation on a disconnected client stays `unknown` before it is lost.
    pub max_client_disconnect: Option<i64>,
}

impl TaskGroup {
    pub fn canonicalize(&mut self, job_type: &str) {
        if self.restart_policy.is_none() {
            self.restart_policy = Some(RestartPolicy::default_for(job_type));
        }
        if self.reschedule_policy.is_none() && matches!(job_type, JOB_TYPE_SERVICE | JOB_TYPE_BATCH)
        {
            self.reschedule_policy = Some(ReschedulePolicy::default_for(job_type));
        }
        if self.ephemeral_disk.is_none() {
            self.ephemeral_disk = Some(EphemeralDisk::default());
        }
        for t in &mut self.tasks {
            t.canonicalize();
        }
    }

    /// The resources all tasks of the group ask for together.
    pub fn combined_resources(&self) -> Resources {
        let mut r = Resources {
            cpu: 0,
            cores: 0,
            memory_mb: 0,
            memory_max_mb: 0,
            disk_mb: self.ephemeral_disk.as_ref().map(|d| d.size_mb).unwrap_or(0),
            networks: vec![],
        };
        for t in &self.tasks {
            if let Some(tr) = &t.resources {
                r.cpu += tr.cpu;
                r.cores += tr.cores;
                r.memory_mb += tr.memory_mb;
                r.memory_max_mb += tr.memory_max_mb;
            }
        }
        r
    }
}

/// One unit of work: a container or a process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub name: String,
    pub driver: String,
    pub user: String,
    /// Driver-specific configuration, kept as JSON so any driver can read its own keys.
    pub config: BTreeMap<String, serde_json::Value>,
    pub env: BTreeMap<String, String>,
    pub resources: Option<Resources>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub meta: BTreeMap<String, String>,
    /// Nanoseconds between the kill signal and SIGKILL.
    pub kill_timeout: i64,
    pub kill_signal: String,
    pub log_config: Option<LogConfig>,
    pub leader: bool,
    pub lifecycle: Option<Lifecycle>,
    pub restart_policy: Option<RestartPolicy>,
    /// Files fetched into the task directory before the task starts.
    pub artifacts: Vec<TaskArtifact>,
    pub services: Vec<Service>,
    /// Nanoseconds between deregistering the task's services and killing it.
    pub shutdown_delay: Option<i64>,
    /// Where a dispatched job's payload is written (`dispatch_payload { file }`).
    pub dispatch_payload: Option<DispatchPayloadConfig>,
    /// Files rendered into the task's directories before it starts (`template` blocks).
    pub templates: Vec<Template>,
}

/// `dispatch_payload { file = "..." }`: a file under the task's `local/`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DispatchPayloadConfig {
    pub file: String,
}

impl Task {
    pub fn canonicalize(&mut self) {
        let r = self.resources.get_or_insert_with(Resources::default);
        if r.cpu == 0 && r.cores == 0 {
            r.cpu = 100;
        }
        if r.memory_mb == 0 {
            r.memory_mb = 300;
        }
        if self.kill_timeout == 0 {
            self.kill_timeout = crate::secs(5);
        }
        if self.log_config.is_none() {
            self.log_config = Some(LogConfig::default());
        }
        for t in &mut self.templates {
            t.canonicalize();
        }
    }

    pub fn kill_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.kill_timeout.max(0) as u64)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    #[serde(rename = "CPU")]
    pub cpu: i64,
    pub cores: i64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: i64,
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
    pub networks: Vec<NetworkResource>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: 100,
            cores: 0,
            memory_mb: 300,
            memory_max_mb: 0,
            disk_mb: 0,
            networks: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkResource {
    pub mode: String,
    pub device: String,
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "MBits")]
    pub mbits: i64,
    pub reserved_ports: Vec<Port>,
    pub dynamic_ports: Vec<Port>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    pub label: String,
    pub value: i64,
    pub to: i64,
    pub host_network: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Constraint {
    #[serde(rename = "LTarget")]
    pub l_target: String,
    #[serde(rename = "RTarget")]
    pub r_target: String,
    pub operand: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Affinity {
    #[serde(rename = "LTarget")]
    pub l_target: String,
    #[serde(rename = "RTarget")]
    pub r_target: String,
    pub operand: String,
    pub weight: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Spread {
    pub attribute: String,
    pub weight: i64,
    pub spread_target: Vec<SpreadTarget>,
    /// Drover extension (Nomad ignores it): when above 0, a hard limit. A placement that
    /// would leave the busiest value of `attribute` more than `MaxSkew` allocations of
    /// the group ahead of the least busy (feasible) value fails instead of stacking.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_skew: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpreadTarget {
    pub value: String,
    pub percent: i64,
}

/// An `artifact` block: a file to download into the task directory before it starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskArtifact {
    /// The URL to fetch (`http://` or `https://`).
    pub getter_source: String,
    /// Getter options, e.g. `checksum = "sha256:..."`.
    pub getter_options: BTreeMap<String, String>,
    /// `any` (default), `file` or `dir`.
    pub getter_mode: String,
    /// Where to put it, relative to the task directory (default `local/`).
    pub relative_dest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Lifecycle {
    pub hook: String,
    pub sidecar: bool,
}

/// A periodic job's schedule (`periodic { cron = "..." }`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeriodicConfig {
    pub enabled: bool,
    /// The cron expression (`cron`).
    pub spec: String,
    /// Several cron expressions (`crons`).
    pub specs: Vec<String>,
    /// Always "cron".
    pub spec_type: String,
    pub prohibit_overlap: bool,
    pub time_zone: String,
}

/// A parameterized job: a template launched by `job dispatch`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ParameterizedJobConfig {
    /// "optional", "required" or "forbidden".
    pub payload: String,
    pub meta_required: Vec<String>,
    pub meta_optional: Vec<String>,
}

/// A volume a group asks for (`volume "name" { type = "host" ... }`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeRequest {
    pub name: String,
    #[serde(rename = "Type")]
    pub volume_type: String,
    pub source: String,
    pub read_only: bool,
}
