//! Ranking: how good a feasible node that has room is for one placement.
//!
//! Each scorer is a small type with a pure `score` method returning a value in [-1, 1], or
//! `None` when it has nothing to say about the node. The final score is the mean of the
//! scores that were given, as in Nomad, so a scorer that abstains does not dilute the rest.

use crate::constraint::{resolve_target, Operator};
use crate::usage::{Ask, NodeUsage};
use crate::Algorithm;
use api::{Affinity, Job, Node, Spread, TaskGroup};
use std::collections::{BTreeSet, HashMap};

/// Bin-packing (fullest node first) or its inverse, worst-fit (emptiest node first).
#[derive(Debug, Clone)]
pub struct FitScorer {
    pub ask: Ask,
    pub algorithm: Algorithm,
}

impl FitScorer {
    /// Nomad's formula: with `free` the fraction of CPU and memory left after placing,
    /// `20 - (10^freeCpu + 10^freeMem)` is 18 on a full node and 0 on an empty one.
    pub fn score(&self, node: &Node, usage: &NodeUsage) -> Option<f64> {
        let total = free_power_sum(
            node,
            usage.cpu + self.ask.cpu,
            usage.memory_mb + self.ask.memory_mb,
        );
        Some(match self.algorithm {
            Algorithm::BinPack => (20.0 - total) / 18.0,
            Algorithm::Spread => (total - 2.0) / 18.0,
        })
    }

    /// How full the node already is with `cpu` and `memory_mb` in use, on the bin-pack
    /// scale (0 empty, 1 full): the order in which bin-packing visits busy nodes.
    pub fn fullness(node: &Node, cpu: i64, memory_mb: i64) -> f64 {
        (20.0 - free_power_sum(node, cpu, memory_mb)) / 18.0
    }
}

/// `10^freeCpu + 10^freeMem`, with `free` the fraction left when `cpu` and `memory_mb` are
/// in use: 2 on a full node, 20 on an empty one.
fn free_power_sum(node: &Node, cpu: i64, memory_mb: i64) -> f64 {
    let (cap_cpu, cap_memory_mb, _) = node.allocatable();
    let free = |used: i64, cap: i64| -> f64 {
        if cap <= 0 {
            return 0.0;
        }
        (1.0 - used as f64 / cap as f64).clamp(0.0, 1.0)
    };
    10f64.powf(free(cpu, cap_cpu)) + 10f64.powf(free(memory_mb, cap_memory_mb))
}

/// Pushes allocations of one group apart: the more already on a node, the lower it scores.
#[derive(Debug, Clone)]
pub struct JobAntiAffinityScorer {
    pub namespace: String,
    pub job_id: String,
    pub group: String,
    pub desired_count: u64,
}

impl JobAntiAffinityScorer {
    pub fn score(&self, _node: &Node, usage: &NodeUsage) -> Option<f64> {
        let collisions = usage.group_allocs(&self.namespace, &self.job_id, &self.group);
        if collisions == 0 {
            return None;
        }
        let penalty = (collisions as f64 + 1.0) / self.desired_count.max(1) as f64;
        Some(-penalty.min(1.0))
    }
}

/// Steers a rescheduled allocation away from the nodes it failed on.
#[derive(Debug, Clone, Default)]
pub struct ReschedulePenaltyScorer {
    pub penalty_nodes: Vec<String>,
}

impl ReschedulePenaltyScorer {
    pub fn score(&self, node: &Node, _usage: &NodeUsage) -> Option<f64> {
        self.penalty_nodes.contains(&node.id).then_some(-1.0)
    }
}

/// The job's, group's and tasks' `affinity` blocks: the weights of those a node matches,
/// over the sum of all weights.
#[derive(Debug, Clone, Default)]
pub struct AffinityScorer {
    affinities: Vec<Affinity>,
    /// One per affinity, in order (a literal `regexp` pattern compiled once).
    operators: Vec<Operator>,
}

impl AffinityScorer {
    pub fn new(affinities: Vec<Affinity>) -> Self {
        let operators = affinities
            .iter()
            .map(|a| Operator::new(&a.operand, &a.r_target))
            .collect();
        AffinityScorer {
            affinities,
            operators,
        }
    }

    pub fn for_group(job: &Job, group: &TaskGroup) -> Self {
        AffinityScorer::new(
            job.affinities
                .iter()
                .chain(group.affinities.iter())
                .chain(group.tasks.iter().flat_map(|t| t.affinities.iter()))
                .cloned()
                .collect(),
        )
    }

    pub fn score(&self, node: &Node, _usage: &NodeUsage) -> Option<f64> {
        let total_weight: i64 = self.affinities.iter().map(|a| a.weight.abs()).sum();
        if total_weight == 0 {
            return None;
        }
        let matched: i64 = self
            .affinities
            .iter()
            .zip(&self.operators)
            .filter(|(a, op)| {
                op.holds(
                    resolve_target(&a.l_target, node),
                    resolve_target(&a.r_target, node),
                )
            })
            .map(|(a, _)| a.weight)
            .sum();
        (matched != 0).then(|| matched as f64 / total_weight as f64)
    }
}

