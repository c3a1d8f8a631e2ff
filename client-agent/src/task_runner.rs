//! The TaskRunner drives one task through its life: set up its directory, start it
//! through its driver, wait for it, apply the restart policy, and kill it when told to.
//! Every change of its [`LocalTaskState`] (TaskState with Nomad's events, the driver
//! handle, the restart count) goes to the alloc runner, which persists and reports it.
//!
//! On agent shutdown the runner returns and leaves the task running: a restarted agent
//! reattaches through [`Driver::recover`].

use crate::allocdir::{self, AllocDir};
use crate::driver::{
    Driver, DriverError, ExitResult, TaskContext, TaskHandle, EXIT_UNKNOWN_AFTER_RECOVERY,
};
use crate::events;
use crate::ports::AllocatedPort;
use crate::restart::{self, Decision, Outcome};
use crate::state::LocalTaskState;
use crate::taskenv::TaskEnv;
use crate::template::{self, TemplateError};
use crate::{artifact, logs};
use api::{Allocation, Node, RestartPolicy, Task, TaskEvent};
use api::{TASK_STATE_DEAD, TASK_STATE_PENDING, TASK_STATE_RUNNING};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Nomad's event type for a task whose setup failed.
const SETUP_FAILURE: &str = "Setup Failure";

/// How long to wait for a task's exit status after it was stopped.
const WAIT_AFTER_STOP: Duration = Duration::from_secs(10);

/// A task's new state, sent to its alloc runner.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub task: String,
    pub state: LocalTaskState,
}

/// The answer to a restart or signal request: a sentence on failure.
pub type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Orders from the alloc runner.
#[derive(Debug)]
pub enum TaskCommand {
    /// Stop the task for good; `reason` is an event recorded first (e.g. a sibling failed).
    Kill { reason: Option<TaskEvent> },
    /// Restart the running task now (a user asked); does not count against the policy.
    Restart { reply: Reply },
    /// Send a signal to the running task.
    Signal { signal: String, reply: Reply },
    /// Restart the running task because a check failed (`check_restart`); `reason`
    /// names the check. Counts against the restart policy, like a failure.
    CheckRestart { reason: String },
}

pub struct TaskRunner {
    pub alloc: Arc<Allocation>,
    pub task: Task,
    pub node: Arc<Node>,
    pub alloc_dir: AllocDir,
    /// `None` when the task's driver is not available on this node.
    pub driver: Option<Arc<dyn Driver>>,
    pub restart_policy: RestartPolicy,
    pub job_type: String,
    /// The state to start from: fresh, or restored from local state.
    pub state: LocalTaskState,
    /// Restored after an agent restart: reattach to the handle instead of starting.
    pub restored: bool,
    /// The group's ports with their host ports, or why they could not be assigned.
    pub ports: Result<Arc<[AllocatedPort]>, String>,
    pub updates: mpsc::UnboundedSender<TaskUpdate>,
    pub commands: mpsc::UnboundedReceiver<TaskCommand>,
    pub shutdown: CancellationToken,
    /// Lifecycle ordering: the task starts only once this is true (`None`: at once).
    pub start_gate: Option<watch::Receiver<bool>>,
    /// Artifacts are fetched once per runner, before the first start that needs them.
    pub artifacts_fetched: bool,
    /// Where templates read variables and services (`None`: no server to ask).
    pub template_client: Option<api::Client>,
    /// The running task's template watch (re-renders, asks for restarts and signals).
    pub template_watch: Option<template::Watch>,
    /// The last "Missing: ..." template event, so a wait records it once.
    pub template_waiting: Option<String>,
}

