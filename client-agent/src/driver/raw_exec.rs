//! The `raw_exec` driver: runs a command as a plain process, without isolation, as the
//! agent's user.
//!
//! Task config: `command` (string, required) and `args` (list of strings), both
//! interpolated. A relative command containing a `/` is resolved against the task
//! directory; a bare name is looked up in `PATH`. The process runs in its own process
//! group with the task directory as its working directory and stdout/stderr appended to
//! `alloc/logs/<task>.stdout.0` / `.stderr.0`. Its environment is the agent's own (less
//! secrets such as tokens, as Nomad's `env.denylist`) plus the task's.
//!
//! Processes we spawned are reaped by a background task that publishes the exit status.
//! A process reattached after an agent restart is not our child: it is watched by
//! polling, and its exit status is unknown.

use super::process;
use super::{Driver, DriverError, ExitResult, TaskContext, TaskHandle};
use api::DriverInfo;
use async_trait::async_trait;
use nix::sys::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

pub const NAME: &str = "raw_exec";

/// How long to wait for the group to vanish after SIGKILL.
const AFTER_KILL_WAIT: Duration = Duration::from_secs(5);

/// Host variables a task never inherits (Nomad's default `env.denylist`).
const ENV_DENYLIST: &[&str] = &[
    "CONSUL_TOKEN",
    "CONSUL_HTTP_TOKEN",
    "VAULT_TOKEN",
    "NOMAD_TOKEN",
    "NOMAD_LICENSE",
    "DROVER_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

#[derive(Debug, Default)]
pub struct RawExecDriver {
    /// Exit statuses of the processes we spawned, keyed by (pid, start time).
    children: super::process::Children,
}

impl RawExecDriver {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The `command` and `args` of a raw_exec task, interpolated.
fn command_and_args(ctx: &TaskContext) -> Result<(PathBuf, Vec<String>), DriverError> {
    let cfg = &ctx.task.config;
    let command = match cfg.get("command") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => ctx.env.interpolate(s),
        Some(other) if !other.is_null() => {
            return Err(DriverError::Config(format!(
                "raw_exec: config \"command\" must be a string, got {other}"
            )))
        }
        _ => {
            return Err(DriverError::Config(
                "raw_exec: config \"command\" is missing".into(),
            ))
        }
    };
    let args = super::config_string_list(ctx, "raw_exec", "args")?;
    let path = PathBuf::from(&command);
    let path = if path.is_relative() && command.contains('/') {
        ctx.dirs.dir.join(path)
    } else {
        path
    };
    Ok((path, args))
}

fn open_log(path: &std::path::Path) -> Result<std::fs::File, DriverError> {
    crate::allocdir::open_log_append(path)
        .map_err(|e| DriverError::Start(format!("cannot open log file {}: {e}", path.display())))
}

fn exit_result(status: std::io::Result<std::process::ExitStatus>) -> ExitResult {
    match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(code), _) => ExitResult {
                exit_code: code as i64,
                signal: 0,
                err: None,
                oom_killed: false,
            },
            (None, Some(sig)) => ExitResult {
                exit_code: 128 + sig as i64,
                signal: sig as i64,
                err: None,
                oom_killed: false,
            },
            (None, None) => ExitResult {
                exit_code: -1,
                signal: 0,
                err: Some(format!("unexpected wait status {st:?}")),
                oom_killed: false,
            },
        },
        Err(e) => ExitResult {
            exit_code: -1,
            signal: 0,
            err: Some(format!("waiting for the task failed: {e}")),
            oom_killed: false,
        },
    }
}

/// Signals group `pgid` unless the pid that led it now belongs to someone else.
fn group_is_ours(handle: &TaskHandle) -> bool {
    match process::read_stat(handle.pid) {
        // The leader is still there: it must be the process we started.
        Some(st) if !matches!(st.state, 'Z' | 'X') => st.start_time == handle.start_time,
        // The leader is gone; while any member of its group lives, the kernel does not
        // hand out the group's ID, so the group is still ours.
        _ => true,
    }
}

