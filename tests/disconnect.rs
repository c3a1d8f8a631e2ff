//! Disconnected clients (`max_client_disconnect`) on a real cluster: three servers and
//! three client agents, each its own process. A client agent is frozen with SIGSTOP, which
//! looks to the servers like a network partition: it stops heartbeating while its tasks
//! keep running. SIGCONT brings it back.
//!
//! Built for a slow, shared machine: every wait is on a state the servers report, with a
//! generous deadline, and no check depends on how long a step took. The heartbeat TTL is
//! long enough that a client that is merely slow is not taken for a disconnected one.

mod common;

use common::cluster::{allocs, run_job, running, service_job, ClientProc, Cluster};
use common::wait_for;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const COUNT: usize = 6;

/// Heartbeats short enough to notice a frozen client in seconds, long enough that the
/// clients left running keep up on a loaded machine.
const TIMINGS: &[(&str, &str)] = &[
    ("DROVER_HEARTBEAT_TTL_MS", "3000"),
    ("DROVER_HEARTBEAT_GRACE_MS", "2000"),
];

/// Upper bound for any one step (a status change, a re-placement); only reached on failure.
const STEP: Duration = Duration::from_secs(90);

/// The node's event messages, oldest first.
fn node_events(cluster: &Cluster, name: &str) -> Vec<String> {
    node(cluster, name)["Events"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| e["Message"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn job_with_window(name: &str, window: &str) -> String {
    service_job(
        name,
        COUNT,
        &format!("max_client_disconnect = \"{window}\""),
    )
}

/// Allocations the servers count on: wanted, and not finished, failed or lost.
fn live(allocs: &[Value]) -> Vec<&Value> {
    allocs
        .iter()
        .filter(|a| a["DesiredStatus"] == "run")
        .filter(|a| {
            !matches!(
                a["ClientStatus"].as_str(),
                Some("complete" | "failed" | "lost")
            )
        })
        .collect()
}

fn on_node<'a>(allocs: &'a [Value], node: &str) -> Vec<&'a Value> {
    allocs.iter().filter(|a| a["NodeName"] == node).collect()
}

fn node(cluster: &Cluster, name: &str) -> Value {
    let nodes = cluster.get("/v1/nodes");
    let id = nodes
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["Name"] == name))
        .and_then(|n| n["ID"].as_str())
        .unwrap_or_else(|| panic!("node {name} not found in {nodes}"))
        .to_string();
    cluster.get(&format!("/v1/node/{id}"))
}

fn wait_node_status(cluster: &Cluster, name: &str, status: &str, timeout: Duration) {
    wait_for(&format!("node {name} to be {status}"), timeout, || {
        (node(cluster, name)["Status"] == status).then_some(())
    });
}

/// The pid of a client agent process, found by its data dir on its command line.
fn agent_pid(client: &ClientProc) -> i32 {
    let data_dir = client.data_dir();
    let data_dir = data_dir.to_string_lossy();
    let found = std::fs::read_dir("/proc").ok().and_then(|entries| {
        entries.flatten().find_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_agent = args.iter().any(|a| *a == b"agent")
                && args.iter().any(|a| *a == data_dir.as_bytes());
            is_agent.then_some(pid)
        })
    });
    found.unwrap_or_else(|| panic!("no agent process for client {}", client.name))
}

/// A client agent frozen with SIGSTOP; it is thawed when this drops, even on a failed
/// assertion (the ClientProc's own drop then kills it as usual).
struct Frozen(i32);

impl Frozen {
    fn stop(client: &ClientProc) -> Frozen {
        let pid = agent_pid(client);
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGSTOP) },
            0,
            "SIGSTOP {pid}"
        );
        Frozen(pid)
    }

    fn resume(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0, libc::SIGCONT);
        }
    }
}

