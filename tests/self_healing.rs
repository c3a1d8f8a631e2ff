//! Self-healing and node drain on a real cluster: three servers and three client agents,
//! each its own process.

mod common;

use common::cluster::{allocs, run_job, running, service_job, ClientProc, Cluster, HEAL};
use common::wait_for;
use serde_json::Value;
use std::time::{Duration, Instant};

fn client_named<'a>(clients: &'a mut [ClientProc], name: &str) -> &'a mut ClientProc {
    clients.iter_mut().find(|c| c.name == name).unwrap()
}

#[test]
fn killed_client_is_replaced_and_its_stale_copies_stop_when_it_returns() {
    let cluster = Cluster::start(HEAL);
    let mut clients = cluster.start_clients(3);
    run_job(&cluster, "heal", &service_job("heal", 6, ""));
    let placed = wait_for("6 running allocations", Duration::from_secs(60), || {
        let a = allocs(&cluster, "heal");
        (running(&a).len() == 6).then_some(a)
    });
    // The node with the most allocations dies.
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for a in &placed {
        *per_node
            .entry(a["NodeName"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let (victim, n) = per_node.iter().max_by_key(|(_, n)| **n).unwrap();
    let victim = victim.clone();
    assert!(
        *n < 6,
        "all allocations were stacked on one node: {per_node:?}"
    );
    let stale_pids = client_named(&mut clients, &victim).task_pids();
    assert!(!stale_pids.is_empty());
    client_named(&mut clients, &victim).kill9();
    let killed = Instant::now();

    // Within TTL + scheduling time the job is back to its count on the other nodes.
    wait_for(
        "the count restored elsewhere",
        Duration::from_secs(60),
        || {
            let a = allocs(&cluster, "heal");
            let elsewhere = running(&a)
                .iter()
                .filter(|a| a["NodeName"] != victim.as_str())
                .count();
            (elsewhere == 6).then_some(())
        },
    );
    eprintln!(
        "count restored {:?} after the client was killed",
        killed.elapsed()
    );
    let a = allocs(&cluster, "heal");
    let lost = a
        .iter()
        .filter(|a| a["NodeName"] == victim.as_str() && a["ClientStatus"] == "lost")
        .count();
    assert_eq!(lost, *n, "the dead node's allocations are lost");

    // The client comes back: the copies it left running are stopped; the count stays 6.
    client_named(&mut clients, &victim).spawn();
    wait_for("the stale copies to stop", Duration::from_secs(60), || {
        stale_pids
            .iter()
            .all(|p| !common::pid_alive(*p))
            .then_some(())
    });
    let a = allocs(&cluster, "heal");
    assert_eq!(running(&a).len(), 6, "{a:#?}");
    assert!(running(&a).iter().all(|a| a["NodeName"] != victim.as_str()));
}

#[test]
fn a_task_failing_forever_restarts_then_reschedules_with_growing_delays_then_fails() {
    let cluster = Cluster::start(HEAL);
    let _clients = cluster.start_clients(2);
    run_job(
        &cluster,
        "flaky",
        r#"
job "flaky" {
  type = "batch"
  group "g" {
    restart {
      attempts = 1
      delay    = "100ms"
      interval = "1h"
      mode     = "fail"
    }
    reschedule {
      attempts       = 2
      interval       = "1h"
      delay          = "1s"
      delay_function = "exponential"
      max_delay      = "10s"
      unlimited      = false
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "exit 3"]
      }
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"#,
    );
    let chain = wait_for("three failed allocations", Duration::from_secs(60), || {
        let a = allocs(&cluster, "flaky");
        let failed = a.iter().filter(|a| a["ClientStatus"] == "failed").count();
        (failed == 3).then_some(a)
    });
    for a in &chain {
        assert_eq!(
            a["TaskStates"]["t"]["Restarts"], 1,
            "restarted once per policy: {a:#}"
        );
        assert_eq!(a["TaskStates"]["t"]["Failed"], true);
    }
    // The last replacement carries the whole chain.
    let tracked = chain
        .iter()
        .map(|a| {
            let id = a["ID"].as_str().unwrap();
            cluster.get(&format!("/v1/allocation/{id}"))["RescheduleTracker"]["Events"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
        })
        .max();
    assert_eq!(tracked, Some(2));
    let mut created: Vec<i64> = chain
        .iter()
        .map(|a| a["CreateTime"].as_i64().unwrap())
        .collect();
    created.sort();
    let (d1, d2) = (created[1] - created[0], created[2] - created[1]);
    assert!(
        d1 >= 1_000_000_000,
        "first reschedule waited its delay: {d1}ns"
    );
    assert!(d2 > d1, "delays grow: {d1}ns then {d2}ns");
    // The follow-up evaluations waited, visibly.
    let evals = cluster.get("/v1/job/flaky/evaluations");
    assert!(
        evals
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["WaitUntil"].as_i64().unwrap_or(0) > 0),
        "{evals:#}"
    );
    // Attempts exhausted: the job is dead, which a batch job only is once none of its
    // evaluations is pending (a delayed reschedule is a pending eval with a WaitUntil),
    // so the scheduler has settled; it placed nothing more.
    wait_for("the job to be dead", Duration::from_secs(20), || {
        (cluster.get("/v1/job/flaky")["Status"] == "dead").then_some(())
    });
    let evals: Vec<api::Evaluation> =
        serde_json::from_value(cluster.get("/v1/job/flaky/evaluations")).unwrap();
    let unsettled: Vec<_> = evals.iter().filter(|e| !e.terminal()).collect();
    assert!(
        unsettled.is_empty(),
        "evaluations still to run: {unsettled:#?}"
    );
    assert_eq!(allocs(&cluster, "flaky").len(), 3);
}

fn healthy(a: &Value) -> bool {
    a["ClientStatus"] == "running"
        && a["DesiredStatus"] == "run"
        && a["DeploymentStatus"]["Healthy"] == true
}

/// Put 6 allocations of a count-9 job on c1 and 3 on the others, all healthy.
fn nine_with_six_on_c1(cluster: &Cluster, job: &str, migrate: &str) -> String {
    let c1 = six_on_c1_then_open_the_others(cluster, job, migrate);
    run_job(cluster, job, &service_job(job, 9, migrate));
    wait_for("9 healthy allocations", Duration::from_secs(60), || {
        let a = allocs(cluster, job);
        (a.iter().filter(|a| healthy(a)).count() == 9).then_some(())
    });
    let on_c1 = running(&allocs(cluster, job))
        .iter()
        .filter(|a| a["NodeID"] == c1.as_str())
        .count();
    assert_eq!(on_c1, 6);
    c1
}

/// Samples health through blocking queries until told to stop; returns the minimum seen.
fn watch_min_healthy(
    addr: String,
    job: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let c = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut index = 0u64;
        let mut min = usize::MAX;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok(r) = c
                .get(format!(
                    "{addr}/v1/job/{job}/allocations?index={index}&wait=2s"
                ))
                .send()
            else {
                continue;
            };
            index = r
                .headers()
                .get("X-Nomad-Index")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(index);
            if let Ok(v) = r.json::<Value>() {
                let n = v.as_array().unwrap().iter().filter(|a| healthy(a)).count();
                min = min.min(n);
            }
        }
        min
    })
}

const MIGRATE: &str = r#"migrate {
      max_parallel     = 2
      min_healthy_time = "1s"
      healthy_deadline = "1m"
    }"#;

