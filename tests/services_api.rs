//! The services API through the real binary, with the test acting as the client agent:
//! it registers instances on the RPC listener with the dev node's secret, then reads them
//! back (list, info, filter, choose, paging, blocking queries, the CLI), and checks that a
//! wrong secret, another node's allocation or an unknown one is refused, and that
//! purging the job or the allocation failing removes what it registered.

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET_HEADER: &str = "X-Nomad-Node-Secret";

struct Harness {
    agent: DevAgent,
    rpc: u16,
    http: Client,
    node_id: String,
    secret: String,
}

impl Harness {
    fn start() -> Harness {
        let rpc = free_port();
        let agent = DevAgent::start_with_config(&format!("ports {{\n  rpc = {rpc}\n}}\n"));
        wait_for("the dev node to be ready", Duration::from_secs(30), || {
            let (_, v) = agent.get_json("/v1/nodes");
            (v.as_array()?.first()?["Status"] == "ready").then_some(())
        });
        let dir = agent.data_dir().join("client");
        wait_for(
            "the agent to keep its node secret",
            Duration::from_secs(30),
            || dir.join("node-secret").exists().then_some(()),
        );
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        let http = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Harness {
            node_id: read("node-id"),
            secret: read("node-secret"),
            agent,
            rpc,
            http,
        }
    }

    /// Submit a raw_exec job of `count` sleeping tasks (no restarts, no reschedules) and
    /// return its running allocations' IDs.
    fn run_job(&self, id: &str, count: usize) -> Vec<String> {
        let job = json!({"Job": {"ID": id, "Type": "service",
            "TaskGroups": [{"Name": "g", "Count": count,
                "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": false},
                "Tasks": [{"Name": "t", "Driver": "raw_exec",
                    "Config": {"command": "/bin/sleep", "args": ["300"]},
                    "Resources": {"CPU": 20, "MemoryMB": 16}}]}]}});
        let r = self
            .http
            .put(format!("{}/v1/jobs", self.agent.addr()))
            .json(&job)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
        wait_for(
            &format!("{count} running allocations of {id}"),
            Duration::from_secs(60),
            || {
                let (_, v) = self.agent.get_json(&format!("/v1/job/{id}/allocations"));
                let ids: Vec<String> = v
                    .as_array()?
                    .iter()
                    .filter(|a| a["ClientStatus"] == "running")
                    .map(|a| a["ID"].as_str().unwrap().to_string())
                    .collect();
                (ids.len() == count).then_some(ids)
            },
        )
    }

    /// `PUT /v1/internal/node/:node/services` on the RPC listener.
    fn put_services(&self, node: &str, secret: Option<&str>, body: &Value) -> (u16, String) {
        let mut req = self
            .http
            .put(format!(
                "http://127.0.0.1:{}/v1/internal/node/{node}/services",
                self.rpc
            ))
            .json(body);
        if let Some(s) = secret {
            req = req.header(SECRET_HEADER, s);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn register(&self, regs: &[Value]) {
        let (status, text) =
            self.put_services(&self.node_id, Some(&self.secret), &json!({"Upsert": regs}));
        assert_eq!(status, 200, "{text}");
    }

    /// A GET on the public listener: status, body and the `X-Nomad-*` headers.
    fn get(&self, path_and_query: &str) -> (u16, Value, u64, Option<String>) {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.agent.addr()))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let index = header("X-Nomad-Index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let next = header("X-Nomad-NextToken");
        let text = r.text().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, index, next)
    }
}

