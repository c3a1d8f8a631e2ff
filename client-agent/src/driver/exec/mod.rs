//! The `exec` driver: runs a command isolated in its own PID, mount, IPC and UTS
//! namespaces, pivot_root'ed into its task directory, in its own cgroup with memory and
//! CPU limits, as an unprivileged user with a small capability set.
//!
//! Task config: `command` (string, required), `args` (list of strings), both
//! interpolated, and `cap_add` / `cap_drop` (lists of capability names). Inside the
//! task's root, the host paths of [`ExecConfig::chroot_env`] are bind-mounted read-only
//! (Nomad's default set: /bin, /etc, /lib, /lib32, /lib64, /sbin, /usr), the group's
//! shared directory is at `/alloc`, the task's own at `/local`, `/secrets`, `/tmp` (all
//! `nosuid,nodev`), with a minimal `/dev` and a `/proc` that shows only the task's
//! processes. The process launch itself is in [`super::isolate`]; cgroups in
//! [`crate::cgroups`].
//!
//! Who a task runs as, as in Nomad: its `user`, else the agent's `default_user`
//! (`nobody`); users on the agent's `user.denylist` (default `root,Administrator`) are
//! refused. Its capabilities: Nomad's default set changed by `cap_add` / `cap_drop`,
//! within the agent's `allow_caps` (see [`super::caps`]); `no_new_privs` is always set.
//!
//! The handle's pid is the task's init process (PID 1 of its namespace). The driver state
//! names its cgroup, so a restarted agent finds both again. Stopping signals every process
//! in the cgroup, then SIGKILLs init (which takes the whole namespace with it) and
//! whatever is left in the cgroup; the cgroup is removed when the task ends, after
//! reading whether the OOM killer struck.
//!
//! This file is the driver (start, wait, stop, signal, recover); beside it: `config`
//! (the agent's settings and who a task may run as), `enter` (running a command inside a
//! live task) and `usage` (reading the task cgroup's counters); `tests` runs stop, wait
//! and recover over `cgroups::fake`. The launch itself is in [`super::isolate`].

mod config;
mod enter;
mod usage;

pub use config::{ExecConfig, DEFAULT_USER_DENYLIST};

use config::lookup_user;
use enter::enter_task;
use usage::cgroup_usage;

use super::caps::{self, CapSet};
use super::isolate::{self, Bind, Launched, Spec};
use super::process;
use super::{Driver, DriverError, ExitResult, FsIsolation, TaskContext, TaskHandle};
use crate::cgroups::{self, Cgroup, Limits, Manager};
use api::DriverInfo;
use async_trait::async_trait;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "exec";

/// How long to wait for the task to vanish after SIGKILL.
const AFTER_KILL_WAIT: Duration = Duration::from_secs(5);

/// What the handle remembers besides the pid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ExecState {
    cgroup: String,
    cgroup_version: String,
    /// The cgroup's directories, for people and tests.
    cgroup_paths: Vec<PathBuf>,
    /// The task's capability set (bits), which commands run in the task get too.
    #[serde(default)]
    caps: u64,
}

#[derive(Debug)]
pub struct ExecDriver {
    config: ExecConfig,
    /// The machine's cgroups, or why there are none (the driver is then unhealthy).
    cgroups: Result<Arc<dyn Manager>, String>,
    /// Exit results of the tasks this driver started, keyed by (pid, start time).
    children: super::process::Children,
}

impl ExecDriver {
    /// The driver over this machine's cgroup hierarchy.
    pub fn new(config: ExecConfig) -> Self {
        let cgroups = cgroups::detect().map(|h| Arc::new(h) as Arc<dyn Manager>);
        ExecDriver::with_cgroups(config, cgroups)
    }

    /// The driver over the given cgroups (a fake one in tests), or none with the reason.
    pub fn with_cgroups(config: ExecConfig, cgroups: Result<Arc<dyn Manager>, String>) -> Self {
        ExecDriver {
            config,
            cgroups,
            children: Default::default(),
        }
    }

