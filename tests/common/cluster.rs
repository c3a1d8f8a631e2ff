//! Multi-server clusters of real `drover agent -server` processes on loopback.
//!
//! Server `i` binds its own loopback address (127.0.0.(20+i)) so that a test proxy can tell
//! which server a connection comes from (Raft RPCs leave from the bound address).

use super::{drover_bin, wait_for};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port_on(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct ServerProc {
    pub name: String,
    pub ip: IpAddr,
    pub http_port: u16,
    pub rpc_port: u16,
    pub dir: PathBuf,
    /// The RPC address peers use (a proxy's, when the test puts one in front).
    pub advertise_rpc: String,
    pub join: Vec<String>,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl ServerProc {
    pub fn http(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.rpc_port)
    }

    pub fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let config = self.dir.join("agent.hcl");
        std::fs::write(
            &config,
            format!("advertise {{\n  rpc = \"{}\"\n}}\n", self.advertise_rpc),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(drover_bin());
        cmd.args(["agent", "-server", "-bootstrap-expect", "3", "-data-dir"])
            .arg(self.dir.join("data"))
            .args(["-bind", &self.ip.to_string()])
            .args(["-http-port", &self.http_port.to_string()])
            .args(["-rpc-port", &self.rpc_port.to_string()])
            .args(["-node-name", &self.name])
            .arg("-config")
            .arg(&config)
            .env("RUST_LOG", "info,openraft=warn,tower_http=off")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for j in &self.join {
            cmd.args(["-join", j]);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn drover server"));
        let url = format!("{}/v1/agent/self", self.http());
        wait_for("a server's HTTP API", Duration::from_secs(30), || {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited early: {st}\n{}", self.name, self.log());
            }
            reqwest::blocking::get(&url)
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        });
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// GET a JSON document from this server (never forwarded: `?stale`).
    pub fn get_stale(&self, path: &str) -> Option<serde_json::Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}{sep}stale", self.http()))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().ok()
    }

    /// Does this server consider itself the leader?
    pub fn is_leader(&self) -> bool {
        self.get_stale("/v1/agent/self")
            .is_some_and(|v| v["Stats"]["raft"]["state"] == "Leader")
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub servers: Vec<ServerProc>,
}

/// Timings that keep cluster tests in seconds.
pub const FAST: &[(&str, &str)] = &[
    ("DROVER_ELECTION_TIMEOUT_MS", "400"),
    ("DROVER_WRITE_TIMEOUT_MS", "4000"),
];

impl Cluster {
    /// Three servers; `advertise(i)` may put a proxy in front of server i's RPC port.
    pub fn start_with(
        env: &[(&str, &str)],
        advertise: impl Fn(usize, SocketAddr) -> String,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("drover-cluster-")
            .tempdir()
            .unwrap();
        let mut servers: Vec<ServerProc> = (0..3)
            .map(|i| {
                let ip: IpAddr = format!("127.0.0.{}", 20 + i).parse().unwrap();
                let rpc_port = free_port_on(ip);
                let rpc = SocketAddr::new(ip, rpc_port);
                ServerProc {
                    name: format!("s{}", i + 1),
                    ip,
                    http_port: free_port_on(ip),
                    rpc_port,
                    dir: dir.path().join(format!("s{}", i + 1)),
                    advertise_rpc: advertise(i, rpc),
                    join: vec![],
                    env: FAST
                        .iter()
                        .chain(env.iter())
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    child: None,
                }
            })
            .collect();
        let joins: Vec<String> = servers.iter().map(|s| s.advertise_rpc.clone()).collect();
        for s in &mut servers {
            s.join = joins.clone();
            s.spawn();
        }
        let c = Cluster { dir, servers };
        c.wait_leader(Duration::from_secs(30));
        c
    }

    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, |_, rpc| rpc.to_string())
    }

    /// The index of the server that leads, as seen by a majority of running servers.
    pub fn leader(&self) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.is_running() && s.is_leader())
    }

    pub fn wait_leader(&self, timeout: Duration) -> usize {
        wait_for("a cluster leader", timeout, || {
            let l = self.leader()?;
            // Every running server agrees.
            let addr = format!("\"{}:{}\"", self.servers[l].ip, self.servers[l].http_port);
            let agreed = self.servers.iter().filter(|s| s.is_running()).all(|s| {
                reqwest::blocking::get(format!("{}/v1/status/leader", s.http()))
                    .ok()
                    .and_then(|r| r.text().ok())
                    .is_some_and(|t| t == addr)
            });
            agreed.then_some(l)
        })
    }

    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("--- {} ---\n{}", s.name, s.log()))
            .collect()
    }
}

/// A minimal job whose registration is one write (count 0: nothing to place).
pub fn tiny_job(id: &str, seq: u64) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": id, "Type": "batch", "Meta": {"seq": seq.to_string()},
        "TaskGroups": [{"Name": "g", "Count": 0, "Tasks": [{
            "Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]}})
}
