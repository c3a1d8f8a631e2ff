//! The forwarded mark on a cluster, through the real binary: only servers (on their RPC
//! listeners) may mark a request as already forwarded.

mod common;

use common::cluster::{tiny_job, Cluster};
use common::wait_for;
use std::time::Duration;

#[test]
fn a_forged_forwarded_mark_on_a_follower_still_goes_through_the_leader() {
    let cluster = Cluster::start(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let follower = (leader + 1) % cluster.servers.len();
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Served locally, a follower could not commit this (it is not the leader); forwarded,
    // the leader commits it.
    let r = c
        .put(format!("{}/v1/jobs", cluster.servers[follower].http()))
        .header("x-drover-forwarded", "1")
        .json(&tiny_job("forged-mark", 1))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "{text}\n{}", cluster.logs());
    let r = c
        .get(format!(
            "{}/v1/job/forged-mark",
            cluster.servers[leader].http()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A read with the forged mark is the leader's answer too (a consistent read, which
    // only the leader can serve).
    let r = c
        .get(format!(
            "{}/v1/job/forged-mark?consistent",
            cluster.servers[follower].http()
        ))
        .header("x-drover-forwarded", "1")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    // The internal routes are not there at all, mark or not.
    let r = c
        .post(format!(
            "{}/v1/internal/cluster/join",
            cluster.servers[follower].http()
        ))
        .header("x-drover-forwarded", "1")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Peers use the RPC listener: a server's RPC address answers the cluster routes.
    let r = c
        .get(format!(
            "http://{}/v1/internal/cluster/info",
            cluster.servers[follower].agent_addr()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// A job carrying ~100 KB of incompressible metadata (two values under the 64 KiB cap).
fn bulky_job(id: &str, n: u64) -> serde_json::Value {
    let mut job = tiny_job(id, n);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for key in ["noise1", "noise2"] {
        let noise: String = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        job["Job"]["Meta"][key] = serde_json::Value::String(noise);
    }
    job
}

#[test]
fn a_lagging_follower_installs_a_snapshot_sent_in_several_chunks() {
    let mut cluster = Cluster::start(&[
        ("DROVER_SNAPSHOT_THRESHOLD", "20"),
        ("DROVER_LOGS_KEPT_AFTER_SNAPSHOT", "5"),
    ]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    cluster.servers[follower].kill9();
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = cluster.servers[leader].http();
    // About 8 MB of state: the snapshot needs three 3 MiB chunks.
    for n in 0..80 {
        let r = c
            .put(format!("{base}/v1/jobs"))
            .json(&bulky_job(&format!("bulky{n}"), n))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "write {n}: {}", r.text().unwrap());
    }
    let stats = cluster.servers[leader].get_stale("/v1/agent/self").unwrap();
    assert_ne!(
        stats["Stats"]["raft"]["last_purged_index"], "0",
        "the leader never compacted: {stats}"
    );
    cluster.servers[follower].spawn();
    let f = &cluster.servers[follower];
    wait_for("the follower to catch up", Duration::from_secs(90), || {
        let jobs = f.get_stale("/v1/jobs")?;
        (jobs.as_array()?.len() == 80).then_some(())
    });
    let stats = f.get_stale("/v1/agent/self").unwrap();
    assert_ne!(
        stats["Stats"]["raft"]["snapshots_installed"], "0",
        "caught up without a snapshot: {stats}"
    );
    let job = f.get_stale("/v1/job/bulky79").unwrap();
    assert_eq!(
        job["Meta"]["noise2"].as_str().map(str::len),
        Some(50_000),
        "the reassembled snapshot lost data"
    );
}
