//! A seeded fault schedule against a real three-server cluster: kill -9 and restart,
//! SIGSTOP/SIGCONT, and network partitions through TCP proxies in front of every server's
//! Raft port, while clients write and `?consistent`-read a few keys through any server.
//! Each key's history must be linearizable, and a final read after healing must find every
//! acknowledged write in place (no acknowledged write is lost).
//!
//! The seed fixes the schedule (which fault, on which server, for how long) and every
//! client's choice of operations; a failure prints its seed, and
//! `DROVER_FAULT_SEEDS=<seed> cargo test --test faults replay -- --ignored --nocapture`
//! runs it again.

mod common;
#[path = "common/linearizability.rs"]
mod linearizability;

use common::cluster::{tiny_job, Cluster};
use common::proxy::Proxy;
use common::wait_for;
use linearizability::{check, Op, OpKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::blocking::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEYS: usize = 3;
const CLIENTS: u64 = 3;

#[derive(Debug, Default)]
struct Outcome {
    faults: Vec<String>,
    acked_writes: usize,
    unknown_writes: usize,
    reads: usize,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Stop,
    Partition,
}

fn key(k: usize) -> String {
    format!("key{k}")
}

/// The register a key's job holds: its `Meta.seq`, or `None` for no job.
fn read(c: &Client, base: &str, key: &str, consistent: bool) -> Option<Option<u64>> {
    let q = if consistent { "consistent" } else { "stale" };
    let r = c.get(format!("{base}/v1/job/{key}?{q}")).send().ok()?;
    match r.status().as_u16() {
        404 => Some(None),
        200 => r
            .json::<serde_json::Value>()
            .ok()
            .and_then(|j| j["Meta"]["seq"].as_str()?.parse::<u64>().ok())
            .map(Some),
        _ => None,
    }
}

/// One client: random writes and consistent reads on random keys through random servers.
fn client_loop(
    id: u64,
    seed: u64,
    addrs: Vec<String>,
    origin: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Vec<Op>>>>,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(id));
    let c = Client::builder()
        .timeout(Duration::from_secs(6))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let k = rng.gen_range(0..KEYS);
        let base = &addrs[rng.gen_range(0..addrs.len())];
        let call = origin.elapsed().as_nanos();
        if rng.gen_bool(0.5) {
            let value = (id + 1) * 1_000_000 + n;
            let res = c
                .put(format!("{base}/v1/jobs"))
                .json(&tiny_job(&key(k), value))
                .send();
            let ret = origin.elapsed().as_nanos();
            let ret = match res {
                Ok(r) if r.status().as_u16() == 200 => Some(ret),
                // Refused before anything was sent: it never happened.
                Err(e) if e.is_connect() => continue,
                // Timed out, cut off, or a 5xx: it may still take effect.
                _ => None,
            };
            history.lock().unwrap()[k].push(Op {
                kind: OpKind::Write(value),
                call,
                ret,
            });
        } else if let Some(seen) = read(&c, base, &key(k), true) {
            let ret = origin.elapsed().as_nanos();
            history.lock().unwrap()[k].push(Op {
                kind: OpKind::Read(seen),
                call,
                ret: Some(ret),
            });
        }
    }
}

