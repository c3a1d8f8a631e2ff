//! Mutual TLS end to end, with certificates made by `drover tls` in a temporary dir: a
//! dev agent serving its API over https to the CLI, who may call which route with which
//! certificate, refusals of strangers, start-up refusals naming the file, a client-only
//! agent serving its own API over https (and the servers' relay reaching it there), and a
//! three-server TLS cluster (formation, replication, leader loss, a partition,
//! linearizability, a client agent running a job).

mod common;
#[path = "common/linearizability.rs"]
mod linearizability;
#[path = "common/scenarios.rs"]
mod scenarios;

use common::cluster::{allocs, make_certs, run_job, running, ClientProc, Cluster};
use common::{drover_bin, free_port, stderr, stdout, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `drover agent -dev` with a `tls` block (and its own RPC port, so peer routes exist).
struct TlsAgent {
    dir: tempfile::TempDir,
    http_port: u16,
    rpc_port: u16,
    child: Option<Child>,
}

/// The `tls` block of a dev agent using `certs`'s server certificate, plus `extra` lines.
fn agent_tls_config(certs: &Path, rpc_port: u16, extra: &str) -> String {
    let p = |n: &str| certs.join(n).display().to_string();
    format!(
        "ports {{\n  rpc = {rpc_port}\n}}\ntls {{\n  http = true\n  rpc = true\n  \
         ca_file = {:?}\n  cert_file = {:?}\n  key_file = {:?}\n  \
         verify_server_hostname = true\n{extra}}}\n",
        p("nomad-agent-ca.pem"),
        p("global-server-nomad.pem"),
        p("global-server-nomad-key.pem"),
    )
}

impl TlsAgent {
    /// Starts the agent with `config`; `Err` with its output when it exits instead.
    fn try_start(config: &str, rpc_port: u16, certs: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("drover-tls-")
            .tempdir()
            .unwrap();
        let cfg = dir.path().join("agent.hcl");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let http_port = free_port();
        let child = Command::new(drover_bin())
            .args(["agent", "-dev", "-data-dir"])
            .arg(dir.path().join("data"))
            .args(["-http-port", &http_port.to_string()])
            .arg("-config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut a = TlsAgent {
            dir,
            http_port,
            rpc_port,
            child: Some(child),
        };
        let client = https_client(certs, Some("global-cli-nomad"));
        let url = format!("{}/v1/status/leader", a.addr());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = a.child.as_mut().unwrap().try_wait() {
                a.child = None;
                return Err(format!("exited with {status}: {}", a.log()));
            }
            let leader: Option<String> = client.get(&url).send().ok().and_then(|r| r.json().ok());
            if leader.is_some_and(|l| !l.is_empty()) {
                return Ok(a);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the TLS agent did not come up: {}",
                a.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start(certs: &Path, extra: &str) -> Self {
        let rpc_port = free_port();
        Self::try_start(&agent_tls_config(certs, rpc_port, extra), rpc_port, certs)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn addr(&self) -> String {
        format!("https://127.0.0.1:{}", self.http_port)
    }

    fn rpc(&self) -> String {
        format!("https://127.0.0.1:{}", self.rpc_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The CLI against this agent, with `args` and TLS flags `tls`.
    fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(drover_bin());
        cmd.args(args)
            .env("NOMAD_ADDR", self.addr())
            .env_remove("NOMAD_CACERT")
            .env_remove("NOMAD_CLIENT_CERT")
            .env_remove("NOMAD_CLIENT_KEY")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

impl Drop for TlsAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in common::processes_under(&self.dir.path().join("data")) {
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// A blocking client trusting `certs`'s CA, presenting `<identity>.pem` if named.
fn https_client(certs: &Path, identity: Option<&str>) -> reqwest::blocking::Client {
    let ca = std::fs::read(certs.join("nomad-agent-ca.pem")).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some(id) = identity {
        let mut pem = std::fs::read(certs.join(format!("{id}.pem"))).unwrap();
        pem.extend(std::fs::read(certs.join(format!("{id}-key.pem"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn certs_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("drover-certs-")
        .tempdir()
        .unwrap();
    let p = d.path().to_path_buf();
    make_certs(&p);
    (d, p)
}

fn tls_flags(certs: &Path) -> Vec<String> {
    vec![
        "-ca-cert".into(),
        certs.join("nomad-agent-ca.pem").display().to_string(),
        "-client-cert".into(),
        certs.join("global-cli-nomad.pem").display().to_string(),
        "-client-key".into(),
        certs.join("global-cli-nomad-key.pem").display().to_string(),
    ]
}

#[test]
fn a_tls_dev_agent_serves_the_cli_over_https_and_refuses_plain_http() {
    let (_keep, certs) = certs_dir();
    let agent = TlsAgent::start(&certs, "");
    let flags = tls_flags(&certs);
    let mut args: Vec<&str> = vec!["node", "status"];
    args.extend(flags.iter().map(String::as_str));
    // The dev agent's own client registered with its server over mutual TLS.
    wait_for(
        "the node ready, read with the CLI's flags",
        Duration::from_secs(30),
        || {
            let out = agent.cli(&args, &[]);
            stdout(&out).contains("ready").then_some(())
        },
    );
    // The same with Nomad's environment variables, and a job run end to end.
    let env = [
        ("NOMAD_CACERT", flags[1].as_str()),
        ("NOMAD_CLIENT_CERT", flags[3].as_str()),
        ("NOMAD_CLIENT_KEY", flags[5].as_str()),
    ];
    let job = agent.dir.path().join("sleep.hcl");
    std::fs::write(
        &job,
        common::raw_exec_job("sleepy", "exec sleep 300", 20, 16),
    )
    .unwrap();
    let out = agent.cli(&["job", "run", job.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = agent.cli(&["job", "status", "sleepy"], &env);
    assert!(
        stdout(&out).contains("running"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // Plain HTTP on either listener: no answer.
    for url in [agent.addr(), agent.rpc()] {
        let plain = url.replace("https://", "http://");
        let r = reqwest::blocking::Client::new()
            .get(format!("{plain}/v1/status/leader"))
            .timeout(Duration::from_secs(5))
            .send();
        assert!(r.is_err(), "plain HTTP answered on {plain}: {r:?}");
    }
    // Without -ca-cert the CLI does not trust the agent's certificate.
    let out = agent.cli(&["node", "status"], &[]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

#[test]
fn verify_https_client_refuses_a_request_without_a_client_certificate() {
    let (_keep, certs) = certs_dir();
    let agent = TlsAgent::start(&certs, "  verify_https_client = true\n");
    let anonymous = https_client(&certs, None);
    let r = anonymous
        .get(format!("{}/v1/status/leader", agent.addr()))
        .send();
    assert!(r.is_err(), "answered without a client certificate: {r:?}");
    let with_cert = https_client(&certs, Some("global-cli-nomad"));
    let r = with_cert
        .get(format!("{}/v1/status/leader", agent.addr()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let ui = with_cert
        .get(format!("{}/ui/jobs", agent.addr()))
        .send()
        .unwrap();
    assert_eq!(ui.status(), 200, "the web UI over https");
    // The CLI without its client certificate is refused too.
    let flags = tls_flags(&certs);
    let out = agent.cli(&["node", "status", "-ca-cert", &flags[1]], &[]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn certificates_of_another_ca_are_refused_on_http_and_rpc() {
    let (_keep, certs) = certs_dir();
    let (_keep2, other) = certs_dir();
    let agent = TlsAgent::start(&certs, "");
    // Trusting our CA (so the server is accepted) but presenting a stranger's certificate.
    let ca = std::fs::read(certs.join("nomad-agent-ca.pem")).unwrap();
    let mut pem = std::fs::read(other.join("global-server-nomad.pem")).unwrap();
    pem.extend(std::fs::read(other.join("global-server-nomad-key.pem")).unwrap());
    let stranger = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    for url in [
        format!("{}/v1/status/leader", agent.addr()),
        format!("{}/v1/internal/raft/vote", agent.rpc()),
    ] {
        let r = stranger.get(&url).send();
        assert!(r.is_err(), "{url} answered a stranger: {r:?}");
    }
    // And a client trusting only the other CA does not accept our server.
    let r = https_client(&other, Some("global-cli-nomad"))
        .get(format!("{}/v1/status/leader", agent.addr()))
        .send();
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn peer_routes_take_a_server_certificate_and_refuse_a_client_certificate() {
    let (_keep, certs) = certs_dir();
    let agent = TlsAgent::start(&certs, "");
    let vote = format!("{}/v1/internal/raft/vote", agent.rpc());
    let client = https_client(&certs, Some("global-client-nomad"));
    let r = client.post(&vote).body("{}").send().unwrap();
    assert_eq!(r.status(), 403);
    let text = r.text().unwrap();
    assert!(text.contains("server.global.nomad"), "{text}");
    let r = client
        .get(format!("{}/v1/internal/cluster/info", agent.rpc()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "cluster routes are peers' too");
    // A client agent's certificate may call the node routes.
    let r = client
        .put(format!("{}/v1/internal/bench/noop", agent.rpc()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    // A CLI certificate may not.
    let cli = https_client(&certs, Some("global-cli-nomad"));
    let r = cli
        .put(format!("{}/v1/internal/bench/noop", agent.rpc()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // A server's certificate passes: the handler itself answers (the vote is empty).
    let server = https_client(&certs, Some("global-server-nomad"));
    let r = server.post(&vote).body("{}").send().unwrap();
    assert_eq!(r.status(), 400, "{}", r.text().unwrap());
    let r = server
        .get(format!("{}/v1/internal/cluster/info", agent.rpc()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

// ---- a client-only agent with `tls { http = true }` ----

/// A client-only agent's `tls` block: its client certificate on RPC and on its own HTTP
/// API, demanding a client certificate from callers.
fn client_agent_tls(certs: &Path) -> String {
    let p = |n: &str| certs.join(n).display().to_string();
    format!(
        "tls {{\n  http = true\n  rpc = true\n  verify_server_hostname = true\n  \
         verify_https_client = true\n  ca_file = {:?}\n  cert_file = {:?}\n  \
         key_file = {:?}\n}}\n",
        p("nomad-agent-ca.pem"),
        p("global-client-nomad.pem"),
        p("global-client-nomad-key.pem"),
    )
}

/// A job of one task pinned to the node named `node`, printing `line` then sleeping.
fn pinned_job(name: &str, node: &str, line: &str) -> String {
    common::raw_exec_job(name, &format!("echo {line}; exec sleep 300"), 20, 16).replacen(
        "  group \"main\" {",
        &format!(
            "  constraint {{\n    attribute = \"${{node.unique.name}}\"\n    \
             value = \"{node}\"\n  }}\n\n  group \"main\" {{"
        ),
        1,
    )
}

#[test]
fn a_tls_client_agent_serves_its_api_over_https_and_the_servers_relay_reaches_it() {
    let (_keep, certs) = certs_dir();
    let server = TlsAgent::start(&certs, "  verify_https_client = true\n");
    let mut client = ClientProc::new(
        "tlsclient",
        server.dir.path().join("tlsclient"),
        vec![format!("127.0.0.1:{}", server.rpc_port)],
    );
    client.extra_config = client_agent_tls(&certs);
    client.spawn();
    let cli = https_client(&certs, Some("global-cli-nomad"));
    let own = format!("https://127.0.0.1:{}", client.http_port);
    // The agent's own API: https with a certificate from the CA.
    let servers: serde_json::Value = wait_for(
        "the client agent's API over https",
        Duration::from_secs(30),
        || {
            let r = cli.get(format!("{own}/v1/agent/servers")).send().ok()?;
            let v: serde_json::Value = r.json().ok()?;
            v.as_array().is_some_and(|a| !a.is_empty()).then_some(v)
        },
    );
    assert_eq!(
        servers,
        serde_json::json!([format!("127.0.0.1:{}", server.rpc_port)]),
        "server addresses without a scheme: {}",
        client.log()
    );
    let log = client.log();
    assert!(
        log.contains("client HTTP API listening") && log.contains("scheme=\"https\""),
        "{log}"
    );
    assert!(!log.contains("stays plain HTTP"), "{log}");
    // Plain HTTP, and https without a client certificate: refused.
    let plain = reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/v1/agent/servers",
            client.http_port
        ))
        .timeout(Duration::from_secs(5))
        .send();
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let anonymous = https_client(&certs, None)
        .get(format!("{own}/v1/agent/servers"))
        .send();
    assert!(
        anonymous.is_err(),
        "answered without a client certificate: {anonymous:?}"
    );

    // A job on that agent; its files and logs through the server's relay over TLS.
    wait_for(
        "the TLS client a ready node",
        Duration::from_secs(30),
        || {
            let nodes: serde_json::Value = cli
                .get(format!("{}/v1/nodes", server.addr()))
                .send()
                .ok()?
                .json()
                .ok()?;
            nodes
                .as_array()?
                .iter()
                .any(|n| n["Name"] == "tlsclient" && n["Status"] == "ready")
                .then_some(())
        },
    );
    let job = server.dir.path().join("pinned.hcl");
    std::fs::write(&job, pinned_job("pinned", "tlsclient", "hello-over-tls")).unwrap();
    let flags = tls_flags(&certs);
    let env = [
        ("NOMAD_CACERT", flags[1].as_str()),
        ("NOMAD_CLIENT_CERT", flags[3].as_str()),
        ("NOMAD_CLIENT_KEY", flags[5].as_str()),
    ];
    let out = server.cli(&["job", "run", "-detach", job.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let alloc = wait_for(
        "the job running on the TLS client",
        Duration::from_secs(60),
        || {
            let a: serde_json::Value = cli
                .get(format!("{}/v1/job/pinned/allocations", server.addr()))
                .send()
                .ok()?
                .json()
                .ok()?;
            a.as_array()?
                .iter()
                .find(|a| a["ClientStatus"] == "running")
                .map(|a| {
                    assert_eq!(a["NodeName"], "tlsclient", "{a}");
                    a["ID"].as_str().unwrap().to_string()
                })
        },
    );
    let ls = cli
        .get(format!("{}/v1/client/fs/ls/{alloc}?path=/", server.addr()))
        .send()
        .unwrap();
    let status = ls.status();
    let text = ls.text().unwrap();
    assert_eq!(status, 200, "{text}\n{}", server.log());
    assert!(text.contains("\"alloc\""), "{text}");
    let logs = wait_for(
        "the task's output through drover alloc logs",
        Duration::from_secs(30),
        || {
            let out = server.cli(&["alloc", "logs", &alloc], &env);
            stdout(&out).contains("hello-over-tls").then_some(out)
        },
    );
    assert!(logs.status.success(), "{}", stderr(&logs));
    // A command run in the task (POST .../exec), relayed the same way.
    let out = server.cli(&["alloc", "exec", &alloc, "echo", "exec-over-tls"], &env);
    assert!(
        out.status.success() && stdout(&out).contains("exec-over-tls"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn a_missing_or_mismatched_file_refuses_to_start_and_names_it() {
    let (_keep, certs) = certs_dir();
    let rpc_port = free_port();
    let missing = certs.join("no-such-cert.pem");
    let config = agent_tls_config(&certs, rpc_port, "").replace(
        &certs.join("global-server-nomad.pem").display().to_string(),
        &missing.display().to_string(),
    );
    let e = TlsAgent::try_start(&config, rpc_port, &certs)
        .err()
        .expect("the agent refused to start");
    assert!(
        e.contains(&format!(
            "cannot read the certificate file {}",
            missing.display()
        )),
        "{e}"
    );
    let config = agent_tls_config(&certs, rpc_port, "").replace(
        &certs
            .join("global-server-nomad-key.pem")
            .display()
            .to_string(),
        &certs
            .join("global-client-nomad-key.pem")
            .display()
            .to_string(),
    );
    let e = TlsAgent::try_start(&config, rpc_port, &certs)
        .err()
        .expect("the agent refused to start");
    assert!(e.contains("does not match the certificate"), "{e}");
    assert!(e.contains("global-client-nomad-key.pem"), "{e}");
}

#[test]
fn drover_tls_refuses_to_overwrite_and_openssl_certificates_serve() {
    let (_keep, certs) = certs_dir();
    let out = Command::new(drover_bin())
        .args(["tls", "cert", "create", "-client"])
        .current_dir(&certs)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refusing to overwrite")
            && stderr(&out).contains("global-client-nomad"),
        "{}",
        stderr(&out)
    );
    // A server certificate made by openssl, signed by the CA `drover tls` made.
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl is not installed; skipping its part");
        return;
    }
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(&certs)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    };
    std::fs::write(
        certs.join("ext.cnf"),
        "subjectAltName=DNS:server.global.nomad,DNS:localhost,IP:127.0.0.1\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ossl-key.pem",
        "-out",
        "ossl.csr",
        "-subj",
        "/CN=server.global.nomad",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "ossl.csr",
        "-CA",
        "nomad-agent-ca.pem",
        "-CAkey",
        "nomad-agent-ca-key.pem",
        "-CAcreateserial",
        "-out",
        "ossl.pem",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
    ]);
    let rpc_port = free_port();
    let config = agent_tls_config(&certs, rpc_port, "")
        .replace("global-server-nomad-key.pem", "ossl-key.pem")
        .replace("global-server-nomad.pem", "ossl.pem");
    let agent = TlsAgent::try_start(&config, rpc_port, &certs).unwrap_or_else(|e| panic!("{e}"));
    let r = https_client(&certs, Some("global-cli-nomad"))
        .get(format!("{}/v1/agent/self", agent.addr()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

// ---- a three-server TLS cluster ----

#[test]
fn a_tls_cluster_elects_replicates_survives_a_leader_kill_and_runs_a_tls_clients_job() {
    let mut cluster = Cluster::start_tls(&[]);
    let c = scenarios::http();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    // A write through a follower: forwarded to the leader over mutual TLS, replicated.
    let code = scenarios::register(&c, &cluster.servers[follower].http(), "first", 1).unwrap();
    assert_eq!(code, 200, "{}", cluster.logs());
    for s in &cluster.servers {
        wait_for("the write on every server", Duration::from_secs(20), || {
            scenarios::job_ids(s)?.contains("first").then_some(())
        });
    }
    cluster.servers[leader].kill9();
    let new = cluster.wait_leader(Duration::from_secs(30));
    assert_ne!(new, leader);
    let r = c
        .get(format!("{}/v1/job/first", cluster.servers[new].http()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the write survives the leader");
    let code = scenarios::register(&c, &cluster.servers[new].http(), "second", 2).unwrap();
    assert_eq!(code, 200);
    cluster.servers[leader].spawn();
    wait_for(
        "the old leader to catch up",
        Duration::from_secs(60),
        || {
            scenarios::job_ids(&cluster.servers[leader])?
                .contains("second")
                .then_some(())
        },
    );
    // A client agent with a client certificate registers and runs a job.
    let clients = cluster.start_clients(1);
    run_job(
        &cluster,
        "tlsjob",
        &common::raw_exec_job("tlsjob", "exec sleep 300", 20, 16),
    );
    wait_for(
        "the job running on the TLS client",
        Duration::from_secs(60),
        || (running(&allocs(&cluster, "tlsjob")).len() == 1).then_some(()),
    );
    assert!(
        clients[0].log().contains("server=https://"),
        "the client dialled its servers over https: {}",
        clients[0].log()
    );
}

#[test]
fn a_tls_client_agent_with_a_certificate_of_another_ca_cannot_register() {
    let cluster = Cluster::start_tls(&[]);
    let other = cluster.dir.path().join("other-ca");
    make_certs(&other);
    let mut c = common::cluster::ClientProc::new(
        "stranger",
        cluster.dir.path().join("stranger"),
        cluster.servers.iter().map(|s| s.agent_addr()).collect(),
    );
    c.extra_config = common::cluster::tls_block(&other, "global-client-nomad");
    c.spawn();
    wait_for(
        "the stranger's refusal in its log",
        Duration::from_secs(30),
        || {
            let log = c.log();
            log.contains("cannot register the node").then_some(())
        },
    );
    let nodes = cluster.get("/v1/nodes");
    assert_eq!(nodes.as_array().map(Vec::len), Some(0), "{nodes}");
}

#[test]
fn tls_leader_kill_mid_stream_every_write_to_the_followers_is_acknowledged_exactly_once() {
    scenarios::leader_kill_mid_stream(Cluster::start_tls);
}

#[test]
fn tls_partitioned_leader_cannot_commit_and_healing_leaves_one_history() {
    scenarios::partitioned_leader(Cluster::start_tls_with);
}

#[test]
fn tls_single_key_history_is_linearizable_across_a_leader_kill() {
    scenarios::linearizable_across_leader_kill(Cluster::start_tls);
}

#[test]
fn tls_lagging_follower_catches_up_by_snapshot_install() {
    scenarios::lagging_follower_snapshot(Cluster::start_tls);
}

#[test]
fn tls_leadership_transfers_to_the_named_server_and_a_peer_can_be_removed() {
    scenarios::leadership_transfer(Cluster::start_tls);
}
