//! Nomad API compatibility through the real binary: the agent routes (servers, members,
//! join, force-leave), Raft addresses in `/v1/status/*` and the dev agent's RPC port,
//! prefix and fuzzy search, scaling policies, list stubs with resources, idempotent
//! deregistration, the client routes (signal, fs stream, gc) and the deployment
//! refusals' exact sentences.

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

fn send(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = Client::new().request(method, url);
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

fn put(agent: &DevAgent, path: &str, body: Option<Value>) -> (u16, Value) {
    send(
        reqwest::Method::PUT,
        format!("{}{path}", agent.addr()),
        body,
    )
}

fn post(agent: &DevAgent, path: &str, body: Value) -> (u16, Value) {
    send(
        reqwest::Method::POST,
        format!("{}{path}", agent.addr()),
        Some(body),
    )
}

/// The ID of the job's allocation once its client reports it running.
fn running_alloc(agent: &DevAgent, job: &str) -> String {
    wait_for("a running allocation", Duration::from_secs(30), || {
        let (_, allocs) = agent.get_json(&format!("/v1/job/{job}/allocations"));
        allocs.as_array()?.iter().find_map(|a| {
            (a["ClientStatus"] == "running").then(|| a["ID"].as_str().unwrap().to_string())
        })
    })
}

#[test]
fn status_and_agent_routes_answer_raft_rpc_addresses_joins_and_force_leaves() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    let (_, leader) = agent.get_json("/v1/status/leader");
    let leader = leader.as_str().unwrap().to_string();
    assert!(leader.starts_with("127.0.0.1:"), "{leader}");
    assert_ne!(
        leader,
        format!("127.0.0.1:{}", agent.port),
        "the leader is its RPC address, not its HTTP one"
    );
    let (_, peers) = agent.get_json("/v1/status/peers");
    assert_eq!(peers, json!([leader]));
    // The client of the dev agent talks to that same RPC address.
    let (code, servers) = agent.get_json("/v1/agent/servers");
    assert_eq!(code, 200, "{servers}");
    assert_eq!(servers, json!([leader]));

    let (_, members) = agent.get_json("/v1/agent/members");
    let m = &members["Members"][0];
    assert_eq!(m["Status"], "alive", "{members}");
    assert!(
        m["ProtocolCur"].is_u64() && m["DelegateCur"].is_u64(),
        "{m}"
    );
    assert!(members["ServerRegion"].is_string() && members["ServerDC"].is_string());

    // Join answers 200 with the count and the errors, as Nomad does.
    let (code, r) = put(&agent, "/v1/agent/join?address=nope", None);
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["num_joined"], 0);
    assert!(r["error"].as_str().unwrap().contains("nope"), "{r}");
    let (code, r) = put(&agent, &format!("/v1/agent/join?address={leader}"), None);
    assert_eq!((code, &r["num_joined"]), (200, &json!(1)), "{r}");
    // Force-leave of an unknown member is not an error; of itself, a sentence.
    assert_eq!(put(&agent, "/v1/agent/force-leave?node=nope", None).0, 200);
    let (code, r) = put(&agent, "/v1/agent/force-leave", None);
    assert_eq!(code, 400);
    assert!(r.as_str().unwrap().contains("?node="), "{r}");

    // Replacing the client's servers: checked, then taken.
    let (code, r) = put(&agent, "/v1/agent/servers", None);
    assert_eq!(code, 400);
    assert!(
        r.as_str().unwrap().contains("missing server address"),
        "{r}"
    );
    assert_eq!(put(&agent, "/v1/agent/servers?address=a b", None).0, 400);
    let (code, r) = put(
        &agent,
        &format!("/v1/agent/servers?address={leader}&address=127.0.0.1:9"),
        None,
    );
    assert_eq!(code, 200, "{r}");
    let (_, servers) = agent.get_json("/v1/agent/servers");
    assert_eq!(servers, json!([leader, "127.0.0.1:9"]));
    // The node keeps heartbeating through the list.
    std::thread::sleep(Duration::from_millis(100));
    let (_, nodes) = agent.get_json("/v1/nodes");
    assert_eq!(nodes[0]["Status"], "ready");
}

#[test]
fn dev_agent_given_its_own_http_port_takes_a_free_rpc_port_instead_of_4647() {
    // Hold 4647 (or find it held by another agent): a dev agent told another HTTP port
    // (as every test agent is) never asks for 4647, so it neither races nor falls back.
    // The fallback itself (default ports, 4647 taken) is a unit test of the server.
    let _held = TcpListener::bind("127.0.0.1:4647");
    let agent = DevAgent::start();
    let (_, leader) = agent.get_json("/v1/status/leader");
    let leader = leader.as_str().unwrap();
    assert!(leader.starts_with("127.0.0.1:"), "{leader}");
    assert_ne!(leader, "127.0.0.1:4647");
    assert!(
        !agent.log().contains("the RPC port is taken"),
        "asked for 4647 although given an HTTP port:\n{}",
        agent.log()
    );
}

