//! The AllocRunner runs one allocation on this node: it builds the alloc dir, starts a
//! TaskRunner per task of the group, persists every task change to local state, derives
//! the allocation's client status and queues it for the servers.
//!
//! It kills its tasks when the server sets the allocation's desired status to stop or
//! evict, when a task fails (its siblings are killed) or when the leader task dies. On
//! agent shutdown it returns, leaving the tasks running.
//!
//! This file holds the runner's loop and its [`Phase`]; the concerns it delegates live
//! beside it: `status` (client status and reports), `health` (the health verdict),
//! `control` (restart and signal requests), `ports` (the group's host ports) and
//! `stopping` (deregistering services and `shutdown_delay` before the kill). Services
//! and their checks live in [`crate::services`].

mod control;
mod health;
mod ports;
mod status;
mod stopping;
#[cfg(test)]
mod tests;

pub use control::{AllocControl, ControlError, ControlReply};
pub use status::client_status;

use crate::allocdir::AllocDir;
use crate::driver::Drivers;
use crate::events;
use crate::lifecycle::{self, Role};
use crate::ports::PortAllocator;
use crate::reporter::PendingUpdates;
use crate::services::{AllocServices, CheckResults, ServiceRegistry};
use crate::state::{LocalAllocState, LocalTaskState, StateStore};
use crate::task_runner::{TaskCommand, TaskRunner, TaskUpdate};
use api::{AllocClientUpdate, Allocation, Node, RestartPolicy, TaskState};
use api::{TASK_STATE_DEAD, TASK_STATE_PENDING};
use health::HealthTracker;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
    /// Where the allocations' service registrations go to reach the servers.
    pub services: ServiceRegistry,
    /// The servers, for what templates read (variables, services); `None` in tests.
    pub client: Option<api::Client>,
    /// Agent shutdown: stop watching, leave the tasks running.
    pub shutdown: CancellationToken,
}

/// What the rest of the agent (the client HTTP API) sees of a running allocation.
#[derive(Debug, Clone)]
pub struct AllocView {
    /// The runner's latest state (as persisted).
    pub state: watch::Receiver<Arc<LocalAllocState>>,
    pub control: mpsc::UnboundedSender<AllocControl>,
    pub alloc_dir: AllocDir,
    /// The latest result of each of its service checks, by check ID.
    pub checks: watch::Receiver<CheckResults>,
    /// Cancelled to destroy the allocation (kill its tasks, remove its alloc dir and
    /// local state): the client API's garbage collection uses it.
    pub destroy: CancellationToken,
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

/// Where the allocation is in its life, as far as killing its tasks goes. It only moves
/// forward: `Running` -> `MainTasksDone` -> `Stopping` -> `Destroying`, skipping steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The tasks run (or wait for their turn); none was told to stop.
    Running,
    /// The main tasks are dead: their sidecars were told to stop, poststop tasks run.
    MainTasksDone,
    /// The allocation stops: the servers asked for it, a task failed or the leader task
    /// died. Every task is killed but poststop tasks that have not run yet.
    Stopping,
    /// The allocation is being removed: everything is killed, poststop tasks too, then
    /// its alloc dir and local state are removed.
    Destroying,
}

impl Phase {
    /// The tasks are being killed (lifecycle gates stay shut for the tasks still waiting).
    fn killing(self) -> bool {
        matches!(self, Phase::Stopping | Phase::Destroying)
    }
}

struct AllocRunner {
    deps: AllocRunnerDeps,
    local: LocalAllocState,
    alloc_rx: watch::Receiver<Arc<Allocation>>,
    destroy: CancellationToken,
    commands: BTreeMap<String, mpsc::UnboundedSender<TaskCommand>>,
    phase: Phase,
    last_sent: Option<AllocClientUpdate>,
    state_tx: watch::Sender<Arc<LocalAllocState>>,
    control_rx: mpsc::UnboundedReceiver<AllocControl>,
    /// Lifecycle roles and gates of the group's tasks.
    roles: BTreeMap<String, Role>,
    gates: lifecycle::Gates,
    health: HealthTracker,
    services: AllocServices,
    /// The graceful stop in progress (deregistration, then `shutdown_delay`).
    stopping: stopping::GracefulStop,
}