/// Run one seeded schedule for `length`; `Err` says what broke.
fn run_seed(seed: u64, length: Duration) -> Result<Outcome, String> {
    let proxies = Arc::new(Mutex::new(Vec::<Proxy>::new()));
    let p2 = proxies.clone();
    let mut cluster = Cluster::start_with(&[], move |i, rpc| {
        let ip = format!("127.0.0.{}", 20 + i).parse().unwrap();
        let p = Proxy::start(ip, rpc);
        let addr = p.addr.to_string();
        p2.lock().unwrap().push(p);
        addr
    });
    let addrs: Vec<String> = cluster.servers.iter().map(|s| s.http()).collect();
    let origin = Instant::now();
    let history = Arc::new(Mutex::new(vec![Vec::<Op>::new(); KEYS]));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (addrs, stop, history) = (addrs.clone(), stop.clone(), history.clone());
            std::thread::spawn(move || client_loop(id, seed, addrs, origin, stop, history))
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Outcome::default();
    let end = Instant::now() + length;
    while Instant::now() < end {
        let fault = [Fault::Kill, Fault::Stop, Fault::Partition][rng.gen_range(0..3)];
        // Half the time the leader, else any server.
        let victim = if rng.gen_bool(0.5) {
            cluster.leader().unwrap_or(rng.gen_range(0..3))
        } else {
            rng.gen_range(0..3)
        };
        let hold = Duration::from_millis(rng.gen_range(300..2000));
        let pause = Duration::from_millis(rng.gen_range(200..1000));
        out.faults.push(format!(
            "{:>6}ms {fault:?} s{} for {}ms",
            origin.elapsed().as_millis(),
            victim + 1,
            hold.as_millis()
        ));
        match fault {
            Fault::Kill => cluster.servers[victim].kill9(),
            Fault::Stop => cluster.servers[victim].signal(libc::SIGSTOP),
            Fault::Partition => {
                let ip = cluster.servers[victim].ip;
                for (i, p) in proxies.lock().unwrap().iter().enumerate() {
                    if i == victim {
                        p.set_down(true);
                    } else {
                        p.block(ip);
                    }
                }
            }
        }
        // The schedule's own clock: how long the fault lasts.
        std::thread::sleep(hold);
        match fault {
            Fault::Kill => cluster.servers[victim].spawn(),
            Fault::Stop => cluster.servers[victim].signal(libc::SIGCONT),
            Fault::Partition => proxies.lock().unwrap().iter().for_each(|p| p.heal()),
        }
        std::thread::sleep(pause);
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join()
            .map_err(|_| "a client thread panicked".to_string())?;
    }

    // Healed: one leader, and a final consistent read of every key, which must see the
    // effect of every acknowledged write that linearizes before it.
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let c = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut history = history.lock().unwrap().clone();
    for (k, ops) in history.iter_mut().enumerate() {
        let call = origin.elapsed().as_nanos();
        let seen = wait_for("a final consistent read", Duration::from_secs(30), || {
            read(&c, &cluster.servers[leader].http(), &key(k), true)
        });
        ops.push(Op {
            kind: OpKind::Read(seen),
            call,
            ret: Some(origin.elapsed().as_nanos()),
        });
        // Every server converges on it.
        for s in &cluster.servers {
            wait_for(
                "every server to hold the final value",
                Duration::from_secs(30),
                || (read(&c, &s.http(), &key(k), false)? == seen).then_some(()),
            );
        }
    }
    for (k, ops) in history.iter().enumerate() {
        for o in ops {
            match o.kind {
                OpKind::Write(_) if o.ret.is_some() => out.acked_writes += 1,
                OpKind::Write(_) => out.unknown_writes += 1,
                OpKind::Read(_) => out.reads += 1,
            }
        }
        check(ops).map_err(|e| {
            format!(
                "{} is not linearizable: {e}\nschedule:\n{}\nhistory:\n{ops:#?}\n{}",
                key(k),
                out.faults.join("\n"),
                cluster.logs()
            )
        })?;
    }
    if out.acked_writes == 0 {
        return Err(format!(
            "no write was acknowledged; schedule:\n{}",
            out.faults.join("\n")
        ));
    }
    Ok(out)
}

/// Run seeds one after the other; a panic inside a run counts as its failure.
fn run_seeds(seeds: &[u64], length: Duration) -> Vec<(u64, Result<Outcome, String>)> {
    seeds
        .iter()
        .map(|&seed| {
            let started = Instant::now();
            let res = std::panic::catch_unwind(|| run_seed(seed, length))
                .unwrap_or_else(|p| {
                    Err(p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into()))
                });
            match &res {
                Ok(o) => eprintln!(
                    "seed {seed}: ok in {:?}: {} faults, {} acknowledged writes, {} unknown, {} reads",
                    started.elapsed(),
                    o.faults.len(),
                    o.acked_writes,
                    o.unknown_writes,
                    o.reads
                ),
                Err(e) => eprintln!(
                    "seed {seed}: FAILED (replay: DROVER_FAULT_SEEDS={seed} cargo test --test faults replay -- --ignored --nocapture)\n{e}"
                ),
            }
            (seed, res)
        })
        .collect()
}

