//! Multi-server clusters of real `drover agent -server` processes on loopback.
//!
//! Server `i` binds its own loopback address (127.0.0.(20+i)) so that a test proxy can tell
//! which server a connection comes from (Raft RPCs leave from the bound address).

use super::{drover_bin, wait_for};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use loadtest::free_port_on;

pub struct ServerProc {
    pub name: String,
    pub ip: IpAddr,
    pub http_port: u16,
    pub rpc_port: u16,
    pub dir: PathBuf,
    /// The RPC address peers use (a proxy's, when the test puts one in front).
    pub advertise_rpc: String,
    /// More agent configuration (an `acl` block).
    pub extra_config: String,
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

    /// The address client agents use: this server's RPC listener (`host:port`).
    pub fn agent_addr(&self) -> String {
        self.rpc_addr().to_string()
    }

    pub fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let config = self.dir.join("agent.hcl");
        std::fs::write(
            &config,
            format!(
                "advertise {{\n  rpc = \"{}\"\n}}\n{}",
                self.advertise_rpc, self.extra_config
            ),
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
            // With ACLs on, a 403 is an answer too.
            reqwest::blocking::get(&url)
                .ok()
                .filter(|r| r.status().is_success() || r.status() == 403)
                .map(|_| ())
        });
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the server; `Err` with its log if it exits before its HTTP API answers
    /// (e.g. it refuses a damaged data dir), with its exit status.
    pub fn try_spawn(&mut self) -> Result<(), (std::process::ExitStatus, String)> {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spawn()));
        match res {
            Ok(()) => Ok(()),
            Err(p) => match self.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => {
                    self.child = None;
                    Err((status, self.log()))
                }
                _ => std::panic::resume_unwind(p),
            },
        }
    }

    /// SIGTERM the server and wait (bounded) for a clean exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("{} did not exit within 20s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the server process.
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            unsafe {
                libc::kill(pid as i32, sig);
            }
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
        match self.get_stale("/v1/agent/self") {
            Some(v) => v["Stats"]["raft"]["state"] == "Leader",
            // With ACLs on, agent/self needs a token; the leader's address does not.
            None if !self.extra_config.is_empty() => self
                .get_stale("/v1/status/leader")
                .is_some_and(|v| v == self.advertise_rpc.as_str()),
            None => false,
        }
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
    /// Agent configuration given to every client agent [`Cluster::start_clients`] starts
    /// (a TLS cluster's `tls` block with the client certificate).
    pub client_config: String,
    /// One cluster at a time per test binary: a dozen processes on two cores is plenty,
    /// and election timeouts are short.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
        Self::start_full(env, advertise, "")
    }

    /// Three servers with `acl { enabled = true }`.
    pub fn start_with_acl(env: &[(&str, &str)]) -> Self {
        Self::start_full(
            env,
            |_, rpc| rpc.to_string(),
            "acl {\n  enabled = true\n}\n",
        )
    }

    /// Three servers speaking mutual TLS to each other and to client agents (`tls { rpc =
    /// true verify_server_hostname = true }`, certificates made by `drover tls` in the
    /// cluster's dir); their HTTP APIs stay plain HTTP, so every helper here works as is.
    pub fn start_tls(env: &[(&str, &str)]) -> Self {
        Self::start_tls_with(env, |_, rpc| rpc.to_string())
    }

    /// [`Cluster::start_tls`] with `advertise` as in [`Cluster::start_with`].
    pub fn start_tls_with(
        env: &[(&str, &str)],
        advertise: impl Fn(usize, SocketAddr) -> String,
    ) -> Self {
        let (dir, serial) = Self::new_dir();
        let certs = dir.path().join("tls");
        make_certs(&certs);
        let mut c = Self::start_in(
            dir,
            serial,
            env,
            advertise,
            &tls_block(&certs, "global-server-nomad"),
        );
        c.client_config = tls_block(&certs, "global-client-nomad");
        c
    }

    fn new_dir() -> (tempfile::TempDir, std::sync::MutexGuard<'static, ()>) {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("drover-cluster-")
            .tempdir()
            .unwrap();
        (dir, serial)
    }

    fn start_full(
        env: &[(&str, &str)],
        advertise: impl Fn(usize, SocketAddr) -> String,
        extra_config: &str,
    ) -> Self {
        let (dir, serial) = Self::new_dir();
        Self::start_in(dir, serial, env, advertise, extra_config)
    }

    fn start_in(
        dir: tempfile::TempDir,
        serial: std::sync::MutexGuard<'static, ()>,
        env: &[(&str, &str)],
        advertise: impl Fn(usize, SocketAddr) -> String,
        extra_config: &str,
    ) -> Self {
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
                    extra_config: extra_config.to_string(),
                    join: vec![],
                    env: FAST
                        .iter()
                        .chain(env.iter())
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        // For measuring at other timings: DROVER_TEST_HEARTBEAT_TTL_MS.
                        .chain(
                            std::env::var("DROVER_TEST_HEARTBEAT_TTL_MS")
                                .ok()
                                .map(|v| ("DROVER_HEARTBEAT_TTL_MS".to_string(), v)),
                        )
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
        let c = Cluster {
            dir,
            servers,
            client_config: String::new(),
            _serial: serial,
        };
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

    /// The leader's index once every running server names it; on timeout, panics with
    /// the end of each server's log (why no election finished is in there).
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.wait_agreed_leader(timeout)
        }));
        found.unwrap_or_else(|_| {
            let tails: String = self
                .servers
                .iter()
                .map(|s| {
                    let log = s.log();
                    let lines: Vec<&str> = log.lines().collect();
                    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                    format!("--- {} (last 40 lines) ---\n{tail}\n", s.name)
                })
                .collect();
            panic!("no cluster leader within {timeout:?}\n{tails}")
        })
    }

    fn wait_agreed_leader(&self, timeout: Duration) -> usize {
        wait_for("a cluster leader", timeout, || {
            let l = self.leader()?;
            // Every running server agrees (Nomad's answer: the leader's RPC address).
            let addr = format!("\"{}\"", self.servers[l].advertise_rpc);
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

/// `drover tls ca create` and a server, client and CLI certificate in `dir`.
pub fn make_certs(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for args in [
        &["tls", "ca", "create"][..],
        &["tls", "cert", "create", "-server"],
        &["tls", "cert", "create", "-client"],
        &["tls", "cert", "create", "-cli"],
    ] {
        let out = Command::new(drover_bin())
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run drover tls");
        assert!(
            out.status.success(),
            "drover {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A `tls` block for RPC with the certificate `<stem>.pem` from [`make_certs`]'s `dir`.
pub fn tls_block(dir: &std::path::Path, stem: &str) -> String {
    let p = |n: &str| dir.join(n).display().to_string();
    format!(
        "tls {{\n  rpc = true\n  verify_server_hostname = true\n  ca_file = {:?}\n  \
         cert_file = {:?}\n  key_file = {:?}\n}}\n",
        p("nomad-agent-ca.pem"),
        p(&format!("{stem}.pem")),
        p(&format!("{stem}-key.pem")),
    )
}

/// A minimal job whose registration is one write (count 0: nothing to place).
pub fn tiny_job(id: &str, seq: u64) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": id, "Type": "batch", "Meta": {"seq": seq.to_string()},
        "TaskGroups": [{"Name": "g", "Count": 0, "Tasks": [{
            "Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]}})
}

/// A `drover agent -client` process talking to a cluster's servers (their RPC addresses).
pub struct ClientProc {
    pub name: String,
    pub http_port: u16,
    pub dir: PathBuf,
    pub servers: Vec<String>,
    /// More agent configuration (an `acl` block).
    pub extra_config: String,
    child: Option<Child>,
}

impl ClientProc {
    pub fn new(name: &str, dir: PathBuf, servers: Vec<String>) -> Self {
        ClientProc {
            name: name.to_string(),
            http_port: super::free_port(),
            dir,
            servers,
            extra_config: String::new(),
            child: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let config = self.dir.join("client.hcl");
        std::fs::write(
            &config,
            format!(
                "plugin \"raw_exec\" {{\n  config {{\n    enabled = true\n  }}\n}}\n{}",
                self.extra_config
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("client.log"))
            .unwrap();
        let mut cmd = Command::new(drover_bin());
        cmd.args(["agent", "-client", "-data-dir"])
            .arg(self.data_dir())
            .args(["-http-port", &self.http_port.to_string()])
            .args(["-node-name", &self.name])
            .args(["-servers", &self.servers.join(",")])
            .arg("-config")
            .arg(&config)
            .env("RUST_LOG", "info,tower_http=off")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn drover client"));
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("client.log")).unwrap_or_default()
    }

    /// Live task processes this client started (their cwd is under its data dir).
    pub fn task_pids(&self) -> Vec<i32> {
        super::processes_under(&self.data_dir())
    }
}

impl Drop for ClientProc {
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

impl Cluster {
    /// Start `n` client agents against this cluster; waits until all are ready nodes.
    pub fn start_clients(&self, n: usize) -> Vec<ClientProc> {
        let servers: Vec<String> = self.servers.iter().map(|s| s.agent_addr()).collect();
        let mut clients: Vec<ClientProc> = (0..n)
            .map(|i| {
                let mut c = ClientProc::new(
                    &format!("c{}", i + 1),
                    self.dir.path().join(format!("c{}", i + 1)),
                    servers.clone(),
                );
                c.extra_config = self.client_config.clone();
                c
            })
            .collect();
        for c in &mut clients {
            c.spawn();
        }
        let first = self.servers[0].http();
        wait_for(
            "every client to be a ready node",
            Duration::from_secs(60),
            || {
                let nodes: serde_json::Value = reqwest::blocking::get(format!("{first}/v1/nodes"))
                    .ok()?
                    .json()
                    .ok()?;
                let ready = nodes
                    .as_array()?
                    .iter()
                    .filter(|n| n["Status"] == "ready")
                    .count();
                (ready == n).then_some(())
            },
        );
        clients
    }

    /// Any running server's HTTP address.
    pub fn any_http(&self) -> String {
        self.servers
            .iter()
            .find(|s| s.is_running())
            .map(|s| s.http())
            .expect("a running server")
    }

    /// The ID of the client node named `name` (panics when there is none).
    pub fn node_id(&self, name: &str) -> String {
        self.get("/v1/nodes")
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["Name"] == name)
            .map(|n| n["ID"].as_str().unwrap().to_string())
            .unwrap()
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        for s in self.servers.iter().filter(|s| s.is_running()) {
            if let Ok(r) = reqwest::blocking::Client::new()
                .get(format!("{}{path}", s.http()))
                .timeout(Duration::from_secs(30))
                .send()
            {
                if r.status().is_success() {
                    if let Ok(v) = r.json() {
                        return v;
                    }
                }
            }
        }
        serde_json::Value::Null
    }

    /// Run the `drover` CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let addr = self.any_http();
        Command::new(drover_bin())
            .args(args)
            .env("NOMAD_ADDR", addr)
            .stdin(Stdio::null())
            .output()
            .expect("run drover")
    }
}

// ---- jobs on a cluster, shared by the self-healing, drain and disconnect tests ----

/// Short heartbeats so a lost node is noticed in seconds.
pub const HEAL: &[(&str, &str)] = &[
    ("DROVER_HEARTBEAT_TTL_MS", "1500"),
    ("DROVER_HEARTBEAT_GRACE_MS", "1000"),
];

pub fn run_job(cluster: &Cluster, name: &str, hcl: &str) {
    let f = cluster.dir.path().join(format!("{name}.hcl"));
    std::fs::write(&f, hcl).unwrap();
    let out = cluster.cli(&["job", "run", "-detach", f.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn allocs(cluster: &Cluster, job: &str) -> Vec<serde_json::Value> {
    cluster
        .get(&format!("/v1/job/{job}/allocations"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn running(allocs: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    allocs
        .iter()
        .filter(|a| a["ClientStatus"] == "running" && a["DesiredStatus"] == "run")
        .collect()
}

pub fn service_job(name: &str, count: usize, extra_group: &str) -> String {
    format!(
        r#"
job "{name}" {{
  type = "service"
  group "g" {{
    count = {count}
    {extra_group}
    task "t" {{
      driver = "raw_exec"
      kill_timeout = "1s"
      config {{
        command = "/bin/sh"
        args    = ["-c", "exec sleep 3600"]
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}
  }}
}}
"#
    )
}
