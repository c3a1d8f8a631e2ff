//! Service registrations when a client agent dies: `kill -9` of an agent removes its
//! instances once the servers mark its allocations lost (the replacements elsewhere are
//! registered), and starting the agent again neither duplicates nor resurrects them.

mod common;

use common::cluster::*;
use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// `count` HTTP servers (python3's, on `NOMAD_PORT_http`) behind an HTTP check.
fn job(name: &str, count: usize, python: &str) -> String {
    format!(
        r#"
job "{name}" {{
  type = "service"

  group "web" {{
    count = {count}

    network {{
      port "http" {{}}
    }}

    service {{
      name     = "{name}"
      provider = "nomad"
      port     = "http"
      tags     = ["live"]

      check {{
        type     = "http"
        path     = "/"
        interval = "1s"
        timeout  = "1s"
      }}
    }}

    task "t" {{
      driver       = "raw_exec"
      kill_timeout = "1s"

      config {{
        command = "/bin/sh"
        args    = ["-c", "exec {python} -m http.server \"$NOMAD_PORT_http\" --bind 127.0.0.1 --directory \"$NOMAD_TASK_DIR\""]
      }}

      resources {{
        cpu    = 20
        memory = 32
      }}
    }}
  }}
}}
"#
    )
}

/// `(ID, NodeID, AllocID)` of every listed instance of `name`, or `None` when the list
/// could not be read.
fn listed(cluster: &Cluster, name: &str) -> Option<Vec<(String, String, String)>> {
    let v = cluster.get(&format!("/v1/service/{name}"));
    Some(
        v.as_array()?
            .iter()
            .map(|i| {
                let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
                (s("ID"), s("NodeID"), s("AllocID"))
            })
            .collect(),
    )
}

fn node_id(cluster: &Cluster, name: &str) -> String {
    cluster
        .get("/v1/nodes")
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Name"] == name)
        .map(|n| n["ID"].as_str().unwrap().to_string())
        .unwrap()
}

