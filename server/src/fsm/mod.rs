//! The finite state machine: the ONLY code that writes the state store.
//!
//! `apply` dispatches each command to its handler (`nodes`, `jobs`, `allocs`, `evals`);
//! handlers write through a `StateWriter`, which keeps the table indexes and which only
//! this module can create (it needs a `WriteToken`).
//!
//! Each Raft entry carries one `Command`. Applying it must be deterministic on every
//! server, so every identifier and timestamp is chosen by the leader before it proposes
//! the entry, never here.

use crate::state::{StateStore, StateWriter};
use api::{AllocClientUpdate, Allocation, Evaluation, Job, Node};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod acl;
mod allocs;
mod deployments;
mod evals;
mod jobs;
mod namespaces;
mod nodes;
mod operator;
mod services;
mod variables;

pub use acl::{AclCommand, BOOTSTRAP_DONE};
pub use evals::job_status;
pub use jobs::assign_version;
pub use namespaces::{NamespaceCommand, NAMESPACE_IN_USE};
pub use variables::CAS_CONFLICT;

/// One replicated state change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Proves leadership and measures the write path; changes nothing but the index.
    Noop,
    /// A client agent registered (or re-registered) its node.
    UpsertNode {
        node: Node,
        evals: Vec<Evaluation>,
    },
    /// A node's status changed (heartbeat missed, came back, disconnect window over),
    /// with the client statuses the servers set on its allocations because of it.
    UpdateNodeStatus {
        node_id: String,
        status: String,
        now: i64,
        evals: Vec<Evaluation>,
        /// Apply only while the node still has this status: the leader decided from a
        /// snapshot, and a heartbeat may have been committed since.
        #[serde(default)]
        if_status: Option<String>,
        /// `unknown` when the node disconnects, `lost` when its window ends.
        #[serde(default)]
        alloc_updates: Vec<AllocStatusChange>,
    },
    /// A job was submitted: a new version when its spec changed.
    RegisterJob {
        job: Job,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// A job was stopped (and with `purge`, forgotten).
    DeregisterJob {
        namespace: String,
        job_id: String,
        purge: bool,
        eval: Option<Evaluation>,
        now: i64,
    },
    UpsertEvals {
        evals: Vec<Evaluation>,
    },
    /// What the plan applier accepted of a plan. Allocations carry no job: `job` is
    /// attached to every new one, so the job is written to the log once per plan.
    ApplyPlan {
        job: Option<Job>,
        allocs: Vec<Allocation>,
        stops: Vec<AllocStop>,
        eval: Option<Evaluation>,
        create_evals: Vec<Evaluation>,
        now: i64,
        /// A deployment the plan starts.
        #[serde(default)]
        deployment: Option<Box<api::Deployment>>,
        /// Status changes of other deployments (older versions', cancelled).
        #[serde(default)]
        deployment_updates: Vec<api::DeploymentStatusUpdate>,
    },
    /// Set a deployment's status: fail, pause, resume (`running`, only from paused), or the
    /// deployment watcher's verdict. A terminal deployment is never changed.
    UpdateDeploymentStatus {
        update: api::DeploymentStatusUpdate,
        /// A version to register again in the same entry (`auto_revert`).
        #[serde(default)]
        job: Option<Job>,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// Promote a deployment's canaries (all groups when `groups` is empty).
    PromoteDeployment {
        deployment_id: String,
        groups: Vec<String>,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// An operator's verdict on allocations of a deployment.
    SetAllocHealth {
        deployment_id: String,
        healthy: Vec<String>,
        unhealthy: Vec<String>,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// Mark a job version stable or not (`/v1/job/:id/stable`).
    UpdateJobStability {
        namespace: String,
        job_id: String,
        version: u64,
        stable: bool,
    },
    /// Start, update or end a node's drain.
    UpdateNodeDrain {
        node_id: String,
        /// `None` ends the drain (completed or canceled).
        strategy: Option<api::DrainStrategy>,
        /// On ending a drain: make the node eligible again.
        mark_eligible: bool,
        /// "draining", "complete" or "canceled".
        drain_status: String,
        event: Option<api::NodeEvent>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// `drover node eligibility -enable|-disable`.
    UpdateNodeEligibility {
        node_id: String,
        eligibility: String,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// Ask the scheduler to move allocations (the drainer, `alloc stop`).
    AllocDesiredTransitions {
        transitions: Vec<(String, api::DesiredTransition)>,
        evals: Vec<Evaluation>,
    },
    /// `drover operator snapshot restore`: replace the whole state with a saved one.
    RestoreState {
        state: Box<StateStore>,
    },
    /// A batch of status reports from one client agent.
    ClientAllocUpdate {
        updates: Vec<AllocClientUpdate>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// A client agent registered and deregistered service instances of its allocations
    /// (`provider = "nomad"`). The server fills each registration's node, namespace, job
    /// and datacenter from its own state before proposing.
    UpsertServices {
        node_id: String,
        upsert: Vec<api::ServiceRegistration>,
        delete_ids: Vec<String>,
    },
    /// `PUT /v1/operator/scheduler/configuration`; with `cas`, only while the stored
    /// configuration's modify index is `cas` (0: none set yet).
    SetSchedulerConfig {
        config: api::SchedulerConfiguration,
        cas: Option<u64>,
    },
    /// `PUT /v1/system/gc`: remove what the leader found collectable (`crate::gc`).
    GarbageCollect {
        jobs: Vec<(String, String)>,
        evals: Vec<String>,
        allocs: Vec<String>,
        deployments: Vec<String>,
    },
    /// An operator deleted service registrations (`DELETE /v1/service/:name/:id`).
    DeleteServices {
        ids: Vec<String>,
    },
    /// Write a variable (items sealed by the leader); with `cas`, only if its modify
    /// index is `cas` (0: only if absent).
    PutVariable {
        var: crate::state::StoredVariable,
        cas: Option<u64>,
    },
    /// Delete a variable; with `cas`, only at that modify index.
    DeleteVariable {
        namespace: String,
        path: String,
        cas: Option<u64>,
    },
    /// Replicate a root key so every server can open the variables sealed with it.
    UpsertRootKey {
        key: crate::state::RootKey,
    },
    /// ACL policies, tokens, roles and the bootstrap (`acl.rs`).
    Acl(AclCommand),
    /// Create, update or delete namespaces (`namespaces.rs`).
    Namespace(NamespaceCommand),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocStop {
    pub id: String,
    pub desired_status: String,
    pub desired_description: String,
    /// Set for allocations lost with their node.
    pub client_status: Option<String>,
    pub followup_eval_id: String,
}

/// A client status the servers set on an allocation whose node does not answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocStatusChange {
    pub id: String,
    /// Applied only if the allocation still has this client status.
    pub from: String,
    pub client_status: String,
    pub client_description: String,
}

/// The outcome of applying a command, returned to whoever proposed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub index: u64,
    pub job_modify_index: u64,
    pub error: Option<String>,
    /// The evaluation a registration committed: a proposal answered from its token
    /// reports the first attempt's evaluation, not the one the retry carried.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub eval_id: String,
}

/// What an apply changed that the leader's services must react to.
#[derive(Debug, Default)]
pub struct Effects {
    /// Evaluations written: the broker enqueues the pending and blocked ones.
    pub evals: Vec<Arc<Evaluation>>,
    /// Capacity may have appeared (node ready, allocations stopped): unblock waiting evals.
    pub capacity_changed: bool,
    /// What the entries changed, typed, for the event stream (`crate::events`).
    pub events: Vec<crate::events::Event>,
    /// The nodes whose allocation watches must wake (`crate::watchers`).
    pub wakes: crate::watchers::NodeWakes,
}

/// Proof that the caller is the FSM: a `StateWriter` cannot be made without one, and only
/// this module can make one (its field is private).
pub struct WriteToken(());

/// Record that the entry at `index` was applied without changing any table (a blank or
/// membership entry, or a repeated proposal answered from its token).
pub fn advance(state: &mut StateStore, index: u64) {
    StateWriter::new(state, index, WriteToken(()));
}

/// A writer for unit tests that build a state directly (tests only).
#[cfg(test)]
pub(crate) fn test_writer(state: &mut StateStore, index: u64) -> StateWriter<'_> {
    StateWriter::new(state, index, WriteToken(()))
}

/// Write an allocation at the state's current index (tests only).
#[cfg(test)]
pub(crate) fn test_put_alloc(state: &mut StateStore, a: Allocation) {
    let index = state.index();
    test_writer(state, index).upsert_alloc(a);
}

/// Write a node at the state's current index (tests only).
#[cfg(test)]
pub(crate) fn test_put_node(state: &mut StateStore, n: Node) {
    let index = state.index();
    test_writer(state, index).upsert_node(n);
}

/// Apply one command at `index`: the state store's only entry point for writes.
pub fn apply(state: &mut StateStore, index: u64, cmd: Command, fx: &mut Effects) -> Response {
    let mut w = StateWriter::new(state, index, WriteToken(()));
    let event_type = event_type(&cmd);
    let mut resp = Response {
        index,
        ..Default::default()
    };
    match cmd {
        Command::Noop => {}
        Command::UpsertNode { node, evals } => {
            nodes::upsert_node(&mut w, node, evals, fx, &mut resp)
        }
        Command::UpdateNodeStatus {
            node_id,
            status,
            now,
            evals,
            if_status,
            alloc_updates,
        } => {
            let change = nodes::StatusChange {
                node_id,
                status,
                now,
                evals,
                if_status,
                alloc_updates,
            };
            nodes::update_node_status(&mut w, change, fx)
        }
        Command::UpdateNodeDrain {
            node_id,
            strategy,
            mark_eligible,
            drain_status,
            event,
            evals,
            now,
        } => {
            let change = nodes::DrainChange {
                node_id,
                strategy,
                mark_eligible,
                drain_status,
                event,
                evals,
                now,
            };
            nodes::update_node_drain(&mut w, change, fx)
        }
        Command::UpdateNodeEligibility {
            node_id,
            eligibility,
            evals,
            now,
        } => nodes::update_node_eligibility(&mut w, &node_id, eligibility, evals, now, fx),
        Command::AllocDesiredTransitions { transitions, evals } => {
            allocs::alloc_desired_transitions(&mut w, transitions, evals, fx)
        }
        Command::RegisterJob { job, eval, now } => {
            jobs::register_job(&mut w, job, eval, now, fx, &mut resp)
        }
        Command::DeregisterJob {
            namespace,
            job_id,
            purge,
            eval,
            now,
        } => {
            if !purge {
                deployments::cancel_for_stopped_job(&mut w, &namespace, &job_id, now);
            }
            jobs::deregister_job(&mut w, &namespace, &job_id, purge, eval, fx, &mut resp)
        }
        Command::UpsertEvals { evals } => evals::upsert_evals(&mut w, evals, fx),
        Command::RestoreState { state: restored } => restore_state(&mut w, *restored, fx),
        Command::ApplyPlan {
            job,
            allocs,
            stops,
            eval,
            create_evals,
            now,
            deployment,
            deployment_updates,
        } => {
            let plan = allocs::PlanResult {
                job,
                allocs,
                stops,
                eval,
                create_evals,
                now,
                deployment,
                deployment_updates,
            };
            allocs::apply_plan(&mut w, plan, fx)
        }
        Command::UpdateDeploymentStatus {
            update,
            job,
            eval,
            now,
        } => deployments::update_status(&mut w, update, job, eval, now, fx, &mut resp),
        Command::PromoteDeployment {
            deployment_id,
            groups,
            eval,
            now,
        } => deployments::promote(&mut w, &deployment_id, &groups, eval, now, fx),
        Command::SetAllocHealth {
            deployment_id,
            healthy,
            unhealthy,
            eval,
            now,
        } => {
            deployments::set_alloc_health(&mut w, &deployment_id, healthy, unhealthy, eval, now, fx)
        }
        Command::UpdateJobStability {
            namespace,
            job_id,
            version,
            stable,
        } => {
            if !w.set_job_stable(&namespace, &job_id, version, stable) {
                resp.error = Some(format!("job {job_id:?} has no version {version}"));
            }
        }
        Command::ClientAllocUpdate {
            updates,
            evals,
            now,
        } => allocs::client_alloc_update(&mut w, updates, evals, now, fx),
        Command::UpsertServices {
            node_id,
            upsert,
            delete_ids,
        } => services::upsert_services(&mut w, &node_id, upsert, delete_ids),
        Command::DeleteServices { ids } => services::delete_services(&mut w, ids),
        Command::SetSchedulerConfig { config, cas } => {
            operator::set_scheduler_config(&mut w, config, cas)
        }
        Command::GarbageCollect {
            jobs,
            evals,
            allocs,
            deployments,
        } => operator::garbage_collect(&mut w, jobs, evals, allocs, deployments),
        Command::PutVariable { var, cas } => variables::put_variable(&mut w, var, cas, &mut resp),
        Command::DeleteVariable {
            namespace,
            path,
            cas,
        } => variables::delete_variable(&mut w, &namespace, &path, cas, &mut resp),
        Command::UpsertRootKey { key } => variables::upsert_root_key(&mut w, key),
        Command::Acl(cmd) => acl::apply(&mut w, cmd, &mut resp),
        Command::Namespace(cmd) => namespaces::apply(&mut w, cmd, &mut resp),
    }
    let events = w.take_events().into_iter();
    fx.events.extend(events.map(|e| e.typed(event_type)));
    fx.wakes.extend(w.take_wakes());
    resp
}

/// The type of the events a command causes, whatever table they are on (Nomad types them
/// by the Raft message). `None`: each event's topic decides (`Event::typed`).
fn event_type(cmd: &Command) -> Option<&'static str> {
    Some(match cmd {
        Command::UpsertNode { .. } => "NodeRegistration",
        Command::UpdateNodeStatus { .. } => "NodeEvent",
        Command::UpdateNodeDrain { .. } => "NodeDrain",
        Command::UpdateNodeEligibility { .. } => "NodeEligibility",
        Command::RegisterJob { .. } => "JobRegistered",
        Command::DeregisterJob { .. } => "JobDeregistered",
        Command::UpsertEvals { .. } => "EvaluationUpdated",
        Command::ApplyPlan { .. } => "PlanResult",
        Command::AllocDesiredTransitions { .. } => "AllocationUpdateDesiredStatus",
        Command::ClientAllocUpdate { .. } => "AllocationUpdated",
        Command::PromoteDeployment { .. } => "DeploymentPromotion",
        Command::SetAllocHealth { .. } => "DeploymentAllocHealth",
        Command::UpdateDeploymentStatus { .. } => "DeploymentStatusUpdate",
        _ => return None,
    })
}

/// `Command::RestoreState`: `drover operator snapshot restore` replaces the whole state.
fn restore_state(w: &mut StateWriter, restored: StateStore, fx: &mut Effects) {
    w.restore(restored);
    fx.evals.extend(w.eval_table().values().cloned());
    fx.capacity_changed = true;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn job(id: &str, count: i64) -> Job {
        let mut j = Job {
            id: id.into(),
            task_groups: vec![api::TaskGroup {
                name: "g".into(),
                count,
                tasks: vec![api::Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        j.canonicalize();
        j
    }

    pub(crate) fn register(state: &mut StateStore, index: u64, j: Job) -> Response {
        let cmd = Command::RegisterJob {
            job: j,
            eval: None,
            now: 1,
        };
        apply(state, index, cmd, &mut Effects::default())
    }

    #[test]
    fn a_noop_moves_only_the_applied_index() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        let r = apply(&mut s, 2, Command::Noop, &mut Effects::default());
        assert_eq!((r.index, s.index()), (2, 2));
        assert_eq!(s.tables().jobs, 1);
        advance(&mut s, 3);
        assert_eq!((s.index(), s.tables().jobs), (3, 1));
    }

    #[test]
    fn applied_changes_come_out_as_events_typed_by_their_command() {
        let mut s = StateStore::default();
        let mut fx = Effects::default();
        let eval = Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "a".into(),
            status: api::EVAL_STATUS_PENDING.into(),
            ..Default::default()
        };
        let cmd = Command::RegisterJob {
            job: job("a", 1),
            eval: Some(eval),
            now: 1,
        };
        apply(&mut s, 3, cmd, &mut fx);
        let seen = |fx: &Effects| -> Vec<(&str, &str, String, u64)> {
            let e = fx.events.iter();
            e.map(|e| (e.topic.as_str(), e.kind, e.key.clone(), e.index))
                .collect()
        };
        let got = seen(&fx);
        assert!(
            got.contains(&("Job", "JobRegistered", "a".into(), 3)),
            "{got:?}"
        );
        assert!(
            got.contains(&("Evaluation", "JobRegistered", "e1".into(), 3)),
            "{got:?}"
        );
        let mut fx = Effects::default();
        apply(&mut s, 4, Command::Noop, &mut fx);
        assert!(fx.events.is_empty(), "a no-op changes nothing");
        let cmd = Command::DeregisterJob {
            namespace: "default".into(),
            job_id: "a".into(),
            purge: true,
            eval: None,
            now: 2,
        };
        apply(&mut s, 5, cmd, &mut fx);
        let got = seen(&fx);
        assert!(
            got.contains(&("Job", "JobDeregistered", "a".into(), 5)),
            "{got:?}"
        );
    }

    #[test]
    fn restoring_a_snapshot_replaces_the_state_and_requeues_its_evals() {
        let mut saved = StateStore::default();
        register(&mut saved, 4, job("a", 1));
        let eval = Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "a".into(),
            status: api::EVAL_STATUS_PENDING.into(),
            ..Default::default()
        };
        apply(
            &mut saved,
            5,
            Command::UpsertEvals { evals: vec![eval] },
            &mut Effects::default(),
        );
        let saved: StateStore =
            serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
        let mut s = StateStore::default();
        register(&mut s, 1, job("b", 1));
        let mut fx = Effects::default();
        let cmd = Command::RestoreState {
            state: Box::new(saved),
        };
        apply(&mut s, 9, cmd, &mut fx);
        assert!(s.job("default", "b").is_none());
        assert!(s.job("default", "a").is_some());
        assert_eq!(s.evals_for_job("default", "a").len(), 1);
        assert_eq!(s.index(), 9);
        assert_eq!(
            *s.tables(),
            crate::state::TableIndexes {
                jobs: 9,
                allocs: 9,
                evals: 9,
                nodes: 9,
                services: 9,
                deployments: 9,
                variables: 9,
                acl: 9,
                namespaces: 9,
            }
        );
        assert_eq!(fx.evals.len(), 1);
        assert!(fx.capacity_changed);
    }

    /// Only the FSM may obtain the state store's writer: no other file in server/src may
    /// name its constructor or the token it needs, and no non-test code outside the FSM
    /// takes a `&mut StateStore`.
    #[test]
    fn nothing_outside_the_fsm_can_obtain_the_state_writer() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        assert!(
            files.len() > 10,
            "expected the server sources under {src:?}"
        );
        let mut offenders = Vec::new();
        for f in files {
            let rel = f
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel.starts_with("fsm/") || rel == "fsm.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            // The state module defines the constructor (`state/writer.rs`, once); test
            // code may hold a `&mut` to hand to `fsm::apply`.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let constructor = if rel.starts_with("state/") || rel == "state.rs" {
                let defined_here = usize::from(rel == "state/writer.rs");
                code.matches("StateWriter::new(").count() > 0
                    || code.matches("StateWriter {").count() > defined_here
            } else {
                text.contains("StateWriter::new(") || text.contains("StateWriter {")
            };
            if constructor || text.contains("WriteToken(") || code.contains("&mut StateStore") {
                offenders.push(rel);
            }
        }
        assert!(
            offenders.is_empty(),
            "only src/fsm may create a StateWriter: {offenders:?}"
        );
    }
}
