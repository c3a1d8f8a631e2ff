//! Behaviour tests of the whole pipeline on small job files written inline.

use crate::{parse_str, parse_str_full, parse_str_with_vars, Diagnostics};
use std::collections::BTreeMap;

fn ok(src: &str) -> api::Job {
    parse_str(src, "t.hcl").unwrap_or_else(|d| panic!("unexpected errors:\n{d}"))
}

fn err(src: &str) -> Diagnostics {
    match parse_str(src, "t.hcl") {
        Ok(job) => panic!("expected errors, got {job:?}"),
        Err(d) => d,
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A minimal job around a task body.
fn with_task(task_body: &str) -> String {
    format!(
        "job \"web\" {{\n  group \"api\" {{\n    task \"server\" {{\n{task_body}\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn sleep_example_parses_with_its_resources() {
    let src = include_str!("../examples/sleep.hcl");
    let job = parse_str(src, "sleep.hcl").unwrap();
    assert_eq!(job.id, "sleep");
    assert_eq!(job.job_type, "service");
    let g = &job.task_groups[0];
    assert_eq!(g.count, 1);
    let t = &g.tasks[0];
    assert_eq!(t.driver, "raw_exec");
    assert_eq!(t.config["command"], "/bin/sleep");
    assert_eq!(t.config["args"], serde_json::json!(["3600"]));
    let r = t.resources.as_ref().unwrap();
    assert_eq!((r.cpu, r.memory_mb), (100, 64));
}

#[test]
fn batch_and_docker_examples_parse() {
    let batch = parse_str(include_str!("../examples/batch.hcl"), "batch.hcl").unwrap();
    assert_eq!(batch.job_type, "batch");
    assert_eq!(
        batch.task_groups[0].tasks[0].config["args"],
        serde_json::json!(["-c", "echo hello; sleep 2"])
    );
    let redis = parse_str(include_str!("../examples/example.hcl"), "example.hcl").unwrap();
    assert_eq!(redis.task_groups[0].tasks[0].driver, "docker");
    assert_eq!(redis.task_groups[0].networks[0].dynamic_ports[0].to, 6379);
}

#[test]
fn syntax_error_is_positioned() {
    let d = err("job \"x\" {\n  type = \n}\n");
    assert_eq!(d.0.len(), 1);
    let e = &d.0[0];
    assert_eq!((e.file.as_str(), e.line, e.column), ("t.hcl", 2, 10), "{e}");
    assert!(
        e.message.starts_with("syntax error: invalid expression"),
        "{e}"
    );
    assert!(d.to_string().starts_with("t.hcl:2:10: syntax error"), "{d}");
}

#[test]
fn misspelt_attribute_names_block_path_and_suggestion() {
    let d = err(&with_task(
        "      drivr = \"raw_exec\"\n      driver = \"exec\"",
    ));
    let e = &d.0[0];
    assert_eq!((e.line, e.column), (4, 7));
    assert!(
        e.message.starts_with(
            "in job \"web\" > group \"api\" > task \"server\": unknown attribute \"drivr\"; did you mean \"driver\"?"
        ),
        "{e}"
    );
    assert!(e.message.contains("expected one of:"), "{e}");
}

#[test]
fn misspelt_block_gets_a_suggestion() {
    let d = err(&with_task(
        "      driver = \"exec\"\n      resorces { cpu = 100 }",
    ));
    assert!(d.0[0]
        .message
        .contains("unknown block \"resorces\"; did you mean \"resources\"?"));
}

#[test]
fn all_errors_in_a_file_are_reported() {
    let d = err(&with_task(
        "      driver = \"exec\"\n      usr = \"x\"\n      kill_timeout = \"5 parsecs\"\n      resources {\n        cpu = 0\n        memory = 5\n      }",
    ));
    let lines: Vec<usize> = d.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![5, 6, 8, 9], "{d}");
    assert_eq!(d.to_string().lines().count(), 4);
}

#[test]
fn nomad_blocks_not_implemented_are_warnings() {
    let src = with_task(
        "      driver = \"exec\"\n      service { name = \"x\" }\n      volume_mount { volume = \"v\" }\n      identity { env = true }",
    );
    let parsed = parse_str_full(&src, "t.hcl", &BTreeMap::new()).unwrap();
    let ignored: Vec<&str> = parsed
        .warnings
        .iter()
        .map(|w| w.message.rsplit(": ").next().unwrap())
        .collect();
    assert_eq!(ignored.len(), 3, "{ignored:?}");
    assert!(parsed.warnings[0]
        .message
        .contains("Drover registers only `provider = \"nomad\"` services"));
    assert_eq!(parsed.job.task_groups[0].tasks[0].services[0].name, "x");
}

#[test]
fn duplicates_counts_drivers_and_operators_are_checked_in_place() {
    let src = r#"job "j" {
  group "g" {
    count = -1
    network {
      port "http" {}
      port "http" { static = 8080 }
    }
    task "a" {
      driver = "docker2"
      constraint {
        attribute = "${attr.kernel.name}"
        operator  = "equals"
        value     = "linux"
      }
    }
    task "a" { driver = "exec" }
  }
}
"#;
    let d = err(src);
    let msgs: Vec<String> =
        d.0.iter()
            .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
            .collect();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert!(msgs[0].starts_with("3:13 ") && msgs[0].contains("count must be >= 0"));
    assert!(msgs[1].starts_with("6:12 ") && msgs[1].contains("port label \"http\""));
    assert!(msgs[2].starts_with("12:21 ") && msgs[2].contains("invalid operator \"equals\""));
    assert!(msgs[3].starts_with("16:10 ") && msgs[3].contains("task \"a\" is defined twice"));
}

#[test]
fn unknown_drivers_are_accepted_with_a_warning_and_a_hint() {
    for (driver, hint) in [("exec2", "; did you mean \"exec\"?"), ("pledge", "")] {
        let parsed = parse_str_full(
            &with_task(&format!("      driver = \"{driver}\"")),
            "t.hcl",
            &BTreeMap::new(),
        )
        .unwrap_or_else(|d| panic!("{driver}: {d}"));
        assert_eq!(parsed.job.task_groups[0].tasks[0].driver, driver);
        let w = &parsed.warnings[0];
        assert_eq!((w.line, w.column), (4, 16), "{w}");
        assert!(
            w.message.contains(&format!(
                "unknown driver \"{driver}\"{hint}: the job is accepted"
            )),
            "{w}"
        );
    }
}

#[test]
fn drivers_drover_does_not_run_yet_only_warn() {
    let parsed = parse_str_full(
        &with_task("      driver = \"podman\""),
        "t.hcl",
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(parsed.warnings[0].message.contains("driver \"podman\""));
}

#[test]
fn durations_become_nanoseconds_in_the_job() {
    let job = ok(r#"job "j" {
  group "g" {
    restart {
      interval = "1m30s"
      delay    = "250ms"
    }
    task "t" {
      driver       = "exec"
      kill_timeout = "1h"
    }
  }
}"#);
    let g = &job.task_groups[0];
    let r = g.restart_policy.as_ref().unwrap();
    assert_eq!(r.interval, 90_000_000_000);
    assert_eq!(r.delay, 250_000_000);
    assert_eq!(r.attempts, 2, "unset fields keep the service default");
    assert_eq!(g.tasks[0].kill_timeout, 3_600_000_000_000);
    assert_eq!(
        g.tasks[0].restart_policy.as_ref().unwrap().interval,
        90_000_000_000
    );
}

#[test]
fn variables_locals_and_functions_evaluate() {
    let src = r#"
variable "dcs" {
  type    = list(string)
  default = ["dc1"]
}
variable "count" {
  type = number
}
variable "image" {
  type    = string
  default = "redis"
}
variable "debug" {
  type    = bool
  default = false
}
locals {
  name  = format("%s-%d", upper(var.image), var.count)
  tags  = concat(["a"], split(",", "b,c"))
  extra = merge({ x = "1" }, { y = lookup({ k = "v" }, "k", "d") })
}
job "j" {
  datacenters = var.dcs
  meta = {
    name   = local.name
    tags   = join(",", local.tags)
    n      = length(local.tags)
    json   = jsonencode({ a = 1 })
    trim   = trimspace("  t  ")
    repl   = replace("a-b", "-", "_")
    num    = tonumber("42") + min(1, 2) + max(3, 4)
    str    = tostring(5)
    co     = coalesce("", "first")
    lower  = lower("ABC")
    debug  = var.debug ? "on" : "off"
    y      = local.extra.y
  }
  group "g" {
    count = var.count
    task "t" {
      driver = "exec"
      config {
        command = "/bin/${var.image}"
        script  = <<-EOT
          echo ${local.name}
          EOT
      }
    }
  }
}
"#;
    let job = parse_str_with_vars(
        src,
        "t.hcl",
        &vars(&[("count", "3"), ("dcs", "[\"a\", \"b\"]"), ("debug", "true")]),
    )
    .unwrap();
    assert_eq!(job.datacenters, vec!["a", "b"]);
    assert_eq!(job.task_groups[0].count, 3);
    let m = &job.meta;
    assert_eq!(m["name"], "REDIS-3");
    assert_eq!(m["tags"], "a,b,c");
    assert_eq!(m["n"], "3");
    assert_eq!(m["json"], "{\"a\":1}");
    assert_eq!(m["trim"], "t");
    assert_eq!(m["repl"], "a_b");
    assert_eq!(m["num"], "47");
    assert_eq!(m["str"], "5");
    assert_eq!(m["co"], "first");
    assert_eq!(m["lower"], "abc");
    assert_eq!(m["debug"], "on");
    assert_eq!(m["y"], "v");
    let cfg = &job.task_groups[0].tasks[0].config;
    assert_eq!(cfg["command"], "/bin/redis");
    assert_eq!(cfg["script"], "echo REDIS-3\n");
}

#[test]
fn missing_variable_is_named_at_its_declaration() {
    let src = "variable \"image\" {\n  type = string\n}\njob \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"docker\"\n      config { image = var.image }\n    }\n  }\n}\n";
    let d = err(src);
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!((d.0[0].line, d.0[0].column), (1, 10));
    assert!(d.0[0].message.contains("variable \"image\" has no default"));
}

#[test]
fn wrongly_typed_variable_value_is_an_error() {
    let src = "variable \"n\" {\n  type = number\n}\njob \"j\" {\n  group \"g\" {\n    count = var.n\n    task \"t\" { driver = \"exec\" }\n  }\n}\n";
    let d = parse_str_with_vars(src, "t.hcl", &vars(&[("n", "many")])).unwrap_err();
    assert!(
        d.0[0].message.contains("invalid value for variable \"n\""),
        "{d}"
    );
}

#[test]
fn undeclared_variable_reference_is_positioned() {
    let d = err(&with_task("      driver = var.drivr"));
    assert_eq!((d.0[0].line, d.0[0].column), (4, 16), "{d}");
    assert!(
        d.0[0]
            .message
            .contains("variable \"drivr\" is not declared"),
        "{d}"
    );
}

#[test]
fn unknown_function_suggests_a_name() {
    let d = err(&with_task("      driver = lowr(\"EXEC\")"));
    assert!(
        d.0[0]
            .message
            .contains("unknown function \"lowr\"; did you mean \"lower\"?"),
        "{d}"
    );
}

#[test]
fn runtime_interpolations_are_kept_verbatim() {
    let job = ok(&with_task(
        r#"      driver = "exec"
      config {
        args = ["${NOMAD_ALLOC_ID}", "${attr.kernel.name}", "${node.unique.name}", "${meta.foo}", "${env["X"]}", "port=${NOMAD_PORT_http}", "$${literal}"]
      }
      env {
        DIR = "${NOMAD_TASK_DIR}/conf"
      }"#,
    ));
    let t = &job.task_groups[0].tasks[0];
    assert_eq!(
        t.config["args"],
        serde_json::json!([
            "${NOMAD_ALLOC_ID}",
            "${attr.kernel.name}",
            "${node.unique.name}",
            "${meta.foo}",
            "${env[\"X\"]}",
            "port=${NOMAD_PORT_http}",
            "${literal}"
        ])
    );
    assert_eq!(t.env["DIR"], "${NOMAD_TASK_DIR}/conf");
}

#[test]
fn config_blocks_become_objects_and_repeated_ones_arrays() {
    let job = ok(&with_task(
        r#"      driver = "docker"
      config {
        image = "x"
        port_map { http = 80 }
        mount {
          type   = "bind"
          target = "/a"
        }
        mount {
          type   = "tmpfs"
          target = "/b"
        }
      }"#,
    ));
    let cfg = &job.task_groups[0].tasks[0].config;
    assert_eq!(cfg["port_map"], serde_json::json!({ "http": 80 }));
    assert_eq!(cfg["mount"][1]["target"], "/b");
}

#[test]
fn defaults_match_nomad() {
    let job = ok(&with_task("      driver = \"exec\""));
    assert_eq!(job.name, "web");
    assert_eq!(job.namespace, "default");
    assert_eq!(job.region, "global");
    assert_eq!(job.job_type, "service");
    assert_eq!(job.priority, 50);
    let g = &job.task_groups[0];
    assert_eq!(g.count, 1);
    assert_eq!(g.restart_policy.as_ref().unwrap().attempts, 2);
    assert!(g.reschedule_policy.as_ref().unwrap().unlimited);
    let t = &g.tasks[0];
    let r = t.resources.as_ref().unwrap();
    assert_eq!((r.cpu, r.memory_mb), (100, 300));
    assert_eq!(t.kill_timeout, 5_000_000_000);

    let batch = ok("job \"b\" {\n  type = \"batch\"\n  name = \"Batch\"\n  group \"g\" {\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert_eq!(batch.name, "Batch");
    let g = &batch.task_groups[0];
    assert_eq!(g.restart_policy.as_ref().unwrap().attempts, 3);
    assert_eq!(g.reschedule_policy.as_ref().unwrap().attempts, 1);
}

#[test]
fn job_level_update_is_inherited_and_merged_by_groups() {
    let job = ok(r#"job "j" {
  update {
    max_parallel = 2
    canary       = 1
  }
  group "g" {
    update { canary = 3 }
    task "t" { driver = "exec" }
  }
}"#);
    let u = job.task_groups[0].update.as_ref().unwrap();
    assert_eq!((u.max_parallel, u.canary), (2, 3));
    assert_eq!(u.healthy_deadline, 300_000_000_000);
}

#[test]
fn constraints_affinities_and_spreads_lower() {
    let job = ok(r#"job "j" {
  constraint {
    distinct_hosts = true
  }
  constraint {
    attribute = "${attr.kernel.version}"
    version   = ">= 5.0"
  }
  affinity {
    attribute = "${node.datacenter}"
    value     = "dc1"
    weight    = 80
  }
  spread {
    attribute = "${node.datacenter}"
    target "dc1" { percent = 70 }
    target "dc2" { percent = 30 }
  }
  group "g" {
    task "t" { driver = "exec" }
  }
}"#);
    assert_eq!(job.constraints[0].operand, "distinct_hosts");
    assert_eq!(job.constraints[1].operand, "version");
    assert_eq!(job.constraints[1].r_target, ">= 5.0");
    assert_eq!(job.affinities[0].weight, 80);
    assert_eq!(job.spreads[0].spread_target[1].value, "dc2");
}

#[test]
fn spread_max_skew_lowers_and_rejects_negative_values_at_the_value() {
    let job = ok(r#"job "j" {
  spread {
    attribute = "${meta.rack}"
  }
  group "g" {
    spread {
      attribute = "${node.datacenter}"
      weight    = 100
      max_skew  = 1
    }
    task "t" { driver = "exec" }
  }
}"#);
    assert_eq!(job.spreads[0].max_skew, 0, "absent means a soft spread");
    let s = &job.task_groups[0].spreads[0];
    assert_eq!(
        (s.attribute.as_str(), s.weight, s.max_skew),
        ("${node.datacenter}", 100, 1)
    );

    let d = err("job \"j\" {\n  group \"g\" {\n    spread {\n      attribute = \"${meta.rack}\"\n      max_skew  = -2\n    }\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!((d.0[0].line, d.0[0].column), (5, 19), "{d}");
    assert!(d.0[0].message.contains("max_skew must be 0"), "{d}");
    assert!(d.0[0].message.contains("got -2"), "{d}");
}

#[test]
fn job_id_problems_are_positioned_at_the_label() {
    let d =
        err("\njob \"my job\" {\n  group \"g\" {\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!((d.0[0].line, d.0[0].column), (2, 5), "{d}");
    assert!(d.0[0].message.contains("contains a space"), "{d}");
}

#[test]
fn job_validation_messages_are_positioned_at_the_job() {
    // A meta key becomes NOMAD_META_<key>: `=` in it is refused by validation.
    let d = err("\njob \"j\" {\n  meta = { \"a=b\" = \"x\" }\n  group \"g\" {\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert_eq!((d.0[0].line, d.0[0].column), (2, 1), "{d}");
    assert!(
        d.0[0].message.contains("meta key \"a=b\" contains `=`"),
        "{d}"
    );
}

#[test]
fn json_jobs_parse_wrapped_or_bare() {
    let wrapped = r#"{"Job": {"ID": "j", "TaskGroups": [{"Name": "g", "Count": null,
        "Tasks": [{"Name": "t", "Driver": "exec", "Resources": null}]}]}}"#;
    let job = parse_str(wrapped, "j.json").unwrap();
    assert_eq!(job.task_groups[0].count, 1);
    assert_eq!(
        job.task_groups[0].tasks[0].resources.as_ref().unwrap().cpu,
        100
    );
    let bare = r#"{"ID": "j", "TaskGroups": [{"Name": "g", "Count": 2, "Tasks": [{"Name": "t", "Driver": "exec"}]}]}"#;
    assert_eq!(parse_str(bare, "j.json").unwrap().task_groups[0].count, 2);
    let broken = parse_str("{\n  \"ID\": ,\n}", "j.json").unwrap_err();
    assert_eq!(broken.0[0].line, 2, "{broken}");
}

fn errors_of(src: &str, inputs: &crate::VarInputs) -> Vec<String> {
    match crate::parse_str_with_inputs(src, "t.hcl", inputs) {
        Ok(p) => panic!("expected errors, got {:?}", p.job),
        Err(d) => {
            d.0.iter()
                .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
                .collect()
        }
    }
}

const VALIDATED: &str = r#"variable "port" {
  type = number
  default = 8080
  validation {
    condition     = var.port > 1024
    error_message = "The port must be above 1024."
  }
}
job "j" {
  group "g" {
    task "t" {
      driver = "exec"
      env { PORT = var.port }
    }
  }
}
"#;

#[test]
fn variable_validation_passes_and_fails_with_the_message_at_the_rule() {
    let job = ok(VALIDATED);
    assert_eq!(job.task_groups[0].tasks[0].env["PORT"], "8080");
    let errs = errors_of(VALIDATED, &crate::VarInputs::cli(&vars(&[("port", "80")])));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("5:21 invalid value for variable \"port\": The port must be above 1024. (value 80 from -var"),
        "{errs:#?}"
    );
}

