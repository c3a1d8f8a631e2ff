//! Task drivers: the one seam between the task runner and whatever runs a task: a plain
//! process (`raw_exec`), an isolated process in its own namespaces and cgroup (`exec`), or
//! a Docker container (`docker`).
//!
//! A driver starts a task and hands back a [`TaskHandle`]: serialisable state (pid,
//! process start time, driver-specific JSON) that the agent persists, so that after an
//! agent restart [`Driver::recover`] can tell whether the task is still the one we
//! started and reattach to it instead of restarting it.

pub mod caps;
pub mod docker;
pub mod exec;
mod isolate;
pub mod mock;
pub mod process;
pub mod raw_exec;

use crate::allocdir::TaskDirs;
use crate::ports::AllocatedPort;
use crate::taskenv::TaskEnv;
use api::{DriverInfo, Task};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use docker::DockerDriver;
pub use exec::ExecDriver;
pub use mock::MockDriver;
pub use raw_exec::RawExecDriver;

/// Where a task sees its directories, which decides the `NOMAD_*_DIR` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsIsolation {
    /// The task sees the host's filesystem: directories are host paths.
    #[default]
    None,
    /// The task's root is its task directory (pivot_root): `/local`, `/secrets`, `/alloc`.
    Chroot,
    /// The task runs in an image with the directories mounted at `/local`, `/secrets`,
    /// `/alloc`.
    Image,
}

/// Everything a driver needs to start one task.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub alloc_id: String,
    pub task: Task,
    pub dirs: TaskDirs,
    pub env: TaskEnv,
    /// The group's network ports, with the host ports assigned to this allocation.
    pub ports: Vec<AllocatedPort>,
}

impl TaskContext {
    /// `alloc_id/task`: unique per task on this node.
    pub fn task_id(&self) -> String {
        format!("{}/{}", self.alloc_id, self.task.name)
    }
}

/// What an agent must remember to find a running task again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskHandle {
    /// Name of the driver that started it.
    pub driver: String,
    /// `alloc_id/task`.
    pub task_id: String,
    pub pid: i32,
    /// The process group the task runs in (its own, so stopping it kills grandchildren).
    pub pgid: i32,
    /// Field 22 of `/proc/<pid>/stat`: tells our process from a later one with the same pid.
    pub start_time: u64,
    /// Whatever else the driver needs (a container ID, a cgroup path, ...).
    #[serde(default)]
    pub driver_state: serde_json::Value,
}

/// How a task ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitResult {
    /// The exit code; `128 + signal` when a signal ended it (as shells report it); -1
    /// when unknown.
    pub exit_code: i64,
    /// The signal that ended it, or 0.
    pub signal: i64,
    /// Why the exit status is unknown or the wait failed.
    pub err: Option<String>,
    /// The kernel's OOM killer ended the task (it went over its memory limit).
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitResult {
    pub fn successful(&self) -> bool {
        self.exit_code == 0 && self.signal == 0 && self.err.is_none() && !self.oom_killed
    }
}

/// A driver's fingerprint when it can run tasks, with its `driver.<name>.*` attributes.
pub(crate) fn healthy(attributes: BTreeMap<String, String>) -> DriverInfo {
    DriverInfo {
        detected: true,
        healthy: true,
        health_description: "Healthy".into(),
        attributes,
    }
}

/// A driver's fingerprint when it cannot run tasks: `why`, for people; `detected` when
/// what it needs is there but unusable.
pub(crate) fn unhealthy(detected: bool, why: String) -> DriverInfo {
    DriverInfo {
        detected,
        healthy: false,
        health_description: why,
        attributes: Default::default(),
    }
}

/// The message a recovered task's exit carries: we are not its parent, so we cannot reap it.
pub const EXIT_UNKNOWN_AFTER_RECOVERY: &str =
    "exit status unknown: task was recovered after agent restart";

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The task's configuration is wrong; retrying will not help.
    #[error("{0}")]
    Config(String),
    /// Starting failed in a way a retry might fix.
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    Signal(String),
    /// The driver cannot do this (e.g. exec into a task); a sentence says why.
    #[error("{0}")]
    Unsupported(String),
    /// Running a command in the task or reading its usage failed.
    #[error("{0}")]
    Exec(String),
}

/// What a command run inside a task printed, and how it ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutput {
    /// The exit code; `128 + signal` when a signal ended it.
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A task's resource usage at one instant; CPU time is cumulative, so a rate needs two.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageSample {
    pub rss_bytes: u64,
    pub cache_bytes: u64,
    pub swap_bytes: u64,
    /// Memory charged to the task (cgroup or container usage); RSS where unknown.
    pub usage_bytes: u64,
    pub max_usage_bytes: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Total CPU time; may exceed user + system where only the total is known.
    pub cpu_total_ns: u64,
    pub throttled_periods: u64,
    pub throttled_time_ns: u64,
    /// Which memory fields are measured (Nomad's `Measured`), e.g. `["RSS"]`.
    pub measured_memory: Vec<&'static str>,
    pub measured_cpu: Vec<&'static str>,
}

impl DriverError {
    /// Whether the restart policy may retry after this error.
    pub fn recoverable(&self) -> bool {
        !matches!(self, DriverError::Config(_))
    }
}

