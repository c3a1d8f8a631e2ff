//! `-namespace` / `NOMAD_NAMESPACE` on the CLI through the real binary: `job run` puts a
//! job file without a namespace in the command's namespace (a file's own `namespace`
//! wins, as with Nomad), and status, stop, alloc and eval lookups by prefix search only
//! that namespace.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `PUT /v1/namespace/<name>`.
fn create_namespace(agent: &DevAgent, name: &str) {
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/v1/namespace/{name}", agent.addr()))
        .json(&json!({ "Name": name }))
        .timeout(Duration::from_secs(30))
        .send()
        .expect("PUT namespace");
    assert!(r.status().is_success(), "creating {name}: {:?}", r.text());
}

/// `drover <args>` against `agent` with `NOMAD_NAMESPACE` set to `namespace`, or unset
/// (whatever the test runner's environment says) when `None`.
fn cli_env(agent: &DevAgent, namespace: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(drover_bin());
    cmd.args(args)
        .env("NOMAD_ADDR", agent.addr())
        .env_remove("NOMAD_NAMESPACE")
        .stdin(Stdio::null());
    if let Some(ns) = namespace {
        cmd.env("NOMAD_NAMESPACE", ns);
    }
    cmd.output().expect("run drover")
}

/// `drover <args>` with no `NOMAD_NAMESPACE`.
fn cli(agent: &DevAgent, args: &[&str]) -> Output {
    cli_env(agent, None, args)
}

