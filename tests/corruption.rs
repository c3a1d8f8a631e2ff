//! A damaged data dir is never served silently: a server whose sled files were flipped or
//! truncated either refuses to start with a sentence naming the file and the recovery step,
//! or serves every acknowledged write. A cluster member that refuses is recovered by
//! removing its data dir and starting it again with the same flags.

mod common;

use common::cluster::{tiny_job, Cluster};
use common::{drover_bin, free_port, wait_for};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::blocking::Client;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

const JOBS: u64 = 30;

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// Every regular file under `dir`, largest first.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    out
}

/// Damage a stopped server's sled files the way the seed says: flip 64 bytes at several
/// offsets of the largest file, truncate it, or flip bytes in every file. Returns what it did.
fn corrupt(sled_dir: &Path, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let files = files_under(sled_dir);
    assert!(
        !files.is_empty(),
        "no sled files under {}",
        sled_dir.display()
    );
    let flip = |rng: &mut StdRng, f: &Path, times: usize| -> String {
        let mut bytes = std::fs::read(f).unwrap();
        if bytes.is_empty() {
            return String::new();
        }
        let mut at = Vec::new();
        for _ in 0..times {
            let start = rng.gen_range(0..bytes.len());
            for b in bytes.iter_mut().skip(start).take(64) {
                *b ^= rng.gen_range(1..=255u8);
            }
            at.push(start);
        }
        std::fs::write(f, &bytes).unwrap();
        format!("flipped 64 bytes at {at:?} of {}", f.display())
    };
    match seed % 3 {
        0 => flip(&mut rng, &files[0], 3),
        1 => {
            let len = std::fs::metadata(&files[0]).unwrap().len();
            let keep = rng.gen_range(len / 4..len.max(1));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&files[0])
                .unwrap();
            f.set_len(keep).unwrap();
            format!(
                "truncated {} from {len} to {keep} bytes",
                files[0].display()
            )
        }
        _ => files
            .iter()
            .map(|f| flip(&mut rng, f, 2))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Did the server refuse in the documented words?
fn assert_refusal_sentence(status: ExitStatus, output: &str, data_dir: &Path) {
    assert!(!status.success(), "refused but exited 0:\n{output}");
    assert!(
        output.contains("refusing to start: the Raft data is damaged"),
        "no refusal sentence:\n{output}"
    );
    assert!(
        output.contains(&data_dir.display().to_string())
            && (output.contains("raft.sled") || output.contains("raft.marks")),
        "the sentence does not name the damaged file:\n{output}"
    );
    assert!(
        output.contains("remove") || output.contains("restore"),
        "the sentence gives no recovery step:\n{output}"
    );
}

/// A `drover agent -dev` on a given data dir that may refuse to start.
struct Dev {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Dev {
    fn start(dir: &Path, data: &Path) -> Dev {
        let log = dir.join(format!("agent-{}.log", free_port()));
        let port = free_port();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(drover_bin())
            .args(["agent", "-dev", "-data-dir"])
            .arg(data)
            .args(["-http-port", &port.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Dev {
            child: Some(child),
            port,
            log,
        }
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Ok` once it answers with a leader, `Err(exit status)` if it exits first.
    fn up(&mut self) -> Result<(), ExitStatus> {
        let addr = self.addr();
        let child = self.child.as_mut().unwrap();
        wait_for(
            "the dev agent to answer or exit",
            Duration::from_secs(30),
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    return Some(Err(st));
                }
                let leader: String = reqwest::blocking::get(format!("{addr}/v1/status/leader"))
                    .ok()?
                    .json()
                    .ok()?;
                (!leader.is_empty()).then_some(Ok(()))
            },
        )
    }

    fn stop(&mut self) {
        let mut c = self.child.take().unwrap();
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let st = wait_for("the dev agent to exit", Duration::from_secs(20), || {
            c.try_wait().ok().flatten()
        });
        assert!(st.success(), "unclean exit {st}:\n{}", self.log());
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn job_ids_at(base: &str) -> Option<BTreeSet<String>> {
    let v: serde_json::Value = http()
        .get(format!("{base}/v1/jobs?stale"))
        .send()
        .ok()?
        .json()
        .ok()?;
    Some(
        v.as_array()?
            .iter()
            .filter_map(|j| j["ID"].as_str().map(str::to_string))
            .collect(),
    )
}

fn acknowledged_jobs(base: &str, prefix: &str) -> BTreeSet<String> {
    let c = http();
    (0..JOBS)
        .map(|n| {
            let id = format!("{prefix}-{n}");
            let r = c
                .put(format!("{base}/v1/jobs"))
                .json(&tiny_job(&id, n))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
            id
        })
        .collect()
}

#[test]
fn a_damaged_dev_agent_data_dir_is_refused_or_served_whole() {
    let mut refused = 0;
    for seed in [11u64, 12, 13, 14, 15, 16] {
        let dir = tempfile::Builder::new()
            .prefix("drover-corrupt-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let mut a = Dev::start(dir.path(), &data);
        a.up()
            .unwrap_or_else(|st| panic!("exited {st}:\n{}", a.log()));
        let acked = acknowledged_jobs(&a.addr(), "j");
        a.stop();
        let what = corrupt(&data.join("server").join("raft.sled"), seed);
        let mut b = Dev::start(dir.path(), &data);
        match b.up() {
            Err(status) => {
                refused += 1;
                assert_refusal_sentence(status, &b.log(), &data);
                eprintln!("seed {seed}: {what}: refused");
            }
            Ok(()) => {
                // It serves: then every acknowledged job, never fewer.
                let base = b.addr();
                let got = wait_for("every acknowledged job", Duration::from_secs(20), || {
                    job_ids_at(&base)
                        .filter(|ids| acked.is_subset(ids))
                        .map(|ids| ids.len())
                })
                .to_string();
                eprintln!("seed {seed}: {what}: served {got} jobs");
            }
        }
    }
    // Truncating the store (seeds 13 and 16) always loses something sled does not report.
    assert!(
        refused >= 2,
        "only {refused} of 6 damaged data dirs refused"
    );
}

#[test]
fn a_damaged_cluster_member_refuses_and_rejoins_after_its_data_dir_is_removed() {
    let mut cluster = Cluster::start(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let acked = acknowledged_jobs(&cluster.servers[leader].http(), "c");
    let x = (leader + 1) % 3;
    wait_for(
        "the follower to hold every job",
        Duration::from_secs(30),
        || job_ids_at(&cluster.servers[x].http()).filter(|ids| acked.is_subset(ids)),
    );
    let old_conf = cluster.servers[leader]
        .get_stale("/v1/operator/raft/configuration")
        .unwrap();
    assert!(cluster.servers[x].terminate().unwrap().success());
    let data = cluster.servers[x].dir.join("data");
    let what = corrupt(&data.join("server").join("raft.sled"), 7);
    eprintln!("{what}");

    // Alone (nobody can catch it up), the damaged server refuses or serves all it had.
    for i in (0..3).filter(|i| *i != x) {
        cluster.servers[i].kill9();
    }
    match cluster.servers[x].try_spawn() {
        Err((status, log)) => assert_refusal_sentence(status, &log, &data),
        Ok(()) => {
            let base = cluster.servers[x].http();
            wait_for("every acknowledged job", Duration::from_secs(20), || {
                job_ids_at(&base).filter(|ids| acked.is_subset(ids))
            });
            cluster.servers[x].kill9();
        }
    }

    // The documented recovery: remove the data dir, start again with the same flags.
    for i in (0..3).filter(|i| *i != x) {
        cluster.servers[i].spawn();
    }
    let leader = cluster.wait_leader(Duration::from_secs(30));
    std::fs::remove_dir_all(&data).unwrap();
    cluster.servers[x].spawn();
    let base = cluster.servers[x].http();
    wait_for(
        "the rejoined server to hold every job",
        Duration::from_secs(60),
        || job_ids_at(&base).filter(|ids| acked.is_subset(ids)),
    );
    // Its old identity was replaced, not added to: still three voters.
    let conf = wait_for("three voters", Duration::from_secs(30), || {
        let conf = cluster.servers[leader].get_stale("/v1/operator/raft/configuration")?;
        let servers = conf["Servers"].as_array()?;
        (servers.len() == 3 && servers.iter().all(|s| s["Voter"] == true)).then_some(conf)
    });
    let ids = |c: &serde_json::Value| -> BTreeSet<String> {
        c["Servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["ID"].to_string())
            .collect()
    };
    assert_eq!(
        ids(&conf).difference(&ids(&old_conf)).count(),
        1,
        "the rejoined server should have a new id in place of its old one: {old_conf} -> {conf}"
    );
    // And it counts towards the quorum: with the leader gone, it and the third server
    // elect a leader and commit.
    cluster.servers[leader].kill9();
    let r = http()
        .put(format!("{base}/v1/jobs"))
        .json(&tiny_job("after-rejoin", 1))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{}\n{}", r.text().unwrap(), cluster.logs());
}
