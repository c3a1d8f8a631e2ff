//! The real Nomad job files in /work/shared/jobspecs: every one parses or fails with a
//! positioned message, never a panic. Skipped (with a note) when the directory is absent.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DROVER_SHARED_JOBSPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/jobspecs"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} is absent; skipping shared jobspec tests",
            dir.display()
        );
        None
    }
}

fn job_files(dir: &PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    files.sort();
    files
}

/// Files Drover rejects on purpose, with the reason the error must give.
const REJECTED: &[(&str, &str)] = &[
    (
        "command__asset__connect-short.nomad.hcl",
        "Consul Connect (the connect block) is not supported by Drover, on purpose",
    ),
    (
        "command__asset__connect.nomad.hcl",
        "Consul Connect (the connect block) is not supported by Drover, on purpose",
    ),
    (
        "command__testdata__example-short-bad.json",
        "job ID \"bad example\" contains a space",
    ),
    (
        "command__testdata__example-vault.nomad",
        "Vault integration (the vault block) is not supported by Drover, on purpose",
    ),
];

/// Variables files (`-var-file`), not jobs: `name = value` lines for xyz.hcl.
const VAR_FILES: &[&str] = &[
    "e2e__jobsubmissions__input__x.hcl",
    "e2e__jobsubmissions__input__y.hcl",
    "e2e__jobsubmissions__input__z.hcl",
];

/// Jobs whose variables have no default: the values their e2e tests pass.
fn vars_for(name: &str) -> jobspecs::VarInputs {
    let pairs: &[(&str, &str)] = match name {
        "e2e__docker__input__docker_config.hcl" => {
            &[("registry_address", "localhost:5000"), ("user", "alice")]
        }
        "e2e__servicediscovery__input__checks_task_restart_helper.nomad" => &[
            ("nodeID", "abc123"),
            ("cmd", "touch"),
            ("delay", "3"),
            ("filename", "/tmp/x"),
        ],
        "e2e__servicediscovery__input__checks_task_restart_main.nomad" => &[("filename", "/tmp/x")],
        _ => &[],
    };
    let mut inputs = jobspecs::VarInputs {
        cli: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    if name == "e2e__jobsubmissions__input__xyz.hcl" {
        if let Some(dir) = shared_dir() {
            inputs.files = VAR_FILES.iter().map(|f| dir.join(f)).collect();
        }
    }
    inputs
}

#[test]
fn every_shared_jobspec_parses_or_fails_with_positions() {
    let Some(dir) = shared_dir() else { return };
    let (mut ok, mut warned) = (0, 0);
    let mut rejected: Vec<(String, String)> = Vec::new();
    for path in job_files(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if VAR_FILES.contains(&name.as_str()) {
            let values = jobspecs::read_var_file(&path)
                .unwrap_or_else(|d| panic!("{name}: a variables file that does not parse: {d}"));
            assert_eq!(values.len(), 1, "{name}");
            println!("vars  {name}");
            continue;
        }
        let inputs = vars_for(&name);
        match std::panic::catch_unwind(|| jobspecs::parse_file_with_inputs(&path, &inputs)) {
            Err(_) => panic!("{name}: the parser panicked"),
            Ok(Ok(parsed)) => {
                ok += 1;
                if !parsed.warnings.is_empty() {
                    warned += 1;
                }
                println!("ok    {name} ({} warnings)", parsed.warnings.len());
            }
            Ok(Err(diags)) => {
                assert!(!diags.0.is_empty(), "{name}: an error without diagnostics");
                for d in &diags.0 {
                    assert!(d.line > 1 && d.column >= 1, "{name}: unpositioned {d}");
                    assert!(d.file.ends_with(&name), "{name}: wrong file in {d}");
                    println!("ERR   {d}");
                }
                rejected.push((name, diags.0[0].message.clone()));
            }
        }
    }
    println!(
        "\n{ok} parsed ({warned} with warnings), {} rejected:",
        rejected.len()
    );
    for (name, why) in &rejected {
        println!("  {name}: {why}");
    }
    let names: Vec<&str> = rejected.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = REJECTED.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "the rejected files changed");
    for ((name, why), (_, want)) in rejected.iter().zip(REJECTED) {
        assert!(why.contains(want), "{name}: {why:?} does not say {want:?}");
    }
}