#[test]
fn var_files_and_environment_fill_variables_in_precedence_order() {
    let dir = std::env::temp_dir().join(format!("jobspecs-varfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hcl = dir.join("prod.hcl");
    std::fs::write(&hcl, "# prod\nport = 9000\nimage = \"redis:${7 + 1}\"\n").unwrap();
    let json = dir.join("more.json");
    std::fs::write(&json, "{\"image\": \"redis:9\"}").unwrap();
    let src = r#"variable "port" { type = number }
variable "image" { type = string }
job "j" {
  group "g" {
    task "t" {
      driver = "docker"
      config {
        image = var.image
        port  = var.port
      }
    }
  }
}
"#;
    let env: BTreeMap<String, String> = [
        ("port".into(), "1".into()),
        ("unrelated".into(), "x".into()),
    ]
    .into();
    let run = |files: Vec<std::path::PathBuf>, cli: &[(&str, &str)]| {
        let inputs = crate::VarInputs {
            cli: vars(cli),
            files,
            env: env.clone(),
            ..Default::default()
        };
        let job = crate::parse_str_with_inputs(src, "t.hcl", &inputs)
            .unwrap_or_else(|d| panic!("{d}"))
            .job;
        let c = job.task_groups[0].tasks[0].config.clone();
        (c["image"].clone(), c["port"].clone())
    };
    // The environment alone is not enough: image has no value.
    let inputs = crate::VarInputs {
        env: env.clone(),
        ..Default::default()
    };
    assert!(crate::parse_str_with_inputs(src, "t.hcl", &inputs).is_err());
    assert_eq!(
        run(vec![hcl.clone()], &[]),
        (serde_json::json!("redis:8"), serde_json::json!(9000))
    );
    assert_eq!(
        run(vec![hcl.clone(), json.clone()], &[("port", "7")]),
        (serde_json::json!("redis:9"), serde_json::json!(7))
    );

    // A value for an undeclared variable is an error at its line in the variables file.
    let bad = dir.join("bad.hcl");
    std::fs::write(&bad, "port = 1\n\nimagee = \"x\"\n").unwrap();
    let inputs = crate::VarInputs {
        files: vec![bad.clone()],
        cli: vars(&[("image", "i")]),
        ..Default::default()
    };
    let d = crate::parse_str_with_inputs(src, "t.hcl", &inputs).unwrap_err();
    let e = &d.0[0];
    assert_eq!((e.line, e.column), (3, 1), "{d}");
    assert!(e.file.ends_with("bad.hcl"), "{d}");
    assert!(
        e.message
            .contains("\"imagee\", which is not declared; did you mean \"image\"?"),
        "{d}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn dynamic_blocks_generate_ports_and_nested_blocks() {
    let src = r#"locals {
  ports = { http = 8080, admin = 9090 }
}
job "j" {
  group "g" {
    network {
      dynamic "port" {
        for_each = local.ports
        iterator = p
        labels   = [p.key]
        content {
          to = p.value
        }
      }
    }
    task "t" {
      driver = "docker"
      config {
        dynamic "mount" {
          for_each = ["/a", "/b"]
          content {
            target = mount.value
            index  = "${mount.key}-${NOMAD_ALLOC_ID}"
          }
        }
      }
    }
  }
}
"#;
    let job = ok(src);
    let ports: Vec<(String, i64)> = job.task_groups[0].networks[0]
        .dynamic_ports
        .iter()
        .map(|p| (p.label.clone(), p.to))
        .collect();
    assert_eq!(ports, vec![("admin".into(), 9090), ("http".into(), 8080)]);
    assert_eq!(
        job.task_groups[0].tasks[0].config["mount"],
        serde_json::json!([
            {"target": "/a", "index": "0-${NOMAD_ALLOC_ID}"},
            {"target": "/b", "index": "1-${NOMAD_ALLOC_ID}"}
        ])
    );
}

#[test]
fn dynamic_block_mistakes_are_positioned() {
    let src = r#"job "j" {
  group "g" {
    network {
      dynamic "port" {
        for_each = ["a", "a"]
        labels   = [port.value]
        content {
          to = "x${port.key}"
        }
      }
      dynamic "port" {
        for_each = 3
        content {}
      }
    }
    task "t" { driver = "exec" }
  }
}
"#;
    let d = err(src);
    let msgs: Vec<String> =
        d.0.iter()
            .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
            .collect();
    // One message per position: the second copy's "x1" is folded into the first.
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(
        msgs[0].starts_with("4:20 ") && msgs[0].contains("port label \"a\" is already used"),
        "{msgs:#?}"
    );
    assert!(
        msgs[1].starts_with("8:16 ")
            && msgs[1].contains("\"to\" must be a whole number, got string \"x0\""),
        "{msgs:#?}"
    );
    assert!(
        msgs[2].starts_with("12:20 ")
            && msgs[2].contains("for_each must be a list, set or map, got number"),
        "{msgs:#?}"
    );
}

#[test]
fn periodic_and_parameterized_jobs_lower_with_checked_crons() {
    let src = r#"job "p" {
  type = "batch"
  periodic {
    crons            = ["13 13 31 1 7", "@daily"]
    prohibit_overlap = true
    time_zone        = "Europe/Paris"
  }
  parameterized {
    payload       = "required"
    meta_required = ["i"]
  }
  group "g" {
    task "t" { driver = "exec" }
  }
}
"#;
    let parsed = parse_str_full(src, "t.hcl", &BTreeMap::new()).unwrap();
    let p = parsed.job.periodic.unwrap();
    assert_eq!(p.specs, vec!["13 13 31 1 7", "@daily"]);
    assert!(p.enabled && p.prohibit_overlap);
    assert_eq!(
        (p.spec_type.as_str(), p.time_zone.as_str()),
        ("cron", "Europe/Paris")
    );
    let pj = parsed.job.parameterized_job.unwrap();
    assert_eq!(
        (pj.payload.as_str(), pj.meta_required.clone()),
        ("required", vec!["i".to_string()])
    );
    assert!(!parsed
        .warnings
        .iter()
        .any(|w| w.message.contains("periodic") || w.message.contains("dispatch")));

    let json = serde_json::to_value(ok("job \"q\" {\n  type = \"batch\"\n  periodic { cron = \"*/5 * * * *\" }\n  group \"g\" {\n    task \"t\" { driver = \"exec\" }\n  }\n}\n")).unwrap();
    assert_eq!(json["Periodic"]["Spec"], "*/5 * * * *");
    assert_eq!(json["Periodic"]["TimeZone"], "UTC");
    assert_eq!(json["ParameterizedJob"], serde_json::Value::Null);

    let errs = errors_of(
        "job \"s\" {\n  periodic {\n    cron = \"0 0 32 * *\"\n  }\n  group \"g\" {\n    task \"t\" { driver = \"exec\" }\n  }\n}\n",
        &Default::default(),
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("2:3 ")
            && errs[0].contains("only batch and sysbatch jobs can be periodic"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("3:12 ")
            && errs[1]
                .contains("invalid cron: field 3 (day of month) \"32\": 32 is out of range 1-31"),
        "{errs:#?}"
    );
}

#[test]
fn group_services_volumes_and_disconnect_settings_lower() {
    let src = r#"job "web" {
  group "api" {
    shutdown_delay        = "5s"
    max_client_disconnect = "1h"
    network {
      port "http" {}
    }
    service {
      port     = "http"
      tags     = ["v1"]
      provider = "nomad"
      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }
    volume "data" {
      type      = "host"
      source    = "shared"
      read_only = true
    }
    task "server" {
      driver = "exec"
      service {
        name     = "metrics"
        provider = "nomad"
      }
    }
  }
}
"#;
    let job = ok(src);
    let g = &job.task_groups[0];
    assert_eq!(g.shutdown_delay, Some(5_000_000_000));
    assert_eq!(g.max_client_disconnect, Some(3_600_000_000_000));
    assert_eq!(g.stop_after_client_disconnect, None);
    let s = &g.services[0];
    assert_eq!(
        (s.name.as_str(), s.port_label.as_str(), s.provider.as_str()),
        ("web-api", "http", "nomad")
    );
    let c = &s.checks[0];
    assert_eq!(
        (
            c.check_type.as_str(),
            c.path.as_str(),
            c.interval,
            c.timeout
        ),
        ("http", "/health", 10_000_000_000, 2_000_000_000)
    );
    assert_eq!(c.name, "service: \"web-api\" check");
    assert_eq!(g.volumes["data"].source, "shared");
    assert!(g.volumes["data"].read_only);
    assert_eq!(g.tasks[0].services[0].name, "metrics");
    assert_eq!(g.tasks[0].services[0].provider, "nomad");
}

