//! Feasibility: may this task group run on this node at all, ignoring capacity?
//!
//! Two stages. [`candidate_nodes`] keeps the nodes that may take new work (ready, eligible,
//! not draining, in one of the job's datacenters and its node pool). Then per task group a
//! [`GroupFeasibility`] runs small checkers (drivers, constraints), each a type with a pure
//! `check` method. Checks that only read what the node's computed class summarises are
//! memoised per class, so ten thousand identical nodes cost one check.

use crate::constraint::{self, OP_DISTINCT_HOSTS, OP_DISTINCT_PROPERTY};
use api::{Constraint, Job, Node, TaskGroup};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A feasibility check on one node. `Err` carries the reason counted in
/// `AllocMetric::constraint_filtered`.
pub trait FeasibilityCheck {
    fn check(&self, node: &Node) -> Result<(), String>;

    /// Whether nodes of one computed class always get the same answer.
    fn depends_only_on_class(&self) -> bool {
        true
    }
}

/// Nodes that can take new work: ready, eligible and not draining.
pub fn node_is_schedulable(node: &Node) -> bool {
    node.ready_and_eligible()
}

/// The job's datacenters, each possibly a glob such as `dc*` or `*`.
#[derive(Debug, Clone)]
pub struct DatacenterFilter {
    patterns: Vec<String>,
}

impl DatacenterFilter {
    pub fn new(datacenters: &[String]) -> Self {
        let patterns = if datacenters.is_empty() {
            vec!["*".to_string()]
        } else {
            datacenters.to_vec()
        };
        DatacenterFilter { patterns }
    }

    pub fn matches(&self, datacenter: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, datacenter))
    }
}

/// `*` matches any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic two-pointer wildcard match with a single backtrack point.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The job's node pool: `all` takes any node; `default` (or unset) the nodes without a pool.
#[derive(Debug, Clone)]
pub struct NodePoolFilter {
    pool: String,
}

impl NodePoolFilter {
    pub fn new(pool: &str) -> Self {
        NodePoolFilter {
            pool: if pool.is_empty() { "default" } else { pool }.to_string(),
        }
    }

    pub fn matches(&self, node: &Node) -> bool {
        let node_pool = if node.node_pool.is_empty() {
            "default"
        } else {
            &node.node_pool
        };
        self.pool == "all" || self.pool == node_pool
    }
}

/// The nodes a job may place on, sorted by ID so the run does not depend on the order the
/// state hands them out in.
pub fn candidate_nodes(nodes: &[Arc<Node>], job: &Job) -> Vec<Arc<Node>> {
    let datacenters = DatacenterFilter::new(&job.datacenters);
    let pool = NodePoolFilter::new(&job.node_pool);
    let mut out: Vec<Arc<Node>> = nodes
        .iter()
        .filter(|n| node_is_schedulable(n) && datacenters.matches(&n.datacenter) && pool.matches(n))
        .cloned()
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// How many nodes [`candidate_nodes`] leaves out, by reason, for failure explanations.
pub fn excluded_nodes(nodes: &[Arc<Node>], job: &Job) -> std::collections::BTreeMap<String, u64> {
    let datacenters = DatacenterFilter::new(&job.datacenters);
    let pool = NodePoolFilter::new(&job.node_pool);
    let mut out = std::collections::BTreeMap::new();
    for n in nodes {
        let reason = if !datacenters.matches(&n.datacenter) {
            "outside the job's datacenters"
        } else if !pool.matches(n) {
            "in another node pool"
        } else if n.status != api::NODE_STATUS_READY {
            match n.status.as_str() {
                api::NODE_STATUS_DOWN => "down",
                api::NODE_STATUS_DISCONNECTED => "disconnected",
                api::NODE_STATUS_INIT => "initializing",
                _ => "not ready",
            }
        } else if n.drain {
            "draining"
        } else if n.scheduling_eligibility == api::NODE_INELIGIBLE {
            "ineligible"
        } else {
            continue;
        };
        *out.entry(reason.to_string()).or_default() += 1;
    }
    out
}

/// Every task's driver is detected and healthy (or fingerprinted as `driver.<name>`).
#[derive(Debug, Clone)]
pub struct DriverChecker {
    drivers: BTreeSet<String>,
}

impl DriverChecker {
    pub fn new(group: &TaskGroup) -> Self {
        DriverChecker {
            drivers: group
                .tasks
                .iter()
                .filter(|t| !t.driver.is_empty())
                .map(|t| t.driver.clone())
                .collect(),
        }
    }

    fn has_driver(node: &Node, driver: &str) -> bool {
        match node.drivers.get(driver) {
            Some(info) => info.detected && info.healthy,
            None => node
                .attributes
                .get(&format!("driver.{driver}"))
                .is_some_and(|v| !v.is_empty() && v != "0" && v != "false"),
        }
    }
}

impl FeasibilityCheck for DriverChecker {
    fn check(&self, node: &Node) -> Result<(), String> {
        if self.drivers.iter().all(|d| Self::has_driver(node, d)) {
            Ok(())
        } else {
            Err("missing drivers".to_string())
        }
    }
}

/// One constraint from the job, its group or one of its tasks.
#[derive(Debug, Clone)]
pub struct ConstraintChecker {
    constraint: Constraint,
    operator: constraint::Operator,
}

impl ConstraintChecker {
    pub fn new(constraint: Constraint) -> Self {
        let operator = constraint::Operator::new(&constraint.operand, &constraint.r_target);
        ConstraintChecker {
            constraint,
            operator,
        }
    }
}

impl FeasibilityCheck for ConstraintChecker {
    fn check(&self, node: &Node) -> Result<(), String> {
        let left = constraint::resolve_target(&self.constraint.l_target, node);
        let right = constraint::resolve_target(&self.constraint.r_target, node);
        if self.operator.holds(left, right) {
            Ok(())
        } else {
            Err(constraint::describe(&self.constraint))
        }
    }

    fn depends_only_on_class(&self) -> bool {
        !constraint::target_is_unique(&self.constraint.l_target)
            && !constraint::target_is_unique(&self.constraint.r_target)
    }
}

/// The constraints that apply to a group: the job's, the group's and its tasks'.
pub fn group_constraints<'a>(job: &'a Job, group: &'a TaskGroup) -> Vec<&'a Constraint> {
    job.constraints
        .iter()
        .chain(group.constraints.iter())
        .chain(group.tasks.iter().flat_map(|t| t.constraints.iter()))
        .collect()
}

/// Which allocations a `distinct_hosts` constraint keeps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistinctHosts {
    /// Set on the job: no two allocations of the job share a node.
    Job,
    /// Set on the group or a task: no two allocations of the group share a node.
    Group,
}

