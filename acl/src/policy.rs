//! Parsing a policy document into [`Policy`]: strict, positioned, never panicking.
//!
//! Every unknown block or attribute, wrong label count, wrong type, unknown capability or
//! disposition a rule does not accept is an error naming its `line:column`; all errors of
//! a document are reported together. Coarse `policy` values are expanded into capabilities
//! here, so the decision engine only ever sees capability sets.

use crate::capability::{
    dispositions_of, expand_host_volume_policy, expand_namespace_policy, expand_node_pool_policy,
    expand_variable_capabilities, imply_namespace_capabilities, Disposition, HostVolumeCapability,
    NamespaceCapability, NodePoolCapability, VariableCapability,
};
use crate::syntax::{self, Diagnostic, Item, Kind, Label, SourceMap, Value};
use std::collections::BTreeSet;
use std::fmt;

/// A parsed policy: its rules with coarse policies already expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub namespaces: Vec<NamespaceRule>,
    pub host_volumes: Vec<GlobRule<HostVolumeCapability>>,
    pub node_pools: Vec<GlobRule<NodePoolCapability>>,
    pub node: Option<Disposition>,
    pub agent: Option<Disposition>,
    pub operator: Option<Disposition>,
    pub quota: Option<Disposition>,
    pub plugin: Option<Disposition>,
}

/// `namespace "<glob>" { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRule {
    /// The namespace or glob; `default` when the block has no label.
    pub name: String,
    pub policy: Option<Disposition>,
    /// The `policy` expansion and the listed capabilities, together.
    pub capabilities: BTreeSet<NamespaceCapability>,
    pub variables: Vec<VariableRule>,
}

/// `path "<glob>" { capabilities = [...] }` inside `variables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableRule {
    pub path: String,
    pub capabilities: BTreeSet<VariableCapability>,
}

/// A labelled rule over names with globs (`host_volume`, `node_pool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobRule<C: Ord> {
    pub name: String,
    pub policy: Option<Disposition>,
    pub capabilities: BTreeSet<C>,
}

/// Every problem found in a policy, in source order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError(pub Vec<Diagnostic>);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl Policy {
    /// Parses a policy written in HCL or in HCL's JSON form (a text whose first
    /// non-blank character is `{` is JSON, as Nomad decides).
    pub fn parse(src: &str) -> Result<Policy, PolicyError> {
        if src.trim().is_empty() {
            return Err(PolicyError(vec![Diagnostic {
                line: 1,
                column: 1,
                message: "policy has no rules".into(),
            }]));
        }
        let items = if src.trim_start().starts_with('{') {
            syntax::parse_json(src, shape)
        } else {
            syntax::parse_hcl(src)
        }
        .map_err(|d| PolicyError(vec![d]))?;
        let sm = SourceMap::new(src);
        let mut c = Checker {
            sm: &sm,
            errors: Vec::new(),
        };
        let policy = c.top(&items);
        if c.errors.is_empty() {
            Ok(policy)
        } else {
            c.errors.sort_by_key(|d| (d.line, d.column));
            Err(PolicyError(c.errors))
        }
    }
}

/// The block structure of the language: labels per block, by parent.
fn shape(parent: &str, name: &str) -> Option<usize> {
    match (parent, name) {
        ("", "namespace" | "host_volume" | "node_pool") => Some(1),
        ("", "node" | "agent" | "operator" | "quota" | "plugin") => Some(0),
        ("namespace", "variables") => Some(0),
        ("variables", "path") => Some(1),
        _ => None,
    }
}

const TOP_BLOCKS: &[&str] = &[
    "namespace",
    "host_volume",
    "node_pool",
    "node",
    "agent",
    "operator",
    "quota",
    "plugin",
];