#[async_trait]
impl Driver for RawExecDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fingerprint(&self) -> Option<DriverInfo> {
        Some(super::healthy(Default::default()))
    }

    async fn start(&self, ctx: &TaskContext) -> Result<TaskHandle, DriverError> {
        let (command, args) = command_and_args(ctx)?;
        let stdout = open_log(&ctx.dirs.stdout)?;
        let stderr = open_log(&ctx.dirs.stderr)?;
        let mut cmd = tokio::process::Command::new(&command);
        cmd.args(&args)
            .current_dir(&ctx.dirs.dir)
            .env_clear()
            .envs(
                std::env::vars().filter(|(k, _)| {
                    !ENV_DENYLIST.contains(&k.as_str()) && !k.starts_with("NOMAD_")
                }),
            )
            .envs(&ctx.env.vars)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| {
            let msg = format!("failed to start command {}: {e}", command.display());
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    DriverError::Config(msg)
                }
                _ => DriverError::Start(msg),
            }
        })?;
        let pid = child
            .id()
            .ok_or_else(|| DriverError::Start("the started process has no pid".into()))?
            as i32;
        // Our unreaped child keeps its /proc entry even if it already exited.
        let start_time = process::start_time(pid).unwrap_or(0);
        self.children.spawn_reaper(
            pid,
            start_time,
            async move { exit_result(child.wait().await) },
        );
        Ok(TaskHandle {
            driver: NAME.into(),
            task_id: ctx.task_id(),
            pid,
            pgid: pid,
            start_time,
            driver_state: serde_json::Value::Null,
        })
    }

    async fn wait(&self, handle: &TaskHandle) -> ExitResult {
        if let Some(res) = self.children.wait(handle, "the process reaper").await {
            return res;
        }
        process::recovered_exit(handle).await
    }

    async fn stop(
        &self,
        handle: &TaskHandle,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let sig = process::kill_signal_or_term(signal);
        if !process::group_alive(handle.pgid) || !group_is_ours(handle) {
            return Ok(());
        }
        process::signal_group(handle.pgid, sig)
            .map_err(|e| DriverError::Signal(format!("sending {sig} to the task: {e}")))?;
        if process::wait_group_gone(handle.pgid, timeout).await {
            return Ok(());
        }
        process::signal_group(handle.pgid, Signal::SIGKILL)
            .map_err(|e| DriverError::Signal(format!("sending SIGKILL to the task: {e}")))?;
        if process::wait_group_gone(handle.pgid, AFTER_KILL_WAIT).await {
            Ok(())
        } else {
            Err(DriverError::Signal(format!(
                "process group {} is still alive after SIGKILL",
                handle.pgid
            )))
        }
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        process::signal_task(handle, signal)
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<bool, DriverError> {
        if self.children.get(handle).is_some() {
            return Ok(true);
        }
        Ok(
            process::is_same_process_alive(handle.pid, handle.start_time)
                && process::read_stat(handle.pid).is_some_and(|st| st.pgrp == handle.pgid),
        )
    }

    /// Runs `cmd` with the task's own environment and working directory, read from
    /// `/proc` (so it is exactly what the task got, also after an agent restart).
    async fn exec(
        &self,
        handle: &TaskHandle,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<super::ExecOutput, DriverError> {
        let (program, args) = cmd
            .split_first()
            .ok_or_else(|| DriverError::Exec("no command given".into()))?;
        if !process::is_same_process_alive(handle.pid, handle.start_time) {
            return Err(DriverError::Exec("the task is not running".into()));
        }
        let env = process::environ(handle.pid)
            .map_err(|e| DriverError::Exec(format!("reading the task's environment: {e}")))?;
        let cwd = std::fs::read_link(format!("/proc/{}/cwd", handle.pid))
            .map_err(|e| DriverError::Exec(format!("reading the task's directory: {e}")))?;
        let child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DriverError::Exec(format!("starting {program:?}: {e}")))?;
        super::collect_output(child, timeout).await
    }

    async fn usage(&self, handle: &TaskHandle) -> Result<super::UsageSample, DriverError> {
        let pids = process::group_members(handle.pgid);
        if pids.is_empty() {
            return Err(DriverError::Exec("the task is not running".into()));
        }
        Ok(process::usage_of(&pids))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::allocdir::AllocDir;
    use crate::driver::EXIT_UNKNOWN_AFTER_RECOVERY;
    use crate::taskenv::TaskEnv;
    use std::collections::BTreeMap;
    use std::time::Instant;

    /// A task context for `sh -c script` in a fresh alloc dir under `root`.
    pub(crate) fn sh_task(root: &std::path::Path, name: &str, script: &str) -> TaskContext {
        let ad = AllocDir::new(root, "alloc-1");
        let dirs = ad.build_task(name).unwrap();
        let task = api::Task {
            name: name.into(),
            driver: NAME.into(),
            config: BTreeMap::from([
                ("command".into(), serde_json::json!("/bin/sh")),
                ("args".into(), serde_json::json!(["-c", script])),
            ]),
            env: BTreeMap::from([("WHO".into(), "${NOMAD_TASK_NAME}".into())]),
            ..Default::default()
        };
        let alloc = api::Allocation {
            id: "alloc-1".into(),
            ..Default::default()
        };
        let env = TaskEnv::build(&api::Node::default(), &alloc, &task, &dirs);
        TaskContext {
            alloc_id: "alloc-1".into(),
            task,
            dirs,
            env,
            ports: vec![],
        }
    }

    /// Kills a test's process group whatever happened in the test.
    pub(crate) struct GroupGuard(pub i32);
    impl Drop for GroupGuard {
        fn drop(&mut self) {
            let _ = process::signal_group(self.0, Signal::SIGKILL);
        }
    }

    async fn wait_for_file_content(path: &std::path::Path, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn raw_exec_reports_exit_code_and_captures_output() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = sh_task(
            tmp.path(),
            "t",
            "echo out-$WHO; echo err-$NOMAD_ALLOC_ID >&2; pwd; exit 3",
        );
        let d = RawExecDriver::new();
        let h = d.start(&ctx).await.unwrap();
        let _g = GroupGuard(h.pgid);
        assert_eq!(h.pgid, h.pid);
        let res = tokio::time::timeout(Duration::from_secs(10), d.wait(&h))
            .await
            .unwrap();
        assert_eq!(res.exit_code, 3);
        assert!(!res.successful());
        let out = std::fs::read_to_string(&ctx.dirs.stdout).unwrap();
        assert!(out.contains("out-t"), "{out}");
        assert!(
            out.contains(&ctx.dirs.dir.display().to_string()),
            "cwd: {out}"
        );
        let err = std::fs::read_to_string(&ctx.dirs.stderr).unwrap();
        assert!(err.contains("err-alloc-1"), "{err}");
    }

    #[tokio::test]
    async fn raw_exec_reports_success_and_signals() {
        let tmp = tempfile::tempdir().unwrap();
        let d = RawExecDriver::new();
        let ok = d.start(&sh_task(tmp.path(), "ok", "exit 0")).await.unwrap();
        assert!(d.wait(&ok).await.successful());
        let killed = d
            .start(&sh_task(tmp.path(), "k", "kill -9 $$"))
            .await
            .unwrap();
        let res = d.wait(&killed).await;
        assert_eq!(res.signal, 9);
        assert_eq!(res.exit_code, 137);
    }

    #[tokio::test]
    async fn missing_command_is_an_unrecoverable_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ctx = sh_task(tmp.path(), "t", "true");
        ctx.task
            .config
            .insert("command".into(), serde_json::json!("/no/such/binary"));
        let err = RawExecDriver::new().start(&ctx).await.unwrap_err();
        assert!(!err.recoverable());
        assert!(err.to_string().contains("/no/such/binary"), "{err}");
        ctx.task.config.remove("command");
        let err = RawExecDriver::new().start(&ctx).await.unwrap_err();
        assert!(err.to_string().contains("\"command\" is missing"), "{err}");
    }

    #[tokio::test]
    async fn command_and_args_are_interpolated() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ctx = sh_task(tmp.path(), "interp", "");
        ctx.task.config.insert(
            "args".into(),
            serde_json::json!([
                "-c",
                "echo \"$0 $1\"",
                "${NOMAD_TASK_NAME}",
                "${env[\"WHO\"]}"
            ]),
        );
        let d = RawExecDriver::new();
        let h = d.start(&ctx).await.unwrap();
        assert!(d.wait(&h).await.successful());
        let out = std::fs::read_to_string(&ctx.dirs.stdout).unwrap();
        assert_eq!(out.trim(), "interp interp");
    }

    #[tokio::test]
    async fn stop_escalates_to_sigkill_when_term_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = sh_task(tmp.path(), "stubborn", "trap '' TERM; echo ready; sleep 30");
        let d = RawExecDriver::new();
        let h = d.start(&ctx).await.unwrap();
        let _g = GroupGuard(h.pgid);
        wait_for_file_content(&ctx.dirs.stdout, "ready").await;
        let started = Instant::now();
        d.stop(&h, "SIGTERM", Duration::from_millis(500))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(450),
            "SIGKILL came early: {took:?}"
        );
        let res = tokio::time::timeout(Duration::from_secs(10), d.wait(&h))
            .await
            .unwrap();
        assert_eq!(res.signal, 9, "{res:?}");
        assert!(!process::group_alive(h.pgid));
    }

    #[tokio::test]
    async fn stop_with_term_ends_a_cooperative_task_quickly() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = sh_task(tmp.path(), "polite", "exec sleep 30");
        let d = RawExecDriver::new();
        let h = d.start(&ctx).await.unwrap();
        let _g = GroupGuard(h.pgid);
        let started = Instant::now();
        d.stop(&h, "", Duration::from_secs(20)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(d.wait(&h).await.signal, 15);
    }

    #[tokio::test]
    async fn stop_kills_grandchildren() {
        let tmp = tempfile::tempdir().unwrap();
        // The grandchild ignores TERM and outlives its parent's shell.
        let ctx = sh_task(
            tmp.path(),
            "family",
            "(trap '' TERM; sleep 30) & echo $! > grandchild.pid; wait",
        );
        let d = RawExecDriver::new();
        let h = d.start(&ctx).await.unwrap();
        let _g = GroupGuard(h.pgid);
        let pid_file = ctx.dirs.dir.join("grandchild.pid");
        let text = wait_for_file_content(&pid_file, "\n").await;
        let grandchild: i32 = text.trim().parse().unwrap();
        let gc_start = process::start_time(grandchild).unwrap();
        d.stop(&h, "SIGTERM", Duration::from_millis(300))
            .await
            .unwrap();
        assert!(!process::is_same_process_alive(grandchild, gc_start));
        assert!(!process::group_alive(h.pgid));
    }

    #[tokio::test]
    async fn recover_tells_a_live_process_from_a_dead_or_reused_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = sh_task(tmp.path(), "live", "exec sleep 30");
        let d = RawExecDriver::new();
        let h = d.start(&ctx).await.unwrap();
        let _g = GroupGuard(h.pgid);
        // A fresh driver (as after an agent restart) does not know the process.
        let fresh = RawExecDriver::new();
        assert!(fresh.recover(&h).await.unwrap());
        let mut reused = h.clone();
        reused.start_time += 1;
        assert!(!fresh.recover(&reused).await.unwrap());
        // The recovered process is watched by polling; its exit status is unknown.
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { RawExecDriver::new().wait(&h).await }
        });
        fresh
            .stop(&h, "SIGTERM", Duration::from_secs(5))
            .await
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.exit_code, -1);
        assert_eq!(res.err.as_deref(), Some(EXIT_UNKNOWN_AFTER_RECOVERY));
        assert!(!fresh.recover(&h).await.unwrap());
    }
}