fn shared(name: &str) -> Option<PathBuf> {
    shared_dir().map(|d| d.join(name)).filter(|p| p.exists())
}

#[test]
fn files_needing_variables_name_them_with_positions() {
    let Some(path) = shared("e2e__jobsubmissions__input__xyz.hcl") else {
        return;
    };
    let diags = jobspecs::parse_file(&path).unwrap_err();
    let text = diags.to_string();
    for (var, line) in [("X", 4), ("Y", 8), ("Z", 12)] {
        let expected = format!("xyz.hcl:{line}:10: variable \"{var}\" has no default");
        assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    }
    assert_eq!(diags.0.len(), 3, "{text}");

    let vars: BTreeMap<String, String> = [("X", "hello"), ("Y", "7"), ("Z", "true")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let job = jobspecs::parse_file_with_vars(&path, &vars).unwrap();
    assert_eq!(
        job.task_groups[0].tasks[0].config["args"],
        serde_json::json!(["X hello, Y 7, Z true"])
    );
    assert_eq!(job.constraints[0].l_target, "${attr.kernel.name}");
}

#[test]
fn nomad_init_example_has_its_group_task_and_resources() {
    let Some(path) = shared("command__asset__example.nomad.hcl") else {
        return;
    };
    let job = jobspecs::parse_file(&path).unwrap();
    let json = serde_json::to_value(&job).unwrap();
    assert_eq!(json["ID"], "example");
    assert_eq!(json["Type"], "service");
    let group = &json["TaskGroups"][0];
    assert_eq!(group["Name"], "cache");
    assert_eq!(group["Count"], 1);
    assert_eq!(group["Networks"][0]["DynamicPorts"][0]["Label"], "db");
    assert_eq!(group["Networks"][0]["DynamicPorts"][0]["To"], 6379);
    assert_eq!(group["RestartPolicy"]["Interval"], 1_800_000_000_000i64);
    assert_eq!(group["EphemeralDisk"]["SizeMB"], 300);
    assert_eq!(group["Update"]["HealthyDeadline"], 180_000_000_000i64);
    let task = &group["Tasks"][0];
    assert_eq!(task["Name"], "redis");
    assert_eq!(task["Driver"], "docker");
    assert_eq!(task["Config"]["image"], "redis:7");
    assert_eq!(task["Config"]["ports"], serde_json::json!(["db"]));
    assert_eq!(task["Resources"]["CPU"], 500);
    assert_eq!(task["Resources"]["MemoryMB"], 256);
}

#[test]
fn api_json_jobs_parse_and_a_spaced_id_is_rejected() {
    let Some(good) = shared("command__testdata__example-short.json") else {
        return;
    };
    let job = jobspecs::parse_file(&good).unwrap();
    assert_eq!(job.id, "example");
    assert_eq!(job.datacenters, vec!["dc1"]);
    assert_eq!(job.task_groups[0].count, 1);
    assert_eq!(
        job.task_groups[0].tasks[0].resources.as_ref().unwrap().cpu,
        500
    );

    let Some(bad) = shared("command__testdata__example-short-bad.json") else {
        return;
    };
    let diags = jobspecs::parse_file(&bad).unwrap_err();
    assert!(
        diags
            .0
            .iter()
            .any(|d| d.message.contains("\"bad example\" contains a space") && d.line > 1),
        "{diags}"
    );
}

#[test]
fn hcl_and_json_forms_of_the_short_example_agree() {
    let (Some(hcl), Some(json)) = (
        shared("command__asset__example-short.nomad.hcl"),
        shared("command__testdata__example-short.json"),
    ) else {
        return;
    };
    let from_hcl = jobspecs::parse_file(&hcl).unwrap();
    let from_json = jobspecs::parse_file(&json).unwrap();
    let (g1, g2) = (&from_hcl.task_groups[0], &from_json.task_groups[0]);
    assert_eq!(g1.name, g2.name);
    assert_eq!(g1.tasks[0].config, g2.tasks[0].config);
    assert_eq!(g1.tasks[0].resources, g2.tasks[0].resources);
    assert_eq!(g1.networks[0].dynamic_ports, g2.networks[0].dynamic_ports);
}
