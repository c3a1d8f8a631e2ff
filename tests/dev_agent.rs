//! The walking skeleton, end to end through the real binary: `drover agent -dev` runs a
//! raw_exec job, the CLI reports it, a `kill -9` loses nothing, and stopping kills the task.

mod common;

use common::*;
use std::time::Duration;

/// The job both tests run: a task that writes to stdout and stderr, then sleeps.
fn sleeper(name: &str) -> String {
    let script = "echo hello-from-drover; echo oops >&2; exec sleep 3600";
    raw_exec_job(name, script, 50, 32)
}

fn running_allocs(agent: &DevAgent, job: &str) -> Vec<serde_json::Value> {
    let (_, allocs) = agent.get_json(&format!("/v1/job/{job}/allocations"));
    allocs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["ClientStatus"] == "running" && a["DesiredStatus"] == "run")
        .collect()
}

#[test]
fn dev_agent_runs_a_raw_exec_job_end_to_end_and_survives_kill_9() {
    let mut agent = DevAgent::start();

    // The dev agent's own client registers as a ready node.
    agent.wait_node_ready();

    // job run: monitors the evaluation to placement.
    let out = agent.run_job("sleeper.hcl", &sleeper("sleeper"), &[]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "job run failed: {text}\n{}",
        stderr(&out)
    );
    assert!(text.contains("Monitoring evaluation"), "{text}");
    assert!(text.contains("Allocation \""), "{text}");
    assert!(text.contains("finished with status \"complete\""), "{text}");

    // The task is a real process, with its output captured under the alloc dir.
    let alloc = wait_for("the alloc to run", Duration::from_secs(30), || {
        running_allocs(&agent, "sleeper").into_iter().next()
    });
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    let pids = wait_for("the task process", Duration::from_secs(10), || {
        let p = agent.task_pids();
        (!p.is_empty()).then_some(p)
    });
    let logs = agent
        .data_dir()
        .join("client/alloc")
        .join(&alloc_id)
        .join("alloc/logs");
    wait_for(
        "stdout in the alloc's log dir",
        Duration::from_secs(10),
        || {
            let s = std::fs::read_to_string(logs.join("sleep.stdout.0")).ok()?;
            s.contains("hello-from-drover").then_some(())
        },
    );
    let err = std::fs::read_to_string(logs.join("sleep.stderr.0")).unwrap();
    assert!(err.contains("oops"), "stderr log: {err}");

    // The CLI reports it in Nomad's words.
    let status = stdout(&agent.cli(&["job", "status", "sleeper"]));
    assert!(status.contains("running"), "{status}");
    let list = stdout(&agent.cli(&["job", "status"]));
    assert!(list.contains("sleeper"), "{list}");
    let a = agent.cli(&["alloc", "status", &alloc_id[..8]]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(stdout(&a).contains("running"), "{}", stdout(&a));
    assert!(stdout(&a).contains("Started"), "{}", stdout(&a));

    // kill -9 the agent and start it again on the same data dir.
    let (_, evals_before) = agent.get_json("/v1/job/sleeper/evaluations");
    agent.kill9();
    assert!(
        pids.iter().all(|p| pid_alive(*p)),
        "tasks must outlive the agent"
    );
    agent.restart();
    let (code, job) = agent.get_json("/v1/job/sleeper");
    assert_eq!(code, 200, "the job survived the crash: {job}");
    assert_eq!(job["Version"], 0);
    let (_, versions) = agent.get_json("/v1/job/sleeper/versions");
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 1);
    let (_, evals_after) = agent.get_json("/v1/job/sleeper/evaluations");
    assert_eq!(
        evals_before.as_array().unwrap().len(),
        evals_after.as_array().unwrap().len()
    );
    let (code, alloc_after) = agent.get_json(&format!("/v1/allocation/{alloc_id}"));
    assert_eq!(code, 200);
    assert_eq!(alloc_after["ID"], alloc_id.as_str());
    // The cluster converges: exactly the desired count is running, on the same process.
    wait_for(
        "the job to be running again",
        Duration::from_secs(30),
        || (running_allocs(&agent, "sleeper").len() == 1).then_some(()),
    );
    assert!(
        pids.iter().all(|p| pid_alive(*p)),
        "the task was reattached, not restarted"
    );
    assert_eq!(agent.task_pids().len(), pids.len());

    // job stop kills the process and the job is dead (stopped).
    let out = agent.cli(&["job", "stop", "sleeper"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    wait_for("the task process to exit", Duration::from_secs(20), || {
        pids.iter().all(|p| !pid_alive(*p)).then_some(())
    });
    wait_for("the job to be dead", Duration::from_secs(20), || {
        let (_, j) = agent.get_json("/v1/job/sleeper");
        (j["Status"] == "dead").then_some(())
    });
    let status = stdout(&agent.cli(&["job", "status", "sleeper"]));
    assert!(status.contains("dead (stopped)"), "{status}");

    // -purge forgets it.
    let out = agent.cli(&["job", "stop", "-purge", "-detach", "sleeper"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the job to be purged", Duration::from_secs(10), || {
        (agent.get_json("/v1/job/sleeper").0 == 404).then_some(())
    });

    // SIGTERM shuts the agent down cleanly.
    let st = agent.terminate();
    assert!(st.success(), "agent exit status after SIGTERM: {st}");
}

#[test]
fn job_run_detach_returns_the_evaluation_id_at_once() {
    let agent = DevAgent::start();
    let out = agent.run_job("sleeper.hcl", &sleeper("detached"), &["-detach"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let eval_id = text
        .lines()
        .find_map(|l| l.strip_prefix("Evaluation ID: "))
        .unwrap_or_else(|| panic!("no evaluation id in {text}"))
        .trim()
        .to_string();
    let (code, eval) = agent.get_json(&format!("/v1/evaluation/{eval_id}"));
    assert_eq!(code, 200, "{eval}");
    assert_eq!(eval["JobID"], "detached");
    let out = agent.cli(&["job", "stop", "detached"]);
    assert!(out.status.success());
}

/// Holds a blocking query open on the agent (which keeps its HTTP server's graceful stop
/// waiting) and returns once a second request on the same connection has been answered,
/// so the blocking one is in the server's hands.
fn hold_a_blocking_query(agent: &DevAgent) -> std::net::TcpStream {
    use std::io::{BufRead, BufReader, Read, Write};
    let host = agent.addr().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req("/v1/status/leader").as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    r.by_ref()
        .take(len as u64)
        .read_to_end(&mut Vec::new())
        .unwrap();
    s.write_all(req("/v1/jobs?index=999999999&wait=60s").as_bytes())
        .unwrap();
    // Another connection's answer: the blocking request has long been read by now.
    assert_eq!(agent.get_json("/v1/status/leader").0, 200);
    s
}

#[test]
fn a_shutdown_held_up_past_its_grace_period_ends_the_process_anyway() {
    let mut agent = DevAgent::start_with_env(&[("DROVER_SHUTDOWN_GRACE_MS", "200")]);
    let _held = hold_a_blocking_query(&agent);
    let st = agent.terminate();
    assert_eq!(st.code(), Some(1), "exit status {st}");
    assert!(
        agent.log().contains("shutdown did not finish within"),
        "{}",
        agent.log()
    );
}

#[test]
fn a_second_signal_during_a_held_up_shutdown_ends_the_process_at_once() {
    let mut agent = DevAgent::start();
    let _held = hold_a_blocking_query(&agent);
    let pid = agent.pid() as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    wait_for(
        "the agent to start shutting down",
        Duration::from_secs(10),
        || agent.log().contains("caught SIGTERM").then_some(()),
    );
    let st = agent.terminate();
    assert_eq!(st.code(), Some(1), "exit status {st}");
    assert!(agent.log().contains("second signal"), "{}", agent.log());
}

/// `/v1/agent/health` is a 500 naming the client while its node has not registered (a
/// client-only agent whose server does not answer), and a 200 with both parts ok on a
/// dev agent once its node is ready: the signal a load balancer or a script waits on.
#[test]
fn agent_health_is_ok_only_once_the_node_is_registered_ready() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("127.0.0.1:{}", free_port());
    let mut client =
        common::cluster::ClientProc::new("lonely", dir.path().join("c"), vec![nowhere]);
    client.spawn();
    let url = format!("http://127.0.0.1:{}/v1/agent/health", client.http_port);
    let (status, body) = wait_for(
        "the client-only agent to answer",
        Duration::from_secs(30),
        || {
            let r = reqwest::blocking::get(&url).ok()?;
            Some((r.status().as_u16(), r.json::<serde_json::Value>().ok()?))
        },
    );
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["client"]["ok"], false, "{body}");
    assert!(
        body.get("server").is_none(),
        "a client-only agent has no server part: {body}"
    );
    drop(client);

    let agent = DevAgent::start();
    let r = reqwest::blocking::get(format!("{}/v1/agent/health", agent.addr())).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["client"]["ok"], true, "{body}");
    assert_eq!(body["server"]["ok"], true, "{body}");
    let (_, nodes) = agent.get_json("/v1/nodes");
    assert_eq!(nodes[0]["Status"], "ready", "{nodes}");
}
