//! Node selection for one task group: the placement chain assembled in one place.
//!
//! source (candidate nodes in seeded random order) -> feasibility (drivers, constraints,
//! distinct_hosts, distinct_property, spread max skew) -> fit (cpu, memory, disk, host
//! ports, free dynamic ports) -> score (fit, job anti-affinity, reschedule penalty, affinity, spread) -> limit
//! (stop after a few scored options) -> the highest score, ties to the first seen.
//!
//! With the spread algorithm each placement resumes where the last one stopped, and only
//! nodes holding the fewest allocations of the group count as options (the "floor", raised
//! when a full pass finds none), so a group fills the cluster level by level: per-node
//! counts never differ by more than one while every node has room.
//!
//! With bin-packing, a random sample of about log2(N) nodes of a mostly empty cluster
//! rarely holds the few busy ones, so every job would open nodes of its own. Instead the
//! candidates are ordered once per group: nodes already running service or batch work
//! first, fullest first, then the others, largest first (ties keep the seeded order); every
//! placement scans from the front and scores the first few nodes with room. A node that
//! does not fit is skipped by the group's later placements, so a group's work is bounded
//! by one pass over the nodes plus `limit` scored nodes per placement. When nothing is left
//! to try, one full pass counts every node for the failure metric.
//!
//! Adding a rule means adding one checker to [`crate::feasible`] or one scorer to
//! [`crate::rank`] and one line here.

use crate::feasible::{DistinctHosts, GroupFeasibility};
use crate::limits::{PropertyLimit, SkewLimit};
use crate::rank::{
    combine, AffinityScorer, FitScorer, JobAntiAffinityScorer, ReschedulePenaltyScorer,
    SpreadScorer,
};
use crate::usage::{check_cpu_memory, fit, Ask, ClusterUsage, NodeUsage};
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
    /// Bin-packing: `nodes` is in packing order (done on the first placement), `ruled_out`
    /// marks nodes that did not fit an earlier placement of the group, and every node
    /// before `start` is ruled out.
    packing_order: bool,
    ruled_out: Vec<bool>,
    start: usize,
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
            packing_order: false,
            ruled_out: Vec::new(),
            start: 0,
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

    /// The failure metric of a placement whose chosen node turned out to be out of room
    /// after all (its dynamic ports could not be assigned).
    pub fn exhausted_metric(&self, node: &Node, why: &crate::usage::Exhausted) -> AllocMetric {
        let mut metric = self.empty_metric();
        Self::count(&mut metric, node, &NodeVerdict::Exhausted(why.dimension()));
        metric
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
        self.check_usage(node, usage)
    }

    /// A node's verdict when it can be told without reading its allocations: filtered
    /// by a check that needs none, or out of CPU or memory by its load counters. `None`:
    /// [`GroupSelector::check_node`] must look. At scale most nodes a placement passes
    /// are full, and building each one's usage was most of an evaluation's time.
    fn check_without_usage<S: State>(
        &mut self,
        node: &Node,
        usage: &ClusterUsage<'_, S>,
    ) -> Option<NodeVerdict> {
        if let Err(reason) = self.feasibility.check(node) {
            return Some(NodeVerdict::Filtered(reason));
        }
        let load = usage.load_of(&node.id);
        check_cpu_memory(node, load.cpu, load.memory_mb, &self.ask)
            .err()
            .map(|e| NodeVerdict::Exhausted(e.dimension()))
    }

    /// The checks of [`GroupSelector::check_node`] after feasibility: distinct hosts,
    /// property and skew limits, then room.
    fn check_usage(&mut self, node: &Node, usage: &NodeUsage) -> NodeVerdict {
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
        if self.algorithm == Algorithm::BinPack {
            if let Some(node) = self.select_packed(usage, &penalty) {
                self.record(&node);
                return Ok(node);
            }
        }
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
            if let Some(verdict) = self.check_without_usage(&node, usage) {
                Self::count(&mut metric, &node, &verdict);
                continue;
            }
            let node_usage = usage.node(&node.id);
            let verdict = self.check_usage(&node, node_usage);
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
                if !even {
                    // Bin-packing found room its skip list had ruled out (a stop freed
                    // it): the list is stale, so start over.
                    self.ruled_out.fill(false);
                    self.start = 0;
                }
                self.record(&node);
                Ok(node)
            }
            None => Err(Box::new(metric)),
        }
    }

    /// Bin-packing's placement: scans the nodes in packing order from the first one not
    /// ruled out, scores the first `limit` that fit and returns the best, or `None` when
    /// none is left (the caller then makes a full, counted pass).
    fn select_packed<S: State>(
        &mut self,
        usage: &mut ClusterUsage<'_, S>,
        penalty: &ReschedulePenaltyScorer,
    ) -> Option<Arc<Node>> {
        if !self.packing_order {
            self.order_for_packing(usage);
        }
        // A spread's max skew filters a node only until the other values catch up.
        let filters_are_final = self.skew_limits.is_empty();
        let mut best: Option<(f64, usize)> = None;
        let mut options = 0;
        for pos in self.start..self.nodes.len() {
            if self.ruled_out[pos] {
                continue;
            }
            let node = self.nodes[pos].clone();
            let verdict = match self.check_without_usage(&node, usage) {
                Some(verdict) => verdict,
                None => self.check_usage(&node, usage.node(&node.id)),
            };
            match verdict {
                NodeVerdict::Fits => {}
                NodeVerdict::Exhausted(_) => {
                    // Within one run a node only fills up; room a stop frees on it is
                    // found by the full pass, when nothing else fits.
                    self.ruled_out[pos] = true;
                    continue;
                }
                NodeVerdict::Filtered(_) => {
                    self.ruled_out[pos] = filters_are_final;
                    continue;
                }
            }
            let node_usage = usage.node(&node.id);
            let score = self.score(&node, node_usage, penalty);
            if best.is_none_or(|(best_score, _)| score > best_score) {
                best = Some((score, pos));
            }
            if !penalty.penalty_nodes.contains(&node.id) {
                options += 1;
                if options >= self.limit {
                    break;
                }
            }
        }
        while self.start < self.nodes.len() && self.ruled_out[self.start] {
            self.start += 1;
        }
        best.map(|(_, pos)| self.nodes[pos].clone())
    }

    /// Orders the candidates for bin-packing: nodes running service or batch work first,
    /// fullest first, then the rest, largest first, so a job opens a new node only when
    /// the busy ones have no room, and then the largest. The sort is stable, so ties keep
    /// the seeded random order.
    fn order_for_packing<S: State>(&mut self, usage: &ClusterUsage<'_, S>) {
        let mut keyed: Vec<(PackKey, Arc<Node>)> = self
            .nodes
            .drain(..)
            .map(|node| {
                let load = usage.load_of(&node.id);
                let key = if load.packed_allocs > 0 {
                    PackKey::Busy(FitScorer::fullness(&node, load.cpu, load.memory_mb))
                } else {
                    let (cpu, memory_mb, _) = node.allocatable();
                    PackKey::Idle(cpu, memory_mb)
                };
                (key, node)
            })
            .collect();
        keyed.sort_by(|(a, _), (b, _)| a.cmp_for_packing(b));
        self.nodes = keyed.into_iter().map(|(_, node)| node).collect();
        self.ruled_out = vec![false; self.nodes.len()];
        self.start = 0;
        self.packing_order = true;
    }
}

