//! `/ui/search?q=`: the header search box. One match (an exact ID, or the only job, node,
//! allocation or evaluation whose ID or name starts with the text) redirects to its page;
//! several are listed.

use crate::fmt;
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use server::state::StateStore;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    pub q: String,
}

/// At most this many matches of each kind are listed.
const LIMIT: usize = 20;

/// `(kind, label, href)` of everything whose ID (or a job's or node's name) starts with
/// `text`; an exact ID match comes first.
pub fn matches(state: &StateStore, text: &str) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    if text.is_empty() {
        return out;
    }
    let lower = text.to_lowercase();
    for ((ns, id), j) in state.job_table() {
        if out.len() >= LIMIT {
            break;
        }
        if id.to_lowercase().starts_with(&lower) || j.name.to_lowercase().starts_with(&lower) {
            let label = if ns == api::DEFAULT_NAMESPACE {
                id.clone()
            } else {
                format!("{id} ({ns})")
            };
            out.push(("job", label, fmt::job_href(ns, id)));
        }
    }
    for n in state.node_table().values() {
        if out.len() >= 2 * LIMIT {
            break;
        }
        if n.id.starts_with(text) || n.name.to_lowercase().starts_with(&lower) {
            out.push((
                "client",
                format!("{} ({})", n.name, fmt::short(&n.id)),
                fmt::node_href(&n.id),
            ));
        }
    }
    for (id, a) in state
        .alloc_table()
        .range(text.to_string()..)
        .take_while(|(k, _)| k.starts_with(text))
        .take(LIMIT)
    {
        out.push((
            "allocation",
            format!("{} ({})", fmt::short(id), a.name),
            fmt::alloc_href(id),
        ));
    }
    for (id, e) in state
        .eval_table()
        .range(text.to_string()..)
        .take_while(|(k, _)| k.starts_with(text))
        .take(LIMIT)
    {
        out.push((
            "evaluation",
            format!("{} (job {})", fmt::short(id), e.job_id),
            format!(
                "/ui/evaluations?status={}#eval-{}",
                fmt::enc(&e.status),
                fmt::enc(id)
            ),
        ));
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
    let body = html! {
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
                    @for (kind, label, href) in &found {
                        tr { td { (kind) } th scope="row" { a href=(href) { (label) } } }
                    }
                }
            }
        }
    };
    crate::html(layout::page("Search", Nav::None, state.index(), body))
}
