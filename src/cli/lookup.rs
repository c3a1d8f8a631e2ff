//! Naming a job, allocation, evaluation or node by its ID or a prefix of it. Every
//! command lists the candidates with [`matching`] and picks one with [`one`], so the
//! sentences for "no such ID" and "several match" are the same everywhere.

use crate::cli::format::api_error;
use api::{ApiError, QueryMeta, QueryOptions};
use std::fmt;
use std::future::Future;

/// What kind of object an ID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Job,
    Alloc,
    Eval,
    Node,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Job => "job",
            Kind::Alloc => "allocation",
            Kind::Eval => "evaluation",
            Kind::Node => "node",
        }
    }
}

/// The objects of `kind` whose ID starts with `prefix`, from `list` (one of the client's
/// list calls, given `?prefix=`); just the one if an ID equals it.
pub async fn matching<T, Fut>(
    kind: Kind,
    prefix: &str,
    list: impl FnOnce(QueryOptions) -> Fut,
    id: impl Fn(&T) -> &str,
) -> anyhow::Result<Vec<T>>
where
    Fut: Future<Output = Result<(Vec<T>, QueryMeta), ApiError>>,
{
    let opts = QueryOptions {
        prefix: Some(prefix.to_string()),
        ..Default::default()
    };
    let (items, _) = list(opts)
        .await
        .map_err(|e| api_error(&format!("querying {}s", kind.noun()), e))?;
    Ok(narrow(items, prefix, id))
}

/// Whether an object in namespace `ns` is one a command run with `wanted` (the client's
/// namespace: none means `default`, `*` every namespace) may name. Lists are asked with
/// `?namespace=`; this also keeps a server that lists every namespace's allocations or
/// evaluations from letting a prefix match an object of another namespace.
pub fn in_namespace(wanted: Option<&str>, ns: &str) -> bool {
    let ns = if ns.is_empty() {
        api::DEFAULT_NAMESPACE
    } else {
        ns
    };
    match wanted.unwrap_or(api::DEFAULT_NAMESPACE) {
        "*" => true,
        w => w == ns,
    }
}

/// Keep what starts with `prefix` (in case a server ignores `?prefix=`), and only the
/// exact match if there is one.
pub fn narrow<T>(items: Vec<T>, prefix: &str, id: impl Fn(&T) -> &str) -> Vec<T> {
    let mut items: Vec<T> = items
        .into_iter()
        .filter(|i| id(i).starts_with(prefix))
        .collect();
    if let Some(pos) = items.iter().position(|i| id(i) == prefix) {
        return vec![items.swap_remove(pos)];
    }
    items
}

/// Why a prefix does not name exactly one object; displays as the sentence for people.
#[derive(Debug)]
pub enum Miss {
    NotFound {
        kind: Kind,
        prefix: String,
    },
    /// Several match; `table` lists them.
    Ambiguous {
        kind: Kind,
        table: String,
    },
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::NotFound { kind, prefix } => {
                write!(
                    f,
                    "No {}(s) with prefix or ID {prefix:?} found",
                    kind.noun()
                )
            }
            Miss::Ambiguous { kind, table } => {
                write!(f, "Prefix matched multiple {}s\n\n{table}", kind.noun())
            }
        }
    }
}

impl std::error::Error for Miss {}

/// The one object of `matches` (from [`matching`]); otherwise why not, with the
/// matches listed by `table`.
pub fn one<T>(
    kind: Kind,
    prefix: &str,
    mut matches: Vec<T>,
    table: impl FnOnce(&[T]) -> String,
) -> Result<T, Miss> {
    match matches.len() {
        0 => Err(Miss::NotFound {
            kind,
            prefix: prefix.to_string(),
        }),
        1 => Ok(matches.remove(0)),
        _ => Err(Miss::Ambiguous {
            kind,
            table: table(&matches),
        }),
    }
}

/// [`one`], or `None` after telling the user why not (a status command then exits 1).
pub fn one_or_tell<T>(
    kind: Kind,
    prefix: &str,
    matches: Vec<T>,
    table: impl FnOnce(&[T]) -> String,
) -> Option<T> {
    one(kind, prefix, matches, table)
        .map_err(|miss| eprintln!("{miss}"))
        .ok()
}

/// Tells a command's user that `prefix` names no object of `kind`; the exit code.
pub fn not_found(kind: Kind, prefix: &str) -> i32 {
    eprintln!(
        "{}",
        Miss::NotFound {
            kind,
            prefix: prefix.to_string()
        }
    );
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_id_wins_over_longer_prefix_matches() {
        let ids = vec!["web".to_string(), "web-2".to_string(), "api".to_string()];
        assert_eq!(narrow(ids.clone(), "web", |s| s), vec!["web".to_string()]);
        assert_eq!(
            narrow(ids, "we", |s| s),
            vec!["web".to_string(), "web-2".to_string()]
        );
    }

    #[test]
    fn only_objects_of_the_clients_namespace_match() {
        assert!(in_namespace(None, "default"));
        assert!(in_namespace(None, ""));
        assert!(!in_namespace(None, "team-a"));
        assert!(in_namespace(Some("team-a"), "team-a"));
        assert!(!in_namespace(Some("team-a"), "default"));
        assert!(!in_namespace(Some("team-a"), ""));
        assert!(in_namespace(Some("*"), "team-b"));
        assert!(in_namespace(Some("default"), ""));
    }

    #[test]
    fn every_kind_says_not_found_and_ambiguous_the_same_way() {
        let table = |ids: &[&str]| ids.join("\n");
        assert_eq!(one(Kind::Node, "ab", vec!["abc"], table).unwrap(), "abc");
        let none = one(Kind::Eval, "zz", Vec::<&str>::new(), table).unwrap_err();
        assert_eq!(
            none.to_string(),
            "No evaluation(s) with prefix or ID \"zz\" found"
        );
        let many = one(Kind::Alloc, "a", vec!["a1", "a2"], table).unwrap_err();
        assert_eq!(
            many.to_string(),
            "Prefix matched multiple allocations\n\na1\na2"
        );
    }
}
