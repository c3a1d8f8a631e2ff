//! Finding objects by the beginning of their ID or by part of their name: the one matcher
//! behind `/v1/search` (Nomad's prefix search), `/v1/search/fuzzy` and the UI's header
//! search box. Pure reads of a state snapshot.

use crate::state::StateStore;
use std::collections::{BTreeMap, BTreeSet};

/// At most this many matches per context (Nomad's truncation limit).
pub const LIMIT: usize = 20;

/// What a search looks through: Nomad's search contexts (plus the groups and tasks a
/// fuzzy search of jobs reports under their own keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    Jobs,
    Evals,
    Allocs,
    Nodes,
    Deployments,
    Namespaces,
    Groups,
    Tasks,
}

impl Context {
    /// The contexts a prefix search of `all` covers.
    pub const PREFIX_ALL: [Context; 6] = [
        Context::Jobs,
        Context::Evals,
        Context::Allocs,
        Context::Nodes,
        Context::Deployments,
        Context::Namespaces,
    ];
    /// The contexts a fuzzy search of `all` covers (Nomad: no evaluations or deployments).
    pub const FUZZY_ALL: [Context; 6] = [
        Context::Jobs,
        Context::Groups,
        Context::Tasks,
        Context::Allocs,
        Context::Nodes,
        Context::Namespaces,
    ];

    /// The key of the context in `Matches` and `Truncations`.
    pub fn name(self) -> &'static str {
        match self {
            Context::Jobs => "jobs",
            Context::Evals => "evals",
            Context::Allocs => "allocs",
            Context::Nodes => "nodes",
            Context::Deployments => "deployments",
            Context::Namespaces => "namespaces",
            Context::Groups => "groups",
            Context::Tasks => "tasks",
        }
    }

    /// The contexts a request's `Context` names for this kind of search, or the sentence
    /// refusing it.
    pub fn parse(s: &str, mode: Mode) -> Result<Vec<Context>, String> {
        let all: &[Context] = match mode {
            Mode::Fuzzy => &Self::FUZZY_ALL,
            Mode::Prefix | Mode::IdOrName => &Self::PREFIX_ALL,
        };
        if s == "all" {
            return Ok(all.to_vec());
        }
        let one = match s {
            "jobs" => Context::Jobs,
            "evals" => Context::Evals,
            "allocs" => Context::Allocs,
            "nodes" => Context::Nodes,
            "deployments" => Context::Deployments,
            "namespaces" => Context::Namespaces,
            _ => {
                let names: Vec<&str> = all
                    .iter()
                    .map(|c| c.name())
                    .filter(|n| !matches!(*n, "groups" | "tasks"))
                    .collect();
                return Err(format!(
                    "invalid search context {s:?}: expected one of {} or all",
                    names.join(", ")
                ));
            }
        };
        if mode == Mode::Fuzzy && !all.contains(&one) {
            return Err(format!(
                "fuzzy search does not support the {s:?} context; use a prefix search"
            ));
        }
        Ok(match (mode, one) {
            // A fuzzy search of jobs also reports their groups and tasks, as Nomad's does.
            (Mode::Fuzzy, Context::Jobs) => vec![Context::Jobs, Context::Groups, Context::Tasks],
            _ => vec![one],
        })
    }
}

/// How text matches an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The ID starts with the text (Nomad's `/v1/search`).
    Prefix,
    /// The name (or ID) contains the text, ignoring case (Nomad's `/v1/search/fuzzy`).
    Fuzzy,
    /// The ID starts with the text, or a job's or node's name does ignoring case (the
    /// UI's search box).
    IdOrName,
}

/// One object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Its ID (a job's, node's, allocation's, ...; a group's or task's name).
    pub id: String,
    /// Its name, where it has one besides its ID.
    pub name: String,
    /// Where it lives: Nomad's fuzzy `Scope` (namespace, then the parents' IDs).
    pub scope: Vec<String>,
}

/// What a search found, per context, and the contexts that had more than [`LIMIT`].
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub matches: BTreeMap<Context, Vec<Hit>>,
    pub truncated: BTreeSet<Context>,
}

