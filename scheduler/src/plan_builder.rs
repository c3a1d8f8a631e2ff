//! Builds the Plan: new allocations, stops, in-place updates, failures and the evaluations
//! the run wants created. Also owns the run's seeded RNG (allocation and evaluation IDs
//! come from it) and the per-node usage that later placements must see.

use crate::usage::{ClusterUsage, Exhausted};
use crate::{SchedulerConfig, State};
use api::{AllocMetric, Allocation, Evaluation, Job, Node, Plan, Resources, TaskGroup};
use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

pub(crate) struct PlanBuilder<'s, S: State> {
    pub state: &'s S,
    pub eval: &'s Evaluation,
    pub config: &'s SchedulerConfig,
    pub rng: ChaCha8Rng,
    pub usage: ClusterUsage<'s, S>,
    plan: Plan,
}

/// Mixes the evaluation and the snapshot into the caller's seed, so two runs that are
/// handed the same seed (a fixed seed in tests, a restarted server) still draw different
/// allocation IDs. FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
fn run_seed(seed: u64, eval_id: &str, index: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(eval_id.bytes())
        .chain(index.to_le_bytes());
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl<'s, S: State> PlanBuilder<'s, S> {
    pub fn new(state: &'s S, eval: &'s Evaluation, config: &'s SchedulerConfig, seed: u64) -> Self {
        PlanBuilder {
            state,
            eval,
            config,
            rng: ChaCha8Rng::seed_from_u64(run_seed(seed, &eval.id, state.index())),
            usage: ClusterUsage::for_job(state, &eval.namespace, &eval.job_id),
            plan: Plan {
                eval_id: eval.id.clone(),
                priority: eval.priority,
                snapshot_index: state.index(),
                ..Default::default()
            },
        }
    }

    /// A UUID from the seeded RNG, so a run is reproducible from its seed.
    pub fn new_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    /// Every group of the job reports a queued count, zero when all was placed.
    pub fn expect_groups(&mut self, job: &Job) {
        for g in &job.task_groups {
            self.plan
                .queued_allocations
                .entry(g.name.clone())
                .or_insert(0);
        }
    }

    pub fn stop(&mut self, alloc: &Allocation, description: &str) {
        self.usage.stop(alloc);
        let mut stopped = alloc.clone();
        stopped.desired_status = api::ALLOC_DESIRED_STOP.into();
        stopped.desired_description = description.into();
        self.push_update(stopped);
    }

    /// Stops an allocation whose node is gone, and records it as lost.
    pub fn stop_lost(&mut self, alloc: &Allocation) {
        self.usage.stop(alloc);
        let mut stopped = alloc.clone();
        stopped.desired_status = api::ALLOC_DESIRED_STOP.into();
        stopped.desired_description = crate::reconcile::DESC_LOST.into();
        stopped.client_status = api::ALLOC_CLIENT_LOST.into();
        self.push_update(stopped);
    }

    fn push_update(&mut self, alloc: Allocation) {
        self.plan
            .node_update
            .entry(alloc.node_id.to_string())
            .or_default()
            .push(alloc);
    }

    fn push_alloc(&mut self, alloc: Allocation) {
        self.plan
            .node_allocation
            .entry(alloc.node_id.to_string())
            .or_default()
            .push(alloc);
    }

    /// A new allocation of `group` on `node`, its dynamic ports given host ports there.
    /// Fails only when the node has too few free dynamic ports, which the selection's fit
    /// check has already ruled out.
    pub fn place(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        name: String,
        node: &Node,
        previous: Option<&Allocation>,
        canary: bool,
    ) -> Result<(), Exhausted> {
        let allocated =
            crate::ports::allocate(group, node, self.usage.node(&node.id), &mut self.rng)?;
        let mut resources = group.combined_resources();
        resources.networks = allocated.shared.networks.clone();
        let task_resources: api::TaskMap<Resources> = group
            .tasks
            .iter()
            .map(|t| (t.name.clone(), t.resources.clone().unwrap_or_default()))
            .collect();
        let alloc = Allocation {
            id: self.new_id().into(),
            namespace: job.ns().to_string().into(),
            eval_id: self.eval.id.as_str().into(),
            name: name.into(),
            node_id: node.id.as_str().into(),
            node_name: node.name.as_str().into(),
            job_id: job.id.as_str().into(),
            job: Some(job.clone()),
            task_group: group.name.as_str().into(),
            resources: Some(Arc::new(resources)),
            task_resources: Arc::new(task_resources),
            allocated_resources: Some(allocated),
            desired_status: api::ALLOC_DESIRED_RUN.into(),
            client_status: api::ALLOC_CLIENT_PENDING.into(),
            previous_allocation: previous.map(|p| p.id.clone()).unwrap_or_default(),
            deployment_status: canary.then(|| api::AllocDeploymentStatus {
                canary: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.usage.place(&alloc);
        self.push_alloc(alloc);
        Ok(())
    }

    /// The allocation keeps running where it is, on the new job version, with the host
    /// ports it holds: an in-place update never changes the network block (the reconciler
    /// makes that a destructive update). An allocation placed before the servers assigned
    /// ports keeps none here, and its agent keeps the ones it chose.
    pub fn update_in_place(&mut self, alloc: &Allocation, job: &Arc<Job>) {
        let mut updated = alloc.clone();
        updated.job = Some(job.clone());
        updated.eval_id = self.eval.id.as_str().into();
        self.push_alloc(updated);
    }

    /// One failed placement of `group`: the first carries the metric, later ones of the
    /// same group are coalesced into it, as in Nomad.
    pub fn fail(&mut self, group: &str, metric: AllocMetric) {
        match self.plan.failed_tg_allocs.get_mut(group) {
            Some(existing) => existing.coalesced_failures += 1,
            None => {
                self.plan.failed_tg_allocs.insert(group.to_string(), metric);
            }
        }
        *self
            .plan
            .queued_allocations
            .entry(group.to_string())
            .or_default() += 1;
    }

    /// Folds one node's verdict into the group's failure metric without coalescing: the
    /// system scheduler evaluates each node separately.
    pub fn fail_on_node(
        &mut self,
        group: &str,
        base: AllocMetric,
        node: &Node,
        verdict: &crate::select::NodeVerdict,
    ) {
        let metric = self
            .plan
            .failed_tg_allocs
            .entry(group.to_string())
            .or_insert(base);
        crate::select::GroupSelector::count(metric, node, verdict);
        *self
            .plan
            .queued_allocations
            .entry(group.to_string())
            .or_default() += 1;
    }

    pub fn has_failures(&self, group: &str) -> bool {
        self.plan.failed_tg_allocs.contains_key(group)
    }

    /// A pending evaluation that reschedules `allocs` once `wait_until` has passed; each
    /// alloc is updated to point at it so later runs do not create another.
    pub fn follow_up(&mut self, job: &Job, wait_until: i64, allocs: &[Arc<Allocation>]) {
        let id = self.new_id();
        let eval = self.derived_eval(
            job,
            id.clone(),
            api::EVAL_STATUS_PENDING,
            api::TRIGGER_RETRY_FAILED_ALLOC,
        );
        self.plan
            .create_evals
            .push(Evaluation { wait_until, ..eval });
        for alloc in allocs {
            let mut updated = (**alloc).clone();
            updated.followup_eval_id = id.as_str().into();
            self.push_alloc(updated);
        }
    }

    /// A pending evaluation that continues a paced update once `wait_until` has passed.
    pub fn rolling_follow_up(&mut self, job: &Job, wait_until: i64) {
        let id = self.new_id();
        let eval = self.derived_eval(
            job,
            id,
            api::EVAL_STATUS_PENDING,
            crate::reconcile::TRIGGER_ROLLING_UPDATE,
        );
        self.plan
            .create_evals
            .push(Evaluation { wait_until, ..eval });
    }

    fn derived_eval(&self, job: &Job, id: String, status: &str, triggered_by: &str) -> Evaluation {
        Evaluation {
            id,
            namespace: job.ns().to_string(),
            priority: job.priority,
            eval_type: job.job_type.clone(),
            triggered_by: triggered_by.into(),
            job_id: job.id.clone(),
            job_modify_index: job.job_modify_index,
            status: status.into(),
            previous_eval: self.eval.id.clone(),
            ..Default::default()
        }
    }

    /// The finished plan; with failed placements it carries a blocked evaluation that the
    /// server retries when capacity changes.
    pub fn finish(mut self, job: Option<&Job>) -> api::Plan {
        if let Some(job) = job {
            if !self.plan.failed_tg_allocs.is_empty() {
                let id = self.new_id();
                let mut blocked = self.derived_eval(
                    job,
                    id,
                    api::EVAL_STATUS_BLOCKED,
                    api::TRIGGER_QUEUED_ALLOCS,
                );
                blocked.failed_tg_allocs = self.plan.failed_tg_allocs.clone();
                blocked.queued_allocations = self.plan.queued_allocations.clone();
                blocked.snapshot_index = self.plan.snapshot_index;
                self.plan.create_evals.push(blocked);
            }
        }
        self.plan
    }
}
