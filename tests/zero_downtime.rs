//! Rollouts and drains that drop no request. A load generator finds its backends as
//! Traefik's Nomad provider does (re-reading `GET /v1/service/<name>` every second) and
//! sends requests round-robin to them while the job is updated or its node drained; the
//! tasks are small HTTP servers started by raw_exec on `NOMAD_PORT_http`. Every request
//! must succeed: instances are registered only once their check passes and deregistered
//! `shutdown_delay` before their task is signalled.

mod common;

use common::cluster::*;
use common::loadgen::{LoadGen, LoadReport};
use common::*;
use std::time::Duration;

/// A service job of `count` HTTP servers answering `version`.
fn web_job(name: &str, count: usize, version: &str, python: &str, extra_group: &str) -> String {
    format!(
        r#"
job "{name}" {{
  type = "service"

  update {{
    max_parallel     = 1
    min_healthy_time = "2s"
    healthy_deadline = "1m"
  }}

  group "web" {{
    count          = {count}
    shutdown_delay = "3s"
    {extra_group}

    network {{
      port "http" {{}}
    }}

    service {{
      name        = "{name}"
      provider    = "nomad"
      port        = "http"
      tags        = ["live"]
      canary_tags = ["canary"]

      check {{
        type     = "http"
        path     = "/"
        interval = "1s"
        timeout  = "1s"
      }}
    }}

    task "server" {{
      driver       = "raw_exec"
      kill_timeout = "5s"

      env {{
        VERSION = "{version}"
      }}

      config {{
        command = "/bin/sh"
        args = ["-c", "echo \"$VERSION\" > \"$NOMAD_TASK_DIR/index.html\" && exec {python} -m http.server \"$NOMAD_PORT_http\" --bind 0.0.0.0 --directory \"$NOMAD_TASK_DIR\""]
      }}

      resources {{
        cpu    = 50
        memory = 64
      }}
    }}
  }}
}}
"#
    )
}

fn instances(get: impl Fn(&str) -> serde_json::Value, name: &str) -> Vec<serde_json::Value> {
    get(&format!("/v1/service/{name}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the generator has sent `more` further requests (load after the change).
fn keep_loading(gen: &LoadGen, more: u64) -> LoadReport {
    let start = gen.snapshot().requests;
    wait_for("more requests", Duration::from_secs(60), || {
        (gen.snapshot().requests >= start + more).then_some(())
    });
    gen.snapshot()
}

fn assert_no_failures(what: &str, r: &LoadReport) {
    eprintln!(
        "{what}: {} requests in {:.1?}, {} failed; versions served {:?}; {} instance-list reads ({} empty)",
        r.requests, r.elapsed, r.failures, r.bodies, r.refreshes, r.empty_refreshes
    );
    assert!(r.requests > 100, "{what}: too few requests to judge: {r:?}");
    assert_eq!(
        r.failures, 0,
        "{what}: {} of {} requests failed: {:?}",
        r.failures, r.requests, r.failure_samples
    );
}

#[test]
fn a_rolling_update_drops_no_request() {
    let Some(python) = python3() else {
        return;
    };
    let agent = DevAgent::start();
    let get = |p: &str| agent.get_json(p).1;
    let file = agent.dir.path().join("roll.hcl");
    let run = |version: &str| {
        std::fs::write(&file, web_job("roll", 3, version, &python, "")).unwrap();
        let out = agent.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
        assert!(out.status.success(), "job run: {}", stderr(&out));
    };
    run("v1");
    wait_for("3 registered instances", Duration::from_secs(60), || {
        (instances(get, "roll").len() == 3).then_some(())
    });

    let gen = LoadGen::start(&agent.addr(), "roll", "canary", 50);
    keep_loading(&gen, 50);
    run("v2");
    // Done when three instances are registered and every one answers v2.
    wait_for("the update to finish", Duration::from_secs(120), || {
        let list = instances(get, "roll");
        let allocs = get("/v1/job/roll/allocations");
        let live_old = allocs.as_array()?.iter().any(|a| {
            a["DesiredStatus"] == "run"
                && a["ClientStatus"] != "complete"
                && a["JobVersion"].as_u64() == Some(0)
        });
        (list.len() == 3 && !live_old).then_some(())
    });
    let report = keep_loading(&gen, 100);
    let report = LoadReport {
        elapsed: report.elapsed,
        ..gen.finish()
    };
    assert_no_failures("rolling update (count 3, max_parallel 1)", &report);
    assert!(report.bodies.contains_key("v1") && report.bodies.contains_key("v2"));
}

#[test]
fn draining_the_node_of_two_instances_drops_no_request() {
    let Some(python) = python3() else {
        return;
    };
    let cluster = Cluster::start(HEAL);
    let _clients = cluster.start_clients(2);
    let node_id = |name: &str| {
        cluster
            .get("/v1/nodes")
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["Name"] == name)
            .map(|n| n["ID"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (c1, c2) = (node_id("c1"), node_id("c2"));
    // Both instances on c1: c2 opens once they run there.
    assert!(cluster
        .cli(&["node", "eligibility", "-disable", &c2])
        .status
        .success());
    let migrate = r#"migrate {
      max_parallel     = 1
      min_healthy_time = "2s"
      healthy_deadline = "1m"
    }"#;
    run_job(
        &cluster,
        "drainweb",
        &web_job("drainweb", 2, "v1", &python, migrate),
    );
    let get = |p: &str| cluster.get(p);
    wait_for("2 registered instances", Duration::from_secs(60), || {
        (instances(get, "drainweb").len() == 2).then_some(())
    });
    assert!(instances(get, "drainweb")
        .iter()
        .all(|i| i["NodeID"] == c1.as_str()));
    assert!(cluster
        .cli(&["node", "eligibility", "-enable", &c2])
        .status
        .success());

    let gen = LoadGen::start(&cluster.any_http(), "drainweb", "canary", 50);
    keep_loading(&gen, 50);
    let out = cluster.cli(&["node", "drain", "-enable", "-deadline", "2m", "-yes", &c1]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_for("both instances on c2", Duration::from_secs(60), || {
        let list = instances(get, "drainweb");
        (list.len() == 2 && list.iter().all(|i| i["NodeID"] == c2.as_str())).then_some(())
    });
    keep_loading(&gen, 100);
    let report = gen.finish();
    assert_no_failures("drain of a node running both instances", &report);
}
