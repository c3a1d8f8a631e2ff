//! `drover fmt`, `drover monitor` and `drover ui` through the real binary, as a user
//! types them.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MESSY: &str =
    "job \"web\" {\n   type = \"service\"\n datacenters = [ \"dc1\" ]  # where\n}\n";
const TIDY: &str =
    "job \"web\" {\n  type        = \"service\"\n  datacenters = [\"dc1\"] # where\n}\n";

fn drover(args: &[&str], dir: &Path) -> Output {
    Command::new(drover_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run drover")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn fmt_check_lists_what_would_change_and_fmt_rewrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("a.hcl"), MESSY).unwrap();
    std::fs::write(d.join("b.nomad"), TIDY).unwrap();
    std::fs::write(d.join("sub/c.hcl"), MESSY).unwrap();
    std::fs::write(d.join("notes.txt"), MESSY).unwrap();

    // -check: lists the one file of the directory that would change, writes nothing.
    let out = drover(&["fmt", "-check", "."], d);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "./a.hcl");
    assert_eq!(read(&d.join("a.hcl")), MESSY);

    // Bare `fmt` formats the current directory, not its subdirectories.
    let out = drover(&["fmt"], d);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "./a.hcl");
    assert_eq!(read(&d.join("a.hcl")), TIDY);
    assert_eq!(read(&d.join("sub/c.hcl")), MESSY);
    assert_eq!(read(&d.join("notes.txt")), MESSY);

    // -recursive reaches sub/; afterwards -check is clean and silent.
    let out = drover(&["fmt", "-recursive", "."], d);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "./sub/c.hcl");
    let out = drover(&["fmt", "-check", "-recursive", "."], d);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn fmt_prints_instead_of_writing_reads_stdin_and_points_at_syntax_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("job.hcl"), MESSY).unwrap();
    let out = drover(&["fmt", "-write=false", "-list=false", "job.hcl"], d);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), TIDY);
    assert_eq!(read(&d.join("job.hcl")), MESSY);

    let mut child = Command::new(drover_bin())
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(MESSY.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), TIDY);

    let bad = "job \"x\" {\n  count = \n}\n";
    std::fs::write(d.join("bad.hcl"), bad).unwrap();
    let out = drover(&["fmt", "bad.hcl"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("bad.hcl:"), "{}", stderr(&out));
    assert!(stderr(&out).contains("syntax error"), "{}", stderr(&out));
    assert_eq!(read(&d.join("bad.hcl")), bad);
}

/// A `drover` child whose stdout lines arrive on a channel.
struct Streaming {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Streaming {
    fn start(agent: &DevAgent, args: &[&str]) -> Self {
        let mut child = Command::new(drover_bin())
            .args(args)
            .env("NOMAD_ADDR", agent.addr())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn drover");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (from now on) for which `want` holds, within `timeout`.
    fn wait_line(&mut self, what: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if want(&l) => return l,
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "no {what} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn monitor_streams_debug_lines_about_a_job_the_agent_itself_does_not_log() {
    let agent = DevAgent::start();
    let mut plain = Streaming::start(&agent, &["monitor", "-log-level", "debug"]);
    let mut json = Streaming::start(&agent, &["monitor", "-log-level=DEBUG", "-json"]);
    // Each monitor hears its own attachment: from then on nothing is missed.
    plain.wait_line("attach line", Duration::from_secs(30), |l| {
        l.contains("log monitor attached")
    });
    json.wait_line("attach line", Duration::from_secs(30), |l| {
        l.contains("log monitor attached")
    });

    let out = agent.run_job(
        "monitored.hcl",
        &raw_exec_job("monitored-job", "exec sleep 300", 50, 32),
        &["-detach"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A debug line names the job (the scheduler's worker takes its evaluation).
    plain.wait_line("a debug line about the job", Duration::from_secs(30), |l| {
        l.contains("[DEBUG]") && l.contains("monitored-job")
    });
    let line = json.wait_line(
        "a JSON debug line about the job",
        Duration::from_secs(30),
        |l| l.contains("monitored-job") && l.contains(r#""@level":"debug""#),
    );
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert!(
        v["@module"].as_str().is_some_and(|m| !m.is_empty()),
        "{line}"
    );
    // The agent runs at info (RUST_LOG=info): what the monitor heard is not in its log.
    assert!(!agent.log().contains("processing evaluation"));
}

#[test]
fn ui_show_url_names_the_page_of_a_job_allocation_or_node_prefix() {
    let agent = DevAgent::start();
    agent.wait_node_ready();
    let base = agent.addr();
    let url = |args: &[&str]| {
        let mut argv = vec!["ui", "-show-url"];
        argv.extend_from_slice(args);
        let out = agent.cli(&argv);
        assert!(out.status.success(), "{argv:?}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    assert_eq!(url(&[]), format!("URL for web UI: {base}/ui/jobs"));

    let out = agent.run_job(
        "ui-job.hcl",
        &raw_exec_job("ui-job", "exec sleep 300", 50, 32),
        &["-detach"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        url(&["ui-j"]),
        format!("URL for web UI: {base}/ui/jobs/ui-job")
    );

    let (_, nodes) = agent.get_json("/v1/nodes");
    let node = nodes[0]["ID"].as_str().unwrap().to_string();
    assert_eq!(
        url(&[&node[..8]]),
        format!("URL for web UI: {base}/ui/clients/{node}")
    );
    let alloc = wait_for("the job's allocation", Duration::from_secs(30), || {
        let (_, allocs) = agent.get_json("/v1/job/ui-job/allocations");
        allocs[0]["ID"].as_str().map(str::to_string)
    });
    assert_eq!(
        url(&[&alloc[..8]]),
        format!("URL for web UI: {base}/ui/allocations/{alloc}")
    );

    let out = agent.cli(&["ui", "-show-url", "zzzz-no-such"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("No job, allocation or node"),
        "{}",
        stderr(&out)
    );
}
