//! Names with `*` globs, and Nomad's rule for choosing among rules that match a name.

use std::collections::{BTreeMap, BTreeSet};

/// Whether `name` matches `pattern`, where `*` matches any run of characters (also
/// none). Linear in practice: no backtracking blow-up on patterns like `*a*a*a*b`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// How many characters of `name` the globs of `pattern` swallowed: the closest rule is
/// the one with the fewest.
pub fn glob_difference(pattern: &str, name: &str) -> usize {
    let literal = pattern.len() - pattern.bytes().filter(|&b| b == b'*').count();
    name.len().saturating_sub(literal)
}

/// Capability sets by name: exact names, and globs kept apart. Rules with the same name
/// (from several policies) are merged by union.
#[derive(Debug, Clone)]
pub struct GlobTable<C: Ord> {
    exact: BTreeMap<String, BTreeSet<C>>,
    globs: BTreeMap<String, BTreeSet<C>>,
}

impl<C: Ord> Default for GlobTable<C> {
    fn default() -> Self {
        GlobTable {
            exact: BTreeMap::new(),
            globs: BTreeMap::new(),
        }
    }
}

impl<C: Ord + Clone> GlobTable<C> {
    pub fn insert(&mut self, name: &str, caps: impl IntoIterator<Item = C>) {
        let table = if name.contains('*') {
            &mut self.globs
        } else {
            &mut self.exact
        };
        table.entry(name.to_string()).or_default().extend(caps);
    }

    /// The one rule that applies to `name`: its exact rule, else the matching glob with
    /// the smallest difference (ties go to the lexically first pattern, so the answer
    /// never depends on insertion order).
    pub fn lookup(&self, name: &str) -> Option<&BTreeSet<C>> {
        if let Some(caps) = self.exact.get(name) {
            return Some(caps);
        }
        self.globs
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, name))
            .min_by_key(|(pattern, _)| (glob_difference(pattern, name), pattern.as_str()))
            .map(|(_, caps)| caps)
    }

    /// Every rule, exact and glob.
    pub fn all(&self) -> impl Iterator<Item = (&String, &BTreeSet<C>)> {
        self.exact.iter().chain(self.globs.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("prod-*", "prod-web"));
        assert!(glob_match("*-web", "prod-web"));
        assert!(glob_match("p*d*b", "prod-web"));
        assert!(!glob_match("prod-*", "dev-web"));
        assert!(!glob_match("prod", "production"));
        assert!(glob_match("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"));
        assert!(!glob_match("a*a*a*a*b", &"a".repeat(10_000)));
    }

    #[test]
    fn exact_rule_beats_any_glob() {
        let mut t = GlobTable::default();
        t.insert("*", [1]);
        t.insert("prod-web", [2]);
        t.insert("prod-*", [3]);
        assert_eq!(t.lookup("prod-web"), Some(&[2].into()));
    }

    #[test]
    fn closest_glob_wins() {
        // Nomad's documented example: for "production-web", "production-*" (4 characters
        // swallowed) beats "prod-*"-like broader globs and "*".
        let mut t = GlobTable::default();
        t.insert("*", [1]);
        t.insert("production-*", [2]);
        t.insert("*-web", [3]);
        t.insert("prod*", [4]);
        assert_eq!(t.lookup("production-web"), Some(&[2].into()));
        assert_eq!(t.lookup("dev-web"), Some(&[3].into()));
        assert_eq!(t.lookup("other"), Some(&[1].into()));
        assert_eq!(glob_difference("production-*", "production-web"), 3);
    }

    #[test]
    fn ties_break_by_pattern_not_insertion_order() {
        let mut a = GlobTable::default();
        a.insert("a*", [1]);
        a.insert("*b", [2]);
        let mut b = GlobTable::default();
        b.insert("*b", [2]);
        b.insert("a*", [1]);
        assert_eq!(a.lookup("ab"), b.lookup("ab"));
        assert_eq!(a.lookup("ab"), Some(&[2].into()));
    }

    #[test]
    fn same_name_rules_merge() {
        let mut t = GlobTable::default();
        t.insert("x", [1]);
        t.insert("x", [2]);
        assert_eq!(t.lookup("x"), Some(&[1, 2].into()));
        assert_eq!(t.lookup("y"), None);
    }
}