fn ok(o: &Output, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// The job file `job_file` with `namespace = "<ns>"` at the top of the job.
fn with_namespace(job_file: &str, ns: &str) -> String {
    job_file.replacen(
        "  datacenters",
        &format!("  namespace = {ns:?}\n  datacenters"),
        1,
    )
}

/// The first allocation of `job` in `ns`, once there is one.
fn first_alloc(agent: &DevAgent, ns: &str, job: &str) -> Value {
    wait_for("the job's allocation", Duration::from_secs(30), || {
        let (code, allocs) = agent.get_json(&format!("/v1/job/{job}/allocations?namespace={ns}"));
        (code == 200)
            .then(|| allocs.as_array().and_then(|a| a.first().cloned()))
            .flatten()
    })
}

#[test]
fn namespace_flag_and_env_scope_run_status_alloc_eval_and_stop() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    create_namespace(&agent, "team-a");

    let out = agent.run_job(
        "web.hcl",
        &raw_exec_job("ns-web", "sleep 300", 20, 16),
        &["-detach", "-namespace", "team-a"],
    );
    ok(&out, "job run -namespace team-a");

    // The job is in team-a, not in default.
    let (code, job) = agent.get_json("/v1/job/ns-web?namespace=team-a");
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["Namespace"], "team-a");
    assert_eq!(agent.get_json("/v1/job/ns-web").0, 404);

    // job status finds it in team-a (flag in either spelling, or the environment) ...
    let out = cli(&agent, &["job", "status", "-namespace", "team-a", "ns-web"]);
    ok(&out, "job status -namespace team-a");
    assert!(stdout(&out).contains("ns-web"), "{}", stdout(&out));
    ok(
        &cli(&agent, &["job", "status", "--namespace=team-a", "ns-"]),
        "job status --namespace=team-a by prefix",
    );
    ok(
        &cli_env(&agent, Some("team-a"), &["job", "status", "ns-web"]),
        "NOMAD_NAMESPACE=team-a job status",
    );
    // ... and the flag wins over the environment.
    let out = cli_env(
        &agent,
        Some("team-a"),
        &["job", "status", "-namespace", "default", "ns-web"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // Without a namespace (or an empty one), the default namespace has no such job.
    for out in [
        cli(&agent, &["job", "status", "ns-web"]),
        cli_env(&agent, Some(""), &["job", "status", "ns-web"]),
    ] {
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("No job(s) with prefix or ID \"ns-web\" found"),
            "{}",
            stderr(&out)
        );
    }

    // An allocation and an evaluation of the job, by prefix, in team-a only.
    let alloc = first_alloc(&agent, "team-a", "ns-web");
    let alloc_prefix = &alloc["ID"].as_str().unwrap()[..8];
    let out = cli(
        &agent,
        &["alloc", "status", "-namespace", "team-a", alloc_prefix],
    );
    ok(&out, "alloc status -namespace team-a <prefix>");
    assert!(stdout(&out).contains(alloc_prefix), "{}", stdout(&out));
    let out = cli(&agent, &["alloc", "status", alloc_prefix]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("No allocation(s)"),
        "{}",
        stderr(&out)
    );

    let eval_prefix = &alloc["EvalID"].as_str().unwrap()[..8];
    ok(
        &cli_env(&agent, Some("team-a"), &["eval", "status", eval_prefix]),
        "NOMAD_NAMESPACE=team-a eval status <prefix>",
    );
    let out = cli(&agent, &["eval", "status", eval_prefix]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // `drover status <prefix>` looks in the namespace too.
    ok(
        &cli(&agent, &["status", "-namespace", "team-a", alloc_prefix]),
        "status -namespace team-a <alloc prefix>",
    );

    // Stopping without the namespace finds nothing; with it, the job is stopped and purged.
    let out = cli(&agent, &["job", "stop", "-purge", "-detach", "ns-web"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(agent.get_json("/v1/job/ns-web?namespace=team-a").0, 200);
    let out = cli(
        &agent,
        &["job", "stop", "-namespace", "team-a", "-purge", "ns-web"],
    );
    ok(&out, "job stop -namespace team-a -purge");
    wait_for("the job to be purged", Duration::from_secs(30), || {
        (agent.get_json("/v1/job/ns-web?namespace=team-a").0 == 404).then_some(())
    });
}

#[test]
fn a_job_files_own_namespace_wins_over_the_namespace_flag() {
    let agent = DevAgent::start();
    create_namespace(&agent, "team-a");
    create_namespace(&agent, "team-b");

    let hcl = with_namespace(&raw_exec_job("ns-own", "sleep 300", 20, 16), "team-b");
    let out = agent.run_job("own.hcl", &hcl, &["-detach", "-namespace", "team-a"]);
    ok(&out, "job run -namespace team-a <file in team-b>");
    let (code, job) = agent.get_json("/v1/job/ns-own?namespace=team-b");
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["Namespace"], "team-b");
    assert_eq!(agent.get_json("/v1/job/ns-own?namespace=team-a").0, 404);

    // The same goes for NOMAD_NAMESPACE.
    let file = agent.dir.path().join("own.hcl");
    let out = cli_env(
        &agent,
        Some("team-a"),
        &["job", "run", "-detach", file.to_str().unwrap()],
    );
    ok(&out, "NOMAD_NAMESPACE=team-a job run <file in team-b>");
    assert_eq!(agent.get_json("/v1/job/ns-own?namespace=team-a").0, 404);

    // `-namespace '*'` lists the jobs of every namespace, saying whose is which, and
    // finds one by ID in whichever namespace it is.
    ok(
        &agent.run_job(
            "plain.hcl",
            &raw_exec_job("ns-plain", "sleep 300", 20, 16),
            &["-detach"],
        ),
        "job run without a namespace",
    );
    assert_eq!(agent.get_json("/v1/job/ns-plain?namespace=default").0, 200);
    let out = cli(&agent, &["job", "status", "-namespace", "*"]);
    ok(&out, "job status -namespace '*'");
    let list = stdout(&out);
    assert!(list.contains("Namespace"), "{list}");
    for (id, ns) in [("ns-own", "team-b"), ("ns-plain", "default")] {
        assert!(
            list.lines().any(|l| l.contains(id) && l.contains(ns)),
            "{id} in {ns}: {list}"
        );
    }
    let out = cli(&agent, &["job", "status", "-namespace=*", "ns-own"]);
    ok(&out, "job status -namespace '*' ns-own");
    assert!(stdout(&out).contains("team-b"), "{}", stdout(&out));

    // A job file in a namespace that does not exist is refused, whatever the flag says.
    let hcl = with_namespace(&raw_exec_job("ns-gone", "sleep 300", 20, 16), "nowhere");
    let out = agent.run_job("gone.hcl", &hcl, &["-detach", "-namespace", "team-a"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(agent.get_json("/v1/job/ns-gone?namespace=team-a").0, 404);
}

#[test]
fn var_and_service_take_the_global_namespace_and_the_environment() {
    let agent = DevAgent::start();
    create_namespace(&agent, "team-a");

    // The global flag written before the subcommand, and the environment.
    ok(
        &cli(
            &agent,
            &["-namespace", "team-a", "var", "put", "app/one", "k=v"],
        ),
        "-namespace team-a var put",
    );
    ok(
        &cli_env(&agent, Some("team-a"), &["var", "put", "app/two", "k=v"]),
        "NOMAD_NAMESPACE=team-a var put",
    );
    for path in ["app/one", "app/two"] {
        let (code, v) = agent.get_json(&format!("/v1/var/{path}?namespace=team-a"));
        assert_eq!(code, 200, "{path}: {v}");
        assert_eq!(v["Namespace"], "team-a");
        assert_eq!(agent.get_json(&format!("/v1/var/{path}")).0, 404, "{path}");
    }
    // var's own flag still works, and reads follow the environment.
    ok(
        &cli(&agent, &["var", "get", "-namespace", "team-a", "app/one"]),
        "var get -namespace team-a",
    );
    ok(
        &cli_env(&agent, Some("team-a"), &["var", "get", "app/two"]),
        "NOMAD_NAMESPACE=team-a var get",
    );
    assert_eq!(
        cli(&agent, &["var", "get", "app/two"]).status.code(),
        Some(1)
    );
    ok(
        &cli(&agent, &["-namespace", "team-a", "service", "list"]),
        "-namespace team-a service list",
    );
}
