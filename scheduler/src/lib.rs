//! Drover's scheduler: a pure function from a state snapshot, an evaluation and a seed to
//! a [`api::Plan`].
//!
//! No I/O, no clock, no global RNG: the same inputs give the same plan, so the scheduler
//! can be tested exhaustively and replayed from a seed. The pipeline is
//! reconcile -> feasibility -> rank -> plan; `README.md` beside this crate draws it and
//! defines the vocabulary.
//!
//! - [`reconcile`] / [`reconcile_system`]: what changes (plain data buckets)
//! - [`feasible`]: which nodes may run a group at all (small checkers, memoised per class)
//! - [`usage`]: what each node already holds, and whether an ask fits
//! - [`ports`]: host ports (and the rest of `AllocatedResources`) for a new allocation
//! - [`rank`]: how good a node is (small scorers)
//! - [`select`]: the placement chain for one group, assembled in one place
//! - `generic` (service, batch) and `system` (system, sysbatch): the schedulers
//! - [`limits`]: hard per-value limits (`distinct_property`, spread `MaxSkew`)
//! - [`explain`]: placement failures as sentences
//! - [`mock`]: an in-memory [`State`] and fixtures, for this crate's tests and the server's

pub mod constraint;
pub mod deployment;
pub mod explain;
pub mod feasible;
mod generic;
pub mod limits;
pub mod mock;
mod plan_builder;
pub mod ports;
pub mod rank;
pub mod reconcile;
pub mod reconcile_system;
mod regex;
pub mod select;
pub mod sim;
mod system;
pub mod usage;
pub mod version;

pub use explain::explain;

use std::fmt;
use std::sync::Arc;

/// The read-only view of the cluster a scheduler run works from.
pub trait State {
    /// The state index the snapshot is at.
    fn index(&self) -> u64;
    fn job(&self, namespace: &str, id: &str) -> Option<Arc<api::Job>>;
    /// All nodes, any status.
    fn nodes(&self) -> Vec<Arc<api::Node>>;
    fn node(&self, id: &str) -> Option<Arc<api::Node>>;
    /// All of a job's allocations, terminal ones included.
    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<api::Allocation>>;
    /// All allocations on a node, terminal ones included.
    fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<api::Allocation>>;
    /// The summed load of the node's live allocations, when the state keeps it as a
    /// counter ([`usage::NodeLoad::of_alloc`] per allocation); `None` makes the scheduler
    /// add up [`State::allocs_by_node`] itself.
    fn node_load(&self, node_id: &str) -> Option<usage::NodeLoad> {
        let _ = node_id;
        None
    }
    /// The job's newest deployment (any status), if it has one.
    fn latest_deployment(&self, namespace: &str, job_id: &str) -> Option<Arc<api::Deployment>> {
        let _ = (namespace, job_id);
        None
    }
}

/// How the fit scorer ranks nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Fill nodes up before using empty ones (fewer, fuller nodes).
    #[default]
    BinPack,
    /// Prefer the emptiest node (worst-fit): spreads load, uses more nodes.
    Spread,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub algorithm: Algorithm,
}

/// Why an evaluation could not be processed at all. Placement failures are not errors:
/// they are reported in the plan (`failed_tg_allocs`, a blocked evaluation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedulerError {
    /// The evaluation names no job.
    MissingJobId { eval_id: String },
    /// The job's type is not service, batch, system or sysbatch.
    UnknownJobType { eval_id: String, job_type: String },
}

impl fmt::Display for SchedulerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedulerError::MissingJobId { eval_id } => {
                write!(f, "evaluation {eval_id} has no job ID; nothing to schedule")
            }
            SchedulerError::UnknownJobType { eval_id, job_type } => write!(
                f,
                "evaluation {eval_id}: job type {job_type:?} is not one of service, batch, system, sysbatch"
            ),
        }
    }
}

impl std::error::Error for SchedulerError {}

/// Processes one evaluation against a snapshot. Deterministic for a given `seed`: node
/// order, tie-breaks and every new ID come from an RNG seeded with it.
pub fn schedule(
    state: &impl State,
    eval: &api::Evaluation,
    config: &SchedulerConfig,
    seed: u64,
) -> Result<api::Plan, SchedulerError> {
    if eval.job_id.is_empty() {
        return Err(SchedulerError::MissingJobId {
            eval_id: eval.id.clone(),
        });
    }
    let namespace = if eval.namespace.is_empty() {
        api::DEFAULT_NAMESPACE
    } else {
        &eval.namespace
    };
    let mut builder = plan_builder::PlanBuilder::new(state, eval, config, seed);
    let job = state.job(namespace, &eval.job_id);
    match &job {
        None => stop_all(&mut builder, namespace, &eval.job_id),
        Some(job) if job.stop => stop_all(&mut builder, namespace, &eval.job_id),
        Some(job) => match job.job_type.as_str() {
            api::JOB_TYPE_SERVICE | api::JOB_TYPE_BATCH => {
                generic::schedule_generic(&mut builder, job)
            }
            api::JOB_TYPE_SYSTEM | api::JOB_TYPE_SYSBATCH => {
                system::schedule_system(&mut builder, job)
            }
            other => {
                return Err(SchedulerError::UnknownJobType {
                    eval_id: eval.id.clone(),
                    job_type: other.to_string(),
                })
            }
        },
    }
    let live_job = job.as_deref().filter(|j| !j.stop);
    // Drawn only for jobs that roll out under deployments, so other plans keep their IDs.
    let deployment_id = live_job
        .filter(|j| deployment::wants_deployment(j))
        .map(|_| builder.new_id());
    let mut plan = builder.finish(live_job);
    if let (Some(job), Some(id)) = (live_job, deployment_id) {
        let latest = state.latest_deployment(job.ns(), &job.id);
        deployment::attach(&mut plan, job, latest.as_deref(), eval, || id);
    }
    Ok(plan)
}

/// A stopped or deregistered job: every allocation still meant to run is stopped.
fn stop_all<S: State>(b: &mut plan_builder::PlanBuilder<'_, S>, namespace: &str, job_id: &str) {
    let mut allocs = b.state.allocs_by_job(namespace, job_id);
    allocs.sort_by(|x, y| x.id.cmp(&y.id));
    let recon = reconcile::reconcile(&reconcile::ReconcileInput {
        job: None,
        allocs: &allocs,
        node_health: &Default::default(),
        eval_id: &b.eval.id,
        now: b.eval.modify_time,
        deployment: None,
    });
    for s in &recon.stop {
        b.stop(&s.alloc, s.description);
    }
}
