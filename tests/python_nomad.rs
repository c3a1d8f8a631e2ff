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

const DEPLOYMENT_SCRIPT: &str = r#"
import sys, time, nomad
n = nomad.Nomad(host="127.0.0.1", port=int(sys.argv[1]), timeout=10)
S = 1000000000
def job(args, canary, min_healthy):
    return {"Job": {
        "ID": "pydep", "Name": "pydep", "Type": "service", "Datacenters": ["dc1"],
        "Update": {"MaxParallel": 1, "Canary": canary, "MinHealthyTime": min_healthy * S,
                   "HealthyDeadline": 60 * S, "ProgressDeadline": 120 * S},
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{
            "Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/sleep", "args": [args]},
            "Resources": {"CPU": 20, "MemoryMB": 16}}]}]}}
def wait(what, f, timeout=40):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.2)
    sys.exit("timed out waiting for " + what)
def deployment_of(version):
    return wait("deployment of version %d" % version, lambda: next(
        (d for d in n.job.get_deployments("pydep") if d["JobVersion"] == version), None))
n.job.register_job("pydep", job("3600", 0, 1))
d0 = deployment_of(0)
wait("a successful deployment", lambda: n.deployment.get_deployment(d0["ID"])["Status"] == "successful")
assert n.job.get_versions("pydep")["Versions"][0]["Stable"] is True
assert n.job.get_deployment("pydep")["ID"] == d0["ID"]
assert d0["ID"] in [d["ID"] for d in n.deployments.get_deployments(prefix=d0["ID"][:4])]
assert len(n.deployment.get_deployment_allocations(d0["ID"])) == 1

n.job.register_job("pydep", job("3601", 1, 60))
d1 = deployment_of(1)
try:
    n.deployment.promote_deployment_all(d1["ID"])
    sys.exit("promoted canaries that are not healthy")
except nomad.api.exceptions.BaseNomadException as e:
    assert "healthy allocations" in str(e.nomad_resp.text), e.nomad_resp.text
n.deployment.pause_deployment(d1["ID"], True)
assert n.deployment.get_deployment(d1["ID"])["Status"] == "paused"
n.deployment.pause_deployment(d1["ID"], False)
assert n.deployment.get_deployment(d1["ID"])["Status"] == "running"
n.deployment.fail_deployment(d1["ID"])
d = n.deployment.get_deployment(d1["ID"])
assert (d["Status"], d["StatusDescription"]) == ("failed", "Deployment marked as failed"), d

n.job.stable_job("pydep", 0, False)
assert [v["Stable"] for v in n.job.get_versions("pydep")["Versions"] if v["Version"] == 0] == [False]
n.job.revert_job("pydep", 0, enforce_prior_version=1)
j = n.job.get_job("pydep")
assert (j["Version"], j["TaskGroups"][0]["Tasks"][0]["Config"]["args"]) == (2, ["3600"]), j
n.job.deregister_job("pydep", purge=True)
print("python-nomad deployments ok")
"#;

#[test]
fn python_nomad_deployment_revert_and_stable_calls_work() {
    let agent = DevAgent::start();
    let out = Command::new("python3")
        .args(["-c", DEPLOYMENT_SCRIPT, &agent.port.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python-nomad failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("deployments ok"));
}