/// Where a node goes in bin-packing's order.
#[derive(Debug, Clone, Copy)]
enum PackKey {
    /// Runs service or batch work; how full it is (0..=1).
    Busy(f64),
    /// Runs none (system jobs may run there): its allocatable CPU and memory.
    Idle(i64, i64),
}

impl PackKey {
    fn cmp_for_packing(&self, other: &PackKey) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (PackKey::Busy(a), PackKey::Busy(b)) => b.total_cmp(a),
            (PackKey::Busy(_), PackKey::Idle(..)) => Ordering::Less,
            (PackKey::Idle(..), PackKey::Busy(_)) => Ordering::Greater,
            (PackKey::Idle(c1, m1), PackKey::Idle(c2, m2)) => (c2, m2).cmp(&(c1, m1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;

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

    fn selector<'j>(job: &'j Job, nodes: &[Arc<Node>], seed: u64) -> GroupSelector<'j> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        GroupSelector::new(
            job,
            &job.task_groups[0],
            nodes,
            &[],
            Algorithm::BinPack,
            Some(&mut rng),
        )
    }

    #[test]
    fn binpack_finds_the_few_busy_nodes_of_a_mostly_empty_cluster() {
        // log2(64) = 6 scored options: a random sample would miss both busy nodes most
        // of the time.
        let job = mock::job("web", api::JOB_TYPE_SERVICE);
        let other = Arc::new(mock::job("other", api::JOB_TYPE_SERVICE));
        let nodes: Vec<_> = (0..64)
            .map(|i| Arc::new(mock::node(&format!("n{i:02}"))))
            .collect();
        let busy = [
            mock::alloc(&other, "web", 0, &nodes[17]),
            mock::alloc(&other, "web", 1, &nodes[40]),
            mock::alloc(&other, "web", 2, &nodes[40]),
        ];
        let state = mock::MemState::new()
            .with_nodes(nodes.iter().map(|n| (**n).clone()))
            .with_allocs(busy);
        for seed in 0..20 {
            let mut usage = ClusterUsage::new(&state);
            let mut sel = selector(&job, &nodes, seed);
            // The fuller of the two first.
            assert_eq!(
                sel.select(&mut usage, &[]).unwrap().id,
                "n40",
                "seed {seed}"
            );
        }
    }

    #[test]
    fn binpack_fills_one_node_before_opening_the_next_across_jobs() {
        // 24 jobs of one 500 MHz allocation: 8 fit on a 4000 MHz node, so 3 nodes.
        let nodes: Vec<_> = (0..32)
            .map(|i| Arc::new(mock::node(&format!("n{i:02}"))))
            .collect();
        let mut state = mock::MemState::new().with_nodes(nodes.iter().map(|n| (**n).clone()));
        for i in 0..24 {
            let job = Arc::new(mock::job(&format!("job{i}"), api::JOB_TYPE_SERVICE));
            let node = {
                let mut usage = ClusterUsage::new(&state);
                selector(&job, &nodes, i).select(&mut usage, &[]).unwrap()
            };
            state = state.with_allocs([mock::alloc(&job, "web", 0, &node)]);
        }
        let used: BTreeSet<&str> = state.allocs.values().map(|a| a.node_id.as_str()).collect();
        assert_eq!(used.len(), 3, "{used:?}");
    }

    #[test]
    fn binpack_of_one_group_spills_at_most_over_its_scored_window() {
        // Job anti-affinity spreads a group over the `limit` nodes it scores, but no
        // further: 24 allocations, 8 per node, limit log2(32) = 5.
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.task_groups[0].count = 24;
        let shared = Arc::new(job.clone());
        let nodes: Vec<_> = (0..32)
            .map(|i| Arc::new(mock::node(&format!("n{i:02}"))))
            .collect();
        let state = mock::MemState::new().with_nodes(nodes.iter().map(|n| (**n).clone()));
        let mut usage = ClusterUsage::new(&state);
        let mut sel = selector(&job, &nodes, 3);
        let mut used = BTreeSet::new();
        for i in 0..24 {
            let node = sel.select(&mut usage, &[]).unwrap();
            let mut alloc = mock::alloc(&shared, "web", i, &node);
            alloc.id = format!("a{i}").into();
            usage.place(&alloc);
            used.insert(node.id.clone());
        }
        assert!(used.len() <= 3 + 5, "{used:?}");
    }

    #[test]
    fn packing_order_is_busy_nodes_fullest_first_then_idle_nodes_largest_first() {
        let agent = Arc::new(mock::job("agent", api::JOB_TYPE_SYSTEM));
        let small = Arc::new(mock::job("small", api::JOB_TYPE_SERVICE)); // 500 MHz, 256 MB
        let mut nodes: Vec<_> = (0..8)
            .map(|i| Arc::new(mock::node(&format!("n{i}"))))
            .collect();
        let mut big = (*nodes[6]).clone();
        big.node_resources.cpu.cpu_shares = 16_000;
        big.node_resources.memory.memory_mb = 32_768;
        nodes[6] = Arc::new(big);
        // A system job runs everywhere, so it does not make a node busy: n1 (with a
        // service alloc) and n4 (with two) are the busy ones.
        let mut allocs: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| mock::alloc(&agent, "web", i as u64, n))
            .collect();
        allocs.push(mock::alloc(&small, "web", 0, &nodes[1]));
        allocs.push(mock::alloc(&small, "web", 1, &nodes[4]));
        allocs.push(mock::alloc(&small, "web", 2, &nodes[4]));
        let state = mock::MemState::new()
            .with_nodes(nodes.iter().map(|n| (**n).clone()))
            .with_allocs(allocs);
        let job = mock::job("web", api::JOB_TYPE_SERVICE);
        let mut orders = BTreeSet::new();
        for seed in 0..20 {
            let usage = ClusterUsage::new(&state);
            let mut sel = selector(&job, &nodes, seed);
            sel.order_for_packing(&usage);
            let order: Vec<&str> = sel.nodes.iter().map(|n| n.id.as_str()).collect();
            assert_eq!(order[..3], ["n4", "n1", "n6"], "seed {seed}");
            orders.insert(order[3..].join(","));
        }
        assert!(
            orders.len() > 1,
            "ties among the idle nodes follow the seed"
        );
    }

    #[test]
    fn binpack_counts_every_node_when_it_fails_after_skipping_full_ones() {
        // 3000 MHz each: one per 4000 MHz node.
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.task_groups[0].tasks[0].resources.as_mut().unwrap().cpu = 3000;
        let shared = Arc::new(job.clone());
        let nodes: Vec<_> = ["a", "b", "c"].map(|n| Arc::new(mock::node(n))).to_vec();
        let state = mock::MemState::new().with_nodes(nodes.iter().map(|n| (**n).clone()));
        let mut usage = ClusterUsage::new(&state);
        let mut sel = selector(&job, &nodes, 1);
        for i in 0..3 {
            let node = sel.select(&mut usage, &[]).unwrap();
            let mut alloc = mock::alloc(&shared, "web", i, &node);
            alloc.id = format!("a{i}").into();
            usage.place(&alloc);
        }
        let metric = sel.select(&mut usage, &[]).unwrap_err();
        assert_eq!(metric.nodes_evaluated, 3);
        assert_eq!(metric.dimension_exhausted["cpu"], 3);
    }

    /// A state that keeps load counters (as the servers' store does) and records whose
    /// allocations were read.
    struct Counting {
        inner: mock::MemState,
        read: std::cell::RefCell<Vec<String>>,
    }

    impl State for Counting {
        fn index(&self) -> u64 {
            self.inner.index()
        }
        fn job(&self, ns: &str, id: &str) -> Option<Arc<Job>> {
            self.inner.job(ns, id)
        }
        fn nodes(&self) -> Vec<Arc<Node>> {
            self.inner.nodes()
        }
        fn node(&self, id: &str) -> Option<Arc<Node>> {
            self.inner.node(id)
        }
        fn allocs_by_job(&self, ns: &str, job: &str) -> Vec<Arc<api::Allocation>> {
            self.inner.allocs_by_job(ns, job)
        }
        fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<api::Allocation>> {
            self.read.borrow_mut().push(node_id.to_string());
            self.inner.allocs_by_node(node_id)
        }
        fn node_load(&self, node_id: &str) -> Option<crate::usage::NodeLoad> {
            let mut sum = crate::usage::NodeLoad::default();
            for a in self.inner.allocs_by_node(node_id) {
                sum.add(crate::usage::NodeLoad::of_alloc(&a));
            }
            Some(sum)
        }
    }

    #[test]
    fn binpack_rules_full_nodes_out_by_their_counters_without_reading_their_allocations() {
        let old = Arc::new(mock::job("old", api::JOB_TYPE_SERVICE));
        let mut full = Vec::new();
        let mut allocs = Vec::new();
        for i in 0..20 {
            let n = mock::node(&format!("full-{i:02}"));
            // 8 x 500 MHz fill a 4000 MHz node.
            allocs.extend((0..8).map(|k| mock::alloc(&old, "web", i * 8 + k, &n)));
            full.push(n);
        }
        let empty = mock::node("empty");
        let job = mock::job("web", api::JOB_TYPE_SERVICE);
        let state = Counting {
            inner: mock::MemState::new()
                .with_nodes(full.iter().cloned().chain([empty]))
                .with_jobs([job.clone()])
                .with_allocs(allocs),
            read: Default::default(),
        };
        let plan = crate::schedule(&state, &mock::eval(&job), &Default::default(), 7).unwrap();
        let placed: Vec<_> = plan.node_allocation.keys().cloned().collect();
        assert_eq!(placed, ["empty"]);
        let read = state.read.borrow();
        assert!(
            read.iter().all(|n| !n.starts_with("full-")),
            "full nodes' allocations were read: {read:?}"
        );
    }

    #[test]
    fn binpack_finds_room_a_stop_freed_on_a_node_it_had_ruled_out() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.task_groups[0].tasks[0].resources.as_mut().unwrap().cpu = 3000;
        let shared = Arc::new(job.clone());
        let nodes = vec![Arc::new(mock::node("a"))];
        let old = mock::alloc(&shared, "web", 0, &nodes[0]);
        let state = mock::MemState::new()
            .with_nodes([(*nodes[0]).clone()])
            .with_allocs([old.clone()]);
        let mut usage = ClusterUsage::new(&state);
        let mut sel = selector(&job, &nodes, 1);
        assert!(sel.select(&mut usage, &[]).is_err());
        usage.stop(&old);
        assert_eq!(sel.select(&mut usage, &[]).unwrap().id, "a");
    }
}
