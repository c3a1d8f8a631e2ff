//! `drover job plan` and `job run -check-index` through the real binary against a dev
//! agent: a new job plans as added, an edited count plans as a change with the index to
//! check, a stale index is refused, and variables files reach `job run -output`. Also
//! `PUT /v1/jobs/parse` with Nomad's body.

mod common;

use common::*;
use std::time::Duration;

const JOB: &str = r#"
variable "count" {
  type    = number
  default = 1
}

job "planned" {
  datacenters = ["dc1"]

  group "main" {
    count = var.count

    task "sleep" {
      driver = "raw_exec"

      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }

      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"#;

fn check_index(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Job Modify Index: "))
        .unwrap_or_else(|| panic!("no job modify index in {out}"))
        .trim()
        .to_string()
}

#[test]
fn plan_shows_a_new_job_then_an_edited_count_and_check_index_guards_run() {
    let agent = DevAgent::start();
    let file = agent.dir.path().join("planned.hcl");
    std::fs::write(&file, JOB).unwrap();
    let file = file.to_str().unwrap();
    wait_for("the dev node to be ready", Duration::from_secs(30), || {
        stdout(&agent.cli(&["node", "status"]))
            .contains("ready")
            .then_some(())
    });

    // A new job: everything is added, and allocations would be created (exit 1).
    let out = agent.cli(&["job", "plan", file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("+ Job: \"planned\""), "{text}");
    assert!(text.contains("+ Task Group: \"main\" (1 create)"), "{text}");
    assert!(text.contains("+ Task: \"sleep\" (forces create)"), "{text}");
    assert!(
        text.contains("Scheduler dry-run:\n- All tasks successfully allocated."),
        "{text}"
    );
    assert_eq!(check_index(&text), "0");
    assert!(
        text.contains(&format!("drover job run -check-index 0 {file}")),
        "{text}"
    );
    // A plan writes nothing.
    assert_eq!(agent.get_json("/v1/job/planned").0, 404);

    let out = agent.cli(&["job", "run", "-check-index", "0", file]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // The same file again: nothing to do (exit 0).
    let out = agent.cli(&["job", "plan", file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("Task Group: \"main\" (1 ignore)"), "{text}");
    let index = check_index(&text);
    assert_ne!(index, "0");

    // An edited count: the change, what it forces, and the index to check.
    let out = agent.cli(&["job", "plan", "-var", "count=3", file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("+/- Job: \"planned\""), "{text}");
    assert!(
        text.contains("+/- Task Group: \"main\" (2 create, 1 in-place update)"),
        "{text}"
    );
    assert!(
        text.contains("+/- Count: \"1\" => \"3\" (forces create)"),
        "{text}"
    );
    assert_eq!(check_index(&text), index);

    // Someone else changes the job: the planned index is stale and run refuses it.
    let out = agent.cli(&["job", "run", "-detach", "-var", "count=2", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.cli(&[
        "job",
        "run",
        "-check-index",
        &index,
        "-var",
        "count=3",
        file,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}{err}", stdout(&out));
    assert!(
        err.contains(&format!(
            "enforcing job modify index {index}: job exists with conflicting job modify index"
        )),
        "{err}"
    );
    let (_, job) = agent.get_json("/v1/job/planned");
    assert_eq!(job["TaskGroups"][0]["Count"], 2);

    // With the fresh index it goes through.
    let text = stdout(&agent.cli(&["job", "plan", "-var", "count=3", file]));
    let fresh = check_index(&text);
    assert_ne!(fresh, index);
    let out = agent.cli(&[
        "job",
        "run",
        "-detach",
        "-check-index",
        &fresh,
        "-var",
        "count=3",
        file,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, job) = agent.get_json("/v1/job/planned");
    assert_eq!(job["TaskGroups"][0]["Count"], 3);

    // A job file with errors is an error (255), positioned.
    let bad = agent.dir.path().join("bad.hcl");
    std::fs::write(&bad, JOB.replace("count = var.count", "count = \"many\"")).unwrap();
    let out = agent.cli(&["job", "plan", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("bad.hcl:11:13:"), "{}", stderr(&out));

    let out = agent.cli(&["job", "stop", "-purge", "-detach", "planned"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn var_files_and_nomad_var_env_reach_job_run_output() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.hcl");
    std::fs::write(&job, JOB).unwrap();
    let vars = dir.path().join("prod.hcl");
    std::fs::write(&vars, "count = 4\n").unwrap();
    let json_vars = dir.path().join("more.json");
    std::fs::write(&json_vars, "{\"count\": 6}").unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(drover_bin());
        cmd.args(["job", "run", "-output"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.arg(&job).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["Job"]["TaskGroups"][0]["Count"].clone()
    };
    let file = vars.to_str().unwrap();
    assert_eq!(run(&["-var-file", file], &[]), 4);
    assert_eq!(run(&[], &[("NOMAD_VAR_count", "5")]), 5);
    // The environment ranks lowest, then the files in order, then -var.
    assert_eq!(run(&["-var-file", file], &[("NOMAD_VAR_count", "5")]), 4);
    let json = json_vars.to_str().unwrap();
    assert_eq!(run(&["-var-file", file, "-var-file", json], &[]), 6);
    assert_eq!(run(&["-var-file", file, "-var", "count=7"], &[]), 7);

    // A mistake in a variables file is reported in that file.
    std::fs::write(&vars, "count = 4\ncuont = 5\n").unwrap();
    let out = std::process::Command::new(drover_bin())
        .args(["job", "run", "-output", "-var-file", file])
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("prod.hcl:2:1: a value was given for variable \"cuont\", which is not declared; did you mean \"count\"?"),
        "{err}"
    );
}

#[test]
fn jobs_parse_takes_nomads_body_with_variables_and_positions_errors() {
    let agent = DevAgent::start();
    let client = reqwest::blocking::Client::new();
    let put = |body: serde_json::Value| {
        let r = client
            .put(format!("{}/v1/jobs/parse", agent.addr()))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (code, text) = put(serde_json::json!({
        "JobHCL": JOB,
        "Canonicalize": true,
        "Variables": "count = 2\n",
    }));
    assert_eq!(code, 200, "{text}");
    let job: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(job["ID"], "planned");
    assert_eq!(job["TaskGroups"][0]["Count"], 2);
    assert_eq!(job["TaskGroups"][0]["RestartPolicy"]["Attempts"], 2);

    // `k=v` lines as -var takes them work too.
    let (code, text) = put(serde_json::json!({"JobHCL": JOB, "Variables": "count=5"}));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"Count\":5"), "{text}");

    let (code, text) = put(serde_json::json!({
        "JobHCL": JOB.replace("count = var.count", "count = \"many\""),
    }));
    assert_eq!(code, 400);
    assert!(
        text.starts_with("input.hcl:11:13: in job \"planned\" > group \"main\": attribute \"count\" must be a whole number"),
        "{text}"
    );
    let (code, text) = put(serde_json::json!({"Canonicalize": true}));
    assert_eq!(code, 400);
    assert!(text.contains("JobHCL is empty"), "{text}");
}
