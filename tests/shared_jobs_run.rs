//! Real Nomad job files from ../shared/jobspecs run unchanged on `drover agent -dev`.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

fn shared(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("DROVER_SHARED_JOBSPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/jobspecs"));
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("NOTE: {} is absent; skipping", p.display());
        None
    }
}

fn client_status(agent: &DevAgent, job: &str) -> Vec<String> {
    let (_, allocs) = agent.get_json(&format!("/v1/job/{job}/allocations"));
    allocs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| a["ClientStatus"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn nomads_own_service_and_batch_job_files_run_unchanged() {
    let (Some(sleeper), Some(batch)) = (
        shared("e2e__clientstate__sleeper.nomad"),
        shared("e2e__taskevents__input__simple_batch.nomad"),
    ) else {
        return;
    };
    let agent = DevAgent::start();
    for f in [&sleeper, &batch] {
        let out = agent.cli(&["job", "run", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}{}",
            f.display(),
            stdout(&out),
            stderr(&out)
        );
    }
    wait_for("the sleeper to run", Duration::from_secs(30), || {
        (client_status(&agent, "sleeper") == ["running"]).then_some(())
    });
    wait_for("the batch job to complete", Duration::from_secs(30), || {
        (client_status(&agent, "simple_batch") == ["complete"]).then_some(())
    });
    let status = stdout(&agent.cli(&["job", "status", "simple_batch"]));
    assert!(status.contains("dead"), "{status}");
    assert!(agent.cli(&["job", "stop", "sleeper"]).status.success());
}
