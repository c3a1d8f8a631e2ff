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

use super::caps::{self, CapSet};
use super::isolate::{self, Bind, Launched, Privileges, Spec, User};
use super::process::{self, parse_signal};
use super::{
    Driver, DriverError, ExitResult, FsIsolation, TaskContext, TaskHandle,
    EXIT_UNKNOWN_AFTER_RECOVERY,
};
use crate::cgroups::{self, Cgroup, Hierarchy, Limits};
use api::DriverInfo;
use async_trait::async_trait;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

pub const NAME: &str = "exec";

/// How often a recovered task is checked for liveness.
const RECOVERED_POLL: Duration = Duration::from_millis(250);
/// How long to wait for the task to vanish after SIGKILL.
const AFTER_KILL_WAIT: Duration = Duration::from_secs(5);

/// The exec driver's agent-level configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Host path -> path inside the task's root, bind-mounted read-only.
    pub chroot_env: Vec<(PathBuf, PathBuf)>,
    /// Who a task without `user` runs as (`plugin "exec" { config { default_user } }`).
    pub default_user: String,
    /// The capabilities a task may have (`plugin "exec" { config { allow_caps } }`).
    pub allow_caps: CapSet,
    /// Users no task may run as (Nomad's client option `user.denylist`); `root` here
    /// refuses uid 0 under any name.
    pub user_denylist: Vec<String>,
}

/// Nomad's default `user.denylist`.
pub const DEFAULT_USER_DENYLIST: &str = "root,Administrator";
/// Nomad's default `user.checked_drivers`.
const DEFAULT_CHECKED_DRIVERS: &str = "exec,qemu,java";

impl Default for ExecConfig {
    fn default() -> Self {
        let same = |p: &str| (PathBuf::from(p), PathBuf::from(p));
        ExecConfig {
            chroot_env: ["/bin", "/etc", "/lib", "/lib32", "/lib64", "/sbin", "/usr"]
                .into_iter()
                .map(same)
                .collect(),
            default_user: "nobody".into(),
            allow_caps: CapSet::nomad_defaults(),
            user_denylist: comma_list(DEFAULT_USER_DENYLIST),
        }
    }
}

fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl ExecConfig {
    /// The configuration from an agent file: `plugin "exec" { config { ... } }` (keys
    /// `default_user`, `allow_caps`) and the client's `options` (`user.denylist`,
    /// `user.checked_drivers`). Unknown keys and wrong types are errors that say so.
    pub fn from_agent_config(
        plugin: Option<&BTreeMap<String, serde_json::Value>>,
        client_options: &BTreeMap<String, String>,
    ) -> Result<ExecConfig, String> {
        let mut c = ExecConfig::default();
        for (k, v) in plugin.into_iter().flatten() {
            let what = format!("plugin \"exec\" config {k:?}");
            match k.as_str() {
                "default_user" => match v.as_str().map(str::trim) {
                    Some(u) if !u.is_empty() => c.default_user = u.to_string(),
                    _ => return Err(format!("{what} must be a user name, got {v}")),
                },
                "allow_caps" => {
                    let names: Vec<String> = match v {
                        serde_json::Value::Array(items) => items
                            .iter()
                            .map(|i| {
                                i.as_str().map(String::from).ok_or_else(|| {
                                    format!("{what} must be a list of capability names, got {v}")
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        _ => {
                            return Err(format!(
                                "{what} must be a list of capability names, got {v}"
                            ))
                        }
                    };
                    c.allow_caps = CapSet::parse(&names, &what)?;
                }
                _ => {
                    return Err(format!(
                        "plugin \"exec\" config has an unknown setting {k:?}; the exec \
                         driver knows default_user and allow_caps"
                    ))
                }
            }
        }
        let checked = client_options
            .get("user.checked_drivers")
            .map(String::as_str)
            .unwrap_or(DEFAULT_CHECKED_DRIVERS);
        c.user_denylist = if comma_list(checked).iter().any(|d| d == NAME) {
            comma_list(
                client_options
                    .get("user.denylist")
                    .map(String::as_str)
                    .unwrap_or(DEFAULT_USER_DENYLIST),
            )
        } else {
            vec![]
        };
        Ok(c)
    }

    /// Refuses users on the denylist (and uid 0 under any name when `root` is on it).
    fn check_user(&self, task: &str, name: &str, user: &User) -> Result<(), DriverError> {
        let denied = self.user_denylist.iter().any(|d| d == name)
            || (user.uid == 0 && self.user_denylist.iter().any(|d| d == "root"));
        if !denied {
            return Ok(());
        }
        Err(DriverError::Config(format!(
            "{NAME}: task {task:?} may not run as user {name:?} (uid {}): this agent refuses \
             the users {} for exec tasks (client option \"user.denylist\"); set the task's \
             user to an unprivileged one, or take {name:?} off the agent's user.denylist",
            user.uid,
            self.user_denylist.join(", ")
        )))
    }
}

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
    hierarchy: Result<Hierarchy, String>,
    /// Exit results of the tasks this driver started, keyed by (pid, start time).
    children: super::process::Children,
}

impl ExecDriver {
    pub fn new(config: ExecConfig) -> Self {
        ExecDriver {
            config,
            hierarchy: cgroups::detect(),
            children: Default::default(),
        }
    }

    fn hierarchy(&self) -> Result<&Hierarchy, DriverError> {
        self.hierarchy
            .as_ref()
            .map_err(|e| DriverError::Start(format!("exec driver unavailable: {e}")))
    }

    fn cgroup_of(&self, handle: &TaskHandle) -> Option<Box<dyn Cgroup>> {
        let st: ExecState = serde_json::from_value(handle.driver_state.clone()).ok()?;
        Some(self.hierarchy.as_ref().ok()?.cgroup(&st.cgroup))
    }
}

fn string_list(ctx: &TaskContext, key: &str) -> Result<Vec<String>, DriverError> {
    match ctx.task.config.get(key) {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(ctx.env.interpolate(s)),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                serde_json::Value::Bool(b) => Ok(b.to_string()),
                other => Err(DriverError::Config(format!(
                    "{NAME}: config {key:?} must be a list of strings, got {other}"
                ))),
            })
            .collect(),
        Some(other) => Err(DriverError::Config(format!(
            "{NAME}: config {key:?} must be a list of strings, got {other}"
        ))),
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

/// Looks `name` up in the host's user database (the task's /etc is the host's).
fn lookup_user(name: &str) -> Result<User, DriverError> {
    let u = nix::unistd::User::from_name(name)
        .map_err(|e| DriverError::Start(format!("looking up user {name:?}: {e}")))?
        .ok_or_else(|| DriverError::Config(format!("user {name:?} does not exist on this node")))?;
    let cname = std::ffi::CString::new(name)
        .map_err(|_| DriverError::Config(format!("invalid user name {name:?}")))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![u.gid.as_raw()]);
    Ok(User {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
    })
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
        let unhealthy = |why: String| {
            Some(DriverInfo {
                detected: true,
                healthy: false,
                health_description: why,
                attributes: Default::default(),
            })
        };
        if !nix::unistd::geteuid().is_root() {
            return unhealthy(
                "the exec driver needs the agent to run as root (namespaces, chroot, cgroups)"
                    .into(),
            );
        }
        let h = match &self.hierarchy {
            Ok(h) => h,
            Err(e) => return unhealthy(format!("the exec driver needs cgroups: {e}")),
        };
        let h2 = h.clone();
        match tokio::task::spawn_blocking(move || h2.probe()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return unhealthy(e),
            Err(e) => return unhealthy(format!("cgroup probe failed: {e}")),
        }
        Some(DriverInfo {
            detected: true,
            healthy: true,
            health_description: "Healthy".into(),
            attributes: Default::default(),
        })
    }

    fn fs_isolation(&self) -> FsIsolation {
        FsIsolation::Chroot
    }

    async fn start(&self, ctx: &TaskContext) -> Result<TaskHandle, DriverError> {
        let hierarchy = self.hierarchy()?.clone();
        let command = command(ctx)?;
        let args = string_list(ctx, "args")?;
        let user_name = match ctx.task.user.trim() {
            "" => self.config.default_user.as_str(),
            name => name,
        };
        let u = lookup_user(user_name)?;
        self.config.check_user(&ctx.task.name, user_name, &u)?;
        let task_caps = caps::task_set(
            self.config.allow_caps,
            &string_list(ctx, "cap_add")?,
            &string_list(ctx, "cap_drop")?,
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

        let res = ctx.task.resources.clone().unwrap_or_default();
        let limits = Limits::from_resources(&res);
        let cg_name = format!("{}.{}", ctx.alloc_id, ctx.task.name);
        // A cgroup left over from a start that crashed half-way is ours to clear.
        let stale = hierarchy.cgroup(&cg_name);
        if stale.exists() {
            let _ = cgroups::destroy(stale.as_ref()).await;
        }
        let launched = tokio::task::spawn_blocking(move || -> Result<_, DriverError> {
            let cg = hierarchy
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
            cgroup_version: self.hierarchy()?.version().to_string(),
            cgroup_paths: cg.paths(),
            caps: task_caps.bits(),
        };
        let (tx, rx) = watch::channel(None);
        self.children.insert(pid, start_time, rx);
        tokio::spawn(async move {
            let res = reap(pid, status, cg).await;
            let _ = tx.send(Some(res));
        });
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
        if let Some(mut rx) = self.children.get(handle) {
            let res = match rx.wait_for(|r| r.is_some()).await {
                Ok(r) => r.clone().expect("checked by wait_for"),
                Err(_) => ExitResult {
                    exit_code: -1,
                    err: Some("the task reaper went away".into()),
                    ..Default::default()
                },
            };
            self.children.forget(handle);
            return res;
        }
        // Recovered after an agent restart: not our child, so its status is unknown.
        while process::is_same_process_alive(handle.pid, handle.start_time) {
            tokio::time::sleep(RECOVERED_POLL).await;
        }
        let oom = match self.cgroup_of(handle) {
            Some(cg) => cgroups::destroy(cg.as_ref()).await.unwrap_or(false),
            None => false,
        };
        ExitResult {
            exit_code: -1,
            err: Some(EXIT_UNKNOWN_AFTER_RECOVERY.into()),
            oom_killed: oom,
            ..Default::default()
        }
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
            let deadline = tokio::time::Instant::now() + timeout;
            while alive() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if alive() {
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
        let deadline = tokio::time::Instant::now() + AFTER_KILL_WAIT;
        while alive() {
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Signal(format!(
                    "task init process {} is still alive after SIGKILL",
                    handle.pid
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        let sig = parse_signal(signal)
            .ok_or_else(|| DriverError::Signal(format!("unknown signal {signal:?}")))?;
        if !process::is_same_process_alive(handle.pid, handle.start_time) {
            return Err(DriverError::Signal("the task is not running".into()));
        }
        // init forwards it to the task.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(handle.pid), sig)
            .map_err(|e| DriverError::Signal(format!("sending {sig} to the task: {e}")))
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
        let child = enter_task(handle.pid, cmd, caps)?;
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

/// The task's first process under its init, whose environment and credentials an exec
/// takes (init itself if the task cannot be found).
fn task_process(init: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(init)
}

/// Effective uid, gid and supplementary groups of `pid`, from `/proc/<pid>/status`.
/// `None` when it cannot be read (the task is gone).
fn ids_of(pid: i32) -> Option<(u32, u32, Vec<libc::gid_t>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key));
    let second = |key: &str| -> Option<u32> { field(key)?.split_whitespace().nth(1)?.parse().ok() };
    let groups = field("Groups:")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    Some((second("Uid:")?, second("Gid:")?, groups))
}

/// Spawns `cmd` inside the namespaces and root of the task whose init is `init`, as the
/// task's user with the task's capabilities and `no_new_privs`.
///
/// The forked child (single-threaded, so `setns` into a mount namespace is allowed) joins
/// the IPC, UTS, PID and mount namespaces through descriptors opened beforehand, enters
/// the task's root, and forks once more, since joining a PID namespace only applies to
/// children: the grandchild runs the command as PID N inside the task's namespace while
/// the child waits and exits with its status. Only raw system calls run after the fork.
fn enter_task(
    init: i32,
    cmd: &[String],
    caps: CapSet,
) -> Result<tokio::process::Child, DriverError> {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt as _;
    let task = task_process(init);
    let open = |p: String| -> Result<OwnedFd, DriverError> {
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(|e| DriverError::Exec(format!("opening {p}: {e}")))
    };
    let ns: Vec<OwnedFd> = ["ipc", "uts", "pid", "mnt"]
        .iter()
        .map(|n| open(format!("/proc/{init}/ns/{n}")))
        .collect::<Result<_, _>>()?;
    let root = open(format!("/proc/{task}/root"))?;
    let env = process::environ(task)
        .map_err(|e| DriverError::Exec(format!("reading the task's environment: {e}")))?;
    let (uid, gid, groups) =
        ids_of(task).ok_or_else(|| DriverError::Exec("the task is not running".into()))?;
    let privileges = Privileges {
        ids: Some((uid, gid)),
        caps: caps.bits(),
        last_cap: caps::kernel_last_cap(),
    };
    let ns_fds: Vec<i32> = ns.iter().map(|f| f.as_raw_fd()).collect();
    let root_fd = root.as_raw_fd();
    let mut command = std::process::Command::new(&cmd[0]);
    command
        .args(&cmd[1..])
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs between fork and execve in a single-threaded child and
    // only makes raw system calls on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            for fd in &ns_fds {
                if libc::setns(*fd, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::fchdir(root_fd) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if isolate::drop_privileges(&privileges, &groups).is_err() {
                return Err(std::io::Error::last_os_error());
            }
            // A raw fork (clone with SIGCHLD): glibc's fork takes locks.
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if pid == 0 {
                return Ok(());
            }
            let mut status = 0;
            loop {
                let r = libc::waitpid(pid as i32, &mut status, 0);
                if r == pid as i32 {
                    break;
                }
                if r < 0 && *libc::__errno_location() != libc::EINTR {
                    libc::_exit(127);
                }
            }
            if libc::WIFEXITED(status) {
                libc::_exit(libc::WEXITSTATUS(status));
            }
            libc::_exit(128 + libc::WTERMSIG(status));
        });
    }
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::Exec(format!("running {:?} in the task: {e}", cmd[0])))?;
    drop(ns);
    drop(root);
    Ok(child)
}

/// Reads one number from a cgroup file.
fn read_u64(p: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Memory and CPU of a task's cgroup (v2 or v1, whichever directories it has).
fn cgroup_usage(paths: &[PathBuf]) -> super::UsageSample {
    let mut u = super::UsageSample::default();
    for dir in paths {
        let stat = |f: &str, k: &str| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|t| cgroups::flat_keyed(&t, k))
        };
        if let Some(cur) = read_u64(&dir.join("memory.current")) {
            // v2
            u.usage_bytes = cur;
            u.max_usage_bytes = read_u64(&dir.join("memory.peak")).unwrap_or(0);
            u.rss_bytes = stat("memory.stat", "anon").unwrap_or(0);
            u.cache_bytes = stat("memory.stat", "file").unwrap_or(0);
            u.swap_bytes = read_u64(&dir.join("memory.swap.current")).unwrap_or(0);
            u.measured_memory = vec!["RSS", "Cache", "Swap", "Usage"];
        }
        if let Some(usec) = stat("cpu.stat", "usage_usec") {
            u.cpu_total_ns = usec * 1000;
            u.cpu_user_ns = stat("cpu.stat", "user_usec").unwrap_or(0) * 1000;
            u.cpu_system_ns = stat("cpu.stat", "system_usec").unwrap_or(0) * 1000;
            u.throttled_periods = stat("cpu.stat", "nr_throttled").unwrap_or(0);
            u.throttled_time_ns = stat("cpu.stat", "throttled_usec").unwrap_or(0) * 1000;
        }
        if let Some(usage) = read_u64(&dir.join("memory.usage_in_bytes")) {
            // v1 memory controller
            u.usage_bytes = usage;
            u.max_usage_bytes = read_u64(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
            u.rss_bytes = stat("memory.stat", "rss").unwrap_or(0);
            u.cache_bytes = stat("memory.stat", "cache").unwrap_or(0);
            u.swap_bytes = stat("memory.stat", "swap").unwrap_or(0);
            u.measured_memory = vec!["RSS", "Cache", "Swap", "Usage", "Max Usage"];
        }
        if let Some(ns) = read_u64(&dir.join("cpuacct.usage")) {
            // v1 cpuacct: user/system are in clock ticks.
            // SAFETY: sysconf has no preconditions.
            let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            u.cpu_total_ns = ns;
            u.cpu_user_ns = stat("cpuacct.stat", "user").unwrap_or(0) * 1_000_000_000 / tick;
            u.cpu_system_ns = stat("cpuacct.stat", "system").unwrap_or(0) * 1_000_000_000 / tick;
        }
        if let Some(n) = stat("cpu.stat", "nr_throttled") {
            u.throttled_periods = n;
            if let Some(t) = stat("cpu.stat", "throttled_time") {
                u.throttled_time_ns = t;
            }
        }
    }
    u.measured_cpu = vec![
        "System Mode",
        "User Mode",
        "Throttled Periods",
        "Throttled Time",
        "Percent",
    ];
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32) -> User {
        User {
            uid,
            gid: uid,
            groups: vec![uid],
        }
    }

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn root_is_refused_by_default_under_any_name() {
        let c = ExecConfig::default();
        assert_eq!(c.default_user, "nobody");
        let e = c.check_user("t", "root", &user(0)).unwrap_err();
        assert!(!e.recoverable());
        let msg = e.to_string();
        assert!(
            msg.starts_with("exec: task \"t\" may not run as user \"root\" (uid 0)")
                && msg.contains("user.denylist"),
            "{msg}"
        );
        // Another name for uid 0 is still root.
        assert!(c.check_user("t", "toor", &user(0)).is_err());
        assert!(c.check_user("t", "nobody", &user(65534)).is_ok());
        assert!(c.check_user("t", "Administrator", &user(1000)).is_err());
    }

    #[test]
    fn the_denylist_and_checked_drivers_come_from_the_client_options() {
        let c =
            ExecConfig::from_agent_config(None, &options(&[("user.denylist", "ubuntu")])).unwrap();
        assert!(c.check_user("t", "ubuntu", &user(1000)).is_err());
        assert!(c.check_user("t", "root", &user(0)).is_ok());
        let c = ExecConfig::from_agent_config(None, &options(&[("user.checked_drivers", "java")]))
            .unwrap();
        assert!(c.user_denylist.is_empty());
        assert!(c.check_user("t", "root", &user(0)).is_ok());
    }

    #[test]
    fn plugin_settings_are_typed_and_unknown_ones_refused() {
        let cfg = |v: serde_json::Value| {
            let m: BTreeMap<String, serde_json::Value> = serde_json::from_value(v).unwrap();
            ExecConfig::from_agent_config(Some(&m), &BTreeMap::new())
        };
        let c =
            cfg(serde_json::json!({ "default_user": "daemon", "allow_caps": ["all"] })).unwrap();
        assert_eq!(c.default_user, "daemon");
        assert_eq!(c.allow_caps, CapSet::all());
        let e = cfg(serde_json::json!({ "default_user": "" })).unwrap_err();
        assert!(e.contains("\"default_user\" must be a user name"), "{e}");
        let e = cfg(serde_json::json!({ "allow_caps": "chown" })).unwrap_err();
        assert!(e.contains("must be a list of capability names"), "{e}");
        let e = cfg(serde_json::json!({ "no_pivot": true })).unwrap_err();
        assert!(e.contains("unknown setting \"no_pivot\""), "{e}");
    }
}
