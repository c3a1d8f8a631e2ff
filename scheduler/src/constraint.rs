//! Constraint evaluation: resolve `${...}` targets against a node, then apply an operator.
//!
//! Shared by the constraint checker (feasibility) and the affinity and spread scorers
//! (ranking), which read node values the same way.

use crate::regex::Regex;
use api::{Constraint, Node};
use std::cmp::Ordering;

pub const OP_DISTINCT_HOSTS: &str = "distinct_hosts";
pub const OP_DISTINCT_PROPERTY: &str = "distinct_property";

/// The value a constraint target names on `node`, or the target itself when it is a literal.
/// `None` when the node does not have the attribute or meta key.
pub fn resolve_target<'a>(target: &'a str, node: &'a Node) -> Option<&'a str> {
    let Some(inner) = target
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    else {
        return Some(target);
    };
    match inner {
        "node.unique.id" => Some(&node.id),
        "node.unique.name" => Some(&node.name),
        "node.datacenter" => Some(&node.datacenter),
        "node.class" => Some(&node.node_class),
        "node.pool" => Some(&node.node_pool),
        _ => {
            if let Some(key) = inner.strip_prefix("attr.") {
                node.attributes.get(key).map(String::as_str)
            } else if let Some(key) = inner.strip_prefix("meta.") {
                node.meta.get(key).map(String::as_str)
            } else {
                None
            }
        }
    }
}

/// Whether a target's value can differ between nodes of one computed class, so a check on
/// it must not be memoised per class.
pub fn target_is_unique(target: &str) -> bool {
    target.contains("unique.")
}

/// Whether `node` satisfies one constraint. `distinct_*` operators need the placements
/// around the node and are checked elsewhere; they pass here.
pub fn constraint_holds(constraint: &Constraint, node: &Node) -> bool {
    let left = resolve_target(&constraint.l_target, node);
    let right = resolve_target(&constraint.r_target, node);
    operator_holds(&constraint.operand, left, right)
}

/// An operator about to be applied to many nodes (a constraint checker or an affinity in
/// one evaluation): a `regexp` whose pattern is a literal is compiled once here instead of
/// once per node. Other operators and interpolated patterns go through [`operator_holds`].
#[derive(Debug, Clone)]
pub struct Operator {
    operand: String,
    /// `Some` for a `regexp` with a literal pattern: the compiled pattern, or `None` when it
    /// does not compile (then it matches nothing, as in [`operator_holds`]).
    literal_pattern: Option<Option<Regex>>,
}

impl Operator {
    pub fn new(operand: &str, r_target: &str) -> Operator {
        let is_literal = !(r_target.starts_with("${") && r_target.ends_with('}'));
        let literal_pattern =
            (operand == "regexp" && is_literal).then(|| Regex::new(r_target).ok());
        Operator {
            operand: operand.to_string(),
            literal_pattern,
        }
    }

    /// [`operator_holds`] with this operator.
    pub fn holds(&self, left: Option<&str>, right: Option<&str>) -> bool {
        match &self.literal_pattern {
            Some(pattern) => {
                left.is_some_and(|l| pattern.as_ref().is_some_and(|re| re.is_match(l)))
            }
            None => operator_holds(&self.operand, left, right),
        }
    }
}

/// Applies `operand` to the resolved left and right values.
pub fn operator_holds(operand: &str, left: Option<&str>, right: Option<&str>) -> bool {
    match operand {
        "" | "=" | "==" | "is" => left.is_some() && left == right,
        "!=" | "not" => left != right,
        ">" | ">=" | "<" | "<=" => {
            let (Some(l), Some(r)) = (left, right) else {
                return false;
            };
            let ord = compare_values(l, r);
            match operand {
                ">" => ord == Ordering::Greater,
                ">=" => ord != Ordering::Less,
                "<" => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            }
        }
        "regexp" => match (left, right) {
            (Some(l), Some(pattern)) => Regex::new(pattern).is_ok_and(|re| re.is_match(l)),
            _ => false,
        },
        "version" | "semver" => match (left, right) {
            (Some(l), Some(r)) => crate::version::version_matches(r, l),
            _ => false,
        },
        "is_set" => left.is_some(),
        "is_not_set" => left.is_none(),
        "set_contains" | "set_contains_all" => match (left, right) {
            (Some(l), Some(r)) => {
                let have = split_set(l);
                split_set(r).iter().all(|want| have.contains(want))
            }
            _ => false,
        },
        "set_contains_any" => match (left, right) {
            (Some(l), Some(r)) => {
                let have = split_set(l);
                split_set(r).iter().any(|want| have.contains(want))
            }
            _ => false,
        },
        OP_DISTINCT_HOSTS | OP_DISTINCT_PROPERTY => true,
        _ => false,
    }
}

