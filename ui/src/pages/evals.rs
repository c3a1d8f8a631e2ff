//! `/ui/evaluations`: every evaluation, newest first, with its status in words (blocked and
//! failed ones say why), a status facet and paging.

use crate::fmt::{self, paged, pager};
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use server::state::StateStore;
use std::sync::Arc;

pub const PER_PAGE: usize = 50;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct EvalsQuery {
    pub status: String,
    pub page: Option<String>,
}

pub async fn list(axum::Extension(srv): Srv, Query(q): Query<EvalsQuery>) -> Response {
    let state = srv.snapshot();
    crate::html(layout::page(
        "Evaluations",
        Nav::Evaluations,
        state.index(),
        render(&state, &q),
    ))
}

pub fn render(state: &StateStore, q: &EvalsQuery) -> Markup {
    let mut evals: Vec<&Arc<api::Evaluation>> = state
        .eval_table()
        .values()
        .filter(|e| q.status.is_empty() || e.status == q.status)
        .collect();
    evals.sort_by_key(|e| std::cmp::Reverse(e.create_index));
    let page = fmt::page_number(&q.page);
    let (shown, pages) = paged(&evals, page, PER_PAGE);
    html! {
        h1 { "Evaluations" }
        form class="facets" method="get" action="/ui/evaluations" aria-label="Filter evaluations" {
            (super::jobs::select("Status", "status", &q.status, &["pending", "blocked", "complete", "failed", "canceled"]))
            button type="submit" { "Apply" }
        }
        table {
            caption { (evals.len()) " evaluation" (if evals.len() == 1 { "" } else { "s" }) ", newest first" }
            (fmt::thead(&["ID", "Job", "Type", "Triggered by", "Node", "Status", "Created"]))
            tbody {
                @for e in shown {
                    tr {
                        th scope="row" { a href=(format!("/ui/evaluations/{}", fmt::enc(&e.id))) { code { (fmt::short(&e.id)) } } }
                        td { a href=(fmt::job_href(&e.namespace, &e.job_id)) { (e.job_id) } }
                        td { (e.eval_type) }
                        td { (e.triggered_by) }
                        td { @if !e.node_id.is_empty() { a href=(fmt::node_href(&e.node_id)) { code { (fmt::short(&e.node_id)) } } } }
                        td { (super::job::eval_words(e)) }
                        td { (fmt::time(e.create_time)) }
                    }
                }
                @if shown.is_empty() { tr { td colspan="7" { "No evaluations." } } }
            }
        }
        (pager("Evaluations", page, pages, |n| format!("/ui/evaluations{}", fmt::query(&[("status", &q.status), ("page", &n.to_string())]))))
    }
}

/// `/ui/evaluations/<id>` (or a unique prefix): its status in words and, per task group,
/// every reason its placements failed.
pub async fn show(axum::Extension(srv): Srv, Path(id): Path<String>) -> Response {
    let state = srv.snapshot();
    let found = state.eval_table().get(&id).cloned().or_else(|| {
        let mut it = state
            .eval_table()
            .range(id.clone()..)
            .take_while(|(k, _)| k.starts_with(&id));
        match (it.next(), it.next()) {
            (Some((_, e)), None) if id.len() >= 4 => Some(e.clone()),
            _ => None,
        }
    });
    let Some(e) = found else {
        return super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Evaluation not found",
            &format!("There is no evaluation {id:?}."),
        );
    };
    crate::html(layout::page(
        &format!("Evaluation {}", fmt::short(&e.id)),
        Nav::Evaluations,
        state.index(),
        render_eval(&e),
    ))
}

pub fn render_eval(e: &api::Evaluation) -> Markup {
    let link = |id: &str| format!("/ui/evaluations/{}", fmt::enc(id));
    html! {
        h1 { "Evaluation " code { (fmt::short(&e.id)) } }
        dl class="facts" {
            dt { "ID" } dd { code { (e.id) } }
            dt { "Status" } dd { (super::job::eval_words(e)) }
            dt { "Job" } dd { a href=(fmt::job_href(&e.namespace, &e.job_id)) { (e.job_id) } }
            dt { "Type" } dd { (e.eval_type) }
            dt { "Triggered by" } dd { (e.triggered_by) }
            dt { "Priority" } dd { (e.priority) }
            @if !e.node_id.is_empty() { dt { "Node" } dd { a href=(fmt::node_href(&e.node_id)) { code { (fmt::short(&e.node_id)) } } } }
            @if !e.previous_eval.is_empty() { dt { "Previous" } dd { a href=(link(&e.previous_eval)) { code { (fmt::short(&e.previous_eval)) } } } }
            @if !e.next_eval.is_empty() { dt { "Next" } dd { a href=(link(&e.next_eval)) { code { (fmt::short(&e.next_eval)) } } } }
            @if !e.blocked_eval.is_empty() { dt { "Blocked follow-up" } dd { a href=(link(&e.blocked_eval)) { code { (fmt::short(&e.blocked_eval)) } } } }
            dt { "Created" } dd { (fmt::time(e.create_time)) }
        }
        @for (group, m) in &e.failed_tg_allocs {
            section aria-labelledby=(format!("g-{}", fmt::enc(group))) {
                h2 id=(format!("g-{}", fmt::enc(group))) { "Why group " (group) " was not placed" }
                ul { @for r in scheduler::explain(m) { li { (r) } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::testdata::*;
    use serde_json::json;

    #[test]
    fn the_evaluations_list_says_why_placements_failed_and_filters_by_status() {
        let failed = json!({
            "ID": "e-failed", "Namespace": "default", "JobID": "big", "Status": "failed",
            "StatusDescription": "maximum attempts reached (5)", "CreateIndex": 2
        });
        let complete = json!({
            "ID": "e-complete", "Namespace": "default", "JobID": "big", "Status": "complete",
            "CreateIndex": 3,
            "FailedTGAllocs": {"main": {"NodesEvaluated": 2, "NodesAvailable": {"dc1": 2},
                "DimensionExhausted": {"cpu": 2}}}
        });
        let s = state(
            vec![job("big", "service", "pending", 1)],
            vec![],
            vec![failed, complete],
            vec![],
        );
        let html = render(&s, &EvalsQuery::default()).into_string();
        assert!(
            html.contains("failed: maximum attempts reached (5)"),
            "{html}"
        );
        assert!(
            html.contains("complete, some placements failed: group main: 2 nodes exhausted cpu"),
            "{html}"
        );
        let q = EvalsQuery {
            status: "failed".into(),
            ..Default::default()
        };
        assert!(!render(&s, &q).into_string().contains("e-comple"));
        let e = s.eval_table().get("e-complete").unwrap();
        let page = render_eval(e).into_string();
        assert!(
            page.contains("Why group main was not placed")
                && page.contains("<li>2 nodes exhausted cpu</li>"),
            "{page}"
        );
    }
}
