//! The finite state machine: the ONLY code that writes the state store.
//!
//! Each Raft entry carries one `Command`. Applying it must be deterministic on every
//! server, so every identifier and timestamp is chosen by the leader before it proposes
//! the entry, never here.

use crate::state::StateStore;
use api::{AllocClientUpdate, Allocation, Evaluation, Job, Node};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
}

pub fn apply(state: &mut StateStore, index: u64, cmd: Command, fx: &mut Effects) -> Response {
    state.index = index;
    let mut resp = Response {
        index,
        ..Default::default()
    };
    match cmd {
        Command::Noop => {}
        Command::UpsertNode { mut node, evals } => {
            if let Some(old) = state.nodes.get(&node.id) {
                // A node keeps the secret it was first given; a registration racing
                // another one for the same ID (with a different secret) loses.
                if !old.secret_id.is_empty() && old.secret_id != node.secret_id {
                    resp.error = Some(format!(
                        "node {} is already registered with another secret; refusing to replace it",
                        node.id
                    ));
                    return resp;
                }
            }
            let became_ready = match state.nodes.get(&node.id) {
                Some(old) => {
                    node.create_index = old.create_index;
                    // Operator decisions outlive re-registration.
                    node.scheduling_eligibility = old.scheduling_eligibility.clone();
                    node.drain = old.drain;
                    node.drain_strategy = old.drain_strategy.clone();
                    node.last_drain = old.last_drain.clone();
                    node.events = old.events.clone();
                    old.status != node.status
                }
                None => {
                    node.create_index = index;
                    node.events = vec![api::NodeEvent {
                        message: "Node registered".into(),
                        subsystem: "Cluster".into(),
                        timestamp: node.status_updated_at * 1_000_000_000,
                        create_index: index,
                        ..Default::default()
                    }];
                    true
                }
            };
            if node.scheduling_eligibility.is_empty() {
                node.scheduling_eligibility = api::NODE_ELIGIBLE.into();
            }
            node.modify_index = index;
            fx.capacity_changed |= became_ready && node.status == api::NODE_STATUS_READY;
            state.nodes.insert(node.id.clone(), Arc::new(node));
            state.tables.nodes = index;
            upsert_evals(state, index, evals, fx);
        }
        Command::UpdateNodeStatus {
            node_id,
            status,
            now,
            evals,
            if_status,
            alloc_updates,
        } => {
            let Some(old) = state.nodes.get(&node_id).cloned() else {
                upsert_evals(state, index, evals, fx);
                return resp;
            };
            if if_status.is_some_and(|s| s != old.status) {
                // Overtaken (e.g. the node heartbeated meanwhile): nothing to do.
                return resp;
            }
            let mut touched = Vec::new();
            for change in alloc_updates {
                let Some(a) = state.allocs.get(&change.id) else {
                    continue;
                };
                if a.node_id != node_id || a.client_status != change.from {
                    continue;
                }
                let mut a = (**a).clone();
                a.client_status = change.client_status;
                a.client_description = change.client_description;
                a.modify_index = index;
                a.modify_time = now;
                fx.capacity_changed |= a.client_terminal();
                touched.push((a.namespace.clone(), a.job_id.clone()));
                state.put_alloc(a);
                state.tables.allocs = index;
            }
            refresh_job_statuses(state, index, touched);
            if old.status != status {
                let mut n = (*old).clone();
                fx.capacity_changed |= status == api::NODE_STATUS_READY;
                let message = match (old.status.as_str(), status.as_str()) {
                    (api::NODE_STATUS_DISCONNECTED, api::NODE_STATUS_DOWN) => {
                        "Node did not reconnect within max_client_disconnect".to_string()
                    }
                    (_, api::NODE_STATUS_DOWN) => "Node heartbeat missed".to_string(),
                    (_, api::NODE_STATUS_DISCONNECTED) => {
                        "Node heartbeat missed; disconnected, its allocations are unknown"
                            .to_string()
                    }
                    (_, api::NODE_STATUS_READY) => "Node reregistered by heartbeat".to_string(),
                    (_, other) => format!("Node status changed to {other}"),
                };
                push_event(
                    &mut n,
                    api::NodeEvent {
                        message,
                        subsystem: "Cluster".into(),
                        timestamp: now,
                        create_index: index,
                        ..Default::default()
                    },
                );
                n.status = status;
                n.status_updated_at = now / 1_000_000_000;
                n.modify_index = index;
                state.nodes.insert(node_id, Arc::new(n));
                state.tables.nodes = index;
            }
            upsert_evals(state, index, evals, fx);
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
            if let Some(old) = state.nodes.get(&node_id) {
                let mut n = (**old).clone();
                let started = strategy.as_ref().map(|s| s.started_at);
                n.drain = strategy.is_some();
                if strategy.is_some() {
                    n.scheduling_eligibility = api::NODE_INELIGIBLE.into();
                } else if mark_eligible {
                    n.scheduling_eligibility = api::NODE_ELIGIBLE.into();
                    fx.capacity_changed = true;
                }
                let prev_start = n.last_drain.as_ref().map(|d| d.started_at).unwrap_or(now);
                n.last_drain = Some(api::DrainMetadata {
                    started_at: started.unwrap_or(prev_start),
                    updated_at: now,
                    status: drain_status,
                });
                n.drain_strategy = strategy;
                if let Some(mut e) = event {
                    e.create_index = index;
                    push_event(&mut n, e);
                }
                n.modify_index = index;
                state.nodes.insert(node_id, Arc::new(n));
                state.tables.nodes = index;
            }
            upsert_evals(state, index, evals, fx);
        }
        Command::UpdateNodeEligibility {
            node_id,
            eligibility,
            evals,
            now,
        } => {
            if let Some(old) = state.nodes.get(&node_id) {
                let mut n = (**old).clone();
                fx.capacity_changed |= eligibility == api::NODE_ELIGIBLE;
                push_event(
                    &mut n,
                    api::NodeEvent {
                        message: format!("Node marked as {eligibility}"),
                        subsystem: "Cluster".into(),
                        timestamp: now,
                        create_index: index,
                        ..Default::default()
                    },
                );
                n.scheduling_eligibility = eligibility;
                n.modify_index = index;
                state.nodes.insert(node_id, Arc::new(n));
                state.tables.nodes = index;
            }
            upsert_evals(state, index, evals, fx);
        }
        Command::AllocDesiredTransitions { transitions, evals } => {
            for (id, t) in transitions {
                if let Some(old) = state.allocs.get(&id) {
                    let mut a = (**old).clone();
                    a.desired_transition = t;
                    a.modify_index = index;
                    state.put_alloc(a);
                    state.tables.allocs = index;
                }
            }
            upsert_evals(state, index, evals, fx);
        }
        Command::RegisterJob { mut job, eval, now } => {
            let key = (job.ns().to_string(), job.id.clone());
            match state.jobs.get(&key) {
                Some(old) => {
                    job.create_index = old.create_index;
                    if specs_equal(old, &job) {
                        job.version = old.version;
                        job.job_modify_index = old.job_modify_index;
                    } else {
                        job.version = old.version + 1;
                        job.job_modify_index = index;
                    }
                }
                None => {
                    job.create_index = index;
                    job.job_modify_index = index;
                    // A purged job that comes back continues its version history.
                    job.version = state
                        .job_versions(&key.0, &key.1)
                        .first()
                        .map(|j| j.version + 1)
                        .unwrap_or(0);
                }
            }
            job.modify_index = index;
            job.submit_time = now;
            job.status = job_status(state, &job);
            resp.job_modify_index = job.job_modify_index;
            let eval = eval.map(|mut e| {
                e.job_modify_index = job.job_modify_index;
                resp.eval_id = e.id.clone();
                e
            });
            let job = Arc::new(job);
            state
                .job_versions
                .insert((key.0.clone(), key.1.clone(), job.version), job.clone());
            state.jobs.insert(key, job);
            state.tables.jobs = index;
            upsert_evals(state, index, eval.into_iter().collect(), fx);
        }
        Command::DeregisterJob {
            namespace,
            job_id,
            purge,
            eval,
            now: _,
        } => {
            let key = (namespace.clone(), job_id.clone());
            match state.jobs.get(&key).cloned() {
                None => resp.error = Some(format!("job {job_id:?} not found")),
                Some(old) => {
                    if purge {
                        state.jobs.remove(&key);
                        let versions: Vec<_> = state
                            .job_versions(&namespace, &job_id)
                            .iter()
                            .map(|j| j.version)
                            .collect();
                        for v in versions {
                            state
                                .job_versions
                                .remove(&(namespace.clone(), job_id.clone(), v));
                        }
                    } else {
                        let mut job = (*old).clone();
                        job.stop = true;
                        job.modify_index = index;
                        job.status = job_status(state, &job);
                        resp.job_modify_index = job.job_modify_index;
                        state.jobs.insert(key, Arc::new(job));
                    }
                    state.tables.jobs = index;
                    upsert_evals(state, index, eval.into_iter().collect(), fx);
                }
            }
        }
        Command::UpsertEvals { evals } => upsert_evals(state, index, evals, fx),
        Command::RestoreState { state: restored } => {
            let mut restored = *restored;
            restored.reindex();
            restored.index = index;
            restored.tables = crate::state::TableIndexes {
                jobs: index,
                allocs: index,
                evals: index,
                nodes: index,
            };
            for e in restored.evals.values() {
                fx.evals.push(e.clone());
            }
            fx.capacity_changed = true;
            *state = restored;
        }
        Command::ApplyPlan {
            job,
            allocs,
            stops,
            eval,
            create_evals,
            now,
        } => {
            let job = job.map(Arc::new);
            let mut touched = Vec::new();
            for s in stops {
                if let Some(old) = state.allocs.get(&s.id) {
                    let mut a = (**old).clone();
                    a.desired_status = s.desired_status;
                    a.desired_description = s.desired_description;
                    if let Some(cs) = s.client_status {
                        a.client_status = cs;
                    }
                    if !s.followup_eval_id.is_empty() {
                        a.followup_eval_id = s.followup_eval_id;
                    }
                    a.modify_index = index;
                    a.alloc_modify_index = index;
                    a.modify_time = now;
                    touched.push((a.namespace.clone(), a.job_id.clone()));
                    state.put_alloc(a);
                    fx.capacity_changed = true;
                }
            }
            for mut a in allocs {
                if a.job.is_none() {
                    a.job = job.clone();
                }
                match state.allocs.get(&a.id) {
                    Some(old) => {
                        // An in-place update: keep what the client reported.
                        a.create_index = old.create_index;
                        a.create_time = old.create_time;
                        a.client_status = old.client_status.clone();
                        a.client_description = old.client_description.clone();
                        a.task_states = old.task_states.clone();
                    }
                    None => {
                        a.create_index = index;
                        a.create_time = now;
                    }
                }
                a.modify_index = index;
                a.alloc_modify_index = index;
                a.modify_time = now;
                if !a.previous_allocation.is_empty() {
                    if let Some(prev) = state.allocs.get(&a.previous_allocation) {
                        // A replacement of a failed allocation extends its reschedule chain.
                        if prev.client_status == api::ALLOC_CLIENT_FAILED
                            && a.reschedule_tracker.is_none()
                        {
                            let mut t = prev.reschedule_tracker.clone().unwrap_or_default();
                            t.events.push(api::RescheduleEvent {
                                reschedule_time: now,
                                prev_alloc_id: prev.id.clone(),
                                prev_node_id: prev.node_id.clone(),
                                delay: (now - prev.modify_time).max(0),
                            });
                            a.reschedule_tracker = Some(t);
                        }
                        let mut p = (**prev).clone();
                        p.next_allocation = a.id.clone();
                        p.modify_index = index;
                        state.put_alloc(p);
                    }
                }
                touched.push((a.namespace.clone(), a.job_id.clone()));
                state.put_alloc(a);
            }
            if !touched.is_empty() {
                state.tables.allocs = index;
            }
            let mut evals = create_evals;
            evals.extend(eval);
            upsert_evals(state, index, evals, fx);
            refresh_job_statuses(state, index, touched);
        }
        Command::ClientAllocUpdate {
            updates,
            evals,
            now,
        } => {
            let mut touched = Vec::new();
            for u in updates {
                let Some(old) = state.allocs.get(&u.id) else {
                    continue;
                };
                let mut a = (**old).clone();
                let was_terminal = a.client_terminal();
                a.client_status = u.client_status;
                a.client_description = u.client_description;
                a.task_states = u.task_states;
                if let Some(mut health) = u.deployment_status {
                    // Whether it is a canary is the scheduler's word, not the client's.
                    if let Some(existing) = &a.deployment_status {
                        health.canary = existing.canary;
                    }
                    a.deployment_status = Some(health);
                }
                a.modify_index = index;
                a.modify_time = now;
                fx.capacity_changed |= !was_terminal && a.client_terminal();
                touched.push((a.namespace.clone(), a.job_id.clone()));
                state.put_alloc(a);
            }
            if !touched.is_empty() {
                state.tables.allocs = index;
            }
            upsert_evals(state, index, evals, fx);
            refresh_job_statuses(state, index, touched);
        }
    }
    resp
}