#[test]
fn vault_connect_and_csi_are_rejected_on_purpose_at_their_blocks() {
    let src = r#"job "j" {
  group "g" {
    volume "data" {
      type   = "csi"
      source = "db"
    }
    service {
      connect {
        sidecar_service {}
      }
    }
    task "t" {
      driver = "docker"
      vault { policies = ["p"] }
    }
  }
}
"#;
    let errs = errors_of(src, &Default::default());
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("4:16 ")
            && errs[0].contains(
                "CSI storage (a csi volume or csi_plugin) is not supported by Drover, on purpose"
            ),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("8:7 ")
            && errs[1].contains(
                "Consul Connect (the connect block) is not supported by Drover, on purpose"
            ),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("14:7 ")
            && errs[2].contains(
                "Vault integration (the vault block) is not supported by Drover, on purpose"
            ),
        "{errs:#?}"
    );
}

// --- Hardening: no filesystem on the server, names, numbers ---------------------------

const READS_HOSTNAME: &str = "job \"web\" {\n  meta = { host = file(\"/etc/hostname\") }\n  group \"api\" {\n    task \"server\" { driver = \"exec\" }\n  }\n}\n";

#[test]
fn file_is_refused_with_a_positioned_sentence_when_the_filesystem_is_off() {
    let d = err(READS_HOSTNAME);
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!((d.0[0].line, d.0[0].column), (2, 19), "{d}");
    assert!(
        d.0[0]
            .message
            .contains("Call to function \"file\" failed: filesystem function disabled"),
        "{d}"
    );
}

