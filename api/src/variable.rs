//! Nomad Variables: encrypted key/value items stored at a path in a namespace
//! (`/v1/var/:path`, `/v1/vars`), and the checks every writer applies to paths and items.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest variable path Nomad accepts.
pub const VARIABLE_MAX_PATH: usize = 128;
/// The largest a variable's items may be, encoded as JSON (Nomad: 64 KiB in total).
pub const VARIABLE_MAX_ITEMS_BYTES: usize = 64 * 1024;

/// A variable with its decrypted items, as `GET /v1/var/:path` answers and `PUT` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Variable {
    pub namespace: String,
    pub path: String,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    pub modify_time: i64,
    pub items: BTreeMap<String, String>,
}

/// A variable without its items, as `GET /v1/vars` lists them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VariableMetadata {
    pub namespace: String,
    pub path: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl Variable {
    /// The variable without its items.
    pub fn metadata(&self) -> VariableMetadata {
        VariableMetadata {
            namespace: self.namespace.clone(),
            path: self.path.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
            create_time: self.create_time,
            modify_time: self.modify_time,
        }
    }
}

/// Why `path` cannot name a variable, as a sentence; `None` when it can. Nomad's rules:
/// 1 to 128 characters among letters, digits, `-`, `_`, `~` and `/` (URL-safe, and free
/// of the `@` and `.` templates give meaning to, so no `..` segment can exist), no empty
/// segment (no leading, trailing or doubled `/`), and under `nomad/` only `nomad/jobs`.
pub fn variable_path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("variable path is empty".into());
    }
    if path.len() > VARIABLE_MAX_PATH {
        return Some(format!(
            "variable path is {} characters long; the limit is {VARIABLE_MAX_PATH}",
            path.len()
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '~' | '/')))
    {
        return Some(format!(
            "invalid variable path {path:?}: {c:?} is not allowed (use letters, digits, \
             '-', '_', '~' and '/')"
        ));
    }
    if path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Some(format!(
            "invalid variable path {path:?}: it may not start or end with '/' or have an \
             empty segment"
        ));
    }
    if (path == "nomad" || path.starts_with("nomad/"))
        && path != "nomad/jobs"
        && !path.starts_with("nomad/jobs/")
    {
        return Some(format!(
            "invalid variable path {path:?}: under \"nomad/\" only \"nomad/jobs\" and paths \
             below it are allowed"
        ));
    }
    None
}

/// Why `items` cannot be stored, as a sentence; `None` when they can.
pub fn variable_items_problem(items: &BTreeMap<String, String>) -> Option<String> {
    if items.is_empty() {
        return Some("variable has no items: give at least one key and value".into());
    }
    if items.keys().any(|k| k.is_empty()) {
        return Some("variable item keys may not be empty".into());
    }
    let size = serde_json::to_vec(items).map(|v| v.len()).unwrap_or(0);
    if size > VARIABLE_MAX_ITEMS_BYTES {
        return Some(format!(
            "variable items are {size} bytes; variables are limited to {} KiB in total",
            VARIABLE_MAX_ITEMS_BYTES / 1024
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_nomads_rules() {
        for ok in [
            "a",
            "a/b",
            "nomad/jobs",
            "nomad/jobs/example/web",
            "x-y_z~1",
        ] {
            assert_eq!(variable_path_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "a b",
            "a.b",
            "a@b",
            "é",
            "nomad/other",
            "nomad",
        ] {
            assert!(variable_path_problem(bad).is_some(), "{bad:?}");
        }
        assert!(variable_path_problem(&"a".repeat(129)).is_some());
        assert_eq!(variable_path_problem(&"a".repeat(128)), None);
    }

    #[test]
    fn items_must_be_present_and_small() {
        assert!(variable_items_problem(&BTreeMap::new()).is_some());
        let one: BTreeMap<_, _> = [("k".to_string(), "v".to_string())].into();
        assert_eq!(variable_items_problem(&one), None);
        let big: BTreeMap<_, _> = [("k".to_string(), "v".repeat(70_000))].into();
        assert!(variable_items_problem(&big).unwrap().contains("64 KiB"));
    }
}
