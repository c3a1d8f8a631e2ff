//! The AllocRunner runs one allocation on this node: it builds the alloc dir, starts a
//! TaskRunner per task of the group, persists every task change to local state, derives
//! the allocation's client status and queues it for the servers.
//!
//! It kills its tasks when the server sets the allocation's desired status to stop or
//! evict, when a task fails (its siblings are killed) or when the leader task dies. On
//! agent shutdown it returns, leaving the tasks running.

use crate::allocdir::AllocDir;
use crate::driver::Drivers;
use crate::events;
use crate::lifecycle::{self, Role};
use crate::ports::{AllocatedPort, PortAllocator};
use crate::reporter::PendingUpdates;
use crate::state::{LocalAllocState, LocalTaskState, StateStore};
use crate::task_runner::{TaskCommand, TaskRunner, TaskUpdate};
use api::{AllocClientUpdate, Allocation, Node, RestartPolicy, TaskState};
use api::{
    ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, ALLOC_CLIENT_PENDING, ALLOC_CLIENT_RUNNING,
    TASK_STATE_DEAD, TASK_STATE_PENDING,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The client status of an allocation and its description, from its tasks' states:
/// failed if any task failed; complete once all are dead; pending while any task has
/// never started; running otherwise (a task waiting to be restarted counts as running).
pub fn client_status<'a>(
    tasks: impl IntoIterator<Item = &'a TaskState>,
) -> (&'static str, &'static str) {
    let (mut any, mut failed, mut all_dead, mut never_started) = (false, false, true, false);
    for t in tasks {
        any = true;
        failed |= t.failed;
        all_dead &= t.state == TASK_STATE_DEAD;
        never_started |= t.state == TASK_STATE_PENDING && t.started_at.is_none();
    }
    if failed {
        (ALLOC_CLIENT_FAILED, "Failed tasks")
    } else if !any {
        (ALLOC_CLIENT_PENDING, "No tasks have started")
    } else if all_dead {
        (ALLOC_CLIENT_COMPLETE, "All tasks have completed")
    } else if never_started {
        (ALLOC_CLIENT_PENDING, "No tasks have started")
    } else {
        (ALLOC_CLIENT_RUNNING, "Tasks are running")
    }
}

/// What every alloc runner shares.
#[derive(Clone, Debug)]
pub struct AllocRunnerDeps {
    pub data_dir: PathBuf,
    pub node: Arc<Node>,
    pub drivers: Drivers,
    pub store: StateStore,
    pub updates: PendingUpdates,
    /// Hands out the host ports of the groups' network blocks.
    pub ports: PortAllocator,
    /// Agent shutdown: stop watching, leave the tasks running.
    pub shutdown: CancellationToken,
}

/// Why a restart or signal request could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No such task in the allocation.
    NotFound(String),
    /// The task(s) could not do it (not running, the driver failed, ...).
    Failed(String),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NotFound(m) | ControlError::Failed(m) => f.write_str(m),
        }
    }
}

pub type ControlReply = oneshot::Sender<Result<(), ControlError>>;

/// Builds the order for one task runner from its reply channel.
type MakeCommand = Box<dyn Fn(crate::task_runner::Reply) -> TaskCommand + Send>;

/// Requests from the client HTTP API to an allocation's tasks.
#[derive(Debug)]
pub enum AllocControl {
    /// Restart one task (`Some`) or every running task (`None`).
    Restart {
        task: Option<String>,
        reply: ControlReply,
    },
    /// Signal one task (`Some`) or every running task (`None`).
    Signal {
        task: Option<String>,
        signal: String,
        reply: ControlReply,
    },
}

/// What the rest of the agent (the client HTTP API) sees of a running allocation.
#[derive(Debug, Clone)]
pub struct AllocView {
    /// The runner's latest state (as persisted).
    pub state: watch::Receiver<Arc<LocalAllocState>>,
    pub control: mpsc::UnboundedSender<AllocControl>,
    pub alloc_dir: AllocDir,
}

/// The agent's side of a running alloc runner.
#[derive(Debug)]
pub struct AllocRunnerHandle {
    alloc_tx: watch::Sender<Arc<Allocation>>,
    destroy: CancellationToken,
    join: tokio::task::JoinHandle<()>,
    view: AllocView,
}