#[test]
fn every_filesystem_function_is_refused_when_the_filesystem_is_off() {
    for name in crate::funcs::FILESYSTEM_FUNCTIONS {
        let src = format!(
            "job \"web\" {{\n  meta = {{ x = {name}(\"/etc/hostname\") }}\n  group \"api\" {{\n    task \"server\" {{ driver = \"exec\" }}\n  }}\n}}\n"
        );
        let d = err(&src);
        assert!(
            d.0[0].message.contains("filesystem function disabled"),
            "{name}: {d}"
        );
    }
}

#[test]
fn file_in_a_local_is_refused_when_the_filesystem_is_off() {
    let src = format!(
        "locals {{\n  h = file(\"/etc/hostname\")\n}}\n{}",
        with_task("      driver = \"exec\"\n      env = { H = local.h }")
    );
    let d = err(&src);
    assert!(
        d.to_string().contains("filesystem function disabled"),
        "{d}"
    );
}

#[test]
fn file_reads_relative_to_the_job_file_when_parsed_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeting.txt"), "hello from a file").unwrap();
    let job_file = dir.path().join("web.hcl");
    std::fs::write(
        &job_file,
        "job \"web\" {\n  meta = { greeting = file(\"greeting.txt\") }\n  group \"api\" {\n    task \"server\" { driver = \"exec\" }\n  }\n}\n",
    )
    .unwrap();
    let job = crate::parse_file(&job_file).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(job.meta["greeting"], "hello from a file");
}

