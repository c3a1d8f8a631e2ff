//! ACLs through the real binary (`drover agent -dev -acl-enabled`, a three-server cluster
//! with `acl { enabled = true }`): bootstrap and its reset file, what each kind of route
//! demands of a token (and that a refusal changes nothing), forwarding with a token,
//! the anonymous policy, expiry, the CLI, and `/v1/acl/*` with ACLs off.

mod common;

use common::cluster::Cluster;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// A request with an optional token; the answer's JSON (or its sentence as a string).
fn call(url: &str, method: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
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
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn bootstrap(addr: &str) -> String {
    let (s, t) = call(&format!("{addr}/v1/acl/bootstrap"), "PUT", None, None);
    assert_eq!(s, 200, "{t}");
    t["SecretID"].as_str().unwrap().to_string()
}

/// A client token holding one new policy with `rules`.
fn client_token(addr: &str, mgmt: &str, name: &str, rules: &str) -> String {
    let (s, v) = call(
        &format!("{addr}/v1/acl/policy/{name}"),
        "PUT",
        Some(mgmt),
        Some(json!({ "Name": name, "Rules": rules })),
    );
    assert_eq!(s, 200, "policy {name}: {v}");
    let (s, t) = call(
        &format!("{addr}/v1/acl/token"),
        "POST",
        Some(mgmt),
        Some(json!({ "Name": name, "Type": "client", "Policies": [name] })),
    );
    assert_eq!(s, 200, "token {name}: {t}");
    t["SecretID"].as_str().unwrap().to_string()
}

fn job_body(id: &str) -> Value {
    json!({ "Job": {
        "ID": id, "Name": id, "Type": "batch", "Datacenters": ["dc1"],
        "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
            "Name": "t", "Driver": "raw_exec",
            "Config": { "command": "/bin/true" },
            "Resources": { "CPU": 20, "MemoryMB": 16 }
        }]}]
    }})
}

#[test]
fn acl_routes_say_acl_support_is_disabled_without_acls() {
    let agent = DevAgent::start();
    for (method, path) in [("GET", "/v1/acl/tokens"), ("PUT", "/v1/acl/bootstrap")] {
        let (s, v) = call(&format!("{}{path}", agent.addr()), method, None, None);
        assert_eq!(
            (s, v.as_str()),
            (400, Some("ACL support disabled")),
            "{path}"
        );
    }
    // Everything else behaves as before: no token needed.
    assert_eq!(
        call(&format!("{}/v1/jobs", agent.addr()), "GET", None, None).0,
        200
    );
}

#[test]
fn bootstrap_happens_once_and_the_reset_file_allows_one_more() {
    let agent = DevAgent::start_acl(None);
    let addr = agent.addr();
    let first = bootstrap(&addr);
    let (s, me) = call(
        &format!("{addr}/v1/acl/token/self"),
        "GET",
        Some(&first),
        None,
    );
    assert_eq!((s, me["Type"].as_str()), (200, Some("management")));

    let (s, v) = call(&format!("{addr}/v1/acl/bootstrap"), "PUT", None, None);
    let msg = v.as_str().unwrap_or_default().to_string();
    assert_eq!(s, 400, "{v}");
    let reset: u64 = msg
        .strip_prefix("ACL bootstrap already done (reset index: ")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected refusal: {msg}"));

    std::fs::write(
        agent.data_dir().join("server/acl-bootstrap-reset"),
        reset.to_string(),
    )
    .unwrap();
    let second = bootstrap(&addr);
    assert_ne!(first, second);
    // The reset index is used up: a third bootstrap is refused again.
    let (s, _) = call(&format!("{addr}/v1/acl/bootstrap"), "PUT", None, None);
    assert_eq!(s, 400);
    // Both management tokens work.
    for t in [&first, &second] {
        assert_eq!(
            call(&format!("{addr}/v1/acl/tokens"), "GET", Some(t), None).0,
            200
        );
    }
}

/// One route of the table: the request, the rules that allow it, and what it changes.
struct Row {
    what: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
    rules: &'static str,
    /// A read (with a management token) that shows whether the request changed state.
    changed: Option<Box<dyn Fn() -> bool>>,
}

