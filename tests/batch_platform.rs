//! Batch platform: periodic jobs (templates, forced and scheduled launches, overlap) and
//! dispatch of parameterized jobs, against the real binary.

mod common;

use common::{stdout, wait_for, DevAgent};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The children of `parent` (`/v1/jobs?prefix=<parent>/`) as (id, status).
fn children(agent: &DevAgent, parent: &str) -> Vec<(String, String)> {
    let (code, v) = agent.get_json(&format!("/v1/jobs?prefix={parent}/"));
    assert_eq!(code, 200, "{v}");
    let mut out: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["ParentID"] == parent)
        .map(|j| {
            (
                j["ID"].as_str().unwrap().to_string(),
                j["Status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn enc(id: &str) -> String {
    id.replace('/', "%2F")
}

/// The one allocation of `job`, once it is complete.
fn complete_alloc(agent: &DevAgent, job: &str) -> String {
    wait_for(&format!("{job}'s allocation to complete"), T, || {
        let (_, v) = agent.get_json(&format!("/v1/job/{}/allocations", enc(job)));
        let a = v.as_array()?.first()?.clone();
        let status = a["ClientStatus"].as_str()?;
        assert_ne!(status, "failed", "{a}");
        (status == "complete").then(|| a["ID"].as_str().unwrap().to_string())
    })
}

fn put(agent: &DevAgent, path: &str, body: &Value) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .put(format!("{}{path}", agent.addr()))
        .json(body)
        .send()
        .expect("PUT");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn periodic_job(name: &str, cron: &str, script: &str) -> String {
    format!(
        r#"
job "{name}" {{
  datacenters = ["dc1"]
  type = "batch"
  periodic {{
    crons            = [{cron:?}]
    prohibit_overlap = true
  }}
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", {script:?}]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn periodic_template_forced_children_run_to_completion() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    // New Year's midnight: never due while the test runs.
    let out = agent.run_job(
        "nightly.hcl",
        &periodic_job("nightly", "0 0 1 1 *", "echo done"),
        &["-detach"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let (_, job) = agent.get_json("/v1/job/nightly");
    assert_eq!(job["Status"], "running", "{job}");
    let (_, allocs) = agent.get_json("/v1/job/nightly/allocations");
    assert_eq!(allocs, serde_json::json!([]), "a template places nothing");

    let out = agent.cli(&["job", "periodic", "force", "-detach", "nightly"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(stdout(&out).contains("Evaluation ID"), "{}", stdout(&out));
    let first = wait_for("the first child", T, || {
        children(&agent, "nightly").first().map(|c| c.0.clone())
    });
    assert!(first.starts_with("nightly/periodic-"), "{first}");
    complete_alloc(&agent, &first);
    wait_for("the first child to be dead", T, || {
        (children(&agent, "nightly")[0].1 == "dead").then_some(())
    });

    // A child's id carries its launch second; force again in a later one.
    let launched: u64 = first.rsplit('-').next().unwrap().parse().unwrap();
    wait_for("the next second", T, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (now > launched).then_some(())
    });
    // The API answers force with the evaluation too.
    let (code, body) = put(&agent, "/v1/job/nightly/periodic/force", &Value::Null);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(!v["EvalID"].as_str().unwrap().is_empty(), "{v}");
    let kids = wait_for("two children", T, || {
        let c = children(&agent, "nightly");
        (c.len() == 2).then_some(c)
    });
    for (id, _) in &kids {
        complete_alloc(&agent, id);
    }
    // A time zone the launcher does not know is refused at registration.
    let bad = periodic_job("mars", "0 0 1 1 *", "true")
        .replace("prohibit_overlap = true", "time_zone = \"Mars/Olympus\"");
    let out = agent.run_job("mars.hcl", &bad, &["-detach"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        common::stderr(&out).contains("unknown time zone \"Mars/Olympus\""),
        "{}",
        common::stderr(&out)
    );
    // Forcing a job that is not periodic is refused with a sentence.
    let (code, body) = put(
        &agent,
        &format!("/v1/job/{}/periodic/force", enc(&first)),
        &Value::Null,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not periodic"), "{body}");
}

#[test]
fn periodic_launches_on_schedule_and_prohibit_overlap_waits() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    // A seconds field (7-field cron): due every second; each child runs 3 s.
    let out = agent.run_job(
        "tick.hcl",
        &periodic_job("tick", "* * * * * * *", "sleep 3"),
        &["-detach"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let first = wait_for("a scheduled launch", T, || {
        children(&agent, "tick").first().map(|c| c.0.clone())
    });
    // While the first child runs, nothing else is launched.
    let second = wait_for("a second launch", T, || {
        let c = children(&agent, "tick");
        let running = c.iter().filter(|(_, s)| s != "dead").count();
        assert!(running <= 1, "overlapping children: {c:?}");
        c.iter().find(|(id, _)| *id != first).map(|x| x.0.clone())
    });
    let (_, v) = agent.get_json(&format!("/v1/job/{}", enc(&first)));
    assert_eq!(
        v["Status"], "dead",
        "the first child ran to completion: {v}"
    );
    assert!(second > first, "{first} then {second}");
    // The launches that fell due while the first child ran were skipped, as Nomad does:
    // the second child's launch time is after the first one's allocation finished.
    let (_, allocs) = agent.get_json(&format!("/v1/job/{}/allocations", enc(&first)));
    let finished_ns = allocs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["ModifyTime"].as_i64())
        .max()
        .expect("the first child's allocation");
    let launched: i64 = second.rsplit('-').next().unwrap().parse().unwrap();
    assert!(
        i128::from(launched) * 1_000_000_000 >= i128::from(finished_ns),
        "{second} was launched for a time before {first} finished ({finished_ns} ns)"
    );
    let out = agent.cli(&["job", "stop", "-detach", "tick"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn dispatch_runs_with_meta_and_payload() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    let hcl = r#"
job "proc" {
  datacenters = ["dc1"]
  type = "batch"
  parameterized {
    payload       = "required"
    meta_required = ["user"]
    meta_optional = ["note"]
  }
  group "g" {
    task "t" {
      driver = "raw_exec"
      dispatch_payload {
        file = "in/payload.txt"
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "echo user=$NOMAD_META_user; cat $NOMAD_TASK_DIR/in/payload.txt"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
"#;
    let out = agent.run_job("proc.hcl", hcl, &["-detach"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        !common::stderr(&out).contains("dispatch"),
        "no warning: {}",
        common::stderr(&out)
    );
    let (_, allocs) = agent.get_json("/v1/job/proc/allocations");
    assert_eq!(allocs, serde_json::json!([]));

    // A missing required meta key is a 400 with Nomad's sentence.
    let (code, body) = put(
        &agent,
        "/v1/job/proc/dispatch",
        &serde_json::json!({"Payload": "aGk=", "Meta": {}}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Dispatch did not provide required meta keys: [\"user\"]"),
        "{body}"
    );
    let (code, body) = put(
        &agent,
        "/v1/job/proc/dispatch",
        &serde_json::json!({"Meta": {"user": "ada"}}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Payload is required"), "{body}");

    let payload = agent.dir.path().join("payload.bin");
    std::fs::write(&payload, "secret-cargo\n").unwrap();
    let out = agent.cli(&[
        "job",
        "dispatch",
        "-detach",
        "-meta",
        "user=ada",
        "proc",
        payload.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = stdout(&out);
    let child = text
        .lines()
        .find_map(|l| l.strip_prefix("Dispatched Job ID = "))
        .unwrap_or_else(|| panic!("no child id in {text}"))
        .trim()
        .to_string();
    assert!(child.starts_with("proc/dispatch-"), "{child}");
    let (_, job) = agent.get_json(&format!("/v1/job/{}", enc(&child)));
    assert_eq!(job["ParentID"], "proc", "{job}");
    assert_eq!(job["Meta"]["user"], "ada", "{job}");
    let alloc = complete_alloc(&agent, &child);
    let logs = stdout(&agent.cli(&["alloc", "logs", &alloc, "t"]));
    assert!(logs.contains("user=ada"), "{logs}");
    assert!(logs.contains("secret-cargo"), "{logs}");
}

const PY_SCRIPT: &str = r#"
import base64, sys, time, nomad
n = nomad.Nomad(host="127.0.0.1", port=int(sys.argv[1]), timeout=10)
def job(jid, extra):
    j = {"ID": jid, "Name": jid, "Type": "batch", "Datacenters": ["dc1"],
         "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{
             "Name": "t", "Driver": "raw_exec",
             "Config": {"command": "/bin/true"},
             "Resources": {"CPU": 20, "MemoryMB": 16}}]}]}
    j.update(extra)
    return {"Job": j}
n.job.register_job("pyparam", job("pyparam", {"ParameterizedJob": {
    "Payload": "optional", "MetaRequired": ["k"]}}))
d = n.job.dispatch_job("pyparam", payload=base64.b64encode(b"x").decode(), meta={"k": "v"})
assert d["DispatchedJobID"].startswith("pyparam/dispatch-"), d
assert d["EvalID"], d
kids = n.jobs.get_jobs(prefix="pyparam/")
assert [(j["ID"], j["ParentID"]) for j in kids] == [(d["DispatchedJobID"], "pyparam")], kids
# python-nomad puts the child's "/" in the URL unencoded, as Nomad accepts.
child = n.job.get_job(d["DispatchedJobID"])
assert child["ID"] == d["DispatchedJobID"] and child["ParentID"] == "pyparam", child
assert isinstance(n.job.get_allocations(d["DispatchedJobID"]), list)
try:
    n.job.dispatch_job("pyparam")
    sys.exit("dispatch without the required meta was accepted")
except nomad.api.exceptions.BadRequestNomadException as e:
    assert "required meta keys" in e.nomad_resp.text, e.nomad_resp.text
n.job.register_job("pycron", job("pycron", {"Periodic": {
    "Enabled": True, "Spec": "0 0 1 1 *", "SpecType": "cron"}}))
f = n.job.periodic_job("pycron")
assert f["EvalID"], f
kids = [j["ID"] for j in n.jobs.get_jobs(prefix="pycron/")]
assert len(kids) == 1 and kids[0].startswith("pycron/periodic-"), kids
print("python-nomad batch ok")
"#;

#[test]
fn python_nomad_dispatch_and_periodic_force() {
    let Some(py) = common::python3() else { return };
    let agent = DevAgent::start();
    let out = std::process::Command::new(py)
        .args(["-c", PY_SCRIPT, &agent.port.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python-nomad failed:\n{}\n{}",
        stdout(&out),
        common::stderr(&out)
    );
    assert!(stdout(&out).contains("python-nomad batch ok"));
}