#[test]
fn variables_text_sent_to_a_server_never_reads_files() {
    for text in [
        "h = file(\"/etc/hostname\")\n",
        "h = [file(\"/etc/hostname\")]\n",
        "h = fileexists(\"/etc/hostname\")\n",
    ] {
        let d = crate::parse_variables_text(text, "variables.hcl").unwrap_err();
        assert!(
            d.to_string().contains("filesystem function disabled"),
            "{text}: {d}"
        );
    }
    // `name=value` text still works as -var text.
    let v = crate::parse_variables_text("image=nginx:1.2\n", "variables.hcl").unwrap();
    assert_eq!(v[0].0, "image");
}

#[test]
fn list_typed_var_text_cannot_call_file() {
    let src = format!(
        "variable \"xs\" {{\n  type = list(string)\n}}\n{}",
        with_task("      driver = \"exec\"\n      meta = { x = join(\",\", var.xs) }")
    );
    let d = parse_str_with_vars(&src, "t.hcl", &vars(&[("xs", "[file(\"/etc/hostname\")]")]))
        .unwrap_err();
    assert!(
        d.to_string().contains("filesystem function disabled"),
        "{d}"
    );
}

#[test]
fn task_names_that_would_leave_the_alloc_dir_are_refused_at_the_label() {
    for (name, why) in [
        ("/x", "cannot include slashes"),
        ("../../../../x", "cannot include slashes"),
        ("a\\\\b", "cannot include slashes"),
        ("..", "cannot be \".\" or \"..\""),
        ("alloc", "is reserved"),
    ] {
        let src = format!(
            "job \"web\" {{\n  group \"api\" {{\n    task \"{name}\" {{ driver = \"exec\" }}\n  }}\n}}\n"
        );
        let d = err(&src);
        assert_eq!(d.0.len(), 1, "{name}: {d}");
        assert_eq!((d.0[0].line, d.0[0].column), (3, 10), "{name}: {d}");
        assert!(d.0[0].message.contains(why), "{name}: {d}");
    }
}