/// Starts the runner of an allocation: a new one (`restored == false`) or one restored
/// from local state after an agent restart.
pub fn spawn(deps: AllocRunnerDeps, local: LocalAllocState, restored: bool) -> AllocRunnerHandle {
    let (alloc_tx, alloc_rx) = watch::channel(Arc::new(local.alloc.clone()));
    let (state_tx, state_rx) = watch::channel(Arc::new(local.clone()));
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let destroy = CancellationToken::new();
    let alloc_dir = AllocDir::new(&deps.data_dir, &local.alloc.id);
    let (checks_tx, checks_rx) = watch::channel(CheckResults::default());
    let services = AllocServices::new(&local.alloc.id, deps.services.clone(), checks_tx);
    let runner = AllocRunner {
        deps,
        local,
        alloc_rx,
        destroy: destroy.clone(),
        commands: BTreeMap::new(),
        phase: Phase::Running,
        last_sent: None,
        state_tx,
        control_rx,
        roles: BTreeMap::new(),
        gates: lifecycle::Gates::new(),
        health: HealthTracker::disabled(),
        services,
        stopping: stopping::GracefulStop::default(),
    };
    let join = tokio::spawn(runner.run(restored));
    AllocRunnerHandle {
        alloc_tx,
        destroy: destroy.clone(),
        join,
        view: AllocView {
            state: state_rx,
            control: control_tx,
            alloc_dir,
            checks: checks_rx,
            destroy,
        },
    }
}

impl AllocRunner {
    fn alloc_id(&self) -> &str {
        &self.local.alloc.id
    }

    /// Kills every live task but `except`. Poststop tasks that have not run yet are
    /// spared (their turn comes once the others are dead) unless the alloc is destroyed.
    fn kill_all(&mut self, reason: impl Fn(&str) -> Option<api::TaskEvent>, except: Option<&str>) {
        self.kill_where(reason, |name| Some(name) != except);
    }

