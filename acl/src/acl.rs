//! The decision engine: the rules of a token's policies merged into one [`Acl`] that
//! answers "may this token do X?".
//!
//! Rules with the same name (across policies) are merged by union; the one rule that
//! applies to a namespace, host volume, node pool or variable path is its exact rule, else
//! the closest matching glob (see `glob.rs`); `deny` in that rule refuses everything.
//! Singleton rules (`node`, `agent`, `operator`, `quota`, `plugin`) merge to the largest
//! grant unless one of them says `deny`.

use crate::capability::{
    max_privilege, Disposition, HostVolumeCapability, NamespaceCapability, NodePoolCapability,
    VariableCapability,
};
use crate::glob::{glob_difference, glob_match, GlobTable};
use crate::policy::Policy;
use std::collections::{BTreeMap, BTreeSet};

/// What a token may do, built once from its policies and asked many times.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    management: bool,
    namespaces: GlobTable<NamespaceCapability>,
    host_volumes: GlobTable<HostVolumeCapability>,
    node_pools: GlobTable<NodePoolCapability>,
    /// Keyed by (namespace pattern, path pattern).
    variables: BTreeMap<(String, String), BTreeSet<VariableCapability>>,
    node: Option<Disposition>,
    agent: Option<Disposition>,
    operator: Option<Disposition>,
    quota: Option<Disposition>,
    plugin: Option<Disposition>,
}

impl Acl {
    /// A management token's ACL: everything is allowed.
    pub fn management() -> Acl {
        Acl {
            management: true,
            ..Acl::default()
        }
    }

    /// An ACL that allows nothing (no policies).
    pub fn deny_all() -> Acl {
        Acl::default()
    }

    /// The ACL of a client token holding `policies` (its own and its roles').
    pub fn from_policies<'p>(policies: impl IntoIterator<Item = &'p Policy>) -> Acl {
        let mut acl = Acl::default();
        for p in policies {
            for ns in &p.namespaces {
                acl.namespaces
                    .insert(&ns.name, ns.capabilities.iter().copied());
                for v in &ns.variables {
                    acl.variables
                        .entry((ns.name.clone(), v.path.clone()))
                        .or_default()
                        .extend(v.capabilities.iter().copied());
                }
            }
            for hv in &p.host_volumes {
                acl.host_volumes
                    .insert(&hv.name, hv.capabilities.iter().copied());
            }
            for np in &p.node_pools {
                acl.node_pools
                    .insert(&np.name, np.capabilities.iter().copied());
            }
            acl.node = max_privilege(acl.node, p.node);
            acl.agent = max_privilege(acl.agent, p.agent);
            acl.operator = max_privilege(acl.operator, p.operator);
            acl.quota = max_privilege(acl.quota, p.quota);
            acl.plugin = max_privilege(acl.plugin, p.plugin);
        }
        acl
    }

    pub fn is_management(&self) -> bool {
        self.management
    }

    /// May the token use `cap` in namespace `ns`? For `ns == "*"` (a request across all
    /// namespaces) the answer is whether some rule grants it; the server must then
    /// filter each object by its own namespace.
    pub fn allow_namespace_operation(&self, ns: &str, cap: NamespaceCapability) -> bool {
        if self.management {
            return true;
        }
        if ns == "*" {
            return self.namespaces.all().any(|(_, caps)| {
                !caps.contains(&NamespaceCapability::Deny) && caps.contains(&cap)
            });
        }
        match self.namespaces.lookup(ns) {
            Some(caps) => !caps.contains(&NamespaceCapability::Deny) && caps.contains(&cap),
            None => false,
        }
    }

    /// May the token do anything at all in `ns`? Used to filter namespace lists and
    /// `namespace=*` results, and to read a namespace's own description.
    pub fn allow_namespace(&self, ns: &str) -> bool {
        if self.management {
            return true;
        }
        let usable = |caps: &BTreeSet<NamespaceCapability>| {
            !caps.is_empty() && !caps.contains(&NamespaceCapability::Deny)
        };
        if ns == "*" {
            return self.namespaces.all().any(|(_, caps)| usable(caps));
        }
        self.namespaces.lookup(ns).is_some_and(usable)
    }

    pub fn allow_host_volume_operation(&self, name: &str, cap: HostVolumeCapability) -> bool {
        if self.management {
            return true;
        }
        self.host_volumes
            .lookup(name)
            .is_some_and(|caps| !caps.contains(&HostVolumeCapability::Deny) && caps.contains(&cap))
    }

    /// May the token use the host volume `name` in any way?
    pub fn allow_host_volume(&self, name: &str) -> bool {
        if self.management {
            return true;
        }
        self.host_volumes
            .lookup(name)
            .is_some_and(|caps| !caps.is_empty() && !caps.contains(&HostVolumeCapability::Deny))
    }

    pub fn allow_node_pool_operation(&self, pool: &str, cap: NodePoolCapability) -> bool {
        if self.management {
            return true;
        }
        self.node_pools
            .lookup(pool)
            .is_some_and(|caps| !caps.contains(&NodePoolCapability::Deny) && caps.contains(&cap))
    }

    /// May the token do `op` on the variable at `path` in namespace `ns`? The rule
    /// chosen is the exact (namespace, path) pair, else the matching pair whose globs
    /// swallowed the fewest characters in total.
    pub fn allow_variable_operation(&self, ns: &str, path: &str, op: VariableCapability) -> bool {
        if self.management {
            return true;
        }
        self.variable_rule(ns, path)
            .is_some_and(|caps| !caps.contains(&VariableCapability::Deny) && caps.contains(&op))
    }

    /// May the token see any variable in `ns`? (The list route then filters each path
    /// with [`Acl::allow_variable_operation`] and `list`.)
    pub fn allow_variable_search(&self, ns: &str) -> bool {
        if self.management {
            return true;
        }
        self.variables.iter().any(|((ns_pat, _), caps)| {
            (ns == "*" || glob_match(ns_pat, ns))
                && !caps.is_empty()
                && !caps.contains(&VariableCapability::Deny)
        })
    }

    fn variable_rule(&self, ns: &str, path: &str) -> Option<&BTreeSet<VariableCapability>> {
        if let Some(caps) = self.variables.get(&(ns.to_string(), path.to_string())) {
            return Some(caps);
        }
        self.variables
            .iter()
            .filter(|((n, p), _)| glob_match(n, ns) && glob_match(p, path))
            .min_by_key(|((n, p), _)| {
                (
                    glob_difference(n, ns) + glob_difference(p, path),
                    n.as_str(),
                    p.as_str(),
                )
            })
            .map(|(_, caps)| caps)
    }

    pub fn allow_node_read(&self) -> bool {
        self.management || reads(self.node)
    }

    pub fn allow_node_write(&self) -> bool {
        self.management || self.node == Some(Disposition::Write)
    }

    pub fn allow_agent_read(&self) -> bool {
        self.management || reads(self.agent)
    }

    pub fn allow_agent_write(&self) -> bool {
        self.management || self.agent == Some(Disposition::Write)
    }

    pub fn allow_operator_read(&self) -> bool {
        self.management || reads(self.operator)
    }

    pub fn allow_operator_write(&self) -> bool {
        self.management || self.operator == Some(Disposition::Write)
    }

    pub fn allow_quota_read(&self) -> bool {
        self.management || reads(self.quota)
    }

    pub fn allow_quota_write(&self) -> bool {
        self.management || self.quota == Some(Disposition::Write)
    }

    pub fn allow_plugin_read(&self) -> bool {
        self.management || self.plugin == Some(Disposition::Read)
    }

    pub fn allow_plugin_list(&self) -> bool {
        self.management || matches!(self.plugin, Some(Disposition::Read | Disposition::List))
    }
}