fn split_set(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// Numeric when both sides parse as numbers, lexical otherwise.
fn compare_values(l: &str, r: &str) -> Ordering {
    match (l.trim().parse::<f64>(), r.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => l.cmp(r),
    }
}

/// How a constraint reads in `AllocMetric::constraint_filtered`, e.g.
/// `${attr.kernel.name} = linux`.
pub fn describe(constraint: &Constraint) -> String {
    let op = if constraint.operand.is_empty() {
        "="
    } else {
        &constraint.operand
    };
    if constraint.r_target.is_empty() {
        format!("{} {op}", constraint.l_target).trim().to_string()
    } else {
        format!("{} {op} {}", constraint.l_target, constraint.r_target)
            .trim()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        let mut n = crate::mock::node("n1");
        n.attributes.insert("kernel.name".into(), "linux".into());
        n.attributes.insert("cpu.numcores".into(), "8".into());
        n.attributes
            .insert("driver.docker.version".into(), "24.0.7".into());
        n.meta.insert("tags".into(), "ssd, gpu,fast".into());
        n.node_class = "large".into();
        n
    }

    fn holds(l: &str, op: &str, r: &str) -> bool {
        let c = Constraint {
            l_target: l.into(),
            r_target: r.into(),
            operand: op.into(),
        };
        constraint_holds(&c, &node())
    }

    #[test]
    fn targets_resolve_against_the_node() {
        let n = node();
        assert_eq!(resolve_target("${attr.kernel.name}", &n), Some("linux"));
        assert_eq!(resolve_target("${node.unique.name}", &n), Some("n1"));
        assert_eq!(resolve_target("${node.datacenter}", &n), Some("dc1"));
        assert_eq!(resolve_target("${node.class}", &n), Some("large"));
        assert_eq!(resolve_target("${node.unique.id}", &n), Some(n.id.as_str()));
        assert_eq!(resolve_target("${meta.tags}", &n), Some("ssd, gpu,fast"));
        assert_eq!(resolve_target("${meta.missing}", &n), None);
        assert_eq!(resolve_target("literal", &n), Some("literal"));
    }

    #[test]
    fn equality_operators() {
        assert!(holds("${attr.kernel.name}", "=", "linux"));
        assert!(holds("${attr.kernel.name}", "==", "linux"));
        assert!(holds("${attr.kernel.name}", "is", "linux"));
        assert!(holds("${attr.kernel.name}", "", "linux"));
        assert!(!holds("${attr.kernel.name}", "=", "windows"));
        assert!(holds("${attr.kernel.name}", "!=", "windows"));
        assert!(holds("${attr.kernel.name}", "not", "windows"));
        // A missing attribute equals nothing, and differs from everything.
        assert!(!holds("${attr.nope}", "=", "x"));
        assert!(holds("${attr.nope}", "!=", "x"));
    }

    #[test]
    fn ordering_is_numeric_when_both_sides_are_numbers() {
        assert!(holds("${attr.cpu.numcores}", ">", "4"));
        assert!(holds("${attr.cpu.numcores}", ">=", "8"));
        assert!(holds("${attr.cpu.numcores}", "<", "10")); // lexically "8" > "10"
        assert!(holds("${attr.cpu.numcores}", "<=", "8"));
        assert!(holds("${attr.kernel.name}", ">", "abc")); // lexical
        assert!(!holds("${attr.nope}", "<", "5"));
    }

    #[test]
    fn a_compiled_operator_agrees_with_operator_holds() {
        let n = node();
        let cases = [
            ("${attr.kernel.name}", "regexp", "^lin"),
            ("${attr.kernel.name}", "regexp", "^win"),
            ("${attr.kernel.name}", "regexp", "(bad"),
            ("${attr.nope}", "regexp", "^lin"),
            ("linux", "regexp", "${attr.kernel.name}"),
            ("linux", "regexp", "${attr.nope}"),
            ("${attr.cpu.numcores}", ">=", "8"),
            ("${meta.tags}", "set_contains", "gpu"),
        ];
        for (l, op, r) in cases {
            let (left, right) = (resolve_target(l, &n), resolve_target(r, &n));
            assert_eq!(
                Operator::new(op, r).holds(left, right),
                operator_holds(op, left, right),
                "{l} {op} {r}"
            );
        }
    }

    #[test]
    fn regexp_version_and_set_operators() {
        assert!(holds("${attr.kernel.name}", "regexp", "^lin"));
        assert!(!holds("${attr.kernel.name}", "regexp", "^win"));
        assert!(!holds("${attr.kernel.name}", "regexp", "(bad"));
        assert!(holds(
            "${attr.driver.docker.version}",
            "version",
            ">= 20, < 25"
        ));
        assert!(!holds("${attr.driver.docker.version}", "version", "< 24"));
        assert!(holds("${meta.tags}", "set_contains", "gpu,ssd"));
        assert!(!holds("${meta.tags}", "set_contains", "gpu,hdd"));
        assert!(holds("${meta.tags}", "set_contains_any", "hdd,fast"));
        assert!(!holds("${meta.tags}", "set_contains_any", "hdd"));
    }

    #[test]
    fn presence_operators() {
        assert!(holds("${attr.kernel.name}", "is_set", ""));
        assert!(!holds("${attr.nope}", "is_set", ""));
        assert!(holds("${attr.nope}", "is_not_set", ""));
        assert!(!holds("${attr.kernel.name}", "unknown_op", "linux"));
    }

    #[test]
    fn description_reads_like_nomads() {
        let c = Constraint {
            l_target: "${attr.kernel.name}".into(),
            r_target: "linux".into(),
            operand: "=".into(),
        };
        assert_eq!(describe(&c), "${attr.kernel.name} = linux");
    }
}
