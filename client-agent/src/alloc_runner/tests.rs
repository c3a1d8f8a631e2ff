//! Tests of the alloc runner over real raw_exec tasks.

use super::*;
use crate::driver::process;
use crate::driver::EXIT_UNKNOWN_AFTER_RECOVERY;
use api::{ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, ALLOC_CLIENT_RUNNING};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

struct Fixture {
    _tmp: tempfile::TempDir,
    deps: AllocRunnerDeps,
    /// Process groups to kill whatever happens in the test.
    pgids: std::sync::Mutex<Vec<i32>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for pg in self.pgids.lock().unwrap().iter() {
            let _ = process::signal_group(*pg, Signal::SIGKILL);
        }
    }
}

impl Fixture {
    fn new(raw_exec: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let deps = AllocRunnerDeps {
            data_dir: tmp.path().to_path_buf(),
            node: Arc::new(Node {
                id: "node-1".into(),
                datacenter: "dc1".into(),
                ..Default::default()
            }),
            drivers: Drivers::from_config(raw_exec),
            store: StateStore::new(tmp.path()),
            updates: crate::reporter::PendingUpdates::new(),
            ports: PortAllocator::new(),
            services: crate::services::ServiceRegistry::new(),
            client: None,
            shutdown: CancellationToken::new(),
        };
        Fixture {
            _tmp: tmp,
            deps,
            pgids: Default::default(),
        }
    }

    fn state(&self, alloc_id: &str) -> Option<LocalAllocState> {
        self.deps
            .store
            .load_all()
            .unwrap()
            .into_iter()
            .find(|s| s.alloc.id == alloc_id)
    }