fn node_status(cluster: &Cluster, id: &str) -> String {
    cluster.get(&format!("/v1/node/{id}"))["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_killed_agents_registrations_go_with_its_lost_allocations_and_do_not_come_back() {
    let Some(python) = python3() else {
        return;
    };
    let cluster = Cluster::start(HEAL);
    let mut clients = cluster.start_clients(2);
    let (c1, c2) = (node_id(&cluster, "c1"), node_id(&cluster, "c2"));
    // Both instances on c1: c2 opens once they are registered there.
    assert!(cluster
        .cli(&["node", "eligibility", "-disable", &c2])
        .status
        .success());
    run_job(&cluster, "faulty", &job("faulty", 2, &python));
    let before = wait_for("2 instances on c1", Duration::from_secs(60), || {
        let l = listed(&cluster, "faulty")?;
        (l.len() == 2 && l.iter().all(|(_, n, _)| *n == c1)).then_some(l)
    });
    let old_allocs: BTreeSet<String> = before.iter().map(|(_, _, a)| a.clone()).collect();
    let old_ids: BTreeSet<String> = before.iter().map(|(i, _, _)| i.clone()).collect();
    assert!(cluster
        .cli(&["node", "eligibility", "-enable", &c2])
        .status
        .success());

    // kill -9 of c1's agent: its tasks run on, but its node misses its heartbeats.
    let killed = Instant::now();
    clients[0].kill9();
    let lost = wait_for(
        "c1's allocations to be lost",
        Duration::from_secs(30),
        || {
            let allocs = allocs(&cluster, "faulty");
            let lost = allocs
                .iter()
                .filter(|a| old_allocs.contains(a["ID"].as_str().unwrap_or_default()))
                .all(|a| a["ClientStatus"] == "lost");
            lost.then(|| killed.elapsed())
        },
    );
    // From the entry that marks them lost, no read lists them.
    let gone = wait_for("c1's registrations to go", Duration::from_secs(5), || {
        let l = listed(&cluster, "faulty")?;
        (!l.iter().any(|(_, n, _)| *n == c1)).then(|| killed.elapsed())
    });
    let replaced = wait_for("2 instances on c2", Duration::from_secs(60), || {
        let l = listed(&cluster, "faulty")?;
        (l.len() == 2 && l.iter().all(|(_, n, _)| *n == c2)).then(|| killed.elapsed())
    });
    eprintln!(
        "kill -9 of c1: allocations lost after {lost:.1?}, its registrations gone after \
         {gone:.1?}, replacements registered on c2 after {replaced:.1?}"
    );
    assert!(
        gone <= lost + Duration::from_secs(2),
        "registrations outlived their lost allocations: lost {lost:?}, gone {gone:?}"
    );
    let after = listed(&cluster, "faulty").unwrap();

    // c1's agent starts again on its data dir: it finds its old tasks, whose allocations
    // are lost; nothing of them is listed again, c2's instances stay as they are.
    let restarted = Instant::now();
    clients[0].spawn();
    let mut reads = 0u64;
    let mut check = |l: &[(String, String, String)]| {
        reads += 1;
        let ids: BTreeSet<&String> = l.iter().map(|(i, _, _)| i).collect();
        assert_eq!(ids.len(), l.len(), "a duplicated registration: {l:?}");
        for (id, node, alloc) in l {
            assert!(
                *node != c1 && !old_allocs.contains(alloc) && !old_ids.contains(id),
                "a resurrected registration after c1's restart: {l:?}"
            );
        }
        assert_eq!(l, after.as_slice(), "c2's instances changed");
    };
    wait_for(
        "c1 to be ready with its old tasks stopped",
        Duration::from_secs(60),
        || {
            if let Some(l) = listed(&cluster, "faulty") {
                check(&l);
            }
            // It restored both allocations from its local state (and so had their
            // registrations to re-send) before the servers told it to stop them.
            let restored = clients[0]
                .log()
                .matches("restoring allocation from local state")
                .count();
            (restored >= 2
                && node_status(&cluster, &c1) == "ready"
                && clients[0].task_pids().is_empty())
            .then_some(())
        },
    );
    let settled = restarted.elapsed();
    // And for a while after: the restarted agent's registry has nothing left to send.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Some(l) = listed(&cluster, "faulty") {
            check(&l);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "c1 restarted: ready with its old tasks stopped after {settled:.1?}; \
         {reads} reads of /v1/service/faulty, no duplicate or resurrected instance"
    );

    // c2's agent is killed and started again at once (well within its heartbeat TTL):
    // it reattaches to its running tasks and re-sends their registrations at once (their
    // checks passed before), which must leave the list exactly as it was (same IDs, no
    // duplicate, nothing missing, not even until the next check).
    let restarted = Instant::now();
    clients[1].kill9();
    clients[1].spawn();
    let mut reads = 0u64;
    let mut same = |l: &[(String, String, String)]| {
        reads += 1;
        assert_eq!(
            l,
            after.as_slice(),
            "c2's agent restart changed its instances"
        );
    };
    wait_for(
        "c2 to restore its allocations",
        Duration::from_secs(30),
        || {
            if let Some(l) = listed(&cluster, "faulty") {
                same(&l);
            }
            let restored = clients[1]
                .log()
                .matches("reattached to running task")
                .count();
            (restored >= 2 && node_status(&cluster, &c2) == "ready").then_some(())
        },
    );
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Some(l) = listed(&cluster, "faulty") {
            same(&l);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = running(&allocs(&cluster, "faulty")).len();
    assert_eq!(running, 2, "c2's allocations survived its agent's restart");
    eprintln!(
        "c2 restarted in place: {reads} reads of /v1/service/faulty over {:.1?}, the same 2 \
         instances throughout",
        restarted.elapsed()
    );
    drop(clients);
}
