//! The `docker` driver: runs a task as a container on the local Docker Engine, through
//! bollard, with the API version negotiated against the daemon.
//!
//! Task config (Nomad's keys): `image` (required), `command`, `args`, `entrypoint`,
//! `ports` (labels of the group's network ports), `port_map` (legacy label -> container
//! port), `volumes` (`host:container[:ro]`, host paths relative to the task directory),
//! `mount` blocks of `type = "bind"`, `labels`, `work_dir`, `network_mode`, `hostname`,
//! `force_pull`. Strings are interpolated.
//!
//! Host paths (`volumes`, `mount` sources) must stay inside the allocation directory,
//! after resolving `..` and symlinks, unless the agent enables them as Nomad does:
//! `plugin "docker" { config { volumes { enabled = true } } }` ([`DockerPluginConfig`]).
//!
//! Images are never pulled (no registry is reachable from these nodes): a missing image
//! is an unrecoverable start error that says so, whatever `force_pull` says.
//!
//! The container is named `<task>-<alloc_id>`, labelled like Nomad's
//! (`com.hashicorp.nomad.alloc_id`, ...), gets the alloc dir at `/alloc` and the task's
//! `local/` and `secrets/` at `/local` and `/secrets`, CPU shares from `resources.cpu`
//! and its memory limit from `memory_max` (else `memory`).
//!
//! Logs: the agent follows the container's log stream and appends it to the same
//! `alloc/logs/<task>.stdout.0` / `.stderr.0` files raw_exec writes, so log readers need
//! not know the driver. Docker's `json-file` driver keeps its own bounded copy (that is
//! what the stream reads from), so output written while the agent is down is fetched on
//! recovery (from the log file's last modification second on).
//!
//! One background task per container waits for it to exit, then inspects it for the
//! exit code and the OOM flag, lets the log stream drain, removes the container and
//! publishes the result. The handle's driver state holds the container ID, which is all
//! [`Driver::recover`] needs.
//!
//! This file is the container's lifecycle (start, wait, stop, signal, exec, recover);
//! `config` translates the task config into the container to create, `logs` pumps its
//! output.

mod config;
mod logs;

pub use config::{container_name, DockerPluginConfig};

use super::process;
use super::{Driver, DriverError, ExitResult, FsIsolation, TaskContext, TaskHandle};
use api::DriverInfo;
use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use config::{create_body, parse_config};
use futures_util::StreamExt;
use logs::{mtime_secs, pump_logs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{watch, OnceCell};

pub const NAME: &str = "docker";

/// How long a fingerprint may wait for the daemon.
const FINGERPRINT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the exit handler waits for the log stream to drain.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// How long to wait for a container to exit after SIGKILL.
const AFTER_KILL_WAIT: Duration = Duration::from_secs(10);

/// What the handle remembers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerState {
    pub container_id: String,
    pub container_name: String,
    pub image: String,
    /// Where the container's output goes, to resume after an agent restart.
    pub stdout_log: Option<PathBuf>,
    pub stderr_log: Option<PathBuf>,
    /// The container's IP on its network (empty with `network_mode = "host"` or none):
    /// what services with `address_mode = "driver"` advertise.
    #[serde(default)]
    pub ip: String,
}

/// The container's IP on its network: that of the network named by its `network_mode`,
/// else the first network (by name) that gave it one.
pub fn container_ip(info: &ContainerInspectResponse) -> Option<String> {
    let mode = info
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let networks = info.network_settings.as_ref()?.networks.as_ref()?;
    let ip_of = |name: &str| {
        networks
            .get(name)
            .and_then(|e| e.ip_address.clone())
            .filter(|ip| !ip.is_empty())
    };
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    ip_of(&mode).or_else(|| names.into_iter().find_map(|n| ip_of(n)))
}

/// The address a task's driver gave it, from its handle: a docker container's IP. `None`
/// for other drivers (they have no network of their own).
pub fn network_ip(handle: &TaskHandle) -> Option<String> {
    if handle.driver != NAME {
        return None;
    }
    state_of(handle)
        .ok()
        .map(|s| s.ip)
        .filter(|ip| !ip.is_empty())
}

type ExitRx = watch::Receiver<Option<ExitResult>>;