/// Runs the job on three clients and returns the name of the node running the most of its
/// allocations (but not all of them), with those allocations' IDs.
fn start(cluster: &Cluster, job: &str, window: &str) -> (String, BTreeSet<String>) {
    run_job(cluster, job, &job_with_window(job, window));
    let placed = wait_for("all allocations running", STEP, || {
        let a = allocs(cluster, job);
        (running(&a).len() == COUNT).then_some(a)
    });
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for a in &placed {
        *per_node
            .entry(a["NodeName"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let (victim, n) = per_node.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(*n < COUNT, "all allocations on one node: {per_node:?}");
    let ids = on_node(&placed, victim)
        .iter()
        .map(|a| a["ID"].as_str().unwrap().to_string())
        .collect();
    (victim.clone(), ids)
}

fn client<'a>(clients: &'a [ClientProc], name: &str) -> &'a ClientProc {
    clients.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn a_client_back_within_max_client_disconnect_keeps_its_allocs_and_replacements_stop() {
    let cluster = Cluster::start(TIMINGS);
    let clients = cluster.start_clients(3);
    // A window far longer than the test needs: it ends by the client coming back, and
    // whether that was in time is read from the node's events, not from a stopwatch.
    let (victim, originals) = start(&cluster, "partition", "10m");
    let victim_client = client(&clients, &victim);
    let task_pids = victim_client.task_pids();
    assert!(!task_pids.is_empty());

    let frozen = Frozen::stop(victim_client);
    wait_node_status(&cluster, &victim, "disconnected", STEP);
    // Its allocations are unknown, not lost, and replacements run elsewhere.
    wait_for(
        "unknown allocs and the count running elsewhere",
        STEP,
        || {
            let a = allocs(&cluster, "partition");
            let unknown: BTreeSet<String> = a
                .iter()
                .filter(|a| a["ClientStatus"] == "unknown" && a["DesiredStatus"] == "run")
                .map(|a| a["ID"].as_str().unwrap().to_string())
                .collect();
            let elsewhere = running(&a)
                .iter()
                .filter(|a| a["NodeName"] != victim.as_str())
                .count();
            (unknown == originals && elsewhere == COUNT).then_some(())
        },
    );
    assert!(
        task_pids.iter().all(|p| common::pid_alive(*p)),
        "the disconnected client's tasks keep running"
    );

    // Back within the window: the originals are kept, the replacements stopped.
    frozen.resume();
    wait_node_status(&cluster, &victim, "ready", STEP);
    let events = node_events(&cluster, &victim);
    assert!(
        !events.iter().any(|m| m.contains("did not reconnect")),
        "the node was taken down although it came back within its window: {events:?}"
    );
    let settled = wait_for(
        "the originals running and exactly the count live",
        STEP,
        || {
            let a = allocs(&cluster, "partition");
            let originals_running = running(&a)
                .iter()
                .filter(|a| originals.contains(a["ID"].as_str().unwrap()))
                .count();
            (originals_running == originals.len() && live(&a).len() == COUNT).then_some(a)
        },
    );
    let stopped_replacements = settled
        .iter()
        .filter(|a| a["DesiredStatus"] == "stop" && a["NodeName"] != victim.as_str())
        .filter(|a| {
            a["DesiredDescription"]
                .as_str()
                .is_some_and(|d| d.contains("reconnected"))
        })
        .count();
    assert_eq!(stopped_replacements, originals.len(), "{settled:#?}");
    assert!(task_pids.iter().all(|p| common::pid_alive(*p)));

    // And it stays that way once the replacements' clients have stopped them.
    let replacements: BTreeSet<String> = settled
        .iter()
        .filter(|a| a["DesiredStatus"] == "stop" && a["NodeName"] != victim.as_str())
        .map(|a| a["ID"].as_str().unwrap().to_string())
        .collect();
    let a = wait_for("the replacements stopped on their clients", STEP, || {
        let a = allocs(&cluster, "partition");
        a.iter()
            .filter(|a| replacements.contains(a["ID"].as_str().unwrap()))
            .all(|a| matches!(a["ClientStatus"].as_str(), Some("complete" | "failed")))
            .then_some(a)
    });
    assert_eq!(running(&a).len(), COUNT, "{a:#?}");
    assert_eq!(live(&a).len(), COUNT, "{a:#?}");
    assert_eq!(node(&cluster, &victim)["Status"], "ready");
}

#[test]
fn a_client_away_past_max_client_disconnect_goes_down_and_its_allocs_are_lost() {
    let cluster = Cluster::start(TIMINGS);
    let clients = cluster.start_clients(3);
    let (victim, originals) = start(&cluster, "away", "3s");
    let victim_client = client(&clients, &victim);
    let task_pids = victim_client.task_pids();
    assert!(!task_pids.is_empty());

    let frozen = Frozen::stop(victim_client);
    wait_node_status(&cluster, &victim, "down", STEP);
    let a = wait_for(
        "the originals lost and the count running elsewhere",
        STEP,
        || {
            let a = allocs(&cluster, "away");
            let lost = a
                .iter()
                .filter(|a| originals.contains(a["ID"].as_str().unwrap()))
                .all(|a| a["ClientStatus"] == "lost" && a["DesiredStatus"] == "stop");
            (lost && running(&a).len() == COUNT).then_some(a)
        },
    );
    assert!(running(&a).iter().all(|a| a["NodeName"] != victim.as_str()));
    // It was disconnected first, then down when the window ended.
    let events = node_events(&cluster, &victim);
    let disconnected = events.iter().position(|m| m.contains("disconnected"));
    let down = events.iter().position(|m| m.contains("did not reconnect"));
    assert!(
        matches!((disconnected, down), (Some(d), Some(w)) if d < w),
        "{events:?}"
    );

    // When it does come back, its stale copies are stopped; the count stays.
    frozen.resume();
    wait_node_status(&cluster, &victim, "ready", STEP);
    wait_for("the stale copies to stop", STEP, || {
        task_pids
            .iter()
            .all(|p| !common::pid_alive(*p))
            .then_some(())
    });
    let a = allocs(&cluster, "away");
    assert_eq!(running(&a).len(), COUNT, "{a:#?}");
    assert_eq!(live(&a).len(), COUNT, "{a:#?}");
}

#[test]
fn a_disconnect_window_still_ends_after_a_leader_failover() {
    let mut cluster = Cluster::start(TIMINGS);
    let clients = cluster.start_clients(3);
    // Long enough for the failover below to finish inside the window on a slow machine.
    let window = Duration::from_secs(20);
    let (victim, originals) = start(&cluster, "failover", "20s");
    let frozen = Frozen::stop(client(&clients, &victim));
    let frozen_at = Instant::now();
    wait_node_status(&cluster, &victim, "disconnected", STEP);

    // The leader that marked it disconnected dies; the window lives in the state.
    let leader = cluster.wait_leader(STEP);
    cluster.servers[leader].kill9();
    cluster.wait_leader(STEP);
    wait_node_status(&cluster, &victim, "down", STEP);
    // A lower bound only: the window started after the freeze, so this cannot flake.
    assert!(
        frozen_at.elapsed() >= window,
        "down {:?} after SIGSTOP, before the {window:?} window ended",
        frozen_at.elapsed()
    );
    wait_for(
        "the originals lost and the count running elsewhere",
        STEP,
        || {
            let a = allocs(&cluster, "failover");
            let lost = a
                .iter()
                .filter(|a| originals.contains(a["ID"].as_str().unwrap()))
                .all(|a| a["ClientStatus"] == "lost");
            (lost && running(&a).len() == COUNT).then_some(())
        },
    );
    drop(frozen);
}
