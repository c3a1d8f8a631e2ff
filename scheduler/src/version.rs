//! Version comparison for the `version` and `semver` constraint operators.
//!
//! A constraint is a comma-separated list of clauses that must all hold, such as
//! `">= 1.2, < 2"`, `"= 1.4.2"` or the pessimistic `"~> 1.2"` (at least 1.2, below 2.0).
//! Versions are dotted numbers with an optional leading `v`, an optional pre-release after
//! `-` (which sorts before the release) and optional build metadata after `+` (ignored).

use std::cmp::Ordering;

/// Equality pads with zeros (`1.4` == `1.4.0`), so it is defined through `Ord`.
#[derive(Debug, Clone)]
pub struct Version {
    parts: Vec<u64>,
    pre: Option<String>,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let s = s.split_once('+').map_or(s, |(v, _build)| v);
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre.to_string())),
            Some(_) => return None,
            None => (s, None),
        };
        let parts = core
            .split('.')
            .map(|p| p.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()?;
        if parts.is_empty() {
            return None;
        }
        Some(Version { parts, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        for i in 0..len {
            let a = self.parts.get(i).copied().unwrap_or(0);
            let b = other.parts.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (&self.pre, &other.pre) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => compare_prerelease(a, b),
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Dot-separated identifiers, numeric ones compared as numbers and below textual ones.
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// Whether `version` satisfies every clause of `constraint`. Unparseable input never does.
pub fn version_matches(constraint: &str, version: &str) -> bool {
    let Some(version) = Version::parse(version) else {
        return false;
    };
    let clauses: Vec<&str> = constraint
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    !clauses.is_empty() && clauses.iter().all(|c| clause_matches(c, &version))
}

fn clause_matches(clause: &str, version: &Version) -> bool {
    // Longest operators first so ">=" is not read as ">".
    const OPERATORS: [&str; 8] = ["~>", ">=", "<=", "!=", "==", ">", "<", "="];
    let (op, rest) = OPERATORS
        .iter()
        .find_map(|op| clause.strip_prefix(op).map(|rest| (*op, rest)))
        .unwrap_or(("=", clause));
    let Some(wanted) = Version::parse(rest) else {
        return false;
    };
    match op {
        "=" | "==" => version == &wanted,
        "!=" => version != &wanted,
        ">" => version > &wanted,
        ">=" => version >= &wanted,
        "<" => version < &wanted,
        "<=" => version <= &wanted,
        "~>" => version >= &wanted && version < &pessimistic_ceiling(&wanted),
        _ => false,
    }
}

/// `~> 1.2` allows anything below 2.0; `~> 1.2.3` anything below 1.3.
fn pessimistic_ceiling(v: &Version) -> Version {
    let mut parts = v.parts.clone();
    if parts.len() >= 2 {
        parts.truncate(parts.len() - 1);
    }
    if let Some(last) = parts.last_mut() {
        *last += 1;
    }
    Version { parts, pre: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_with_several_clauses() {
        assert!(version_matches(">= 1.2, < 2", "1.2.0"));
        assert!(version_matches(">= 1.2, < 2", "v1.9.7"));
        assert!(!version_matches(">= 1.2, < 2", "2.0.0"));
        assert!(!version_matches(">= 1.2, < 2", "1.1.9"));
    }

    #[test]
    fn equality_pads_missing_parts() {
        assert!(version_matches("= 1.4", "1.4.0"));
        assert!(version_matches("1.4.0", "1.4"));
        assert!(version_matches("!= 1.4", "1.5"));
    }

    #[test]
    fn pessimistic_operator() {
        assert!(version_matches("~> 1.2", "1.9"));
        assert!(!version_matches("~> 1.2", "2.0"));
        assert!(version_matches("~> 1.2.3", "1.2.9"));
        assert!(!version_matches("~> 1.2.3", "1.3.0"));
    }

    #[test]
    fn prerelease_sorts_before_release() {
        assert!(version_matches("< 1.0.0", "1.0.0-beta.2"));
        assert!(version_matches("> 1.0.0-beta.2", "1.0.0-beta.10"));
        assert!(version_matches("= 1.0.0", "1.0.0+build5"));
    }

    #[test]
    fn garbage_never_matches() {
        assert!(!version_matches(">= 1.0", "linux"));
        assert!(!version_matches(">= one", "1.0"));
        assert!(!version_matches("", "1.0"));
    }
}