fn reads(d: Option<Disposition>) -> bool {
    matches!(d, Some(Disposition::Read | Disposition::Write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use NamespaceCapability as N;

    fn acl(policies: &[&str]) -> Acl {
        let parsed: Vec<Policy> = policies.iter().map(|p| Policy::parse(p).unwrap()).collect();
        Acl::from_policies(&parsed)
    }

    #[test]
    fn management_allows_everything() {
        let a = Acl::management();
        assert!(a.is_management());
        assert!(a.allow_namespace_operation("any", N::AllocExec));
        assert!(a.allow_node_write() && a.allow_operator_write() && a.allow_agent_write());
        assert!(a.allow_variable_operation("x", "y", VariableCapability::Destroy));
        assert!(a.allow_plugin_read() && a.allow_quota_write());
    }

    #[test]
    fn no_policies_allow_nothing() {
        let a = Acl::deny_all();
        assert!(!a.is_management());
        assert!(!a.allow_namespace_operation("default", N::ListJobs));
        assert!(!a.allow_namespace("default"));
        assert!(!a.allow_node_read() && !a.allow_agent_read() && !a.allow_operator_read());
        assert!(!a.allow_plugin_list());
    }

    #[test]
    fn read_policy_reads_but_cannot_submit() {
        let a = acl(&[r#"namespace "default" { policy = "read" }"#]);
        assert!(a.allow_namespace_operation("default", N::ReadJob));
        assert!(a.allow_namespace_operation("default", N::ListJobs));
        assert!(!a.allow_namespace_operation("default", N::SubmitJob));
        assert!(!a.allow_namespace_operation("other", N::ReadJob));
        assert!(a.allow_namespace("default"));
        assert!(!a.allow_namespace("other"));
    }

    #[test]
    fn exact_rule_beats_glob_even_when_narrower() {
        let a = acl(&[
            r#"namespace "*" { policy = "write" }"#,
            r#"namespace "prod" { policy = "read" }"#,
        ]);
        assert!(!a.allow_namespace_operation("prod", N::SubmitJob));
        assert!(a.allow_namespace_operation("dev", N::SubmitJob));
    }

    #[test]
    fn closest_glob_decides() {
        let a = acl(&[r#"
namespace "*" { policy = "write" }
namespace "prod-*" { policy = "read" }
namespace "prod-secure-*" { policy = "deny" }
"#]);
        assert!(a.allow_namespace_operation("dev", N::SubmitJob));
        assert!(!a.allow_namespace_operation("prod-web", N::SubmitJob));
        assert!(a.allow_namespace_operation("prod-web", N::ReadJob));
        assert!(!a.allow_namespace_operation("prod-secure-db", N::ReadJob));
        assert!(!a.allow_namespace("prod-secure-db"));
    }

    #[test]
    fn deny_in_the_chosen_rule_wins_across_policies() {
        let a = acl(&[
            r#"namespace "default" { policy = "write" }"#,
            r#"namespace "default" { capabilities = ["deny"] }"#,
        ]);
        assert!(!a.allow_namespace_operation("default", N::ReadJob));
        let b = acl(&[
            r#"node { policy = "write" }"#,
            r#"node { policy = "deny" }"#,
            r#"agent { policy = "read" }"#,
        ]);
        assert!(!b.allow_node_read());
        assert!(b.allow_agent_read() && !b.allow_agent_write());
    }

    #[test]
    fn capabilities_union_across_policies() {
        let a = acl(&[
            r#"namespace "default" { capabilities = ["read-logs"] }"#,
            r#"namespace "default" { capabilities = ["read-fs"] }"#,
        ]);
        assert!(a.allow_namespace_operation("default", N::ReadLogs));
        assert!(a.allow_namespace_operation("default", N::ReadFs));
        assert!(!a.allow_namespace_operation("default", N::ReadJob));
    }

    #[test]
    fn wildcard_namespace_query_asks_whether_any_rule_allows() {
        let a = acl(&[r#"namespace "team-a" { policy = "read" }
               namespace "team-b" { policy = "deny" }"#]);
        assert!(a.allow_namespace_operation("*", N::ListJobs));
        assert!(!a.allow_namespace_operation("*", N::SubmitJob));
        assert!(a.allow_namespace("*"));
        assert!(!acl(&[r#"namespace "x" { policy = "deny" }"#]).allow_namespace("*"));
    }

    #[test]
    fn singleton_rules_grant_by_level() {
        let a = acl(&[r#"
node { policy = "read" }
operator { policy = "write" }
quota { policy = "read" }
plugin { policy = "list" }
"#]);
        assert!(a.allow_node_read() && !a.allow_node_write());
        assert!(a.allow_operator_read() && a.allow_operator_write());
        assert!(a.allow_quota_read() && !a.allow_quota_write());
        assert!(a.allow_plugin_list() && !a.allow_plugin_read());
        assert!(!a.allow_agent_read());
    }

    #[test]
    fn variables_follow_paths_globs_and_deny() {
        let a = acl(&[r#"
namespace "default" {
  variables {
    path "*" { capabilities = ["read"] }
    path "project/*" { capabilities = ["read", "write", "destroy"] }
    path "project/secret" { capabilities = ["deny"] }
  }
}
namespace "*" {
  variables {
    path "shared/*" { capabilities = ["list"] }
  }
}
"#]);
        use VariableCapability as V;
        assert!(a.allow_variable_operation("default", "app/config", V::Read));
        assert!(a.allow_variable_operation("default", "app/config", V::List));
        assert!(!a.allow_variable_operation("default", "app/config", V::Write));
        assert!(a.allow_variable_operation("default", "project/x", V::Write));
        assert!(!a.allow_variable_operation("default", "project/secret", V::Read));
        assert!(a.allow_variable_operation("other", "shared/a", V::List));
        assert!(!a.allow_variable_operation("other", "shared/a", V::Read));
        assert!(!a.allow_variable_operation("other", "app", V::List));
        assert!(a.allow_variable_search("other"));
    }

    #[test]
    fn host_volumes_and_node_pools_use_globs() {
        let a = acl(&[r#"
host_volume "*" { policy = "read" }
host_volume "scratch-*" { policy = "write" }
host_volume "secret" { policy = "deny" }
node_pool "*" { policy = "read" }
"#]);
        use HostVolumeCapability as H;
        assert!(a.allow_host_volume_operation("data", H::MountReadonly));
        assert!(!a.allow_host_volume_operation("data", H::MountReadwrite));
        assert!(a.allow_host_volume_operation("scratch-1", H::MountReadwrite));
        assert!(!a.allow_host_volume("secret"));
        assert!(a.allow_node_pool_operation("gpu", NodePoolCapability::Read));
        assert!(!a.allow_node_pool_operation("gpu", NodePoolCapability::Write));
    }
}