#[test]
fn each_route_kind_refuses_missing_unknown_and_weak_tokens_and_admits_the_capability() {
    let agent = DevAgent::start_acl(None);
    let addr = agent.addr();
    let mgmt = bootstrap(&addr);

    // A running allocation to read logs from and exec into.
    let (s, v) = call(
        &format!("{addr}/v1/jobs"),
        "PUT",
        Some(&mgmt),
        Some(json!({ "Job": {
            "ID": "echo", "Name": "echo", "Type": "service", "Datacenters": ["dc1"],
            "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": { "command": "/bin/sh", "args": ["-c", "echo hello; sleep 300"] },
                "Resources": { "CPU": 20, "MemoryMB": 16 }
            }]}]
        }})),
    );
    assert_eq!(s, 200, "{v}");
    let alloc = wait_for(
        "the echo allocation to run",
        Duration::from_secs(30),
        || {
            let (_, v) = call(
                &format!("{addr}/v1/job/echo/allocations"),
                "GET",
                Some(&mgmt),
                None,
            );
            v.as_array()?
                .iter()
                .find(|a| a["ClientStatus"] == "running")
                .map(|a| a["ID"].as_str().unwrap().to_string())
        },
    );
    let (_, nodes) = call(&format!("{addr}/v1/nodes"), "GET", Some(&mgmt), None);
    let node = nodes[0]["ID"].as_str().unwrap().to_string();

    let weak = client_token(&addr, &mgmt, "unrelated", "quota { policy = \"read\" }");
    let exists = |path: String| {
        let (addr, mgmt) = (addr.clone(), mgmt.clone());
        Box::new(move || call(&format!("{addr}{path}"), "GET", Some(&mgmt), None).0 == 200)
            as Box<dyn Fn() -> bool>
    };
    let rows = vec![
        Row {
            what: "job submit",
            method: "PUT",
            path: "/v1/jobs".into(),
            body: Some(job_body("acl-new")),
            rules: r#"namespace "default" { capabilities = ["submit-job"] }"#,
            changed: Some(exists("/v1/job/acl-new".into())),
        },
        Row {
            what: "job read",
            method: "GET",
            path: "/v1/job/echo".into(),
            body: None,
            rules: r#"namespace "default" { capabilities = ["read-job"] }"#,
            changed: None,
        },
        Row {
            what: "job list (filtered)",
            method: "GET",
            path: "/v1/jobs?namespace=*".into(),
            body: None,
            rules: r#"namespace "default" { capabilities = ["list-jobs"] }"#,
            changed: None,
        },
        Row {
            what: "namespace read",
            method: "GET",
            path: "/v1/namespace/default".into(),
            body: None,
            rules: r#"namespace "default" { policy = "read" }"#,
            changed: None,
        },
        Row {
            what: "alloc logs",
            method: "GET",
            path: format!("/v1/client/fs/logs/{alloc}?task=t&type=stdout&plain=true"),
            body: None,
            rules: r#"namespace "default" { capabilities = ["read-logs"] }"#,
            changed: None,
        },
        Row {
            what: "alloc exec",
            method: "POST",
            path: format!("/v1/client/allocation/{alloc}/exec"),
            body: Some(json!({ "Task": "t", "Cmd": ["/bin/echo", "hi"] })),
            rules: r#"namespace "default" { capabilities = ["alloc-exec"] }"#,
            changed: None,
        },
        Row {
            what: "node read",
            method: "GET",
            path: format!("/v1/node/{node}"),
            body: None,
            rules: r#"node { policy = "read" }"#,
            changed: None,
        },
        Row {
            what: "node write",
            method: "PUT",
            path: format!("/v1/node/{node}/eligibility"),
            body: Some(json!({ "NodeID": node, "Eligibility": "eligible" })),
            rules: r#"node { policy = "write" }"#,
            changed: None,
        },
        Row {
            what: "operator",
            method: "GET",
            path: "/v1/operator/scheduler/configuration".into(),
            body: None,
            rules: r#"operator { policy = "read" }"#,
            changed: None,
        },
        Row {
            what: "agent",
            method: "GET",
            path: "/v1/agent/self".into(),
            body: None,
            rules: r#"agent { policy = "read" }"#,
            changed: None,
        },
        Row {
            what: "variables",
            method: "PUT",
            path: "/v1/var/acl/secret".into(),
            body: Some(json!({ "Items": { "k": "v" } })),
            rules: r#"
                namespace "default" {
                  variables {
                    path "acl/*" {
                      capabilities = ["write"]
                    }
                  }
                }"#,
            changed: Some(exists("/v1/var/acl/secret".into())),
        },
    ];
    for (i, row) in rows.iter().enumerate() {
        let url = format!("{addr}{}", row.path);
        let good = client_token(&addr, &mgmt, &format!("row-{i}"), row.rules);
        for (who, token, sentence) in [
            ("no token", None, "Permission denied"),
            (
                "an unknown token",
                Some("6d0a5e4b-1111-4222-8333-944455556666"),
                "ACL token not found",
            ),
            (
                "a token without the capability",
                Some(weak.as_str()),
                "Permission denied",
            ),
        ] {
            let (s, v) = call(&url, row.method, token, row.body.clone());
            assert_eq!(
                (s, v.as_str()),
                (403, Some(sentence)),
                "{} with {who}",
                row.what
            );
            if let Some(changed) = &row.changed {
                assert!(!changed(), "{} with {who} changed the state", row.what);
            }
        }
        let (s, v) = call(&url, row.method, Some(&good), row.body.clone());
        assert!(
            (200..300).contains(&s),
            "{} with its capability: {s} {v}",
            row.what
        );
        if let Some(changed) = &row.changed {
            assert!(
                changed(),
                "{} with its capability changed nothing",
                row.what
            );
        }
        if row.what == "alloc logs" {
            assert!(v.as_str().unwrap_or_default().contains("hello"), "{v}");
        }
        if row.what == "job list (filtered)" {
            assert!(v
                .as_array()
                .is_some_and(|l| l.iter().any(|j| j["ID"] == "echo")));
        }
    }

    // A list keeps only what the token may read: read-job in another namespace sees no
    // allocation of the default one.
    let other = client_token(
        &addr,
        &mgmt,
        "other-ns",
        r#"namespace "other" { capabilities = ["read-job", "list-jobs"] }"#,
    );
    let (s, v) = call(
        &format!("{addr}/v1/allocations?namespace=*"),
        "GET",
        Some(&other),
        None,
    );
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(0)), "{v}");
    let (s, v) = call(
        &format!("{addr}/v1/allocations?namespace=*"),
        "GET",
        Some(&mgmt),
        None,
    );
    assert!(s == 200 && !v.as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn anonymous_policy_grants_reads_and_nothing_more() {
    let agent = DevAgent::start_acl(None);
    let addr = agent.addr();
    let mgmt = bootstrap(&addr);
    assert_eq!(call(&format!("{addr}/v1/jobs"), "GET", None, None).0, 403);
    let (s, v) = call(
        &format!("{addr}/v1/acl/policy/anonymous"),
        "PUT",
        Some(&mgmt),
        Some(json!({ "Rules": "namespace \"default\" { policy = \"read\" }" })),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(call(&format!("{addr}/v1/jobs"), "GET", None, None).0, 200);
    let (s, _) = call(
        &format!("{addr}/v1/jobs"),
        "PUT",
        None,
        Some(job_body("anon")),
    );
    assert_eq!(s, 403);
    assert_eq!(
        call(&format!("{addr}/v1/job/anon"), "GET", Some(&mgmt), None).0,
        404
    );
}

#[test]
fn an_expired_token_is_refused_as_unknown() {
    let agent = DevAgent::start_acl(Some("acl {\n  token_min_expiration_ttl = \"1s\"\n}\n"));
    let addr = agent.addr();
    let mgmt = bootstrap(&addr);
    client_token(
        &addr,
        &mgmt,
        "reader",
        "namespace \"default\" { policy = \"read\" }",
    );
    let (s, t) = call(
        &format!("{addr}/v1/acl/token"),
        "POST",
        Some(&mgmt),
        Some(json!({ "Name": "brief", "Policies": ["reader"], "ExpirationTTL": "2s" })),
    );
    assert_eq!(s, 200, "{t}");
    assert!(t["ExpirationTime"].is_string(), "{t}");
    let secret = t["SecretID"].as_str().unwrap().to_string();
    let url = format!("{addr}/v1/jobs");
    assert_eq!(call(&url, "GET", Some(&secret), None).0, 200);
    wait_for("the token to expire", Duration::from_secs(15), || {
        let (s, v) = call(&url, "GET", Some(&secret), None);
        (s == 403).then_some(v)
    });
    let (_, v) = call(&url, "GET", Some(&secret), None);
    assert_eq!(v.as_str(), Some("ACL token not found"));
}

#[test]
fn a_client_token_survives_forwarding_from_a_follower_to_the_leader() {
    let cluster = Cluster::start_with_acl(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let via = cluster.servers[follower].http();
    let mgmt = bootstrap(&via);
    let submit = client_token(
        &via,
        &mgmt,
        "submitter",
        r#"namespace "default" { capabilities = ["submit-job", "read-job"] }"#,
    );
    let (s, v) = call(
        &format!("{via}/v1/jobs"),
        "PUT",
        None,
        Some(job_body("fwd")),
    );
    assert_eq!((s, v.as_str()), (403, Some("Permission denied")));
    let (s, v) = call(
        &format!("{via}/v1/jobs"),
        "PUT",
        Some(&submit),
        Some(job_body("fwd")),
    );
    assert_eq!(s, 200, "{v}");
    let lead = cluster.servers[leader].http();
    let (s, job) = call(&format!("{lead}/v1/job/fwd"), "GET", Some(&mgmt), None);
    assert_eq!((s, job["ID"].as_str()), (200, Some("fwd")));
}

#[test]
fn the_cli_bootstraps_writes_policies_and_tokens_and_sends_the_token() {
    let agent = DevAgent::start_acl(None);
    let run = |args: &[&str], token: Option<&str>| {
        let mut c = Command::new(drover_bin());
        c.args(args)
            .env("NOMAD_ADDR", agent.addr())
            .env_remove("NOMAD_TOKEN");
        if let Some(t) = token {
            c.env("NOMAD_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = run(&["acl", "bootstrap"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Name         = Bootstrap Token"), "{text}");
    let mgmt = text
        .lines()
        .find_map(|l| l.strip_prefix("Secret ID    = "))
        .unwrap()
        .to_string();
    let rules = agent.dir.path().join("read.hcl");
    std::fs::write(&rules, "namespace \"default\" {\n  policy = \"read\"\n}\n").unwrap();
    let out = run(
        &[
            "acl",
            "policy",
            "apply",
            "-description",
            "readers",
            "read",
            rules.to_str().unwrap(),
        ],
        Some(&mgmt),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["acl", "policy", "list"], Some(&mgmt));
    assert!(stdout(&out).contains("read  readers"), "{}", stdout(&out));
    let out = run(
        &[
            "acl", "role", "create", "-name", "readers", "-policy", "read",
        ],
        Some(&mgmt),
    );
    assert!(
        stdout(&out).contains("Policies     = read"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &[
            "acl",
            "token",
            "create",
            "-name",
            "r",
            "-role-name",
            "readers",
        ],
        Some(&mgmt),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let reader = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Secret ID    = "))
        .unwrap()
        .to_string();
    // `-token` wins over the environment, and the reader may list jobs but not tokens.
    let out = run(&["-token", &reader, "job", "status"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["acl", "token", "list"], Some(&reader));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let out = run(&["acl", "token", "self"], Some(&reader));
    assert!(stdout(&out).contains("readers("), "{}", stdout(&out));
    let bad = agent.dir.path().join("bad.hcl");
    std::fs::write(&bad, "namespace \"default\" {\n  polcy = \"read\"\n}\n").unwrap();
    let out = run(
        &["acl", "policy", "apply", "bad", bad.to_str().unwrap()],
        Some(&mgmt),
    );
    assert!(stderr(&out).contains("2:3"), "{}", stderr(&out));
}

#[test]
fn the_ui_asks_for_a_management_token_when_acls_are_on() {
    let agent = DevAgent::start_acl(None);
    let addr = agent.addr();
    let mgmt = bootstrap(&addr);
    let reader = client_token(
        &addr,
        &mgmt,
        "reader",
        "namespace \"default\" { policy = \"read\" }",
    );
    let get = |cookie: Option<&str>| {
        let mut req = reqwest::blocking::Client::new().get(format!("{addr}/ui/jobs"));
        if let Some(c) = cookie {
            req = req.header("Cookie", format!("drover-token={c}"));
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    let (s, page) = get(None);
    assert_eq!(s, 403);
    assert!(page.contains("management token"), "{page}");
    assert_eq!(get(Some(&reader)).0, 403);
    assert_eq!(get(Some(&mgmt)).0, 200);

    // An action replays its /v1 call with the user's own token: Stop works.
    let (s, v) = call(
        &format!("{addr}/v1/jobs"),
        "PUT",
        Some(&mgmt),
        Some(json!({ "Job": {
            "ID": "uijob", "Name": "uijob", "Type": "service", "Datacenters": ["dc1"],
            "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": { "command": "/bin/sleep", "args": ["300"] },
                "Resources": { "CPU": 20, "MemoryMB": 16 }
            }]}]
        }})),
    );
    assert_eq!(s, 200, "{v}");
    let resp = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{addr}/ui/jobs/uijob/stop"))
        .header("Cookie", format!("drover-token={mgmt}"))
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("namespace", "default")])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{:?}", resp.text());
    let (_, job) = call(&format!("{addr}/v1/job/uijob"), "GET", Some(&mgmt), None);
    assert_eq!(job["Stop"], true, "{job}");
}

#[test]
fn a_client_only_agent_with_acls_answers_only_requests_a_server_checked_and_relayed() {
    let cluster = Cluster::start_with_acl(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let http = cluster.servers[leader].http();
    let mgmt = bootstrap(&http);
    let servers: Vec<String> = cluster.servers.iter().map(|s| s.agent_addr()).collect();
    let mut client = common::cluster::ClientProc::new("c1", cluster.dir.path().join("c1"), servers);
    client.extra_config = "acl {\n  enabled = true\n}\n".into();
    client.spawn();
    wait_for(
        "the client node to be ready",
        Duration::from_secs(30),
        || {
            let (_, v) = call(&format!("{http}/v1/nodes"), "GET", Some(&mgmt), None);
            v.as_array()?
                .iter()
                .any(|n| n["Status"] == "ready")
                .then_some(())
        },
    );
    let (s, v) = call(
        &format!("{http}/v1/jobs"),
        "PUT",
        Some(&mgmt),
        Some(json!({ "Job": {
            "ID": "echo", "Name": "echo", "Type": "service", "Datacenters": ["dc1"],
            "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": { "command": "/bin/sh", "args": ["-c", "echo hello; sleep 300"] },
                "Resources": { "CPU": 20, "MemoryMB": 16 }
            }]}]
        }})),
    );
    assert_eq!(s, 200, "{v}");
    let alloc = wait_for("the allocation to run", Duration::from_secs(30), || {
        let (_, v) = call(
            &format!("{http}/v1/job/echo/allocations"),
            "GET",
            Some(&mgmt),
            None,
        );
        v.as_array()?
            .iter()
            .find(|a| a["ClientStatus"] == "running")
            .map(|a| a["ID"].as_str().unwrap().to_string())
    });
    let logs = format!("/v1/client/fs/logs/{alloc}?task=t&type=stdout&plain=true");
    let reader = client_token(
        &http,
        &mgmt,
        "logs",
        r#"namespace "default" { capabilities = ["read-logs"] }"#,
    );
    // Through a server: checked there, then relayed with the node's proof.
    assert_eq!(call(&format!("{http}{logs}"), "GET", None, None).0, 403);
    let text = wait_for("the relayed logs", Duration::from_secs(15), || {
        let (s, v) = call(&format!("{http}{logs}"), "GET", Some(&reader), None);
        let text = v.as_str().unwrap_or_default().to_string();
        (s == 200 && text.contains("hello")).then_some(text)
    });
    assert!(text.contains("hello"));
    // Straight to the agent's port, even a management token is refused.
    let direct = format!("http://127.0.0.1:{}{logs}", client.http_port);
    let (s, v) = call(&direct, "GET", Some(&mgmt), None);
    assert_eq!((s, v.as_str()), (403, Some("Permission denied")));
}
