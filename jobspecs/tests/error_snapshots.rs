//! Bad job files and the exact diagnostics they produce, kept in
//! jobspecs/tests/snapshots/errors.txt (`=== name ===` then the text, one section per
//! case). `UPDATE_SNAPSHOTS=1` rewrites the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// (name, file name, vars, source).
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    String,
);

/// A minimal valid job with `group` and `task` bodies spliced in.
fn job(group_extra: &str, task_extra: &str) -> String {
    format!(
        r#"job "web" {{
  group "app" {{
{group_extra}
    task "server" {{
      driver = "raw_exec"

      config {{
        command = "/bin/sleep"
      }}
{task_extra}
    }}
  }}
}}
"#
    )
}

fn cases() -> Vec<Case> {
    vec![
        (
            "syntax error",
            "syntax.hcl",
            &[],
            "job \"web\" {\n  group \"app\" {\n    count = \n  }\n}\n".to_string(),
        ),
        (
            "misspelt attribute",
            "attr.hcl",
            &[],
            job("    cuont = 2\n", ""),
        ),
        (
            "misspelt block",
            "block.hcl",
            &[],
            job("", "      resorces {\n        cpu = 100\n      }\n"),
        ),
        (
            "several errors in one file",
            "several.hcl",
            &[],
            job(
                "    cuont = 2\n",
                "      resources {\n        memroy = 5\n      }\n      kill_timout = \"5s\"\n",
            ),
        ),
        (
            "duplicate task",
            "duptask.hcl",
            &[],
            job(
                "",
                "    }\n\n    task \"server\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/true\"\n      }\n",
            ),
        ),
        (
            "duplicate port label",
            "dupport.hcl",
            &[],
            job(
                "    network {\n      port \"http\" {}\n      port \"http\" {\n        static = 8080\n      }\n    }\n",
                "",
            ),
        ),
        ("count -1", "count.hcl", &[], job("    count = -1\n", "")),
        (
            "memory 5",
            "memory.hcl",
            &[],
            job("", "      resources {\n        memory = 5\n      }\n"),
        ),
        (
            "unknown constraint operator",
            "constraint.hcl",
            &[],
            job(
                "    constraint {\n      attribute = \"${attr.kernel.name}\"\n      operator  = \"~=\"\n      value     = \"linux\"\n    }\n",
                "",
            ),
        ),
        (
            "bad cron",
            "cron.hcl",
            &[],
            r#"job "nightly" {
  type = "batch"

  periodic {
    crons = ["61 * * * *"]
  }

  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#
            .to_string(),
        ),
        (
            "variable without value",
            "novalue.hcl",
            &[],
            format!(
                "variable \"image\" {{\n  type = string\n}}\n\n{}",
                job("", "      meta {\n        image = var.image\n      }\n")
            ),
        ),
        (
            "variable validation failure",
            "validation.hcl",
            &[("replicas", "0")],
            format!(
                "variable \"replicas\" {{\n  type    = number\n  default = 1\n\n  validation {{\n    condition     = var.replicas > 0\n    error_message = \"The replicas must be at least 1.\"\n  }}\n}}\n\n{}",
                job("    count = var.replicas\n", "")
            ),
        ),
        (
            "wrong type",
            "type.hcl",
            &[],
            job("    count = \"three\"\n", ""),
        ),
        (
            "block written as attribute",
            "blockattr.hcl",
            &[],
            job("", "      resources = {\n        cpu = 100\n      }\n"),
        ),
        (
            "vault block",
            "vault.hcl",
            &[],
            job("", "      vault {\n        policies = [\"app\"]\n      }\n"),
        ),
        (
            "json wrong type",
            "bad.json",
            &[],
            "{\n  \"Job\": {\n    \"ID\": \"web\",\n    \"TaskGroups\": [\n      {\n        \"Name\": \"app\",\n        \"Count\": \"two\",\n        \"Tasks\": [{\"Name\": \"t\", \"Driver\": \"raw_exec\"}]\n      }\n    ]\n  }\n}\n"
                .to_string(),
        ),
    ]
}

fn render(case: &Case) -> String {
    let (name, file, vars, src) = case;
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match jobspecs::parse_str_with_vars(src, file, &vars) {
        Ok(job) => panic!("{name}: parsed, but it must fail: {job:?}"),
        Err(d) => d.to_string().trim_end().to_string(),
    }
}

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/errors.txt")
}

/// Parses `=== name ===` sections.
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("=== ")
            .and_then(|l| l.strip_suffix(" ==="))
        {
            if let Some((n, body)) = current.take() {
                out.insert(n, body.join("\n").trim_end().to_string());
            }
            current = Some((name.to_string(), Vec::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    if let Some((n, body)) = current {
        out.insert(n, body.join("\n").trim_end().to_string());
    }
    out
}

#[test]
fn bad_jobs_give_exactly_the_snapshotted_diagnostics() {
    let cases = cases();
    let actual: Vec<(&str, String)> = cases.iter().map(|c| (c.0, render(c))).collect();
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        let mut text = String::new();
        for (name, diags) in &actual {
            text.push_str(&format!("=== {name} ===\n{diags}\n\n"));
        }
        std::fs::write(snapshot_path(), text.trim_end().to_string() + "\n").unwrap();
        eprintln!("wrote {}", snapshot_path().display());
        return;
    }
    let text = std::fs::read_to_string(snapshot_path())
        .unwrap_or_else(|e| panic!("{e}; run with UPDATE_SNAPSHOTS=1 to create it"));
    let expected = sections(&text);
    let mut failures = Vec::new();
    for (name, diags) in &actual {
        match expected.get(*name) {
            None => failures.push(format!("=== {name} === has no snapshot")),
            Some(want) if want != diags => failures.push(format!(
                "=== {name} ===\nexpected:\n{want}\nactual:\n{diags}"
            )),
            Some(_) => {}
        }
    }
    let names: Vec<&str> = actual.iter().map(|(n, _)| *n).collect();
    for name in expected.keys() {
        if !names.contains(&name.as_str()) {
            failures.push(format!("=== {name} === is in the snapshot but not a case"));
        }
    }
    assert!(
        failures.is_empty(),
        "diagnostics differ (UPDATE_SNAPSHOTS=1 rewrites the file):\n\n{}",
        failures.join("\n\n")
    );
}

/// Every diagnostic line is `file:line:column: message` with a real position.
#[test]
fn every_diagnostic_is_positioned() {
    for case in cases() {
        for line in render(&case).lines() {
            let mut parts = line.splitn(4, ':');
            let (file, l, c) = (parts.next(), parts.next(), parts.next());
            assert_eq!(file, Some(case.1), "{}: {line}", case.0);
            assert!(
                l.and_then(|l| l.parse::<usize>().ok())
                    .is_some_and(|l| l >= 1)
                    && c.and_then(|c| c.parse::<usize>().ok())
                        .is_some_and(|c| c >= 1),
                "{}: unpositioned {line}",
                case.0
            );
        }
    }
}
