//! [`AllocServices`]: one allocation's instances and checks as its alloc runner drives
//! them. The runner tells it which tasks run; it runs each check every interval while
//! the check's tasks run, keeps the latest results (published for
//! `GET /v1/client/allocation/:id/checks`), decides which instances are registered and
//! hands that set to the [`ServiceRegistry`], and says when a check's `check_restart`
//! limit is reached.
//!
//! The decision is plain state ([`AllocServices::desired`]); the check loops are the only
//! part that does I/O.

use super::{checks, Outcome, PlannedService, ServiceRegistry};
use api::{CheckQueryResult, ServiceRegistration, CHECK_STATUS_SUCCESS};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The latest result of every check of an allocation, by check ID.
pub type CheckResults = Arc<BTreeMap<String, CheckQueryResult>>;

/// A task to restart because a check failed `check_restart.limit` times in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequest {
    pub task: String,
    /// The event to record, naming the check.
    pub reason: String,
}

#[derive(Debug)]
struct CheckState {
    /// Index of its instance in `planned`.
    service: usize,
    check: usize,
    result: CheckQueryResult,
    /// Passed at least once since its tasks last started.
    passed: bool,
    /// Consecutive failures counted for `check_restart`.
    failures: i64,
    active: watch::Sender<bool>,
}

/// One allocation's instances and checks.
#[derive(Debug)]
pub struct AllocServices {
    alloc_id: String,
    registry: ServiceRegistry,
    planned: Vec<PlannedService>,
    checks: BTreeMap<String, CheckState>,
    /// The tasks running now, with when they (re)started.
    running: BTreeMap<String, Instant>,
    /// The address each task's driver gave it (a docker container's IP), for services
    /// with `address_mode = "driver"`.
    driver_ips: BTreeMap<String, String>,
    canary: bool,
    /// The allocation is stopping: nothing is registered any more, checks stop.
    stopped: bool,
    results_tx: watch::Sender<CheckResults>,
    outcomes_tx: mpsc::UnboundedSender<(String, Outcome)>,
    outcomes_rx: mpsc::UnboundedReceiver<(String, Outcome)>,
    /// Stops the check loops when this is dropped.
    loops: Option<DropGuard>,
}

impl AllocServices {
    /// No instances yet (see [`Self::set_plan`]); `results_tx` publishes check results.
    pub fn new(
        alloc_id: &str,
        registry: ServiceRegistry,
        results_tx: watch::Sender<CheckResults>,
    ) -> Self {
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        AllocServices {
            alloc_id: alloc_id.to_string(),
            registry,
            planned: Vec::new(),
            checks: BTreeMap::new(),
            running: BTreeMap::new(),
            driver_ips: BTreeMap::new(),
            canary: false,
            stopped: false,
            results_tx,
            outcomes_tx,
            outcomes_rx,
            loops: None,
        }
    }

    /// Takes the allocation's instances (from [`super::plan`]).
    pub fn set_plan(&mut self, planned: Vec<PlannedService>, canary: bool) {
        for p in &planned {
            if let Some(e) = &p.error {
                tracing::warn!(alloc = %self.alloc_id, "{e}; the instance is not registered");
            }
        }
        self.canary = canary;
        self.checks.clear();
        for (si, p) in planned.iter().enumerate() {
            for (ci, c) in p.checks.iter().enumerate() {
                self.checks.insert(
                    c.id.clone(),
                    CheckState {
                        service: si,
                        check: ci,
                        result: c.pending.clone(),
                        passed: false,
                        failures: 0,
                        active: watch::channel(false).0,
                    },
                );
            }
        }
        self.planned = planned;
        self.publish();
    }

    /// Whether the allocation offers any instance.
    pub fn any(&self) -> bool {
        !self.planned.is_empty()
    }

    /// Whether it has checks that count for its health (not readiness checks).
    pub fn has_health_checks(&self) -> bool {
        self.planned
            .iter()
            .any(|p| p.checks.iter().any(|c| !c.readiness))
    }

    /// Every health check's latest result is a success.
    pub fn checks_healthy(&self) -> bool {
        self.checks.values().all(|c| {
            self.planned[c.service].checks[c.check].readiness
                || c.result.status == CHECK_STATUS_SUCCESS
        })
    }

    /// The IDs of every instance it may ever register (to clean up after a restart).
    pub fn all_ids(&self) -> Vec<String> {
        self.planned
            .iter()
            .map(|p| p.registration.id.clone())
            .collect()
    }