#[derive(Debug, Default)]
pub struct DockerDriver {
    config: DockerPluginConfig,
    /// Connected and version-negotiated on first use; a failure is retried next time.
    client: OnceCell<Docker>,
    /// Exit results of the containers this driver watches, by container ID.
    watched: Mutex<HashMap<String, ExitRx>>,
}

fn docker_err(what: &str, e: DockerError) -> DriverError {
    DriverError::Start(format!("{what}: {e}"))
}

fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// The exit of an inspected, stopped container.
fn exit_of(info: &ContainerInspectResponse) -> ExitResult {
    let st = info.state.clone().unwrap_or_default();
    let err = st.error.filter(|e| !e.is_empty());
    ExitResult {
        exit_code: st.exit_code.unwrap_or(-1),
        signal: 0,
        err,
        oom_killed: st.oom_killed.unwrap_or(false),
    }
}

/// Waits for the container to stop, however long that takes.
async fn wait_stopped(docker: &Docker, id: &str) {
    loop {
        let opts = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut s = docker.wait_container(id, Some(opts));
        match s.next().await {
            // A non-zero exit comes back as an error from bollard: still an exit.
            Some(Ok(_)) | Some(Err(DockerError::DockerContainerWaitError { .. })) => return,
            Some(Err(e)) if is_status(&e, 404) => return,
            other => {
                // The daemon went away or the request timed out: ask again, unless the
                // container is no longer running.
                match docker.inspect_container(id, None).await {
                    Ok(i) if i.state.as_ref().and_then(|s| s.running) == Some(true) => {
                        tracing::debug!(container = %id, result = ?other.map(|r| r.map(|_| ())), "waiting again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Ok(_) => return,
                    Err(e) if is_status(&e, 404) => return,
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        }
    }
}

async fn remove(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => {}
        // Gone already, or its removal is in progress.
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
        Err(e) => tracing::warn!(container = %id, error = %e, "cannot remove container"),
    }
}

/// Waits for the container's exit, records it, drains its logs and removes it.
async fn watch_exit(docker: Docker, id: String, logs: tokio::task::JoinHandle<()>) -> ExitResult {
    wait_stopped(&docker, &id).await;
    let res = match docker.inspect_container(&id, None).await {
        Ok(info) => exit_of(&info),
        Err(e) => ExitResult {
            exit_code: -1,
            err: Some(format!(
                "container {id} vanished before its exit was read: {e}"
            )),
            ..Default::default()
        },
    };
    let _ = tokio::time::timeout(LOG_DRAIN, logs).await;
    remove(&docker, &id).await;
    res
}

fn state_of(handle: &TaskHandle) -> Result<DockerState, DriverError> {
    serde_json::from_value(handle.driver_state.clone())
        .ok()
        .filter(|s: &DockerState| !s.container_id.is_empty())
        .ok_or_else(|| DriverError::Signal("the task handle names no container".into()))
}

impl DockerDriver {
    /// A driver with the default configuration (host volumes disabled).
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_config(config: DockerPluginConfig) -> Self {
        DockerDriver {
            config,
            ..Self::default()
        }
    }

    /// The daemon at the local default address (`DOCKER_HOST` or /var/run/docker.sock),
    /// with the API version negotiated down to what it speaks (Engine 20.10: 1.41).
    pub async fn client(&self) -> Result<&Docker, DockerError> {
        self.client
            .get_or_try_init(|| async {
                Docker::connect_with_local_defaults()?
                    .negotiate_version()
                    .await
            })
            .await
    }

    async fn docker(&self) -> Result<Docker, DriverError> {
        self.client()
            .await
            .cloned()
            .map_err(|e| DriverError::Start(format!("cannot reach the Docker daemon: {e}")))
    }

    /// Starts following `id`'s logs and exit; idempotent.
    fn watch(
        &self,
        docker: &Docker,
        id: &str,
        dirs: Option<(PathBuf, PathBuf)>,
        since: i32,
    ) -> ExitRx {
        let mut watched = self.watched.lock().expect("watched lock");
        if let Some(rx) = watched.get(id) {
            return rx.clone();
        }
        let logs = match dirs {
            Some((out, err)) => {
                tokio::spawn(pump_logs(docker.clone(), id.to_string(), out, err, since))
            }
            None => tokio::spawn(async {}),
        };
        let (tx, rx) = watch::channel(None);
        let (docker, cid) = (docker.clone(), id.to_string());
        tokio::spawn(async move {
            let res = watch_exit(docker, cid, logs).await;
            let _ = tx.send(Some(res));
        });
        watched.insert(id.to_string(), rx.clone());
        rx
    }

    fn forget(&self, id: &str) {
        self.watched.lock().expect("watched lock").remove(id);
    }

    /// Waits up to `timeout` for the container's exit to be recorded.
    async fn exited_within(&self, docker: &Docker, id: &str, timeout: Duration) -> bool {
        let mut rx = self.watch(docker, id, None, 0);
        tokio::time::timeout(timeout, rx.wait_for(|r| r.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fingerprint(&self) -> Option<DriverInfo> {
        let not_detected = |why: String| Some(super::unhealthy(false, why));
        let probe = async {
            let docker = self.client().await?;
            docker.ping().await?;
            docker.version().await
        };
        match tokio::time::timeout(FINGERPRINT_TIMEOUT, probe).await {
            Ok(Ok(v)) => {
                let mut attributes = BTreeMap::new();
                if let Some(version) = v.version {
                    attributes.insert("driver.docker.version".to_string(), version);
                }
                Some(super::healthy(attributes))
            }
            Ok(Err(e)) => not_detected(format!("Docker daemon not reachable: {e}")),
            Err(_) => not_detected(format!(
                "Docker daemon did not answer within {FINGERPRINT_TIMEOUT:?}"
            )),
        }
    }

    fn fs_isolation(&self) -> FsIsolation {
        FsIsolation::Image
    }

    async fn start(&self, ctx: &TaskContext) -> Result<TaskHandle, DriverError> {
        let cfg = parse_config(ctx)?;
        // Everything the task's config decides is checked before Docker is asked anything.
        let body = create_body(ctx, &cfg, &self.config)?;
        let docker = self.docker().await?;
        if let Err(e) = docker.inspect_image(&cfg.image).await {
            return Err(if is_status(&e, 404) {
                DriverError::Config(format!(
                    "image {:?} not found locally and cannot be pulled: this node pulls no \
                     images (force_pull = {}); build or load it on the node first",
                    cfg.image, cfg.force_pull
                ))
            } else {
                docker_err(&format!("inspecting image {:?}", cfg.image), e)
            });
        }
        if cfg.force_pull {
            tracing::warn!(image = %cfg.image, "force_pull is set but images are never pulled; using the local image");
        }
        let name = container_name(ctx);
        // A container of an earlier attempt (e.g. the agent died between create and
        // saving the handle) would block the name.
        remove(&docker, &name).await;
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| docker_err(&format!("creating container {name}"), e))?;
        let id = created.id;
        if let Err(e) = docker.start_container(&id, None).await {
            remove(&docker, &id).await;
            return Err(docker_err(&format!("starting container {name}"), e));
        }
        let (pid, ip) = match docker.inspect_container(&id, None).await {
            Ok(i) => (
                i.state.as_ref().and_then(|s| s.pid).unwrap_or(0) as i32,
                container_ip(&i).unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        };
        self.watch(
            &docker,
            &id,
            Some((ctx.dirs.stdout.clone(), ctx.dirs.stderr.clone())),
            0,
        );
        let state = DockerState {
            container_id: id,
            container_name: name,
            image: cfg.image,
            stdout_log: Some(ctx.dirs.stdout.clone()),
            stderr_log: Some(ctx.dirs.stderr.clone()),
            ip,
        };
        Ok(TaskHandle {
            driver: NAME.into(),
            task_id: ctx.task_id(),
            pid,
            pgid: 0,
            start_time: process::start_time(pid).unwrap_or(0),
            driver_state: serde_json::to_value(state).unwrap_or_default(),
        })
    }

    async fn wait(&self, handle: &TaskHandle) -> ExitResult {
        let st = match state_of(handle) {
            Ok(s) => s,
            Err(e) => {
                return ExitResult {
                    exit_code: -1,
                    err: Some(e.to_string()),
                    ..Default::default()
                }
            }
        };
        let docker = match self.docker().await {
            Ok(d) => d,
            Err(e) => {
                return ExitResult {
                    exit_code: -1,
                    err: Some(e.to_string()),
                    ..Default::default()
                }
            }
        };
        let rx = self.watch(&docker, &st.container_id, None, 0);
        let res = process::await_exit(rx, "the container watcher").await;
        self.forget(&st.container_id);
        res
    }

    async fn stop(
        &self,
        handle: &TaskHandle,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let st = state_of(handle)?;
        let docker = self.docker().await?;
        let id = st.container_id.as_str();
        let sig = if signal.trim().is_empty() {
            "SIGTERM".to_string()
        } else {
            signal.trim().to_string()
        };
        // kill_signal, then kill_timeout, then SIGKILL: `docker stop` takes no signal
        // before API 1.42, so the two steps are ours.
        let kill = |s: String| {
            let docker = docker.clone();
            async move {
                match docker
                    .kill_container(id, Some(KillContainerOptions { signal: s }))
                    .await
                {
                    // 404: gone; 409: not running.
                    Err(e) if !is_status(&e, 404) && !is_status(&e, 409) => Err(e),
                    _ => Ok(()),
                }
            }
        };
        kill(sig.clone())
            .await
            .map_err(|e| DriverError::Signal(format!("sending {sig} to container {id}: {e}")))?;
        if !self.exited_within(&docker, id, timeout).await {
            kill("SIGKILL".into()).await.map_err(|e| {
                DriverError::Signal(format!("sending SIGKILL to container {id}: {e}"))
            })?;
            if !self.exited_within(&docker, id, AFTER_KILL_WAIT).await {
                remove(&docker, id).await;
                return Err(DriverError::Signal(format!(
                    "container {id} did not stop after SIGKILL; removed it by force"
                )));
            }
        }
        remove(&docker, id).await;
        Ok(())
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        let st = state_of(handle)?;
        let docker = self.docker().await?;
        docker
            .kill_container(
                &st.container_id,
                Some(KillContainerOptions {
                    signal: signal.to_string(),
                }),
            )
            .await
            .map_err(|e| DriverError::Signal(format!("sending {signal} to the container: {e}")))
    }

    /// Runs `cmd` through Docker's exec API (the container's environment and working dir).
    async fn exec(
        &self,
        handle: &TaskHandle,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<super::ExecOutput, DriverError> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        if cmd.is_empty() {
            return Err(DriverError::Exec("no command given".into()));
        }
        let st = state_of(handle)?;
        let docker = self.docker().await?;
        let exec = docker
            .create_exec(
                &st.container_id,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DriverError::Exec(format!("creating the exec in the container: {e}")))?;
        let run = async {
            let mut out = super::ExecOutput::default();
            let started = docker
                .start_exec(
                    &exec.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(|e| DriverError::Exec(format!("starting the exec: {e}")))?;
            if let StartExecResults::Attached { mut output, .. } = started {
                while let Some(item) = output.next().await {
                    match item {
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            out.stderr.extend_from_slice(&message)
                        }
                        Ok(
                            bollard::container::LogOutput::StdOut { message }
                            | bollard::container::LogOutput::Console { message },
                        ) => out.stdout.extend_from_slice(&message),
                        Ok(_) => {}
                        Err(e) => return Err(DriverError::Exec(format!("exec output: {e}"))),
                    }
                }
            }
            let info = docker
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| DriverError::Exec(format!("inspecting the exec: {e}")))?;
            out.exit_code = info.exit_code.unwrap_or(-1);
            Ok(out)
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| {
            DriverError::Exec(format!(
                "the command did not finish within {timeout:?} (it may still run in the container)"
            ))
        })?
    }

    async fn usage(&self, handle: &TaskHandle) -> Result<super::UsageSample, DriverError> {
        let st = state_of(handle)?;
        let docker = self.docker().await?;
        let opts = bollard::query_parameters::StatsOptions {
            stream: false,
            one_shot: true,
        };
        let stats = docker
            .stats(&st.container_id, Some(opts))
            .next()
            .await
            .ok_or_else(|| DriverError::Exec("Docker returned no stats".into()))?
            .map_err(|e| DriverError::Exec(format!("reading the container's stats: {e}")))?;
        let mem = stats.memory_stats.unwrap_or_default();
        let kv = mem.stats.unwrap_or_default();
        let cpu = stats.cpu_stats.unwrap_or_default();
        let usage = cpu.cpu_usage.unwrap_or_default();
        let throttling = cpu.throttling_data.unwrap_or_default();
        // cgroup v1 reports rss/cache; v2 reports anon/file.
        let pick = |a: &str, b: &str| kv.get(a).or_else(|| kv.get(b)).copied().unwrap_or(0);
        Ok(super::UsageSample {
            rss_bytes: pick("rss", "anon"),
            cache_bytes: pick("cache", "file"),
            swap_bytes: kv.get("swap").copied().unwrap_or(0),
            usage_bytes: mem.usage.unwrap_or(0),
            max_usage_bytes: mem.max_usage.unwrap_or(0),
            cpu_user_ns: usage.usage_in_usermode.unwrap_or(0),
            cpu_system_ns: usage.usage_in_kernelmode.unwrap_or(0),
            cpu_total_ns: usage.total_usage.unwrap_or(0),
            throttled_periods: throttling.throttled_periods.unwrap_or(0),
            throttled_time_ns: throttling.throttled_time.unwrap_or(0),
            measured_memory: vec!["RSS", "Cache", "Swap", "Usage", "Max Usage"],
            measured_cpu: vec![
                "Throttled Periods",
                "Throttled Time",
                "Percent",
                "System Mode",
                "User Mode",
            ],
        })
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<bool, DriverError> {
        let st = state_of(handle)?;
        if self
            .watched
            .lock()
            .expect("watched lock")
            .contains_key(&st.container_id)
        {
            return Ok(true);
        }
        let docker = self.docker().await?;
        let info = match docker.inspect_container(&st.container_id, None).await {
            Ok(i) => i,
            Err(e) if is_status(&e, 404) => return Ok(false),
            Err(e) => return Err(docker_err("inspecting the task's container", e)),
        };
        if info.state.as_ref().and_then(|s| s.running) != Some(true) {
            // It exited while the agent was away.
            remove(&docker, &st.container_id).await;
            return Ok(false);
        }
        // Resume the logs from where the files stopped (to the second: a few lines of
        // that second may appear twice).
        let dirs = st.stdout_log.clone().zip(st.stderr_log.clone());
        let since = dirs
            .as_ref()
            .map(|(o, e)| mtime_secs(o).max(mtime_secs(e)))
            .unwrap_or(0);
        self.watch(&docker, &st.container_id, dirs, since);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EndpointSettings, HostConfig, NetworkSettings};

    fn inspected(mode: &str, networks: &[(&str, &str)]) -> ContainerInspectResponse {
        ContainerInspectResponse {
            host_config: Some(HostConfig {
                network_mode: Some(mode.into()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(
                    networks
                        .iter()
                        .map(|(n, ip)| {
                            let e = EndpointSettings {
                                ip_address: Some(ip.to_string()),
                                ..Default::default()
                            };
                            (n.to_string(), e)
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_container_ip_is_that_of_its_network_mode_else_the_first_network_with_one() {
        let two = [("bridge", "172.17.0.2"), ("app", "10.1.0.7")];
        assert_eq!(
            container_ip(&inspected("app", &two)).as_deref(),
            Some("10.1.0.7")
        );
        assert_eq!(
            container_ip(&inspected("default", &two)).as_deref(),
            Some("10.1.0.7")
        );
        assert_eq!(container_ip(&inspected("host", &[("host", "")])), None);
        assert_eq!(container_ip(&ContainerInspectResponse::default()), None);
    }

    #[test]
    fn only_a_docker_handle_with_an_ip_gives_a_driver_address() {
        let state = |ip: &str| serde_json::json!({"container_id": "c1", "container_name": "n", "image": "i", "ip": ip});
        let handle = |driver: &str, ip: &str| TaskHandle {
            driver: driver.into(),
            driver_state: state(ip),
            ..Default::default()
        };
        assert_eq!(
            network_ip(&handle(NAME, "172.17.0.3")).as_deref(),
            Some("172.17.0.3")
        );
        assert_eq!(network_ip(&handle(NAME, "")), None);
        assert_eq!(network_ip(&handle("raw_exec", "172.17.0.3")), None);
        // A handle from before the field existed still reads.
        let old = TaskHandle {
            driver: NAME.into(),
            driver_state: serde_json::json!({"container_id": "c1", "container_name": "n", "image": "i"}),
            ..Default::default()
        };
        assert_eq!(network_ip(&old), None);
    }
}