impl AllocRunnerHandle {
    /// Passes the server's newer version of the allocation (e.g. desired status stop).
    pub fn update(&self, alloc: Arc<Allocation>) {
        self.alloc_tx.send_if_modified(|cur| {
            let changed = cur.alloc_modify_index != alloc.alloc_modify_index
                || cur.modify_index != alloc.modify_index
                || cur.desired_status != alloc.desired_status;
            if changed {
                *cur = alloc;
            }
            changed
        });
    }

    /// Kills the tasks, then removes the alloc dir and the local state.
    pub fn destroy(&self) {
        self.destroy.cancel();
    }

    pub fn view(&self) -> AllocView {
        self.view.clone()
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    pub async fn join(self) {
        let _ = self.join.await;
    }
}

struct AllocRunner {
    deps: AllocRunnerDeps,
    local: LocalAllocState,
    alloc_rx: watch::Receiver<Arc<Allocation>>,
    destroy: CancellationToken,
    commands: BTreeMap<String, mpsc::UnboundedSender<TaskCommand>>,
    killing: bool,
    last_sent: Option<AllocClientUpdate>,
    state_tx: watch::Sender<Arc<LocalAllocState>>,
    control_rx: mpsc::UnboundedReceiver<AllocControl>,
    /// Lifecycle roles and gates of the group's tasks.
    roles: BTreeMap<String, Role>,
    gates: lifecycle::Gates,
    health: HealthTracker,
    /// Sidecars were told to stop because the main tasks are dead.
    sidecars_stopped: bool,
    /// The allocation is being removed: everything is killed, poststop tasks too.
    destroying: bool,
}

/// The client's health verdict on an allocation (for the drainer and deployments):
/// healthy once every task that must keep running has run continuously for
/// `min_healthy_time`; unhealthy if one fails first or `healthy_deadline` passes.
#[derive(Debug)]
struct HealthTracker {
    /// Judged only for long-running jobs (service, system).
    enabled: bool,
    min_healthy: Duration,
    deadline: Instant,
    /// Since when each task has been running without a restart.
    running_since: BTreeMap<String, Instant>,
}

impl HealthTracker {
    fn new(job: &api::Job, group: &api::TaskGroup) -> Self {
        let pick = |m: Option<i64>, u: Option<i64>, default: Duration| {
            m.filter(|n| *n > 0)
                .or(u.filter(|n| *n > 0))
                .map(|n| Duration::from_nanos(n as u64))
                .unwrap_or(default)
        };
        let min_healthy = pick(
            group.migrate.as_ref().map(|m| m.min_healthy_time),
            group.update.as_ref().map(|u| u.min_healthy_time),
            Duration::from_secs(10),
        );
        let deadline = pick(
            group.migrate.as_ref().map(|m| m.healthy_deadline),
            group.update.as_ref().map(|u| u.healthy_deadline),
            Duration::from_secs(300),
        );
        HealthTracker {
            enabled: matches!(
                job.job_type.as_str(),
                api::JOB_TYPE_SERVICE | api::JOB_TYPE_SYSTEM
            ),
            min_healthy,
            deadline: Instant::now() + deadline,
            running_since: BTreeMap::new(),
        }
    }
}

/// Starts the runner of an allocation: a new one (`restored == false`) or one restored
/// from local state after an agent restart.
pub fn spawn(deps: AllocRunnerDeps, local: LocalAllocState, restored: bool) -> AllocRunnerHandle {
    let (alloc_tx, alloc_rx) = watch::channel(Arc::new(local.alloc.clone()));
    let (state_tx, state_rx) = watch::channel(Arc::new(local.clone()));
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let destroy = CancellationToken::new();
    let alloc_dir = AllocDir::new(&deps.data_dir, &local.alloc.id);
    let runner = AllocRunner {
        deps,
        local,
        alloc_rx,
        destroy: destroy.clone(),
        commands: BTreeMap::new(),
        killing: false,
        last_sent: None,
        state_tx,
        control_rx,
        roles: BTreeMap::new(),
        gates: lifecycle::Gates::new(),
        sidecars_stopped: false,
        destroying: false,
        health: HealthTracker {
            enabled: false,
            min_healthy: Duration::ZERO,
            deadline: Instant::now(),
            running_since: BTreeMap::new(),
        },
    };
    let join = tokio::spawn(runner.run(restored));
    AllocRunnerHandle {
        alloc_tx,
        destroy,
        join,
        view: AllocView {
            state: state_rx,
            control: control_tx,
            alloc_dir,
        },
    }
}

impl AllocRunner {
    fn alloc_id(&self) -> &str {
        &self.local.alloc.id
    }

