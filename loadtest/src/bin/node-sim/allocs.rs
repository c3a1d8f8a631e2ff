//! The simulator's stand-in for the agent's alloc runners: for each allocation placed on
//! a node it starts the group's tasks through the mock driver (which reaches running
//! after its delay and starts no process) and queues the same status updates a real
//! agent sends (pending, then running; complete once told to stop) into the node's
//! batching reporter. No alloc dir, local state file or log rotation: those are the
//! node's own costs, not the servers'.

use api::{AllocClientUpdate, AllocDeploymentStatus, Allocation, Node, TaskState};
use client_agent::agent::AllocSync;
use client_agent::allocdir::AllocDir;
use client_agent::driver::{Driver, FsIsolation, MockDriver, TaskContext};
use client_agent::events;
use client_agent::reporter::PendingUpdates;
use client_agent::taskenv::TaskEnv;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What all simulated nodes' allocations did, for the simulator's report.
#[derive(Debug, Default)]
pub struct AllocCounters {
    /// Allocations the nodes were told to run.
    pub received: AtomicU64,
    /// Allocations whose tasks all run now.
    pub running: AtomicU64,
    /// Allocations stopped (told to stop, or gone from the servers).
    pub stopped: AtomicU64,
    /// Watch answers, and those that carried nothing new (every allocation at the same
    /// modify index as in the node's previous answer).
    pub answers: AtomicU64,
    pub answers_unchanged: AtomicU64,
    /// Allocations in all answers (each with its job embedded).
    pub answer_allocs: AtomicU64,
    /// JSON bytes of one answer in 64, re-encoded, and how many were measured.
    pub sampled_bytes: AtomicU64,
    pub sampled_answers: AtomicU64,
}

/// One node's allocations.
pub struct SimAllocs {
    node: Arc<Node>,
    driver: Arc<MockDriver>,
    updates: PendingUpdates,
    counters: Arc<AllocCounters>,
    /// Where the alloc dirs would be: only used to name paths in the task environment.
    data_dir: PathBuf,
    /// The stop signal of each allocation this node runs.
    by_id: HashMap<String, CancellationToken>,
    /// What the previous answer held: a hash of its (ID, modify index) pairs.
    last_answer: Option<u64>,
}

impl SimAllocs {
    pub fn new(
        node: Arc<Node>,
        driver: Arc<MockDriver>,
        updates: PendingUpdates,
        counters: Arc<AllocCounters>,
    ) -> Self {
        SimAllocs {
            data_dir: PathBuf::from("/nonexistent/drover-sim").join(&node.id),
            node,
            driver,
            updates,
            counters,
            by_id: HashMap::new(),
            last_answer: None,
        }
    }