    /// Starts one loop per check; each runs its check every interval while its tasks run.
    pub fn start_checks(&mut self) {
        let cancel = CancellationToken::new();
        for (id, st) in &self.checks {
            let c = &self.planned[st.service].checks[st.check];
            tokio::spawn(check_loop(
                id.clone(),
                c.probe.clone(),
                c.interval,
                c.timeout,
                st.active.subscribe(),
                self.outcomes_tx.clone(),
                cancel.clone(),
            ));
        }
        self.loops = Some(cancel.drop_guard());
    }

    /// After an agent restart: the checks of running tasks passed before (their instances
    /// were registered), so re-send those registrations now rather than after a check.
    pub fn restored(&mut self, running: impl IntoIterator<Item = String>) {
        self.registry
            .assume_registered(&self.alloc_id, self.all_ids());
        let now = Instant::now();
        for t in running {
            self.running.insert(t, now);
        }
        let running = &self.running;
        let planned = &self.planned;
        for st in self.checks.values_mut() {
            st.passed = planned[st.service]
                .tasks
                .iter()
                .all(|t| running.contains_key(t));
        }
        self.sync();
    }

    /// A task's new state: one that stopped running (or restarted) must pass its checks
    /// again before its instances come back.
    /// The address `task`'s driver reports for it (`None`: the driver has no network of
    /// its own); takes effect with the next [`Self::task_changed`].
    pub fn set_driver_ip(&mut self, task: &str, ip: Option<String>) {
        match ip.filter(|ip| !ip.is_empty()) {
            Some(ip) => self.driver_ips.insert(task.to_string(), ip),
            None => self.driver_ips.remove(task),
        };
    }

    pub fn task_changed(&mut self, task: &str, running: bool, restarted: bool) {
        let was = self.running.contains_key(task);
        if !running || restarted {
            self.running.remove(task);
        }
        if running {
            self.running
                .entry(task.to_string())
                .or_insert_with(Instant::now);
        }
        if was != running || restarted {
            for st in self.checks.values_mut() {
                if self.planned[st.service].tasks.iter().any(|t| t == task) {
                    st.passed = false;
                    st.failures = 0;
                }
            }
        }
        self.sync();
    }

    /// Canary tags apply while the allocation is an unpromoted canary.
    pub fn set_canary(&mut self, canary: bool) {
        if self.canary != canary {
            self.canary = canary;
            self.sync();
        }
    }

    /// The allocation stops: deregister everything and stop checking.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.loops = None;
        self.sync();
    }

    /// The next check result, for the runner's loop.
    pub async fn next_outcome(&mut self) -> (String, Outcome) {
        match self.outcomes_rx.recv().await {
            Some(o) => o,
            // Never: `self` holds a sender.
            None => std::future::pending().await,
        }
    }

    /// Takes a check result. Returns the tasks to restart under `check_restart`.
    pub fn check_result(&mut self, id: &str, o: Outcome) -> Vec<RestartRequest> {
        let now = Instant::now();
        let Some(st) = self.checks.get_mut(id) else {
            return Vec::new();
        };
        let p = &self.planned[st.service];
        let c = &p.checks[st.check];
        let active = !self.stopped && p.tasks.iter().all(|t| self.running.contains_key(t));
        if !active {
            return Vec::new(); // a late result from before the task stopped
        }
        st.result.status = o.status.into();
        st.result.status_code = o.status_code;
        st.result.output = o.output;
        st.result.timestamp = crate::events::now_nanos() / 1_000_000_000;
        let mut restarts = Vec::new();
        if o.status == CHECK_STATUS_SUCCESS {
            st.passed = true;
            st.failures = 0;
        } else if let Some(r) = &c.restart {
            let grace = Duration::from_nanos(r.grace.max(0) as u64);
            let started = p
                .tasks
                .iter()
                .filter_map(|t| self.running.get(t))
                .max()
                .copied()
                .unwrap_or(now);
            if started.checked_add(grace).is_some_and(|end| now >= end) {
                st.failures += 1;
                if st.failures >= r.limit {
                    st.failures = 0;
                    restarts = p
                        .tasks
                        .iter()
                        .map(|t| RestartRequest {
                            task: t.clone(),
                            reason: format!("healthcheck: check {:?} unhealthy", c.pending.check),
                        })
                        .collect();
                }
            }
        }
        self.publish();
        self.sync();
        restarts
    }

    /// The instances to have registered now: those whose tasks all run and whose checks
    /// all passed since, none once the allocation stops.
    pub fn desired(&self) -> Vec<ServiceRegistration> {
        if self.stopped {
            return Vec::new();
        }
        self.planned
            .iter()
            .enumerate()
            .filter(|(_, p)| p.error.is_none())
            .filter(|(_, p)| p.tasks.iter().all(|t| self.running.contains_key(t)))
            .filter(|(si, _)| {
                self.checks
                    .values()
                    .filter(|c| c.service == *si)
                    .all(|c| c.passed)
            })
            .map(|(_, p)| {
                let ip = p.tasks.iter().find_map(|t| self.driver_ips.get(t));
                p.registration_at(self.canary, ip.map(String::as_str))
            })
            .collect()
    }

    /// Hands the desired set to the registry and tells each check loop whether to run.
    fn sync(&mut self) {
        for st in self.checks.values() {
            let run = !self.stopped
                && self.planned[st.service]
                    .tasks
                    .iter()
                    .all(|t| self.running.contains_key(t));
            st.active
                .send_if_modified(|a| std::mem::replace(a, run) != run);
        }
        if self.any() {
            self.registry.set(&self.alloc_id, self.desired());
        }
    }

    fn publish(&self) {
        let results = self
            .checks
            .iter()
            .map(|(id, c)| (id.clone(), c.result.clone()))
            .collect();
        self.results_tx.send_replace(Arc::new(results));
    }
}