    fn persist(&self) {
        if let Err(e) = self.deps.store.save(&self.local) {
            tracing::error!(alloc = %self.alloc_id(), error = %e, "cannot save alloc state");
        }
        self.state_tx.send_replace(Arc::new(self.local.clone()));
    }

    /// Recomputes the client status; queues an update for the servers if it changed.
    fn report(&mut self) {
        // Poststop tasks that have not had their turn do not hold the alloc in pending.
        let main_done = lifecycle::main_tasks_dead(&self.roles, &self.local.tasks);
        let counted = self.local.tasks.iter().filter(|(name, t)| {
            main_done
                || self.roles.get(*name) != Some(&Role::Poststop)
                || t.state.started_at.is_some()
        });
        let (status, desc) = client_status(counted.map(|(_, t)| &t.state));
        self.local.client_status = status.into();
        self.local.client_description = desc.into();
        let update = AllocClientUpdate {
            id: self.local.alloc.id.clone(),
            client_status: status.into(),
            client_description: desc.into(),
            task_states: self
                .local
                .tasks
                .iter()
                .map(|(k, v)| (k.clone(), v.state.clone()))
                .collect(),
            deployment_status: self.local.alloc.deployment_status.clone(),
        };
        if self.last_sent.as_ref() != Some(&update) {
            self.deps.updates.push(update.clone());
            self.last_sent = Some(update);
        }
    }

    /// Kills every live task but `except`. Poststop tasks that have not run yet are
    /// spared (their turn comes once the others are dead) unless the alloc is destroyed.
    fn kill_all(&mut self, reason: impl Fn(&str) -> Option<api::TaskEvent>, except: Option<&str>) {
        for (name, tx) in &self.commands {
            if Some(name.as_str()) == except {
                continue;
            }
            let unstarted_poststop = self.roles.get(name) == Some(&Role::Poststop)
                && self
                    .local
                    .tasks
                    .get(name)
                    .is_none_or(|t| t.state.started_at.is_none());
            if unstarted_poststop && !self.destroying {
                continue;
            }
            let dead = self
                .local
                .tasks
                .get(name)
                .is_some_and(|t| t.state.state == TASK_STATE_DEAD);
            if !dead {
                let _ = tx.send(TaskCommand::Kill {
                    reason: reason(name),
                });
            }
        }
    }