#[test]
fn group_names_with_slashes_are_refused_at_the_label() {
    let d = err("job \"web\" {\n  group \"a/b\" {\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert_eq!((d.0[0].line, d.0[0].column), (2, 9), "{d}");
    assert!(
        d.0[0]
            .message
            .contains("task group name \"a/b\" cannot include slashes"),
        "{d}"
    );
    // A lone task becomes a group of its name: the task rules apply.
    let d = err("job \"web\" {\n  task \"alloc\" { driver = \"exec\" }\n}\n");
    assert!(d.0[0].message.contains("is reserved"), "{d}");
}

#[test]
fn huge_whole_numbers_are_out_of_range_not_saturated() {
    let d = err("job \"web\" {\n  group \"api\" {\n    count = 99999999999999999999\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!(d.0[0].line, 3, "{d}");
    assert!(
        d.0[0]
            .message
            .contains("the number 99999999999999999999 is too large"),
        "{d}"
    );

    // Past i64 but within u64: the parser takes it, the reader refuses it.
    let d = err("job \"web\" {\n  group \"api\" {\n    count = 9999999999999999999\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert_eq!((d.0[0].line, d.0[0].column), (3, 13), "{d}");
    assert!(
        d.0[0]
            .message
            .contains("does not fit in a 64-bit whole number"),
        "{d}"
    );

    let d = err("job \"web\" {\n  group \"api\" {\n    count = 3000000000\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    assert!(
        d.0[0]
            .message
            .contains("count 3000000000 is more than the limit of 2147483647"),
        "{d}"
    );

    let d = err(&with_task(
        "      driver = \"exec\"\n      resources {\n        cpu = 1e300\n      }",
    ));
    assert!(d.0[0].message.contains("out of range"), "{d}");
}

#[test]
fn durations_must_be_non_negative_and_bounded() {
    for (value, why) in [
        ("\"9999999999h\"", "out of range"),
        ("\"-5s\"", "is negative"),
        ("-5", "is negative"),
        ("\"876001h\"", "longer than the limit"),
        ("1e30", "not a whole number of nanoseconds"),
    ] {
        let d = err(&with_task(&format!(
            "      driver = \"exec\"\n      kill_timeout = {value}"
        )));
        assert_eq!(d.0.len(), 1, "{value}: {d}");
        assert_eq!(d.0[0].line, 5, "{value}: {d}");
        assert!(d.0[0].message.contains(why), "{value}: {d}");
    }
    for block in ["restart", "reschedule"] {
        let src = format!(
            "job \"web\" {{\n  group \"api\" {{\n    {block} {{\n      delay = \"-1m\"\n    }}\n    task \"t\" {{ driver = \"exec\" }}\n  }}\n}}\n"
        );
        let d = err(&src);
        assert_eq!((d.0[0].line, d.0[0].column), (4, 15), "{block}: {d}");
    }
}

#[test]
fn counts_and_ports_are_range_checked_at_the_value() {
    let d = err("job \"web\" {\n  group \"api\" {\n    update {\n      max_parallel = -1\n    }\n    network {\n      port \"http\" {\n        to = 70000\n      }\n    }\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    let text = d.to_string();
    assert!(
        text.contains("t.hcl:4:22:") && text.contains("max_parallel -1 is out of range"),
        "{d}"
    );
    assert!(
        text.contains("t.hcl:8:14:") && text.contains("to 70000 is out of range"),
        "{d}"
    );
}

#[test]
fn json_jobs_get_the_same_range_and_name_checks() {
    let src = r#"{"Job": {"ID": "j", "TaskGroups": [{"Name": "g", "Count": 1,
        "Tasks": [{"Name": "../../x", "Driver": "exec", "KillTimeout": -5000000000}]}]}}"#;
    let d = parse_str(src, "j.json").unwrap_err();
    let text = d.to_string();
    assert!(
        text.contains("task name \"../../x\" cannot include slashes"),
        "{d}"
    );
    assert!(text.contains("kill_timeout must not be negative"), "{d}");
}