    fn cgroups(&self) -> Result<&Arc<dyn Manager>, DriverError> {
        self.cgroups
            .as_ref()
            .map_err(|e| DriverError::Start(format!("exec driver unavailable: {e}")))
    }

    fn cgroup_of(&self, handle: &TaskHandle) -> Option<Box<dyn Cgroup>> {
        let st: ExecState = serde_json::from_value(handle.driver_state.clone()).ok()?;
        Some(self.cgroups.as_ref().ok()?.cgroup(&st.cgroup))
    }

    /// What to launch for the task: its command as its user, with its capabilities, its
    /// root's binds and its log files; the task's own directories are chowned to it.
    fn spec(&self, ctx: &TaskContext) -> Result<(Spec, String, CapSet), DriverError> {
        let command = command(ctx)?;
        let args = super::config_string_list(ctx, NAME, "args")?;
        let user_name = match ctx.task.user.trim() {
            "" => self.config.default_user.as_str(),
            name => name,
        };
        let u = lookup_user(user_name)?;
        self.config.check_user(&ctx.task.name, user_name, &u)?;
        let task_caps = caps::task_set(
            self.config.allow_caps,
            &super::config_string_list(ctx, NAME, "cap_add")?,
            &super::config_string_list(ctx, NAME, "cap_drop")?,
        )
        .map_err(|e| DriverError::Config(format!("{NAME}: task {:?}: {e}", ctx.task.name)))?;
        // The task writes to its own directories.
        for d in [&ctx.dirs.local, &ctx.dirs.tmp, &ctx.dirs.secrets] {
            nix::unistd::chown(
                d,
                Some(nix::unistd::Uid::from_raw(u.uid)),
                Some(nix::unistd::Gid::from_raw(u.gid)),
            )
            .map_err(|e| DriverError::Start(format!("chown {}: {e}", d.display())))?;
        }
        let user = Some(u);
        let stdout = open_log(&ctx.dirs.stdout)?;
        let stderr = open_log(&ctx.dirs.stderr)?;
        let mut binds: Vec<Bind> = self
            .config
            .chroot_env
            .iter()
            .map(|(src, dst)| Bind {
                source: src.clone(),
                target: dst.clone(),
                readonly: true,
            })
            .collect();
        binds.push(Bind {
            source: ctx.dirs.shared.clone(),
            target: "/alloc".into(),
            readonly: false,
        });
        let spec = Spec {
            root: ctx.dirs.dir.clone(),
            binds,
            command: command.clone(),
            args,
            env: ctx
                .env
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: "/".into(),
            user,
            caps: task_caps,
            stdout,
            stderr,
        };
        Ok((spec, command, task_caps))
    }
}

fn command(ctx: &TaskContext) -> Result<String, DriverError> {
    match ctx.task.config.get("command") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(ctx.env.interpolate(s)),
        Some(other) if !other.is_null() => Err(DriverError::Config(format!(
            "{NAME}: config \"command\" must be a string, got {other}"
        ))),
        _ => Err(DriverError::Config(format!(
            "{NAME}: config \"command\" is missing"
        ))),
    }
}

fn open_log(path: &std::path::Path) -> Result<std::fs::File, DriverError> {
    crate::allocdir::open_log_append(path)
        .map_err(|e| DriverError::Start(format!("opening log file {}: {e}", path.display())))
}

