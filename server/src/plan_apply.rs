//! The plan applier: the only creator of allocations.
//!
//! Plans from all workers queue here and are applied one at a time against the newest
//! state, so two workers' plans can never over-commit a node between them. Whatever no
//! longer fits is refused per node and the worker re-plans from a fresher snapshot.
//!
//! A worker plans beside the plans already handed here and not yet answered
//! ([`InFlight`]): without that, each plan was computed from a state that lacked the one
//! queued just before it, and two bin-packing workers kept aiming at the same fullest
//! nodes (3.3 plans per job at C1M, each loser re-planned).

use crate::fsm::{AllocStop, Command};
use crate::state::StateStore;
use crate::{now_nanos, Server, WriteError};
use api::{Allocation, Evaluation, Plan, PlanResult};
use scheduler::usage::NodeLoad;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

pub struct PlanRequest {
    pub plan: Plan,
    /// The evaluation's final state, committed with the plan when all of it fits.
    pub eval_update: Option<Evaluation>,
    /// The worker's lease on the evaluation ([`crate::broker::Lease`]): a plan from a
    /// worker whose lease is gone (acknowledged, or from before a leadership change,
    /// when another worker may already have placed the same allocations) is refused.
    pub eval_token: u64,
    pub respond: oneshot::Sender<Result<AppliedPlan, WriteError>>,
}

/// What the applier did with a plan.
#[derive(Debug, Default)]
pub struct AppliedPlan {
    pub result: PlanResult,
    /// Why each refused node was refused, a sentence per node.
    pub refusals: BTreeMap<String, String>,
    /// New allocations committed (not counting in-place updates or re-sent ones): the
    /// worker's measure of progress.
    pub placed: usize,
}

impl AppliedPlan {
    /// The first refusal as a sentence, with how many more there were.
    pub fn refusal_summary(&self) -> Option<String> {
        let (_, first) = self.refusals.iter().next()?;
        let more = self.refusals.len() - 1;
        Some(match more {
            0 => first.clone(),
            1 => format!("{first} (and 1 more node refused)"),
            n => format!("{first} (and {n} more nodes refused)"),
        })
    }
}

/// Plans handed to the applier and not yet answered: their placements, so that a worker
/// planning meanwhile counts them as taken. Only an optimistic view for choosing nodes:
/// the applier still decides fit on the committed state, so a plan counted here and then
/// refused costs at most a less tightly packed plan, never an over-committed node.
#[derive(Default)]
pub struct InFlight {
    inner: Mutex<InFlightPlans>,
}

#[derive(Default)]
struct InFlightPlans {
    next: u64,
    plans: BTreeMap<u64, InFlightPlan>,
}

struct InFlightPlan {
    namespace: String,
    job_id: String,
    placements: Vec<Arc<Allocation>>,
}

/// A plan's place in [`InFlight`]; it leaves when this is dropped, which the worker does
/// once the applier answered (the committed part is then in the published state).
pub struct InFlightGuard<'a> {
    in_flight: &'a InFlight,
    id: u64,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self
            .in_flight
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        inner.plans.remove(&self.id);
    }
}

/// The published state with the placements of other jobs' in-flight plans laid over it
/// ([`InFlight::view`]): what the scheduler plans on. An overlay, not a copy: the node
/// reads add the in-flight allocations and their load, everything else reads the state.
/// (A first version cloned the state and applied those plans with the FSM; at C1M
/// freeing those copies alone was a tenth of the leader's CPU.)
pub struct PlanningView {
    pub state: Arc<StateStore>,
    by_node: HashMap<String, Vec<Arc<Allocation>>>,
}

impl InFlight {
    /// Records the plan's placements until the guard is dropped.
    pub fn enter(&self, namespace: &str, job_id: &str, plan: &Plan) -> Option<InFlightGuard<'_>> {
        let placements: Vec<Arc<Allocation>> = plan
            .node_allocation
            .values()
            .flatten()
            .map(|a| Arc::new(a.clone()))
            .collect();
        if placements.is_empty() {
            return None;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.next += 1;
        let id = inner.next;
        inner.plans.insert(
            id,
            InFlightPlan {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                placements,
            },
        );
        Some(InFlightGuard {
            in_flight: self,
            id,
        })
    }