/// The job's and group's `spread` blocks: prefer nodes whose attribute value is below its
/// target share (explicit percentages, or an even share when no targets are given).
#[derive(Debug, Clone, Default)]
pub struct SpreadScorer {
    spreads: Vec<Spread>,
    desired_count: u64,
    /// Per spread: live allocations of the group per attribute value.
    counts: Vec<HashMap<String, u32>>,
    /// Per spread: every value seen on a candidate node, for even spreading.
    values: Vec<BTreeSet<String>>,
    /// Per spread: the least and most allocations any value holds, kept current by
    /// `record` so scoring a node does not walk every value.
    min_max: Vec<(f64, f64)>,
}

impl SpreadScorer {
    /// `existing` are the nodes the group's live allocations run on (one entry per alloc).
    pub fn new(
        job: &Job,
        group: &TaskGroup,
        candidates: &[std::sync::Arc<Node>],
        existing: &[std::sync::Arc<Node>],
    ) -> Self {
        let spreads: Vec<Spread> = job
            .spreads
            .iter()
            .chain(group.spreads.iter())
            .cloned()
            .collect();
        let mut scorer = SpreadScorer {
            counts: vec![HashMap::new(); spreads.len()],
            values: spreads
                .iter()
                .map(|s| {
                    candidates
                        .iter()
                        .filter_map(|n| resolve_target(&s.attribute, n).map(str::to_string))
                        .collect()
                })
                .collect(),
            min_max: vec![(f64::INFINITY, 0.0); spreads.len()],
            spreads,
            desired_count: group.count.max(0) as u64,
        };
        for node in existing {
            scorer.count(node);
        }
        scorer.refresh();
        scorer
    }

    fn count(&mut self, node: &Node) {
        for (i, spread) in self.spreads.iter().enumerate() {
            if let Some(v) = resolve_target(&spread.attribute, node) {
                *self.counts[i].entry(v.to_string()).or_default() += 1;
            }
        }
    }

