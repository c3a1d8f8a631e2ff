//! The agent stays inside the alloc dir even when a hostile name reaches it: the servers
//! refuse such task names at registration (api::Job::validate), so this drives the real
//! agent (`client_agent::run`, raw_exec) from a fake server on loopback that hands it
//! allocations whose task is called `../../../../x` or an absolute path.

use api::{AllocClientUpdate, Allocation};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, put};
use axum::{Json, Router};
use client_agent::AgentConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Fake {
    allocs: Mutex<Vec<Allocation>>,
    updates: Mutex<Vec<AllocClientUpdate>>,
}

type S = State<Arc<Fake>>;

async fn register(
    State(_f): S,
    Json(_req): Json<api::NodeRegisterRequest>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({"HeartbeatTTL": 2_000_000_000i64, "Index": 1}))
}

async fn heartbeat(State(_f): S, Path(_id): Path<String>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"HeartbeatTTL": 2_000_000_000i64, "Index": 1}))
}

async fn list_allocs(
    State(f): S,
    Path(_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> (HeaderMap, Json<Vec<Allocation>>) {
    // Index 2 holds the allocations; a watcher that has seen it waits (briefly) for more.
    let want: u64 = q.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    if want >= 2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut h = HeaderMap::new();
    h.insert("X-Nomad-Index", "2".parse().unwrap());
    (h, Json(f.allocs.lock().unwrap().clone()))
}

async fn update(
    State(f): S,
    Path(_id): Path<String>,
    Json(req): Json<api::AllocUpdateRequest>,
) -> Json<serde_json::Value> {
    f.updates.lock().unwrap().extend(req.alloc);
    Json(serde_json::json!({"Index": 3}))
}

async fn fake_server(allocs: Vec<Allocation>) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake {
        allocs: Mutex::new(allocs),
        ..Default::default()
    });
    let app = Router::new()
        .route("/v1/internal/node/register", put(register))
        .route("/v1/internal/node/{id}/heartbeat", put(heartbeat))
        .route("/v1/internal/node/{id}/allocs", put(update))
        .route("/v1/node/{id}/allocations", get(list_allocs))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, addr)
}

fn alloc(id: &str, task: &str) -> Allocation {
    let mut job = api::Job {
        id: format!("job-{id}"),
        job_type: "batch".into(),
        task_groups: vec![api::TaskGroup {
            name: "g".into(),
            tasks: vec![api::Task {
                name: task.into(),
                driver: "raw_exec".into(),
                config: BTreeMap::from([
                    ("command".into(), serde_json::json!("/bin/sh")),
                    (
                        "args".into(),
                        serde_json::json!(["-c", "echo escaped > marker"]),
                    ),
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

/// Removes a path the old agent would have created, if a regression ever creates it.
struct Cleanup(Vec<std::path::PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_names_that_leave_the_alloc_dir_fail_the_task_and_create_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // `<data>/alloc/<id>/../../../../<name>` is the test's temp dir's parent; the log
    // files of the old agent landed at `<data>/alloc/<id>/alloc/logs/../../../../<name>`.
    let unique = format!("drover-escape-{}", std::process::id());
    let relative = format!("../../../../{unique}");
    let absolute = tmp.path().join("abs-task");
    let outside = [
        tmp.path().parent().unwrap().join(&unique),
        data.join(format!("{unique}.stdout.0")),
        data.join(format!("{unique}.stderr.0")),
        absolute.clone(),
        std::path::PathBuf::from(format!("{}.stdout.0", absolute.display())),
    ];
    let _cleanup = Cleanup(outside.to_vec());
    let (fake, addr) = fake_server(vec![
        alloc("a-rel", &relative),
        alloc("a-abs", absolute.to_str().unwrap()),
    ])
    .await;
    let token = CancellationToken::new();
    let config = AgentConfig {
        data_dir: data.clone(),
        servers: vec![addr],
        node_name: "escape-node".into(),
        raw_exec_enabled: true,
        http_addr: "127.0.0.1:4646".into(),
        ..Default::default()
    };
    let join = tokio::spawn(client_agent::run(config, token.clone()));

    for (id, task) in [
        ("a-rel", relative.as_str()),
        ("a-abs", absolute.to_str().unwrap()),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let state = loop {
            let found = fake
                .updates
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|u| u.id == id && u.client_status == "failed")
                .and_then(|u| u.task_states.get(task).cloned());
            if let Some(s) = found {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {id} to fail"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(state.state, "dead");
        assert!(state.failed);
        let setup = state
            .events
            .iter()
            .find(|e| e.event_type == "Setup Failure")
            .unwrap_or_else(|| panic!("no Setup Failure event for {id}: {:?}", state.events));
        assert!(
            setup.display_message.contains("task name")
                && setup.display_message.contains("plain name"),
            "{}",
            setup.display_message
        );
        // Never started: refused before the driver was asked.
        assert!(state.events.iter().all(|e| e.event_type != "Started"));
    }
    for p in &outside {
        assert!(
            !p.exists(),
            "{} was created outside the alloc dir",
            p.display()
        );
    }
    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), join)
        .await
        .expect("agent stops within 20s")
        .unwrap()
        .unwrap();
}