struct Checker<'a> {
    sm: &'a SourceMap<'a>,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, at: usize, message: impl Into<String>) {
        self.errors.push(self.sm.at(at, message));
    }

    fn top(&mut self, items: &[Item]) -> Policy {
        let mut p = Policy::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in items {
            let Kind::Block { labels, body } = &item.kind else {
                self.error(
                    item.span.start,
                    format!(
                        "unknown attribute {} at the top of a policy{}",
                        q(&item.name),
                        expected(TOP_BLOCKS)
                    ),
                );
                continue;
            };
            let name = item.name.as_str();
            match name {
                "namespace" => {
                    // An unlabelled namespace rule applies to "default", as in Nomad.
                    if labels.len() > 1 {
                        self.labels(item, labels, 1);
                        continue;
                    }
                    let label = labels.first();
                    let ns = label.map_or("default", |l| l.text.as_str());
                    if !valid_glob_name(ns, false) {
                        self.error(
                            label.map_or(item.span.start, |l| l.span.start),
                            format!(
                                "invalid namespace {}: use 1 to 128 letters, digits, dashes or '*'",
                                q(ns)
                            ),
                        );
                    }
                    let rule = self.namespace(ns, body);
                    p.namespaces.push(rule);
                }
                "host_volume" | "node_pool" => {
                    if !self.labels(item, labels, 1) {
                        continue;
                    }
                    let label = &labels[0];
                    if !valid_glob_name(&label.text, true) {
                        self.error(
                            label.span.start,
                            format!(
                                "invalid {name} name {}: use 1 to 128 letters, digits, dashes, underscores or '*'",
                                q(&label.text)
                            ),
                        );
                    }
                    if name == "host_volume" {
                        let (policy, caps) = self.glob_rule(
                            name,
                            body,
                            HostVolumeCapability::parse,
                            &HostVolumeCapability::names(),
                            expand_host_volume_policy,
                        );
                        p.host_volumes.push(GlobRule {
                            name: label.text.clone(),
                            policy,
                            capabilities: caps,
                        });
                    } else {
                        let (policy, caps) = self.glob_rule(
                            name,
                            body,
                            NodePoolCapability::parse,
                            &NodePoolCapability::names(),
                            expand_node_pool_policy,
                        );
                        p.node_pools.push(GlobRule {
                            name: label.text.clone(),
                            policy,
                            capabilities: caps,
                        });
                    }
                }
                "node" | "agent" | "operator" | "quota" | "plugin" => {
                    if !self.labels(item, labels, 0) {
                        continue;
                    }
                    if seen.contains(&name) {
                        self.error(
                            item.span.start,
                            format!("the {name} rule is given more than once"),
                        );
                        continue;
                    }
                    seen.push(name);
                    let d = self.singleton(name, body);
                    let slot = match name {
                        "node" => &mut p.node,
                        "agent" => &mut p.agent,
                        "operator" => &mut p.operator,
                        "quota" => &mut p.quota,
                        _ => &mut p.plugin,
                    };
                    *slot = d;
                }
                other => self.error(
                    item.span.start,
                    format!("unknown rule {}{}", q(other), expected(TOP_BLOCKS)),
                ),
            }
        }
        p
    }

    /// Checks that a block has `want` labels; reports and returns false otherwise.
    fn labels(&mut self, item: &Item, labels: &[Label], want: usize) -> bool {
        if labels.len() == want {
            return true;
        }
        let at = labels.get(want).map_or(item.span.start, |l| l.span.start);
        let message = match want {
            0 => format!("the {} rule takes no label", item.name),
            _ => format!(
                "the {} rule takes exactly one label: {} \"<name>\" {{ ... }}",
                item.name, item.name
            ),
        };
        self.error(at, message);
        false
    }

    fn namespace(&mut self, ns: &str, body: &[Item]) -> NamespaceRule {
        let mut rule = NamespaceRule {
            name: ns.to_string(),
            policy: None,
            capabilities: BTreeSet::new(),
            variables: Vec::new(),
        };
        let mut seen_vars = false;
        let mut seen: Vec<&str> = Vec::new();
        for item in body {
            match (&item.kind, item.name.as_str()) {
                (Kind::Attr(v), "policy") => {
                    if self.once(&mut seen, item) {
                        rule.policy = self.disposition("namespace", v);
                    }
                }
                (Kind::Attr(v), "capabilities") => {
                    if self.once(&mut seen, item) {
                        rule.capabilities = self.capabilities(
                            "namespace",
                            v,
                            NamespaceCapability::parse,
                            &NamespaceCapability::names(),
                        );
                    }
                }
                (Kind::Block { labels, body }, "variables") => {
                    if !self.labels(item, labels, 0) {
                        continue;
                    }
                    if seen_vars {
                        self.error(
                            item.span.start,
                            "the variables block is given more than once in this namespace rule",
                        );
                        continue;
                    }
                    seen_vars = true;
                    rule.variables = self.variables(ns, item.span.start, body);
                }
                _ => self.unknown(item, "namespace", &["policy", "capabilities", "variables"]),
            }
        }
        if let Some(d) = rule.policy {
            rule.capabilities.extend(expand_namespace_policy(d));
        }
        imply_namespace_capabilities(&mut rule.capabilities);
        rule
    }

    fn variables(&mut self, ns: &str, at: usize, body: &[Item]) -> Vec<VariableRule> {
        let mut out = Vec::new();
        for item in body {
            let (Kind::Block { labels, body }, "path") = (&item.kind, item.name.as_str()) else {
                self.unknown(item, "variables", &["path"]);
                continue;
            };
            if !self.labels(item, labels, 1) {
                continue;
            }
            let path = &labels[0];
            if path.text.is_empty() {
                self.error(path.span.start, "a variable path cannot be empty");
            } else if path.text.starts_with('/') {
                self.error(
                    path.span.start,
                    format!(
                        "invalid variable path {}: paths cannot start with '/'",
                        q(&path.text)
                    ),
                );
            }
            let mut caps = BTreeSet::new();
            let mut seen: Vec<&str> = Vec::new();
            for inner in body {
                match (&inner.kind, inner.name.as_str()) {
                    (Kind::Attr(v), "capabilities") => {
                        if self.once(&mut seen, inner) {
                            caps = self.capabilities(
                                "variables path",
                                v,
                                VariableCapability::parse,
                                &VariableCapability::names(),
                            );
                        }
                    }
                    _ => self.unknown(inner, "path", &["capabilities"]),
                }
            }
            out.push(VariableRule {
                path: path.text.clone(),
                capabilities: expand_variable_capabilities(caps),
            });
        }
        if out.is_empty() && !body.iter().any(|i| i.name == "path") {
            self.error(
                at,
                format!(
                    "the variables block of namespace {} has no path rules",
                    q(ns)
                ),
            );
        }
        out
    }

    fn glob_rule<C: Ord + Copy>(
        &mut self,
        rule: &str,
        body: &[Item],
        parse: fn(&str) -> Option<C>,
        names: &[&str],
        expand: fn(Disposition) -> BTreeSet<C>,
    ) -> (Option<Disposition>, BTreeSet<C>) {
        let mut policy = None;
        let mut caps = BTreeSet::new();
        let mut seen: Vec<&str> = Vec::new();
        for item in body {
            match (&item.kind, item.name.as_str()) {
                (Kind::Attr(v), "policy") => {
                    if self.once(&mut seen, item) {
                        policy = self.disposition(rule, v);
                    }
                }
                (Kind::Attr(v), "capabilities") => {
                    if self.once(&mut seen, item) {
                        caps = self.capabilities(rule, v, parse, names);
                    }
                }
                _ => self.unknown(item, rule, &["policy", "capabilities"]),
            }
        }
        if let Some(d) = policy {
            caps.extend(expand(d));
        }
        (policy, caps)
    }

    fn singleton(&mut self, rule: &str, body: &[Item]) -> Option<Disposition> {
        let mut policy = None;
        let mut seen: Vec<&str> = Vec::new();
        for item in body {
            match (&item.kind, item.name.as_str()) {
                (Kind::Attr(v), "policy") => {
                    if self.once(&mut seen, item) {
                        policy = self.disposition(rule, v);
                    }
                }
                _ => self.unknown(item, rule, &["policy"]),
            }
        }
        policy
    }

    /// True the first time an attribute appears in a block; an error after that.
    fn once<'i>(&mut self, seen: &mut Vec<&'i str>, item: &'i Item) -> bool {
        if seen.contains(&item.name.as_str()) {
            self.error(
                item.span.start,
                format!("attribute {} is set more than once", q(&item.name)),
            );
            false
        } else {
            seen.push(&item.name);
            true
        }
    }

    fn unknown(&mut self, item: &Item, rule: &str, names: &[&str]) {
        let what = match item.kind {
            Kind::Attr(_) => "attribute",
            Kind::Block { .. } => "block",
        };
        self.error(
            item.span.start,
            format!(
                "unknown {what} {} in the {rule} rule{}",
                q(&item.name),
                expected(names)
            ),
        );
    }

    fn disposition(&mut self, rule: &str, v: &Value) -> Option<Disposition> {
        let allowed = dispositions_of(rule);
        let Value::Str(s, span) = v else {
            self.error(
                v.start(),
                format!("policy must be a string, found {}", v.type_name()),
            );
            return None;
        };
        match Disposition::parse(s).filter(|d| allowed.contains(d)) {
            Some(d) => Some(d),
            None => {
                let names: Vec<&str> = allowed.iter().map(|d| d.as_str()).collect();
                self.error(
                    span.start,
                    format!(
                        "invalid policy {} for the {rule} rule{}",
                        q(s),
                        expected(&names)
                    ),
                );
                None
            }
        }
    }

    fn capabilities<C: Ord>(
        &mut self,
        rule: &str,
        v: &Value,
        parse: fn(&str) -> Option<C>,
        names: &[&str],
    ) -> BTreeSet<C> {
        let mut out = BTreeSet::new();
        let Value::List(items, _) = v else {
            self.error(
                v.start(),
                format!(
                    "capabilities must be a list of strings, found {}",
                    v.type_name()
                ),
            );
            return out;
        };
        for item in items {
            match item {
                Value::Str(s, span) => match parse(s) {
                    Some(c) => {
                        out.insert(c);
                    }
                    None => self.error(
                        span.start,
                        format!(
                            "unknown capability {} in the {rule} rule{}",
                            q(s),
                            expected(names)
                        ),
                    ),
                },
                other => self.error(
                    other.start(),
                    format!(
                        "each capability must be a string, found {}",
                        other.type_name()
                    ),
                ),
            }
        }
        out
    }
}

