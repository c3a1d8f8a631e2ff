//! Placement failures in sentences: "3 nodes exhausted memory", "2 nodes filtered by
//! constraint ${attr.kernel.name} = linux", "1 node is draining". Built from the counts in
//! an [`api::AllocMetric`], most frequent reason first, so the CLI, the UI and the server's
//! logs all say the same thing.

use api::AllocMetric;
use std::collections::BTreeMap;

/// One sentence per reason, most nodes first (ties in name order), then how many nodes
/// were available and how many further placements failed the same way.
pub fn explain(metric: &AllocMetric) -> Vec<String> {
    let mut reasons: Vec<(u64, String)> = Vec::new();
    for (reason, &n) in &metric.nodes_excluded {
        reasons.push((n, format!("{} {} {reason}", nodes(n), is_are(n))));
    }
    for (key, &n) in &metric.constraint_filtered {
        reasons.push((n, filtered_sentence(key, n)));
    }
    for (dimension, &n) in &metric.dimension_exhausted {
        let sentence = match dimension.as_str() {
            "network: reserved port collision" => {
                format!(
                    "{} {} a reserved port already in use",
                    nodes(n),
                    has_have(n)
                )
            }
            crate::ports::DIMENSION_NO_DYNAMIC_PORT => {
                format!("{} {} no free dynamic port left", nodes(n), has_have(n))
            }
            d => format!("{} exhausted {d}", nodes(n)),
        };
        reasons.push((n, sentence));
    }
    reasons.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out: Vec<String> = reasons.into_iter().map(|(_, s)| s).collect();

    if let Some(classes) = by_class("filtered", &metric.class_filtered) {
        out.push(classes);
    }
    if let Some(classes) = by_class("exhausted", &metric.class_exhausted) {
        out.push(classes);
    }
    let available: u64 = metric.nodes_available.values().sum();
    if available == 0 {
        out.push("no node is ready and eligible in the job's datacenters".to_string());
    } else if metric.nodes_evaluated > 0 {
        out.push(format!(
            "{} of {} evaluated",
            nodes(metric.nodes_evaluated),
            available
        ));
    }
    if metric.coalesced_failures > 0 {
        let n = metric.coalesced_failures;
        out.push(format!(
            "{n} more placement{} of this group failed the same way",
            if n == 1 { "" } else { "s" }
        ));
    }
    out
}

fn filtered_sentence(key: &str, n: u64) -> String {
    match key {
        "missing drivers" => format!("{} {} missing a healthy driver", nodes(n), is_are(n)),
        crate::constraint::OP_DISTINCT_HOSTS => format!(
            "{} filtered by distinct_hosts (already running an allocation of this job)",
            nodes(n)
        ),
        k if k.starts_with("distinct_property") || k.starts_with("spread ") => {
            format!("{} filtered by {k}", nodes(n))
        }
        k => format!("{} filtered by constraint {k}", nodes(n)),
    }
}

fn by_class(what: &str, classes: &BTreeMap<String, u64>) -> Option<String> {
    if classes.is_empty() {
        return None;
    }
    let list: Vec<String> = classes.iter().map(|(c, n)| format!("{c} ({n})")).collect();
    Some(format!("{what} nodes by class: {}", list.join(", ")))
}

fn nodes(n: u64) -> String {
    if n == 1 {
        "1 node".to_string()
    } else {
        format!("{n} nodes")
    }
}

fn is_are(n: u64) -> &'static str {
    if n == 1 {
        "is"
    } else {
        "are"
    }
}

fn has_have(n: u64) -> &'static str {
    if n == 1 {
        "has"
    } else {
        "have"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_each_reason_with_its_count_most_frequent_first() {
        let metric = AllocMetric {
            nodes_evaluated: 5,
            nodes_available: [("dc1".to_string(), 5)].into(),
            constraint_filtered: [
                ("${attr.kernel.name} = linux".to_string(), 2),
                ("missing drivers".to_string(), 1),
            ]
            .into(),
            dimension_exhausted: [("memory".to_string(), 3)].into(),
            nodes_excluded: [("draining".to_string(), 1)].into(),
            class_filtered: [("large".to_string(), 2)].into(),
            coalesced_failures: 4,
            ..Default::default()
        };
        assert_eq!(
            explain(&metric),
            [
                "3 nodes exhausted memory",
                "2 nodes filtered by constraint ${attr.kernel.name} = linux",
                "1 node is draining",
                "1 node is missing a healthy driver",
                "filtered nodes by class: large (2)",
                "5 nodes of 5 evaluated",
                "4 more placements of this group failed the same way",
            ]
        );
    }

    #[test]
    fn explains_an_empty_cluster_and_limits() {
        let metric = AllocMetric {
            nodes_excluded: [("down".to_string(), 2)].into(),
            ..Default::default()
        };
        assert_eq!(
            explain(&metric),
            [
                "2 nodes are down",
                "no node is ready and eligible in the job's datacenters"
            ]
        );
        assert_eq!(
            filtered_sentence("spread ${meta.rack} (max skew 1)", 3),
            "3 nodes filtered by spread ${meta.rack} (max skew 1)"
        );
    }
}