    fn start(&mut self, alloc: Allocation) {
        let Some(job) = alloc.job.clone() else {
            return;
        };
        let Some(group) = job.task_groups.iter().find(|g| g.name == alloc.task_group) else {
            return;
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let stop = CancellationToken::new();
        self.by_id.insert(alloc.id.to_string(), stop.clone());
        let mut contexts = Vec::new();
        for task in &group.tasks {
            let Ok(dirs) = AllocDir::new(&self.data_dir, &alloc.id).task_dirs(&task.name) else {
                continue;
            };
            let env = TaskEnv::build_with(&self.node, &alloc, task, &dirs, &[], FsIsolation::None);
            contexts.push(TaskContext {
                alloc_id: alloc.id.to_string(),
                task: task.clone(),
                dirs,
                env,
                ports: vec![],
            });
        }
        let (driver, updates, counters) = (
            self.driver.clone(),
            self.updates.clone(),
            self.counters.clone(),
        );
        let with_deployment = !alloc.deployment_id.is_empty();
        let id = alloc.id;
        // Boxed: the future waits for the whole life of the allocation, so only what it
        // needs then (the handles, the task states) should be inline in it.
        tokio::spawn(Box::pin(async move {
            let mut tasks: api::TaskMap<TaskState> = contexts
                .iter()
                .map(|c| {
                    let st = TaskState {
                        state: "pending".into(),
                        events: vec![events::received(), events::setup()],
                        ..Default::default()
                    };
                    (c.task.name.clone(), st)
                })
                .collect();
            updates.push(update(&id, "pending", "No tasks have started", &tasks));
            let mut handles = Vec::new();
            for c in &contexts {
                let started = tokio::select! {
                    _ = stop.cancelled() => None,
                    h = Box::pin(driver.start(c)) => h.ok(),
                };
                let Some(h) = started else { break };
                let st = tasks.entry(c.task.name.clone()).or_default();
                st.state = "running".into();
                st.started_at = Some(events::now_rfc3339().into());
                st.events.push(events::started());
                handles.push(h);
            }
            let all_started = handles.len() == contexts.len();
            // The task contexts (environment, paths, the task) are only for starting.
            drop(contexts);
            if all_started && !stop.is_cancelled() {
                let mut u = update(&id, "running", "Tasks are running", &tasks);
                if with_deployment {
                    u.deployment_status = Some(AllocDeploymentStatus {
                        healthy: Some(true),
                        timestamp: events::now_nanos(),
                        ..Default::default()
                    });
                }
                updates.push(u);
                counters.running.fetch_add(1, Ordering::Relaxed);
                stop.cancelled().await;
                counters.running.fetch_sub(1, Ordering::Relaxed);
            }
            for h in &handles {
                let _ = driver
                    .stop(h, "SIGTERM", std::time::Duration::from_secs(5))
                    .await;
            }
            for (_, st) in tasks.iter_mut() {
                st.state = "dead".into();
                st.finished_at = Some(events::now_rfc3339().into());
                st.events.push(events::killed(None));
            }
            updates.push(update(&id, "complete", "All tasks have completed", &tasks));
            counters.stopped.fetch_add(1, Ordering::Relaxed);
        }));
    }
}

fn update(
    id: &str,
    status: &str,
    description: &str,
    tasks: &api::TaskMap<TaskState>,
) -> AllocClientUpdate {
    AllocClientUpdate {
        id: id.to_string(),
        client_status: status.into(),
        client_description: description.into(),
        task_states: tasks.clone(),
        deployment_status: None,
    }
}

impl AllocSync for SimAllocs {
    fn sync(&mut self, allocs: Vec<Allocation>) {
        use std::hash::{Hash, Hasher};
        let c = &self.counters;
        let n = c.answers.fetch_add(1, Ordering::Relaxed);
        c.answer_allocs
            .fetch_add(allocs.len() as u64, Ordering::Relaxed);
        if n.is_multiple_of(64) {
            let bytes = serde_json::to_vec(&allocs).map_or(0, |b| b.len());
            c.sampled_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            c.sampled_answers.fetch_add(1, Ordering::Relaxed);
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for a in &allocs {
            (&a.id, a.modify_index).hash(&mut h);
        }
        let digest = h.finish();
        if self.last_answer == Some(digest) {
            c.answers_unchanged.fetch_add(1, Ordering::Relaxed);
        }
        self.last_answer = Some(digest);
        let mut known = std::collections::HashSet::with_capacity(allocs.len());
        for a in allocs {
            known.insert(a.id.clone());
            if let Some(stop) = self.by_id.get(a.id.as_str()) {
                if a.desired_status != api::ALLOC_DESIRED_RUN {
                    stop.cancel();
                }
                continue;
            }
            if a.terminal() || a.desired_status != api::ALLOC_DESIRED_RUN {
                continue;
            }
            self.start(a);
        }
        // Gone from the servers (garbage collected or purged): stop and forget.
        self.by_id.retain(|id, stop| {
            let keep = known.contains(id.as_str());
            if !keep {
                stop.cancel();
            }
            keep
        });
    }
}