#[test]
fn substr_with_a_huge_length_takes_the_rest_instead_of_overflowing() {
    let job = ok(&with_task(
        "      driver = \"exec\"\n      meta = { a = substr(\"abcdef\", 2, 1e300), b = substr(\"abc\", -1e300, 2) }",
    ));
    let meta = &job.task_groups[0].tasks[0].meta;
    assert_eq!(meta["a"], "cdef");
    assert_eq!(meta["b"], "ab");
}

#[test]
fn port_labels_and_volume_names_are_checked_at_the_label() {
    let d = err("job \"web\" {\n  group \"api\" {\n    network {\n      port \"a b\" {}\n    }\n    volume \"../v\" {\n      type = \"host\"\n    }\n    task \"t\" { driver = \"exec\" }\n  }\n}\n");
    let text = d.to_string();
    assert!(
        text.contains("t.hcl:4:12: ")
            && text.contains("port label \"a b\" contains `=` or white space"),
        "{d}"
    );
    assert!(
        text.contains("t.hcl:6:12: ")
            && text.contains("volume name \"../v\" cannot include slashes"),
        "{d}"
    );
}

/// A job with group network port "http" around a group-level service body.
fn with_service(service_body: &str) -> String {
    format!(
        "job \"web\" {{\n  group \"api\" {{\n    network {{\n      port \"http\" {{}}\n    }}\n    service {{\n{service_body}\n    }}\n    task \"server\" {{\n      driver = \"exec\"\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn every_service_and_check_attribute_is_read_with_nomads_defaults() {
    let job = ok(&with_service(
        r#"      name                = "api-v1"
      port                = "http"
      provider            = "nomad"
      tags                = ["v1"]
      canary_tags         = ["canary"]
      enable_tag_override = true
      address             = "10.0.0.9"
      task                = "server"
      on_update           = "require_healthy"
      meta {
        team = "core"
      }
      canary_meta {
        stage = "canary"
      }
      check_restart {
        limit = 3
        grace = "30s"
      }
      check {
        name     = "ready"
        type     = "http"
        path     = "/ready"
        protocol = "https"
        method   = "POST"
        body     = "{}"
        interval = "5s"
        timeout  = "1s"
        tls_skip_verify = true
        header {
          X-Token = ["a", "b"]
        }
        check_restart {
          limit = 1
        }
      }
      check {
        type     = "tcp"
        port     = 8080
        interval = "10s"
        timeout  = "2s"
      }"#,
    ));
    let s = &job.task_groups[0].services[0];
    assert_eq!(s.name, "api-v1");
    assert_eq!(
        (s.port_label.as_str(), s.provider.as_str()),
        ("http", "nomad")
    );
    assert_eq!(
        (s.tags.clone(), s.canary_tags.clone()),
        (vec!["v1".to_string()], vec!["canary".to_string()])
    );
    assert!(s.enable_tag_override);
    assert_eq!(
        (s.address.as_str(), s.address_mode.as_str()),
        ("10.0.0.9", "auto")
    );
    assert_eq!(
        (s.task_name.as_str(), s.on_update.as_str()),
        ("server", "require_healthy")
    );
    assert_eq!(s.meta["team"], "core");
    assert_eq!(s.canary_meta["stage"], "canary");
    assert_eq!(s.namespace, "default");
    let ready = &s.checks[0];
    assert_eq!(
        (
            ready.protocol.as_str(),
            ready.method.as_str(),
            ready.body.as_str()
        ),
        ("https", "POST", "{}")
    );
    assert!(ready.tls_skip_verify);
    assert_eq!(ready.header["X-Token"], vec!["a", "b"]);
    assert_eq!(
        ready.task_name, "server",
        "inherited from the service's task"
    );
    assert_eq!(
        ready.on_update, "require_healthy",
        "inherited from the service"
    );
    // The check's limit over the service's grace.
    assert_eq!(
        ready.check_restart,
        Some(api::CheckRestart {
            limit: 1,
            grace: 30_000_000_000,
            ignore_warnings: false
        })
    );
    let tcp = &s.checks[1];
    assert_eq!(tcp.name, "service: \"api-v1\" check");
    assert_eq!(tcp.port_label, "8080");
    assert_eq!((tcp.protocol.as_str(), tcp.method.as_str()), ("", ""));
    assert_eq!(tcp.check_restart.as_ref().map(|c| c.limit), Some(3));
}

#[test]
fn on_update_ignore_with_an_inherited_check_restart_is_refused_at_the_block() {
    // Nomad merges the service's check_restart into every check, and a readiness check
    // (on_update = "ignore") must not restart its task.
    let errs = errors_of(
        &with_service(
            "      provider = \"nomad\"\n      port = \"http\"\n      check_restart {\n        limit = 2\n      }\n      check {\n        type      = \"tcp\"\n        interval  = \"5s\"\n        timeout   = \"1s\"\n        on_update = \"ignore\"\n      }",
        ),
        &Default::default(),
    );
    assert_eq!(
        errs,
        vec!["9:7 in job \"web\" > group \"api\" > service > check: on_update value \"ignore\" is not compatible with check_restart"],
    );
}

#[test]
fn nomad_check_rules_are_errors_at_the_attribute() {
    let errs = errors_of(
        &with_service(
            "      provider = \"nomad\"\n      port = \"http\"\n      name = \"my_api\"\n      check {\n        type     = \"grpc\"\n        interval = \"500ms\"\n        timeout  = \"1s\"\n      }\n      check {\n        type     = \"http\"\n        interval = \"5s\"\n        timeout  = \"1s\"\n        failures_before_critical = 3\n      }",
        ),
        &Default::default(),
    );
    let want = [
        "9:14 in job \"web\" > group \"api\" > service: Service name must be valid per RFC 1123",
        "11:20 in job \"web\" > group \"api\" > service > check: invalid check type (\"grpc\"), must be one of http, tcp",
        "12:20 in job \"web\" > group \"api\" > service > check: interval (500ms) cannot be lower than 1s",
        "15:7 in job \"web\" > group \"api\" > service > check: http type must have http path",
        "19:36 in job \"web\" > group \"api\" > service > check: failures_before_critical may only be set for Consul service checks",
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for (got, want) in errs.iter().zip(want) {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
    }
}

#[test]
fn group_wide_service_rules_are_reported_for_the_job() {
    // A port that no network defines, and two providers in one group: rules that need
    // the whole group are checked after lowering.
    let src = "job \"web\" {\n  group \"api\" {\n    service {\n      provider = \"nomad\"\n      port     = \"www\"\n    }\n    task \"server\" {\n      driver = \"exec\"\n      service {\n        name = \"metrics\"\n      }\n    }\n  }\n}\n";
    let errs = errors_of(src, &Default::default());
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs.iter().any(|e| e.contains(
            "task group \"api\": Multiple service providers used: task group services must use the same provider"
        )),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.contains(
            "port label \"www\" referenced by services web-api does not exist"
        )),
        "{errs:#?}"
    );
}