/// A name from the policy, quoted and escaped for a message, and cut short when long.
fn q(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

fn expected(names: &[&str]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    format!(" (expected one of: {})", sorted.join(", "))
}

/// Nomad's rule for names in namespace, host volume and node pool labels: 1 to 128 of
/// letters, digits, `-` and the glob `*` (and `_` where `underscore`).
fn valid_glob_name(name: &str, underscore: bool) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'*' || (underscore && b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use NamespaceCapability as N;

    fn err(src: &str) -> Vec<String> {
        Policy::parse(src)
            .expect_err("policy should be refused")
            .0
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn documented_example_policy_parses() {
        let p = Policy::parse(
            r#"
# a namespace rule for "foo"
namespace "foo" {
  policy       = "write"
  capabilities = ["alloc-node-exec"]
  variables {
    path "project/*" {
      capabilities = ["read", "write"]
    }
  }
}
namespace "*" { policy = "read" }
node { policy = "read" }
agent { policy = "read" }
operator { policy = "write" }
quota { policy = "read" }
host_volume "prod-*" { policy = "write" }
plugin { policy = "list" }
node_pool "dev" { capabilities = ["read"] }
"#,
        )
        .unwrap();
        assert_eq!(p.namespaces.len(), 2);
        let foo = &p.namespaces[0];
        assert_eq!(foo.policy, Some(Disposition::Write));
        assert!(foo.capabilities.contains(&N::SubmitJob));
        assert!(foo.capabilities.contains(&N::AllocNodeExec));
        assert_eq!(foo.variables[0].path, "project/*");
        assert_eq!(
            foo.variables[0].capabilities,
            [
                VariableCapability::List,
                VariableCapability::Read,
                VariableCapability::Write
            ]
            .into()
        );
        assert_eq!(p.node, Some(Disposition::Read));
        assert_eq!(p.operator, Some(Disposition::Write));
        assert_eq!(p.plugin, Some(Disposition::List));
        assert_eq!(
            p.host_volumes[0].capabilities,
            [
                HostVolumeCapability::MountReadonly,
                HostVolumeCapability::MountReadwrite
            ]
            .into()
        );
        assert_eq!(p.node_pools[0].name, "dev");
    }

    #[test]
    fn json_form_parses_to_the_same_policy() {
        let hcl = Policy::parse(
            r#"namespace "default" { policy = "read" }
namespace "ops" { capabilities = ["read-logs"] }
node { policy = "write" }"#,
        )
        .unwrap();
        let json = Policy::parse(
            r#"{
  "namespace": {
    "default": {"policy": "read"},
    "ops": {"capabilities": ["read-logs"]}
  },
  "node": {"policy": "write"}
}"#,
        )
        .unwrap();
        assert_eq!(hcl, json);
        let listed = Policy::parse(r#"{"namespace": [{"default": {"policy": "read"}}]}"#).unwrap();
        assert_eq!(listed.namespaces[0].name, "default");
    }

    #[test]
    fn unlabelled_namespace_rule_is_default() {
        let p = Policy::parse(r#"namespace { policy = "read" }"#).unwrap();
        assert_eq!(p.namespaces[0].name, "default");
    }

    #[test]
    fn unknown_block_is_an_error_with_its_position() {
        assert_eq!(
            err("node { policy = \"read\" }\n  nodes { policy = \"read\" }"),
            vec!["2:3: unknown rule \"nodes\" (expected one of: agent, host_volume, namespace, node, node_pool, operator, plugin, quota)"]
        );
    }

    #[test]
    fn unknown_attribute_is_an_error_with_its_position() {
        let e = err("namespace \"a\" {\n  policy = \"read\"\n  polcy = \"write\"\n}");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("3:3: unknown attribute \"polcy\" in the namespace rule"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_capability_is_an_error_at_the_capability() {
        let e = err("namespace \"a\" {\n  capabilities = [\"read-job\", \"submit-jobs\"]\n}");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("2:31: unknown capability \"submit-jobs\""),
            "{e:?}"
        );
    }

    #[test]
    fn dispositions_are_checked_per_rule() {
        let e = err("namespace \"a\" { policy = \"list\" }");
        assert!(
            e[0].starts_with("1:26: invalid policy \"list\" for the namespace rule"),
            "{e:?}"
        );
        let e = err("node {\n policy = \"scale\"\n}");
        assert!(
            e[0].starts_with("2:11: invalid policy \"scale\" for the node rule"),
            "{e:?}"
        );
        let e = err("plugin { policy = \"write\" }");
        assert!(e[0].contains("expected one of: deny, list, read"), "{e:?}");
        assert!(Policy::parse("plugin { policy = \"list\" }").is_ok());
        assert!(Policy::parse("namespace \"x\" { policy = \"scale\" }").is_ok());
    }

    #[test]
    fn wrong_types_and_labels_are_errors() {
        let e = err("node { policy = 3 }");
        assert_eq!(e, vec!["1:17: policy must be a string, found a number"]);
        let e = err("namespace \"a\" { capabilities = \"read-job\" }");
        assert!(
            e[0].starts_with("1:32: capabilities must be a list"),
            "{e:?}"
        );
        let e = err("node \"x\" { policy = \"read\" }");
        assert_eq!(e, vec!["1:6: the node rule takes no label"]);
        let e = err("host_volume { policy = \"read\" }");
        assert!(
            e[0].starts_with("1:1: the host_volume rule takes exactly one label"),
            "{e:?}"
        );
        let e = err("policy = \"read\"");
        assert!(
            e[0].starts_with("1:1: unknown attribute \"policy\" at the top"),
            "{e:?}"
        );
        let e = err("namespace \"a\" { policy = \"${x}\" }");
        assert!(e[0].contains("a template"), "{e:?}");
    }

    #[test]
    fn names_and_paths_are_validated() {
        let e = err("namespace \"bad name\" { policy = \"read\" }");
        assert!(
            e[0].starts_with("1:11: invalid namespace \"bad name\""),
            "{e:?}"
        );
        let e = err(
            "namespace \"a\" {\n  variables {\n    path \"/abs\" { capabilities = [\"read\"] }\n  }\n}",
        );
        assert!(
            e[0].starts_with("3:10: invalid variable path \"/abs\""),
            "{e:?}"
        );
        let e = err("namespace \"a\" {\n  variables {}\n}");
        assert!(
            e[0].starts_with("2:3: the variables block of namespace \"a\" has no path rules"),
            "{e:?}"
        );
        let e = err(
            "namespace \"a\" {\n  variables {\n    path \"p\" { capabilities = [\"exec\"] }\n  }\n}",
        );
        assert!(
            e[0].contains("unknown capability \"exec\" in the variables path rule"),
            "{e:?}"
        );
    }

    #[test]
    fn repeated_attributes_and_singletons_are_errors() {
        let e = err("node {\n policy = \"read\"\n policy = \"write\"\n}");
        assert!(e.iter().any(|e| e.starts_with("3:2:")), "{e:?}");
        let e = err("agent { policy = \"read\" }\nagent { policy = \"write\" }");
        assert_eq!(e, vec!["2:1: the agent rule is given more than once"]);
    }

    #[test]
    fn every_error_in_a_document_is_reported_in_order() {
        let e = err("nod {}\nnamespace \"a\" { policy = \"rw\" }\nagent { x = 1 }");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("1:1:"));
        assert!(e[1].starts_with("2:26:"));
        assert!(e[2].starts_with("3:9:"));
    }

    #[test]
    fn syntax_and_json_errors_are_positioned() {
        let e = err("namespace \"a\" {\n  policy = \n}");
        assert!(e[0].starts_with("2:"), "{e:?}");
        assert!(e[0].contains("syntax error"), "{e:?}");
        let e = err("{\"namespace\": {\"a\": {\"policy\": \"read\",}}}");
        assert!(e[0].starts_with("1:"), "{e:?}");
        let e = err("{\"namespace\": {\"a\": {\"policy\": \"nope\"}}}");
        assert!(e[0].starts_with("1:32: invalid policy \"nope\""), "{e:?}");
        let e = err("{\"nodes\": {}}");
        assert!(
            e[0].starts_with("1:2: unknown attribute \"nodes\""),
            "{e:?}"
        );
        assert_eq!(err("  \n"), vec!["1:1: policy has no rules"]);
    }

    #[test]
    fn messages_escape_and_shorten_what_they_quote() {
        let e = err(&format!(
            "namespace \"{}\" {{ policy = \"read\" }}",
            "x".repeat(5_000)
        ));
        assert!(e[0].len() < 200 && e[0].contains("\"..."), "{e:?}");
        let e = err("node { policy = \"\\u001b[31mred\" }");
        assert!(!e[0].contains('\u{1b}'), "{e:?}");
    }

    #[test]
    fn host_volume_write_capability_implies_the_others() {
        let p =
            Policy::parse("namespace \"a\" { capabilities = [\"host-volume-write\"] }").unwrap();
        assert!(p.namespaces[0].capabilities.contains(&N::HostVolumeDelete));
        assert!(p.namespaces[0]
            .capabilities
            .contains(&N::HostVolumeRegister));
    }
}
