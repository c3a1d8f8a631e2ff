//! The agent's loops against a fake server on loopback: registration, heartbeats, the
//! blocking alloc watch, batched status reports, reattaching after an agent restart,
//! stopping on the server's desired status, and garbage collection of forgotten allocs.

use api::{AllocClientUpdate, Allocation, Node};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, put};
use axum::{Json, Router};
use client_agent::AgentConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Fake {
    nodes: Mutex<Vec<Node>>,
    heartbeats: Mutex<u64>,
    allocs: Mutex<(u64, Vec<Allocation>)>,
    changed: Notify,
    updates: Mutex<Vec<AllocClientUpdate>>,
}

impl Fake {
    fn set_allocs(&self, allocs: Vec<Allocation>) {
        let mut a = self.allocs.lock().unwrap();
        a.0 += 1;
        a.1 = allocs;
        self.changed.notify_waiters();
    }

    fn last_update(&self, alloc_id: &str) -> Option<AllocClientUpdate> {
        self.updates
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|u| u.id == alloc_id)
            .cloned()
    }
}

type S = State<Arc<Fake>>;

async fn register(
    State(f): S,
    Json(req): Json<api::NodeRegisterRequest>,
) -> Json<serde_json::Value> {
    f.nodes.lock().unwrap().push(req.node);
    Json(serde_json::json!({"HeartbeatTTL": 2_000_000_000i64, "Index": 1}))
}

async fn heartbeat(State(f): S, Path(_id): Path<String>) -> Json<serde_json::Value> {
    *f.heartbeats.lock().unwrap() += 1;
    Json(serde_json::json!({"HeartbeatTTL": 2_000_000_000i64, "Index": 1}))
}

