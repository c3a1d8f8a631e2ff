//! Node selection for one task group: the placement chain assembled in one place.
//!
//! source (candidate nodes in seeded random order, resumed where the last placement
//! stopped) -> feasibility (drivers, constraints, distinct_hosts, distinct_property, spread
//! max skew) -> fit (cpu, memory, disk, static ports) -> score (fit, job anti-affinity,
//! reschedule penalty, affinity, spread) -> limit (stop after a few scored options) -> the
//! highest score, ties to the first seen.
//!
//! With the spread algorithm, only nodes holding the fewest allocations of the group count
//! as options (the "floor", raised when a full pass finds none), so a group fills the
//! cluster level by level: per-node counts never differ by more than one while every node
//! has room.
//!
//! Adding a rule means adding one checker to [`crate::feasible`] or one scorer to
//! [`crate::rank`] and one line here.

use crate::feasible::{DistinctHosts, GroupFeasibility};
use crate::limits::{PropertyLimit, SkewLimit};
use crate::rank::{
    combine, AffinityScorer, FitScorer, JobAntiAffinityScorer, ReschedulePenaltyScorer,
    SpreadScorer,
};
use crate::usage::{fit, Ask, ClusterUsage, NodeUsage};
use crate::{Algorithm, State};
use api::{AllocMetric, Job, Node, TaskGroup};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the chain thinks of one node before scoring.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeVerdict {
    /// Fails a feasibility check; the reason is counted in `constraint_filtered`.
    Filtered(String),
    /// Feasible but out of room; the dimension is counted in `dimension_exhausted`.
    Exhausted(&'static str),
    Fits,
}

/// How many scored options to look at before choosing.
pub fn visit_limit(job: &Job, group: &TaskGroup, candidates: usize) -> usize {
    let has_preferences = !job.affinities.is_empty()
        || !job.spreads.is_empty()
        || !group.affinities.is_empty()
        || !group.spreads.is_empty()
        || group.tasks.iter().any(|t| !t.affinities.is_empty());
    if has_preferences {
        return usize::MAX;
    }
    if job.job_type == api::JOB_TYPE_BATCH {
        return 2;
    }
    // ceil(log2(N)), at least 2: enough choice to pack well without scoring every node.
    let log2 = usize::BITS - candidates.saturating_sub(1).leading_zeros();
    (log2 as usize).max(2)
}

pub struct GroupSelector<'j> {
    job: &'j Job,
    group: &'j TaskGroup,
    feasibility: GroupFeasibility,
    distinct_hosts: Option<DistinctHosts>,
    ask: Ask,
    nodes: Vec<Arc<Node>>,
    cursor: usize,
    limit: usize,
    fit_scorer: FitScorer,
    anti_affinity: JobAntiAffinityScorer,
    affinity: AffinityScorer,
    spread: SpreadScorer,
    property_limits: Vec<PropertyLimit>,
    skew_limits: Vec<SkewLimit>,
    existing: Vec<Arc<Node>>,
    algorithm: Algorithm,
    /// Spread algorithm: no node with room holds fewer of the group's allocations.
    floor: u32,
    nodes_available: BTreeMap<String, u64>,
    nodes_excluded: BTreeMap<String, u64>,
}

impl<'j> GroupSelector<'j> {
    /// `existing` are the nodes the group's live allocations run on, for spread counts.
    /// With `rng` the candidates are visited in a seeded random order; without, by ID.
    pub fn new(
        job: &'j Job,
        group: &'j TaskGroup,
        candidates: &[Arc<Node>],
        existing: &[Arc<Node>],
        algorithm: Algorithm,
        rng: Option<&mut impl Rng>,
    ) -> Self {
        let mut nodes = candidates.to_vec();
        if let Some(rng) = rng {
            nodes.shuffle(rng);
        }
        let mut nodes_available = BTreeMap::new();
        for n in candidates {
            *nodes_available.entry(n.datacenter.clone()).or_default() += 1;
        }
        let ask = Ask::for_group(group);
        let mut feasibility = GroupFeasibility::new(job, group);
        let has_skew = job
            .spreads
            .iter()
            .chain(&group.spreads)
            .any(|s| s.max_skew > 0);
        let skew_limits = if has_skew {
            let feasible: Vec<&Node> = candidates
                .iter()
                .filter(|n| feasibility.check(n).is_ok())
                .map(|n| &**n)
                .collect();
            SkewLimit::for_group(job, group, &feasible, existing)
        } else {
            Vec::new()
        };
        GroupSelector {
            job,
            group,
            feasibility,
            property_limits: PropertyLimit::for_group(job, group, existing, existing),
            skew_limits,
            existing: existing.to_vec(),
            algorithm,
            floor: 0,
            nodes_excluded: BTreeMap::new(),
            distinct_hosts: DistinctHosts::for_group(job, group),
            limit: visit_limit(job, group, candidates.len()),
            fit_scorer: FitScorer {
                ask: ask.clone(),
                algorithm,
            },
            anti_affinity: JobAntiAffinityScorer {
                namespace: job.ns().to_string(),
                job_id: job.id.clone(),
                group: group.name.clone(),
                desired_count: group.count.max(1) as u64,
            },
            affinity: AffinityScorer::for_group(job, group),
            spread: SpreadScorer::new(job, group, candidates, existing),
            ask,
            nodes,
            cursor: 0,
            nodes_available,
        }
    }

