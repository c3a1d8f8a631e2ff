//! Bad input gets a clear error and never takes the agent down.

mod common;

use common::*;
use reqwest::blocking::Client;
use std::time::Duration;

const ROUTES: &[&str] = &[
    "/v1/jobs",
    "/v1/jobs/parse",
    "/v1/validate/job",
    "/v1/job/x",
    "/v1/job/x/allocations",
    "/v1/job/x/evaluations",
    "/v1/job/x/summary",
    "/v1/job/x/versions",
    "/v1/allocations",
    "/v1/allocation/x",
    "/v1/evaluations",
    "/v1/evaluation/x",
    "/v1/evaluation/x/allocations",
    "/v1/nodes",
    "/v1/node/x",
    "/v1/node/x/allocations",
    "/v1/status/leader",
    "/v1/status/peers",
    "/v1/agent/self",
    "/v1/internal/node/register",
    "/v1/internal/node/x/heartbeat",
    "/v1/internal/node/x/allocs",
    "/v1/internal/raft/append",
    "/v1/internal/raft/vote",
    "/v1/internal/raft/snapshot",
    "/v1/nope",
    "/ui",
];

const GARBAGE: &[&str] = &[
    "",
    "not json",
    "{",
    "[]",
    "null",
    "{\"Job\": 5}",
    "{\"Job\": {\"ID\": 7}}",
    "{\"Job\": {}}",
    "{\"Job\": {\"ID\": \"a b\", \"TaskGroups\": [{}]}}",
    "{\"Node\": {\"ID\": \"\"}}",
    "{\"Alloc\": [{\"ID\": \"x\", \"ClientStatus\": \"bogus\"}]}",
    "\u{0}\u{1}\u{2}",
];

#[test]
fn garbage_to_every_route_gets_a_client_error_and_the_agent_survives() {
    let agent = DevAgent::start();
    let http = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for route in ROUTES {
        for method in ["PUT", "POST", "DELETE", "GET"] {
            for body in GARBAGE {
                let url = format!("{}{route}?index=abc&wait=zz", agent.addr());
                let r = http
                    .request(method.parse().unwrap(), &url)
                    .body(body.to_string())
                    .send()
                    .unwrap_or_else(|e| panic!("{method} {route} with {body:?}: {e}"));
                let status = r.status().as_u16();
                let text = r.text().unwrap_or_default();
                assert!(
                    status < 500 || status == 503,
                    "{method} {route} with {body:?} gave {status}: {text}"
                );
                if status >= 400 {
                    assert!(
                        !text.trim().is_empty(),
                        "{method} {route}: an error without a sentence"
                    );
                }
            }
        }
    }
    // Still serving.
    assert_eq!(agent.get_json("/v1/agent/self").0, 200);
}

#[test]
fn api_errors_carry_status_and_sentence() {
    let agent = DevAgent::start();
    let http = Client::new();
    let (code, body) = agent.get_json("/v1/job/no-such-job");
    assert_eq!(code, 404);
    assert!(body.as_str().unwrap().contains("not found"), "{body}");

    let r = http
        .put(format!("{}/v1/jobs", agent.addr()))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("invalid JSON"));

    // An oversized body is refused from its Content-Length, before it is read.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    )
    .unwrap();
    s.write_all(&[b'x'; 4096]).unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    let (code, _) = agent.get_json("/v1/jobs?index=notanumber");
    assert_eq!(code, 400);
    let (code, body) = agent.get_json("/ui");
    assert_eq!(code, 200);
    assert!(body.as_str().unwrap().contains("<html"));
}

#[test]
fn blocking_queries_wait_for_a_newer_index() {
    let agent = DevAgent::start();
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/v1/jobs", agent.addr()))
        .send()
        .unwrap();
    let index: u64 = r.headers()["X-Nomad-Index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Nothing changes: the query returns after its wait with the same index.
    let start = std::time::Instant::now();
    let r = http
        .get(format!("{}/v1/jobs?index={index}&wait=300ms", agent.addr()))
        .send()
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        r.headers()["X-Nomad-Index"].to_str().unwrap(),
        index.to_string()
    );
    // A registration wakes a waiting query with a newer index.
    let addr = agent.addr();
    let waiter = std::thread::spawn(move || {
        let r = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .get(format!("{addr}/v1/jobs?index={index}&wait=20s"))
            .send()
            .unwrap();
        let i: u64 = r.headers()["X-Nomad-Index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (i, r.text().unwrap())
    });
    let job = serde_json::json!({"Job": {"ID": "wake", "Type": "batch", "TaskGroups": [{"Name": "g", "Count": 0, "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}]}]}});
    let r = http
        .put(format!("{}/v1/jobs", agent.addr()))
        .json(&job)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let (i, body) = waiter.join().unwrap();
    assert!(i > index);
    assert!(body.contains("wake"));
}

#[test]
fn a_jobspec_syntax_error_names_file_line_and_column() {
    let agent = DevAgent::start();
    let f = agent.dir.path().join("broken.hcl");
    std::fs::write(
        &f,
        "job \"x\" {\n  group \"g\" {\n    count = = 2\n  }\n}\n",
    )
    .unwrap();
    let out = agent.cli(&["job", "run", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out) + &stdout(&out);
    assert!(err.contains("broken.hcl:3:"), "{err}");
}
