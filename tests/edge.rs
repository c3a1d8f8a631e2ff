//! The server's network edge, attacked through the real binary: checked durations and
//! indexes, internal routes only on the RPC listener, node secrets, a body cap on the
//! RPC listener, and per-client connection caps with a header-read timeout.

mod common;

use common::*;
use reqwest::blocking::Client;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A dev agent whose server also listens on an explicit RPC port.
fn agent_with_rpc(extra: &str) -> (DevAgent, u16) {
    let rpc = free_port();
    let agent = DevAgent::start_with_config(&format!("ports {{\n  rpc = {rpc}\n}}\n{extra}"));
    (agent, rpc)
}

fn rpc_url(rpc: u16, path: &str) -> String {
    format!("http://127.0.0.1:{rpc}{path}")
}

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Sends raw bytes and reads until the server closes (or `limit` passes).
fn raw_exchange(port: u16, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.len() > 64 {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn huge_negative_and_nan_waits_and_indexes_are_400_sentences() {
    let agent = DevAgent::start();
    let c = http();
    let queries = [
        "index=1&wait=99999999999999999999s",
        "index=1&wait=99999999999999999999",
        "index=1&wait=-5s",
        "index=1&wait=NaN",
        "index=1&wait=inf",
        "index=1&wait=1e400s",
        "index=99999999999999999999999&wait=1s",
        "index=-1",
        "index=NaN",
    ];
    for path in [
        "/v1/jobs",
        "/v1/nodes",
        "/v1/allocations",
        "/v1/evaluations",
        "/v1/job/x/allocations",
        "/v1/node/x/allocations",
    ] {
        for q in queries {
            let r = c.get(format!("{}{path}?{q}", agent.addr())).send().unwrap();
            let status = r.status().as_u16();
            let text = r.text().unwrap();
            assert_eq!(status, 400, "{path}?{q}: {text}");
            assert!(
                text.starts_with("invalid ") && text.split_whitespace().count() > 3,
                "{path}?{q}: not a sentence: {text:?}"
            );
        }
    }
    assert_eq!(agent.get_json("/v1/agent/self").0, 200, "still serving");
}

const INTERNAL: &[&str] = &[
    "/v1/internal/node/register",
    "/v1/internal/node/x/heartbeat",
    "/v1/internal/node/x/allocs",
    "/v1/internal/bench/noop",
    "/v1/internal/raft/append",
    "/v1/internal/raft/vote",
    "/v1/internal/raft/snapshot",
    "/v1/internal/cluster/info",
    "/v1/internal/cluster/join",
    "/v1/internal/cluster/elect",
    "/v1/internal/cluster/hold-elections",
    "//v1//internal/cluster/join",
];

#[test]
fn the_public_listener_has_no_internal_routes_and_the_rpc_listener_has_them() {
    let (agent, rpc) = agent_with_rpc("");
    let c = http();
    for path in INTERNAL {
        for method in ["GET", "PUT", "POST"] {
            let r = c
                .request(method.parse().unwrap(), format!("{}{path}", agent.addr()))
                .header("x-drover-forwarded", "1")
                .body("{}")
                .send()
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().unwrap();
            assert_eq!(status, 404, "{method} {path} on the public port: {text}");
            assert!(text.contains("no such endpoint"), "{text}");
        }
    }
    // The same routes live on the RPC listener.
    let r = c
        .get(rpc_url(rpc, "/v1/internal/cluster/info"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let r = c
        .put(rpc_url(rpc, "/v1/internal/bench/noop"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
}

#[test]
fn a_dev_agent_without_an_rpc_port_serves_no_peer_routes() {
    let agent = DevAgent::start();
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("RPC listening"))
        .unwrap_or_else(|| panic!("no RPC listener in the log:\n{log}"));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("the RPC address in the log line");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let c = http();
    for path in ["/v1/internal/cluster/join", "/v1/internal/raft/vote"] {
        let r = c
            .post(format!("http://{addr}{path}"))
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}: {}", r.text().unwrap());
    }
    // Its own client registered through it.
    wait_for("the dev node to be ready", Duration::from_secs(30), || {
        let (_, v) = agent.get_json("/v1/nodes");
        (v.as_array()?.first()?["Status"] == "ready").then_some(())
    });
}

fn node_secret_of(agent: &DevAgent) -> (String, String) {
    let dir = agent.data_dir().join("client");
    // The agent writes its secret once the servers answer its registration.
    wait_for(
        "the agent to keep its node secret",
        Duration::from_secs(30),
        || dir.join("node-secret").exists().then_some(()),
    );
    let id = std::fs::read_to_string(dir.join("node-id")).unwrap();
    let secret = std::fs::read_to_string(dir.join("node-secret")).unwrap();
    (id.trim().to_string(), secret.trim().to_string())
}

#[test]
fn node_secrets_guard_heartbeats_alloc_updates_and_reregistration() {
    let (agent, rpc) = agent_with_rpc("");
    let c = http();
    wait_for("the dev node to be ready", Duration::from_secs(30), || {
        let (_, v) = agent.get_json("/v1/nodes");
        (v.as_array()?.first()?["Status"] == "ready").then_some(())
    });
    let (node_id, secret) = node_secret_of(&agent);
    assert_eq!(secret.len(), 36, "a UUID secret: {secret:?}");
    let mode = std::fs::metadata(agent.data_dir().join("client/node-secret"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600, "the secret file is the agent's alone");

    // A running allocation on the dev node.
    let job = serde_json::json!({"Job": {"ID": "guarded", "Type": "service",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec",
        "Config": {"command": "/bin/sleep", "args": ["300"]},
        "Resources": {"CPU": 20, "MemoryMB": 16}}]}]}});
    let r = c
        .put(format!("{}/v1/jobs", agent.addr()))
        .json(&job)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let alloc_id = wait_for("the allocation to run", Duration::from_secs(30), || {
        let (_, v) = agent.get_json("/v1/job/guarded/allocations");
        let a = v.as_array()?.first()?.clone();
        (a["ClientStatus"] == "running").then(|| a["ID"].as_str().unwrap().to_string())
    });

    // Public reads never show the secret.
    let (_, node) = agent.get_json(&format!("/v1/node/{node_id}"));
    assert_eq!(node["ID"], node_id.as_str());
    assert!(node.get("SecretID").is_none(), "{node}");
    let snapshot = c
        .get(format!("{}/v1/operator/snapshot", agent.addr()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!snapshot.contains(&secret), "the snapshot leaks the secret");
    let modify_index = node["ModifyIndex"].clone();

    let put = |path: &str, secret: Option<&str>, body: serde_json::Value| {
        let mut req = c.put(rpc_url(rpc, path)).json(&body);
        if let Some(s) = secret {
            req = req.header("X-Nomad-Node-Secret", s);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let failed = serde_json::json!({"Alloc": [{"ID": alloc_id, "ClientStatus": "failed"}]});
    for given in [None, Some("wrong"), Some("")] {
        let (status, text) = put(
            &format!("/v1/internal/node/{node_id}/heartbeat"),
            given,
            serde_json::json!({}),
        );
        assert_eq!(status, 403, "heartbeat with {given:?}: {text}");
        assert!(text.contains("X-Nomad-Node-Secret"), "{text}");
        let (status, text) = put(
            &format!("/v1/internal/node/{node_id}/allocs"),
            given,
            failed.clone(),
        );
        assert_eq!(status, 403, "alloc update with {given:?}: {text}");
        let (status, text) = put(
            "/v1/internal/node/register",
            given,
            serde_json::json!({"Node": {"ID": node_id, "Name": "impostor"}}),
        );
        assert_eq!(status, 403, "re-registration with {given:?}: {text}");
    }

    // Another node, with its own secret, may not report this node's allocation.
    let (status, text) = put(
        "/v1/internal/node/register",
        None,
        serde_json::json!({"Node": {"ID": "intruder-node", "Name": "intruder"}}),
    );
    assert_eq!(status, 200, "{text}");
    let reg: serde_json::Value = serde_json::from_str(&text).unwrap();
    let intruder_secret = reg["SecretID"].as_str().unwrap().to_string();
    assert!(!intruder_secret.is_empty() && intruder_secret != secret);
    let (status, text) = put(
        "/v1/internal/node/intruder-node/allocs",
        Some(&intruder_secret),
        failed.clone(),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not placed on node"), "{text}");
    let (status, text) = put(
        "/v1/internal/node/register",
        Some(&intruder_secret),
        serde_json::json!({"Node": {"ID": node_id, "Name": "impostor"}}),
    );
    assert_eq!(status, 403, "{text}");

    // Nothing changed: the node is as it was, the allocation still runs.
    let (_, node) = agent.get_json(&format!("/v1/node/{node_id}"));
    assert_eq!(node["ModifyIndex"], modify_index, "{node}");
    assert_ne!(node["Name"], "impostor");
    let (_, a) = agent.get_json(&format!("/v1/allocation/{alloc_id}"));
    assert_eq!(a["ClientStatus"], "running", "{a}");

    // The secret the agent keeps is the one that works.
    let (status, text) = put(
        &format!("/v1/internal/node/{node_id}/heartbeat"),
        Some(&secret),
        serde_json::json!({}),
    );
    assert_eq!(status, 200, "{text}");
    let _ = c
        .delete(format!("{}/v1/job/guarded?purge=true", agent.addr()))
        .send();
}

#[test]
fn a_restarted_client_agent_keeps_its_node_secret() {
    let (mut agent, rpc) = agent_with_rpc("");
    wait_for("the dev node to be ready", Duration::from_secs(30), || {
        let (_, v) = agent.get_json("/v1/nodes");
        (v.as_array()?.first()?["Status"] == "ready").then_some(())
    });
    let (node_id, secret) = node_secret_of(&agent);
    agent.kill9();
    agent.restart_after_kill();
    // It registered again with the kept secret (a new secret would mean it was refused
    // or treated as a new node).
    wait_for(
        "the node to heartbeat again",
        Duration::from_secs(30),
        || {
            let r = http()
                .put(rpc_url(
                    rpc,
                    &format!("/v1/internal/node/{node_id}/heartbeat"),
                ))
                .header("X-Nomad-Node-Secret", &secret)
                .body("{}")
                .send()
                .ok()?;
            r.status().is_success().then_some(())
        },
    );
    assert_eq!(node_secret_of(&agent), (node_id, secret));
    assert!(
        !agent.log().contains("refused this node's secret"),
        "{}",
        agent.log()
    );
}

#[test]
fn the_rpc_listener_refuses_a_body_over_its_cap_from_its_length() {
    let (_agent, rpc) = agent_with_rpc("");
    let head = raw_exchange(
        rpc,
        format!(
            "PUT /v1/internal/bench/noop HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            65 * 1024 * 1024
        )
        .as_bytes(),
        Duration::from_secs(20),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head:?}");
}

#[test]
fn half_sent_requests_past_the_cap_get_429_and_are_dropped_after_the_header_timeout() {
    let agent = DevAgent::start_with_config(
        "limits {\n  http_max_conns_per_client = 20\n  https_handshake_timeout = \"1s\"\n}\n",
    );
    // Twenty connections that never finish their request headers.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
            s.write_all(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // The cap counts connections the server accepted: wait until a 21st is refused.
    let refusal = wait_for("a connection past the cap", Duration::from_secs(20), || {
        let out = raw_exchange(
            agent.port,
            b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(5),
        );
        out.starts_with("HTTP/1.1 429").then_some(out)
    });
    assert!(
        refusal.contains("too many concurrent connections") && refusal.contains("at most 20"),
        "{refusal}"
    );
    // Another client (another source address) is served meanwhile.
    let other = Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = other
        .get(format!("http://127.0.0.1:{}/v1/jobs", agent.port))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Each half-sent request is dropped: the server closes the connection.
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // an error answer before the close is fine
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a half-sent request was not dropped: {e}"),
            }
        }
    }
    // With the slots free, this client is served again.
    wait_for(
        "a request from the same client",
        Duration::from_secs(10),
        || {
            let r = reqwest::blocking::get(format!("{}/v1/jobs", agent.addr())).ok()?;
            (r.status().as_u16() == 200).then_some(())
        },
    );
}

#[test]
fn a_server_that_forms_a_cluster_without_an_rpc_port_is_refused_with_a_sentence() {
    /// Kills the server if the test fails while it still runs.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(drover_bin())
        .args(["agent", "-server", "-bootstrap-expect", "3", "-data-dir"])
        .arg(dir.path().join("data"))
        .args(["-http-port", &free_port().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let status = wait_for("the server to exit", Duration::from_secs(20), || {
        child.0.try_wait().unwrap()
    });
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("needs an RPC port") && err.contains("-rpc-port"),
        "{err}"
    );
}