    /// Counts the live allocations of the whole job (one node per alloc, including this
    /// plan's placements of earlier groups) for job-level `distinct_property` limits.
    pub fn with_job_allocs(mut self, job_nodes: &[Arc<Node>]) -> Self {
        if self
            .property_limits
            .iter()
            .any(PropertyLimit::is_job_scoped)
        {
            self.property_limits =
                PropertyLimit::for_group(self.job, self.group, &self.existing, job_nodes);
        }
        self
    }

    /// Nodes left out before selection (draining, down, other datacenters...), by reason,
    /// for failure metrics.
    pub fn with_exclusions(mut self, excluded: BTreeMap<String, u64>) -> Self {
        self.nodes_excluded = excluded;
        self
    }

    /// A metric with nothing evaluated yet, for failures found without visiting nodes.
    pub fn empty_metric(&self) -> AllocMetric {
        AllocMetric {
            nodes_available: self.nodes_available.clone(),
            nodes_excluded: self.nodes_excluded.clone(),
            ..Default::default()
        }
    }

    /// Counts a placement on `node` for spread scores and the hard limits.
    pub fn record(&mut self, node: &Node) {
        self.spread.record(node);
        for limit in &mut self.property_limits {
            limit.record(node);
        }
        for limit in &mut self.skew_limits {
            limit.record(node);
        }
    }

    /// Feasibility and fit of one node, given what already runs there.
    pub fn check_node(&mut self, node: &Node, usage: &NodeUsage) -> NodeVerdict {
        if let Err(reason) = self.feasibility.check(node) {
            return NodeVerdict::Filtered(reason);
        }
        if let Some(scope) = self.distinct_hosts {
            let ns = self.job.ns();
            let job_allocs = usage.job_allocs(ns, &self.job.id);
            let group_allocs = usage.group_allocs(ns, &self.job.id, &self.group.name);
            if !scope.allows(job_allocs, group_allocs) {
                return NodeVerdict::Filtered(crate::constraint::OP_DISTINCT_HOSTS.to_string());
            }
        }
        for limit in &self.property_limits {
            if let Err(reason) = limit.check(node) {
                return NodeVerdict::Filtered(reason.to_string());
            }
        }
        for limit in &self.skew_limits {
            if let Err(reason) = limit.check(node) {
                return NodeVerdict::Filtered(reason.to_string());
            }
        }
        match fit(node, usage, &self.ask) {
            Ok(()) => NodeVerdict::Fits,
            Err(dimension) => NodeVerdict::Exhausted(dimension),
        }
    }

    /// Counts one node's verdict into a failure metric.
    pub fn count(metric: &mut AllocMetric, node: &Node, verdict: &NodeVerdict) {
        metric.nodes_evaluated += 1;
        match verdict {
            NodeVerdict::Filtered(reason) => {
                metric.nodes_filtered += 1;
                *metric
                    .constraint_filtered
                    .entry(reason.clone())
                    .or_default() += 1;
                if !node.node_class.is_empty() {
                    *metric
                        .class_filtered
                        .entry(node.node_class.clone())
                        .or_default() += 1;
                }
            }
            NodeVerdict::Exhausted(dimension) => {
                metric.nodes_exhausted += 1;
                *metric
                    .dimension_exhausted
                    .entry(dimension.to_string())
                    .or_default() += 1;
                if !node.node_class.is_empty() {
                    *metric
                        .class_exhausted
                        .entry(node.node_class.clone())
                        .or_default() += 1;
                }
            }
            NodeVerdict::Fits => {}
        }
    }

    pub fn score(&self, node: &Node, usage: &NodeUsage, penalty: &ReschedulePenaltyScorer) -> f64 {
        combine(&[
            self.fit_scorer.score(node, usage),
            self.anti_affinity.score(node, usage),
            penalty.score(node, usage),
            self.affinity.score(node, usage),
            self.spread.score(node, usage),
        ])
    }