async fn allocs(
    State(f): S,
    Path(_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> (HeaderMap, Json<Vec<Allocation>>) {
    let want: u64 = q.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let notified = f.changed.notified();
        {
            let a = f.allocs.lock().unwrap();
            if a.0 > want || Instant::now() > deadline {
                let mut h = HeaderMap::new();
                h.insert("X-Nomad-Index", a.0.to_string().parse().unwrap());
                return (h, Json(a.1.clone()));
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
}

async fn update(
    State(f): S,
    Path(_id): Path<String>,
    Json(req): Json<api::AllocUpdateRequest>,
) -> Json<serde_json::Value> {
    f.updates.lock().unwrap().extend(req.alloc);
    Json(serde_json::json!({"Index": 2}))
}

async fn fake_server() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    fake.allocs.lock().unwrap().0 = 1;
    let app = Router::new()
        .route("/v1/internal/node/register", put(register))
        .route("/v1/internal/node/{id}/heartbeat", put(heartbeat))
        .route("/v1/internal/node/{id}/allocs", put(update))
        .route("/v1/node/{id}/allocations", get(allocs))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, addr)
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alloc(id: &str, job_type: &str, script: &str) -> Allocation {
    let mut job = api::Job {
        id: format!("job-{id}"),
        job_type: job_type.into(),
        task_groups: vec![api::TaskGroup {
            name: "g".into(),
            tasks: vec![api::Task {
                name: "t".into(),
                driver: "raw_exec".into(),
                kill_timeout: api::secs(2),
                config: BTreeMap::from([
                    ("command".into(), serde_json::json!("/bin/sh")),
                    ("args".into(), serde_json::json!(["-c", script])),
                ]),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    Allocation {
        id: id.into(),
        name: format!("job-{id}.g[0]").into(),
        job_id: job.id.as_str().into(),
        task_group: "g".into(),
        desired_status: "run".into(),
        client_status: "pending".into(),
        job: Some(Arc::new(job)),
        ..Default::default()
    }
}

struct Agent {
    token: CancellationToken,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start_agent(data_dir: &std::path::Path, server: &str) -> Agent {
    let token = CancellationToken::new();
    let config = AgentConfig {
        data_dir: data_dir.to_path_buf(),
        // The first address is dead: the client must fail over to the second.
        servers: vec!["http://127.0.0.1:1".into(), server.to_string()],
        node_name: "test-node".into(),
        raw_exec_enabled: true,
        http_addr: "127.0.0.1:4646".into(),
        ..Default::default()
    };
    let join = tokio::spawn(client_agent::run(config, token.clone()));
    Agent { token, join }
}

impl Agent {
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.join)
            .await
            .expect("agent stops within 20s")
            .unwrap()
            .unwrap();
    }
}

fn read_pid(data_dir: &std::path::Path, alloc_id: &str) -> Option<i32> {
    std::fs::read_to_string(data_dir.join(format!("alloc/{alloc_id}/alloc/logs/t.stdout.0")))
        .ok()?
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_reports_reattaches_stops_and_collects_allocs() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, addr) = fake_server().await;
    let agent = start_agent(tmp.path(), &addr);

    // Registers as initializing, then as ready once local state is restored.
    let node = eventually("ready registration", || {
        fake.nodes
            .lock()
            .unwrap()
            .iter()
            .find(|n| n.status == "ready")
            .cloned()
    })
    .await;
    assert_eq!(fake.nodes.lock().unwrap()[0].status, "initializing");
    assert_eq!(node.name, "test-node");
    assert!(node.drivers.contains_key("raw_exec"));

    // A batch alloc completes; a service alloc runs. A stopped alloc is ignored.
    let mut ignored = alloc("ignored", "service", "exec sleep 30");
    ignored.desired_status = "stop".into();
    let service = alloc("svc", "service", "echo $$; exec sleep 30");
    fake.set_allocs(vec![
        alloc("batch", "batch", "echo done"),
        service.clone(),
        ignored,
    ]);
    eventually("batch complete", || {
        fake.last_update("batch")
            .filter(|u| u.client_status == "complete")
    })
    .await;
    eventually("service running", || {
        fake.last_update("svc")
            .filter(|u| u.client_status == "running")
    })
    .await;
    assert!(fake.last_update("ignored").is_none());
    assert!(!tmp.path().join("alloc/ignored").exists());
    let pid = eventually("service pid", || read_pid(tmp.path(), "svc")).await;
    let _guard = KillOnDrop(pid);
    eventually("a heartbeat", || {
        (*fake.heartbeats.lock().unwrap() > 0).then_some(())
    })
    .await;

    // The agent restarts: the task keeps running and is reattached, not restarted.
    agent.stop().await;
    assert!(alive(pid), "the task must survive an agent shutdown");
    let beats = *fake.heartbeats.lock().unwrap();
    let agent = start_agent(tmp.path(), &addr);
    // Once the restarted agent is registered and heartbeating, it has restored its allocs.
    eventually("second ready registration", || {
        let n = fake.nodes.lock().unwrap();
        (n.iter().filter(|n| n.status == "ready").count() == 2).then_some(())
    })
    .await;
    eventually("a heartbeat after restart", || {
        (*fake.heartbeats.lock().unwrap() > beats).then_some(())
    })
    .await;
    assert!(alive(pid));
    assert_eq!(
        read_pid(tmp.path(), "svc"),
        Some(pid),
        "the task was started again"
    );
    let restarts = fake
        .last_update("svc")
        .map(|u| u.task_states.get("t").unwrap().restarts);
    assert_eq!(restarts, Some(0));

    // The server stops the service alloc: the task is killed and the alloc completes.
    let mut stopped = service.clone();
    stopped.desired_status = "stop".into();
    stopped.alloc_modify_index = 5;
    fake.set_allocs(vec![alloc("batch", "batch", "echo done"), stopped]);
    let u = eventually("service complete", || {
        fake.last_update("svc")
            .filter(|u| u.client_status == "complete")
    })
    .await;
    let events: Vec<_> = u
        .task_states
        .get("t")
        .unwrap()
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(events.last(), Some(&"Killed"), "{events:?}");
    eventually("task gone", || (!alive(pid)).then_some(())).await;

    // The server garbage-collects everything: local state and alloc dirs go away.
    fake.set_allocs(vec![]);
    eventually("local state removed", || {
        let left = std::fs::read_dir(tmp.path().join("client-state"))
            .map(|d| d.count())
            .unwrap_or(0);
        (left == 0 && !tmp.path().join("alloc/svc").exists()).then_some(())
    })
    .await;
    agent.stop().await;
}

struct KillOnDrop(i32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
