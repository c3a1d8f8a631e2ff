//! The scheduler configuration (`operator scheduler get-config|set-config`), the operator's
//! nudges (`job eval`, `node eval`) and housekeeping (`system gc`, `system reconcile
//! summaries`), through the real binary.

mod common;

use common::cluster::ClientProc;
use common::{free_port, raw_exec_job, stderr, stdout, wait_for, DevAgent};
use serde_json::{json, Value};
use std::time::Duration;

fn put(agent: &DevAgent, path: &str, body: &Value) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .put(format!("{}{path}", agent.addr()))
        .json(body)
        .send()
        .expect("PUT");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// The node the job's one running allocation is on.
fn running_node(agent: &DevAgent, job: &str) -> String {
    wait_for(
        &format!("{job}'s allocation to run"),
        Duration::from_secs(30),
        || {
            let (_, allocs) = agent.get_json(&format!("/v1/job/{job}/allocations"));
            allocs
                .as_array()?
                .iter()
                .find(|a| a["ClientStatus"] == "running")
                .map(|a| a["NodeID"].as_str().unwrap_or_default().to_string())
        },
    )
}

fn run(agent: &DevAgent, name: &str, cpu: u32, memory: u32) {
    let job = raw_exec_job(name, "sleep 300", cpu, memory);
    let out = agent.run_job(&format!("{name}.hcl"), &job, &["-detach"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn spread_algorithm_places_on_the_emptier_node_where_binpack_fills_the_busy_one() {
    let rpc = free_port();
    let agent = DevAgent::start_with_config(&format!("ports {{\n  rpc = {rpc}\n}}\n"));
    agent.wait_node_ready();
    let mut client = ClientProc::new(
        "second",
        agent.dir.path().join("second"),
        vec![format!("127.0.0.1:{rpc}")],
    );
    client.spawn();
    wait_for("two ready nodes", Duration::from_secs(60), || {
        let (_, nodes) = agent.get_json("/v1/nodes");
        let ready = nodes
            .as_array()?
            .iter()
            .filter(|n| n["Status"] == "ready")
            .count();
        (ready == 2).then_some(())
    });

    // Defaults, in Nomad's shape.
    let (status, cfg) = agent.get_json("/v1/operator/scheduler/configuration");
    assert_eq!(status, 200, "{cfg}");
    assert_eq!(cfg["SchedulerConfig"]["SchedulerAlgorithm"], "binpack");
    assert_eq!(
        cfg["SchedulerConfig"]["PreemptionConfig"]["SystemSchedulerEnabled"],
        true
    );
    assert!(cfg["Index"].as_u64().is_some(), "{cfg}");

    // One busy node; bin-packing puts the next job beside the filler.
    run(&agent, "filler", 500, 512);
    let busy = running_node(&agent, "filler");
    run(&agent, "packed", 100, 64);
    assert_eq!(
        running_node(&agent, "packed"),
        busy,
        "binpack fills the busy node"
    );

    let out = agent.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-scheduler-algorithm=spread",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("updated"), "{}", stdout(&out));
    let out = agent.cli(&["operator", "scheduler", "get-config"]);
    assert!(
        stdout(&out).contains("Scheduler Algorithm           = spread"),
        "{}",
        stdout(&out)
    );

    run(&agent, "spread", 100, 64);
    let spread_node = running_node(&agent, "spread");
    assert_ne!(spread_node, busy, "spread picks the emptier node");
    // A group of two under spread uses both nodes.
    let wide = raw_exec_job("wide", "sleep 300", 100, 64).replace("count = 1", "count = 2");
    let out = agent.run_job("wide.hcl", &wide, &["-detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let nodes = wait_for(
        "both of wide's allocations to run",
        Duration::from_secs(30),
        || {
            let (_, allocs) = agent.get_json("/v1/job/wide/allocations");
            let running: std::collections::BTreeSet<String> = allocs
                .as_array()?
                .iter()
                .filter(|a| a["ClientStatus"] == "running")
                .map(|a| a["NodeID"].as_str().unwrap_or_default().to_string())
                .collect();
            let count = allocs
                .as_array()?
                .iter()
                .filter(|a| a["ClientStatus"] == "running")
                .count();
            (count == 2).then_some(running)
        },
    );
    assert_eq!(
        nodes.len(),
        2,
        "spread puts the group's two allocations on two nodes"
    );

    // A stale cas leaves it unchanged and says so; a bad algorithm is a sentence.
    let (_, cfg) = agent.get_json("/v1/operator/scheduler/configuration");
    let index = cfg["SchedulerConfig"]["ModifyIndex"].as_u64().unwrap();
    let body = json!({"SchedulerAlgorithm": "binpack"});
    let path = format!("/v1/operator/scheduler/configuration?cas={}", index - 1);
    let (status, text) = put(&agent, &path, &body);
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Updated"], false, "{v}");
    let (_, cfg) = agent.get_json("/v1/operator/scheduler/configuration");
    assert_eq!(cfg["SchedulerConfig"]["SchedulerAlgorithm"], "spread");
    let path = format!("/v1/operator/scheduler/configuration?cas={index}");
    let (_, text) = put(&agent, &path, &body);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["Updated"],
        true
    );
    let (status, text) = put(
        &agent,
        "/v1/operator/scheduler/configuration",
        &json!({"SchedulerAlgorithm": "random"}),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid scheduler algorithm"), "{text}");
    client.kill9();
}

#[test]
fn reject_job_registration_refuses_job_run_until_it_is_lifted() {
    let agent = DevAgent::start();
    let out = agent.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-reject-job-registration=true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job = raw_exec_job("braked", "sleep 300", 100, 64);
    let out = agent.run_job("braked.hcl", &job, &["-detach"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("job registration, dispatch, and scale are disabled"),
        "{}",
        stderr(&out)
    );
    let out = agent.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-reject-job-registration=false",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.run_job("braked.hcl", &job, &["-detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn job_and_node_eval_create_evaluations_and_system_gc_collects_a_stopped_job() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    run(&agent, "tidy", 100, 64);
    let node = running_node(&agent, "tidy");

    // job eval: a new evaluation, followed to completion.
    let out = agent.cli(&["job", "eval", "tidy"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (_, evals) = agent.get_json("/v1/job/tidy/evaluations");
    assert!(evals.as_array().unwrap().len() >= 2, "{evals}");
    let (status, text) = put(
        &agent,
        "/v1/job/tidy/evaluate",
        &json!({"JobID": "tidy", "EvalOptions": {"ForceReschedule": true}}),
    );
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let eval_id = v["EvalID"].as_str().unwrap();
    assert!(v["EvalCreateIndex"].as_u64().unwrap() > 0, "{v}");
    assert!(v["JobModifyIndex"].as_u64().unwrap() > 0, "{v}");
    let (status, _) = agent.get_json(&format!("/v1/evaluation/{eval_id}"));
    assert_eq!(status, 200);
    let (status, text) = put(&agent, "/v1/job/nope/evaluate", &json!({}));
    assert_eq!(status, 404, "{text}");

    // node eval: one evaluation per job on the node.
    let out = agent.cli(&["node", "eval", &node[..8]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Created 1 evaluation"),
        "{}",
        stdout(&out)
    );
    let (status, text) = put(&agent, &format!("/v1/node/{node}/evaluate"), &json!({}));
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["EvalIDs"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["NodeModifyIndex"].as_u64().unwrap() > 0, "{v}");

    // system gc keeps a running job; collects it once stopped and its allocation ended.
    let out = agent.cli(&["system", "gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(agent.get_json("/v1/job/tidy").0, 200);
    let out = agent.cli(&["job", "stop", "-detach", "tidy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "the stopped allocation to end",
        Duration::from_secs(30),
        || {
            let (_, allocs) = agent.get_json("/v1/job/tidy/allocations");
            let allocs = allocs.as_array()?.clone();
            let done = allocs.iter().all(|a| a["ClientStatus"] == "complete");
            let evals_done = agent
                .get_json("/v1/job/tidy/evaluations")
                .1
                .as_array()?
                .iter()
                .all(|e| {
                    matches!(
                        e["Status"].as_str(),
                        Some("complete" | "failed" | "canceled")
                    )
                });
            (done && evals_done).then_some(())
        },
    );
    let out = agent.cli(&["system", "gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        agent.get_json("/v1/job/tidy").0,
        404,
        "the stopped job is collected"
    );
    let (_, allocs) = agent.get_json("/v1/allocations");
    assert!(
        !allocs
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["JobID"] == "tidy"),
        "{allocs}"
    );

    let out = agent.cli(&["system", "reconcile", "summaries"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Reconciled"), "{}", stdout(&out));
}

#[test]
fn pausing_the_eval_broker_holds_evaluations_until_it_is_resumed() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    let out = agent.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-pause-eval-broker=true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    run(&agent, "held", 100, 64);
    // The evaluation waits in the broker, ready and unprocessed.
    wait_for(
        "the held evaluation in the broker",
        Duration::from_secs(30),
        || {
            let (_, m) = agent.get_json("/v1/metrics");
            let ready = m["Gauges"]
                .as_array()?
                .iter()
                .find(|g| g["Name"] == "nomad.nomad.broker.total_ready")?["Value"]
                .as_f64()?;
            (ready >= 1.0).then_some(())
        },
    );
    let (_, evals) = agent.get_json("/v1/job/held/evaluations");
    assert!(
        evals
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["Status"] == "pending"),
        "{evals}"
    );
    let out = agent.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-pause-eval-broker=false",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    running_node(&agent, "held");
}
