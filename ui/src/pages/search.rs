//! `/ui/search?q=`: the header search box. One match (an exact ID, or the only job, node,
//! allocation or evaluation whose ID or name starts with the text) redirects to its page;
//! several are listed.

use crate::fmt;
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use server::state::StateStore;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    pub q: String,
}

/// `(kind, label, href)` of every job, client, allocation and evaluation whose ID (or a
/// job's or node's name) starts with `text`, at most `server::search::LIMIT` of each.
/// The matching is the servers' (`server::search`, behind `/v1/search` too).
pub fn matches(state: &StateStore, text: &str) -> Vec<(&'static str, String, String)> {
    use server::search::{search, Context, Mode};
    let mut out = Vec::new();
    if text.is_empty() {
        return out;
    }
    let kinds = [
        Context::Jobs,
        Context::Nodes,
        Context::Allocs,
        Context::Evals,
    ];
    let mut found = search(state, text, Mode::IdOrName, &kinds, None);
    for kind in kinds {
        for h in found.matches.remove(&kind).unwrap_or_default() {
            let ns = h.scope.first().map(String::as_str).unwrap_or("");
            out.push(match kind {
                Context::Jobs => {
                    let label = if ns == api::DEFAULT_NAMESPACE {
                        h.id.clone()
                    } else {
                        format!("{} ({ns})", h.id)
                    };
                    ("job", label, fmt::job_href(ns, &h.id))
                }
                Context::Nodes => (
                    "client",
                    format!("{} ({})", h.name, fmt::short(&h.id)),
                    fmt::node_href(&h.id),
                ),
                Context::Allocs => (
                    "allocation",
                    format!("{} ({})", fmt::short(&h.id), h.name),
                    fmt::alloc_href(&h.id),
                ),
                _ => {
                    let status = state
                        .eval_table()
                        .get(&h.id)
                        .map(|e| e.status.clone())
                        .unwrap_or_default();
                    (
                        "evaluation",
                        format!("{} (job {})", fmt::short(&h.id), h.name),
                        format!(
                            "/ui/evaluations?status={}#eval-{}",
                            fmt::enc(&status),
                            fmt::enc(&h.id)
                        ),
                    )
                }
            });
        }
    }
    out
}

pub async fn search(axum::Extension(srv): Srv, Query(q): Query<SearchQuery>) -> Response {
    let state = srv.snapshot();
    let text = q.q.trim();
    let found = matches(&state, text);
    if found.len() == 1 {
        return Redirect::to(&found[0].2).into_response();
    }
    let body = render(text, &found);
    crate::html(layout::page("Search", Nav::None, state.index(), body))
}

/// The results page for `text` (when it is not exactly one match, which redirects).
pub fn render(text: &str, found: &[(&'static str, String, String)]) -> Markup {
    html! {
        h1 { "Search" }
        @if text.is_empty() {
            p { "Type the beginning of a job, client, allocation or evaluation ID (or a job's or client's name)." }
        } @else if found.is_empty() {
            p { "Nothing's ID or name starts with " strong { (text) } "." }
        } @else {
            table {
                caption { (found.len()) " matches for " (text) }
                thead { tr { th scope="col" { "Kind" } th scope="col" { "Match" } } }
                tbody {
                    @for (kind, label, href) in found {
                        tr { td { (kind) } th scope="row" { a href=(href) { (label) } } }
                    }
                }
            }
        }
    }
}
