//! `drover alloc logs|exec|restart|signal|status -stats` end to end through the real
//! binary and a `-dev` agent running raw_exec tasks: the client endpoints served on the
//! server's listener, log rotation per the `logs` block, health reporting, artifacts,
//! lifecycle ordering, recovery after `kill -9`, and no orphans after `job stop`.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A raw_exec service job: `script` runs under `sh -c`; `extra` goes into the group.
fn job(name: &str, script: &str, extra: &str) -> String {
    format!(
        r#"
job "{name}" {{
  datacenters = ["dc1"]
  type = "service"
  group "g" {{
    {extra}
    task "t" {{
      driver = "raw_exec"
      kill_timeout = "2s"
      config {{
        command = "/bin/sh"
        args    = ["-c", {script:?}]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
}}
"#
    )
}

/// Runs `hcl` with `job run` and returns the ID of its running allocation.
fn run_job(agent: &DevAgent, name: &str, hcl: &str) -> String {
    wait_for("the dev node to be ready", Duration::from_secs(30), || {
        let (_, nodes) = agent.get_json("/v1/nodes");
        nodes
            .as_array()?
            .iter()
            .any(|n| n["Status"] == "ready")
            .then_some(())
    });
    let file = agent.dir.path().join(format!("{name}.hcl"));
    std::fs::write(&file, hcl).unwrap();
    let out = agent.cli(&["job", "run", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "job run failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    wait_for("the alloc to run", Duration::from_secs(30), || {
        let (_, allocs) = agent.get_json(&format!("/v1/job/{name}/allocations"));
        allocs.as_array()?.iter().find_map(|a| {
            (a["ClientStatus"] == "running" && a["DesiredStatus"] == "run")
                .then(|| a["ID"].as_str().unwrap().to_string())
        })
    })
}

fn logs_contain(agent: &DevAgent, alloc: &str, needle: &str) -> Option<String> {
    let out = agent.cli(&["alloc", "logs", alloc]);
    let text = stdout(&out);
    text.contains(needle).then_some(text)
}

#[test]
fn alloc_logs_shows_output_and_follow_streams_new_lines() {
    let agent = DevAgent::start();
    let alloc = run_job(
        &agent,
        "talker",
        &job(
            "talker",
            "echo first-line; echo to-stderr >&2; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.3; done",
            "",
        ),
    );
    let text = wait_for("first-line in alloc logs", Duration::from_secs(20), || {
        logs_contain(&agent, &alloc, "first-line")
    });
    assert!(!text.contains("to-stderr"), "{text}");
    let err = agent.cli(&["alloc", "logs", "-stderr", &alloc[..8]]);
    assert!(stdout(&err).contains("to-stderr"), "{}", stdout(&err));
    // -tail -n 2: just the last two lines.
    let tail = stdout(&agent.cli(&["alloc", "logs", "-tail", "-n", "2", &alloc]));
    assert_eq!(tail.lines().count(), 2, "{tail:?}");

    // -f keeps streaming lines written after it started.
    let mut child = Command::new(drover_bin())
        .args(["alloc", "logs", "-f", &alloc, "t"])
        .env("NOMAD_ADDR", agent.addr())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let last_now = stdout(&agent.cli(&["alloc", "logs", &alloc]))
        .lines()
        .filter_map(|l| l.strip_prefix("tick-")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let wanted = format!("tick-{}\n", last_now + 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(&wanted) {
        assert!(
            Instant::now() < deadline,
            "follow did not show {wanted:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.extend(b);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(String::from_utf8_lossy(&seen).starts_with("first-line\n"));

    // The framed (JSON) form and the errors.
    let (code, _) = agent.get_json(&format!("/v1/client/fs/logs/{alloc}?task=nope"));
    assert_eq!(code, 404);
    let (code, _) = agent.get_json(&format!("/v1/client/fs/logs/{alloc}?type=bogus"));
    assert_eq!(code, 400);
    let (code, _) = agent.get_json("/v1/client/fs/logs/00000000-no-such-alloc?task=t");
    assert_eq!(code, 404);
    let r = reqwest::blocking::get(format!(
        "{}/v1/client/fs/logs/{alloc}?task=t&type=stdout&offset=0&origin=start",
        agent.addr()
    ))
    .unwrap();
    let body = r.text().unwrap();
    let first: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(first["File"], "t.stdout.0");
    assert!(
        first["Data"].is_string() && first["Offset"].is_u64(),
        "{first}"
    );
}

#[test]
fn alloc_exec_runs_a_command_with_the_tasks_env_and_dir() {
    let agent = DevAgent::start();
    let alloc = run_job(&agent, "execme", &job("execme", "exec sleep 3600", ""));
    let out = agent.cli(&[
        "alloc",
        "exec",
        &alloc,
        "sh",
        "-c",
        "echo task=$NOMAD_TASK_NAME; pwd; echo oops >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("task=t"), "{text}");
    assert!(text.contains(&format!("{alloc}/t")), "cwd: {text}");
    assert!(stderr(&out).contains("oops"));
    // Unknown task: a sentence, not a hang.
    let out = agent.cli(&["alloc", "exec", "-task", "nope", &alloc, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn alloc_restart_and_signal_act_on_the_running_task() {
    let agent = DevAgent::start();
    let alloc = run_job(
        &agent,
        "restartme",
        &job(
            "restartme",
            "trap 'echo got-hup' HUP; echo started; while true; do sleep 0.2; done",
            "",
        ),
    );
    wait_for("started", Duration::from_secs(20), || {
        logs_contain(&agent, &alloc, "started")
    });
    let out = agent.cli(&["alloc", "signal", "-s", "SIGHUP", &alloc, "t"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the trap to fire", Duration::from_secs(20), || {
        logs_contain(&agent, &alloc, "got-hup")
    });
    let out = agent.cli(&["alloc", "restart", &alloc]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = wait_for("a second start", Duration::from_secs(30), || {
        logs_contain(&agent, &alloc, "started").filter(|t| t.matches("started").count() >= 2)
    });
    assert!(text.matches("started").count() >= 2);
    // The servers hear of it with the next status batch.
    let events = wait_for("the restart event", Duration::from_secs(10), || {
        let (_, a) = agent.get_json(&format!("/v1/allocation/{alloc}"));
        let events: Vec<String> = a["TaskStates"]["t"]["Events"]
            .as_array()?
            .iter()
            .map(|e| e["Type"].as_str().unwrap_or_default().to_string())
            .collect();
        events
            .contains(&"Restart Signaled".to_string())
            .then_some(events)
    });
    assert!(events.contains(&"Signaling".into()), "{events:?}");
}

#[test]
fn alloc_status_stats_shows_usage_next_to_reservations() {
    let agent = DevAgent::start();
    let alloc = run_job(
        &agent,
        "busy",
        &job(
            "busy",
            "head -c 20000000 /dev/zero | tail -c 1 >/dev/null; exec sleep 3600",
            "",
        ),
    );
    let (code, stats) = agent.get_json(&format!("/v1/client/allocation/{alloc}/stats"));
    assert_eq!(code, 200, "{stats}");
    assert!(
        stats["Tasks"]["t"]["ResourceUsage"]["MemoryStats"]["RSS"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(stats["ResourceUsage"]["CpuStats"]["Percent"].is_number());
    let out = agent.cli(&["alloc", "status", "-stats", &alloc]);
    let text = stdout(&out);
    assert!(text.contains("Task Resources"), "{text}{}", stderr(&out));
    assert!(
        text.contains("/50 MHz") && text.contains("/32 MiB"),
        "{text}"
    );
    let (code, host) = agent.get_json("/v1/client/stats");
    assert_eq!(code, 200);
    assert!(host["Memory"]["Total"].as_u64().unwrap() > 0, "{host}");
    assert!(!host["CPU"].as_array().unwrap().is_empty());
    let (code, ls) = agent.get_json(&format!("/v1/client/fs/ls/{alloc}?path=alloc/logs"));
    assert_eq!(code, 200);
    assert!(ls
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["Name"] == "t.stdout.0"));
    let (code, _) = agent.get_json(&format!("/v1/client/fs/cat/{alloc}?path=../../etc/passwd"));
    assert_eq!(code, 400);
}

#[test]
fn log_rotation_keeps_max_files() {
    let agent = DevAgent::start();
    // ~1 MiB per second into a log rotated at 1 MiB, keeping 3 files.
    let hcl = job(
        "chatty",
        "i=0; while true; do i=$((i+1)); echo mark-$i; head -c 262144 /dev/zero | tr '\\0' 'x'; echo; sleep 0.25; done",
        "",
    )
    .replace(
        "      resources {",
        "      logs {\n        max_files = 3\n        max_file_size = 1\n      }\n      resources {",
    );
    let alloc = run_job(&agent, "chatty", &hcl);
    let logs = agent
        .data_dir()
        .join(format!("client/alloc/{alloc}/alloc/logs"));
    let stdout_files = || -> Vec<String> {
        std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("t.stdout."))
            .collect()
    };
    // The highest `mark-N` line in a log file (each chunk the task writes starts with one).
    let last_mark = |name: &str| -> u64 {
        let text = std::fs::read(logs.join(name)).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.strip_prefix("mark-")?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    wait_for("three rotated files", Duration::from_secs(40), || {
        logs.join("t.stdout.2").exists().then_some(())
    });
    // Let it rotate at least twice more: output written from now on reaches `.2` only
    // after two rotations (`.0` is copied to `.1`, `.1` renamed to `.2`). Never more than
    // three files on the way, none far past 1 MiB.
    let seen = ["t.stdout.0", "t.stdout.1", "t.stdout.2"]
        .map(&last_mark)
        .into_iter()
        .max()
        .unwrap_or(0);
    wait_for("two more rotations", Duration::from_secs(40), || {
        let files = stdout_files();
        assert!(files.len() <= 3, "{files:?}");
        (last_mark("t.stdout.2") > seen).then_some(())
    });
    let files = stdout_files();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let len = std::fs::metadata(logs.join(f)).unwrap().len();
        assert!(len < 3 * 1024 * 1024, "{f} is {len} bytes");
    }
    let _ = agent.cli(&["job", "stop", "chatty"]);
}

#[test]
fn alloc_reports_healthy_after_min_healthy_time() {
    let agent = DevAgent::start();
    let alloc = run_job(
        &agent,
        "healthy",
        &job(
            "healthy",
            "exec sleep 3600",
            "migrate {\n      min_healthy_time = \"1s\"\n      healthy_deadline = \"1m\"\n    }",
        ),
    );
    wait_for("the alloc to be healthy", Duration::from_secs(20), || {
        let (_, a) = agent.get_json(&format!("/v1/allocation/{alloc}"));
        (a["DeploymentStatus"]["Healthy"] == true).then_some(())
    });
    // A task that keeps failing is unhealthy.
    let alloc = run_job(
        &agent,
        "flaky",
        &job(
            "flaky",
            "sleep 0.3; exit 1",
            "migrate {\n      min_healthy_time = \"5s\"\n    }\n    restart {\n      attempts = 0\n      mode = \"fail\"\n    }",
        ),
    );
    wait_for("the alloc to be unhealthy", Duration::from_secs(20), || {
        let (_, a) = agent.get_json(&format!("/v1/allocation/{alloc}"));
        (a["DeploymentStatus"]["Healthy"] == false).then_some(())
    });
}

#[test]
fn prestart_and_poststop_tasks_run_in_order_and_artifacts_arrive_first() {
    let agent = DevAgent::start();
    // A loopback file server for the artifact.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            use std::io::Write;
            let body = "artifact-body";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let shared = "${NOMAD_ALLOC_DIR}/order";
    let hcl = format!(
        r#"
job "ordered" {{
  datacenters = ["dc1"]
  type = "service"
  group "g" {{
    task "init" {{
      driver = "raw_exec"
      lifecycle {{
        hook = "prestart"
      }}
      config {{
        command = "/bin/sh"
        args = ["-c", "sleep 1; echo init >> {shared}"]
      }}
    }}
    task "main" {{
      driver = "raw_exec"
      kill_timeout = "2s"
      artifact {{
        source = "http://127.0.0.1:{port}/files/data.txt"
      }}
      config {{
        command = "/bin/sh"
        args = ["-c", "echo main-$(cat local/data.txt) >> {shared}; exec sleep 3600"]
      }}
    }}
    task "cleanup" {{
      driver = "raw_exec"
      lifecycle {{
        hook = "poststop"
      }}
      config {{
        command = "/bin/sh"
        args = ["-c", "echo cleanup >> {shared}"]
      }}
    }}
  }}
}}
"#
    );
    let alloc = run_job(&agent, "ordered", &hcl);
    let order = agent
        .data_dir()
        .join(format!("client/alloc/{alloc}/alloc/order"));
    wait_for("main to start after init", Duration::from_secs(20), || {
        let t = std::fs::read_to_string(&order).ok()?;
        t.contains("main").then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&order).unwrap(),
        "init\nmain-artifact-body\n"
    );
    let out = agent.cli(&["job", "stop", "ordered"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the poststop task to run", Duration::from_secs(30), || {
        let t = std::fs::read_to_string(&order).ok()?;
        t.contains("cleanup").then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&order).unwrap(),
        "init\nmain-artifact-body\ncleanup\n"
    );
}

#[test]
fn kill_9_and_restart_keeps_the_raw_exec_pid_and_job_stop_leaves_no_orphans() {
    let mut agent = DevAgent::start();
    // The task forks a background sleep that outlives nothing.
    let alloc = run_job(
        &agent,
        "forker",
        &job(
            "forker",
            "sleep 3600 & echo $! > grandchild.pid; echo up; wait",
            "",
        ),
    );
    let pid_file = agent
        .data_dir()
        .join(format!("client/alloc/{alloc}/t/grandchild.pid"));
    let grandchild: i32 = wait_for("the grandchild", Duration::from_secs(20), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let state = |agent: &DevAgent| {
        let (_, a) = agent.get_json(&format!("/v1/allocation/{alloc}"));
        a
    };
    let started_before = state(&agent)["TaskStates"]["t"]["StartedAt"].clone();
    let pids_before = agent.task_pids();
    agent.kill9();
    agent.restart_and_wait_reattached(1, Duration::from_secs(30));
    let a = state(&agent);
    assert_eq!(a["TaskStates"]["t"]["Restarts"], 0, "{a}");
    assert_eq!(a["TaskStates"]["t"]["StartedAt"], started_before);
    assert!(pid_alive(grandchild));
    for p in &pids_before {
        assert!(
            pid_alive(*p),
            "task process {p} did not survive the agent restart"
        );
    }
    let out = agent.cli(&["job", "stop", "forker"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the grandchild to be gone", Duration::from_secs(30), || {
        (!pid_alive(grandchild)).then_some(())
    });
    assert!(agent.task_pids().is_empty(), "{:?}", agent.task_pids());
}

#[test]
fn every_server_relays_a_followed_log_stream_from_the_node_running_the_alloc() {
    use common::cluster::{allocs, run_job, running, Cluster};
    use std::io::BufRead;
    // Three servers and one client agent in their own processes: a server answers
    // `/v1/client/*` by relaying to the node's HTTP address (no client routes of its own).
    let cluster = Cluster::start(&[]);
    let _clients = cluster.start_clients(1);
    let hcl = job(
        "ticker",
        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done",
        "",
    );
    run_job(&cluster, "ticker", &hcl);
    let alloc = wait_for("the ticker running", Duration::from_secs(60), || {
        let a = allocs(&cluster, "ticker");
        running(&a)
            .first()
            .and_then(|a| a["ID"].as_str().map(str::to_string))
    });
    let tick = |line: &str| line.trim().strip_prefix("tick-")?.parse::<u64>().ok();
    for server in &cluster.servers {
        // `follow=true` never ends: lines written after the request arrive only if the
        // relay streams the body instead of waiting for its end.
        let resp = reqwest::blocking::Client::new()
            .get(format!(
                "{}/v1/client/fs/logs/{alloc}?task=t&type=stdout&follow=true&plain=true",
                server.http()
            ))
            .timeout(Duration::from_secs(60))
            .send()
            .expect("GET a followed log through a server");
        assert_eq!(resp.status().as_u16(), 200, "{}", server.name);
        let mut lines = std::io::BufReader::new(resp).lines();
        let first = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| tick(&l))
            .expect("a tick line in the relayed stream");
        let later = lines
            .map_while(Result::ok)
            .find_map(|l| tick(&l).filter(|n| *n >= first + 3))
            .unwrap_or_else(|| panic!("the stream via {} stopped after tick-{first}", server.name));
        assert!(later > first);
    }
    assert!(cluster.cli(&["job", "stop", "ticker"]).status.success());
}
