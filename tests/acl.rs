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
    let (status, v, _) = common::call(url, method, token, body);
    (status, v)
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

/// What a route of [`EVERY_ROUTE`] asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Open to anyone (Nomad leaves these open).
    Open,
    /// A list that answers everyone but filters what the token may read.
    Filtered,
    /// Internal (RPC listener only); not served on the HTTP API.
    Internal,
    /// Any valid token.
    AnyToken,
    /// A capability (namespace, node, agent, operator, quota, plugin, variables) or a
    /// management token.
    Capability,
}

/// Every route `acl::route::required` knows, as its unit test lists them (generated from
/// that table; object IDs need not exist: a refusal comes before any lookup).
const EVERY_ROUTE: &[(&str, &str, &str, Kind)] = &[
    ("GET", "/v1/jobs", "", Kind::Capability),
    ("GET", "/v1/jobs", "namespace=*", Kind::Filtered),
    ("GET", "/v1/jobs", "namespace=%2A", Kind::Filtered),
    ("PUT", "/v1/jobs", "", Kind::Capability),
    ("POST", "/v1/jobs", "", Kind::Capability),
    ("POST", "/v1/jobs/parse", "", Kind::Capability),
    ("POST", "/v1/validate/job", "", Kind::Capability),
    ("GET", "/v1/job/web", "", Kind::Capability),
    ("POST", "/v1/job/web", "", Kind::Capability),
    ("DELETE", "/v1/job/web", "purge=true", Kind::Capability),
    ("GET", "/v1/job/web/versions", "", Kind::Capability),
    ("GET", "/v1/job/web/allocations", "", Kind::Capability),
    ("GET", "/v1/job/web/evaluations", "", Kind::Capability),
    ("GET", "/v1/job/web/deployments", "", Kind::Capability),
    ("GET", "/v1/job/web/deployment", "", Kind::Capability),
    ("GET", "/v1/job/web/summary", "", Kind::Capability),
    ("GET", "/v1/job/web/services", "", Kind::Capability),
    ("POST", "/v1/job/web/plan", "", Kind::Capability),
    ("POST", "/v1/job/web/evaluate", "", Kind::Capability),
    ("POST", "/v1/job/web/revert", "", Kind::Capability),
    ("POST", "/v1/job/web/stable", "", Kind::Capability),
    ("POST", "/v1/job/web/dispatch", "", Kind::Capability),
    ("POST", "/v1/job/web/periodic/force", "", Kind::Capability),
    ("GET", "/v1/job/web/scale", "", Kind::Capability),
    ("POST", "/v1/job/web/scale", "", Kind::Capability),
    (
        "GET",
        "/v1/job/batch%2Fperiodic-1/allocations",
        "",
        Kind::Capability,
    ),
    (
        "GET",
        "/v1/job/batch/periodic-1/allocations",
        "",
        Kind::Capability,
    ),
    ("GET", "/v1/job/batch/periodic-1", "", Kind::Capability),
    ("GET", "/v1/allocations", "", Kind::Capability),
    ("GET", "/v1/allocations", "namespace=*", Kind::Filtered),
    ("GET", "/v1/allocation/a1", "", Kind::Capability),
    ("GET", "/v1/allocation/a1/services", "", Kind::Capability),
    ("POST", "/v1/allocation/a1/stop", "", Kind::Capability),
    (
        "GET",
        "/v1/client/fs/logs/a1",
        "task=web&type=stdout",
        Kind::Capability,
    ),
    ("GET", "/v1/client/fs/ls/a1", "path=/", Kind::Capability),
    ("GET", "/v1/client/fs/cat/a1", "", Kind::Capability),
    ("GET", "/v1/client/fs/stat/a1", "", Kind::Capability),
    ("GET", "/v1/client/fs/readat/a1", "", Kind::Capability),
    ("GET", "/v1/client/fs/stream/a1", "", Kind::Capability),
    ("GET", "/v1/client/allocation/a1/exec", "", Kind::Capability),
    (
        "POST",
        "/v1/client/allocation/a1/signal",
        "",
        Kind::Capability,
    ),
    (
        "POST",
        "/v1/client/allocation/a1/restart",
        "",
        Kind::Capability,
    ),
    (
        "GET",
        "/v1/client/allocation/a1/stats",
        "",
        Kind::Capability,
    ),
    (
        "GET",
        "/v1/client/allocation/a1/checks",
        "",
        Kind::Capability,
    ),
    ("GET", "/v1/client/allocation/a1/gc", "", Kind::Capability),
    ("GET", "/v1/client/stats", "", Kind::Capability),
    ("GET", "/v1/client/gc", "", Kind::Capability),
    ("GET", "/v1/evaluations", "", Kind::Capability),
    ("DELETE", "/v1/evaluations", "", Kind::Capability),
    ("GET", "/v1/evaluations/count", "", Kind::Capability),
    ("GET", "/v1/evaluation/e1", "", Kind::Capability),
    ("GET", "/v1/evaluation/e1/allocations", "", Kind::Capability),
    ("GET", "/v1/deployments", "", Kind::Capability),
    ("GET", "/v1/deployment/d1", "", Kind::Capability),
    ("GET", "/v1/deployment/allocations/d1", "", Kind::Capability),
    ("POST", "/v1/deployment/promote/d1", "", Kind::Capability),
    ("POST", "/v1/deployment/fail/d1", "", Kind::Capability),
    ("POST", "/v1/deployment/pause/d1", "", Kind::Capability),
    (
        "POST",
        "/v1/deployment/allocation-health/d1",
        "",
        Kind::Capability,
    ),
    ("GET", "/v1/nodes", "", Kind::Capability),
    ("GET", "/v1/node/n1", "", Kind::Capability),
    ("GET", "/v1/node/n1/allocations", "", Kind::Capability),
    ("POST", "/v1/node/n1/drain", "", Kind::Capability),
    ("POST", "/v1/node/n1/eligibility", "", Kind::Capability),
    ("POST", "/v1/node/n1/evaluate", "", Kind::Capability),
    ("POST", "/v1/node/n1/purge", "", Kind::Capability),
    ("GET", "/v1/services", "", Kind::Capability),
    ("GET", "/v1/service/web", "", Kind::Capability),
    ("DELETE", "/v1/service/web/id1", "", Kind::Capability),
    ("GET", "/v1/vars", "prefix=a", Kind::Filtered),
    ("GET", "/v1/var/a/b", "", Kind::Capability),
    ("PUT", "/v1/var/a/b", "cas=3", Kind::Capability),
    ("DELETE", "/v1/var/a/b", "", Kind::Capability),
    ("GET", "/v1/namespaces", "", Kind::Filtered),
    ("GET", "/v1/namespace/prod", "", Kind::Capability),
    ("PUT", "/v1/namespace/prod", "", Kind::Capability),
    ("POST", "/v1/namespace/prod", "", Kind::Capability),
    ("DELETE", "/v1/namespace/prod", "", Kind::Capability),
    ("POST", "/v1/acl/bootstrap", "", Kind::Open),
    ("GET", "/v1/acl/policies", "", Kind::Filtered),
    ("GET", "/v1/acl/policy/ro", "", Kind::Filtered),
    ("POST", "/v1/acl/policy/ro", "", Kind::Capability),
    ("DELETE", "/v1/acl/policy/ro", "", Kind::Capability),
    ("GET", "/v1/acl/tokens", "", Kind::Capability),
    ("POST", "/v1/acl/token", "", Kind::Capability),
    ("GET", "/v1/acl/token/self", "", Kind::AnyToken),
    ("GET", "/v1/acl/token/acc-1", "", Kind::Filtered),
    ("POST", "/v1/acl/token/acc-1", "", Kind::Capability),
    ("DELETE", "/v1/acl/token/acc-1", "", Kind::Capability),
    ("POST", "/v1/acl/token/onetime", "", Kind::AnyToken),
    ("POST", "/v1/acl/token/onetime/exchange", "", Kind::Open),
    ("GET", "/v1/acl/roles", "", Kind::Filtered),
    ("POST", "/v1/acl/role", "", Kind::Capability),
    ("GET", "/v1/acl/role/r1", "", Kind::Filtered),
    ("GET", "/v1/acl/role/name/ops", "", Kind::Filtered),
    ("POST", "/v1/acl/role/r1", "", Kind::Capability),
    ("DELETE", "/v1/acl/role/r1", "", Kind::Capability),
    ("GET", "/v1/acl/binding-rules", "", Kind::Capability),
    (
        "GET",
        "/v1/operator/raft/configuration",
        "",
        Kind::Capability,
    ),
    ("DELETE", "/v1/operator/raft/peer", "id=x", Kind::Capability),
    (
        "GET",
        "/v1/operator/autopilot/configuration",
        "",
        Kind::Capability,
    ),
    (
        "PUT",
        "/v1/operator/autopilot/configuration",
        "",
        Kind::Capability,
    ),
    ("GET", "/v1/operator/autopilot/health", "", Kind::Capability),
    (
        "GET",
        "/v1/operator/scheduler/configuration",
        "",
        Kind::Capability,
    ),
    (
        "POST",
        "/v1/operator/scheduler/configuration",
        "",
        Kind::Capability,
    ),
    ("GET", "/v1/operator/snapshot", "", Kind::Capability),
    ("PUT", "/v1/operator/snapshot", "", Kind::Capability),
    ("GET", "/v1/operator/keyring/keys", "", Kind::Capability),
    ("GET", "/v1/agent/self", "", Kind::Capability),
    ("GET", "/v1/agent/health", "", Kind::Open),
    ("GET", "/v1/agent/members", "", Kind::Capability),
    ("GET", "/v1/agent/servers", "", Kind::Capability),
    ("PUT", "/v1/agent/servers", "address=x", Kind::Capability),
    ("PUT", "/v1/agent/join", "address=x", Kind::Capability),
    ("PUT", "/v1/agent/force-leave", "node=x", Kind::Capability),
    ("GET", "/v1/agent/monitor", "", Kind::Capability),
    ("GET", "/v1/agent/pprof/heap", "", Kind::Capability),
    ("GET", "/v1/status/leader", "", Kind::Open),
    ("GET", "/v1/status/peers", "", Kind::Open),
    ("GET", "/v1/regions", "", Kind::Open),
    ("GET", "/v1/metrics", "", Kind::Open),
    ("POST", "/v1/search", "", Kind::Filtered),
    ("POST", "/v1/search/fuzzy", "", Kind::Filtered),
    ("PUT", "/v1/system/gc", "", Kind::Capability),
    (
        "PUT",
        "/v1/system/reconcile/summaries",
        "",
        Kind::Capability,
    ),
    ("GET", "/v1/event/stream", "topic=Job", Kind::Filtered),
    ("GET", "/v1/scaling/policies", "", Kind::Capability),
    ("GET", "/v1/scaling/policy/p1", "", Kind::Capability),
    ("GET", "/v1/volumes", "type=csi", Kind::Capability),
    ("GET", "/v1/volumes", "type=host", Kind::Capability),
    ("GET", "/v1/volume/csi/v1", "", Kind::Capability),
    ("PUT", "/v1/volume/csi/v1", "", Kind::Capability),
    ("DELETE", "/v1/volume/csi/v1", "", Kind::Capability),
    ("PUT", "/v1/volume/csi/v1/create", "", Kind::Capability),
    (
        "DELETE",
        "/v1/volume/csi/v1/detach",
        "node=n",
        Kind::Capability,
    ),
    ("PUT", "/v1/volume/host/create", "", Kind::Capability),
    ("PUT", "/v1/volume/host/register", "", Kind::Capability),
    ("GET", "/v1/volume/host/h1", "", Kind::Capability),
    ("DELETE", "/v1/volume/host/h1", "", Kind::Capability),
    ("GET", "/v1/plugins", "type=csi", Kind::Capability),
    ("GET", "/v1/plugin/csi/p1", "", Kind::Capability),
    ("GET", "/v1/quotas", "", Kind::Capability),
    ("PUT", "/v1/internal/node/register", "", Kind::Internal),
    ("POST", "/v1/internal/raft/append", "", Kind::Internal),
];

