//! Jobs, task groups and tasks: the desired state a user submits.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    }

    /// Checks a registered job must pass; each problem is one sentence.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.id.is_empty() {
            errs.push("job ID is missing".to_string());
        } else if self.id.contains(' ') {
            errs.push(format!("job ID {:?} contains a space", self.id));
        } else if self.id.contains('\0') {
            errs.push("job ID contains a null character".to_string());
        }
        if self.name.contains('\0') {
            errs.push("job name contains a null character".to_string());
        }
        if ![
            JOB_TYPE_SERVICE,
            JOB_TYPE_BATCH,
            JOB_TYPE_SYSTEM,
            JOB_TYPE_SYSBATCH,
        ]
        .contains(&self.job_type.as_str())
        {
            errs.push(format!(
                "job type {:?} is not one of service, batch, system, sysbatch",
                self.job_type
            ));
        }
        if !(1..=100).contains(&self.priority) {
            errs.push(format!(
                "job priority must be between 1 and 100, got {}",
                self.priority
            ));
        }
        if self.task_groups.is_empty() {
            errs.push("job has no task groups".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for g in &self.task_groups {
            if !seen.insert(g.name.as_str()) {
                errs.push(format!("task group {:?} is defined twice", g.name));
            }
            errs.extend(g.validate());
        }
        errs
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

    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let at = format!("task group {:?}", self.name);
        if self.name.is_empty() {
            errs.push("a task group has no name".to_string());
        }
        if self.count < 0 {
            errs.push(format!("{at}: count must be >= 0, got {}", self.count));
        }
        if self.tasks.is_empty() {
            errs.push(format!("{at}: no tasks"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tasks {
            if !seen.insert(t.name.as_str()) {
                errs.push(format!("{at}: task {:?} is defined twice", t.name));
            }
            errs.extend(t.validate().into_iter().map(|e| format!("{at}: {e}")));
        }
        errs
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
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let at = format!("task {:?}", self.name);
        if self.name.is_empty() {
            errs.push("a task has no name".to_string());
        }
        if self.driver.is_empty() {
            errs.push(format!("{at}: missing driver"));
        }
        if let Some(r) = &self.resources {
            if r.cpu < 1 && r.cores < 1 {
                errs.push(format!("{at}: cpu must be at least 1 MHz, got {}", r.cpu));
            }
            if r.memory_mb < 10 {
                errs.push(format!(
                    "{at}: memory must be at least 10 MB, got {}",
                    r.memory_mb
                ));
            }
        }
        if self.kill_timeout < 0 {
            errs.push(format!("{at}: kill_timeout must not be negative"));
        }
        errs
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

/// What a task runner does when a task exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub attempts: i64,
    pub interval: i64,
    pub delay: i64,
    pub mode: String,
    pub render_templates: bool,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::default_for(JOB_TYPE_SERVICE)
    }
}

impl RestartPolicy {
    /// Nomad's defaults: services retry 2 times in 30m, batch 3 times in 24h, both
    /// waiting 15s and then failing.
    pub fn default_for(job_type: &str) -> Self {
        match job_type {
            JOB_TYPE_BATCH | JOB_TYPE_SYSBATCH => RestartPolicy {
                attempts: 3,
                interval: crate::secs(24 * 3600),
                delay: crate::secs(15),
                mode: "fail".into(),
                render_templates: false,
            },
            _ => RestartPolicy {
                attempts: 2,
                interval: crate::secs(30 * 60),
                delay: crate::secs(15),
                mode: "fail".into(),
                render_templates: false,
            },
        }
    }
}

/// How failed allocations are replaced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReschedulePolicy {
    pub attempts: i64,
    pub interval: i64,
    pub delay: i64,
    pub delay_function: String,
    pub max_delay: i64,
    pub unlimited: bool,
}

impl ReschedulePolicy {
    pub fn default_for(job_type: &str) -> Self {
        match job_type {
            JOB_TYPE_BATCH => ReschedulePolicy {
                attempts: 1,
                interval: crate::secs(24 * 3600),
                delay: crate::secs(5),
                delay_function: "constant".into(),
                max_delay: 0,
                unlimited: false,
            },
            _ => ReschedulePolicy {
                attempts: 0,
                interval: 0,
                delay: crate::secs(30),
                delay_function: "exponential".into(),
                max_delay: crate::secs(3600),
                unlimited: true,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EphemeralDisk {
    pub sticky: bool,
    pub migrate: bool,
    #[serde(rename = "SizeMB")]
    pub size_mb: i64,
}

impl Default for EphemeralDisk {
    fn default() -> Self {
        EphemeralDisk {
            sticky: false,
            migrate: false,
            size_mb: 300,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStrategy {
    pub stagger: i64,
    pub max_parallel: i64,
    pub health_check: String,
    pub min_healthy_time: i64,
    pub healthy_deadline: i64,
    pub progress_deadline: i64,
    pub auto_revert: bool,
    pub auto_promote: bool,
    pub canary: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MigrateStrategy {
    pub max_parallel: i64,
    pub health_check: String,
    pub min_healthy_time: i64,
    pub healthy_deadline: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    pub max_files: i64,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: i64,
    pub disabled: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_files: 10,
            max_file_size_mb: 10,
            disabled: false,
        }
    }
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

/// A service a group or task offers (recorded; Drover does not register services yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    pub name: String,
    pub port_label: String,
    pub tags: Vec<String>,
    /// "consul" or "nomad".
    pub provider: String,
    pub checks: Vec<ServiceCheck>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    pub name: String,
    /// "http", "tcp", "grpc" or "script".
    #[serde(rename = "Type")]
    pub check_type: String,
    pub path: String,
    pub port_label: String,
    /// Nanoseconds.
    pub interval: i64,
    /// Nanoseconds.
    pub timeout: i64,
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

/// One row of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobListStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "ParentID")]
    pub parent_id: String,
    pub name: String,
    pub namespace: String,
    pub datacenters: Vec<String>,
    #[serde(rename = "Type")]
    pub job_type: String,
    pub priority: i32,
    pub stop: bool,
    pub status: String,
    pub status_description: String,
    pub job_summary: Option<JobSummary>,
    pub version: u64,
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

impl JobListStub {
    pub fn from_job(job: &Job, summary: Option<JobSummary>) -> Self {
        JobListStub {
            id: job.id.clone(),
            parent_id: job.parent_id.clone(),
            name: job.name.clone(),
            namespace: job.namespace.clone(),
            datacenters: job.datacenters.clone(),
            job_type: job.job_type.clone(),
            priority: job.priority,
            stop: job.stop,
            status: job.status.clone(),
            status_description: job.status_description.clone(),
            job_summary: summary,
            version: job.version,
            submit_time: job.submit_time,
            create_index: job.create_index,
            modify_index: job.modify_index,
            job_modify_index: job.job_modify_index,
        }
    }
}

/// Counts of a job's allocations per task group and client status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobSummary {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub namespace: String,
    pub summary: BTreeMap<String, TaskGroupSummary>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupSummary {
    pub queued: u64,
    pub complete: u64,
    pub failed: u64,
    pub running: u64,
    pub starting: u64,
    pub lost: u64,
    pub unknown: u64,
}