/// Node events, newest last; only the most recent few are kept.
fn push_event(n: &mut Node, e: api::NodeEvent) {
    const MAX_NODE_EVENTS: usize = 10;
    n.events.push(e);
    if n.events.len() > MAX_NODE_EVENTS {
        let extra = n.events.len() - MAX_NODE_EVENTS;
        n.events.drain(..extra);
    }
}

fn upsert_evals(state: &mut StateStore, index: u64, evals: Vec<Evaluation>, fx: &mut Effects) {
    if evals.is_empty() {
        return;
    }
    for mut e in evals {
        e.create_index = state
            .evals
            .get(&e.id)
            .map(|old| old.create_index)
            .unwrap_or(index);
        e.modify_index = index;
        let job_key = (e.namespace.clone(), e.job_id.clone());
        state.put_eval(e.clone());
        fx.evals.push(state.evals[&e.id].clone());
        // A job with no allocations yet is pending until its evaluation places them.
        if let Some(job) = state.jobs.get(&job_key).cloned() {
            let status = job_status(state, &job);
            if status != job.status {
                let mut j = (*job).clone();
                j.status = status;
                j.modify_index = index;
                state.jobs.insert(job_key, Arc::new(j));
                state.tables.jobs = index;
            }
        }
    }
    state.tables.evals = index;
}