#[async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// The name jobspecs use in `driver = "..."`.
    fn name(&self) -> &'static str;

    /// What the node advertises about this driver; `None` when it is not available here.
    /// Drivers that may be installed but broken answer `detected`/`healthy` with a
    /// sentence in `health_description` rather than `None`.
    async fn fingerprint(&self) -> Option<DriverInfo>;

    /// Whether the task sees host paths or its own root (see [`FsIsolation`]).
    fn fs_isolation(&self) -> FsIsolation {
        FsIsolation::None
    }

    /// Starts the task; returns once it is running.
    async fn start(&self, ctx: &TaskContext) -> Result<TaskHandle, DriverError>;

    /// Waits until the task exits. Cancel-safe: dropping the future leaves the task running.
    async fn wait(&self, handle: &TaskHandle) -> ExitResult;

    /// Sends `signal` (default SIGTERM) to the task and everything it started, then
    /// SIGKILL if it is still alive after `timeout`. Returns once it is gone.
    async fn stop(
        &self,
        handle: &TaskHandle,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError>;

    /// Sends `signal` to the task.
    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError>;

    /// After an agent restart: is the task behind `handle` still alive and ours? When true,
    /// the driver has reattached and [`Driver::wait`] and [`Driver::stop`] work on it.
    async fn recover(&self, handle: &TaskHandle) -> Result<bool, DriverError>;

    /// Runs `cmd` inside the running task (its environment, working directory and, where
    /// the driver isolates, its namespaces and root), non-interactively, and returns its
    /// output once it exits or `timeout` passes (then it is killed).
    async fn exec(
        &self,
        _handle: &TaskHandle,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        Err(DriverError::Unsupported(format!(
            "the {} driver cannot run commands in its tasks",
            self.name()
        )))
    }

    /// The task's memory and cumulative CPU use now.
    async fn usage(&self, _handle: &TaskHandle) -> Result<UsageSample, DriverError> {
        Err(DriverError::Unsupported(format!(
            "the {} driver does not report resource usage",
            self.name()
        )))
    }
}

/// A task `config` key that holds a list of strings (numbers and booleans are written
/// out, strings interpolated); absent or null is empty. `driver` names the error's source.
pub(crate) fn config_string_list(
    ctx: &TaskContext,
    driver: &str,
    key: &str,
) -> Result<Vec<String>, DriverError> {
    match ctx.task.config.get(key) {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(ctx.env.interpolate(s)),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                serde_json::Value::Bool(b) => Ok(b.to_string()),
                other => Err(DriverError::Config(format!(
                    "{driver}: config {key:?} must be a list of strings, got {other}"
                ))),
            })
            .collect(),
        Some(other) => Err(DriverError::Config(format!(
            "{driver}: config {key:?} must be a list of strings, got {other}"
        ))),
    }
}

/// Waits for `cmd` (spawned with piped stdout and stderr, in its own process group) up to
/// `timeout`, collecting its output; on timeout the whole group is killed.
pub(crate) async fn collect_output(
    mut child: tokio::process::Child,
    timeout: Duration,
) -> Result<ExecOutput, DriverError> {
    use tokio::io::AsyncReadExt;
    let pid = child.id().map(|p| p as i32);
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read_out = async {
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut b).await;
        }
        b
    };
    let read_err = async {
        let mut b = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut b).await;
        }
        b
    };
    let run = async {
        let (stdout, stderr, status) = tokio::join!(read_out, read_err, child.wait());
        (stdout, stderr, status)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((stdout, stderr, status)) => {
            use std::os::unix::process::ExitStatusExt;
            let st =
                status.map_err(|e| DriverError::Exec(format!("waiting for the command: {e}")))?;
            let exit_code = match (st.code(), st.signal()) {
                (Some(c), _) => c as i64,
                (None, Some(s)) => 128 + s as i64,
                _ => -1,
            };
            Ok(ExecOutput {
                exit_code,
                stdout,
                stderr,
            })
        }
        Err(_) => {
            if let Some(pid) = pid {
                let _ = process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            }
            Err(DriverError::Exec(format!(
                "the command did not finish within {timeout:?} and was killed"
            )))
        }
    }
}

/// The drivers this agent runs, by name.
#[derive(Debug, Clone, Default)]
pub struct Drivers {
    by_name: BTreeMap<String, Arc<dyn Driver>>,
}

impl Drivers {
    /// The drivers the configuration enables: `docker` and `exec` always (they report
    /// themselves unhealthy where they cannot run), `raw_exec` only when opted in.
    pub fn from_config(raw_exec_enabled: bool) -> Self {
        let mut d = Drivers::default();
        d.add(Arc::new(DockerDriver::new()));
        d.add(Arc::new(ExecDriver::new(exec::ExecConfig::default())));
        if raw_exec_enabled {
            d.add(Arc::new(RawExecDriver::new()));
        }
        d
    }

    /// The drivers of an agent with `config`: like [`Drivers::from_config`], with the
    /// exec and docker plugin settings of the agent's configuration.
    pub fn from_agent_config(config: &crate::config::AgentConfig) -> Self {
        let mut d = Drivers::default();
        d.add(Arc::new(DockerDriver::with_config(config.docker.clone())));
        d.add(Arc::new(ExecDriver::new(config.exec.clone())));
        if config.raw_exec_enabled {
            d.add(Arc::new(RawExecDriver::new()));
        }
        d
    }

    pub fn add(&mut self, driver: Arc<dyn Driver>) {
        self.by_name.insert(driver.name().to_string(), driver);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Driver>> {
        self.by_name.get(name).cloned()
    }

    /// Fingerprints every driver (concurrently); those that are not available are left
    /// out.
    pub async fn fingerprint(&self) -> BTreeMap<String, DriverInfo> {
        let all = futures_util::future::join_all(
            self.by_name
                .iter()
                .map(|(name, d)| async move { (name.clone(), d.fingerprint().await) }),
        )
        .await;
        all.into_iter()
            .filter_map(|(name, info)| info.map(|i| (name, i)))
            .collect()
    }
}
