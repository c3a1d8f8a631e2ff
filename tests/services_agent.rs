//! Nomad services through the real binary: `drover agent -dev` runs a raw_exec HTTP
//! server with a `provider = "nomad"` service and an http check. The instance is
//! registered (with the port the task listens on) only once the check passed, the
//! client's checks API shows the result, a restarted agent re-sends it, and `job stop`
//! deregisters it `shutdown_delay` before the task gets its signal.

mod common;

use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The task waits before it serves, so the check fails first; it notes when it gets
/// SIGTERM (Unix nanoseconds) in the shared alloc dir.
fn job(python: &str) -> String {
    format!(
        r#"
job "websvc" {{
  datacenters = ["dc1"]
  type = "service"

  group "web" {{
    shutdown_delay = "3s"

    network {{
      port "http" {{}}
    }}

    service {{
      name     = "websvc"
      provider = "nomad"
      port     = "http"
      tags     = ["v1"]

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

      config {{
        command = "/bin/sh"
        args = ["-c", <<EOT
trap 'date +%s%N > "$NOMAD_ALLOC_DIR/signalled_at"; kill $child 2>/dev/null; exit 0' TERM
sleep 3
{python} -m http.server "$NOMAD_PORT_http" --bind 0.0.0.0 --directory "$NOMAD_TASK_DIR" &
child=$!
wait $child
EOT
        ]
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

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

fn instances(agent: &DevAgent) -> Vec<serde_json::Value> {
    let (status, v) = agent.get_json("/v1/service/websvc");
    assert_eq!(status, 200, "GET /v1/service/websvc: {v}");
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn nomad_service_registers_after_its_check_passes_and_deregisters_before_shutdown_delay() {
    let Some(python) = python3() else {
        return;
    };
    let mut agent = DevAgent::start();
    agent.wait_node_ready();
    let out = agent.run_job("websvc.hcl", &job(&python), &["-detach"]);
    assert!(out.status.success(), "job run: {}", stderr(&out));

    let alloc_id = wait_for("the alloc to run", Duration::from_secs(30), || {
        let (_, allocs) = agent.get_json("/v1/job/websvc/allocations");
        allocs
            .as_array()?
            .iter()
            .find(|a| a["ClientStatus"] == "running")
            .and_then(|a| a["ID"].as_str().map(str::to_string))
    });

    // Running but not yet serving: the check fails and nothing is registered.
    let failing = wait_for("a failed check", Duration::from_secs(10), || {
        let (_, checks) = agent.get_json(&format!("/v1/client/allocation/{alloc_id}/checks"));
        let c = checks.as_object()?.values().next()?.clone();
        (c["Status"] == "failure").then_some(c)
    });
    assert_eq!(failing["Service"], "websvc");
    assert_eq!(failing["Mode"], "healthiness");
    assert!(
        instances(&agent).is_empty(),
        "registered before its check passed; check: {failing}"
    );

    // Serving: the check passes and the instance appears with the task's port.
    let inst = wait_for("the registered instance", Duration::from_secs(30), || {
        instances(&agent).into_iter().next()
    });
    let (_, checks) = agent.get_json(&format!("/v1/client/allocation/{alloc_id}/checks"));
    let check = checks.as_object().unwrap().values().next().unwrap().clone();
    assert_eq!(check["Status"], "success", "{checks}");
    assert_eq!(check["StatusCode"], 200, "{checks}");
    let port = inst["Port"].as_u64().unwrap();
    assert!(port > 0, "{inst}");
    assert_eq!(inst["AllocID"], alloc_id.as_str());
    assert_eq!(inst["Tags"], serde_json::json!(["v1"]));
    let addr = inst["Address"].as_str().unwrap();
    let body = reqwest::blocking::get(format!("http://{addr}:{port}/"))
        .expect("the registered address serves")
        .status();
    assert!(body.is_success(), "the registered address answered {body}");

    // A restarted agent re-sends the registrations of its running allocations: one the
    // servers lost in the meantime comes back under the same ID, and nothing duplicates.
    let id = inst["ID"].as_str().unwrap().to_string();
    let del = reqwest::blocking::Client::new()
        .delete(format!("{}/v1/service/websvc/{id}", agent.addr()))
        .send()
        .expect("DELETE");
    assert!(
        del.status().is_success(),
        "DELETE answered {}",
        del.status()
    );
    wait_for(
        "the deleted instance to go",
        Duration::from_secs(10),
        || instances(&agent).is_empty().then_some(()),
    );
    agent.kill9();
    agent.restart_and_wait_reattached(1, Duration::from_secs(30));
    let again = wait_for("the re-sent instance", Duration::from_secs(30), || {
        let v = instances(&agent);
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["ID"], id.as_str());

    // Stop: deregistered first, the task signalled shutdown_delay (3s) later.
    let out = agent.cli(&["job", "stop", "-detach", "websvc"]);
    assert!(out.status.success(), "job stop: {}", stderr(&out));
    let deregistered_at = wait_for("the deregistration", Duration::from_secs(15), || {
        instances(&agent).is_empty().then(now_nanos)
    });
    let marker = agent
        .data_dir()
        .join("client")
        .join("alloc")
        .join(&alloc_id)
        .join("alloc")
        .join("signalled_at");
    let signalled_at: i128 = wait_for("the task's signal", Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).ok()?.trim().parse().ok()
    });
    let gap = Duration::from_nanos((signalled_at - deregistered_at).max(0) as u64);
    assert!(
        gap >= Duration::from_millis(2500),
        "the task was signalled {gap:?} after its deregistration; shutdown_delay is 3s"
    );
    // The kill's events reach the servers with the alloc's next status update.
    wait_for("the shutdown_delay event", Duration::from_secs(15), || {
        let (_, alloc) = agent.get_json(&format!("/v1/allocation/{alloc_id}"));
        let events = alloc["TaskStates"]["server"]["Events"].as_array()?.clone();
        let types: Vec<&str> = events.iter().filter_map(|e| e["Type"].as_str()).collect();
        let waiting = types
            .iter()
            .position(|t| *t == "Waiting for shutdown delay")?;
        let killing = types.iter().position(|t| *t == "Killing")?;
        assert!(waiting < killing, "{types:?}");
        assert_eq!(
            events[waiting]["DisplayMessage"],
            "Waiting for shutdown_delay of 3s before killing the task"
        );
        Some(())
    });
}