    async fn run(mut self, restored: bool) {
        let Some(job) = self.local.alloc.job.clone() else {
            tracing::error!(alloc = %self.alloc_id(), "allocation without its job, cannot run it");
            return;
        };
        let Some(group) = job.task_group(&self.local.alloc.task_group).cloned() else {
            tracing::error!(alloc = %self.alloc_id(), group = %self.local.alloc.task_group, "the job has no such task group");
            return;
        };
        let alloc_dir = AllocDir::new(&self.deps.data_dir, self.alloc_id());
        let ports = self.ports(&group);
        self.health = HealthTracker::new(&job, &group);
        self.roles = group
            .tasks
            .iter()
            .map(|t| (t.name.clone(), Role::of(t)))
            .collect();
        let (upd_tx, mut upd_rx) = mpsc::unbounded_channel::<TaskUpdate>();
        let mut tasks = JoinSet::new();
        let alloc = Arc::new(self.local.alloc.clone());
        for task in &group.tasks {
            let state = self
                .local
                .tasks
                .entry(task.name.clone())
                .or_insert_with(|| LocalTaskState {
                    state: TaskState {
                        state: TASK_STATE_PENDING.into(),
                        ..Default::default()
                    },
                    ..Default::default()
                });
            let state = state.clone();
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            self.commands.insert(task.name.clone(), cmd_tx);
            let policy = task
                .restart_policy
                .clone()
                .or_else(|| group.restart_policy.clone())
                .unwrap_or_else(|| RestartPolicy::default_for(&job.job_type));
            let runner = TaskRunner {
                alloc: alloc.clone(),
                task: task.clone(),
                node: self.deps.node.clone(),
                alloc_dir: alloc_dir.clone(),
                driver: self.deps.drivers.get(&task.driver),
                restart_policy: policy,
                // Ephemeral hook tasks run to completion: a clean exit is not restarted.
                job_type: if self.roles[&task.name].is_ephemeral() {
                    api::JOB_TYPE_BATCH.to_string()
                } else {
                    job.job_type.clone()
                },
                state,
                restored,
                ports: ports.clone(),
                updates: upd_tx.clone(),
                commands: cmd_rx,
                shutdown: self.deps.shutdown.clone(),
                start_gate: self.gates.gate_for(self.roles[&task.name]),
                artifacts_fetched: false,
            };
            tasks.spawn(runner.run());
        }
        drop(upd_tx);
        self.update_gates();
        for (name, t) in &self.local.tasks {
            if t.state.state == api::TASK_STATE_RUNNING {
                // After an agent restart we cannot know for how long: count from now.
                self.health
                    .running_since
                    .insert(name.clone(), Instant::now());
            }
        }
        self.report();
        self.persist();
        if self.local.alloc.desired_stop() {
            self.killing = true;
            self.kill_all(|_| None, None);
        }

        let mut destroying = false;
        let mut alloc_open = true;
        loop {
            let health_check = self.next_health_check();
            tokio::select! {
                biased;
                _ = self.deps.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(health_check.unwrap_or_else(Instant::now).into()), if health_check.is_some() => {
                    if self.judge_health() {
                        self.report();
                        self.persist();
                    }
                }
                Some(ctl) = self.control_rx.recv() => self.control(ctl),
                _ = self.destroy.cancelled(), if !destroying => {
                    destroying = true;
                    self.destroying = true;
                    self.killing = true;
                    self.kill_all(|_| None, None);
                }
                changed = self.alloc_rx.changed(), if alloc_open => {
                    if changed.is_err() {
                        // The agent dropped our handle: no more updates will come.
                        alloc_open = false;
                        continue;
                    }
                    let new = self.alloc_rx.borrow_and_update().clone();
                    self.local.alloc.desired_status = new.desired_status.clone();
                    self.local.alloc.desired_description = new.desired_description.clone();
                    self.local.alloc.modify_index = new.modify_index;
                    self.local.alloc.alloc_modify_index = new.alloc_modify_index;
                    if new.desired_stop() && !self.killing {
                        tracing::info!(alloc = %self.alloc_id(), desired = %new.desired_status, "stopping allocation");
                        self.killing = true;
                        self.kill_all(|_| None, None);
                    }
                    self.persist();
                }
                upd = upd_rx.recv() => match upd {
                    Some(u) => self.task_changed(&group, u),
                    None => {
                        // Every task runner is done.
                        if destroying {
                            break;
                        }
                        tasks.detach_all();
                        // Wait for destroy or shutdown only.
                        tokio::select! {
                            _ = self.deps.shutdown.cancelled() => {},
                            _ = self.destroy.cancelled() => destroying = true,
                        }
                        break;
                    }
                },
            }
        }
        // Let task runners finish what they were doing (on shutdown they return at once).
        while tasks.join_next().await.is_some() {}
        while let Ok(u) = upd_rx.try_recv() {
            self.task_changed(&group, u);
        }
        if destroying {
            self.deps.ports.release(&self.local.ports);
            self.deps.updates.forget(self.alloc_id());
            if let Err(e) = self.deps.store.remove(self.alloc_id()) {
                tracing::warn!(alloc = %self.alloc_id(), error = %e, "cannot remove alloc state");
            }
            if let Err(e) = alloc_dir.destroy() {
                tracing::warn!(alloc = %self.alloc_id(), error = %e, "cannot remove alloc dir");
            }
            tracing::info!(alloc = %self.alloc_id(), "allocation garbage collected");
        } else {
            self.persist();
        }
    }

    /// The group's ports with their host ports: restored from local state, or assigned
    /// now. An error fails every task of the group with a sentence.
    fn ports(&mut self, group: &api::TaskGroup) -> Result<Arc<[AllocatedPort]>, String> {
        if !self.local.ports.is_empty() {
            self.deps.ports.reserve(&self.local.ports);
            return Ok(self.local.ports.clone().into());
        }
        if group.networks.is_empty() {
            return Ok(Arc::from(Vec::new()));
        }
        let host_ip = self
            .deps
            .node
            .attributes
            .get("unique.network.ip-address")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        match self.deps.ports.assign(&group.networks, &host_ip) {
            Ok(p) => {
                self.local.ports = p.clone();
                Ok(p.into())
            }
            Err(e) => {
                tracing::error!(alloc = %self.alloc_id(), error = %e, "cannot assign the group's ports");
                Err(format!("assigning the group's ports: {e}"))
            }
        }
    }