impl Found {
    fn push(&mut self, ctx: Context, hit: Hit) -> bool {
        let list = self.matches.entry(ctx).or_default();
        if list.len() >= LIMIT {
            self.truncated.insert(ctx);
            return false;
        }
        list.push(hit);
        true
    }
}

/// Does `id`/`name` match `text` in `mode`? (`lower` is `text` in lower case.)
fn hit(mode: Mode, text: &str, lower: &str, id: &str, name: &str) -> bool {
    match mode {
        Mode::Prefix => id.starts_with(text),
        Mode::Fuzzy => name.to_lowercase().contains(lower) || id.to_lowercase().contains(lower),
        Mode::IdOrName => {
            id.starts_with(text)
                || id.to_lowercase().starts_with(lower)
                || (!name.is_empty() && name.to_lowercase().starts_with(lower))
        }
    }
}

/// Search `contexts` of `state` for `text`. `namespace` limits jobs, evaluations,
/// allocations and deployments to one namespace (`None` or `*`: every namespace).
pub fn search(
    state: &StateStore,
    text: &str,
    mode: Mode,
    contexts: &[Context],
    namespace: Option<&str>,
) -> Found {
    let mut found = Found::default();
    for &c in contexts {
        found.matches.entry(c).or_default();
    }
    let lower = text.to_lowercase();
    let in_ns = |ns: &str| namespace.is_none_or(|n| n == "*" || n == ns);
    let wants = |c: Context| contexts.contains(&c);
    // Objects keyed by ID: a prefix search reads only the range that can match.
    let ids_from = |keys_start: &str| match mode {
        Mode::Prefix => keys_start.to_string(),
        _ => String::new(),
    };
    if wants(Context::Jobs) || wants(Context::Groups) || wants(Context::Tasks) {
        for ((ns, id), j) in state.job_table() {
            if !in_ns(ns) {
                continue;
            }
            if wants(Context::Jobs) && hit(mode, text, &lower, id, &j.name) {
                let h = Hit {
                    id: id.clone(),
                    name: j.name.clone(),
                    scope: vec![ns.clone()],
                };
                found.push(Context::Jobs, h);
            }
            for g in &j.task_groups {
                if wants(Context::Groups) && hit(mode, text, &lower, &g.name, "") {
                    let h = Hit {
                        id: g.name.clone(),
                        name: String::new(),
                        scope: vec![ns.clone(), id.clone()],
                    };
                    found.push(Context::Groups, h);
                }
                for t in &g.tasks {
                    if wants(Context::Tasks) && hit(mode, text, &lower, &t.name, "") {
                        let h = Hit {
                            id: t.name.clone(),
                            name: String::new(),
                            scope: vec![ns.clone(), id.clone(), g.name.clone()],
                        };
                        found.push(Context::Tasks, h);
                    }
                }
            }
        }
    }
    if wants(Context::Nodes) {
        for n in state.node_table().values() {
            if hit(mode, text, &lower, &n.id, &n.name) {
                let h = match mode {
                    // Nomad's fuzzy matches name nodes by name, scoped by their ID.
                    Mode::Fuzzy => Hit {
                        id: n.name.clone(),
                        name: n.name.clone(),
                        scope: vec![n.id.clone()],
                    },
                    _ => Hit {
                        id: n.id.clone(),
                        name: n.name.clone(),
                        scope: Vec::new(),
                    },
                };
                found.push(Context::Nodes, h);
            }
        }
    }
    if wants(Context::Allocs) {
        for a in state.alloc_table().from_id(&ids_from(text)) {
            let id = &a.id;
            if mode == Mode::Prefix && !id.starts_with(text) {
                break;
            }
            // The UI's box matches allocations by ID only (a job's name would find all).
            let name = if mode == Mode::IdOrName { "" } else { &a.name };
            if !in_ns(&a.namespace) || !hit(mode, text, &lower, id, name) {
                continue;
            }
            let h = match mode {
                Mode::Fuzzy => Hit {
                    id: a.name.to_string(),
                    name: a.name.to_string(),
                    scope: vec![a.namespace.to_string(), id.to_string()],
                },
                _ => Hit {
                    id: id.to_string(),
                    name: a.name.to_string(),
                    scope: vec![a.namespace.to_string()],
                },
            };
            if !found.push(Context::Allocs, h) {
                break;
            }
        }
    }
    if wants(Context::Evals) {
        for (id, e) in state.eval_table().range(ids_from(text)..) {
            if mode == Mode::Prefix && !id.starts_with(text) {
                break;
            }
            if !in_ns(&e.namespace) || !hit(mode, text, &lower, id, "") {
                continue;
            }
            let h = Hit {
                id: id.clone(),
                name: e.job_id.clone(),
                scope: vec![e.namespace.clone()],
            };
            if !found.push(Context::Evals, h) {
                break;
            }
        }
    }
    if wants(Context::Deployments) {
        for (id, d) in state.deployment_table().range(ids_from(text)..) {
            if mode == Mode::Prefix && !id.starts_with(text) {
                break;
            }
            if !in_ns(&d.namespace) || !hit(mode, text, &lower, id, "") {
                continue;
            }
            let h = Hit {
                id: id.clone(),
                name: d.job_id.clone(),
                scope: vec![d.namespace.clone()],
            };
            if !found.push(Context::Deployments, h) {
                break;
            }
        }
    }
    if wants(Context::Namespaces) {
        let mut names: BTreeSet<&str> = BTreeSet::from([api::DEFAULT_NAMESPACE]);
        names.extend(state.job_table().keys().map(|(ns, _)| ns.as_str()));
        for ns in names {
            if hit(mode, text, &lower, ns, "") {
                let h = Hit {
                    id: ns.to_string(),
                    name: String::new(),
                    scope: Vec::new(),
                };
                found.push(Context::Namespaces, h);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> StateStore {
        let mut s = StateStore::default();
        let job: api::Job = serde_json::from_value(serde_json::json!({
            "ID": "example", "Name": "example", "Namespace": "default", "Type": "service",
            "TaskGroups": [{"Name": "cache", "Count": 1, "Tasks": [{"Name": "redis", "Driver": "docker"}]}]
        }))
        .unwrap();
        let other: api::Job = serde_json::from_value(serde_json::json!({
            "ID": "web", "Name": "Frontend", "Namespace": "default", "Type": "service"
        }))
        .unwrap();
        let mut w = crate::fsm::test_writer(&mut s, 1);
        w.upsert_job(std::sync::Arc::new(job));
        w.upsert_job(std::sync::Arc::new(other));
        s
    }

    #[test]
    fn prefix_search_matches_the_beginning_of_ids_only() {
        let s = state();
        let f = search(&s, "ex", Mode::Prefix, &[Context::Jobs], None);
        let ids: Vec<&str> = f.matches[&Context::Jobs]
            .iter()
            .map(|h| h.id.as_str())
            .collect();
        assert_eq!(ids, ["example"]);
        let f = search(&s, "Front", Mode::Prefix, &[Context::Jobs], None);
        assert!(f.matches[&Context::Jobs].is_empty());
    }

    #[test]
    fn fuzzy_search_finds_names_groups_and_tasks_ignoring_case() {
        let s = state();
        let ctx = Context::parse("jobs", Mode::Fuzzy).unwrap();
        let f = search(&s, "AMP", Mode::Fuzzy, &ctx, None);
        assert_eq!(f.matches[&Context::Jobs][0].scope, ["default"]);
        let f = search(&s, "redi", Mode::Fuzzy, &ctx, None);
        assert_eq!(
            f.matches[&Context::Tasks][0].scope,
            ["default", "example", "cache"]
        );
        let f = search(&s, "tend", Mode::Fuzzy, &ctx, None);
        assert_eq!(f.matches[&Context::Jobs][0].id, "web");
    }

    #[test]
    fn the_ui_search_matches_ids_or_names_from_their_start() {
        let s = state();
        let f = search(&s, "front", Mode::IdOrName, &[Context::Jobs], None);
        assert_eq!(f.matches[&Context::Jobs][0].id, "web");
    }

    #[test]
    fn unknown_contexts_are_refused_with_the_valid_ones() {
        let e = Context::parse("job", Mode::Prefix).unwrap_err();
        assert!(e.contains("invalid search context \"job\""), "{e}");
        assert!(Context::parse("evals", Mode::Fuzzy).is_err());
        assert_eq!(Context::parse("all", Mode::Prefix).unwrap().len(), 6);
    }
}