#[test]
fn drain_migrates_two_at_a_time_keeping_seven_healthy_and_finishes_before_its_deadline() {
    let cluster = Cluster::start(HEAL);
    let _clients = cluster.start_clients(3);
    let c1 = nine_with_six_on_c1(&cluster, "web", MIGRATE);
    let before: Vec<String> = running(&allocs(&cluster, "web"))
        .iter()
        .filter(|a| a["NodeID"] == c1.as_str())
        .map(|a| a["ID"].as_str().unwrap().to_string())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_min_healthy(cluster.any_http(), "web".into(), stop.clone());
    let started = Instant::now();
    let out = cluster.cli(&["node", "drain", "-enable", "-deadline", "2m", "-yes", &c1]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("have stopped"), "{text}");
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let min = watcher.join().unwrap();
    eprintln!("drained 6 allocs (max_parallel 2) in {took:?}; min healthy {min}");
    assert!(min >= 7, "only {min} healthy at some instant");
    assert!(took < Duration::from_secs(120));
    let a = allocs(&cluster, "web");
    assert_eq!(running(&a).len(), 9);
    assert!(running(&a).iter().all(|a| a["NodeID"] != c1.as_str()));
    for id in before {
        let old = a.iter().find(|a| a["ID"] == id.as_str()).unwrap();
        assert_eq!(old["ClientStatus"], "complete", "{old:#}");
    }
    let node = cluster.get(&format!("/v1/node/{c1}"));
    assert_eq!(node["Drain"], false);
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    assert_eq!(node["LastDrain"]["Status"], "complete");
}