    /// Passes a restart or signal request on to the task runners concerned; the reply
    /// comes once they all answered.
    fn control(&mut self, ctl: AllocControl) {
        let (task, reply, make): (Option<String>, ControlReply, MakeCommand) = match ctl {
            AllocControl::Restart { task, reply } => {
                (task, reply, Box::new(|r| TaskCommand::Restart { reply: r }))
            }
            AllocControl::Signal {
                task,
                signal,
                reply,
            } => (
                task,
                reply,
                Box::new(move |r| TaskCommand::Signal {
                    signal: signal.clone(),
                    reply: r,
                }),
            ),
        };
        let targets: Vec<String> = match &task {
            Some(t) if !self.commands.contains_key(t) => {
                let _ = reply.send(Err(ControlError::NotFound(format!(
                    "task {t:?} is not part of allocation {}",
                    self.alloc_id()
                ))));
                return;
            }
            Some(t) => vec![t.clone()],
            None => self
                .local
                .tasks
                .iter()
                .filter(|(_, t)| t.handle.is_some())
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if targets.is_empty() {
            let _ = reply.send(Err(ControlError::Failed(format!(
                "no task of allocation {} is running",
                self.alloc_id()
            ))));
            return;
        }
        let mut waits = Vec::new();
        for t in targets {
            let (tx, rx) = oneshot::channel();
            if let Some(c) = self.commands.get(&t) {
                let _ = c.send(make(tx));
            }
            waits.push((t, rx));
        }
        tokio::spawn(async move {
            let mut errs = Vec::new();
            for (t, rx) in waits {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errs.push(format!("task {t:?}: {e}")),
                    Err(_) => errs.push(format!("task {t:?}: its runner is gone")),
                }
            }
            let res = if errs.is_empty() {
                Ok(())
            } else {
                Err(ControlError::Failed(errs.join("; ")))
            };
            let _ = reply.send(res);
        });
    }

    /// Opens the lifecycle gates whose conditions hold now.
    fn update_gates(&mut self) {
        self.gates
            .update(&self.roles, &self.local.tasks, self.killing);
    }

    /// When the health verdict may change by itself next (min_healthy_time reached or the
    /// deadline passed); `None` when decided or not judged.
    fn next_health_check(&self) -> Option<Instant> {
        if !self.health.enabled || self.health_decided() {
            return None;
        }
        let ready = self
            .health
            .running_since
            .values()
            .map(|since| *since + self.health.min_healthy)
            .max();
        Some(match ready {
            Some(r) => r.min(self.health.deadline),
            None => self.health.deadline,
        })
    }

    fn health_decided(&self) -> bool {
        self.local
            .alloc
            .deployment_status
            .as_ref()
            .is_some_and(|d| d.healthy.is_some())
    }

    /// Decides the alloc's health if it can be decided now; true if it just was.
    fn judge_health(&mut self) -> bool {
        // An alloc the servers stop is neither healthy nor unhealthy.
        if !self.health.enabled || self.health_decided() || self.local.alloc.desired_stop() {
            return false;
        }
        let now = Instant::now();
        let mut verdict = None;
        let mut all_ready = true;
        for (name, role) in &self.roles {
            if !role.must_be_healthy() {
                continue;
            }
            let Some(t) = self.local.tasks.get(name) else {
                all_ready = false;
                continue;
            };
            if t.state.failed || t.state.state == TASK_STATE_DEAD {
                verdict = Some(false);
                break;
            }
            match self.health.running_since.get(name) {
                Some(since) if now >= *since + self.health.min_healthy => {}
                _ => all_ready = false,
            }
        }
        if verdict.is_none() {
            if all_ready {
                verdict = Some(true);
            } else if now >= self.health.deadline {
                verdict = Some(false);
            }
        }
        let Some(healthy) = verdict else {
            return false;
        };
        tracing::info!(alloc = %self.alloc_id(), healthy, "allocation health decided");
        let ds = self
            .local
            .alloc
            .deployment_status
            .get_or_insert_with(Default::default);
        ds.healthy = Some(healthy);
        ds.timestamp = events::now_nanos();
        true
    }