/// Runs one check every `interval` while `active` says its tasks run, until `cancel`.
async fn check_loop(
    id: String,
    probe: checks::Probe,
    interval: Duration,
    timeout: Duration,
    mut active: watch::Receiver<bool>,
    out: mpsc::UnboundedSender<(String, Outcome)>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = active.wait_for(|a| *a) => if r.is_err() { return },
        }
        let o = tokio::select! {
            _ = cancel.cancelled() => return,
            o = checks::run(&probe, timeout) => o,
        };
        if *active.borrow() && out.send((id.clone(), o)).is_err() {
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            // Stopped and started again: check at once.
            _ = active.wait_for(|a| !*a) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{PlannedCheck, Probe};
    use api::{CheckRestart, CHECK_STATUS_FAILURE};

    fn planned(checks: Vec<PlannedCheck>) -> PlannedService {
        PlannedService {
            registration: ServiceRegistration {
                id: "_nomad-task-a1-t-web-http".into(),
                service_name: "web".into(),
                alloc_id: "a1".into(),
                tags: vec!["live".into()],
                port: 8080,
                ..Default::default()
            },
            canary_tags: vec!["canary".into()],
            tasks: vec!["t".into()],
            checks,
            error: None,
            driver_port: None,
        }
    }

    fn check(id: &str, restart: Option<CheckRestart>) -> PlannedCheck {
        PlannedCheck {
            id: id.into(),
            probe: Probe::Unsupported("test".into()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            restart,
            readiness: false,
            pending: CheckQueryResult {
                id: id.into(),
                check: format!("check-{id}"),
                status: api::CHECK_STATUS_PENDING.into(),
                ..Default::default()
            },
        }
    }

    fn ok() -> Outcome {
        Outcome {
            status: CHECK_STATUS_SUCCESS,
            status_code: 200,
            output: "ok".into(),
        }
    }

    fn bad() -> Outcome {
        Outcome {
            status: CHECK_STATUS_FAILURE,
            status_code: 500,
            output: "bad".into(),
        }
    }

    fn services(
        p: PlannedService,
    ) -> (
        AllocServices,
        ServiceRegistry,
        watch::Receiver<CheckResults>,
    ) {
        let reg = ServiceRegistry::new();
        let (tx, rx) = watch::channel(CheckResults::default());
        let mut s = AllocServices::new("a1", reg.clone(), tx);
        s.set_plan(vec![p], false);
        (s, reg, rx)
    }

    #[test]
    fn an_instance_is_registered_only_once_its_task_runs_and_its_check_passed() {
        let (mut s, _, results) = services(planned(vec![check("c1", None)]));
        assert!(s.desired().is_empty());
        assert_eq!(results.borrow()["c1"].status, "pending");
        // A result that arrives while the task does not run is ignored.
        s.check_result("c1", ok());
        assert!(s.desired().is_empty());
        s.task_changed("t", true, false);
        assert!(s.desired().is_empty(), "running but not yet passing");
        s.check_result("c1", bad());
        assert!(s.desired().is_empty());
        assert_eq!(results.borrow()["c1"].status_code, 500);
        s.check_result("c1", ok());
        assert_eq!(s.desired().len(), 1);
        assert_eq!(s.desired()[0].tags, vec!["live".to_string()]);
        assert_eq!(results.borrow()["c1"].status, "success");
        assert!(s.checks_healthy());
    }

    #[test]
    fn an_instance_without_checks_is_registered_while_its_task_runs() {
        let (mut s, reg, _) = services(planned(vec![]));
        s.task_changed("t", true, false);
        assert_eq!(s.desired().len(), 1);
        assert!(!reg.in_sync("a1"), "handed to the registry");
        s.task_changed("t", false, false);
        assert!(s.desired().is_empty());
    }

    #[test]
    fn a_restarted_task_is_deregistered_until_its_check_passes_again() {
        let (mut s, _, _) = services(planned(vec![check("c1", None)]));
        s.task_changed("t", true, false);
        s.check_result("c1", ok());
        assert_eq!(s.desired().len(), 1);
        s.task_changed("t", false, false);
        assert!(s.desired().is_empty(), "deregistered while not running");
        s.task_changed("t", true, true);
        assert!(s.desired().is_empty(), "not before its check passes again");
        s.check_result("c1", ok());
        assert_eq!(s.desired().len(), 1);
    }

    #[test]
    fn stopping_deregisters_everything_for_good() {
        let (mut s, _, _) = services(planned(vec![]));
        s.task_changed("t", true, false);
        assert_eq!(s.desired().len(), 1);
        s.stop();
        assert!(s.desired().is_empty());
        s.task_changed("t", true, true);
        assert!(s.desired().is_empty());
    }

    #[test]
    fn a_driver_address_mode_instance_is_registered_on_its_tasks_driver_ip() {
        let mut p = planned(vec![]);
        p.registration.address = "10.0.0.5".into();
        p.registration.port = 23456;
        p.driver_port = Some(8080);
        let (mut s, _, _) = services(p);
        s.set_driver_ip("t", Some("172.17.0.3".into()));
        s.task_changed("t", true, false);
        let r = &s.desired()[0];
        assert_eq!((r.address.as_str(), r.port), ("172.17.0.3", 8080));
        // A driver without a network of its own: the host address and port.
        s.set_driver_ip("t", None);
        s.task_changed("t", true, false);
        let r = &s.desired()[0];
        assert_eq!((r.address.as_str(), r.port), ("10.0.0.5", 23456));
    }

    #[test]
    fn an_unpromoted_canary_registers_its_canary_tags() {
        let (mut s, _, _) = services(planned(vec![]));
        s.set_canary(true);
        s.task_changed("t", true, false);
        assert_eq!(s.desired()[0].tags, vec!["canary".to_string()]);
        s.set_canary(false);
        assert_eq!(s.desired()[0].tags, vec!["live".to_string()]);
    }

    #[test]
    fn check_restart_asks_for_a_restart_after_limit_consecutive_failures() {
        let restart = CheckRestart {
            limit: 2,
            grace: 0,
            ignore_warnings: false,
        };
        let (mut s, _, _) = services(planned(vec![check("c1", Some(restart))]));
        s.task_changed("t", true, false);
        assert!(s.check_result("c1", bad()).is_empty());
        assert!(
            s.check_result("c1", ok()).is_empty(),
            "a pass resets the count"
        );
        assert!(s.check_result("c1", bad()).is_empty());
        let r = s.check_result("c1", bad());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].task, "t");
        assert!(r[0].reason.contains("check-c1"), "{}", r[0].reason);
    }

    #[test]
    fn check_restart_ignores_failures_within_the_grace_period() {
        let restart = CheckRestart {
            limit: 1,
            grace: 3_600_000_000_000,
            ignore_warnings: false,
        };
        let (mut s, _, _) = services(planned(vec![check("c1", Some(restart))]));
        s.task_changed("t", true, false);
        assert!(s.check_result("c1", bad()).is_empty());
        assert!(s.check_result("c1", bad()).is_empty());
    }

    #[test]
    fn restored_allocations_resend_registrations_of_running_tasks_at_once() {
        let (mut s, reg, _) = services(planned(vec![check("c1", None)]));
        s.restored(["t".to_string()]);
        assert_eq!(s.desired().len(), 1);
        assert!(!reg.in_sync("a1"));
    }

    #[tokio::test]
    async fn check_loops_run_only_while_their_task_runs() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let mut c = check("c1", None);
        c.probe = Probe::Tcp { addr };
        c.interval = Duration::from_millis(50);
        let (mut s, _, _) = services(planned(vec![c]));
        s.start_checks();
        let quiet = tokio::time::timeout(Duration::from_millis(200), s.next_outcome()).await;
        assert!(quiet.is_err(), "no check before the task runs");
        s.task_changed("t", true, false);
        let (id, o) = tokio::time::timeout(Duration::from_secs(5), s.next_outcome())
            .await
            .expect("a check result");
        assert_eq!(id, "c1");
        assert!(o.passed(), "{o:?}");
        s.check_result(&id, o);
        assert_eq!(s.desired().len(), 1);
    }
}