fn summarize(results: &[(u64, Result<Outcome, String>)]) -> String {
    let ok: Vec<&Outcome> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let failed: Vec<u64> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(s, _)| *s)
        .collect();
    format!(
        "fault schedules: {} seeds, {} linearizable with no acknowledged write lost, {} failed {failed:?}; {} faults, {} acknowledged writes, {} unknown writes, {} consistent reads",
        results.len(),
        ok.len(),
        failed.len(),
        ok.iter().map(|o| o.faults.len()).sum::<usize>(),
        ok.iter().map(|o| o.acked_writes).sum::<usize>(),
        ok.iter().map(|o| o.unknown_writes).sum::<usize>(),
        ok.iter().map(|o| o.reads).sum::<usize>(),
    )
}

fn assert_all_passed(results: &[(u64, Result<Outcome, String>)]) {
    let summary = summarize(results);
    println!("{summary}");
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(seed, r)| r.as_ref().err().map(|e| format!("seed {seed}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{summary}\n{}", failures.join("\n\n"));
}

#[test]
fn seeded_fault_schedules_keep_every_key_linearizable_and_lose_no_acknowledged_write() {
    assert_all_passed(&run_seeds(&[1, 2, 3], Duration::from_secs(8)));
}

/// The long run whose summary line goes in the README.
#[test]
#[ignore = "100 seeds take about 20 minutes; run with -- --ignored --nocapture"]
fn hundred_seeded_fault_schedules() {
    let seeds: Vec<u64> = (1..=100).collect();
    assert_all_passed(&run_seeds(&seeds, Duration::from_secs(8)));
}

/// Replays the seeds in `DROVER_FAULT_SEEDS` (comma separated).
#[test]
#[ignore = "replays DROVER_FAULT_SEEDS"]
fn replay() {
    let seeds: Vec<u64> = std::env::var("DROVER_FAULT_SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    assert!(!seeds.is_empty(), "set DROVER_FAULT_SEEDS=1,2,3");
    assert_all_passed(&run_seeds(&seeds, Duration::from_secs(8)));
}

/// A leader killed right after acknowledging a write, and restarted before any other
/// server stands for election, resumes as leader from its saved vote without a new first
/// entry, with the committed index it last saved, which may lie below the write it just
/// acknowledged (the hint is flushed with the next append). Its consistent reads must
/// still see that write: each round writes twice, kills the leader at once, restarts it,
/// and reads through it.
#[test]
fn a_leader_restarted_at_once_reads_the_write_it_acknowledged_before_the_kill() {
    // Long enough that the followers do not elect while the leader is down.
    let mut cluster = Cluster::start(&[("DROVER_ELECTION_TIMEOUT_MS", "15000")]);
    let c = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut resumed_as_leader = 0;
    for round in 1..=4u64 {
        let leader = cluster.wait_leader(Duration::from_secs(40));
        let base = cluster.servers[leader].http();
        for value in [round * 10, round * 10 + 1] {
            let r = c
                .put(format!("{base}/v1/jobs"))
                .json(&tiny_job("register", value))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "write {value}: {:?}", r.text());
        }
        cluster.servers[leader].kill9();
        // Read from the first moment the restarted server answers: the window is the
        // time before it learns how far the followers' logs reach.
        let reader = {
            let (c, base) = (c.clone(), base.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(40);
                loop {
                    if let Some(seen) = read(&c, &base, "register", true) {
                        return Some(seen);
                    }
                    if Instant::now() > deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        cluster.servers[leader].spawn();
        if cluster.servers[leader].is_leader() {
            resumed_as_leader += 1;
        }
        let seen = reader
            .join()
            .unwrap()
            .expect("a consistent read within 40 s");
        assert_eq!(
            seen,
            Some(round * 10 + 1),
            "round {round}: the restarted server read a value older than the write it \
             acknowledged\n{}",
            cluster.logs()
        );
    }
    // The case this test is for happened at least once (a restart where another server
    // won an election instead still checks the read, but not this path).
    assert!(
        resumed_as_leader > 0,
        "no restarted leader resumed as leader\n{}",
        cluster.logs()
    );
}
