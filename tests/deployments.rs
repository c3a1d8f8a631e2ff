//! Deployments through the real binary (`drover agent -dev`, raw_exec `sleep` tasks): a
//! rolling update ends `successful` and marks its version stable; canaries wait for
//! `drover deployment promote` (refused while they are not healthy); a version whose
//! task exits at once fails and `auto_revert` runs the stable version again;
//! `progress_deadline` fails a deployment that never gets healthy but not a paused one;
//! an allocation whose check never passes is replaced and the rollout still succeeds;
//! and the JSON calls python-nomad makes (promote, revert, stable, scale) work.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A service job of `count` `sleep` tasks; `args` changes make a destructive update.
fn job(id: &str, count: u32, command: &str, update: &str) -> String {
    format!(
        r#"
job "{id}" {{
  datacenters = ["dc1"]
  type = "service"
  update {{
{update}
  }}
  group "g" {{
    count = {count}
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    # No second try: an allocation that fails fails its deployment at once.
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "{command}"]
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

const FAST: &str = r#"
    max_parallel      = 1
    min_healthy_time  = "1s"
    healthy_deadline  = "20s"
    progress_deadline = "40s"
"#;

fn put_json(agent: &DevAgent, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{path}", agent.addr()))
        .json(body)
        .send()
        .expect("POST");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn run(agent: &DevAgent, name: &str, hcl: &str) {
    let file = agent.dir.path().join(format!("{name}.hcl"));
    std::fs::write(&file, hcl).unwrap();
    let out = agent.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
    assert!(out.status.success(), "job run: {}", stderr(&out));
}

fn ready(agent: &DevAgent) {
    wait_for("the dev node to be ready", Duration::from_secs(30), || {
        stdout(&agent.cli(&["node", "status"]))
            .contains("ready")
            .then_some(())
    });
}

/// The job's deployment of `version`, once it exists.
fn deployment_of(agent: &DevAgent, job: &str, version: u64) -> Value {
    wait_for(
        &format!("a deployment of {job} version {version}"),
        Duration::from_secs(30),
        || {
            let (_, ds) = agent.get_json(&format!("/v1/job/{job}/deployments"));
            ds.as_array()?
                .iter()
                .find(|d| d["JobVersion"] == version)
                .cloned()
        },
    )
}

/// Waits until deployment `id` has `status`; returns it.
fn wait_status(agent: &DevAgent, id: &str, status: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let got = wait_for_opt(timeout, || {
        let (_, d) = agent.get_json(&format!("/v1/deployment/{id}"));
        last = d.clone();
        (d["Status"] == status).then_some(d)
    });
    got.unwrap_or_else(|| panic!("deployment {id} never became {status}; last: {last}"))
}

fn wait_for_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn version(agent: &DevAgent, job: &str, v: u64) -> Value {
    let (_, vs) = agent.get_json(&format!("/v1/job/{job}/versions"));
    vs["Versions"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["Version"] == v).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn a_rolling_update_creates_a_deployment_that_succeeds_and_marks_the_version_stable() {
    let agent = DevAgent::start();
    ready(&agent);
    run(&agent, "roll", &job("roll", 2, "sleep 3600", FAST));
    let d0 = deployment_of(&agent, "roll", 0);
    wait_status(
        &agent,
        d0["ID"].as_str().unwrap(),
        "successful",
        Duration::from_secs(40),
    );
    assert_eq!(version(&agent, "roll", 0)["Stable"], true);

    // `job run` follows the deployment to its end, as `nomad job run` does.
    let file = agent.dir.path().join("roll1.hcl");
    std::fs::write(&file, job("roll", 2, "sleep 3601", FAST)).unwrap();
    let out = agent.cli(&["job", "run", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "job run: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("Deployment completed successfully"),
        "{}",
        stdout(&out)
    );
    let d1 = deployment_of(&agent, "roll", 1);
    let id = d1["ID"].as_str().unwrap().to_string();
    assert_eq!(d1["TaskGroups"]["g"]["DesiredTotal"], 2, "{d1}");
    let done = wait_status(&agent, &id, "successful", Duration::from_secs(60));
    assert_eq!(
        done["StatusDescription"],
        "Deployment completed successfully"
    );
    assert_eq!(done["TaskGroups"]["g"]["HealthyAllocs"], 2, "{done}");
    assert_eq!(version(&agent, "roll", 1)["Stable"], true);
    // The allocations it placed carry its ID; the older ones were stopped.
    let (_, allocs) = agent.get_json(&format!("/v1/deployment/allocations/{id}"));
    assert_eq!(allocs.as_array().unwrap().len(), 2, "{allocs}");
    let status = stdout(&agent.cli(&["deployment", "status", &id]));
    assert!(status.contains("successful"), "{status}");
    let jstatus = stdout(&agent.cli(&["job", "status", "roll"]));
    assert!(jstatus.contains("Latest Deployment"), "{jstatus}");

    // `job scale` and `job revert` make new versions (2: count 3; 3: version 0's spec).
    let out = agent.cli(&["job", "scale", "roll", "g", "3"]);
    assert!(out.status.success(), "job scale: {}", stderr(&out));
    let (_, j) = agent.get_json("/v1/job/roll");
    assert_eq!(
        (j["Version"].clone(), j["TaskGroups"][0]["Count"].clone()),
        (json!(2), json!(3))
    );
    let out = agent.cli(&["job", "revert", "-detach", "roll", "0"]);
    assert!(out.status.success(), "job revert: {}", stderr(&out));
    let (_, j) = agent.get_json("/v1/job/roll");
    assert_eq!(j["Version"], 3, "{j}");
    assert_eq!(j["TaskGroups"][0]["Count"], 2, "{j}");
    assert_eq!(
        j["TaskGroups"][0]["Tasks"][0]["Config"]["args"][1],
        "sleep 3600"
    );
}

#[test]
fn canaries_wait_for_promotion_which_is_refused_until_they_are_healthy() {
    let agent = DevAgent::start();
    ready(&agent);
    let update = r#"
    max_parallel      = 1
    canary            = 1
    min_healthy_time  = "5s"
    healthy_deadline  = "30s"
    progress_deadline = "60s"
"#;
    run(&agent, "can", &job("can", 2, "sleep 3600", update));
    let d0 = deployment_of(&agent, "can", 0);
    wait_status(
        &agent,
        d0["ID"].as_str().unwrap(),
        "successful",
        Duration::from_secs(40),
    );

    run(&agent, "can", &job("can", 2, "sleep 3601", update));
    let d1 = deployment_of(&agent, "can", 1);
    let id = d1["ID"].as_str().unwrap().to_string();
    assert_eq!(
        d1["StatusDescription"],
        "Deployment is running but requires manual promotion"
    );
    assert_eq!(d1["TaskGroups"]["g"]["DesiredCanaries"], 1, "{d1}");
    // Not healthy yet (min_healthy_time is 5s): promotion is refused with Nomad's words.
    let (code, body) = put_json(
        &agent,
        &format!("/v1/deployment/promote/{id}"),
        &json!({"DeploymentID": id, "All": true}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.as_str()
            .unwrap_or_default()
            .contains("Task group \"g\" has 0/1 healthy allocations"),
        "{body}"
    );
    // Healthy canary: still held (two old allocations and the canary run) until promoted.
    let healthy_at = wait_for("the canary to be healthy", Duration::from_secs(30), || {
        let (_, allocs) = agent.get_json(&format!("/v1/deployment/allocations/{id}"));
        let canary = allocs.as_array()?.iter().find(|a| {
            a["DeploymentStatus"]["Healthy"] == true && a["DeploymentStatus"]["Canary"] == true
        })?;
        let at = canary["DeploymentStatus"]["Timestamp"].as_str()?;
        api::deployment::rfc3339_nanos::parse(at)
    });
    // The health report asked the scheduler to look again; once it has, nothing moved.
    wait_for(
        "the health evaluation to finish",
        Duration::from_secs(20),
        || {
            let (_, evals) = agent.get_json("/v1/job/can/evaluations");
            evals
                .as_array()?
                .iter()
                .find(|e| {
                    e["TriggeredBy"] == "alloc-health"
                        && e["Status"] == "complete"
                        && e["CreateTime"].as_i64() >= Some(healthy_at)
                })
                .map(|_| ())
        },
    );
    let (_, allocs) = agent.get_json("/v1/job/can/allocations");
    let live_old = allocs
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["JobVersion"] == 0 && a["DesiredStatus"] == "run")
        .count();
    assert_eq!(
        live_old, 2,
        "old allocations stopped before promotion: {allocs}"
    );
    assert_eq!(
        wait_status(&agent, &id, "running", Duration::from_secs(1))["Status"],
        "running"
    );

    let out = agent.cli(&["deployment", "promote", &id[..8]]);
    assert!(out.status.success(), "promote: {}", stderr(&out));
    let done = wait_status(&agent, &id, "successful", Duration::from_secs(60));
    assert_eq!(done["TaskGroups"]["g"]["Promoted"], true);
    let (_, allocs) = agent.get_json("/v1/job/can/allocations");
    let live: Vec<_> = allocs
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["DesiredStatus"] == "run")
        .collect();
    assert!(
        live.len() == 2 && live.iter().all(|a| a["JobVersion"] == 1),
        "{allocs}"
    );
}

#[test]
fn a_version_whose_task_exits_fails_and_auto_reverts_to_the_stable_version() {
    let agent = DevAgent::start();
    ready(&agent);
    let update = r#"
    max_parallel      = 1
    min_healthy_time  = "1s"
    healthy_deadline  = "20s"
    progress_deadline = "40s"
    auto_revert       = true
"#;
    run(&agent, "rev", &job("rev", 1, "sleep 3600", update));
    let d0 = deployment_of(&agent, "rev", 0);
    wait_status(
        &agent,
        d0["ID"].as_str().unwrap(),
        "successful",
        Duration::from_secs(40),
    );

    // `job run` follows the failing deployment and exits 1.
    let file = agent.dir.path().join("rev1.hcl");
    std::fs::write(&file, job("rev", 1, "exit 3", update)).unwrap();
    let out = agent.cli(&["job", "run", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("Failed due to unhealthy allocations"),
        "{}",
        stdout(&out)
    );
    let d1 = deployment_of(&agent, "rev", 1);
    let failed = wait_status(
        &agent,
        d1["ID"].as_str().unwrap(),
        "failed",
        Duration::from_secs(40),
    );
    assert_eq!(
        failed["StatusDescription"],
        "Failed due to unhealthy allocations - rolling back to job version 0"
    );
    // Version 2 is version 0's spec, and its deployment succeeds.
    let v2 = version(&agent, "rev", 2);
    assert_eq!(
        v2["TaskGroups"][0]["Tasks"][0]["Config"]["args"][1], "sleep 3600",
        "{v2}"
    );
    let d2 = deployment_of(&agent, "rev", 2);
    wait_status(
        &agent,
        d2["ID"].as_str().unwrap(),
        "successful",
        Duration::from_secs(40),
    );
    let history = stdout(&agent.cli(&["job", "history", "rev"]));
    assert!(history.contains("Version     = 2"), "{history}");
}

#[test]
fn the_progress_deadline_fails_a_deployment_that_never_gets_healthy_but_not_a_paused_one() {
    let agent = DevAgent::start();
    ready(&agent);
    // Healthy only after a minute: the 4s progress deadline passes first.
    let update = r#"
    max_parallel      = 2
    min_healthy_time  = "60s"
    healthy_deadline  = "90s"
    progress_deadline = "4s"
"#;
    run(&agent, "slow", &job("slow", 1, "sleep 3600", update));
    run(&agent, "held", &job("held", 1, "sleep 3600", update));
    let held = deployment_of(&agent, "held", 0);
    let held_id = held["ID"].as_str().unwrap().to_string();
    let out = agent.cli(&["deployment", "pause", &held_id]);
    assert!(out.status.success(), "pause: {}", stderr(&out));

    let slow = deployment_of(&agent, "slow", 0);
    let failed = wait_status(
        &agent,
        slow["ID"].as_str().unwrap(),
        "failed",
        Duration::from_secs(4 + 8),
    );
    assert_eq!(
        failed["StatusDescription"],
        "Failed due to progress deadline"
    );
    let took = failed["ModifyTime"].as_i64().unwrap() - failed["CreateTime"].as_i64().unwrap();
    assert!(
        took >= 4_000_000_000,
        "failed after {took}ns, before its deadline"
    );

    // The paused one is past its deadline too (by more than a watcher pass), and still
    // paused.
    let (_, d) = agent.get_json(&format!("/v1/deployment/{held_id}"));
    let deadline = d["TaskGroups"]["g"]["RequireProgressBy"]
        .as_str()
        .and_then(api::rfc3339_nanos::parse)
        .unwrap();
    assert!(deadline > 0, "{d}");
    wait_for(
        "the paused deployment's deadline to pass",
        Duration::from_secs(20),
        || (now_nanos() > deadline + 1_000_000_000).then_some(()),
    );
    let (_, d) = agent.get_json(&format!("/v1/deployment/{held_id}"));
    assert_eq!(d["Status"], "paused", "{d}");
    assert_eq!(d["StatusDescription"], "Deployment is paused");
    // Resumed, its deadline counts again.
    let out = agent.cli(&["deployment", "resume", &held_id]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    wait_status(&agent, &held_id, "failed", Duration::from_secs(10));
}

#[test]
fn python_nomad_style_json_calls_for_stable_revert_scale_and_deployments_work() {
    let agent = DevAgent::start();
    ready(&agent);
    run(&agent, "py", &job("py", 1, "sleep 3600", FAST));
    let d0 = deployment_of(&agent, "py", 0);
    wait_status(
        &agent,
        d0["ID"].as_str().unwrap(),
        "successful",
        Duration::from_secs(40),
    );
    run(&agent, "py", &job("py", 1, "sleep 3601", FAST));
    deployment_of(&agent, "py", 1);

    // python-nomad: n.job.stable_job("py", 0, False)
    let (code, body) = put_json(
        &agent,
        "/v1/job/py/stable",
        &json!({"JobID": "py", "JobVersion": 0, "Stable": false}),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body["Index"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(version(&agent, "py", 0)["Stable"], false);

    // n.job.revert_job("py", 0, enforce_prior_version=5): refused, the job is at 1.
    let (code, body) = put_json(
        &agent,
        "/v1/job/py/revert",
        &json!({"JobID": "py", "JobVersion": 0, "EnforcePriorVersion": 5}),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = put_json(
        &agent,
        "/v1/job/py/revert",
        &json!({"JobID": "py", "JobVersion": 0, "EnforcePriorVersion": 1}),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body["EvalID"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let (_, j) = agent.get_json("/v1/job/py");
    assert_eq!(j["Version"], 2, "{j}");
    assert_eq!(
        j["TaskGroups"][0]["Tasks"][0]["Config"]["args"][1],
        "sleep 3600"
    );

    // n.job.scale_job / ScalingRequest
    let (code, body) = put_json(
        &agent,
        "/v1/job/py/scale",
        &json!({"Count": 2, "Target": {"Group": "g"}, "Message": "more"}),
    );
    assert_eq!(code, 200, "{body}");
    let (_, j) = agent.get_json("/v1/job/py");
    assert_eq!(
        (j["Version"].clone(), j["TaskGroups"][0]["Count"].clone()),
        (json!(3), json!(2))
    );
    wait_for("two running allocations", Duration::from_secs(30), || {
        let (_, s) = agent.get_json("/v1/job/py/scale");
        (s["TaskGroups"]["g"]["Running"] == 2 && s["TaskGroups"]["g"]["Desired"] == 2).then_some(())
    });
    let (code, _) = put_json(
        &agent,
        "/v1/job/py/scale",
        &json!({"Count": 2, "Target": {"Group": "nope"}}),
    );
    assert_eq!(code, 400);

    // Deployment reads, and versions with diffs.
    let (_, latest) = agent.get_json("/v1/job/py/deployment");
    assert_eq!(latest["JobVersion"], 3, "{latest}");
    let (_, all) = agent.get_json("/v1/deployments");
    assert!(all.as_array().unwrap().len() >= 3, "{all}");
    let prefix = &latest["ID"].as_str().unwrap()[..4];
    let (_, some) = agent.get_json(&format!("/v1/deployments?prefix={prefix}"));
    assert!(
        some.as_array()
            .unwrap()
            .iter()
            .all(|d| d["ID"].as_str().unwrap().starts_with(prefix)),
        "{some}"
    );
    let (_, vs) = agent.get_json("/v1/job/py/versions?diffs=true");
    assert_eq!(vs["Diffs"].as_array().unwrap().len(), 3, "{vs}");
    // Failing the running deployment (n.deployment.fail).
    let id = latest["ID"].as_str().unwrap();
    let (code, body) = put_json(
        &agent,
        &format!("/v1/deployment/fail/{id}"),
        &json!({"DeploymentID": id}),
    );
    if code == 200 {
        let (_, d) = agent.get_json(&format!("/v1/deployment/{id}"));
        assert_eq!(d["StatusDescription"], "Deployment marked as failed", "{d}");
    } else {
        // It had already succeeded: failing a finished deployment is refused.
        assert_eq!(code, 400, "{body}");
        let (_, d) = agent.get_json(&format!("/v1/deployment/{id}"));
        assert_eq!(d["Status"], "successful", "{d}");
    }
}

/// A service behind an HTTP check on `/ok` with `count` python servers; `script` runs
/// first (it writes `$NOMAD_TASK_DIR/ok`, or not).
fn checked_job(id: &str, script: &str, mark: &str, python: &str) -> String {
    format!(
        r#"
job "{id}" {{
  datacenters = ["dc1"]
  type = "service"
  update {{
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "1s"
    healthy_deadline  = "5s"
    progress_deadline = "60s"
  }}
  group "g" {{
    count = 2
    network {{
      port "http" {{}}
    }}
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 1
      interval  = "1h"
      delay     = "1s"
      unlimited = false
    }}
    service {{
      name     = "{id}"
      provider = "nomad"
      port     = "http"
      check {{
        type     = "http"
        path     = "/ok"
        interval = "1s"
        timeout  = "1s"
      }}
    }}
    task "t" {{
      driver       = "raw_exec"
      kill_timeout = "1s"
      env {{
        MARK = "{mark}"
      }}
      config {{
        command = "/bin/sh"
        args    = ["-c", "{script}; exec {python} -m http.server $NOMAD_PORT_http --bind 127.0.0.1 --directory $NOMAD_TASK_DIR"]
      }}
      resources {{
        cpu    = 20
        memory = 32
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn an_unhealthy_allocation_is_replaced_and_the_deployment_goes_on_to_succeed() {
    let Some(python) = python3() else {
        return;
    };
    let agent = DevAgent::start();
    ready(&agent);
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("first");
    let mark = mark.to_str().unwrap();
    let healthy = "echo ok > $NOMAD_TASK_DIR/ok";
    run(
        &agent,
        "flaky",
        &checked_job("flaky", healthy, mark, &python),
    );
    let d0 = deployment_of(&agent, "flaky", 0);
    wait_status(
        &agent,
        d0["ID"].as_str().unwrap(),
        "successful",
        Duration::from_secs(60),
    );
    // Version 1: the first allocation to start never serves /ok (its check fails until
    // healthy_deadline); every later one does.
    let first_run_fails = format!("mkdir $MARK 2>/dev/null || {healthy}");
    run(
        &agent,
        "flaky1",
        &checked_job("flaky", &first_run_fails, mark, &python),
    );
    let d1 = deployment_of(&agent, "flaky", 1);
    let id = d1["ID"].as_str().unwrap().to_string();
    let done = wait_status(&agent, &id, "successful", Duration::from_secs(90));
    assert_eq!(done["TaskGroups"]["g"]["HealthyAllocs"], 2, "{done}");
    assert_eq!(done["TaskGroups"]["g"]["UnhealthyAllocs"], 1, "{done}");
    assert_eq!(version(&agent, "flaky", 1)["Stable"], true);
    assert!(std::path::Path::new(mark).is_dir(), "the first run ran");

    // The unhealthy allocation was stopped and replaced by one that points back at it.
    let (_, allocs) = agent.get_json(&format!("/v1/deployment/allocations/{id}"));
    let allocs = allocs.as_array().unwrap();
    assert_eq!(allocs.len(), 3, "{allocs:?}");
    let bad = allocs
        .iter()
        .find(|a| a["DeploymentStatus"]["Healthy"] == false)
        .unwrap_or_else(|| panic!("no unhealthy allocation: {allocs:?}"));
    assert_eq!(bad["DesiredStatus"], "stop", "{bad}");
    let (_, full) = agent.get_json(&format!("/v1/allocation/{}", bad["ID"].as_str().unwrap()));
    assert_eq!(
        full["DesiredDescription"], "alloc was rescheduled because it failed",
        "{full}"
    );
    let bad_id = bad["ID"].as_str().unwrap();
    let replacement = allocs
        .iter()
        .filter_map(|a| {
            let (_, f) = agent.get_json(&format!("/v1/allocation/{}", a["ID"].as_str()?));
            (f["PreviousAllocation"] == bad_id).then_some(f)
        })
        .next()
        .unwrap_or_else(|| panic!("no replacement of {bad_id}: {allocs:?}"));
    assert_eq!(
        replacement["DeploymentStatus"]["Healthy"], true,
        "{replacement}"
    );
    assert_eq!(replacement["ClientStatus"], "running", "{replacement}");
}