    fn refresh(&mut self) {
        for i in 0..self.spreads.len() {
            let count_of = |v: &String| self.counts[i].get(v).copied().unwrap_or(0) as f64;
            let min = self.values[i]
                .iter()
                .map(count_of)
                .fold(f64::INFINITY, f64::min);
            let max = self.values[i].iter().map(count_of).fold(0.0, f64::max);
            self.min_max[i] = (min, max);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spreads.is_empty()
    }

    /// Counts a placement on `node`, so the next placement sees it.
    pub fn record(&mut self, node: &Node) {
        if !self.spreads.is_empty() {
            self.count(node);
            self.refresh();
        }
    }

    pub fn score(&self, node: &Node, _usage: &NodeUsage) -> Option<f64> {
        if self.spreads.is_empty() {
            return None;
        }
        let weights: Vec<f64> = self
            .spreads
            .iter()
            .map(|s| if s.weight > 0 { s.weight as f64 } else { 1.0 })
            .collect();
        let total_weight: f64 = weights.iter().sum();
        let weighted: f64 = self
            .spreads
            .iter()
            .enumerate()
            .map(|(i, spread)| self.boost(i, spread, node) * weights[i])
            .sum();
        Some(weighted / total_weight)
    }

    fn boost(&self, i: usize, spread: &Spread, node: &Node) -> f64 {
        let Some(value) = resolve_target(&spread.attribute, node) else {
            return -1.0;
        };
        let used = self.counts[i].get(value).copied().unwrap_or(0) as f64;
        if spread.spread_target.is_empty() {
            return self.even_boost(i, used);
        }
        let explicit: i64 = spread.spread_target.iter().map(|t| t.percent).sum();
        let percent = spread
            .spread_target
            .iter()
            .find(|t| t.value == value)
            .map(|t| t.percent)
            // Values without a target share whatever percentage the targets leave over.
            .unwrap_or((100 - explicit).max(0));
        let desired = percent as f64 / 100.0 * self.desired_count as f64;
        if desired <= 0.0 {
            return -1.0;
        }
        ((desired - used) / desired).clamp(-1.0, 1.0)
    }

    /// The least-used value scores 1, the most-used -1, all equal 0.
    fn even_boost(&self, i: usize, used: f64) -> f64 {
        let (min, max) = self.min_max[i];
        if !min.is_finite() || max <= min {
            return 0.0;
        }
        (1.0 - 2.0 * (used - min) / (max - min)).clamp(-1.0, 1.0)
    }
}

/// The mean of the scores given; a node nobody scored gets 0.
pub fn combine(scores: &[Option<f64>]) -> f64 {
    let (sum, n) = scores
        .iter()
        .flatten()
        .fold((0.0, 0u32), |(sum, n), s| (sum + s, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / f64::from(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use api::SpreadTarget;
    use std::sync::Arc;

    fn ask(cpu: i64, memory_mb: i64) -> Ask {
        Ask {
            cpu,
            memory_mb,
            disk_mb: 0,
            reserved_ports: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn binpack_prefers_the_fuller_node_and_spread_the_emptier() {
        let node = mock::node("n1"); // 4000 MHz, 8192 MB
        let empty = NodeUsage::default();
        let half = NodeUsage {
            cpu: 2000,
            memory_mb: 4096,
            ..Default::default()
        };
        let binpack = FitScorer {
            ask: ask(500, 512),
            algorithm: Algorithm::BinPack,
        };
        let spread = FitScorer {
            algorithm: Algorithm::Spread,
            ..binpack.clone()
        };
        assert!(binpack.score(&node, &half) > binpack.score(&node, &empty));
        assert!(spread.score(&node, &half) < spread.score(&node, &empty));
    }

    #[test]
    fn binpack_score_is_one_on_a_full_node_and_near_zero_on_an_empty_one() {
        let node = mock::node("n1");
        let full = FitScorer {
            ask: ask(4000, 8192),
            algorithm: Algorithm::BinPack,
        };
        assert!((full.score(&node, &NodeUsage::default()).unwrap() - 1.0).abs() < 1e-9);
        let tiny = FitScorer {
            ask: ask(1, 1),
            algorithm: Algorithm::BinPack,
        };
        assert!(tiny.score(&node, &NodeUsage::default()).unwrap() < 0.01);
    }

    #[test]
    fn anti_affinity_penalises_collisions_only() {
        let scorer = JobAntiAffinityScorer {
            namespace: "default".into(),
            job_id: "web".into(),
            group: "web".into(),
            desired_count: 4,
        };
        let node = mock::node("n1");
        assert_eq!(scorer.score(&node, &NodeUsage::default()), None);
        let mut usage = NodeUsage::default();
        usage.groups.insert(
            crate::usage::GroupKey {
                namespace: "default".into(),
                job_id: "web".into(),
                group: "web".into(),
            },
            1,
        );
        assert_eq!(scorer.score(&node, &usage), Some(-0.5));
    }

    #[test]
    fn reschedule_penalty_hits_only_the_failed_node() {
        let scorer = ReschedulePenaltyScorer {
            penalty_nodes: vec!["n1".into()],
        };
        assert_eq!(
            scorer.score(&mock::node("n1"), &NodeUsage::default()),
            Some(-1.0)
        );
        assert_eq!(scorer.score(&mock::node("n2"), &NodeUsage::default()), None);
    }

    #[test]
    fn affinity_is_matched_weight_over_total_weight() {
        let scorer = AffinityScorer::new(vec![
            Affinity {
                l_target: "${node.class}".into(),
                r_target: "large".into(),
                operand: "=".into(),
                weight: 75,
            },
            Affinity {
                l_target: "${node.datacenter}".into(),
                r_target: "dc2".into(),
                operand: "=".into(),
                weight: -25,
            },
        ]);
        let mut node = mock::node("n1");
        assert_eq!(scorer.score(&node, &NodeUsage::default()), None);
        node.node_class = "large".into();
        assert_eq!(scorer.score(&node, &NodeUsage::default()), Some(0.75));
        node.datacenter = "dc2".into();
        assert_eq!(scorer.score(&node, &NodeUsage::default()), Some(0.5));
    }

    fn in_dc(name: &str, dc: &str) -> Arc<Node> {
        let mut n = mock::node(name);
        n.datacenter = dc.into();
        Arc::new(n)
    }

    #[test]
    fn spread_with_targets_prefers_values_below_their_share() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.task_groups[0].count = 10;
        job.spreads.push(Spread {
            attribute: "${node.datacenter}".into(),
            weight: 100,
            spread_target: vec![
                SpreadTarget {
                    value: "dc1".into(),
                    percent: 80,
                },
                SpreadTarget {
                    value: "dc2".into(),
                    percent: 20,
                },
            ],
            max_skew: 0,
        });
        let (a, b) = (in_dc("a", "dc1"), in_dc("b", "dc2"));
        let existing = vec![b.clone(), b.clone()]; // dc2 already has its 20%
        let scorer = SpreadScorer::new(
            &job,
            &job.task_groups[0],
            &[a.clone(), b.clone()],
            &existing,
        );
        assert_eq!(scorer.score(&a, &NodeUsage::default()), Some(1.0));
        assert_eq!(scorer.score(&b, &NodeUsage::default()), Some(0.0));
    }

    #[test]
    fn even_spread_prefers_the_least_used_value() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.spreads.push(Spread {
            attribute: "${node.datacenter}".into(),
            weight: 50,
            spread_target: vec![],
            max_skew: 0,
        });
        let (a, b) = (in_dc("a", "dc1"), in_dc("b", "dc2"));
        let mut scorer = SpreadScorer::new(&job, &job.task_groups[0], &[a.clone(), b.clone()], &[]);
        assert_eq!(scorer.score(&a, &NodeUsage::default()), Some(0.0));
        scorer.record(&a);
        assert_eq!(scorer.score(&a, &NodeUsage::default()), Some(-1.0));
        assert_eq!(scorer.score(&b, &NodeUsage::default()), Some(1.0));
    }

    #[test]
    fn combine_averages_given_scores() {
        assert_eq!(combine(&[Some(1.0), None, Some(0.0)]), 0.5);
        assert_eq!(combine(&[None]), 0.0);
    }
}