/// Waits for our child `pid` to exit, without a thread: a pidfd becomes readable when
/// the process exits. Returns its raw wait status.
async fn wait_child(pid: i32) -> std::io::Result<i32> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: plain syscall; the fd it returns is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd >= 0 {
        // SAFETY: `fd` is a new pidfd nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd stays open and the same for the AsyncFd's whole life.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
        };
        if let Ok(afd) = registered {
            let _ = afd.readable().await;
        }
    }
    // Exited already (or no pidfd on this kernel: then this thread blocks until it does).
    tokio::task::spawn_blocking(move || {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                return Ok(status);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Reaps init, reads the task's status, cleans its cgroup up, and tells the result.
async fn reap(pid: i32, mut status_pipe: std::fs::File, cg: Box<dyn Cgroup>) -> ExitResult {
    let init_status = wait_child(pid).await;
    // init wrote the task's status before exiting; the pipe is closed now.
    let task_status = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4];
        status_pipe
            .read_exact(&mut buf)
            .ok()
            .map(|_| i32::from_ne_bytes(buf))
    })
    .await
    .ok()
    .flatten();
    let oom = match cgroups::destroy(cg.as_ref()).await {
        Ok(oom) => oom,
        Err(e) => {
            tracing::warn!(cgroup = cg.name(), error = %e, "cannot remove the task's cgroup");
            cg.oom_killed()
        }
    };
    let mut res = match (task_status, init_status) {
        (Some(st), _) | (None, Ok(st)) => {
            let (exit_code, signal) = isolate::decode_status(st);
            ExitResult {
                exit_code,
                signal,
                ..Default::default()
            }
        }
        (None, Err(e)) => ExitResult {
            exit_code: -1,
            err: Some(format!("waiting for the task failed: {e}")),
            ..Default::default()
        },
    };
    res.oom_killed = oom;
    res
}

