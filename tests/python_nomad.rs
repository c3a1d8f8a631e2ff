//! Compatibility: the python-nomad client library, unchanged, against `drover agent -dev`.
//!
//! `scripts/test` installs python-nomad from PyPI; without it this test fails, it does not skip.

mod common;

use common::*;
use std::process::Command;

const SCRIPT: &str = r#"
import sys, time, nomad
n = nomad.Nomad(host="127.0.0.1", port=int(sys.argv[1]), timeout=10)
job = {"Job": {
    "ID": "pyjob", "Name": "pyjob", "Type": "service", "Datacenters": ["dc1"],
    "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{
        "Name": "t", "Driver": "raw_exec",
        "Config": {"command": "/bin/sleep", "args": ["3600"]},
        "Resources": {"CPU": 50, "MemoryMB": 32}}]}]}}
resp = n.job.register_job("pyjob", job)
assert resp["EvalID"], resp
got = n.job.get_job("pyjob")
assert got["ID"] == "pyjob" and got["TaskGroups"][0]["Tasks"][0]["Driver"] == "raw_exec", got
assert "pyjob" in [j["ID"] for j in n.jobs.get_jobs()]
deadline = time.time() + 30
while time.time() < deadline:
    allocs = n.job.get_allocations("pyjob")
    if any(a["ClientStatus"] == "running" for a in allocs):
        break
    time.sleep(0.2)
else:
    sys.exit("no running allocation: %r" % allocs)
assert n.allocation.get_allocation(allocs[0]["ID"])["JobID"] == "pyjob"
assert n.evaluation.get_evaluation(resp["EvalID"])["JobID"] == "pyjob"
assert len(n.nodes.get_nodes()) == 1
n.job.deregister_job("pyjob", purge=True)
try:
    n.job.get_job("pyjob")
    sys.exit("job still there after purge")
except nomad.api.exceptions.URLNotFoundNomadException:
    pass
print("python-nomad round trip ok")
"#;

#[test]
fn python_nomad_registers_reads_lists_and_deregisters_a_job() {
    let agent = DevAgent::start();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &agent.port.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python-nomad failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("round trip ok"));
    // The purge stopped the task.
    wait_for(
        "the task to stop",
        std::time::Duration::from_secs(20),
        || agent.task_pids().is_empty().then_some(()),
    );
}
