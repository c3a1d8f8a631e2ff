//! `template` blocks through the real binary: rendering before the task starts, `env =
//! true`, refused escapes, render errors as "Template" events, and `nomadVar` templates
//! re-rendered (and the task restarted) when the variable changes.

mod common;

use common::{stderr, stdout, wait_for, DevAgent};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A dev agent whose templates re-read their data every 200 ms.
fn agent() -> DevAgent {
    let a = DevAgent::start_with_env(&[("DROVER_TEMPLATE_POLL_MS", "200")]);
    a.wait_node_ready();
    a
}

/// A one-group job `name` of `job_type` whose task "t" runs `script` with `task_extra`
/// (template blocks) inside the task block and `group_extra` inside the group.
fn job(name: &str, job_type: &str, script: &str, task_extra: &str, group_extra: &str) -> String {
    format!(
        r#"
job "{name}" {{
  datacenters = ["dc1"]
  type = "{job_type}"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    {group_extra}
    task "t" {{
      driver = "raw_exec"
      kill_timeout = "1s"
      config {{
        command = "/bin/sh"
        args    = ["-c", {script:?}]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
      {task_extra}
    }}
  }}
}}
"#
    )
}

fn run(agent: &DevAgent, name: &str, hcl: &str) {
    let out = agent.run_job(&format!("{name}.hcl"), hcl, &["-detach"]);
    assert!(
        out.status.success(),
        "job run failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// The job's first allocation, once it exists.
fn alloc(agent: &DevAgent, job: &str) -> Value {
    wait_for(&format!("an allocation of {job}"), T, || {
        let (_, v) = agent.get_json(&format!("/v1/job/{job}/allocations"));
        let id = v.as_array()?.first()?["ID"].as_str()?.to_string();
        let (_, a) = agent.get_json(&format!("/v1/allocation/{id}"));
        Some(a)
    })
}

/// Waits until task "t" of `job`'s allocation satisfies `ok`; returns the allocation.
fn wait_task(agent: &DevAgent, job: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, T, || {
        let a = alloc(agent, job);
        ok(&a["TaskStates"]["t"]).then_some(a)
    })
}

fn events(task: &Value) -> Vec<(String, String)> {
    task["Events"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    (
                        e["Type"].as_str().unwrap_or_default().to_string(),
                        e["DisplayMessage"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_event(task: &Value, kind: &str, text: &str) -> bool {
    events(task)
        .iter()
        .any(|(k, m)| k == kind && m.contains(text))
}

fn alloc_dir(agent: &DevAgent, alloc: &Value) -> PathBuf {
    agent
        .data_dir()
        .join("client/alloc")
        .join(alloc["ID"].as_str().unwrap())
}

fn task_stdout(agent: &DevAgent, alloc: &Value) -> String {
    std::fs::read_to_string(alloc_dir(agent, alloc).join("alloc/logs/t.stdout.0"))
        .unwrap_or_default()
}

fn put_var(agent: &DevAgent, path: &str, items: Value) {
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/v1/var/{path}", agent.addr()))
        .json(&json!({ "Path": path, "Items": items }))
        .send()
        .expect("PUT /v1/var");
    assert!(
        r.status().is_success(),
        "PUT /v1/var/{path}: {}",
        r.text().unwrap_or_default()
    );
}

#[test]
fn env_and_literal_template_renders_into_local_before_the_task_starts() {
    let agent = agent();
    let tmpl = r#"
      template {
        data        = "job={{ env \"NOMAD_JOB_NAME\" }} word={{ \"lit\" | toUpper }}\n"
        destination = "local/app.conf"
        perms       = "600"
      }"#;
    run(
        &agent,
        "render",
        &job("render", "batch", "cat local/app.conf", tmpl, ""),
    );
    let a = wait_task(&agent, "render", "the task to finish", |t| {
        t["State"] == "dead"
    });
    assert_eq!(a["ClientStatus"], "complete", "{a}");
    assert_eq!(task_stdout(&agent, &a), "job=render word=LIT\n");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(alloc_dir(&agent, &a).join("t/local/app.conf")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn env_true_template_puts_its_values_into_the_task_environment() {
    let agent = agent();
    let tmpl = r#"
      template {
        data        = "APP_COLOR=blue\nAPP_TASK={{ env \"NOMAD_TASK_NAME\" }}\n"
        destination = "secrets/app.env"
        env         = true
      }"#;
    run(
        &agent,
        "envfile",
        &job(
            "envfile",
            "batch",
            "echo \"$APP_COLOR-$APP_TASK\"",
            tmpl,
            "",
        ),
    );
    let a = wait_task(&agent, "envfile", "the task to finish", |t| {
        t["State"] == "dead"
    });
    assert_eq!(a["ClientStatus"], "complete", "{a}");
    assert_eq!(task_stdout(&agent, &a), "blue-t\n");
}

#[test]
fn template_destinations_that_leave_the_task_are_refused() {
    let agent = agent();
    // Plainly outside: refused when the job is submitted.
    let tmpl = r#"
      template {
        data        = "x"
        destination = "../../etc/x"
      }"#;
    let out = agent.run_job(
        "dotdot.hcl",
        &job("dotdot", "batch", "true", tmpl, ""),
        &["-detach"],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("'..'"), "{}", stderr(&out));

    // Outside once interpolated: refused by the agent, the task never starts.
    let tmpl = r#"
      template {
        data        = "x"
        destination = "${NOMAD_TASK_DIR}/../../../../escaped"
      }"#;
    run(&agent, "interp", &job("interp", "batch", "true", tmpl, ""));
    let t = wait_task(&agent, "interp", "the template failure", |t| {
        has_event(t, "Template", "'..'")
    });
    assert!(!has_event(&t["TaskStates"]["t"], "Started", ""), "{t}");

    // A symlink another task planted where the template goes: refused, target untouched.
    let outside = agent.dir.path().join("outside.txt");
    std::fs::write(&outside, "original").unwrap();
    let plant = format!(
        r#"
    task "plant" {{
      driver = "raw_exec"
      lifecycle {{
        hook = "prestart"
      }}
      config {{
        command = "/bin/ln"
        args    = ["-s", "{}", "${{NOMAD_ALLOC_DIR}}/conf"]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}"#,
        outside.display()
    );
    let tmpl = r#"
      template {
        data        = "overwritten"
        destination = "alloc/conf"
      }"#;
    run(
        &agent,
        "planted",
        &job("planted", "batch", "true", tmpl, &plant),
    );
    let a = wait_task(&agent, "planted", "the template refusal", |t| {
        has_event(t, "Template", "symbolic link")
    });
    assert!(!has_event(&a["TaskStates"]["t"], "Started", ""), "{a}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "original");
}

#[test]
fn template_syntax_error_blocks_the_task_with_a_template_event() {
    let agent = agent();
    let tmpl = r#"
      template {
        data        = "line one\n{{ if }}"
        destination = "local/broken.conf"
      }"#;
    run(
        &agent,
        "broken",
        &job("broken", "service", "sleep 300", tmpl, ""),
    );
    let a = wait_task(&agent, "broken", "the Template event", |t| {
        has_event(t, "Template", "missing value for if") && t["State"] == "dead"
    });
    let t = &a["TaskStates"]["t"];
    assert!(has_event(t, "Template", "line 2"), "{t}");
    assert!(!has_event(t, "Started", ""), "{t}");
    assert_eq!(t["Failed"], true, "{t}");
    assert!(!alloc_dir(&agent, &a).join("t/local/broken.conf").exists());
}

#[test]
fn nomad_var_template_waits_for_the_variable_and_restarts_the_task_when_it_changes() {
    let agent = agent();
    let tmpl = r#"
      template {
        data        = "color={{ with nomadVar \"app/config\" }}{{ .color }}{{ end }}\n"
        destination = "local/color.txt"
        change_mode = "restart"
        splay       = "0s"
      }
      template {
        data        = "{{ range nomadVarList \"app/\" }}{{ .Path }} {{ end }}"
        destination = "local/list.txt"
        change_mode = "noop"
      }"#;
    run(
        &agent,
        "vars",
        &job(
            "vars",
            "service",
            "cat local/color.txt; sleep 300",
            tmpl,
            "",
        ),
    );
    // The variable does not exist yet: the task waits, saying what for.
    let a = wait_task(&agent, "vars", "the missing-variable event", |t| {
        has_event(t, "Template", "Missing: nomad.var.block(app/config@default")
    });
    assert!(!has_event(&a["TaskStates"]["t"], "Started", ""), "{a}");

    put_var(&agent, "app/config", json!({"color": "blue"}));
    let a = wait_for("the task to print blue", T, || {
        let a = alloc(&agent, "vars");
        task_stdout(&agent, &a).contains("color=blue").then_some(a)
    });
    assert_eq!(a["TaskStates"]["t"]["Restarts"], 0, "{a}");

    put_var(&agent, "app/config", json!({"color": "green"}));
    // The servers hear of the restart in the agent's next status batch.
    let a = wait_for("the restarted task to print green", T, || {
        let a = alloc(&agent, "vars");
        let t = &a["TaskStates"]["t"];
        let restarted = t["Restarts"] == 1 && t["State"] == "running";
        (restarted && task_stdout(&agent, &a).contains("color=green")).then_some(a)
    });
    let t = &a["TaskStates"]["t"];
    assert_eq!(t["Restarts"], 1, "{t}");
    assert_eq!(t["State"], "running", "{t}");
    assert!(
        has_event(t, "Restart Signaled", "Template with change_mode restart"),
        "{t}"
    );
    assert_eq!(
        std::fs::read_to_string(alloc_dir(&agent, &a).join("t/local/color.txt")).unwrap(),
        "color=green\n"
    );
    assert_eq!(
        std::fs::read_to_string(alloc_dir(&agent, &a).join("t/local/list.txt")).unwrap(),
        "app/config "
    );
}

#[test]
fn nomad_var_template_with_change_mode_signal_signals_the_running_task() {
    let agent = agent();
    put_var(&agent, "app/sig", json!({"v": "1"}));
    let tmpl = r#"
      template {
        data          = "v={{ (nomadVar \"app/sig\").v }}\n"
        destination   = "local/s.txt"
        change_mode   = "signal"
        change_signal = "SIGUSR1"
        splay         = "0s"
      }"#;
    let script = "trap 'echo signaled; cat local/s.txt' USR1; cat local/s.txt; \
                  while :; do sleep 0.1; done";
    run(&agent, "sig", &job("sig", "service", script, tmpl, ""));
    wait_for("the task to print v=1", T, || {
        let a = alloc(&agent, "sig");
        task_stdout(&agent, &a).contains("v=1").then_some(())
    });
    put_var(&agent, "app/sig", json!({"v": "2"}));
    let a = wait_for("the signaled task to print v=2", T, || {
        let a = alloc(&agent, "sig");
        let t = &a["TaskStates"]["t"];
        let out = task_stdout(&agent, &a);
        (out.contains("signaled\nv=2") && has_event(t, "Signaling", "SIGUSR1")).then_some(a)
    });
    let t = &a["TaskStates"]["t"];
    assert_eq!(t["Restarts"], 0, "{t}");
    assert_eq!(t["State"], "running", "{t}");
}

#[test]
fn a_restarted_agent_keeps_watching_the_templates_of_the_tasks_it_reattached_to() {
    let mut agent = agent();
    put_var(&agent, "app/kept", json!({"v": "before"}));
    let tmpl = r#"
      template {
        data        = "v={{ (nomadVar \"app/kept\").v }}\n"
        destination = "local/v.txt"
        splay       = "0s"
      }"#;
    run(
        &agent,
        "kept",
        &job("kept", "service", "cat local/v.txt; sleep 300", tmpl, ""),
    );
    wait_for("the task to print v=before", T, || {
        let a = alloc(&agent, "kept");
        task_stdout(&agent, &a).contains("v=before").then_some(())
    });
    agent.kill9();
    agent.restart_and_wait_reattached(1, T);

    put_var(&agent, "app/kept", json!({"v": "after"}));
    let a = wait_for(
        "the reattached task to be restarted with v=after",
        T,
        || {
            let a = alloc(&agent, "kept");
            let t = &a["TaskStates"]["t"];
            let restarted = t["Restarts"] == 1 && t["State"] == "running";
            (restarted && task_stdout(&agent, &a).contains("v=after")).then_some(a)
        },
    );
    assert!(
        has_event(
            &a["TaskStates"]["t"],
            "Restart Signaled",
            "Template with change_mode restart"
        ),
        "{a}"
    );
}

#[test]
fn nomad_service_template_renders_the_registered_instances_and_follows_them() {
    let agent = agent();
    let tmpl = r#"
      template {
        data        = "{{ range nomadService \"backend\" }}{{ .Name }}={{ .Address }}:{{ .Port }}{{ end }}\n"
        destination = "local/upstreams.txt"
        splay       = "0s"
      }"#;
    run(
        &agent,
        "front",
        &job(
            "front",
            "service",
            "cat local/upstreams.txt; sleep 300",
            tmpl,
            "",
        ),
    );
    wait_for("front to start with no upstream", T, || {
        let a = alloc(&agent, "front");
        (a["TaskStates"]["t"]["State"] == "running").then_some(())
    });
    let backend = r#"
    network {
      port "http" {}
    }
    service {
      name     = "backend"
      provider = "nomad"
      port     = "http"
    }"#;
    run(
        &agent,
        "backend",
        &job("backend", "service", "sleep 300", "", backend),
    );
    let (addr, port) = wait_for("the backend's registration", T, || {
        let (_, v) = agent.get_json("/v1/service/backend");
        let r = v.as_array()?.first()?.clone();
        Some((r["Address"].as_str()?.to_string(), r["Port"].as_u64()?))
    });
    let want = format!("backend={addr}:{port}");
    wait_for(
        "front to be restarted with the backend's address",
        T,
        || {
            let a = alloc(&agent, "front");
            let restarted = a["TaskStates"]["t"]["Restarts"] == 1;
            (restarted && task_stdout(&agent, &a).contains(&want)).then_some(())
        },
    );
}
