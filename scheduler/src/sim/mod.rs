//! A deterministic cluster simulator: thousands of in-memory nodes ([`MemState`]) driven
//! through job submissions, updates, node failures and drains, with plans applied as the
//! server would (stops, then placements; clients mark new allocations running) and the
//! invariants checked after every evaluation. Everything comes from one seed, so a failure
//! replays exactly. `examples/simulate.rs` runs it from the command line; `tests/simulate.rs`
//! runs a small cluster in CI.

mod invariants;
mod report;
pub mod world;

pub use report::{Evenness, Packing, Report, MAX_PACKING_RATIO};

use crate::mock::MemState;
use crate::{schedule, Algorithm, SchedulerConfig, State};
use api::{Allocation, Evaluation, Job, Plan};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub jobs: usize,
    pub seed: u64,
    pub algorithm: Algorithm,
    /// Percent of nodes that fail, and percent that are drained.
    pub fail_percent: usize,
    pub drain_percent: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 300,
            jobs: 30,
            seed: 7,
            algorithm: Algorithm::Spread,
            fail_percent: 2,
            drain_percent: 2,
        }
    }
}

/// An invariant that broke, with the step and evaluation it broke at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub step: u64,
    pub phase: &'static str,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} ({}): {}", self.step, self.phase, self.message)
    }
}

/// Evaluations one quiet-down may process before the simulator calls it a livelock.
const MAX_EVALS_PER_PHASE: u64 = 200_000;

