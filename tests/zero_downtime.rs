//! Rollouts and drains that drop no request. A load generator finds its backends as
//! Traefik's Nomad provider does (re-reading `GET /v1/service/<name>` every second) and
//! sends requests round-robin to them while the job is updated or its node drained; the
//! tasks are small HTTP servers started by raw_exec on `NOMAD_PORT_http`. Every request
//! must succeed: instances are registered only once their check passes and deregistered
//! `shutdown_delay` before their task is signalled.

mod common;

use common::cluster::*;
use common::loadgen::{LoadGen, LoadReport};
use common::*;
use std::time::Duration;

/// A service job of `count` HTTP servers answering `version`.
fn web_job(name: &str, count: usize, version: &str, python: &str, extra_group: &str) -> String {
    let update = r#"max_parallel     = 1
    min_healthy_time = "2s"
    healthy_deadline = "1m""#;
    web_job_with(name, count, version, python, extra_group, update, true)
}

/// [`web_job`] with its `update` block's body; with `listen` false the task never opens
/// its port (its HTTP check fails).
fn web_job_with(
    name: &str,
    count: usize,
    version: &str,
    python: &str,
    extra_group: &str,
    update: &str,
    listen: bool,
) -> String {
    let serve = if listen {
        format!(
            r#"exec {python} -m http.server \"$NOMAD_PORT_http\" --bind 0.0.0.0 --directory \"$NOMAD_TASK_DIR\""#
        )
    } else {
        "exec sleep 3600".to_string()
    };
    format!(
        r#"
job "{name}" {{
  type = "service"

  update {{
    {update}
  }}

  group "web" {{
    count          = {count}
    shutdown_delay = "3s"
    {extra_group}

    network {{
      port "http" {{}}
    }}

    service {{
      name        = "{name}"
      provider    = "nomad"
      port        = "http"
      tags        = ["live"]
      canary_tags = ["canary"]

      check {{
        type     = "http"
        path     = "/"
        interval = "1s"
        timeout  = "1s"
      }}
    }}

    task "server" {{
      driver       = "raw_exec"
      kill_timeout = "5s"

      env {{
        VERSION = "{version}"
      }}

      config {{
        command = "/bin/sh"
        args = ["-c", "echo \"$VERSION\" > \"$NOMAD_TASK_DIR/index.html\" && {serve}"]
      }}

      resources {{
        cpu    = 50
        memory = 64
      }}
    }}
  }}
}}
"#
    )
}