fn refresh_job_statuses(state: &mut StateStore, index: u64, mut jobs: Vec<(String, String)>) {
    jobs.sort();
    jobs.dedup();
    for key in jobs {
        if let Some(job) = state.jobs.get(&key).cloned() {
            let status = job_status(state, &job);
            if status != job.status {
                let mut j = (*job).clone();
                j.status = status;
                j.modify_index = index;
                state.jobs.insert(key, Arc::new(j));
                state.tables.jobs = index;
            }
        }
    }
}

/// Nomad's job status words: running while any allocation is live, dead once a stopped
/// (or finished batch) job has nothing live, pending otherwise.
pub fn job_status(state: &StateStore, job: &Job) -> String {
    let allocs = state.allocs_for_job(job.ns(), &job.id);
    let live = allocs.iter().any(|a| !a.client_terminal());
    if live {
        return api::JOB_STATUS_RUNNING.into();
    }
    let batch_like = matches!(
        job.job_type.as_str(),
        api::JOB_TYPE_BATCH | api::JOB_TYPE_SYSBATCH
    );
    let has_pending_evals = state
        .evals_for_job(job.ns(), &job.id)
        .iter()
        .any(|e| !e.terminal() && e.status != api::EVAL_STATUS_BLOCKED);
    if job.stop || (batch_like && !allocs.is_empty() && !has_pending_evals) {
        return api::JOB_STATUS_DEAD.into();
    }
    api::JOB_STATUS_PENDING.into()
}