#[test]
fn drain_deadline_force_stops_what_is_left() {
    let cluster = Cluster::start(HEAL);
    let _clients = cluster.start_clients(3);
    // Replacements take 30s to count as healthy: the drain cannot finish by itself in time.
    let slow = r#"migrate {
      max_parallel     = 1
      min_healthy_time = "30s"
    }"#;
    let c1 = six_on_c1_then_open_the_others(&cluster, "slow", slow);
    let started = Instant::now();
    let out = cluster.cli(&["node", "drain", "-enable", "-deadline", "3s", "-yes", &c1]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = started.elapsed();
    eprintln!("drain with a 3s deadline finished in {took:?}");
    assert!(
        took >= Duration::from_secs(3),
        "finished before its deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(25),
        "the deadline did not force the rest: {took:?}"
    );
    let a = allocs(&cluster, "slow");
    assert!(running(&a).iter().all(|a| a["NodeID"] != c1.as_str()));
}

/// Run 6 allocations of `job` on c1 alone, then let c2 and c3 take work again.
fn six_on_c1_then_open_the_others(cluster: &Cluster, job: &str, migrate: &str) -> String {
    let c1 = cluster.node_id("c1");
    for other in ["c2", "c3"] {
        let id = cluster.node_id(other);
        assert!(cluster
            .cli(&["node", "eligibility", "-disable", &id])
            .status
            .success());
    }
    run_job(cluster, job, &service_job(job, 6, migrate));
    wait_for("6 allocations on c1", Duration::from_secs(60), || {
        (running(&allocs(cluster, job)).len() == 6).then_some(())
    });
    for other in ["c2", "c3"] {
        let id = cluster.node_id(other);
        assert!(cluster
            .cli(&["node", "eligibility", "-enable", &id])
            .status
            .success());
    }
    c1
}

#[test]
fn killing_the_leader_mid_drain_does_not_stop_the_drain() {
    let mut cluster = Cluster::start(HEAL);
    let _clients = cluster.start_clients(3);
    let c1 = nine_with_six_on_c1(&cluster, "api", MIGRATE);
    let out = cluster.cli(&[
        "node",
        "drain",
        "-enable",
        "-deadline",
        "2m",
        "-detach",
        "-yes",
        &c1,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Once the first allocations have moved, the leader dies.
    wait_for("the first migrations", Duration::from_secs(60), || {
        let a = allocs(&cluster, "api");
        let moved = a
            .iter()
            .filter(|a| a["NodeID"] == c1.as_str() && a["ClientStatus"] == "complete")
            .count();
        (moved >= 1).then_some(())
    });
    let leader = cluster.wait_leader(Duration::from_secs(10));
    cluster.servers[leader].kill9();
    wait_for(
        "the drain to complete under the new leader",
        Duration::from_secs(90),
        || {
            let n = cluster.get(&format!("/v1/node/{c1}"));
            (n["LastDrain"]["Status"] == "complete").then_some(())
        },
    );
    // The drain is complete once the originals have stopped; the last replacements may
    // still be starting, so wait for them rather than read the count at that instant.
    wait_for(
        "all nine running off the drained node",
        Duration::from_secs(60),
        || {
            let a = allocs(&cluster, "api");
            let live = running(&a);
            (live.len() == 9 && live.iter().all(|a| a["NodeID"] != c1.as_str())).then_some(())
        },
    );
}