/// A registration as an agent would send it, with node, namespace, job and datacenter
/// forged: the server must take those from its own state.
fn registration(alloc: &str, service: &str, tags: &[&str], port: u16) -> Value {
    json!({
        "ID": format!("_nomad-task-{alloc}-t-{service}-http"),
        "ServiceName": service,
        "AllocID": alloc,
        "NodeID": "forged-node",
        "Namespace": "forged-ns",
        "JobID": "forged-job",
        "Datacenter": "forged-dc",
        "Tags": tags,
        "Address": "127.0.0.1",
        "Port": port,
    })
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list: {v}"))
        .iter()
        .map(|r| r["ID"].as_str().unwrap().to_string())
        .collect()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn registered_services_are_listed_filtered_paged_watched_and_purged_with_their_job() {
    let h = Harness::start();
    let allocs = h.run_job("shop", 2);
    let (a1, a2) = (&allocs[0], &allocs[1]);
    let web1 = registration(a1, "web", &["traefik.enable=true", "v1"], 8001);
    let web2 = registration(a2, "web", &["v2"], 8002);
    let db = registration(a1, "db", &["primary"], 5432);

    // Refused: no secret, a wrong one, an unknown alloc, an alloc of another node.
    let body = json!({"Upsert": [web1]});
    for given in [None, Some("wrong")] {
        let (status, text) = h.put_services(&h.node_id, given, &body);
        assert_eq!(status, 403, "{given:?}: {text}");
        assert!(text.contains(SECRET_HEADER), "{text}");
    }
    let ghost = registration("no-such-alloc", "web", &[], 1);
    let (status, text) = h.put_services(&h.node_id, Some(&h.secret), &json!({"Upsert": [ghost]}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("does not exist"), "{text}");
    let r = h
        .http
        .put(format!(
            "http://127.0.0.1:{}/v1/internal/node/register",
            h.rpc
        ))
        .json(&json!({"Node": {"ID": "other-node", "Name": "other"}}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let other: Value = r.json().unwrap();
    let other_secret = other["SecretID"].as_str().unwrap().to_string();
    let (status, text) = h.put_services("other-node", Some(&other_secret), &body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not placed on node other-node"), "{text}");
    let bad_port = registration(a1, "web", &[], 8001);
    let mut bad_port = bad_port;
    bad_port["Port"] = json!(70000);
    let (status, text) =
        h.put_services(&h.node_id, Some(&h.secret), &json!({"Upsert": [bad_port]}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("port 70000"), "{text}");
    // The route is the RPC listener's only.
    let r = h
        .http
        .put(format!(
            "{}/v1/internal/node/{}/services",
            h.agent.addr(),
            h.node_id
        ))
        .header(SECRET_HEADER, &h.secret)
        .json(&json!({"Upsert": [web1]}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Nothing of that got in.
    let (_, v, _, _) = h.get("/v1/services");
    assert_eq!(v, json!([]), "refused registrations must not be stored");

    h.register(&[web1.clone(), web2.clone(), db.clone()]);

    // The list: per namespace, names with the union of their tags.
    let (status, v, index, _) = h.get("/v1/services");
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!([{"Namespace": "default", "Services": [
            {"ServiceName": "db", "Tags": ["primary"]},
            {"ServiceName": "web", "Tags": ["traefik.enable=true", "v1", "v2"]},
        ]}])
    );
    // Re-sending the same registrations (an agent restart) changes nothing.
    h.register(&[web1.clone(), web2.clone(), db.clone()]);
    assert_eq!(
        h.get("/v1/services").2,
        index,
        "an identical upsert moved the index"
    );

    // One service's instances, with node, namespace, job and datacenter from state.
    let (_, v, _, _) = h.get("/v1/service/web");
    assert_eq!(ids(&v).len(), 2, "{v}");
    for r in v.as_array().unwrap() {
        assert_eq!(r["NodeID"], h.node_id.as_str(), "{r}");
        assert_eq!(
            (&r["Namespace"], &r["JobID"], &r["Datacenter"]),
            (&json!("default"), &json!("shop"), &json!("dc1")),
            "{r}"
        );
        assert!(r["CreateIndex"].as_u64().unwrap() > 0, "{r}");
    }
    let (status, v, _, _) = h.get("/v1/service/nope");
    assert_eq!((status, v), (200, json!([])));

    // Filters (Traefik's), and a bad one as a 400 sentence naming the column.
    let f = enc(r#"Tags contains "traefik.enable=true""#);
    let (_, v, _, _) = h.get(&format!("/v1/service/web?filter={f}"));
    assert_eq!(ids(&v), vec![web1["ID"].as_str().unwrap().to_string()]);
    let (_, v, _, _) = h.get(&format!("/v1/services?filter={f}"));
    assert_eq!(v[0]["Services"].as_array().unwrap().len(), 1, "{v}");
    let (status, v, _, _) = h.get(&format!("/v1/service/web?filter={}", enc("Tags contains")));
    assert_eq!(status, 400, "{v}");
    assert!(v.as_str().unwrap().contains("column"), "{v}");

    // choose: n instances, the same ones for the same key.
    let (_, first, _, _) = h.get("/v1/service/web?choose=1%7Cclient-a");
    assert_eq!(ids(&first).len(), 1);
    for _ in 0..3 {
        assert_eq!(h.get("/v1/service/web?choose=1%7Cclient-a").1, first);
    }

    // Paging.
    let (_, p1, _, next) = h.get("/v1/service/web?per_page=1");
    let next = next.expect("a next token after the first page");
    let (_, p2, _, last) = h.get(&format!(
        "/v1/service/web?per_page=1&next_token={}",
        enc(&next)
    ));
    assert_eq!((ids(&p1).len(), ids(&p2).len(), last), (1, 1, None));
    assert_ne!(ids(&p1), ids(&p2));

    // The other lists take filters too.
    let (_, v, _, _) = h.get(&format!(
        "/v1/allocations?filter={}",
        enc(r#"JobID == "shop""#)
    ));
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let (_, v, _, _) = h.get(&format!("/v1/jobs?filter={}", enc(r#"ID == "nope""#)));
    assert_eq!(v, json!([]));
    let (status, _, _, _) = h.get(&format!("/v1/nodes?filter={}", enc("Status ==")));
    assert_eq!(status, 400);

    // By job and by allocation.
    assert_eq!(ids(&h.get("/v1/job/shop/services").1).len(), 3);
    assert_eq!(
        ids(&h.get(&format!("/v1/allocation/{a1}/services")).1).len(),
        2
    );

    // The CLI.
    let out = h.agent.cli(&["service", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("web") && text.contains("[traefik.enable=true,v1,v2]"),
        "{text}"
    );
    let out = h.agent.cli(&["service", "info", "web"]);
    let text = stdout(&out);
    assert!(
        text.contains("127.0.0.1:8001") && text.contains("shop"),
        "{text}"
    );
    let out = h.agent.cli(&["service", "info", "-verbose", "db"]);
    assert!(
        stdout(&out).contains(db["ID"].as_str().unwrap()),
        "{}",
        stdout(&out)
    );

    // A blocking query wakes on a change (and not before: it returns the new state).
    let (_, _, index, _) = h.get("/v1/service/web");
    let addr = h.agent.addr();
    let started = Instant::now();
    let watcher = std::thread::spawn(move || {
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .get(format!("{addr}/v1/service/web?index={index}&wait=30s"))
            .send()
            .unwrap();
        let idx: u64 = r.headers()["X-Nomad-Index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (idx, r.json::<Value>().unwrap())
    });
    let web2_id = web2["ID"].as_str().unwrap().to_string();
    let (status, text) = h.put_services(
        &h.node_id,
        Some(&h.secret),
        &json!({"DeleteIDs": [web2_id]}),
    );
    assert_eq!(status, 200, "{text}");
    let (woke_at, v) = watcher.join().unwrap();
    assert!(woke_at > index, "the watcher returned without a change");
    assert_eq!(ids(&v).len(), 1, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "it waited out its wait"
    );

    // The operator's delete; a second one is a 404.
    let db_id = db["ID"].as_str().unwrap();
    let del = |h: &Harness| {
        h.http
            .delete(format!("{}/v1/service/db/{}", h.agent.addr(), enc(db_id)))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(del(&h), 200);
    assert_eq!(del(&h), 404);
    assert_eq!(h.get("/v1/service/db").1, json!([]));

    // Purging the job removes what is left.
    let out = h.agent.cli(&["job", "stop", "-purge", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the job's services to go", Duration::from_secs(30), || {
        (h.get("/v1/services").1 == json!([])).then_some(())
    });
    // A late agent cannot bring one back.
    let (status, text) = h.put_services(&h.node_id, Some(&h.secret), &json!({"Upsert": [web1]}));
    assert!(status == 400 || status == 403, "{status}: {text}");
    assert_eq!(h.get("/v1/services").1, json!([]));
}

#[test]
fn an_allocation_that_fails_loses_its_registrations() {
    let h = Harness::start();
    let allocs = h.run_job("crashy", 1);
    let alloc = &allocs[0];
    h.register(&[registration(alloc, "api", &["x"], 9000)]);
    assert_eq!(ids(&h.get("/v1/service/api").1).len(), 1);
    // Kill the task: no restarts, so the allocation fails.
    let pids = h.agent.task_pids();
    assert!(!pids.is_empty(), "no task process found");
    for pid in pids {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    wait_for("the allocation to fail", Duration::from_secs(30), || {
        let (_, a) = h.agent.get_json(&format!("/v1/allocation/{alloc}"));
        (a["ClientStatus"] == "failed").then_some(())
    });
    assert_eq!(h.get("/v1/service/api").1, json!([]));
    assert_eq!(
        h.get(&format!("/v1/allocation/{alloc}/services")).1,
        json!([])
    );
}
