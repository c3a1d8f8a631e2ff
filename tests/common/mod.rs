//! A small harness that runs the real `drover` binary: agents on free loopback ports with
//! their own temporary data dirs, CLI invocations, and bounded polling.
//!
//! Every agent is killed when its guard drops, and every task process it started (found by
//! its working directory under the test's data dir) is killed too, so a failing test leaves
//! nothing behind.

#![allow(dead_code)]

pub mod cluster;
pub mod loadgen;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn drover_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drover"))
}

pub use loadtest::free_port;

/// A one-task raw_exec service job: group "main", task "sleep" (`kill_timeout` 2s) running
/// `script` under `sh -c` and asking for `cpu` MHz and `memory` MB.
pub fn raw_exec_job(name: &str, script: &str, cpu: u32, memory: u32) -> String {
    format!(
        r#"
job "{name}" {{
  datacenters = ["dc1"]
  type = "service"

  group "main" {{
    count = 1

    task "sleep" {{
      driver = "raw_exec"
      kill_timeout = "2s"

      config {{
        command = "/bin/sh"
        args    = ["-c", {script:?}]
      }}

      resources {{
        cpu    = {cpu}
        memory = {memory}
      }}
    }}
  }}
}}
"#
    )
}

/// The real interpreter behind `python3` (a pyenv shim may not run under a bare env).
/// `None` (with a loud note) on a developer's machine without it; under `CI=true` a
/// missing python3 fails the test instead of skipping it.
pub fn python3() -> Option<String> {
    let found = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is missing, and CI=true: the service tests must run in CI"
        );
        eprintln!("\n!!!!! SKIPPED: python3 is missing !!!!!\n");
    }
    found
}

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `drover agent -dev` process with its own data dir and port.
pub struct DevAgent {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    env: Vec<(String, String)>,
    /// An agent configuration file's text, passed with `-config`.
    config: Option<String>,
    /// More flags for `drover agent -dev` (`-acl-enabled`).
    extra_args: Vec<String>,
}

impl DevAgent {
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// A dev agent that also reads `config` as an agent configuration file (`-config`).
    pub fn start_with_config(config: &str) -> Self {
        Self::start_with(&[], Some(config))
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, None)
    }

    /// `drover agent -dev -acl-enabled` (with an agent configuration file's text, if any).
    pub fn start_acl(config: Option<&str>) -> Self {
        Self::start_full(&[], config, &["-acl-enabled"])
    }

    fn start_with(env: &[(&str, &str)], config: Option<&str>) -> Self {
        Self::start_full(env, config, &[])
    }

    fn start_full(env: &[(&str, &str)], config: Option<&str>, extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("drover-test-")
            .tempdir()
            .expect("temp dir");
        let mut a = DevAgent {
            dir,
            port: free_port(),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config: config.map(str::to_string),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        a.spawn();
        a
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let mut cmd = Command::new(drover_bin());
        cmd.args(["agent", "-dev", "-data-dir"])
            .arg(self.data_dir())
            .args(["-http-port", &self.port.to_string()])
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(config) = &self.config {
            let path = self.dir.path().join("agent-config.hcl");
            std::fs::write(&path, config).expect("agent config file");
            cmd.arg("-config").arg(path);
        }
        self.child = Some(cmd.spawn().expect("spawn drover agent"));
        let addr = self.addr();
        // Up once `/v1/agent/health` is a 200: its Raft has a leader (itself), which
        // writes and non-stale reads need, and its client has registered the node as
        // ready, so a job run at once has somewhere to go and the node table is still.
        wait_for(
            "the agent's leader and ready node (/v1/agent/health)",
            Duration::from_secs(30),
            || {
                self.check_alive();
                let r = reqwest::blocking::get(format!("{addr}/v1/agent/health")).ok()?;
                r.status().is_success().then_some(())
            },
        );
    }

    fn check_alive(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "drover agent exited early with {status}; log:\n{}",
                    self.log()
                );
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    /// SIGKILL the agent: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the agent and wait (bounded) for it to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("agent did not exit within 20s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Run a `drover` CLI command against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(drover_bin())
            .args(args)
            .env("NOMAD_ADDR", self.addr())
            .stdin(Stdio::null())
            .output()
            .expect("run drover")
    }

    /// Wait (30 s at most) until `drover node status` shows the dev agent's node ready.
    pub fn wait_node_ready(&self) {
        wait_for("the dev node to be ready", Duration::from_secs(30), || {
            stdout(&self.cli(&["node", "status"]))
                .contains("ready")
                .then_some(())
        });
    }

    /// Write `hcl` to `<file_name>` in the agent's dir and `drover job run <args> <file>`.
    pub fn run_job(&self, file_name: &str, hcl: &str, args: &[&str]) -> Output {
        let file = self.dir.path().join(file_name);
        std::fs::write(&file, hcl).unwrap();
        let mut argv = vec!["job", "run"];
        argv.extend_from_slice(args);
        argv.push(file.to_str().unwrap());
        self.cli(&argv)
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::blocking::get(format!("{}{path}", self.addr())).expect("GET");
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Pids of live task processes whose working directory is under this agent's data dir.
    pub fn task_pids(&self) -> Vec<i32> {
        processes_under(&self.data_dir())
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        self.kill9();
        for pid in self.task_pids() {
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Processes whose cwd lies under `dir` (our tasks run in their task dirs).
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // Zombies have no cwd; skip them.
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(&dir) {
                out.push(pid);
            }
        }
    }
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

impl DevAgent {
    /// Starts the agent again on the same port and data dir after [`DevAgent::kill9`].
    pub fn restart_after_kill(&mut self) {
        self.spawn();
    }
}

impl DevAgent {
    /// Starts the agent again after [`DevAgent::kill9`] and waits (up to `timeout`) for its
    /// own word that it reattached to `tasks` running tasks: one "reattached to running
    /// task" log line each, written by this run. A task it found dead instead fails at once.
    pub fn restart_and_wait_reattached(&mut self, tasks: usize, timeout: Duration) {
        let before = self.log().len();
        self.restart_after_kill();
        wait_for(
            &format!("the restarted agent to reattach to {tasks} task(s)"),
            timeout,
            || {
                self.check_alive();
                let log = self.log();
                let since = log.get(before..).unwrap_or_default();
                assert!(
                    !since.contains("task exited while the agent was away"),
                    "a task did not survive the agent restart; log:\n{since}"
                );
                (since.matches("reattached to running task").count() >= tasks).then_some(())
            },
        );
    }
}

/// A request with an optional token: status, JSON answer (or the sentence as a string)
/// and `X-Nomad-Index`.
pub fn call(
    url: &str,
    method: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, u64) {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), url)
        .timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.header("X-Nomad-Token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let index = r
        .headers()
        .get("X-Nomad-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let text = r.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, v, index)
}
