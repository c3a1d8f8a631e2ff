//! Cluster scenarios shared by the plain and the TLS cluster tests (`tests/cluster.rs`,
//! `tests/tls.rs`): each takes the constructor of the cluster it runs on. Included with
//! `#[path]` beside `common` and `linearizability`.

use crate::common::cluster::{tiny_job, Cluster, ServerProc};
use crate::common::proxy::Proxy;
use crate::common::wait_for;
use crate::linearizability::{check, Op, OpKind};
use reqwest::blocking::Client;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a cluster constructor is told each server's advertised RPC address.
pub type Advertise = Box<dyn Fn(usize, SocketAddr) -> String>;

pub fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

pub fn register(c: &Client, base: &str, id: &str, seq: u64) -> Result<u16, String> {
    c.put(format!("{base}/v1/jobs"))
        .json(&tiny_job(id, seq))
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

pub fn job_ids(server: &ServerProc) -> Option<BTreeSet<String>> {
    let v = server.get_stale("/v1/jobs")?;
    Some(
        v.as_array()?
            .iter()
            .filter_map(|j| j["ID"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Register a job, sending the same request again only when the connection failed
/// (refused, reset, timed out): the answer is the first HTTP status a server gave.
fn register_retrying(c: &Client, base: &str, id: &str, seq: u64) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c
            .put(format!("{base}/v1/jobs"))
            .json(&tiny_job(id, seq))
            .send()
        {
            Ok(r) => {
                let status = r.status().as_u16();
                return (status, r.text().unwrap_or_default());
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("{id}: connection error, retrying: {e}");
            }
            Err(e) => return (0, e.to_string()),
        }
    }
}

/// Two writers stream registrations through the followers while the leader is killed:
/// none is refused, and every acknowledged one is on every server exactly once.
pub fn leader_kill_mid_stream(start: impl FnOnce(&[(&str, &str)]) -> Cluster) {
    let mut cluster = start(&[]);
    let old = cluster.wait_leader(Duration::from_secs(10));
    let followers: Vec<String> = (0..3)
        .filter(|i| *i != old)
        .map(|i| cluster.servers[i].http())
        .collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
            let followers = followers.clone();
            std::thread::spawn(move || {
                let c = Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("job-{w}-{n}");
                    // Round-robin over the two followers.
                    let base = &followers[((n + w) % 2) as usize];
                    match register_retrying(&c, base, &id, n) {
                        (200, _) => acked.lock().unwrap().push(id),
                        (status, text) => refused
                            .lock()
                            .unwrap()
                            .push(format!("{id} via {base}: {status} {text}")),
                    }
                }
            })
        })
        .collect();
    wait_for("writes before the kill", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= 50).then_some(())
    });
    cluster.servers[old].kill9();
    let killed_at = Instant::now();
    let before = acked.lock().unwrap().len();
    wait_for("writes after the failover", Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= before + 50).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let new = cluster.wait_leader(Duration::from_secs(10));
    assert_ne!(new, old);
    eprintln!("failover: writes resumed within {:?}", killed_at.elapsed());
    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "{} writes were refused during the failover: {refused:#?}",
        refused.len()
    );

    // The old leader comes back and catches up.
    cluster.servers[old].spawn();
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    for s in &cluster.servers {
        let have = wait_for(
            "every acknowledged write on every server",
            Duration::from_secs(60),
            || {
                let ids = job_ids(s)?;
                acked.is_subset(&ids).then_some(ids)
            },
        );
        assert_eq!(have, acked, "{} holds jobs nobody acknowledged", s.name);
        // Exactly once: each registration made one job version, retries included.
        let jobs = s.get_stale("/v1/jobs").unwrap();
        for j in jobs.as_array().unwrap() {
            assert_eq!(j["Version"], 0, "{} on {}: {j}", j["ID"], s.name);
        }
    }
}