    /// Picks the node for one placement, or says why none would do. Nodes in
    /// `penalty_nodes` (where a rescheduled alloc failed) are scored but do not count
    /// towards the visit limit, so the chain looks a little further for another node.
    pub fn select<S: State>(
        &mut self,
        usage: &mut ClusterUsage<'_, S>,
        penalty_nodes: &[String],
    ) -> Result<Arc<Node>, Box<AllocMetric>> {
        let penalty = ReschedulePenaltyScorer {
            penalty_nodes: penalty_nodes.to_vec(),
        };
        let total = self.nodes.len();
        let mut metric = self.empty_metric();
        let even = self.algorithm == Algorithm::Spread;
        let ns = self.job.ns();
        // (allocs of the group on the node when spreading evenly, score, node)
        let mut best: Option<(u32, f64, Arc<Node>)> = None;
        let mut options = 0;
        let mut visited = 0;
        while visited < total {
            let node = self.nodes[(self.cursor + visited) % total].clone();
            visited += 1;
            let node_usage = usage.node(&node.id);
            let verdict = self.check_node(&node, node_usage);
            Self::count(&mut metric, &node, &verdict);
            if verdict != NodeVerdict::Fits {
                continue;
            }
            let level = if even {
                node_usage.group_allocs(ns, &self.job.id, &self.group.name)
            } else {
                0
            };
            let score = self.score(&node, node_usage, &penalty);
            let better = match &best {
                None => true,
                Some((best_level, best_score, _)) => {
                    level < *best_level || (level == *best_level && score > *best_score)
                }
            };
            if better {
                best = Some((level, score, node.clone()));
            }
            if level <= self.floor && !penalty_nodes.contains(&node.id) {
                options += 1;
                if options >= self.limit {
                    break;
                }
            }
        }
        if total > 0 {
            // The next placement starts where this one stopped, as Nomad's node iterator
            // does, so consecutive placements see different nodes first.
            self.cursor = (self.cursor + visited) % total;
        }
        match best {
            Some((level, _, node)) => {
                if visited == total {
                    // A full pass: nothing with room sits below this level.
                    self.floor = level;
                }
                self.record(&node);
                Ok(node)
            }
            None => Err(Box::new(metric)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn visit_limit_is_log2_for_services_and_two_for_batch() {
        let service = mock::job("web", api::JOB_TYPE_SERVICE);
        let g = &service.task_groups[0];
        assert_eq!(visit_limit(&service, g, 1), 2);
        assert_eq!(visit_limit(&service, g, 8), 3);
        assert_eq!(visit_limit(&service, g, 9), 4);
        assert_eq!(visit_limit(&service, g, 10_000), 14);
        let batch = mock::job("b", api::JOB_TYPE_BATCH);
        assert_eq!(visit_limit(&batch, &batch.task_groups[0], 10_000), 2);
        let mut pref = service.clone();
        pref.affinities.push(api::Affinity {
            l_target: "${node.class}".into(),
            r_target: "x".into(),
            operand: "=".into(),
            weight: 50,
        });
        assert_eq!(visit_limit(&pref, &pref.task_groups[0], 10), usize::MAX);
    }

    #[test]
    fn selection_fails_with_metrics_when_nothing_fits() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.task_groups[0].tasks[0]
            .resources
            .as_mut()
            .unwrap()
            .memory_mb = 10_000;
        let nodes: Vec<_> = ["a", "b", "c"].map(|n| Arc::new(mock::node(n))).to_vec();
        let state = mock::MemState::new().with_nodes(nodes.iter().map(|n| (**n).clone()));
        let mut usage = ClusterUsage::new(&state);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut sel = GroupSelector::new(
            &job,
            &job.task_groups[0],
            &nodes,
            &[],
            Algorithm::BinPack,
            Some(&mut rng),
        );
        let metric = sel.select(&mut usage, &[]).unwrap_err();
        assert_eq!(metric.nodes_evaluated, 3);
        assert_eq!(metric.nodes_exhausted, 3);
        assert_eq!(metric.dimension_exhausted["memory"], 3);
        assert_eq!(metric.nodes_available["dc1"], 3);
    }

    #[test]
    fn binpack_picks_the_fuller_node_among_those_visited() {
        let job = mock::job("web", api::JOB_TYPE_SERVICE);
        let other = Arc::new(mock::job("other", api::JOB_TYPE_SERVICE));
        let nodes: Vec<_> = ["a", "b"].map(|n| Arc::new(mock::node(n))).to_vec();
        let busy = mock::alloc(&other, "web", 0, &nodes[1]);
        let state = mock::MemState::new()
            .with_nodes(nodes.iter().map(|n| (**n).clone()))
            .with_allocs([busy]);
        for seed in 0..5 {
            let mut usage = ClusterUsage::new(&state);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut sel = GroupSelector::new(
                &job,
                &job.task_groups[0],
                &nodes,
                &[],
                Algorithm::BinPack,
                Some(&mut rng),
            );
            assert_eq!(sel.select(&mut usage, &[]).unwrap().id, "b");
        }
    }
}