    /// The newest published state with the in-flight plans of jobs other than this one.
    /// The state is read under the same lock a plan leaves by, and a plan leaves only
    /// after its answer, which comes after the state holding its commit was published:
    /// so every plan is either in the state or in the view, never in neither. (One
    /// answered but not yet left can be in both: the view then looks fuller than it is,
    /// which costs at most a less tightly packed plan.)
    pub fn view(
        &self,
        published: impl FnOnce() -> Arc<StateStore>,
        namespace: &str,
        job_id: &str,
    ) -> PlanningView {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let state = published();
        let mut by_node: HashMap<String, Vec<Arc<Allocation>>> = HashMap::new();
        let others = inner
            .plans
            .values()
            .filter(|p| p.namespace != namespace || p.job_id != job_id);
        for a in others.flat_map(|p| &p.placements) {
            by_node
                .entry(a.node_id.to_string())
                .or_default()
                .push(a.clone());
        }
        PlanningView { state, by_node }
    }
}

impl scheduler::State for PlanningView {
    fn index(&self) -> u64 {
        self.state.index()
    }
    fn job(&self, namespace: &str, id: &str) -> Option<Arc<api::Job>> {
        self.state.job(namespace, id)
    }
    fn nodes(&self) -> Vec<Arc<api::Node>> {
        scheduler::State::nodes(&*self.state)
    }
    fn node(&self, id: &str) -> Option<Arc<api::Node>> {
        scheduler::State::node(&*self.state, id)
    }
    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Allocation>> {
        // Only other jobs' plans are laid over, and they hold none of this job's.
        self.state.allocs_for_job(namespace, job_id)
    }
    fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        let mut out = self.state.allocs_for_node(node_id);
        if let Some(more) = self.by_node.get(node_id) {
            out.extend(more.iter().cloned());
        }
        out
    }
    fn node_load(&self, node_id: &str) -> Option<NodeLoad> {
        let mut load = scheduler::State::node_load(&*self.state, node_id)?;
        for a in self.by_node.get(node_id).into_iter().flatten() {
            load.add(NodeLoad::of_alloc(a));
        }
        Some(load)
    }
    fn latest_deployment(&self, namespace: &str, job_id: &str) -> Option<Arc<api::Deployment>> {
        self.state.latest_deployment(namespace, job_id)
    }
}

pub async fn run(server: Arc<Server>, mut rx: mpsc::Receiver<PlanRequest>) {
    while let Some(req) = rx.recv().await {
        let started = std::time::Instant::now();
        let res = if server.broker.outstanding(&req.plan.eval_id, req.eval_token) {
            apply_one(&server, req.plan, req.eval_update).await
        } else {
            tracing::warn!(eval_id = %req.plan.eval_id, "plan refused: its worker no longer holds the evaluation");
            Err(WriteError::Rejected(format!(
                "evaluation {} is not outstanding under this token: a leadership change or \
                 another worker took it over",
                req.plan.eval_id
            )))
        };
        ::metrics::histogram!("nomad.nomad.plan.apply").record(crate::metrics::ms_since(started));
        let _ = req.respond.send(res);
    }
}

/// Which nodes of the plan still fit on the newest state, and why the others do not.
///
/// "Fits" is decided by the scheduler's own check ([`scheduler::usage::check_node_plan`]:
/// CPU, memory, disk and host ports, static and dynamic, beside what the node holds now),
/// so the applier
/// and the scheduler cannot disagree; this module does no resource arithmetic.
pub fn evaluate(state: &StateStore, plan: &Plan) -> (Vec<String>, BTreeMap<String, String>) {
    let mut accepted = Vec::new();
    let mut refused = BTreeMap::new();
    let stopping: HashSet<&str> = plan
        .node_update
        .values()
        .flatten()
        .map(|a| a.id.as_str())
        .collect();
    for (node_id, allocs) in &plan.node_allocation {
        if allocs.is_empty() {
            continue;
        }
        match scheduler::usage::check_node_plan(state, node_id, &stopping, allocs) {
            Ok(()) => accepted.push(node_id.clone()),
            Err(why) => {
                refused.insert(node_id.clone(), why.to_string());
            }
        }
    }
    (accepted, refused)
}