/// The leader is cut off (TCP proxies in front of every RPC port): it cannot commit, the
/// majority elects another and commits, and after healing one history remains.
pub fn partitioned_leader(start: impl FnOnce(&[(&str, &str)], Advertise) -> Cluster) {
    // A proxy in front of each server's RPC port; peers reach each other only through them.
    let proxies: Vec<Proxy> = Vec::new();
    let proxies = Arc::new(Mutex::new(proxies));
    let p2 = proxies.clone();
    let advertise: Advertise = Box::new(move |i, rpc| {
        let ip = format!("127.0.0.{}", 20 + i).parse().unwrap();
        let p = Proxy::start(ip, rpc);
        let addr = p.addr.to_string();
        p2.lock().unwrap().push(p);
        addr
    });
    let cluster = start(&[], advertise);
    let proxies = proxies.lock().unwrap();
    let c = http();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(
        register(&c, &cluster.servers[leader].http(), "before", 0).unwrap(),
        200
    );

    // Cut the leader off: nobody reaches it, it reaches nobody.
    let lip = cluster.servers[leader].ip;
    for (i, p) in proxies.iter().enumerate() {
        if i == leader {
            p.set_down(true);
        } else {
            p.block(lip);
        }
    }
    // The minority leader can no longer commit.
    let r = c
        .put(format!("{}/v1/jobs", cluster.servers[leader].http()))
        .header("X-Drover-Forwarded", "1")
        .json(&tiny_job("minority", 1))
        .send()
        .unwrap();
    assert!(
        r.status().as_u16() >= 500,
        "the minority committed: {}",
        r.text().unwrap()
    );

    // The majority elects a leader of its own and commits.
    let majority: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new = wait_for("a majority leader", Duration::from_secs(30), || {
        majority
            .iter()
            .copied()
            .find(|i| cluster.servers[*i].is_leader())
    });
    assert_eq!(
        register(&c, &cluster.servers[new].http(), "majority", 2).unwrap(),
        200
    );

    // Heal: one history, the majority's.
    for p in proxies.iter() {
        p.heal();
    }
    for s in &cluster.servers {
        wait_for("one history everywhere", Duration::from_secs(60), || {
            let ids = job_ids(s)?;
            (ids.contains("majority") && ids.contains("before")).then_some(())
        });
        let ids = job_ids(s).unwrap();
        assert!(
            !ids.contains("minority"),
            "{} kept the minority's write",
            s.name
        );
    }
    let leaders = cluster.servers.iter().filter(|s| s.is_leader()).count();
    assert_eq!(leaders, 1);
}

