//! The harness's processes: three real servers on loopback and the node simulator, and
//! what `/proc` says about them (memory, CPU seconds) and their data dirs.

use anyhow::{bail, Context};
use loadtest::{free_port, rss_kib};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub http: String,
    pub rpc_addr: String,
    pub child: Child,
    pub dir: PathBuf,
    /// What started it, so [`Server::restart`] starts it again the same way.
    cmd: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(
        bin: &Path,
        dir: &Path,
        cmd: &[std::ffi::OsString],
        env: &[(String, String)],
    ) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))?;
        Command::new(bin)
            .args(cmd)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))
    }

    /// Stop it (SIGTERM, waiting for it to exit) and start it again on its data dir.
    pub fn restart(&mut self, bin: &Path) -> anyhow::Result<()> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        self.child = Server::spawn(bin, &self.dir, &self.cmd, &self.env)?;
        Ok(())
    }
}

/// Starts three servers that form one cluster; their logs go to `<dir>/s<i>/server.log`.
/// `election_timeout_ms`: the servers' Raft election timeout (their default when `None`).
pub fn start_servers(
    bin: &Path,
    dir: &Path,
    election_timeout_ms: Option<u64>,
    schedulers: Option<u64>,
) -> anyhow::Result<Vec<Server>> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let joins: Vec<String> = ports
        .iter()
        .map(|(_, r)| format!("127.0.0.1:{r}"))
        .collect();
    let mut servers = Vec::new();
    for (i, (http, rpc)) in ports.iter().enumerate() {
        let dir = dir.join(format!("s{i}"));
        std::fs::create_dir_all(&dir)?;
        let mut cmd: Vec<std::ffi::OsString> = ["agent", "-server", "-bootstrap-expect", "3"]
            .iter()
            .map(Into::into)
            .collect();
        cmd.push("-data-dir".into());
        cmd.push(dir.join("data").into());
        for a in [
            "-http-port",
            &http.to_string(),
            "-rpc-port",
            &rpc.to_string(),
        ] {
            cmd.push(a.into());
        }
        for j in &joins {
            cmd.push("-join".into());
            cmd.push(j.into());
        }
        if let Some(n) = schedulers {
            let config = dir.join("agent.hcl");
            std::fs::write(&config, format!("server {{\n  num_schedulers = {n}\n}}\n"))?;
            cmd.push("-config".into());
            cmd.push(config.into());
        }
        let mut env = vec![
            ("RUST_LOG".to_string(), "warn".to_string()),
            // Every simulated node comes from 127.0.0.1: lift the per-client caps.
            (
                "DROVER_RPC_MAX_CONNS_PER_CLIENT".to_string(),
                "1000000".to_string(),
            ),
            (
                "DROVER_HTTP_MAX_CONNS_PER_CLIENT".to_string(),
                "100000".to_string(),
            ),
        ];
        if let Some(ms) = election_timeout_ms {
            env.push(("DROVER_ELECTION_TIMEOUT_MS".to_string(), ms.to_string()));
        }
        servers.push(Server {
            http: format!("http://127.0.0.1:{http}"),
            rpc_addr: format!("127.0.0.1:{rpc}"),
            child: Server::spawn(bin, &dir, &cmd, &env)?,
            dir,
            cmd,
            env,
        });
    }
    Ok(servers)
}

/// The index of the leader, waiting up to 30 s for one.
pub async fn wait_leader(c: &reqwest::Client, servers: &[Server]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for (i, s) in servers.iter().enumerate() {
            let Ok(r) = c.get(format!("{}/v1/agent/self", s.http)).send().await else {
                continue;
            };
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["Stats"]["raft"]["state"] == "Leader" {
                    return Ok(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no leader within 30 s; see the server.log files")
}

/// The node simulator, and the latest counters it printed.
pub struct Sim {
    pub child: Child,
    pub latest: Arc<Mutex<serde_json::Value>>,
}

impl Sim {
    pub fn start(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<Sim> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let out = child.stdout.take().context("simulator stdout")?;
        let latest = Arc::new(Mutex::new(serde_json::Value::Null));
        let keep = latest.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                if let Ok(v) = serde_json::from_str(&l) {
                    *keep.lock().unwrap_or_else(|e| e.into_inner()) = v;
                }
            }
        });
        Ok(Sim { child, latest })
    }

    pub fn latest(&self) -> serde_json::Value {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stat(&self, key: &str) -> f64 {
        self.latest()[key].as_f64().unwrap_or(0.0)
    }
}

/// User + system CPU seconds of a process so far (`/proc/<pid>/stat`); 0 when gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces) in parentheses.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

pub fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid) as f64 / 1024.0
}