impl DistinctHosts {
    pub fn for_group(job: &Job, group: &TaskGroup) -> Option<DistinctHosts> {
        let wants = |cs: &[Constraint]| {
            cs.iter()
                .any(|c| c.operand == OP_DISTINCT_HOSTS && c.r_target != "false")
        };
        if wants(&job.constraints) {
            Some(DistinctHosts::Job)
        } else if wants(&group.constraints) || group.tasks.iter().any(|t| wants(&t.constraints)) {
            Some(DistinctHosts::Group)
        } else {
            None
        }
    }

    /// Pure rule over the live allocation counts on a node.
    pub fn allows(self, job_allocs_on_node: u32, group_allocs_on_node: u32) -> bool {
        match self {
            DistinctHosts::Job => job_allocs_on_node == 0,
            DistinctHosts::Group => group_allocs_on_node == 0,
        }
    }
}

/// All capacity-independent checks for one task group, with the per-class memo.
pub struct GroupFeasibility {
    by_class: Vec<Box<dyn FeasibilityCheck>>,
    per_node: Vec<Box<dyn FeasibilityCheck>>,
    class_memo: HashMap<String, Result<(), String>>,
}

impl GroupFeasibility {
    pub fn new(job: &Job, group: &TaskGroup) -> Self {
        let mut checks: Vec<Box<dyn FeasibilityCheck>> = vec![Box::new(DriverChecker::new(group))];
        for c in group_constraints(job, group) {
            if c.operand != OP_DISTINCT_HOSTS && c.operand != OP_DISTINCT_PROPERTY {
                checks.push(Box::new(ConstraintChecker::new(c.clone())));
            }
        }
        let (by_class, per_node) = checks.into_iter().partition(|c| c.depends_only_on_class());
        GroupFeasibility {
            by_class,
            per_node,
            class_memo: HashMap::new(),
        }
    }

    pub fn check(&mut self, node: &Node) -> Result<(), String> {
        let class_verdict = if node.computed_class.is_empty() {
            run_checks(&self.by_class, node)
        } else if let Some(v) = self.class_memo.get(&node.computed_class) {
            v.clone()
        } else {
            let v = run_checks(&self.by_class, node);
            self.class_memo
                .insert(node.computed_class.clone(), v.clone());
            v
        };
        class_verdict?;
        run_checks(&self.per_node, node)
    }
}