fn instances(get: impl Fn(&str) -> serde_json::Value, name: &str) -> Vec<serde_json::Value> {
    get(&format!("/v1/service/{name}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the generator has sent `more` further requests (load after the change).
fn keep_loading(gen: &LoadGen, more: u64) -> LoadReport {
    let start = gen.snapshot().requests;
    wait_for("more requests", Duration::from_secs(60), || {
        (gen.snapshot().requests >= start + more).then_some(())
    });
    gen.snapshot()
}

fn assert_no_failures(what: &str, r: &LoadReport) {
    eprintln!(
        "{what}: {} requests in {:.1?}, {} failed; versions served {:?}; {} instance-list reads ({} empty)",
        r.requests, r.elapsed, r.failures, r.bodies, r.refreshes, r.empty_refreshes
    );
    assert!(r.requests > 100, "{what}: too few requests to judge: {r:?}");
    assert_eq!(
        r.failures, 0,
        "{what}: {} of {} requests failed: {:?}",
        r.failures, r.requests, r.failure_samples
    );
}

#[test]
fn a_rolling_update_drops_no_request() {
    let Some(python) = python3() else {
        return;
    };
    let agent = DevAgent::start();
    let get = |p: &str| agent.get_json(p).1;
    let file = agent.dir.path().join("roll.hcl");
    let run = |version: &str| {
        std::fs::write(&file, web_job("roll", 3, version, &python, "")).unwrap();
        let out = agent.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
        assert!(out.status.success(), "job run: {}", stderr(&out));
    };
    run("v1");
    wait_for("3 registered instances", Duration::from_secs(60), || {
        (instances(get, "roll").len() == 3).then_some(())
    });

    let gen = LoadGen::start(&agent.addr(), "roll", "canary", 50);
    keep_loading(&gen, 50);
    run("v2");
    // Done when three instances are registered and every one answers v2.
    wait_for("the update to finish", Duration::from_secs(120), || {
        let list = instances(get, "roll");
        let allocs = get("/v1/job/roll/allocations");
        let live_old = allocs.as_array()?.iter().any(|a| {
            a["DesiredStatus"] == "run"
                && a["ClientStatus"] != "complete"
                && a["JobVersion"].as_u64() == Some(0)
        });
        (list.len() == 3 && !live_old).then_some(())
    });
    let report = keep_loading(&gen, 100);
    let report = LoadReport {
        elapsed: report.elapsed,
        ..gen.finish()
    };
    assert_no_failures("rolling update (count 3, max_parallel 1)", &report);
    assert!(report.bodies.contains_key("v1") && report.bodies.contains_key("v2"));
}

#[test]
fn draining_the_node_of_two_instances_drops_no_request() {
    let Some(python) = python3() else {
        return;
    };
    let cluster = Cluster::start(HEAL);
    let _clients = cluster.start_clients(2);
    let node_id = |name: &str| {
        cluster
            .get("/v1/nodes")
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["Name"] == name)
            .map(|n| n["ID"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (c1, c2) = (node_id("c1"), node_id("c2"));
    // Both instances on c1: c2 opens once they run there.
    assert!(cluster
        .cli(&["node", "eligibility", "-disable", &c2])
        .status
        .success());
    let migrate = r#"migrate {
      max_parallel     = 1
      min_healthy_time = "2s"
      healthy_deadline = "1m"
    }"#;
    run_job(
        &cluster,
        "drainweb",
        &web_job("drainweb", 2, "v1", &python, migrate),
    );
    let get = |p: &str| cluster.get(p);
    wait_for("2 registered instances", Duration::from_secs(60), || {
        (instances(get, "drainweb").len() == 2).then_some(())
    });
    assert!(instances(get, "drainweb")
        .iter()
        .all(|i| i["NodeID"] == c1.as_str()));
    assert!(cluster
        .cli(&["node", "eligibility", "-enable", &c2])
        .status
        .success());

    let gen = LoadGen::start(&cluster.any_http(), "drainweb", "canary", 50);
    keep_loading(&gen, 50);
    let out = cluster.cli(&["node", "drain", "-enable", "-deadline", "2m", "-yes", &c1]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_for("both instances on c2", Duration::from_secs(60), || {
        let list = instances(get, "drainweb");
        (list.len() == 2 && list.iter().all(|i| i["NodeID"] == c2.as_str())).then_some(())
    });
    keep_loading(&gen, 100);
    let report = gen.finish();
    assert_no_failures("drain of a node running both instances", &report);
}

/// The tags of a listed instance.
fn tags(i: &serde_json::Value) -> Vec<String> {
    i["Tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `/v1/service/<name>` back to back (about every 10 ms) in a thread and records
/// what each successful read says of the instance `id`: its tags, or `None` when it is
/// not listed. Stops when [`InstanceWatch::finish`] is called.
struct InstanceWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<Vec<String>>>>>,
    handle: std::thread::JoinHandle<()>,
}

impl InstanceWatch {
    fn start(api: String, service: String, id: String) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, out) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            while !flag.load(Ordering::Relaxed) {
                let read = client
                    .get(format!("{api}/v1/service/{service}"))
                    .send()
                    .ok()
                    .and_then(|r| r.json::<serde_json::Value>().ok());
                if let Some(list) = read.as_ref().and_then(|v| v.as_array()) {
                    let it = list.iter().find(|i| i["ID"] == id.as_str()).map(tags);
                    out.lock().unwrap().push(it);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        InstanceWatch { stop, seen, handle }
    }

    fn readings(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn finish(self) -> Vec<Option<Vec<String>>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.handle.join();
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}

/// The job's deployment of `version` (its latest one), once it exists.
fn deployment_of(
    get: impl Fn(&str) -> serde_json::Value,
    job: &str,
    version: u64,
) -> Option<serde_json::Value> {
    get(&format!("/v1/job/{job}/deployments"))
        .as_array()?
        .iter()
        .filter(|d| d["JobVersion"].as_u64() == Some(version))
        .max_by_key(|d| d["CreateIndex"].as_u64())
        .cloned()
}

/// Runs `count` v1 instances with `update`, starts the load, runs v2 and waits for the
/// canaries (`canaries` of them, tagged "canary") to be healthy; then promotes with
/// `drover deployment promote` while watching one canary's registration, waits for the
/// rollout to finish, and checks no request failed and the tags switched in place.
fn canary_rollout(name: &str, count: usize, canaries: usize, update: &str) {
    let Some(python) = python3() else {
        return;
    };
    let agent = DevAgent::start();
    let get = |p: &str| agent.get_json(p).1;
    let file = agent.dir.path().join(format!("{name}.hcl"));
    let run = |version: &str| {
        let hcl = web_job_with(name, count, version, &python, "", update, true);
        std::fs::write(&file, hcl).unwrap();
        let out = agent.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
        assert!(out.status.success(), "job run: {}", stderr(&out));
    };
    run("v1");
    wait_for("the v1 instances", Duration::from_secs(60), || {
        (instances(get, name).len() == count).then_some(())
    });
    let gen = LoadGen::start(&agent.addr(), name, "canary", 50);
    keep_loading(&gen, 50);
    run("v2");
    // The canaries register with their canary_tags beside the v1 instances.
    let canary_ids = wait_for(
        "the canaries' registrations",
        Duration::from_secs(90),
        || {
            let list = instances(get, name);
            let ids: Vec<String> = list
                .iter()
                .filter(|i| tags(i) == ["canary"])
                .map(|i| i["ID"].as_str().unwrap_or_default().to_string())
                .collect();
            (list.len() == count + canaries && ids.len() == canaries).then_some(ids)
        },
    );
    let dep = wait_for("healthy canaries", Duration::from_secs(60), || {
        let d = deployment_of(get, name, 1)?;
        let g = &d["TaskGroups"]["web"];
        (g["HealthyAllocs"].as_u64() >= Some(canaries as u64)).then_some(d)
    });
    assert_eq!(dep["Status"], "running", "{dep}");
    assert_eq!(
        dep["TaskGroups"]["web"]["DesiredCanaries"], canaries,
        "{dep}"
    );
    let dep_id = dep["ID"].as_str().unwrap().to_string();

    let watched = canary_ids[0].clone();
    let watch = InstanceWatch::start(agent.addr(), name.to_string(), watched.clone());
    wait_for(
        "the watcher's first readings",
        Duration::from_secs(10),
        || (watch.readings() >= 3).then_some(()),
    );
    let promoted_at = std::time::Instant::now();
    let out = agent.cli(&["deployment", "promote", &dep_id]);
    assert!(
        out.status.success(),
        "promote: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let switched = wait_for(
        "the canary's tags to switch",
        Duration::from_secs(30),
        || {
            let list = instances(get, name);
            let i = list.iter().find(|i| i["ID"] == watched.as_str())?;
            (tags(i) == ["live"]).then(|| promoted_at.elapsed())
        },
    );
    // Done when `count` instances are registered, all live, and no v1 allocation runs.
    wait_for("the rollout to finish", Duration::from_secs(120), || {
        let list = instances(get, name);
        let allocs = get(&format!("/v1/job/{name}/allocations"));
        let live_old = allocs.as_array()?.iter().any(|a| {
            a["DesiredStatus"] == "run"
                && a["ClientStatus"] != "complete"
                && a["JobVersion"].as_u64() == Some(0)
        });
        let all_live = list.iter().all(|i| tags(i) == ["live"]);
        (list.len() == count && all_live && !live_old).then_some(())
    });
    let seen = watch.finish();
    let first = seen.iter().position(Option::is_some);
    let from_first = &seen[first.unwrap_or(0)..];
    let mut phases: Vec<&Vec<String>> = from_first.iter().flatten().collect();
    phases.dedup();
    eprintln!(
        "{name}: promotion switched {watched} from canary_tags to tags in {switched:.1?}; \
         {} readings of /v1/service/{name}, {} without it",
        seen.len(),
        from_first.iter().filter(|s| s.is_none()).count()
    );
    assert!(
        from_first.iter().all(Option::is_some),
        "the canary's registration disappeared during promotion: {seen:?}"
    );
    assert_eq!(
        phases,
        [&vec!["canary".to_string()], &vec!["live".to_string()]],
        "tags seen for {watched}"
    );
    assert!(
        instances(get, name)
            .iter()
            .any(|i| i["ID"] == watched.as_str()),
        "the promoted canary kept its registration"
    );
    let report = keep_loading(&gen, 100);
    let report = LoadReport {
        elapsed: report.elapsed,
        ..gen.finish()
    };
    assert_no_failures(
        &format!("{name}: canary {canaries} of {count}, then promote"),
        &report,
    );
    assert!(report.bodies.contains_key("v1") && report.bodies.contains_key("v2"));
}

#[test]
fn a_canary_then_promote_drops_no_request_and_switches_tags_in_place() {
    let update = r#"max_parallel     = 1
    canary           = 1
    min_healthy_time = "2s"
    healthy_deadline = "1m""#;
    canary_rollout("can", 3, 1, update);
}

#[test]
fn a_blue_green_promote_drops_no_request() {
    let update = r#"max_parallel     = 3
    canary           = 3
    min_healthy_time = "2s"
    healthy_deadline = "1m""#;
    canary_rollout("bluegreen", 3, 3, update);
}

#[test]
fn an_auto_revert_of_a_version_whose_check_fails_drops_no_request() {
    let Some(python) = python3() else {
        return;
    };
    let agent = DevAgent::start();
    let get = |p: &str| agent.get_json(p).1;
    let file = agent.dir.path().join("rev.hcl");
    let update = r#"max_parallel      = 1
    min_healthy_time  = "2s"
    healthy_deadline  = "6s"
    progress_deadline = "15s"
    auto_revert       = true"#;
    let run = |version: &str, listen: bool| {
        let hcl = web_job_with("rev", 3, version, &python, "", update, listen);
        std::fs::write(&file, hcl).unwrap();
        let out = agent.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
        assert!(out.status.success(), "job run: {}", stderr(&out));
    };
    run("v1", true);
    // Version 0 becomes stable when its deployment succeeds: the revert's target.
    wait_for("version 0 to be stable", Duration::from_secs(90), || {
        let d = deployment_of(get, "rev", 0)?;
        (d["Status"] == "successful" && instances(get, "rev").len() == 3).then_some(())
    });
    let gen = LoadGen::start(&agent.addr(), "rev", "canary", 50);
    keep_loading(&gen, 50);
    let started = std::time::Instant::now();
    // Version 1 never listens: its check fails, the allocation turns unhealthy.
    run("v2", false);
    let failed = wait_for(
        "version 1's deployment to fail",
        Duration::from_secs(90),
        || {
            let d = deployment_of(get, "rev", 1)?;
            (d["Status"] == "failed").then_some(d)
        },
    );
    let failed_after = started.elapsed();
    assert!(
        failed["StatusDescription"]
            .as_str()
            .unwrap_or_default()
            .ends_with("rolling back to job version 0"),
        "{failed}"
    );
    // The revert registered version 0's spec as version 2, which rolls out.
    let healthy = |a: &&serde_json::Value| {
        a["DesiredStatus"] == "run"
            && a["ClientStatus"] == "running"
            && a["DeploymentStatus"]["Healthy"] == true
    };
    wait_for("3 healthy v1 instances", Duration::from_secs(120), || {
        let job = get("/v1/job/rev");
        (job["Version"] == 2).then_some(())?;
        let d = deployment_of(get, "rev", 2)?;
        let allocs = get("/v1/job/rev/allocations");
        let allocs = allocs.as_array()?;
        let live_v2 = allocs
            .iter()
            .filter(healthy)
            .filter(|a| a["JobVersion"] == 2)
            .count();
        let others = allocs
            .iter()
            .filter(|a| a["DesiredStatus"] == "run" && a["JobVersion"] != 2)
            .filter(|a| a["ClientStatus"] != "complete")
            .count();
        (d["Status"] == "successful"
            && live_v2 == 3
            && others == 0
            && instances(get, "rev").len() == 3)
            .then_some(())
    });
    let reverted_after = started.elapsed();
    let (_, job) = agent.get_json("/v1/job/rev");
    let env = &job["TaskGroups"][0]["Tasks"][0]["Env"]["VERSION"];
    assert_eq!(env, "v1", "the reverted job runs version 0's spec: {job}");
    let report = keep_loading(&gen, 100);
    let report = LoadReport {
        elapsed: report.elapsed,
        ..gen.finish()
    };
    eprintln!(
        "auto-revert: deployment failed {failed_after:.1?} after `job run` ({}); \
         3 healthy v1 instances {reverted_after:.1?} after",
        failed["StatusDescription"]
    );
    assert_no_failures("auto-revert of a version whose check fails", &report);
    assert_eq!(
        report.bodies.keys().collect::<Vec<_>>(),
        ["v1"],
        "only v1 served"
    );
}

/// Gives the operator's healthy verdict (`/v1/deployment/allocation-health`) to each
/// running allocation of `job`'s deployment of `version` once its instance has been
/// listed for 3 s, until the deployment succeeds. Panics if an allocation turns healthy
/// without that verdict (`health_check = "manual"`: the client gives none). Returns how
/// many verdicts were given.
fn approve_until_successful(agent: &DevAgent, job: &str, version: u64) -> usize {
    let get = |p: &str| agent.get_json(p).1;
    let mut listed_since = std::collections::BTreeMap::<String, std::time::Instant>::new();
    let mut approved = std::collections::BTreeSet::<String>::new();
    let client = reqwest::blocking::Client::new();
    wait_for(
        "the operator's verdicts to finish the deployment",
        Duration::from_secs(120),
        || {
            let d = deployment_of(get, job, version)?;
            if d["Status"] == "successful" {
                return Some(approved.len());
            }
            assert_eq!(d["Status"], "running", "{d}");
            let dep_id = d["ID"].as_str()?.to_string();
            for i in instances(get, job) {
                let alloc = i["AllocID"].as_str().unwrap_or_default().to_string();
                listed_since
                    .entry(alloc)
                    .or_insert_with(std::time::Instant::now);
            }
            let allocs = get(&format!("/v1/job/{job}/allocations"));
            for a in allocs.as_array()? {
                let id = a["ID"].as_str().unwrap_or_default().to_string();
                if a["DeploymentID"] != dep_id.as_str() || a["DesiredStatus"] != "run" {
                    continue;
                }
                let healthy = &a["DeploymentStatus"]["Healthy"];
                assert!(
                    *healthy != true || approved.contains(&id),
                    "{id} turned healthy without the operator's verdict: {a}"
                );
                let ready = listed_since
                    .get(&id)
                    .is_some_and(|t| t.elapsed() >= Duration::from_secs(3));
                if healthy.is_null() && a["ClientStatus"] == "running" && ready {
                    let r = client
                        .post(format!(
                            "{}/v1/deployment/allocation-health/{dep_id}",
                            agent.addr()
                        ))
                        .json(&serde_json::json!({
                            "DeploymentID": dep_id,
                            "HealthyAllocationIDs": [id],
                        }))
                        .send()
                        .ok()?;
                    assert!(r.status().is_success(), "allocation-health: {:?}", r.text());
                    approved.insert(id);
                }
            }
            None
        },
    )
}

#[test]
fn a_rollout_with_manual_health_waits_for_the_operator_and_drops_no_request() {
    let Some(python) = python3() else {
        return;
    };
    let agent = DevAgent::start();
    let file = agent.dir.path().join("manual.hcl");
    let update = r#"max_parallel     = 1
    health_check     = "manual"
    min_healthy_time = "1s"
    healthy_deadline = "1m""#;
    let run = |version: &str| {
        let hcl = web_job_with("manual", 2, version, &python, "", update, true);
        std::fs::write(&file, hcl).unwrap();
        let out = agent.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
        assert!(out.status.success(), "job run: {}", stderr(&out));
    };
    run("v1");
    let first = approve_until_successful(&agent, "manual", 0);
    let gen = LoadGen::start(&agent.addr(), "manual", "canary", 50);
    keep_loading(&gen, 50);
    let started = std::time::Instant::now();
    run("v2");
    let second = approve_until_successful(&agent, "manual", 1);
    let took = started.elapsed();
    let report = keep_loading(&gen, 100);
    let report = LoadReport {
        elapsed: report.elapsed,
        ..gen.finish()
    };
    eprintln!(
        "manual health: {first} + {second} operator verdicts; the v2 rollout took {took:.1?}"
    );
    assert_eq!((first, second), (2, 2));
    assert_no_failures("rolling update with manual health", &report);
    assert!(report.bodies.contains_key("v2"));
}
