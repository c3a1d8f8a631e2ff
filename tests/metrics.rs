//! `GET /v1/metrics` through the real binary: Nomad's JSON, and the Prometheus text format
//! read back by the reference parser (the `prometheus-client` PyPI package).

mod common;

use common::{python3, raw_exec_job, stderr, wait_for, DevAgent};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The samples of the Prometheus text as the `prometheus_client` parser reads them:
/// `(sample name, labels, value)`.
type Samples = Vec<(String, serde_json::Map<String, serde_json::Value>, f64)>;

fn parse_with_prometheus_client(python: &str, text: &str) -> Samples {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's samples as JSON")
}

fn value(samples: &Samples, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name && label.is_none_or(|(k, v)| l.get(k).and_then(|x| x.as_str()) == Some(v))
        })
        .map(|(_, _, v)| *v)
}

fn python_with_prometheus_client() -> Option<String> {
    let python = python3()?;
    let ok = Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus-client is missing, and CI=true (scripts/test installs it)"
        );
        eprintln!("\n!!!!! SKIPPED: python3 -m pip install prometheus-client !!!!!\n");
        return None;
    }
    Some(python)
}

#[test]
fn metrics_in_json_and_prometheus_show_leader_raft_and_running_allocations() {
    let Some(python) = python_with_prometheus_client() else {
        return;
    };
    let agent = DevAgent::start();
    agent.wait_node_ready();
    let job = raw_exec_job("metered", "sleep 300", 100, 64);
    let out = agent.run_job("metered.hcl", &job, &["-detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "the job's allocation to run",
        Duration::from_secs(30),
        || {
            let (_, allocs) = agent.get_json("/v1/job/metered/allocations");
            allocs
                .as_array()?
                .iter()
                .any(|a| a["ClientStatus"] == "running")
                .then_some(())
        },
    );

    // Nomad's JSON shape.
    let (status, json) = agent.get_json("/v1/metrics");
    assert_eq!(status, 200, "{json}");
    for key in ["Timestamp", "Gauges", "Counters", "Samples", "Points"] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    let gauge = |name: &str| {
        json["Gauges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["Name"] == name)
            .cloned()
    };
    assert_eq!(gauge("nomad.nomad.leader.is_leader").unwrap()["Value"], 1.0);
    let commit = json["Samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "nomad.raft.commitTime")
        .cloned()
        .expect("a raft commit time sample");
    assert!(commit["Count"].as_u64().unwrap() > 0, "{commit}");
    for key in ["Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"] {
        assert!(commit.get(key).is_some(), "no {key} in {commit}");
    }
    let running = json["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Name"] == "nomad.nomad.job_summary.running" && g["Labels"]["job"] == "metered")
        .cloned()
        .expect("the job's running summary gauge");
    assert_eq!(running["Value"], 1.0, "{running}");
    assert_eq!(running["Labels"]["task_group"], "main");

    // The Prometheus text, read by the reference parser.
    let resp =
        reqwest::blocking::get(format!("{}/v1/metrics?format=prometheus", agent.addr())).unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().unwrap();
    let samples = parse_with_prometheus_client(&python, &text);
    assert_eq!(
        value(&samples, "nomad_nomad_leader_is_leader", None),
        Some(1.0)
    );
    assert!(
        value(&samples, "nomad_raft_commitTime_count", None).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(
        value(
            &samples,
            "nomad_nomad_job_summary_running",
            Some(("job", "metered"))
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        value(&samples, "nomad_client_allocations_running", None).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    for name in [
        "nomad_nomad_broker_total_ready",
        "nomad_nomad_broker_total_unacked",
        "nomad_nomad_broker_total_blocked",
        "nomad_nomad_plan_queue_depth",
        "nomad_nomad_plan_apply_count",
        "nomad_raft_fsm_apply_count",
        "nomad_runtime_num_goroutines",
        "nomad_uptime",
    ] {
        assert!(
            value(&samples, name, None).is_some(),
            "no {name} in:\n{text}"
        );
    }
    assert_eq!(
        value(&samples, "nomad_nomad_heartbeat_active", None),
        Some(1.0)
    );
    assert!(
        value(&samples, "nomad_client_host_memory_total", None).unwrap_or(0.0) > 0.0,
        "{text}"
    );

    let (status, body) = agent.get_json("/v1/metrics?format=xml");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn prometheus_format_is_refused_when_the_config_turns_it_off() {
    let agent = DevAgent::start_with_config("telemetry {\n  prometheus_metrics = false\n}\n");
    let resp =
        reqwest::blocking::get(format!("{}/v1/metrics?format=prometheus", agent.addr())).unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    assert_eq!(status, 415, "{text}");
    assert!(text.contains("prometheus_metrics = true"), "{text}");
    let (status, _) = agent.get_json("/v1/metrics");
    assert_eq!(status, 200, "the JSON format needs no setting");
}