fn run_checks(checks: &[Box<dyn FeasibilityCheck>], node: &Node) -> Result<(), String> {
    checks.iter().try_for_each(|c| c.check(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;

    #[test]
    fn glob_matches_datacenters() {
        assert!(glob_match("*", "dc1"));
        assert!(glob_match("dc*", "dc1"));
        assert!(glob_match("dc?", "dc2"));
        assert!(glob_match("us-*-1", "us-east-1"));
        assert!(!glob_match("dc*", "eu1"));
        assert!(!glob_match("dc1", "dc10"));
        assert!(DatacenterFilter::new(&[]).matches("anything"));
        assert!(DatacenterFilter::new(&["eu".into(), "dc*".into()]).matches("dc3"));
    }

    #[test]
    fn node_pool_default_and_all() {
        let mut node = mock::node("n1");
        node.node_pool = String::new();
        assert!(NodePoolFilter::new("default").matches(&node));
        assert!(NodePoolFilter::new("").matches(&node));
        node.node_pool = "gpu".into();
        assert!(!NodePoolFilter::new("default").matches(&node));
        assert!(NodePoolFilter::new("all").matches(&node));
        assert!(NodePoolFilter::new("gpu").matches(&node));
    }

    #[test]
    fn candidates_skip_down_ineligible_draining_and_foreign_nodes() {
        let ready = mock::node("a");
        let mut down = mock::node("b");
        down.status = api::NODE_STATUS_DOWN.into();
        let mut ineligible = mock::node("c");
        ineligible.scheduling_eligibility = api::NODE_INELIGIBLE.into();
        let mut draining = mock::node("d");
        draining.drain = true;
        let mut elsewhere = mock::node("e");
        elsewhere.datacenter = "eu1".into();
        let nodes: Vec<_> = [ready, down, ineligible, draining, elsewhere]
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.datacenters = vec!["dc*".into()];
        let ids: Vec<_> = candidate_nodes(&nodes, &job)
            .iter()
            .map(|n| n.id.clone())
            .collect();
        assert_eq!(ids, ["a"]);
    }

    #[test]
    fn driver_checker_needs_detected_and_healthy() {
        let job = mock::job("web", api::JOB_TYPE_SERVICE); // driver "exec"
        let checker = DriverChecker::new(&job.task_groups[0]);
        let mut node = mock::node("n1");
        assert!(checker.check(&node).is_ok());
        node.drivers.get_mut("exec").unwrap().healthy = false;
        assert_eq!(checker.check(&node), Err("missing drivers".into()));
        node.drivers.remove("exec");
        assert!(checker.check(&node).is_err());
        node.attributes.insert("driver.exec".into(), "1".into());
        assert!(checker.check(&node).is_ok());
    }

    #[test]
    fn constraint_checker_reports_the_constraint() {
        let c = Constraint {
            l_target: "${attr.kernel.name}".into(),
            r_target: "windows".into(),
            operand: "=".into(),
        };
        let checker = ConstraintChecker::new(c);
        assert_eq!(
            checker.check(&mock::node("n1")),
            Err("${attr.kernel.name} = windows".into())
        );
        assert!(checker.depends_only_on_class());
        let unique = ConstraintChecker::new(Constraint {
            l_target: "${node.unique.name}".into(),
            r_target: "n1".into(),
            operand: "=".into(),
        });
        assert!(!unique.depends_only_on_class());
        assert!(unique.check(&mock::node("n1")).is_ok());
    }

    #[test]
    fn class_memo_reuses_the_first_answer_but_not_for_unique_targets() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.constraints.push(Constraint {
            l_target: "${attr.kernel.name}".into(),
            r_target: "linux".into(),
            operand: "=".into(),
        });
        job.constraints.push(Constraint {
            l_target: "${node.unique.name}".into(),
            r_target: "n2".into(),
            operand: "!=".into(),
        });
        let mut feasibility = GroupFeasibility::new(&job, &job.task_groups[0]);
        let mut n1 = mock::node("n1");
        n1.computed_class = "c1".into();
        assert!(feasibility.check(&n1).is_ok());
        // Same class, different attribute: the memo answers (classes are trusted).
        let mut liar = mock::node("n3");
        liar.computed_class = "c1".into();
        liar.attributes
            .insert("kernel.name".into(), "windows".into());
        assert!(feasibility.check(&liar).is_ok());
        // The unique constraint is evaluated per node even within the class.
        let mut n2 = mock::node("n2");
        n2.computed_class = "c1".into();
        assert_eq!(
            feasibility.check(&n2),
            Err("${node.unique.name} != n2".into())
        );
    }

    #[test]
    fn distinct_hosts_scope() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        assert_eq!(DistinctHosts::for_group(&job, &job.task_groups[0]), None);
        job.task_groups[0].constraints.push(Constraint {
            operand: OP_DISTINCT_HOSTS.into(),
            r_target: "true".into(),
            ..Default::default()
        });
        let scope = DistinctHosts::for_group(&job, &job.task_groups[0]).unwrap();
        assert_eq!(scope, DistinctHosts::Group);
        assert!(scope.allows(3, 0));
        assert!(!scope.allows(3, 1));
        assert!(!DistinctHosts::Job.allows(1, 0));
    }
}