#[test]
fn search_finds_jobs_by_id_prefix_and_fuzzy_text_and_refuses_unknown_contexts() {
    let agent = DevAgent::start();
    let out = agent.run_job(
        "compat.hcl",
        &raw_exec_job("compat-web", "sleep 3600", 50, 32),
        &["-detach"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let (code, r) = post(
        &agent,
        "/v1/search",
        json!({"Prefix": "compat-", "Context": "jobs"}),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["Matches"]["jobs"], json!(["compat-web"]));
    assert_eq!(r["Truncations"]["jobs"], false);
    let (_, r) = post(
        &agent,
        "/v1/search",
        json!({"Prefix": "web", "Context": "jobs"}),
    );
    assert_eq!(
        r["Matches"]["jobs"],
        json!([]),
        "a prefix matches from the start"
    );
    let (_, r) = post(
        &agent,
        "/v1/search",
        json!({"Prefix": "compat", "Context": "all"}),
    );
    for ctx in [
        "jobs",
        "evals",
        "allocs",
        "nodes",
        "deployments",
        "namespaces",
    ] {
        assert!(r["Matches"][ctx].is_array(), "{ctx} missing: {r}");
    }

    let (code, r) = post(
        &agent,
        "/v1/search/fuzzy",
        json!({"Text": "WEB", "Context": "jobs"}),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r["Matches"]["jobs"],
        json!([{"ID": "compat-web", "Scope": ["default"]}])
    );
    assert_eq!(
        r["Matches"]["tasks"],
        json!([]),
        "no task is named like it: {r}"
    );
    let (_, r) = post(
        &agent,
        "/v1/search/fuzzy",
        json!({"Text": "slee", "Context": "jobs"}),
    );
    assert_eq!(
        r["Matches"]["tasks"],
        json!([{"ID": "sleep", "Scope": ["default", "compat-web", "main"]}])
    );

    let (code, r) = post(
        &agent,
        "/v1/search",
        json!({"Prefix": "x", "Context": "job"}),
    );
    assert_eq!(code, 400);
    assert!(
        r.as_str()
            .unwrap()
            .contains("invalid search context \"job\""),
        "{r}"
    );
    let (code, _) = post(
        &agent,
        "/v1/search/fuzzy",
        json!({"Text": "x", "Context": "jobs"}),
    );
    assert_eq!(code, 400, "fuzzy needs two characters");
}

#[test]
fn node_and_allocation_lists_carry_resources_and_os_only_when_asked() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    let (_, plain) = agent.get_json("/v1/nodes");
    assert!(plain[0].get("NodeResources").is_none(), "{plain}");
    assert!(plain[0].get("Attributes").is_none(), "{plain}");
    let (_, nodes) = agent.get_json("/v1/nodes?resources=true");
    assert!(
        nodes[0]["NodeResources"]["Memory"]["MemoryMB"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert!(nodes[0]["ReservedResources"].is_object(), "{nodes}");
    let (_, nodes) = agent.get_json("/v1/nodes?os=true");
    assert!(nodes[0]["Attributes"]["os.name"].is_string(), "{nodes}");
    assert!(nodes[0].get("NodeResources").is_none());

    let out = agent.run_job(
        "res.hcl",
        &raw_exec_job("res", "sleep 3600", 50, 32),
        &["-detach"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    running_alloc(&agent, "res");
    let (_, allocs) = agent.get_json("/v1/allocations");
    assert!(allocs[0].get("AllocatedResources").is_none());
    let (_, allocs) = agent.get_json("/v1/allocations?resources=true");
    assert!(
        allocs[0]["AllocatedResources"]["Tasks"]["sleep"].is_object(),
        "{allocs}"
    );
}

#[test]
fn scaling_policies_list_is_empty_and_an_unknown_policy_is_not_found() {
    let agent = DevAgent::start();
    let (code, list) = agent.get_json("/v1/scaling/policies");
    assert_eq!((code, list), (200, json!([])));
    let (code, r) = agent.get_json("/v1/scaling/policy/nope");
    assert_eq!(code, 404);
    assert_eq!(r, "scaling policy not found");
}

#[test]
fn deregistering_is_idempotent_and_purge_must_be_a_bool() {
    let agent = DevAgent::start();
    let url = |p: &str| format!("{}{p}", agent.addr());
    let (code, r) = send(reqwest::Method::DELETE, url("/v1/job/never-was"), None);
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["EvalID"], "");
    let (code, r) = send(reqwest::Method::DELETE, url("/v1/job/x?purge=yes"), None);
    assert_eq!(code, 400);
    assert!(r.as_str().unwrap().contains("\"purge\""), "{r}");
    let (code, _) = send(reqwest::Method::DELETE, url("/v1/job/x?purge=True"), None);
    assert_eq!(code, 200, "Go's ParseBool spellings are accepted");

    // A stopped (not purged) job stays readable.
    let out = agent.run_job(
        "keep.hcl",
        &raw_exec_job("keep", "sleep 3600", 50, 32),
        &["-detach"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, r) = send(reqwest::Method::DELETE, url("/v1/job/keep"), None);
    assert_eq!(code, 200);
    assert_ne!(r["EvalID"], "");
    let (code, job) = agent.get_json("/v1/job/keep");
    assert_eq!((code, &job["Stop"]), (200, &json!(true)), "{job}");
}

#[test]
fn client_routes_signal_stream_files_and_collect_stopped_allocations() {
    let agent = DevAgent::start();
    let script = "echo hello > $NOMAD_ALLOC_DIR/out.txt; trap 'echo usr1' USR1; \
                  while true; do sleep 1; done";
    let out = agent.run_job("cl.hcl", &raw_exec_job("cl", script, 50, 32), &["-detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let alloc = running_alloc(&agent, "cl");

    // python-nomad sends `null` for the task it leaves out.
    let sig = format!("/v1/client/allocation/{alloc}/signal");
    let (code, r) = post(&agent, &sig, json!({"Signal": "SIGUSR1", "Task": null}));
    assert_eq!(code, 200, "{r}");
    let (code, r) = post(
        &agent,
        &sig,
        json!({"Signal": "INVALID-SIGNAL", "Task": null}),
    );
    assert_eq!(code, 400);
    assert!(r.as_str().unwrap().contains("invalid signal"), "{r}");

    // The file, then (it is followed) nothing more until we hang up.
    wait_for("the task's file", Duration::from_secs(10), || {
        let (code, _) = agent.get_json(&format!("/v1/client/fs/stat/{alloc}?path=alloc/out.txt"));
        (code == 200).then_some(())
    });
    let mut resp = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!(
            "{}/v1/client/fs/stream/{alloc}?path=alloc/out.txt&offset=0&origin=start&plain=true",
            agent.addr()
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut got = [0u8; 6];
    resp.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello\n");
    drop(resp);
    let (code, r) = agent.get_json(&format!(
        "/v1/client/fs/stream/{alloc}?path=/redis/executor&offset=1&origin=start"
    ));
    assert_eq!(
        code, 400,
        "a missing file is the request's fault, as in Nomad: {r}"
    );

    // Garbage collection takes stopped allocations only.
    let gc = format!("/v1/client/allocation/{alloc}/gc");
    let (code, r) = agent.get_json(&gc);
    assert_eq!(code, 400, "{r}");
    assert!(agent
        .cli(&["job", "stop", "-detach", "cl"])
        .status
        .success());
    wait_for("the allocation to stop", Duration::from_secs(30), || {
        let (_, a) = agent.get_json(&format!("/v1/allocation/{alloc}"));
        (a["ClientStatus"] == "complete").then_some(())
    });
    let (code, r) = agent.get_json(&gc);
    assert_eq!(code, 200, "{r}");
    let dir = agent.data_dir().join("client").join("alloc").join(&alloc);
    wait_for("the alloc dir to go", Duration::from_secs(30), || {
        (!dir.exists()).then_some(())
    });
    assert_eq!(agent.get_json("/v1/client/gc").0, 200);
}

#[test]
fn terminal_deployments_refuse_with_nomads_sentences() {
    let agent = DevAgent::start();
    let hcl = r#"
job "dep" {
  datacenters = ["dc1"]
  update {
    max_parallel     = 1
    min_healthy_time = "5m"
    healthy_deadline = "10m"
    progress_deadline = "20m"
  }
  group "main" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "sleep 3600"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
"#;
    let out = agent.run_job("dep.hcl", hcl, &["-detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = wait_for("the deployment", Duration::from_secs(30), || {
        let (_, d) = agent.get_json("/v1/job/dep/deployment");
        d["ID"].as_str().map(str::to_string)
    });
    assert_eq!(
        put(&agent, &format!("/v1/deployment/fail/{id}"), None).0,
        200
    );
    let cases = [
        (
            format!("/v1/deployment/fail/{id}"),
            json!({}),
            "can't fail terminal deployment",
        ),
        (
            format!("/v1/deployment/pause/{id}"),
            json!({"Pause": false}),
            "can't resume terminal deployment",
        ),
        (
            format!("/v1/deployment/pause/{id}"),
            json!({"Pause": true}),
            "can't pause terminal deployment",
        ),
        (
            format!("/v1/deployment/promote/{id}"),
            json!({"All": true}),
            "can't promote terminal deployment",
        ),
        (
            format!("/v1/deployment/allocation-health/{id}"),
            json!({"UnhealthyAllocationIDs": ["x"]}),
            "can't set health of allocations for a terminal deployment",
        ),
    ];
    for (path, body, sentence) in cases {
        let (code, r) = put(&agent, &path, Some(body));
        assert!(code >= 400, "{path}: {code}");
        assert_eq!(r, sentence, "{path}");
    }
}
