//! Job files and job JSON cannot reach the host, through the real binary: the server
//! parses HCL with its filesystem off, names that would become paths outside the alloc
//! dir are refused at every job route, absurd numbers are a 400 with a sentence (never a
//! panic or a wrap), and the server block's `job_max_count` and `job_max_source_size`
//! hold.

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::Duration;

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `PUT path` with a JSON body: the status and the body text.
fn put(agent: &DevAgent, path: &str, body: &Value) -> (u16, String) {
    let r = http()
        .put(format!("{}{path}", agent.addr()))
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// A JSON job with one group of `count` and one task named `task`.
fn json_job(id: &str, count: Value, task: &str) -> Value {
    json!({"Job": {
        "ID": id,
        "Type": "batch",
        "TaskGroups": [{
            "Name": "g",
            "Count": count,
            "Tasks": [{"Name": task, "Driver": "raw_exec",
                       "Config": {"command": "/bin/true"}}]
        }]
    }})
}

fn job_ids(agent: &DevAgent) -> Vec<String> {
    let (code, jobs) = agent.get_json("/v1/jobs");
    assert_eq!(code, 200, "{jobs}");
    jobs.as_array()
        .unwrap()
        .iter()
        .map(|j| j["ID"].as_str().unwrap().to_string())
        .collect()
}

const READS_HOSTNAME: &str = "job \"leak\" {\n  meta = { host = file(\"/etc/hostname\") }\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config { command = \"/bin/true\" }\n    }\n  }\n}\n";

#[test]
fn jobs_parse_refuses_filesystem_functions_and_the_cli_reads_files_beside_the_job() {
    let agent = DevAgent::start();
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();

    let (code, text) = put(&agent, "/v1/jobs/parse", &json!({"JobHCL": READS_HOSTNAME}));
    assert_eq!(code, 400, "{text}");
    assert!(
        text.starts_with(
            "input.hcl:2:19: in job \"leak\": meta: Call to function \"file\" failed: \
             filesystem function disabled"
        ),
        "{text}"
    );
    if !hostname.trim().is_empty() {
        assert!(
            !text.contains(hostname.trim()),
            "the host's file leaked: {text}"
        );
    }

    // The other filesystem functions, and the Variables text, are refused the same way.
    for f in [
        "fileexists",
        "filebase64",
        "templatefile",
        "abspath",
        "pathexpand",
    ] {
        let hcl = READS_HOSTNAME.replace("file(", &format!("{f}("));
        let (code, text) = put(&agent, "/v1/jobs/parse", &json!({"JobHCL": hcl}));
        assert_eq!(code, 400, "{f}: {text}");
        assert!(text.contains("filesystem function disabled"), "{f}: {text}");
    }
    let with_var = "variable \"h\" {\n  default = \"\"\n}\n".to_string()
        + &READS_HOSTNAME.replace("file(\"/etc/hostname\")", "var.h");
    let (code, text) = put(
        &agent,
        "/v1/jobs/parse",
        &json!({"JobHCL": with_var, "Variables": "h = file(\"/etc/hostname\")\n"}),
    );
    assert_eq!(code, 400, "{text}");
    assert!(
        text.starts_with("variables.hcl:1:5: h: Call to function \"file\" failed"),
        "{text}"
    );

    // The CLI keeps file(), relative to the job file's directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd.txt"), "hello from beside the job").unwrap();
    let job_file = dir.path().join("leak.hcl");
    std::fs::write(
        &job_file,
        READS_HOSTNAME.replace("/etc/hostname", "motd.txt"),
    )
    .unwrap();
    let out = agent.cli(&["job", "run", "-output", job_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(job["Job"]["Meta"]["host"], "hello from beside the job");
    assert!(job_ids(&agent).is_empty(), "-output registers nothing");
}

#[test]
fn task_names_that_escape_the_alloc_dir_are_refused_everywhere_and_nothing_is_stored() {
    let agent = DevAgent::start();
    for name in ["/x", "../../../../x", "a\\b", "..", "alloc"] {
        let job = json_job("escape", json!(1), name);
        for (route, path) in [
            ("register", "/v1/jobs"),
            ("register at", "/v1/job/escape"),
            ("plan", "/v1/job/escape/plan"),
        ] {
            let (code, text) = put(&agent, path, &job);
            assert_eq!(code, 400, "{route} {name:?}: {text}");
            assert!(
                text.contains(&format!("task name {name:?}")),
                "{route}: {text}"
            );
        }
        let (code, text) = put(&agent, "/v1/validate/job", &job);
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let errors = v["ValidationErrors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e.as_str().unwrap().contains(&format!("task name {name:?}"))),
            "{text}"
        );
    }
    assert!(job_ids(&agent).is_empty(), "a refused job was stored");
    let (code, _) = agent.get_json("/v1/job/escape");
    assert_eq!(code, 404);
    // Nothing was created where the names point, relative to the client's alloc dirs.
    let alloc_root = agent.data_dir().join("client/alloc");
    assert!(!alloc_root.join("../../../../x").exists());
    assert!(!agent.data_dir().join("x").exists());

    // The CLI refuses the same names, positioned in the job file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("escape.hcl");
    std::fs::write(
        &file,
        "job \"escape\" {\n  group \"g\" {\n    task \"../../../../x\" {\n      driver = \"raw_exec\"\n    }\n  }\n}\n",
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let out = agent.cli(&["job", cmd, file.to_str().unwrap()]);
        assert!(!out.status.success(), "job {cmd} accepted it");
        let err = stderr(&out);
        assert!(
            err.contains("escape.hcl:3:10: in job \"escape\" > group \"g\": task name \"../../../../x\" cannot include slashes"),
            "job {cmd}: {err}"
        );
    }
    assert!(job_ids(&agent).is_empty());
}

#[test]
fn absurd_counts_and_durations_are_a_400_sentence_and_the_server_stays_up() {
    let agent = DevAgent::start();
    let mut cases: Vec<(&str, Value, &str)> = vec![
        (
            "huge count",
            json_job("n", json!(99999999999999999999.0_f64), "t"),
            "expected i64 at line 1",
        ),
        (
            "count past i32",
            json_job("n", json!(3_000_000_000_i64), "t"),
            "count 3000000000 is out of range",
        ),
        (
            "negative count",
            json_job("n", json!(-1), "t"),
            "count must be >= 0",
        ),
    ];
    let mut negative_kill = json_job("n", json!(1), "t");
    negative_kill["Job"]["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = json!(-5_000_000_000_i64);
    cases.push((
        "negative kill_timeout",
        negative_kill,
        "kill_timeout must not be negative",
    ));
    let mut long_delay = json_job("n", json!(1), "t");
    long_delay["Job"]["TaskGroups"][0]["RestartPolicy"] =
        json!({"Attempts": 1, "Delay": i64::MAX, "Interval": 1, "Mode": "fail"});
    cases.push(("restart delay of i64::MAX", long_delay, "restart: delay"));
    let mut port = json_job("n", json!(1), "t");
    port["Job"]["TaskGroups"][0]["Networks"] =
        json!([{"ReservedPorts": [{"Label": "http", "Value": 70000}]}]);
    cases.push((
        "port past 65535",
        port,
        "value 70000 is not between 0 and 65535",
    ));
    let mut priority = json_job("n", json!(1), "t");
    priority["Job"]["Priority"] = json!(101);
    cases.push((
        "priority 101",
        priority,
        "priority must be between 1 and 100",
    ));
    for (what, job, says) in &cases {
        let (code, text) = put(&agent, "/v1/jobs", job);
        assert_eq!(code, 400, "{what}: {text}");
        assert!(text.contains(says), "{what}: {text}");
    }

    let hcl = |group_body: &str| {
        format!("job \"n\" {{\n  group \"g\" {{\n{group_body}\n    task \"t\" {{\n      driver = \"raw_exec\"\n    }}\n  }}\n}}\n")
    };
    for (what, body, says) in [
        (
            "huge count",
            "    count = 99999999999999999999",
            "input.hcl:3:",
        ),
        (
            "huge duration",
            "    restart {\n      delay = \"9999999999h\"\n    }",
            "input.hcl:4:15:",
        ),
        (
            "negative duration",
            "    shutdown_delay = \"-5s\"",
            "input.hcl:3:22:",
        ),
    ] {
        let (code, text) = put(&agent, "/v1/jobs/parse", &json!({"JobHCL": hcl(body)}));
        assert_eq!(code, 400, "{what}: {text}");
        assert!(text.starts_with(says), "{what}: {text}");
    }
    assert!(job_ids(&agent).is_empty());
    let (code, _) = agent.get_json("/v1/status/leader");
    assert_eq!(code, 200, "the server must survive every request");
}

#[test]
fn server_block_limits_job_count_and_parse_source_size() {
    let agent = DevAgent::start_with_config(
        "server {\n  job_max_count = 10\n  job_max_source_size = \"2K\"\n}\n",
    );
    let mut two_groups = json_job("big", json!(6), "t");
    let group = two_groups["Job"]["TaskGroups"][0].clone();
    let mut second = group.clone();
    second["Name"] = json!("h");
    two_groups["Job"]["TaskGroups"] = json!([group, second]);
    for path in ["/v1/jobs", "/v1/job/big/plan"] {
        let (code, text) = put(&agent, path, &two_groups);
        assert_eq!(code, 400, "{path}: {text}");
        assert!(
            text.contains("total count was greater than configured job_max_count: 12 > 10"),
            "{path}: {text}"
        );
    }
    assert!(job_ids(&agent).is_empty());
    let (code, text) = put(&agent, "/v1/jobs", &json_job("small", json!(10), "t"));
    assert_eq!(code, 200, "a job at the limit is accepted: {text}");

    let padded = format!("# {}\n{READS_HOSTNAME}", "x".repeat(2100));
    let (code, text) = put(&agent, "/v1/jobs/parse", &json!({"JobHCL": padded}));
    assert_eq!(code, 413, "{text}");
    assert!(
        text.contains("more than this server's job_max_source_size of 2000 bytes"),
        "{text}"
    );
}