/// Three clients write and read (`?consistent`) one job through every server while the
/// leader is killed; the history they saw must be linearizable.
pub fn linearizable_across_leader_kill(start: impl FnOnce(&[(&str, &str)]) -> Cluster) {
    let mut cluster = start(&[]);
    let addrs: Vec<String> = cluster.servers.iter().map(|s| s.http()).collect();
    let origin = Instant::now();
    let history = Arc::new(Mutex::new(Vec::<Op>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..3u64 {
        let (addrs, history, stop) = (addrs.clone(), history.clone(), stop.clone());
        clients.push(std::thread::spawn(move || {
            let c = Client::builder()
                .timeout(Duration::from_secs(6))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let base = &addrs[((client + n) % 3) as usize];
                let call = origin.elapsed().as_nanos();
                if n.is_multiple_of(2) {
                    let value = client * 1_000_000 + n;
                    let res = register(&c, base, "lin", value);
                    let ret = origin.elapsed().as_nanos();
                    history.lock().unwrap().push(Op {
                        kind: OpKind::Write(value),
                        call,
                        ret: matches!(res, Ok(200)).then_some(ret),
                    });
                } else {
                    let r = c.get(format!("{base}/v1/job/lin?consistent")).send();
                    let ret = origin.elapsed().as_nanos();
                    let seen = match r {
                        Ok(r) if r.status().as_u16() == 404 => Some(None),
                        Ok(r) if r.status().is_success() => r
                            .json::<serde_json::Value>()
                            .ok()
                            .and_then(|j| j["Meta"]["seq"].as_str()?.parse::<u64>().ok())
                            .map(Some),
                        _ => None,
                    };
                    if let Some(seen) = seen {
                        history.lock().unwrap().push(Op {
                            kind: OpKind::Read(seen),
                            call,
                            ret: Some(ret),
                        });
                    }
                }
            }
        }));
    }
    wait_for("some history", Duration::from_secs(30), || {
        (history.lock().unwrap().len() >= 60).then_some(())
    });
    let leader = cluster.wait_leader(Duration::from_secs(10));
    cluster.servers[leader].kill9();
    let before = history.lock().unwrap().len();
    wait_for("history after the kill", Duration::from_secs(60), || {
        (history.lock().unwrap().len() >= before + 60).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let h = history.lock().unwrap().clone();
    let writes = h
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Write(_)))
        .count();
    let reads = h.len() - writes;
    assert!(writes > 20 && reads > 20, "{writes} writes, {reads} reads");
    if let Err(e) = check(&h) {
        panic!("{e}\n{h:#?}");
    }
}

/// A follower down while the leader compacts its log is caught up by a snapshot.
pub fn lagging_follower_snapshot(start: impl FnOnce(&[(&str, &str)]) -> Cluster) {
    let mut cluster = start(&[
        ("DROVER_SNAPSHOT_THRESHOLD", "50"),
        ("DROVER_LOGS_KEPT_AFTER_SNAPSHOT", "10"),
    ]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    cluster.servers[follower].kill9();
    let c = http();
    let base = cluster.servers[leader].http();
    for n in 0..150 {
        let r = c
            .put(format!("{base}/v1/jobs"))
            .json(&tiny_job(&format!("j{n}"), n))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            status,
            200,
            "write {n}: {}\n{}",
            r.text().unwrap(),
            cluster.logs()
        );
    }
    // The leader compacted its log past what the follower has.
    let stats = cluster.servers[leader].get_stale("/v1/agent/self").unwrap();
    let purged: u64 = stats["Stats"]["raft"]["last_purged_index"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(purged > 0, "the leader never compacted: {stats}");
    cluster.servers[follower].spawn();
    let f = &cluster.servers[follower];
    wait_for("the follower to catch up", Duration::from_secs(60), || {
        let ids = job_ids(f)?;
        (ids.len() == 150).then_some(())
    });
    let stats = f.get_stale("/v1/agent/self").unwrap();
    assert_ne!(
        stats["Stats"]["raft"]["snapshots_installed"], "0",
        "caught up without a snapshot: {stats}"
    );
}

/// `operator raft transfer-leadership` moves the lead to the named server, and
/// `remove-peer` takes the old leader out of the configuration.
pub fn leadership_transfer(start: impl FnOnce(&[(&str, &str)]) -> Cluster) {
    let cluster = start(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let target = (leader + 2) % 3;
    let target_rpc = cluster.servers[target].advertise_rpc.clone();
    let out = std::process::Command::new(crate::common::drover_bin())
        .args([
            "operator",
            "raft",
            "transfer-leadership",
            "-peer-address",
            &target_rpc,
        ])
        .args(["-address", &cluster.servers[leader].http()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)), target);
    // Writes still commit under the new leader.
    assert_eq!(
        register(
            &http(),
            &cluster.servers[leader].http(),
            "after-transfer",
            0
        )
        .unwrap(),
        200
    );

    // Remove the old leader from the configuration.
    let old_rpc = cluster.servers[leader].advertise_rpc.clone();
    let out = std::process::Command::new(crate::common::drover_bin())
        .args(["operator", "raft", "remove-peer", "-peer-address", &old_rpc])
        .args(["-address", &cluster.servers[target].http()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = cluster.servers[target]
        .get_stale("/v1/operator/raft/configuration")
        .unwrap();
    assert_eq!(conf["Servers"].as_array().unwrap().len(), 2, "{conf}");
}
