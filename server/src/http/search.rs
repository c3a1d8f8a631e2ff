//! `POST /v1/search` (Nomad's prefix search: IDs that start with `Prefix`) and
//! `POST /v1/search/fuzzy` (names that contain `Text`), over `crate::search`, the
//! matcher the UI's search box uses too.

use super::{parse_body, read_table, ApiErr, ApiResult, AppState, QueryParams, Table};
use crate::search::{self, Context, Found, Mode};
use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SearchRequest {
    prefix: Option<String>,
    text: Option<String>,
    context: Option<String>,
    namespace: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PrefixResponse {
    matches: BTreeMap<&'static str, Vec<String>>,
    truncations: BTreeMap<&'static str, bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FuzzyMatch {
    #[serde(rename = "ID")]
    id: String,
    scope: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FuzzyResponse {
    matches: BTreeMap<&'static str, Vec<FuzzyMatch>>,
    truncations: BTreeMap<&'static str, bool>,
}

/// The shortest text a fuzzy search takes (Nomad's default `min_term_length`).
const FUZZY_MIN_TERM: usize = 2;

fn request(body: &Bytes, mode: Mode) -> Result<(String, Vec<Context>, Option<String>), ApiErr> {
    let req: SearchRequest = parse_body(body)?;
    let text = match mode {
        Mode::Fuzzy => req.text.unwrap_or_default(),
        _ => req.prefix.unwrap_or_default(),
    };
    let context = req.context.unwrap_or_default();
    if context.is_empty() {
        return Err(ApiErr::bad_request(
            "missing search context: set Context to jobs, evals, allocs, nodes, deployments, namespaces or all",
        ));
    }
    let contexts = Context::parse(&context, mode).map_err(ApiErr::bad_request)?;
    if mode == Mode::Fuzzy && text.chars().count() < FUZZY_MIN_TERM {
        return Err(ApiErr::bad_request(format!(
            "fuzzy search query must be at least {FUZZY_MIN_TERM} characters, got {}",
            text.chars().count()
        )));
    }
    Ok((text, contexts, req.namespace.filter(|n| !n.is_empty())))
}

fn truncations(found: &Found) -> BTreeMap<&'static str, bool> {
    found
        .matches
        .keys()
        .map(|c| (c.name(), found.truncated.contains(c)))
        .collect()
}

/// `POST /v1/search`: `{"Prefix": "ex", "Context": "jobs"}` ->
/// `{"Matches": {"jobs": ["example"]}, "Truncations": {"jobs": false}}`.
pub async fn prefix(
    State(srv): State<AppState>,
    Query(q): Query<QueryParams>,
    body: Bytes,
) -> ApiResult {
    let (text, contexts, ns) = request(&body, Mode::Prefix)?;
    let ns = ns.unwrap_or_else(|| q.namespace().to_string());
    read_table(&srv, &q, Table::JobsAndAllocs, |state| {
        let found = search::search(state, &text, Mode::Prefix, &contexts, Some(&ns));
        Ok(PrefixResponse {
            truncations: truncations(&found),
            matches: found
                .matches
                .into_iter()
                .map(|(c, hits)| (c.name(), hits.into_iter().map(|h| h.id).collect()))
                .collect(),
        })
    })
    .await
}

/// `POST /v1/search/fuzzy`: `{"Text": "amp", "Context": "jobs"}` ->
/// `{"Matches": {"jobs": [{"ID": "example", "Scope": ["default"]}], ...}, "Truncations": {...}}`.
pub async fn fuzzy(
    State(srv): State<AppState>,
    Query(q): Query<QueryParams>,
    body: Bytes,
) -> ApiResult {
    let (text, contexts, ns) = request(&body, Mode::Fuzzy)?;
    let ns = ns.unwrap_or_else(|| q.namespace().to_string());
    read_table(&srv, &q, Table::JobsAndAllocs, |state| {
        let found = search::search(state, &text, Mode::Fuzzy, &contexts, Some(&ns));
        Ok(FuzzyResponse {
            truncations: truncations(&found),
            matches: found
                .matches
                .into_iter()
                .map(|(c, hits)| {
                    let list = hits
                        .into_iter()
                        .map(|h| FuzzyMatch {
                            id: h.id,
                            scope: h.scope,
                        })
                        .collect();
                    (c.name(), list)
                })
                .collect(),
        })
    })
    .await
}