    fn task_changed(&mut self, group: &api::TaskGroup, u: TaskUpdate) {
        let now_dead = u.state.state.state == TASK_STATE_DEAD;
        let failed = u.state.state.failed;
        let name = u.task.clone();
        let running = u.state.state.state == api::TASK_STATE_RUNNING;
        let restarted = self
            .local
            .tasks
            .get(&name)
            .is_some_and(|old| old.state.restarts != u.state.state.restarts);
        if !running || restarted {
            self.health.running_since.remove(&name);
        }
        if running {
            self.health
                .running_since
                .entry(name.clone())
                .or_insert_with(Instant::now);
        }
        self.local.tasks.insert(u.task, u.state);
        if now_dead && !self.killing {
            let leader = group.tasks.iter().any(|t| t.name == name && t.leader);
            if failed {
                self.killing = true;
                self.kill_all(
                    |_| {
                        Some(events::event(
                            events::SIBLING_FAILED,
                            format!("Task's sibling {name:?} failed"),
                        ))
                    },
                    Some(&name),
                );
            } else if leader {
                self.killing = true;
                self.kill_all(
                    |_| {
                        Some(events::event(
                            events::LEADER_DEAD,
                            "Leader Task in Group dead",
                        ))
                    },
                    Some(&name),
                );
            }
        }
        // The main tasks are done: their sidecars go too, then poststop tasks run.
        if !self.killing
            && !self.sidecars_stopped
            && lifecycle::main_tasks_dead(&self.roles, &self.local.tasks)
        {
            self.sidecars_stopped = true;
            self.kill_all(
                |_| {
                    Some(events::event(
                        events::MAIN_TASKS_DEAD,
                        "Main tasks in the group died",
                    ))
                },
                None,
            );
        }
        self.update_gates();
        self.judge_health();
        self.report();
        self.persist();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(state: &str, failed: bool, started: bool) -> TaskState {
        TaskState {
            state: state.into(),
            failed,
            started_at: started.then(|| "2026-01-01T00:00:00Z".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn alloc_status_is_derived_from_task_states() {
        use api::{TASK_STATE_DEAD as D, TASK_STATE_PENDING as P, TASK_STATE_RUNNING as R};
        let st = |v: Vec<TaskState>| client_status(v.iter()).0;
        assert_eq!(st(vec![]), ALLOC_CLIENT_PENDING);
        assert_eq!(
            st(vec![ts(P, false, false), ts(R, false, true)]),
            ALLOC_CLIENT_PENDING
        );
        assert_eq!(
            st(vec![ts(R, false, true), ts(R, false, true)]),
            ALLOC_CLIENT_RUNNING
        );
        // Waiting to restart after having run: still running.
        assert_eq!(
            st(vec![ts(P, false, true), ts(R, false, true)]),
            ALLOC_CLIENT_RUNNING
        );
        assert_eq!(
            st(vec![ts(D, false, true), ts(R, false, true)]),
            ALLOC_CLIENT_RUNNING
        );
        assert_eq!(
            st(vec![ts(D, false, true), ts(D, false, true)]),
            ALLOC_CLIENT_COMPLETE
        );
        assert_eq!(
            st(vec![ts(D, true, true), ts(R, false, true)]),
            ALLOC_CLIENT_FAILED
        );
        assert_eq!(
            st(vec![ts(D, true, false), ts(D, false, true)]),
            ALLOC_CLIENT_FAILED
        );
    }
}

#[cfg(test)]
mod runner_tests {
    use super::*;
    use crate::driver::process;
    use crate::driver::EXIT_UNKNOWN_AFTER_RECOVERY;
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
            id: api::new_id(),
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
            .map(|e| e.event_type.clone())
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
        assert!(t.state.events.last().unwrap().fails_task);
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
                s.client_status == ALLOC_CLIENT_RUNNING
                    && s.tasks.values().all(|t| t.handle.is_some())
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
        assert_eq!(term.exit_code, -1);
        assert_eq!(term.message, EXIT_UNKNOWN_AFTER_RECOVERY);
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
        assert!(!f.deps.data_dir.join("alloc").join(&a.id).exists());
    }
}
