//! Namespaces in Nomad's shape (`/v1/namespaces`, `/v1/namespace/:name`) and the rules a
//! namespace must follow before a server stores it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest namespace name Nomad accepts.
pub const NAMESPACE_NAME_MAX: usize = 128;
/// The longest namespace description Nomad accepts.
pub const NAMESPACE_DESCRIPTION_MAX: usize = 256;
/// The description of the `default` namespace, which always exists.
pub const DEFAULT_NAMESPACE_DESCRIPTION: &str = "Default shared namespace";

/// A namespace, as Nomad's API reads and writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Namespace {
    pub name: String,
    pub description: String,
    pub quota: String,
    /// Task drivers and network modes the namespace allows or forbids (kept, shown).
    pub capabilities: Option<NamespaceCapabilities>,
    /// Node pools the namespace's jobs may use (kept, shown).
    pub node_pool_configuration: Option<NamespaceNodePoolConfiguration>,
    /// Enterprise blocks Nomad shows as `null`; kept as sent.
    pub vault_configuration: Option<serde_json::Value>,
    pub consul_configuration: Option<serde_json::Value>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamespaceCapabilities {
    pub enabled_task_drivers: Vec<String>,
    pub disabled_task_drivers: Vec<String>,
    pub enabled_network_modes: Vec<String>,
    pub disabled_network_modes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamespaceNodePoolConfiguration {
    pub default: String,
    pub allowed: Vec<String>,
    pub denied: Vec<String>,
}

impl Namespace {
    /// The `default` namespace as it exists before anyone changes it.
    pub fn default_namespace() -> Namespace {
        Namespace {
            name: crate::DEFAULT_NAMESPACE.to_string(),
            description: DEFAULT_NAMESPACE_DESCRIPTION.to_string(),
            create_index: 1,
            modify_index: 1,
            ..Default::default()
        }
    }

    /// What is wrong with this namespace, as a sentence (`None`: nothing).
    pub fn problem(&self) -> Option<String> {
        if let Some(p) = namespace_name_problem(&self.name) {
            return Some(p);
        }
        let len = self.description.chars().count();
        if len > NAMESPACE_DESCRIPTION_MAX {
            return Some(format!(
                "namespace {:?}: the description is {len} characters long; at most \
                 {NAMESPACE_DESCRIPTION_MAX} are allowed",
                self.name
            ));
        }
        if let Some(k) = self.meta.keys().find(|k| k.is_empty()) {
            return Some(format!(
                "namespace {:?}: meta key {k:?} is empty; every meta key needs a name",
                self.name
            ));
        }
        None
    }
}

/// What is wrong with a namespace name (Nomad's rule: 1 to 128 letters, digits, dashes
/// or underscores), as a sentence.
pub fn namespace_name_problem(name: &str) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() {
        return Some(
            "a namespace needs a name: 1 to 128 letters, digits, dashes or underscores".into(),
        );
    }
    if name.len() > NAMESPACE_NAME_MAX || !name.chars().all(ok_char) {
        let shown: String = name.chars().take(NAMESPACE_NAME_MAX + 8).collect();
        return Some(format!(
            "invalid namespace name {shown:?}: use 1 to {NAMESPACE_NAME_MAX} letters, digits, \
             dashes or underscores"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nomads_rule() {
        for good in ["default", "team-a", "team_b", "A1", &"x".repeat(128)] {
            assert_eq!(namespace_name_problem(good), None, "{good}");
        }
        for bad in ["", "team a", "a/b", "a.b", "ns*", "é", &"x".repeat(129)] {
            let p = namespace_name_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(p.contains("namespace"), "{p}");
        }
    }

    #[test]
    fn long_descriptions_and_empty_meta_keys_are_refused() {
        let mut ns = Namespace {
            name: "team-a".into(),
            description: "d".repeat(256),
            ..Default::default()
        };
        assert_eq!(ns.problem(), None);
        ns.description.push('d');
        assert!(ns.problem().unwrap().contains("257 characters"));
        ns.description.clear();
        ns.meta.insert(String::new(), "v".into());
        assert!(ns.problem().unwrap().contains("meta key"));
    }

    #[test]
    fn the_json_shape_is_nomads() {
        let v = serde_json::to_value(Namespace::default_namespace()).unwrap();
        for k in [
            "Name",
            "Description",
            "Quota",
            "Capabilities",
            "NodePoolConfiguration",
            "Meta",
            "CreateIndex",
            "ModifyIndex",
        ] {
            assert!(v.get(k).is_some(), "{k} missing: {v}");
        }
        assert_eq!(v["Description"], "Default shared namespace");
        assert!(v["Capabilities"].is_null());
        // Partial JSON, as python-nomad sends it, reads.
        let ns: Namespace =
            serde_json::from_str(r#"{"Name":"api","Description":"api servers"}"#).unwrap();
        assert_eq!((ns.name.as_str(), ns.create_index), ("api", 0));
    }
}