#[test]
fn consul_services_are_recorded_with_one_warning_each() {
    let src = with_service("      port = \"http\"\n      check {\n        type     = \"script\"\n        command  = \"/bin/true\"\n        interval = \"5s\"\n        timeout  = \"1s\"\n      }");
    let parsed = parse_str_full(&src, "t.hcl", &BTreeMap::new()).unwrap();
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    let w = &parsed.warnings[0];
    assert_eq!((w.line, w.column), (6, 5));
    assert!(
        w.message
            .contains("registers only `provider = \"nomad\"` services"),
        "{w:?}"
    );
    let s = &parsed.job.task_groups[0].services[0];
    assert_eq!(
        (s.provider.as_str(), s.name.as_str()),
        ("consul", "web-api")
    );
}

#[test]
fn json_services_get_the_same_defaults_and_rules() {
    let src = r#"{"Job": {"ID": "web", "TaskGroups": [{"Name": "api",
      "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
      "Services": [{"PortLabel": "http", "Provider": "nomad",
        "CheckRestart": {"Limit": 2},
        "Checks": [{"Type": "http", "Path": "/h", "Interval": 5000000000, "Timeout": 1000000000}]}],
      "Tasks": [{"Name": "server", "Driver": "exec"}]}]}}"#;
    let job = parse_str(src, "t.json").unwrap();
    let s = &job.task_groups[0].services[0];
    assert_eq!(
        (s.name.as_str(), s.address_mode.as_str()),
        ("web-api", "auto")
    );
    let c = &s.checks[0];
    assert_eq!(c.name, "service: \"web-api\" check");
    assert_eq!(c.check_restart.as_ref().map(|r| r.limit), Some(2));

    let bad = src.replace("\"Type\": \"http\"", "\"Type\": \"script\"");
    let d = parse_str(&bad, "t.json").unwrap_err().to_string();
    assert!(
        d.contains("invalid check type (\"script\"), must be one of http, tcp"),
        "{d}"
    );
}

#[test]
fn task_shutdown_delay_is_read() {
    let job = ok(&with_task(
        "driver = \"raw_exec\"\n shutdown_delay = \"4s\"\n config { command = \"true\" }",
    ));
    assert_eq!(
        job.task_groups[0].tasks[0].shutdown_delay,
        Some(api::secs(4))
    );
}
