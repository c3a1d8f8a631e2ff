//! Hard limits that depend on where the group's allocations already are, so they count as
//! the plan grows: `distinct_property` (at most K allocations per value of an attribute)
//! and Drover's `spread` with `MaxSkew` (the busiest value at most K allocations ahead of
//! the least busy one). A node that would break one is filtered, with the limit as reason.

use crate::constraint::{resolve_target, OP_DISTINCT_PROPERTY};
use api::{Job, Node, TaskGroup};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `distinct_property`: at most `limit` allocations (of the job, or of the group when the
/// constraint sits on the group or a task) per value of `attribute`.
#[derive(Debug, Clone)]
pub struct PropertyLimit {
    attribute: String,
    limit: u32,
    job_scope: bool,
    counts: HashMap<String, u32>,
    reason: String,
}

impl PropertyLimit {
    /// The group's limits, counting the live allocations on `group_nodes` (the group's)
    /// or `job_nodes` (the whole job's, for a job-level constraint): one entry per alloc.
    pub fn for_group(
        job: &Job,
        group: &TaskGroup,
        group_nodes: &[Arc<Node>],
        job_nodes: &[Arc<Node>],
    ) -> Vec<PropertyLimit> {
        let job_level = job.constraints.iter().map(|c| (c, true));
        let group_level = group
            .constraints
            .iter()
            .chain(group.tasks.iter().flat_map(|t| t.constraints.iter()))
            .map(|c| (c, false));
        job_level
            .chain(group_level)
            .filter(|(c, _)| c.operand == OP_DISTINCT_PROPERTY && !c.l_target.is_empty())
            .map(|(c, job_scope)| {
                let limit = c.r_target.trim().parse::<u32>().unwrap_or(1).max(1);
                let mut out = PropertyLimit {
                    attribute: c.l_target.clone(),
                    limit,
                    job_scope,
                    counts: HashMap::new(),
                    reason: format!("distinct_property {} (limit {limit})", c.l_target),
                };
                for node in if job_scope { job_nodes } else { group_nodes } {
                    out.record(node);
                }
                out
            })
            .collect()
    }

    pub fn is_job_scoped(&self) -> bool {
        self.job_scope
    }

    pub fn check(&self, node: &Node) -> Result<(), &str> {
        match resolve_target(&self.attribute, node) {
            Some(v) if self.counts.get(v).copied().unwrap_or(0) < self.limit => Ok(()),
            _ => Err(&self.reason),
        }
    }

    pub fn record(&mut self, node: &Node) {
        if let Some(v) = resolve_target(&self.attribute, node) {
            *self.counts.entry(v.to_string()).or_default() += 1;
        }
    }
}

/// A `spread` with `MaxSkew` > 0: counts per value of its attribute over the feasible
/// candidate nodes, and a histogram of those counts so the least busy value is O(1).
#[derive(Debug, Clone)]
pub struct SkewLimit {
    attribute: String,
    max_skew: u32,
    counts: HashMap<String, u32>,
    /// count -> number of values with that count.
    histogram: BTreeMap<u32, usize>,
    reason: String,
    unset_reason: String,
}

impl SkewLimit {
    /// `values_of` are the feasible candidate nodes (their values can take allocations);
    /// `existing` the nodes the group's live allocations run on (one entry per alloc).
    pub fn for_group(
        job: &Job,
        group: &TaskGroup,
        values_of: &[&Node],
        existing: &[Arc<Node>],
    ) -> Vec<SkewLimit> {
        job.spreads
            .iter()
            .chain(group.spreads.iter())
            .filter(|s| s.max_skew > 0)
            .map(|s| {
                let max_skew = s.max_skew.min(u32::MAX as i64) as u32;
                let mut out = SkewLimit {
                    attribute: s.attribute.clone(),
                    max_skew,
                    counts: HashMap::new(),
                    histogram: BTreeMap::new(),
                    reason: format!("spread {} (max skew {max_skew})", s.attribute),
                    unset_reason: format!("spread {} (attribute not set)", s.attribute),
                };
                for node in values_of {
                    if let Some(v) = resolve_target(&s.attribute, node) {
                        if !out.counts.contains_key(v) {
                            out.counts.insert(v.to_string(), 0);
                            *out.histogram.entry(0).or_default() += 1;
                        }
                    }
                }
                for node in existing {
                    out.record(node);
                }
                out
            })
            .collect()
    }

    pub fn check(&self, node: &Node) -> Result<(), &str> {
        let Some(v) = resolve_target(&self.attribute, node) else {
            return Err(&self.unset_reason);
        };
        let count = self.counts.get(v).copied().unwrap_or(0);
        let least = self
            .histogram
            .keys()
            .next()
            .copied()
            .unwrap_or(0)
            .min(count);
        if count + 1 - least <= self.max_skew {
            Ok(())
        } else {
            Err(&self.reason)
        }
    }

    pub fn record(&mut self, node: &Node) {
        let Some(v) = resolve_target(&self.attribute, node) else {
            return;
        };
        let count = self.counts.entry(v.to_string()).or_insert_with(|| {
            *self.histogram.entry(0).or_default() += 1;
            0
        });
        if let Some(n) = self.histogram.get_mut(count) {
            *n -= 1;
            if *n == 0 {
                self.histogram.remove(count);
            }
        }
        *count += 1;
        *self.histogram.entry(*count).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;

    fn in_rack(name: &str, rack: &str) -> Arc<Node> {
        let mut n = mock::node(name);
        n.meta.insert("rack".into(), rack.into());
        Arc::new(n)
    }

    #[test]
    fn distinct_property_allows_limit_per_value() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.task_groups[0].constraints.push(api::Constraint {
            l_target: "${meta.rack}".into(),
            r_target: "2".into(),
            operand: OP_DISTINCT_PROPERTY.into(),
        });
        let (a, b) = (in_rack("a", "r1"), in_rack("b", "r2"));
        let mut limits =
            PropertyLimit::for_group(&job, &job.task_groups[0], std::slice::from_ref(&a), &[]);
        assert_eq!(limits.len(), 1);
        assert!(!limits[0].is_job_scoped());
        assert!(limits[0].check(&a).is_ok());
        limits[0].record(&a);
        assert_eq!(
            limits[0].check(&a),
            Err("distinct_property ${meta.rack} (limit 2)")
        );
        assert!(limits[0].check(&b).is_ok());
        assert!(limits[0].check(&mock::node("no-rack")).is_err());
    }

    #[test]
    fn max_skew_keeps_values_within_k_of_the_least_busy() {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.spreads.push(api::Spread {
            attribute: "${meta.rack}".into(),
            weight: 100,
            max_skew: 1,
            ..Default::default()
        });
        let (a, b) = (in_rack("a", "r1"), in_rack("b", "r2"));
        let mut limits = SkewLimit::for_group(&job, &job.task_groups[0], &[&a, &b], &[]);
        let skew = &mut limits[0];
        assert!(skew.check(&a).is_ok());
        skew.record(&a);
        assert_eq!(skew.check(&a), Err("spread ${meta.rack} (max skew 1)"));
        assert!(skew.check(&b).is_ok());
        skew.record(&b);
        assert!(skew.check(&a).is_ok());
        assert_eq!(
            skew.check(&mock::node("c")),
            Err("spread ${meta.rack} (attribute not set)")
        );
    }
}