    /// Polls the persisted state until `cond` holds (10 s at most).
    async fn wait_state(
        &self,
        alloc_id: &str,
        cond: impl Fn(&LocalAllocState) -> bool,
    ) -> LocalAllocState {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.state(alloc_id) {
                for t in st.tasks.values() {
                    if let Some(h) = &t.handle {
                        let mut pg = self.pgids.lock().unwrap();
                        if !pg.contains(&h.pgid) {
                            pg.push(h.pgid);
                        }
                    }
                }
                if cond(&st) {
                    return st;
                }
                assert!(
                    Instant::now() < deadline,
                    "condition not reached; last state: {st:#?}"
                );
            } else {
                assert!(Instant::now() < deadline, "no state saved for {alloc_id}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn alloc(job_type: &str, tasks: &[(&str, &str)], policy: RestartPolicy) -> Allocation {
    let mut job = api::Job {
        id: "j".into(),
        job_type: job_type.into(),
        task_groups: vec![api::TaskGroup {
            name: "g".into(),
            restart_policy: Some(policy),
            tasks: tasks
                .iter()
                .map(|(name, script)| api::Task {
                    name: name.to_string(),
                    driver: "raw_exec".into(),
                    kill_timeout: api::secs(2),
                    config: BTreeMap::from([
                        ("command".into(), serde_json::json!("/bin/sh")),
                        ("args".into(), serde_json::json!(["-c", script])),
                    ]),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    Allocation {
        id: api::new_id().into(),
        name: "j.g[0]".into(),
        job_id: "j".into(),
        task_group: "g".into(),
        desired_status: api::ALLOC_DESIRED_RUN.into(),
        job: Some(Arc::new(job)),
        ..Default::default()
    }
}

fn quick_policy(attempts: i64, mode: &str) -> RestartPolicy {
    RestartPolicy {
        attempts,
        interval: api::secs(600),
        delay: 10_000_000,
        mode: mode.into(),
        render_templates: false,
    }
}

fn event_types(t: &LocalTaskState) -> Vec<String> {
    t.state
        .events
        .iter()
        .map(|e| e.event_type.to_string())
        .collect()
}

fn local(a: &Allocation) -> LocalAllocState {
    LocalAllocState {
        alloc: a.clone(),
        ..Default::default()
    }
}

#[tokio::test]
async fn batch_task_exiting_zero_completes_the_alloc() {
    let f = Fixture::new(true);
    let a = alloc("batch", &[("t", "exit 0")], quick_policy(3, "fail"));
    let h = spawn(f.deps.clone(), local(&a), false);
    let st = f
        .wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_COMPLETE)
        .await;
    let t = &st.tasks["t"];
    assert_eq!(t.state.state, TASK_STATE_DEAD);
    assert!(!t.state.failed);
    assert_eq!(t.state.restarts, 0);
    assert!(t.state.started_at.is_some() && t.state.finished_at.is_some());
    assert_eq!(
        event_types(t),
        ["Received", "Task Setup", "Started", "Terminated"]
    );
    let reported = f.deps.updates.take();
    assert_eq!(
        reported.last().unwrap().client_status,
        ALLOC_CLIENT_COMPLETE
    );
    h.destroy();
    h.join().await;
    assert!(f.state(&a.id).is_none());
}

#[tokio::test]
async fn failing_task_is_restarted_then_fails_the_alloc() {
    let f = Fixture::new(true);
    let a = alloc("service", &[("t", "exit 1")], quick_policy(2, "fail"));
    let h = spawn(f.deps.clone(), local(&a), false);
    let st = f
        .wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_FAILED)
        .await;
    let t = &st.tasks["t"];
    assert!(t.state.failed);
    assert_eq!(t.state.restarts, 2);
    let types = event_types(t);
    assert_eq!(types.iter().filter(|e| *e == "Restarting").count(), 2);
    assert_eq!(types.last().unwrap(), "Not Restarting");
    assert!(t.state.events.last().unwrap().detail().fails_task);
    h.destroy();
    h.join().await;
}

#[tokio::test]
async fn desired_stop_kills_tasks_and_completes_the_alloc() {
    let f = Fixture::new(true);
    let mut a = alloc(
        "service",
        &[("t", "exec sleep 30")],
        quick_policy(2, "fail"),
    );
    let h = spawn(f.deps.clone(), local(&a), false);
    let st = f
        .wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_RUNNING)
        .await;
    let pgid = st.tasks["t"].handle.as_ref().unwrap().pgid;
    a.desired_status = api::ALLOC_DESIRED_STOP.into();
    a.alloc_modify_index += 1;
    h.update(Arc::new(a.clone()));
    let st = f
        .wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_COMPLETE)
        .await;
    let t = &st.tasks["t"];
    assert_eq!(t.state.state, TASK_STATE_DEAD);
    assert!(!t.state.failed);
    let types = event_types(t);
    assert!(types.contains(&"Killing".to_string()), "{types:?}");
    assert_eq!(types.last().unwrap(), "Killed");
    assert!(!process::group_alive(pgid));
    h.destroy();
    h.join().await;
}

#[tokio::test]
async fn a_failed_task_kills_its_siblings() {
    let f = Fixture::new(true);
    let a = alloc(
        "service",
        &[("bad", "exit 2"), ("good", "exec sleep 30")],
        quick_policy(0, "fail"),
    );
    let h = spawn(f.deps.clone(), local(&a), false);
    let st = f
        .wait_state(&a.id, |s| {
            s.client_status == ALLOC_CLIENT_FAILED
                && s.tasks.values().all(|t| t.state.state == TASK_STATE_DEAD)
        })
        .await;
    assert!(st.tasks["bad"].state.failed);
    assert!(!st.tasks["good"].state.failed);
    assert!(event_types(&st.tasks["good"]).contains(&events::SIBLING_FAILED.to_string()));
    h.destroy();
    h.join().await;
}

#[tokio::test]
async fn missing_driver_fails_the_task() {
    let f = Fixture::new(false);
    let a = alloc("batch", &[("t", "exit 0")], quick_policy(3, "fail"));
    let h = spawn(f.deps.clone(), local(&a), false);
    let st = f
        .wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_FAILED)
        .await;
    let types = event_types(&st.tasks["t"]);
    assert!(types.contains(&"Driver Failure".to_string()), "{types:?}");
    h.destroy();
    h.join().await;
}

#[tokio::test]
async fn restart_reattaches_live_tasks_and_restarts_dead_ones() {
    let f = Fixture::new(true);
    let a = alloc(
        "service",
        &[("live", "exec sleep 30"), ("dies", "exec sleep 30")],
        quick_policy(2, "fail"),
    );
    let first = spawn(f.deps.clone(), local(&a), false);
    let st = f
        .wait_state(&a.id, |s| {
            s.client_status == ALLOC_CLIENT_RUNNING && s.tasks.values().all(|t| t.handle.is_some())
        })
        .await;
    // The agent stops: tasks keep running, their handles are on disk.
    f.deps.shutdown.cancel();
    first.join().await;
    let live = st.tasks["live"].handle.clone().unwrap();
    let dies = st.tasks["dies"].handle.clone().unwrap();
    assert!(process::is_same_process_alive(live.pid, live.start_time));
    // While the agent is away, one task dies.
    process::signal_group(dies.pgid, Signal::SIGKILL).unwrap();
    assert!(process::wait_group_gone(dies.pgid, Duration::from_secs(5)).await);

    // A new agent restores from local state.
    let mut deps = f.deps.clone();
    deps.shutdown = CancellationToken::new();
    deps.drivers = Drivers::from_config(true);
    let restored = f.state(&a.id).unwrap();
    let second = spawn(deps.clone(), restored, true);
    let st = f
        .wait_state(&a.id, |s| {
            s.tasks["dies"].state.restarts == 1 && s.tasks["dies"].handle.is_some()
        })
        .await;
    let l = &st.tasks["live"];
    assert_eq!(
        l.handle.as_ref().unwrap(),
        &live,
        "live task was not reattached"
    );
    assert_eq!(l.state.restarts, 0);
    assert_eq!(event_types(l).iter().filter(|e| *e == "Started").count(), 1);
    let d = &st.tasks["dies"];
    let term = d
        .state
        .events
        .iter()
        .find(|e| e.event_type == events::TERMINATED)
        .unwrap();
    assert_eq!(term.detail().exit_code, -1);
    assert_eq!(term.detail().message, EXIT_UNKNOWN_AFTER_RECOVERY);
    assert_ne!(d.handle.as_ref().unwrap().pid, dies.pid);
    assert_eq!(st.client_status, ALLOC_CLIENT_RUNNING);

    // The server forgot the alloc: everything is stopped and removed.
    let new_dies = d.handle.clone().unwrap();
    second.destroy();
    tokio::time::timeout(Duration::from_secs(20), second.join())
        .await
        .unwrap();
    assert!(!process::group_alive(live.pgid));
    assert!(!process::group_alive(new_dies.pgid));
    assert!(f.state(&a.id).is_none());
    assert!(!f.deps.data_dir.join("alloc").join(a.id.as_str()).exists());
}

/// Acknowledges the registry's requests as servers would, until the test ends.
fn ack_registrations(f: &Fixture) -> tokio::task::JoinHandle<()> {
    let reg = f.deps.services.clone();
    tokio::spawn(async move {
        loop {
            reg.ack_all();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn nomad_service(name: &str, port: &str, checks: Vec<api::ServiceCheck>) -> api::Service {
    api::Service {
        name: name.into(),
        port_label: port.into(),
        provider: "nomad".into(),
        checks,
        ..Default::default()
    }
}

#[tokio::test]
async fn desired_stop_deregisters_services_then_waits_shutdown_delay_before_the_kill() {
    let f = Fixture::new(true);
    let acks = ack_registrations(&f);
    let mut a = alloc(
        "service",
        &[("t", "exec sleep 60")],
        quick_policy(0, "fail"),
    );
    let mut job = (**a.job.as_ref().unwrap()).clone();
    job.task_groups[0].services = vec![nomad_service("web", "", vec![])];
    job.task_groups[0].shutdown_delay = Some(1_000_000_000);
    a.job = Some(Arc::new(job));
    let h = spawn(f.deps.clone(), local(&a), false);
    f.wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_RUNNING)
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.deps.services.desired(&a.id).is_empty() {
        assert!(Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        f.deps.services.desired(&a.id)[0].id,
        format!("_nomad-task-{}-group-g-web-", a.id)
    );

    let mut stop = a.clone();
    stop.desired_status = api::ALLOC_DESIRED_STOP.into();
    stop.alloc_modify_index += 1;
    let stopped_at = Instant::now();
    h.update(Arc::new(stop));
    while !f.deps.services.desired(&a.id).is_empty() {
        assert!(Instant::now() < deadline, "never deregistered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = f.state(&a.id).unwrap();
    assert_eq!(
        st.tasks["t"].state.state,
        api::TASK_STATE_RUNNING,
        "deregistered before the task is killed"
    );
    let st = f
        .wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_COMPLETE)
        .await;
    assert!(
        stopped_at.elapsed() >= Duration::from_secs(1),
        "killed before shutdown_delay"
    );
    let types = event_types(&st.tasks["t"]);
    let waiting = types.iter().position(|e| e == "Waiting for shutdown delay");
    let killing = types.iter().position(|e| e == "Killing");
    assert!(waiting.is_some() && waiting < killing, "{types:?}");
    acks.abort();
    h.destroy();
    h.join().await;
}

#[tokio::test]
async fn a_check_failing_check_restart_limit_times_restarts_the_task_within_its_policy() {
    let f = Fixture::new(true);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = api::ServiceCheck {
        name: "alive".into(),
        check_type: "tcp".into(),
        interval: 100_000_000,
        timeout: 500_000_000,
        check_restart: Some(api::CheckRestart {
            limit: 2,
            grace: 0,
            ignore_warnings: false,
        }),
        ..Default::default()
    };
    let mut a = alloc(
        "service",
        &[("t", "exec sleep 60")],
        quick_policy(1, "fail"),
    );
    let mut job = (**a.job.as_ref().unwrap()).clone();
    job.task_groups[0].tasks[0].services =
        vec![nomad_service("web", &closed_port.to_string(), vec![check])];
    a.job = Some(Arc::new(job));
    let h = spawn(f.deps.clone(), local(&a), false);
    // One restart is allowed; the second time the check fails the task for good.
    let st = f
        .wait_state(&a.id, |s| s.client_status == ALLOC_CLIENT_FAILED)
        .await;
    let t = &st.tasks["t"];
    assert_eq!(t.state.restarts, 1);
    let signalled: Vec<_> = t
        .state
        .events
        .iter()
        .filter(|e| e.event_type == "Restart Signaled")
        .collect();
    assert!(!signalled.is_empty(), "{:?}", event_types(t));
    assert!(
        signalled[0].display_message.contains("\"alive\""),
        "{:?}",
        signalled[0]
    );
    assert!(f.deps.services.desired(&a.id).is_empty(), "never passed");
    h.destroy();
    h.join().await;
}

#[tokio::test]
async fn health_waits_for_passing_checks_unless_health_check_is_task_states() {
    let f = Fixture::new(true);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_port = open.local_addr().unwrap().port();
    let with_check = |port: u16, mode: &str| {
        let mut a = alloc(
            "service",
            &[("t", "exec sleep 60")],
            quick_policy(0, "fail"),
        );
        let mut job = (**a.job.as_ref().unwrap()).clone();
        let g = &mut job.task_groups[0];
        g.update = Some(api::UpdateStrategy {
            health_check: mode.into(),
            min_healthy_time: 100_000_000,
            healthy_deadline: api::secs(300),
            ..Default::default()
        });
        let check = api::ServiceCheck {
            name: "alive".into(),
            check_type: "tcp".into(),
            interval: 100_000_000,
            timeout: 500_000_000,
            ..Default::default()
        };
        g.services = vec![nomad_service("web", &port.to_string(), vec![check])];
        a.job = Some(Arc::new(job));
        a
    };
    let failing = with_check(closed, "checks");
    let ignored = with_check(closed, "task_states");
    let passing = with_check(open_port, "");
    let handles: Vec<_> = [&failing, &ignored, &passing]
        .iter()
        .map(|a| spawn(f.deps.clone(), local(a), false))
        .collect();
    let healthy = |s: &LocalAllocState| {
        s.alloc.deployment_status.as_ref().and_then(|d| d.healthy) == Some(true)
    };
    f.wait_state(&ignored.id, healthy).await;
    f.wait_state(&passing.id, healthy).await;
    // The failing one has run as long, and longer still: its checks keep it undecided.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = f.state(&failing.id).unwrap();
    assert_eq!(st.client_status, ALLOC_CLIENT_RUNNING);
    assert_eq!(st.alloc.deployment_status.and_then(|d| d.healthy), None);
    for h in handles {
        h.destroy();
        h.join().await;
    }
}
