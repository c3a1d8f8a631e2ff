//! A real three-server cluster of separate processes: formation, forwarding, leader loss,
//! snapshot catch-up, quorum loss, a partition, and a linearizability check.

mod common;
#[path = "common/linearizability.rs"]
mod linearizability;
#[path = "common/scenarios.rs"]
mod scenarios;

use common::cluster::{tiny_job, Cluster};
use common::wait_for;
use reqwest::blocking::Client;
use scenarios::{http, job_ids, register};
use std::time::{Duration, Instant};

#[test]
fn three_servers_form_one_cluster_and_any_server_takes_writes() {
    let cluster = Cluster::start(&[]);
    let c = http();
    // Write through every server; followers forward to the leader.
    for (i, s) in cluster.servers.iter().enumerate() {
        let code = register(&c, &s.http(), &format!("via-{i}"), 0).unwrap();
        assert_eq!(code, 200, "{}", cluster.logs());
    }
    let leader = cluster.wait_leader(Duration::from_secs(10));
    // Reads on followers are forwarded too and carry the leader headers.
    for s in &cluster.servers {
        let r = c.get(format!("{}/v1/jobs", s.http())).send().unwrap();
        assert_eq!(r.headers()["X-Nomad-KnownLeader"], "true");
        assert!(r.headers().contains_key("X-Nomad-LastContact"));
        let jobs: serde_json::Value = r.json().unwrap();
        assert_eq!(jobs.as_array().unwrap().len(), 3);
    }
    let peers: Vec<String> = c
        .get(format!("{}/v1/status/peers", cluster.servers[0].http()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(peers.len(), 3);
    let conf: serde_json::Value = c
        .get(format!(
            "{}/v1/operator/raft/configuration",
            cluster.servers[1].http()
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let servers = conf["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);
    assert!(servers.iter().all(|s| s["Voter"] == true));
    // The CLI sees the same.
    let out = std::process::Command::new(common::drover_bin())
        .args([
            "operator",
            "raft",
            "list-peers",
            "-address",
            &cluster.servers[leader].http(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("leader") && text.contains("follower"),
        "{text}"
    );
    let out = std::process::Command::new(common::drover_bin())
        .args(["server", "members", "-address", &cluster.servers[0].http()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("alive").count(), 3, "{text}");
}

#[test]
fn leader_kill_mid_stream_every_write_to_the_followers_is_acknowledged_exactly_once() {
    scenarios::leader_kill_mid_stream(Cluster::start);
}

#[test]
fn lagging_follower_catches_up_by_snapshot_install() {
    scenarios::lagging_follower_snapshot(Cluster::start);
}

#[test]
fn without_quorum_writes_fail_with_a_sentence_and_stale_reads_still_work() {
    let mut cluster = Cluster::start(&[]);
    let c = http();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(
        register(&c, &cluster.servers[leader].http(), "before", 0).unwrap(),
        200
    );
    let survivor = (leader + 1) % 3;
    // The write is committed once a majority has it, which may not include the survivor:
    // wait until it has applied the write, so its stale read after the others die must
    // show it.
    wait_for(
        "the survivor to apply the write",
        Duration::from_secs(10),
        || {
            job_ids(&cluster.servers[survivor])
                .filter(|ids| ids.contains("before"))
                .map(|_| ())
        },
    );
    for i in 0..3 {
        if i != survivor {
            cluster.servers[i].kill9();
        }
    }
    let s = &cluster.servers[survivor];
    let start = Instant::now();
    let r = c
        .put(format!("{}/v1/jobs", s.http()))
        .json(&tiny_job("after", 1))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert!(status >= 500, "{status}: {text}");
    assert!(text.contains("no cluster leader"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let ids = job_ids(s).expect("a stale read");
    assert!(ids.contains("before"));
}

#[test]
fn a_partitioned_leader_cannot_commit_and_healing_leaves_one_history() {
    scenarios::partitioned_leader(Cluster::start_with);
}

#[test]
fn single_key_history_is_linearizable_across_a_leader_kill() {
    scenarios::linearizable_across_leader_kill(Cluster::start);
}

#[test]
fn leadership_transfers_to_the_named_server_and_a_peer_can_be_removed() {
    scenarios::leadership_transfer(Cluster::start);
}

#[test]
fn a_write_arriving_while_there_is_no_leader_is_held_until_one_is_elected() {
    // A hold long enough to restart a server in (the default is 5 s).
    let mut cluster = Cluster::start(&[("DROVER_RPC_HOLD_TIMEOUT_MS", "30000")]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster.servers[leader].kill9();
    cluster.servers[other].kill9();
    let base = cluster.servers[survivor].http();
    wait_for(
        "the survivor to know no leader",
        Duration::from_secs(30),
        || {
            let l: String = http()
                .get(format!("{base}/v1/status/leader"))
                .send()
                .ok()?
                .json()
                .ok()?;
            l.is_empty().then_some(())
        },
    );
    let write = std::thread::spawn(move || {
        let r = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .put(format!("{base}/v1/jobs"))
            .json(&tiny_job("held", 1))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    let read = {
        let base = cluster.servers[survivor].http();
        std::thread::spawn(move || {
            let r = Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
                .get(format!("{base}/v1/job/held?consistent"))
                .send()
                .unwrap();
            r.status().as_u16()
        })
    };
    // A quorum comes back: the held write commits under the new leader, and the held
    // consistent read is answered (404 or 200: it was concurrent with the write).
    cluster.servers[other].spawn();
    let (status, text) = write.join().unwrap();
    assert_eq!(status, 200, "{text}\n{}", cluster.logs());
    let read_status = read.join().unwrap();
    assert!(
        read_status == 200 || read_status == 404,
        "the held consistent read failed with {read_status}"
    );
    let ids = job_ids(&cluster.servers[survivor]).unwrap();
    assert!(ids.contains("held"), "{ids:?}");
}