fn log_refusals(eval_id: &str, accepted: usize, refusals: &BTreeMap<String, String>) {
    for (node, why) in refusals {
        tracing::debug!(eval_id = %eval_id, node = %node, "plan refused for a node: {why}");
    }
    if let Some((_, first)) = refusals.iter().next() {
        tracing::info!(
            eval_id = %eval_id,
            accepted,
            refused = refusals.len(),
            "plan partly refused; the worker re-plans the rest: {first}"
        );
    }
}

async fn apply_one(
    server: &Arc<Server>,
    plan: Plan,
    eval_update: Option<Evaluation>,
) -> Result<AppliedPlan, WriteError> {
    let state = server.snapshot();
    let (accepted, refusals) = evaluate(&state, &plan);
    let mut job = None;
    let mut allocs: Vec<Allocation> = Vec::new();
    let mut result = PlanResult::default();
    let mut placed = 0;
    for node_id in &accepted {
        let list = plan.node_allocation[node_id].clone();
        for mut a in list.iter().cloned() {
            if job.is_none() {
                job = a.job.as_deref().cloned();
            }
            if !state.alloc_table().contains_key(&a.id) {
                placed += 1;
            }
            a.job = None;
            allocs.push(a);
        }
        result.node_allocation.insert(node_id.clone(), list);
    }
    let stops: Vec<AllocStop> = plan
        .node_update
        .values()
        .flatten()
        .map(|a| AllocStop {
            id: a.id.to_string(),
            desired_status: a.desired_status.to_string(),
            desired_description: a.desired_description.to_string(),
            client_status: (a.client_status == api::ALLOC_CLIENT_LOST)
                .then(|| api::ALLOC_CLIENT_LOST.to_string()),
            followup_eval_id: a.followup_eval_id.to_string(),
        })
        .collect();
    result.node_update = plan.node_update.clone();
    let complete = refusals.is_empty();
    log_refusals(&plan.eval_id, accepted.len(), &refusals);
    if !complete && allocs.is_empty() && stops.is_empty() {
        // Nothing of the plan fits and nothing stops: no entry to write. The worker
        // re-plans from the state this refusal was decided on.
        result.alloc_index = state.index();
        result.refresh_index = state.index().max(1);
        result.rejected_nodes = refusals.keys().cloned().collect();
        return Ok(AppliedPlan {
            result,
            refusals,
            placed,
        });
    }
    let cmd = Command::ApplyPlan {
        job,
        allocs,
        stops,
        eval: if complete { eval_update } else { None },
        create_evals: if complete { plan.create_evals } else { vec![] },
        now: now_nanos(),
        deployment: plan.deployment.map(Box::new),
        deployment_updates: plan.deployment_updates,
    };
    let resp = server.write(cmd).await?;
    result.alloc_index = resp.index;
    if !complete {
        result.refresh_index = resp.index;
        result.rejected_nodes = refusals.keys().cloned().collect();
    }
    Ok(AppliedPlan {
        result,
        refusals,
        placed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl InFlight {
        fn is_empty(&self) -> bool {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.plans.is_empty()
        }
    }

    impl PlanningView {
        /// How many in-flight placements the view adds to the state.
        fn added(&self) -> usize {
            self.by_node.values().map(Vec::len).sum()
        }
    }
    use crate::fsm::{apply, Effects};

    fn node(id: &str) -> api::Node {
        let mut n = scheduler::mock::node(id);
        n.name = format!("{id}-name");
        n
    }

    /// A state holding the nodes `ids` (see [`node`]), written at indexes 1, 2, ...
    fn with_nodes(ids: &[&str]) -> StateStore {
        let mut state = StateStore::default();
        for (i, n) in ids.iter().enumerate() {
            let cmd = Command::UpsertNode {
                node: node(n),
                evals: vec![],
            };
            apply(&mut state, 1 + i as u64, cmd, &mut Effects::default());
        }
        state
    }

    /// A service job whose one group `web` asks for 100 MHz, 64 MB and static port `port`.
    fn job(id: &str, port: i64) -> api::Job {
        let mut j = api::Job {
            id: id.into(),
            task_groups: vec![api::TaskGroup {
                name: "web".into(),
                count: 1,
                networks: vec![api::NetworkResource {
                    reserved_ports: vec![api::Port {
                        label: "http".into(),
                        value: port,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                tasks: vec![api::Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    resources: Some(api::Resources {
                        cpu: 100,
                        memory_mb: 64,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        j.canonicalize();
        j
    }

    fn alloc(job: &Arc<api::Job>, id: &str, node: &str) -> Allocation {
        let group = &job.task_groups[0];
        let mut resources = group.combined_resources();
        resources.networks = group.networks.clone();
        Allocation {
            id: id.into(),
            namespace: job.ns().to_string().into(),
            name: format!("{}.web[0]", job.id).into(),
            node_id: node.into(),
            job_id: job.id.as_str().into(),
            job: Some(job.clone()),
            task_group: "web".into(),
            resources: Some(Arc::new(resources)),
            desired_status: api::ALLOC_DESIRED_RUN.into(),
            client_status: api::ALLOC_CLIENT_PENDING.into(),
            ..Default::default()
        }
    }

    fn plan(allocs: Vec<Allocation>) -> Plan {
        let mut p = Plan::default();
        for a in allocs {
            p.node_allocation
                .entry(a.node_id.to_string())
                .or_default()
                .push(a);
        }
        p
    }

    /// Commits the accepted part of a plan as the applier does.
    fn commit(state: &mut StateStore, index: u64, plan: &Plan, accepted: &[String]) {
        let allocs: Vec<Allocation> = accepted
            .iter()
            .flat_map(|n| plan.node_allocation[n].iter().cloned())
            .collect();
        let job = allocs.first().and_then(|a| a.job.as_deref().cloned());
        let cmd = Command::ApplyPlan {
            job,
            allocs: allocs
                .into_iter()
                .map(|mut a| {
                    a.job = None;
                    a
                })
                .collect(),
            stops: vec![],
            eval: None,
            create_evals: vec![],
            now: 1,
            deployment: None,
            deployment_updates: vec![],
        };
        apply(state, index, cmd, &mut Effects::default());
    }

    #[test]
    fn a_worker_plans_beside_other_jobs_in_flight_plans_until_they_are_answered() {
        let state = Arc::new(with_nodes(&["n1"]));
        let a = Arc::new(job("a", 8080));
        let in_flight = InFlight::default();
        let guard = in_flight
            .enter("default", "a", &plan(vec![alloc(&a, "a1", "n1")]))
            .expect("a plan with a placement is recorded");
        // Another job's worker sees a1 as placed: its port is taken, its resources used.
        use scheduler::State as _;
        let view = in_flight.view(|| state.clone(), "default", "b");
        assert_eq!(view.index(), state.index(), "the view is not a newer state");
        assert_eq!(view.added(), 1);
        assert_eq!(view.allocs_by_node("n1").len(), 1);
        let with_a1 = NodeLoad::of_alloc(&view.allocs_by_node("n1")[0]);
        assert_ne!(with_a1, NodeLoad::default());
        assert_eq!(view.node_load("n1"), Some(with_a1));
        let same_port = alloc(&Arc::new(job("b", 8080)), "b1", "n1");
        let why = scheduler::usage::check_node_plan(&view, "n1", &HashSet::new(), &[same_port])
            .expect_err("the in-flight plan holds port 8080");
        assert!(why.to_string().contains("8080"), "{why}");
        // The job's own re-plan does not count its plan twice; the published state and
        // the applier's check are untouched.
        let own = in_flight.view(|| state.clone(), "default", "a");
        assert!(own.allocs_by_node("n1").is_empty());
        assert_eq!(own.node_load("n1"), Some(NodeLoad::default()));
        assert!(state.allocs_for_node("n1").is_empty());
        // Answered: it leaves the list, and planners see only the published state.
        drop(guard);
        assert!(in_flight.is_empty());
        let after = in_flight.view(|| state.clone(), "default", "b");
        assert_eq!(after.added(), 0);
        assert!(Arc::ptr_eq(&after.state, &state));
        assert!(in_flight.enter("default", "a", &Plan::default()).is_none());
    }

    #[test]
    fn second_plan_for_the_same_static_port_on_a_node_is_refused_naming_the_port() {
        let mut state = with_nodes(&["n1", "n2"]);
        let a = Arc::new(job("a", 8080));
        let b = Arc::new(job("b", 8080));
        // Two workers planned from the same snapshot: both chose port 8080 on n1.
        let first = plan(vec![alloc(&a, "a1", "n1")]);
        let second = plan(vec![alloc(&b, "b1", "n1"), alloc(&b, "b2", "n2")]);

        let (accepted, refused) = evaluate(&state, &first);
        assert_eq!(accepted, vec!["n1".to_string()]);
        assert!(refused.is_empty());
        commit(&mut state, 3, &first, &accepted);
        assert_eq!(state.allocs_for_node("n1").len(), 1);

        let (accepted, refused) = evaluate(&state, &second);
        assert_eq!(accepted, vec!["n2".to_string()], "n2 still fits");
        let why = &refused["n1"];
        assert!(why.contains("static port 8080"), "{why}");
        assert!(why.contains("n1-name (n1)"), "{why}");
        assert!(why.contains("b.web[0]"), "{why}");
    }

    #[test]
    fn a_plan_that_stops_the_port_holder_may_reuse_its_port() {
        let mut state = with_nodes(&["n1"]);
        let a = Arc::new(job("a", 8080));
        let first = plan(vec![alloc(&a, "a1", "n1")]);
        commit(&mut state, 2, &first, &["n1".to_string()]);
        let mut replace = plan(vec![alloc(&a, "a2", "n1")]);
        let mut stopped = (*state.alloc_table()["a1"]).clone();
        stopped.desired_status = api::ALLOC_DESIRED_STOP.into();
        replace.node_update.insert("n1".into(), vec![stopped]);
        let (accepted, refused) = evaluate(&state, &replace);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(accepted, vec!["n1".to_string()]);
    }

    /// The allocation `alloc(job, id, node)` makes, with its dynamic port `http` assigned
    /// host port `port` (as the scheduler does) and no static port.
    fn alloc_with_dynamic_port(job: &Arc<api::Job>, id: &str, node: &str, port: i64) -> Allocation {
        let mut a = alloc(job, id, node);
        a.allocated_resources = Some(api::AllocatedResources {
            shared: api::AllocatedSharedResources {
                networks: vec![api::NetworkResource {
                    dynamic_ports: vec![api::Port {
                        label: "http".into(),
                        value: port,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ports: vec![api::AllocatedPortMapping {
                    label: "http".into(),
                    value: port,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        });
        a
    }

    #[test]
    fn second_plan_for_the_same_dynamic_port_on_a_node_is_refused_naming_the_port() {
        let mut state = with_nodes(&["n1", "n2"]);
        // Two workers planned from the same snapshot; their seeds drew the same dynamic
        // port on n1 (static ports play no part: the jobs reserve different ones).
        let a = Arc::new(job("a", 8080));
        let b = Arc::new(job("b", 8081));
        let first = plan(vec![alloc_with_dynamic_port(&a, "a1", "n1", 24_680)]);
        let second = plan(vec![
            alloc_with_dynamic_port(&b, "b1", "n1", 24_680),
            alloc_with_dynamic_port(&b, "b2", "n2", 24_680),
        ]);
        let (accepted, refused) = evaluate(&state, &first);
        assert_eq!(accepted, vec!["n1".to_string()]);
        assert!(refused.is_empty(), "{refused:?}");
        commit(&mut state, 3, &first, &accepted);
        let stored = &state.alloc_table()["a1"];
        assert_eq!(
            stored.allocated_ports()[0].value,
            24_680,
            "the FSM keeps it"
        );

        let (accepted, refused) = evaluate(&state, &second);
        assert_eq!(accepted, vec!["n2".to_string()], "the port is free on n2");
        let why = &refused["n1"];
        assert!(why.contains("dynamic port 24680"), "{why}");
        assert!(why.contains("b.web[0]"), "{why}");
    }

    /// "Fits" is decided in one place, the scheduler: the applier must not grow a second
    /// resource check of its own.
    #[test]
    fn the_applier_has_no_resource_arithmetic_of_its_own() {
        let source = include_str!("plan_apply.rs");
        let code = source.split("#[cfg(test)]").next().unwrap();
        for word in [
            ".cpu",
            "memory_mb",
            "disk_mb",
            "reserved_ports",
            "allocatable(",
            "ready_and_eligible",
        ] {
            assert!(
                !code.contains(word),
                "plan_apply.rs computes {word} itself; use scheduler::usage::check_node_plan"
            );
        }
        assert!(code.contains("scheduler::usage::check_node_plan"));
    }
}