enum Phase {
    /// Waiting for the lifecycle gate.
    Gate,
    Start,
    /// A restart of the running task a user asked for (`Some` reply) or a template's
    /// change (`None`).
    Restart(TaskHandle, Option<Reply>),
    ArtifactFailed(String),
    /// The task's directory cannot be built safely (e.g. its name leaves the alloc dir).
    SetupFailed(String),
    /// A template cannot render: the task does not start.
    TemplateFailed(String),
    /// A template waits for data (a variable that does not exist yet).
    TemplateWait(String),
    Wait(TaskHandle),
    Exited(ExitResult),
    StartFailed(DriverError),
    Delay(Duration),
    Kill(Option<TaskEvent>),
    Done,
}

/// Adds up to 25% to a restart delay, so tasks failing together do not restart together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64((nanos % 1000) as f64 / 4000.0)
}

impl TaskRunner {
    fn emit(&self) {
        let _ = self.updates.send(TaskUpdate {
            task: self.task.name.clone(),
            state: self.state.clone(),
        });
    }

    fn push_event(&mut self, e: TaskEvent) {
        events::push(&mut self.state.state.events, e);
    }

    fn set_dead(&mut self, failed: bool) {
        let s = &mut self.state.state;
        s.state = TASK_STATE_DEAD.into();
        s.failed |= failed;
        s.finished_at = Some(events::now_rfc3339().into());
        self.state.handle = None;
    }