    /// [`Self::kill_all`] for the tasks `pick` chooses.
    fn kill_where(
        &mut self,
        reason: impl Fn(&str) -> Option<api::TaskEvent>,
        pick: impl Fn(&str) -> bool,
    ) {
        for (name, tx) in &self.commands {
            if !pick(name) {
                continue;
            }
            let unstarted_poststop = self.roles.get(name) == Some(&Role::Poststop)
                && self
                    .local
                    .tasks
                    .get(name)
                    .is_none_or(|t| t.state.started_at.is_none());
            if unstarted_poststop && self.phase != Phase::Destroying {
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

    /// Moves to `Stopping` and kills every task but `except` (see [`Self::kill_all`])
    /// at once, deregistering the services without waiting (a task failed).
    fn stop(&mut self, reason: impl Fn(&str) -> Option<api::TaskEvent>, except: Option<&str>) {
        self.phase = Phase::Stopping;
        self.services.stop();
        self.kill_all(reason, except);
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
        let (tasks, upd_rx) = self.start_tasks(&job, &group, restored);
        self.update_gates();
        self.health.count_running_from_now(&self.local.tasks);
        self.start_services(restored);
        self.report();
        self.persist();
        if self.local.alloc.desired_stop() {
            self.stop_gracefully(&group, Phase::Stopping);
        }
        self.watch(&group, tasks, upd_rx).await;
        if self.phase == Phase::Destroying {
            self.collect_garbage();
        } else {
            self.persist();
        }
    }

    /// Starts a task runner per task of the group (restored ones reattach to their task).
    fn start_tasks(
        &mut self,
        job: &api::Job,
        group: &api::TaskGroup,
        restored: bool,
    ) -> (JoinSet<()>, mpsc::UnboundedReceiver<TaskUpdate>) {
        let alloc_dir = AllocDir::new(&self.deps.data_dir, self.alloc_id());
        let ports = self.ports(group);
        let planned = crate::services::plan(
            &self.local.alloc,
            group,
            &self.deps.node,
            ports.as_deref().unwrap_or(&[]),
        );
        self.services.set_plan(planned, self.is_canary());
        self.health = HealthTracker::new(job, group, self.services.has_health_checks());
        self.roles = group
            .tasks
            .iter()
            .map(|t| (t.name.clone(), Role::of(t)))
            .collect();
        let (upd_tx, upd_rx) = mpsc::unbounded_channel::<TaskUpdate>();
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
                template_client: self.deps.client.clone(),
                template_watch: None,
                template_waiting: None,
            };
            tasks.spawn(runner.run());
        }
        (tasks, upd_rx)
    }

    /// The runner's loop: reacts to task updates, the server's new versions of the
    /// allocation, control requests, health deadlines, destroy and agent shutdown. It
    /// returns on shutdown (tasks left running) or once every task runner is done and the
    /// alloc is destroyed or the agent shuts down.
    async fn watch(
        &mut self,
        group: &api::TaskGroup,
        mut tasks: JoinSet<()>,
        mut upd_rx: mpsc::UnboundedReceiver<TaskUpdate>,
    ) {
        let mut alloc_open = true;
        loop {
            let health_check = self.next_health_check();
            let next_kill = self.stopping.next_kill();
            let deregistering = self.stopping.deregistering();
            tokio::select! {
                biased;
                _ = self.deps.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(health_check.unwrap_or_else(std::time::Instant::now).into()), if health_check.is_some() => {
                    if self.judge_health() {
                        self.report();
                        self.persist();
                    }
                }
                Some(ctl) = self.control_rx.recv() => self.control(ctl),
                _ = self.destroy.cancelled(), if self.phase != Phase::Destroying => {
                    self.stop_gracefully(group, Phase::Destroying);
                }
                changed = self.alloc_rx.changed(), if alloc_open => {
                    if changed.is_err() {
                        // The agent dropped our handle: no more updates will come.
                        alloc_open = false;
                        continue;
                    }
                    self.alloc_changed(group);
                }
                _ = self.stopping.deregistered(), if deregistering => self.deregistered(group),
                _ = tokio::time::sleep_until(next_kill.unwrap_or_else(std::time::Instant::now).into()), if next_kill.is_some() => {
                    self.kill_due();
                }
                (id, outcome) = self.services.next_outcome() => self.check_result(&id, outcome),
                upd = upd_rx.recv() => match upd {
                    Some(u) => self.task_changed(group, u),
                    None => {
                        // Every task runner is done.
                        if self.phase == Phase::Destroying {
                            break;
                        }
                        tasks.detach_all();
                        // Wait for destroy or shutdown only.
                        tokio::select! {
                            _ = self.deps.shutdown.cancelled() => {},
                            _ = self.destroy.cancelled() => self.phase = Phase::Destroying,
                        }
                        break;
                    }
                },
            }
        }
        // Let task runners finish what they were doing (on shutdown they return at once).
        while tasks.join_next().await.is_some() {}
        while let Ok(u) = upd_rx.try_recv() {
            self.task_changed(group, u);
        }
    }

    /// Takes the server's newer version of the allocation; stops the tasks if it is to
    /// stop.
    fn alloc_changed(&mut self, group: &api::TaskGroup) {
        let new = self.alloc_rx.borrow_and_update().clone();
        self.local.alloc.desired_status = new.desired_status.clone();
        self.local.alloc.desired_description = new.desired_description.clone();
        self.local.alloc.modify_index = new.modify_index;
        self.local.alloc.alloc_modify_index = new.alloc_modify_index;
        // Promotion clears the canary flag; the health verdict stays ours.
        if let Some(ds) = &new.deployment_status {
            self.local
                .alloc
                .deployment_status
                .get_or_insert_with(Default::default)
                .canary = ds.canary;
        }
        self.services.set_canary(self.is_canary());
        if new.desired_stop() && !self.phase.killing() {
            tracing::info!(alloc = %self.alloc_id(), desired = %new.desired_status, "stopping allocation");
            self.stop_gracefully(group, Phase::Stopping);
        }
        self.persist();
    }

    /// An unpromoted canary (its services carry their `canary_tags`).
    fn is_canary(&self) -> bool {
        self.local
            .alloc
            .deployment_status
            .as_ref()
            .is_some_and(|d| d.canary)
    }

    /// Removes what the destroyed allocation leaves: its ports, pending updates, local
    /// state and alloc dir.
    fn collect_garbage(&mut self) {
        self.deps.ports.release(&self.local.ports);
        self.deps.updates.forget(self.alloc_id());
        if let Err(e) = self.deps.store.remove(self.alloc_id()) {
            tracing::warn!(alloc = %self.alloc_id(), error = %e, "cannot remove alloc state");
        }
        let alloc_dir = AllocDir::new(&self.deps.data_dir, self.alloc_id());
        if let Err(e) = alloc_dir.destroy() {
            tracing::warn!(alloc = %self.alloc_id(), error = %e, "cannot remove alloc dir");
        }
        tracing::info!(alloc = %self.alloc_id(), "allocation garbage collected");
    }

    /// Opens the lifecycle gates whose conditions hold now.
    fn update_gates(&mut self) {
        self.gates
            .update(&self.roles, &self.local.tasks, self.phase.killing());
    }

    fn task_changed(&mut self, group: &api::TaskGroup, u: TaskUpdate) {
        let now_dead = u.state.state.state == TASK_STATE_DEAD;
        let failed = u.state.state.failed;
        let name = u.task.clone();
        let restarted = self
            .local
            .tasks
            .get(&name)
            .is_some_and(|old| old.state.restarts != u.state.state.restarts);
        let running = u.state.state.state == api::TASK_STATE_RUNNING;
        self.health.task_changed(&name, running, restarted);
        let driver_ip = u
            .state
            .handle
            .as_ref()
            .and_then(crate::driver::docker::network_ip);
        self.services.set_driver_ip(&name, driver_ip);
        self.services.task_changed(&name, running, restarted);
        self.local.tasks.insert(u.task, u.state);
        if now_dead && !self.phase.killing() {
            let leader = group.tasks.iter().any(|t| t.name == name && t.leader);
            if failed {
                self.stop(
                    |_| {
                        Some(events::event(
                            events::SIBLING_FAILED,
                            format!("Task's sibling {name:?} failed"),
                        ))
                    },
                    Some(&name),
                );
            } else if leader {
                self.stop(
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
        if self.phase == Phase::Running
            && lifecycle::main_tasks_dead(&self.roles, &self.local.tasks)
        {
            self.phase = Phase::MainTasksDone;
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