/// The indexes of every table, read with the management token: equal before and after
/// means nothing was written.
fn table_indexes(addr: &str, mgmt: &str) -> Vec<(&'static str, u64)> {
    [
        "/v1/jobs?namespace=*",
        "/v1/nodes",
        "/v1/allocations?namespace=*",
        "/v1/evaluations?namespace=*",
        "/v1/deployments?namespace=*",
        "/v1/vars?namespace=*",
        "/v1/acl/tokens",
        "/v1/acl/policies",
        "/v1/acl/roles",
        "/v1/namespaces",
        "/v1/operator/scheduler/configuration",
        "/v1/services?namespace=*",
    ]
    .into_iter()
    .map(|p| {
        (
            p,
            common::call(&format!("{addr}{p}"), "GET", Some(mgmt), None).2,
        )
    })
    .collect()
}

#[test]
fn every_route_refuses_no_token_an_unknown_token_and_a_weak_one_and_writes_nothing() {
    let agent = DevAgent::start_acl(None);
    let addr = agent.addr();
    let mgmt = bootstrap(&addr);
    let weak = client_token(
        &addr,
        &mgmt,
        "elsewhere",
        r#"namespace "elsewhere" { policy = "write" }"#,
    );
    let before = table_indexes(&addr, &mgmt);
    let mut checked = 0;
    for &(method, path, query, kind) in EVERY_ROUTE {
        if matches!(kind, Kind::Open | Kind::Filtered | Kind::Internal) {
            continue;
        }
        let url = if query.is_empty() {
            format!("{addr}{path}")
        } else {
            format!("{addr}{path}?{query}")
        };
        // An unknown secret is refused everywhere; no token is the anonymous token,
        // which routes open to any token (`token/self`) admit.
        let mut callers = vec![(
            "an unknown token",
            Some("6d0a5e4b-1111-4222-8333-944455556666"),
            "ACL token not found",
        )];
        if kind == Kind::Capability {
            callers.push(("no token", None, "Permission denied"));
            callers.push((
                "a token for another namespace",
                Some(weak.as_str()),
                "Permission denied",
            ));
        }
        for (who, token, sentence) in callers {
            let (s, v, _) = common::call(&url, method, token, None);
            assert_eq!(s, 403, "{method} {path}?{query} with {who}: {v}");
            if method != "HEAD" {
                assert_eq!(v.as_str(), Some(sentence), "{method} {path} with {who}");
            }
            checked += 1;
        }
    }
    assert!(checked > 250, "only {checked} refusals checked");
    assert_eq!(
        table_indexes(&addr, &mgmt),
        before,
        "a refused request wrote something"
    );
}