/// Two submissions of a job are the same version when nothing the user wrote differs.
fn specs_equal(a: &Job, b: &Job) -> bool {
    let strip = |j: &Job| {
        let mut j = j.clone();
        j.status.clear();
        j.status_description.clear();
        j.stable = false;
        j.version = 0;
        j.submit_time = 0;
        j.create_index = 0;
        j.modify_index = 0;
        j.job_modify_index = 0;
        j
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, count: i64) -> Job {
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

    fn register(state: &mut StateStore, index: u64, j: Job) -> Response {
        apply(
            state,
            index,
            Command::RegisterJob {
                job: j,
                eval: None,
                now: 1,
            },
            &mut Effects::default(),
        )
    }

    #[test]
    fn resubmitting_the_same_job_keeps_its_version() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        register(&mut s, 2, job("a", 1));
        assert_eq!(s.job("default", "a").unwrap().version, 0);
        assert_eq!(s.job("default", "a").unwrap().job_modify_index, 1);
        register(&mut s, 3, job("a", 2));
        let j = s.job("default", "a").unwrap();
        assert_eq!(j.version, 1);
        assert_eq!(j.job_modify_index, 3);
        assert_eq!(s.job_versions("default", "a").len(), 2);
    }

    #[test]
    fn stopping_a_job_without_allocations_makes_it_dead_and_purge_forgets_it() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        assert_eq!(s.job("default", "a").unwrap().status, "pending");
        let dereg = |purge| Command::DeregisterJob {
            namespace: "default".into(),
            job_id: "a".into(),
            purge,
            eval: None,
            now: 2,
        };
        apply(&mut s, 2, dereg(false), &mut Effects::default());
        assert_eq!(s.job("default", "a").unwrap().status, "dead");
        apply(&mut s, 3, dereg(true), &mut Effects::default());
        assert!(s.job("default", "a").is_none());
        assert!(s.job_versions("default", "a").is_empty());
        let r = apply(&mut s, 4, dereg(true), &mut Effects::default());
        assert!(r.error.unwrap().contains("not found"));
    }

    #[test]
    fn plan_then_client_updates_drive_job_status() {
        let mut s = StateStore::default();
        register(&mut s, 1, job("a", 1));
        let j = s.job("default", "a").unwrap();
        let alloc = Allocation {
            id: "al1".into(),
            namespace: "default".into(),
            job_id: "a".into(),
            node_id: "n1".into(),
            task_group: "g".into(),
            name: "a.g[0]".into(),
            desired_status: "run".into(),
            client_status: "pending".into(),
            ..Default::default()
        };
        let mut fx = Effects::default();
        apply(
            &mut s,
            2,
            Command::ApplyPlan {
                job: Some((*j).clone()),
                allocs: vec![alloc],
                stops: vec![],
                eval: None,
                create_evals: vec![],
                now: 5,
            },
            &mut fx,
        );
        let a = s.allocs.get("al1").unwrap();
        assert_eq!(a.job.as_ref().unwrap().id, "a");
        assert_eq!(a.create_index, 2);
        assert_eq!(s.allocs_for_node("n1").len(), 1);
        assert_eq!(s.job("default", "a").unwrap().status, "running");
        apply(
            &mut s,
            3,
            Command::ClientAllocUpdate {
                updates: vec![AllocClientUpdate {
                    id: "al1".into(),
                    client_status: "failed".into(),
                    ..Default::default()
                }],
                evals: vec![],
                now: 6,
            },
            &mut fx,
        );
        assert!(fx.capacity_changed);
        assert_eq!(s.job("default", "a").unwrap().status, "pending");
        assert_eq!(s.tables.allocs, 3);
    }

    #[test]
    fn client_health_reports_keep_the_schedulers_canary_flag() {
        let mut s = StateStore::default();
        s.put_alloc(Allocation {
            id: "c1".into(),
            namespace: "default".into(),
            job_id: "a".into(),
            deployment_status: Some(api::AllocDeploymentStatus {
                canary: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        apply(
            &mut s,
            2,
            Command::ClientAllocUpdate {
                updates: vec![AllocClientUpdate {
                    id: "c1".into(),
                    client_status: "running".into(),
                    deployment_status: Some(api::AllocDeploymentStatus {
                        healthy: Some(true),
                        timestamp: 7,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                evals: vec![],
                now: 7,
            },
            &mut Effects::default(),
        );
        let d = s.allocs["c1"].deployment_status.clone().unwrap();
        assert!(d.canary);
        assert_eq!(d.healthy, Some(true));
    }

    #[test]
    fn a_node_keeps_the_secret_of_its_first_registration() {
        let mut state = StateStore::default();
        let mut fx = Effects::default();
        let node = |secret: &str, name: &str| api::Node {
            id: "n1".into(),
            name: name.into(),
            secret_id: secret.into(),
            status: api::NODE_STATUS_READY.into(),
            ..Default::default()
        };
        let r = apply(
            &mut state,
            1,
            Command::UpsertNode {
                node: node("first", "a"),
                evals: vec![],
            },
            &mut fx,
        );
        assert_eq!(r.error, None);
        let r = apply(
            &mut state,
            2,
            Command::UpsertNode {
                node: node("second", "impostor"),
                evals: vec![],
            },
            &mut fx,
        );
        assert!(r.error.unwrap().contains("another secret"));
        assert_eq!(state.nodes["n1"].secret_id, "first");
        assert_eq!(state.nodes["n1"].name, "a");
        let r = apply(
            &mut state,
            3,
            Command::UpsertNode {
                node: node("first", "b"),
                evals: vec![],
            },
            &mut fx,
        );
        assert_eq!(r.error, None);
        assert_eq!(state.nodes["n1"].name, "b");
    }
}