    /// Waits for the next order; never resolves once the alloc runner is gone.
    async fn next_command(commands: &mut mpsc::UnboundedReceiver<TaskCommand>) -> TaskCommand {
        match commands.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    /// The next phase after an order that came while the task is not running: a restart
    /// goes to `restart_to`, a signal is refused and the runner stays in `stay`.
    fn not_running(cmd: TaskCommand, restart_to: Phase, stay: Phase) -> Phase {
        match cmd {
            TaskCommand::Kill { reason } => Phase::Kill(reason),
            TaskCommand::Restart { reply } => {
                let _ = reply.send(Ok(()));
                restart_to
            }
            TaskCommand::Signal { reply, .. } => {
                let _ = reply.send(Err("the task is not running".into()));
                stay
            }
            // Not running: nothing to restart.
            TaskCommand::CheckRestart { .. } => stay,
        }
    }

    /// Runs the task until it is dead for good or the agent shuts down.
    pub async fn run(mut self) {
        // Log rotation lives as long as this runner; a restarted agent starts a new one.
        let rotation = CancellationToken::new();
        let _stop_rotation = rotation.clone().drop_guard();
        tokio::spawn(logs::rotate_loop(
            self.alloc_dir.root.clone(),
            self.task.name.clone(),
            logs::Rotation::from_config(self.task.log_config.as_ref()),
            rotation,
        ));
        let mut phase = self.first_phase().await;
        loop {
            phase = match phase {
                Phase::Done => return,
                Phase::Gate => {
                    let mut gate = self.start_gate.clone().expect("gated tasks have a gate");
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return,
                        cmd = Self::next_command(&mut self.commands) => {
                            Self::not_running(cmd, Phase::Gate, Phase::Gate)
                        }
                        open = gate.wait_for(|open| *open) => match open {
                            Ok(_) => Phase::Start,
                            // The alloc runner is gone (agent shutdown).
                            Err(_) => return,
                        },
                    }
                }
                Phase::Start => match self.commands.try_recv() {
                    Ok(cmd) => Self::not_running(cmd, Phase::Start, Phase::Start),
                    Err(_) => self.start().await,
                },
                Phase::Wait(handle) => {
                    let driver = self.driver.clone().expect("a started task has a driver");
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return,
                        cmd = Self::next_command(&mut self.commands) => match cmd {
                            TaskCommand::Kill { reason } => Phase::Kill(reason),
                            TaskCommand::Restart { reply } => Phase::Restart(handle, Some(reply)),
                            TaskCommand::CheckRestart { reason } => {
                                self.check_restart(handle, reason).await
                            }
                            TaskCommand::Signal { signal, reply } => {
                                let res = driver.signal(&handle, &signal).await;
                                self.push_event(events::event(
                                    events::SIGNALING,
                                    format!("Task being sent signal {signal}"),
                                ));
                                self.emit();
                                let _ = reply.send(res.map_err(|e| e.to_string()));
                                Phase::Wait(handle)
                            }
                        },
                        res = driver.wait(&handle) => Phase::Exited(res),
                        Some(change) = Self::template_change(&mut self.template_watch) => {
                            self.template_changed(handle, change).await
                        }
                    }
                }
                Phase::Restart(handle, reply) => self.restart_now(handle, reply).await,
                Phase::Exited(res) => self.exited(res),
                Phase::StartFailed(err) => self.start_failed(err),
                Phase::ArtifactFailed(msg) => self.artifact_failed(msg),
                Phase::SetupFailed(msg) => self.setup_failed(msg),
                Phase::TemplateFailed(msg) => self.template_failed(msg),
                Phase::TemplateWait(msg) => {
                    if self.template_waiting.as_deref() != Some(msg.as_str()) {
                        tracing::info!(alloc = %self.alloc.id, task = %self.task.name, reason = %msg, "template waits for data");
                        self.push_event(events::event(template::EVENT_TEMPLATE, msg.clone()));
                        self.emit();
                        self.template_waiting = Some(msg.clone());
                    }
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return,
                        cmd = Self::next_command(&mut self.commands) => {
                            Self::not_running(cmd, Phase::Start, Phase::TemplateWait(msg))
                        }
                        _ = tokio::time::sleep(template::retry_interval()) => Phase::Start,
                    }
                }
                Phase::Delay(d) => {
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return,
                        cmd = Self::next_command(&mut self.commands) => {
                            Self::not_running(cmd, Phase::Start, Phase::Delay(d))
                        }
                        _ = tokio::time::sleep(d) => Phase::Start,
                    }
                }
                Phase::Kill(reason) => self.kill(reason).await,
            };
        }
    }

    /// Stops the running task and starts it again at once, as a user asked (`reply`) or
    /// a re-rendered template's `change_mode = "restart"` (no reply).
    async fn restart_now(&mut self, handle: TaskHandle, reply: Option<Reply>) -> Phase {
        let driver = self.driver.clone().expect("a started task has a driver");
        let (signaled, why) = match reply {
            Some(_) => ("User requested task to restart", "User requested restart"),
            None => (
                "Template with change_mode restart re-rendered",
                "Template with change_mode restart re-rendered",
            ),
        };
        let send = |reply: Option<Reply>, r: Result<(), String>| {
            if let Some(reply) = reply {
                let _ = reply.send(r);
            }
        };
        self.push_event(events::event(events::RESTART_SIGNALED, signaled));
        let timeout = self.task.kill_timeout();
        self.push_event(events::killing(timeout));
        self.emit();
        if let Err(e) = driver.stop(&handle, &self.task.kill_signal, timeout).await {
            send(reply, Err(format!("stopping the task: {e}")));
            return Phase::Wait(handle);
        }
        if let Ok(res) = tokio::time::timeout(WAIT_AFTER_STOP, driver.wait(&handle)).await {
            self.push_event(events::terminated(&res));
        }
        self.state.handle = None;
        self.push_event(events::restarting(Duration::ZERO, why));
        let s = &mut self.state.state;
        s.state = TASK_STATE_PENDING.into();
        s.restarts += 1;
        s.last_restart = Some(events::now_rfc3339().into());
        self.emit();
        send(reply, Ok(()));
        Phase::Start
    }

    fn template_renderer(&self, dirs: &allocdir::TaskDirs, env: &TaskEnv) -> template::Renderer {
        let namespace = env
            .vars
            .get("NOMAD_NAMESPACE")
            .cloned()
            .unwrap_or_else(|| api::DEFAULT_NAMESPACE.into());
        template::Renderer::new(
            self.task.templates.clone(),
            self.template_client.clone(),
            &namespace,
            &self.alloc_dir.root,
            &self.task.name,
            dirs,
            env.clone(),
        )
    }

    /// After an agent restart: the watch of the reattached task's templates.
    fn resume_templates(&self, driver: &dyn Driver) -> Option<template::Watch> {
        if self.task.templates.is_empty() {
            return None;
        }
        let dirs = self.alloc_dir.task_dirs(&self.task.name).ok()?;
        let ports = self.ports.as_ref().ok()?;
        let env = TaskEnv::build_with(
            &self.node,
            &self.alloc,
            &self.task,
            &dirs,
            ports,
            driver.fs_isolation(),
        );
        Some(template::resume(self.template_renderer(&dirs, &env)))
    }

    /// The running task's next template change (never, without a watch).
    async fn template_change(watch: &mut Option<template::Watch>) -> Option<template::Change> {
        match watch {
            Some(w) => w.changes.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Applies a re-rendered template's `change_mode` to the running task.
    async fn template_changed(&mut self, handle: TaskHandle, change: template::Change) -> Phase {
        match change {
            template::Change::Restart => Phase::Restart(handle, None),
            template::Change::Signal(signal) => {
                let driver = self.driver.clone().expect("a started task has a driver");
                self.push_event(events::event(
                    events::SIGNALING,
                    format!("Template re-rendered; sending signal {signal}"),
                ));
                self.emit();
                if let Err(e) = driver.signal(&handle, &signal).await {
                    tracing::warn!(alloc = %self.alloc.id, task = %self.task.name, error = %e, "cannot signal the task after its template changed");
                }
                Phase::Wait(handle)
            }
        }
    }

    /// A template cannot render: Nomad's "Template" event, and the task is not started
    /// or restarted (the job file must change).
    fn template_failed(&mut self, msg: String) -> Phase {
        tracing::warn!(alloc = %self.alloc.id, task = %self.task.name, error = %msg, "template failed");
        let mut e = events::event(template::EVENT_TEMPLATE, format!("Template failed: {msg}"));
        e.detail_mut().details.insert("template_error".into(), msg);
        self.push_event(e);
        self.decide_and_apply(Outcome::StartFailed { recoverable: false })
    }

    /// Stops the running task because a check kept failing, then lets the restart policy
    /// decide (Nomad counts these restarts as failures).
    async fn check_restart(&mut self, handle: TaskHandle, reason: String) -> Phase {
        let driver = self.driver.clone().expect("a started task has a driver");
        tracing::info!(alloc = %self.alloc.id, task = %self.task.name, %reason, "restarting the task: its check failed");
        self.push_event(events::event(events::RESTART_SIGNALED, reason.clone()));
        let timeout = self.task.kill_timeout();
        self.push_event(events::killing(timeout));
        self.emit();
        if let Err(e) = driver.stop(&handle, &self.task.kill_signal, timeout).await {
            tracing::warn!(alloc = %self.alloc.id, task = %self.task.name, error = %e, "cannot stop the task for its check restart");
            return Phase::Wait(handle);
        }
        if let Ok(res) = tokio::time::timeout(WAIT_AFTER_STOP, driver.wait(&handle)).await {
            self.push_event(events::terminated(&res));
        }
        self.state.handle = None;
        let unhealthy = ExitResult {
            exit_code: -1,
            signal: 0,
            err: Some(reason),
            oom_killed: false,
        };
        self.decide_and_apply(Outcome::Exited(&unhealthy))
    }

    /// The restart policy's word on `outcome`, carried out: the one step every failure
    /// path ends with.
    fn decide_and_apply(&mut self, outcome: Outcome) -> Phase {
        let d = restart::decide(
            &self.restart_policy,
            &self.job_type,
            outcome,
            &mut self.state.restart,
            events::now_nanos(),
        );
        self.apply(d)
    }

    fn artifact_failed(&mut self, msg: String) -> Phase {
        tracing::warn!(alloc = %self.alloc.id, task = %self.task.name, error = %msg, "artifact download failed");
        let mut e = events::event(events::FAILED_ARTIFACT_DOWNLOAD, msg.clone());
        e.detail_mut().details.insert("download_error".into(), msg);
        self.push_event(e);
        self.decide_and_apply(Outcome::StartFailed { recoverable: true })
    }

    /// Nomad's "Setup Failure": the task cannot be set up and is not restarted.
    fn setup_failed(&mut self, msg: String) -> Phase {
        tracing::warn!(alloc = %self.alloc.id, task = %self.task.name, error = %msg, "task setup failed");
        let mut e = events::event(SETUP_FAILURE, msg.clone());
        e.detail_mut().details.insert("setup_error".into(), msg);
        self.push_event(e);
        self.decide_and_apply(Outcome::StartFailed { recoverable: false })
    }

    async fn first_phase(&mut self) -> Phase {
        if self.state.state.state == TASK_STATE_DEAD {
            return Phase::Done;
        }
        if !self.restored && self.state.state.events.is_empty() {
            self.push_event(events::received());
        }
        let Some(driver) = self.driver.clone() else {
            let msg = format!(
                "driver {:?} is not available on this node",
                self.task.driver
            );
            self.push_event(events::driver_failure(&msg));
            self.push_event(events::not_restarting(restart::REASON_UNRECOVERABLE, true));
            self.set_dead(true);
            self.emit();
            return Phase::Done;
        };
        let gated = self.start_gate.is_some();
        if !self.restored {
            self.state.state.state = TASK_STATE_PENDING.into();
            self.emit();
            return if gated { Phase::Gate } else { Phase::Start };
        }
        match self.state.handle.clone() {
            Some(h) => match driver.recover(&h).await {
                Ok(true) => {
                    tracing::info!(task = %h.task_id, pid = h.pid, "reattached to running task");
                    self.template_watch = self.resume_templates(driver.as_ref());
                    Phase::Wait(h)
                }
                Ok(false) | Err(_) => {
                    tracing::info!(task = %h.task_id, pid = h.pid, "task exited while the agent was away");
                    Phase::Exited(ExitResult {
                        exit_code: -1,
                        signal: 0,
                        err: Some(EXIT_UNKNOWN_AFTER_RECOVERY.into()),
                        oom_killed: false,
                    })
                }
            },
            // It was waiting to be (re)started when the agent stopped.
            None if gated && self.state.state.started_at.is_none() => Phase::Gate,
            None => Phase::Start,
        }
    }

    async fn start(&mut self) -> Phase {
        let driver = self.driver.clone().expect("checked in first_phase");
        let first_start = self.state.state.started_at.is_none() && self.state.state.restarts == 0;
        // Once, not on every retry of a template waiting for data.
        if first_start && self.template_waiting.is_none() {
            self.push_event(events::setup());
            self.emit();
        }
        let dirs = match self.alloc_dir.build_task(&self.task.name) {
            Ok(d) => d,
            // A name or a directory that would lead out of the alloc dir: retrying cannot help.
            Err(e)
                if e.kind() == std::io::ErrorKind::InvalidInput
                    || allocdir::is_link_refusal(&e) =>
            {
                return Phase::SetupFailed(format!("building the task directory: {e}"))
            }
            Err(e) => {
                return Phase::StartFailed(DriverError::Start(format!(
                    "building the task directory: {e}"
                )))
            }
        };
        let ports = match &self.ports {
            Ok(p) => p.to_vec(),
            Err(e) => return Phase::StartFailed(DriverError::Config(e.clone())),
        };
        let mut env = TaskEnv::build_with(
            &self.node,
            &self.alloc,
            &self.task,
            &dirs,
            &ports,
            driver.fs_isolation(),
        );
        if let (Some(dp), Some(job)) = (&self.task.dispatch_payload, &self.alloc.job) {
            if !job.payload.is_empty() {
                if let Err(e) = crate::payload::write(
                    &self.alloc_dir.root,
                    &self.task.name,
                    &dp.file,
                    &job.payload,
                ) {
                    return Phase::SetupFailed(e);
                }
            }
        }
        if !self.artifacts_fetched && !self.task.artifacts.is_empty() {
            self.push_event(events::event(
                events::DOWNLOADING_ARTIFACTS,
                "Client is downloading artifacts",
            ));
            self.emit();
            if let Err(e) = artifact::fetch_all(
                &self.task.artifacts,
                &env,
                &self.alloc_dir.root,
                &self.task.name,
                &self.task.user,
            )
            .await
            {
                return Phase::ArtifactFailed(e);
            }
            self.artifacts_fetched = true;
        }
        // Templates render after artifacts (a `source` may come from one), every start.
        self.template_watch = None;
        let mut renderer = None;
        if !self.task.templates.is_empty() {
            let mut r = self.template_renderer(&dirs, &env);
            match r.render_all().await {
                Ok(vars) => env.vars.extend(vars),
                Err(TemplateError::Missing(m)) => return Phase::TemplateWait(m),
                Err(TemplateError::Failed(m)) => return Phase::TemplateFailed(m),
            }
            self.template_waiting = None;
            renderer = Some(r);
        }
        let ctx = TaskContext {
            alloc_id: self.alloc.id.to_string(),
            task: self.task.clone(),
            dirs,
            env,
            ports,
        };
        match driver.start(&ctx).await {
            Ok(h) => {
                let s = &mut self.state.state;
                s.state = TASK_STATE_RUNNING.into();
                if s.started_at.is_none() {
                    s.started_at = Some(events::now_rfc3339().into());
                }
                self.state.handle = Some(h.clone());
                self.push_event(events::started());
                self.emit();
                self.template_watch = renderer.and_then(template::watch);
                Phase::Wait(h)
            }
            Err(e) => Phase::StartFailed(e),
        }
    }

    fn apply(&mut self, decision: Decision) -> Phase {
        match decision {
            Decision::Restart { delay, reason } => {
                let delay = jitter(delay);
                self.push_event(events::restarting(delay, reason));
                let s = &mut self.state.state;
                s.state = TASK_STATE_PENDING.into();
                s.restarts += 1;
                s.last_restart = Some(events::now_rfc3339().into());
                self.emit();
                Phase::Delay(delay)
            }
            Decision::NoRestart { failed, reason } => {
                if !reason.is_empty() {
                    self.push_event(events::not_restarting(&reason, failed));
                }
                self.set_dead(failed);
                self.emit();
                Phase::Done
            }
        }
    }

    fn exited(&mut self, res: ExitResult) -> Phase {
        self.state.handle = None;
        if res.oom_killed {
            self.push_event(events::oom_killed());
        }
        self.push_event(events::terminated(&res));
        self.decide_and_apply(Outcome::Exited(&res))
    }

    fn start_failed(&mut self, err: DriverError) -> Phase {
        tracing::warn!(alloc = %self.alloc.id, task = %self.task.name, error = %err, "task failed to start");
        self.push_event(events::driver_failure(&err.to_string()));
        self.decide_and_apply(Outcome::StartFailed {
            recoverable: err.recoverable(),
        })
    }

    async fn kill(&mut self, reason: Option<TaskEvent>) -> Phase {
        if let Some(e) = reason {
            self.push_event(e);
        }
        let mut err = None;
        if let (Some(h), Some(driver)) = (self.state.handle.clone(), self.driver.clone()) {
            let timeout = self.task.kill_timeout();
            self.push_event(events::killing(timeout));
            self.emit();
            if let Err(e) = driver.stop(&h, &self.task.kill_signal, timeout).await {
                err = Some(e.to_string());
            }
            if let Ok(res) = tokio::time::timeout(WAIT_AFTER_STOP, driver.wait(&h)).await {
                if res.oom_killed {
                    self.push_event(events::oom_killed());
                }
                self.push_event(events::terminated(&res));
            }
        }
        self.push_event(events::killed(err.as_deref()));
        self.set_dead(false);
        self.emit();
        Phase::Done
    }
}