pub struct Simulator {
    pub state: MemState,
    config: SimConfig,
    rng: ChaCha8Rng,
    /// Unix nanoseconds; advances one second per evaluation.
    now: i64,
    step: u64,
    phase: &'static str,
    queue: VecDeque<Evaluation>,
    delayed: Vec<Evaluation>,
    /// Blocked evaluations, one per job, retried when capacity changes.
    blocked: BTreeMap<String, Evaluation>,
    pub stats: report::Stats,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut state = MemState::new();
        for i in 0..config.nodes {
            state.upsert_node(world::node(i, &mut rng));
        }
        Simulator {
            state,
            config,
            rng,
            now: api::secs(1_000_000),
            step: 0,
            phase: "setup",
            queue: VecDeque::new(),
            delayed: Vec::new(),
            blocked: BTreeMap::new(),
            stats: report::Stats::default(),
        }
    }

    /// The whole scenario: submit, packing report, update, fail nodes, drain nodes, bring
    /// the failed nodes back, then a fresh even job for the evenness report.
    pub fn run(mut self) -> Result<Report, Violation> {
        self.phase = "submit";
        let even = world::even_job(self.config.nodes);
        let jobs: Vec<Job> = (0..self.config.jobs)
            .map(|i| world::job(i, &mut self.rng))
            .collect();
        for job in jobs {
            self.register(job)?;
        }
        self.quiesce()?;
        let packing = report::packing(&self.state, |j| j.id != world::EVEN_JOB);
        self.register(even)?;
        self.quiesce()?;

        self.phase = "update";
        let services: Vec<Job> = self
            .state
            .jobs
            .values()
            .filter(|j| j.job_type == api::JOB_TYPE_SERVICE && j.id != world::EVEN_JOB)
            .map(|j| (**j).clone())
            .collect();
        for job in &services {
            if !self.rng.gen_bool(0.3) {
                continue;
            }
            let mut new = world::destructive_change(job);
            if self.rng.gen_bool(0.3) {
                new.task_groups[0].count +=
                    self.rng.gen_range(-2i64..=4).max(-new.task_groups[0].count);
            }
            self.register(new)?;
        }
        self.quiesce()?;

        self.phase = "fail";
        let failed = self.pick_nodes(self.config.fail_percent);
        for id in &failed {
            self.set_node_status(id, api::NODE_STATUS_DOWN)?;
        }
        self.quiesce()?;

        self.phase = "drain";
        let drained = self.pick_nodes(self.config.drain_percent);
        self.drain(&drained)?;

        self.phase = "recover";
        for id in &failed {
            self.set_node_status(id, api::NODE_STATUS_READY)?;
        }
        self.quiesce()?;

        // A fresh job with count = k x schedulable nodes on the cluster as the failures
        // and drains left it: the spread algorithm must place it evenly. (The first even
        // job is reported too: its replacements went where there was room, and nothing
        // rebalances it onto the recovered nodes.)
        self.phase = "even";
        let schedulable = self
            .state
            .nodes
            .values()
            .filter(|n| n.ready_and_eligible())
            .count();
        let mut fresh = world::even_job(schedulable);
        fresh.id = world::EVEN_FINAL_JOB.into();
        fresh.name = fresh.id.clone();
        self.register(fresh)?;
        self.quiesce()?;

        Ok(Report {
            config: self.config.clone(),
            packing,
            evenness: report::evenness(&self.state, world::EVEN_FINAL_JOB),
            evenness_after_churn: report::evenness(&self.state, world::EVEN_JOB),
            stats: self.stats.clone(),
            failed_nodes: failed.len(),
            drained_nodes: drained.len(),
        })
    }

    fn pick_nodes(&mut self, percent: usize) -> Vec<String> {
        let mut ids: Vec<String> = self
            .state
            .nodes
            .values()
            .filter(|n| n.ready_and_eligible())
            .map(|n| n.id.clone())
            .collect();
        ids.shuffle(&mut self.rng);
        ids.truncate((self.config.nodes * percent).div_ceil(100));
        ids.sort();
        ids
    }

    fn violation(&self, message: String) -> Violation {
        Violation {
            step: self.step,
            phase: self.phase,
            message,
        }
    }

    fn new_eval(&mut self, job: &Job, triggered_by: &str) -> Evaluation {
        let mut e = crate::mock::eval(job);
        e.id = format!("sim-eval-{:08x}", self.rng.gen::<u32>());
        e.triggered_by = triggered_by.into();
        e
    }

    fn register(&mut self, mut job: Job) -> Result<(), Violation> {
        job.job_modify_index = self.state.index() + 1;
        let job = self.state.upsert_job(job);
        let eval = self.new_eval(&job, api::TRIGGER_JOB_REGISTER);
        self.queue.push_back(eval);
        Ok(())
    }

    /// A node changes status: evaluations for the jobs with allocations on it, for every
    /// system job, and a retry for blocked ones when it brings capacity.
    fn set_node_status(&mut self, node_id: &str, status: &str) -> Result<(), Violation> {
        let mut node = (*self.state.nodes[node_id]).clone();
        node.status = status.into();
        self.state.upsert_node(node);
        self.node_update_evals(node_id);
        if status == api::NODE_STATUS_READY {
            self.unblock();
        }
        Ok(())
    }

    fn node_update_evals(&mut self, node_id: &str) {
        let mut jobs: BTreeSet<(String, String)> = self
            .state
            .allocs_by_node(node_id)
            .iter()
            .filter(|a| !a.terminal())
            .map(|a| (a.namespace.to_string(), a.job_id.to_string()))
            .collect();
        for job in self.state.jobs.values() {
            if matches!(
                job.job_type.as_str(),
                api::JOB_TYPE_SYSTEM | api::JOB_TYPE_SYSBATCH
            ) {
                jobs.insert((job.ns().to_string(), job.id.clone()));
            }
        }
        for key in jobs {
            if let Some(job) = self.state.jobs.get(&key).cloned() {
                let eval = self.new_eval(&job, api::TRIGGER_NODE_UPDATE);
                self.queue.push_back(eval);
            }
        }
    }

    fn unblock(&mut self) {
        let blocked = std::mem::take(&mut self.blocked);
        for (_, eval) in blocked {
            let mut e = eval;
            e.status = api::EVAL_STATUS_PENDING.into();
            self.queue.push_back(e);
        }
    }

    /// Runs evaluations until nothing is left but blocked ones, then checks convergence.
    fn quiesce(&mut self) -> Result<(), Violation> {
        self.settle()?;
        self.state.gc_terminal();
        invariants::check_converged(&self.state).map_err(|m| self.violation(m))
    }

    /// Runs evaluations (and delayed ones, moving time forward) until nothing is left but
    /// blocked ones, and retries those once.
    fn settle(&mut self) -> Result<(), Violation> {
        let mut processed = 0u64;
        let mut retried_blocked = false;
        loop {
            if let Some(eval) = self.queue.pop_front() {
                processed += 1;
                if processed > MAX_EVALS_PER_PHASE {
                    return Err(self.violation("evaluations do not converge".into()));
                }
                self.process(eval)?;
                continue;
            }
            if let Some(next) = self.delayed.iter().map(|e| e.wait_until).min() {
                self.now = self.now.max(next);
                let (due, later): (Vec<_>, Vec<_>) =
                    self.delayed.drain(..).partition(|e| e.wait_until <= next);
                self.delayed = later;
                self.queue.extend(due);
                continue;
            }
            if !retried_blocked && !self.blocked.is_empty() {
                retried_blocked = true;
                self.unblock();
                continue;
            }
            break;
        }
        Ok(())
    }

    /// One evaluation: schedule, check the plan, apply it, let clients start what it
    /// placed, check the state.
    fn process(&mut self, mut eval: Evaluation) -> Result<(), Violation> {
        self.step += 1;
        self.now += api::secs(1);
        eval.modify_time = self.now;
        let config = SchedulerConfig {
            algorithm: self.config.algorithm,
        };
        let seed = self.config.seed ^ self.step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let plan = schedule(&self.state, &eval, &config, seed)
            .map_err(|e| self.violation(e.to_string()))?;
        self.stats.evals += 1;
        invariants::check_placements(&self.state, &plan).map_err(|m| self.violation(m))?;
        self.apply(&plan);
        if plan.failed_tg_allocs.is_empty() {
            self.stats.unplaced.remove(&eval.job_id);
        } else {
            let why = plan
                .failed_tg_allocs
                .iter()
                .map(|(group, metric)| format!("{group}: {}", crate::explain(metric).join("; ")))
                .collect();
            self.stats.unplaced.insert(eval.job_id.clone(), why);
        }
        // Only nodes the plan touched can have become over-committed.
        let touched: BTreeSet<&String> = plan
            .node_allocation
            .keys()
            .chain(plan.node_update.keys())
            .collect();
        for node_id in touched {
            invariants::check_node_capacity(&self.state, node_id).map_err(|m| self.violation(m))?;
        }
        for e in plan.create_evals {
            match e.status.as_str() {
                api::EVAL_STATUS_BLOCKED => {
                    self.stats.blocked_evals += 1;
                    self.blocked.insert(e.job_id.clone(), e);
                }
                _ if e.wait_until > self.now => self.delayed.push(e),
                _ => self.queue.push_back(e),
            }
        }
        Ok(())
    }

    /// Commits a plan as the server would, then plays the clients: new allocations start
    /// running; stops free capacity, which retries blocked evaluations.
    fn apply(&mut self, plan: &Plan) {
        let new: Vec<Allocation> = plan
            .node_allocation
            .values()
            .flatten()
            .filter(|a| !self.state.allocs.contains_key(a.id.as_str()))
            .cloned()
            .collect();
        self.stats.placements += new.len() as u64;
        self.stats.stops += plan.stops() as u64;
        self.state.apply_plan(plan);
        for mut alloc in new {
            alloc.client_status = api::ALLOC_CLIENT_RUNNING.into();
            alloc.modify_time = self.now;
            alloc.create_time = self.now;
            self.state.upsert_alloc(alloc);
        }
        if plan.stops() > 0 && !self.blocked.is_empty() {
            self.unblock();
        }
    }

    /// Drains nodes as the server's drainer would: per job group, at most
    /// `migrate.max_parallel` (default 1) allocations flagged at a time, service and batch
    /// first, system ones last; a flagged allocation whose replacement finds no room makes
    /// the drain force (deadline passed) after a round without progress.
    fn drain(&mut self, node_ids: &[String]) -> Result<(), Violation> {
        for id in node_ids {
            let mut node = (*self.state.nodes[id]).clone();
            node.drain = true;
            node.scheduling_eligibility = api::NODE_INELIGIBLE.into();
            node.drain_strategy = Some(api::DrainStrategy::default());
            self.state.upsert_node(node);
        }
        let draining: BTreeSet<&String> = node_ids.iter().collect();
        let mut stalled_rounds = 0;
        loop {
            let live: Vec<std::sync::Arc<Allocation>> = draining
                .iter()
                .flat_map(|id| self.state.allocs_by_node(id))
                .filter(|a| !a.terminal())
                .collect();
            if live.is_empty() {
                break;
            }
            let only_system = live.iter().all(|a| is_system(a));
            let mut in_flight: BTreeMap<(String, String), i64> = BTreeMap::new();
            for a in live
                .iter()
                .filter(|a| a.desired_transition.should_migrate())
            {
                *in_flight
                    .entry((a.job_id.to_string(), a.task_group.to_string()))
                    .or_default() += 1;
            }
            let mut flagged_jobs = BTreeSet::new();
            for a in &live {
                if a.desired_transition.should_migrate() || (is_system(a) && !only_system) {
                    continue;
                }
                let max_parallel = a
                    .job
                    .as_ref()
                    .and_then(|j| j.task_group(&a.task_group))
                    .and_then(|g| g.migrate.as_ref())
                    .map_or(1, |m| m.max_parallel.max(1));
                let n = in_flight
                    .entry((a.job_id.to_string(), a.task_group.to_string()))
                    .or_default();
                if *n >= max_parallel {
                    continue;
                }
                *n += 1;
                let mut flagged = (**a).clone();
                flagged.desired_transition.migrate = Some(true);
                self.state.upsert_alloc(flagged);
                flagged_jobs.insert((a.namespace.clone(), a.job_id.clone()));
            }
            if flagged_jobs.is_empty() {
                stalled_rounds += 1;
                if stalled_rounds > 2 {
                    // Nothing moves: the deadline passes and the rest is stopped.
                    for id in &draining {
                        let mut node = (*self.state.nodes[*id]).clone();
                        node.drain_strategy = Some(api::DrainStrategy {
                            deadline: -1,
                            ..Default::default()
                        });
                        self.state.upsert_node(node);
                    }
                    self.stats.forced_drains += 1;
                }
                // Re-evaluate the jobs whose flagged allocs wait for room.
                for a in live
                    .iter()
                    .filter(|a| a.desired_transition.should_migrate())
                {
                    flagged_jobs.insert((a.namespace.clone(), a.job_id.clone()));
                }
            } else {
                stalled_rounds = 0;
            }
            for key in flagged_jobs {
                if let Some(job) = self
                    .state
                    .jobs
                    .get(&(key.0.to_string(), key.1.to_string()))
                    .cloned()
                {
                    let eval = self.new_eval(&job, api::TRIGGER_NODE_UPDATE);
                    self.queue.push_back(eval);
                }
            }
            // Per-evaluation invariants hold throughout; convergence is checked once the
            // drain is over.
            self.settle()?;
            if stalled_rounds > 10 {
                return Err(self.violation("drain does not finish".into()));
            }
        }
        for id in node_ids {
            let mut node = (*self.state.nodes[id]).clone();
            node.drain = false;
            node.drain_strategy = None;
            self.state.upsert_node(node);
        }
        self.unblock();
        self.quiesce()
    }
}

fn is_system(a: &Allocation) -> bool {
    a.job.as_ref().is_some_and(|j| {
        matches!(
            j.job_type.as_str(),
            api::JOB_TYPE_SYSTEM | api::JOB_TYPE_SYSBATCH
        )
    })
}