#[async_trait]
impl Driver for ExecDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fingerprint(&self) -> Option<DriverInfo> {
        let unhealthy = |why: String| Some(super::unhealthy(true, why));
        if !nix::unistd::geteuid().is_root() {
            return unhealthy(
                "the exec driver needs the agent to run as root (namespaces, chroot, cgroups)"
                    .into(),
            );
        }
        let cgroups = match &self.cgroups {
            Ok(m) => Arc::clone(m),
            Err(e) => return unhealthy(format!("the exec driver needs cgroups: {e}")),
        };
        match tokio::task::spawn_blocking(move || cgroups.probe()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return unhealthy(e),
            Err(e) => return unhealthy(format!("cgroup probe failed: {e}")),
        }
        Some(super::healthy(Default::default()))
    }

    fn fs_isolation(&self) -> FsIsolation {
        FsIsolation::Chroot
    }

    async fn start(&self, ctx: &TaskContext) -> Result<TaskHandle, DriverError> {
        let cgroups = Arc::clone(self.cgroups()?);
        let (spec, command, task_caps) = self.spec(ctx)?;

        let res = ctx.task.resources.clone().unwrap_or_default();
        let limits = Limits::from_resources(&res);
        let cg_name = format!("{}.{}", ctx.alloc_id, ctx.task.name);
        // A cgroup left over from a start that crashed half-way is ours to clear.
        let stale = cgroups.cgroup(&cg_name);
        if stale.exists() {
            let _ = cgroups::destroy(stale.as_ref()).await;
        }
        let launched = tokio::task::spawn_blocking(move || -> Result<_, DriverError> {
            let cg = cgroups
                .create(&cg_name, &limits)
                .map_err(|e| DriverError::Start(format!("creating the task's cgroup: {e}")))?;
            let res = isolate::launch(spec, |pid| {
                cg.add_process(pid)?;
                // Better the OOM killer picks the task than its init. Lowering the score
                // needs CAP_SYS_RESOURCE; without it an OOM kill of init still ends the
                // task and is still reported, so this is best effort.
                if let Err(e) = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "-1000") {
                    tracing::debug!(pid, error = %e, "cannot protect the task's init from the OOM killer");
                }
                Ok(())
            });
            match res {
                Ok(l) => Ok((l, cg)),
                Err(e) => {
                    let _ = cg.remove();
                    let msg = format!("failed to start command {command}: {e}");
                    Err(match e.kind() {
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                            DriverError::Config(msg)
                        }
                        _ => DriverError::Start(msg),
                    })
                }
            }
        })
        .await
        .map_err(|e| DriverError::Start(format!("starting the task: {e}")))??;
        let (Launched { pid, status }, cg) = launched;
        let start_time = process::start_time(pid).unwrap_or(0);
        let state = ExecState {
            cgroup: cg.name().to_string(),
            cgroup_version: self.cgroups()?.version().to_string(),
            cgroup_paths: cg.paths(),
            caps: task_caps.bits(),
        };
        self.children
            .spawn_reaper(pid, start_time, reap(pid, status, cg));
        Ok(TaskHandle {
            driver: NAME.into(),
            task_id: ctx.task_id(),
            pid,
            pgid: pid,
            start_time,
            driver_state: serde_json::to_value(state).unwrap_or_default(),
        })
    }

    async fn wait(&self, handle: &TaskHandle) -> ExitResult {
        if let Some(res) = self.children.wait(handle, "the task reaper").await {
            return res;
        }
        let mut res = process::recovered_exit(handle).await;
        res.oom_killed = match self.cgroup_of(handle) {
            Some(cg) => cgroups::destroy(cg.as_ref()).await.unwrap_or(false),
            None => false,
        };
        res
    }

    async fn stop(
        &self,
        handle: &TaskHandle,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let sig = process::kill_signal_or_term(signal);
        let cg = self.cgroup_of(handle);
        let alive = || process::is_same_process_alive(handle.pid, handle.start_time);
        let init = nix::unistd::Pid::from_raw(handle.pid);
        if alive() {
            match &cg {
                // Everything but init, which would forward it to the task a second time.
                Some(cg) if !cg.procs().is_empty() => {
                    cgroups::signal_all(cg.as_ref(), sig, Some(handle.pid))
                }
                _ => {
                    let _ = nix::sys::signal::kill(init, sig);
                }
            }
            let gone = process::poll_until(timeout, Duration::from_millis(50), || !alive()).await;
            if !gone {
                // PID 1 dying takes its whole namespace with it.
                let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            }
        }
        if let Some(cg) = &cg {
            cgroups::signal_all(cg.as_ref(), Signal::SIGKILL, None);
            if !cgroups::wait_empty(cg.as_ref(), AFTER_KILL_WAIT).await {
                return Err(DriverError::Signal(format!(
                    "processes {:?} are still in the task's cgroup after SIGKILL",
                    cg.procs()
                )));
            }
        }
        if !process::poll_until(AFTER_KILL_WAIT, Duration::from_millis(25), || !alive()).await {
            return Err(DriverError::Signal(format!(
                "task init process {} is still alive after SIGKILL",
                handle.pid
            )));
        }
        Ok(())
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        // init forwards it to the task.
        process::signal_task(handle, signal)
    }

    /// Enters the task's mount, PID, IPC and UTS namespaces and its root, as the task's
    /// user, with the task's environment, then runs `cmd` there.
    async fn exec(
        &self,
        handle: &TaskHandle,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<super::ExecOutput, DriverError> {
        if cmd.is_empty() {
            return Err(DriverError::Exec("no command given".into()));
        }
        if !process::is_same_process_alive(handle.pid, handle.start_time) {
            return Err(DriverError::Exec("the task is not running".into()));
        }
        let caps = serde_json::from_value::<ExecState>(handle.driver_state.clone())
            .map(|s| CapSet::from_bits(s.caps))
            .unwrap_or(CapSet::EMPTY);
        let child = enter_task(handle.pid, cmd, caps).await?;
        super::collect_output(child, timeout).await
    }

    async fn usage(&self, handle: &TaskHandle) -> Result<super::UsageSample, DriverError> {
        let st: ExecState = serde_json::from_value(handle.driver_state.clone())
            .map_err(|e| DriverError::Exec(format!("the task handle names no cgroup: {e}")))?;
        if !process::is_same_process_alive(handle.pid, handle.start_time) {
            return Err(DriverError::Exec("the task is not running".into()));
        }
        Ok(cgroup_usage(&st.cgroup_paths))
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<bool, DriverError> {
        if self.children.get(handle).is_some() {
            return Ok(true);
        }
        if process::is_same_process_alive(handle.pid, handle.start_time) {
            return Ok(true);
        }
        // Gone while the agent was away: clear what it left.
        if let Some(cg) = self.cgroup_of(handle) {
            if let Err(e) = cgroups::destroy(cg.as_ref()).await {
                tracing::warn!(cgroup = cg.name(), error = %e, "cannot remove a dead task's cgroup");
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests;
