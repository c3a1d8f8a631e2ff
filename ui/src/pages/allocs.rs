//! `/ui/allocations[?status=&page=]`: the cluster-wide allocations activity list, the most
//! recently changed first (by modify index), filtered by client status, paged.

use crate::fmt::{self, paged, pager};
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use server::state::StateStore;
use std::sync::Arc;

pub const PER_PAGE: usize = 50;
const STATUSES: [&str; 6] = [
    "pending", "running", "complete", "failed", "lost", "unknown",
];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct AllocsQuery {
    pub status: String,
    pub page: Option<String>,
}

pub async fn list(axum::Extension(srv): Srv, Query(q): Query<AllocsQuery>) -> Response {
    let state = srv.snapshot();
    crate::html(layout::page(
        "Allocations",
        Nav::Allocations,
        state.index(),
        render(&state, &q),
    ))
}

pub fn render(state: &StateStore, q: &AllocsQuery) -> Markup {
    let mut allocs: Vec<&Arc<api::Allocation>> = state
        .alloc_table()
        .values()
        .filter(|a| q.status.is_empty() || a.client_status == q.status)
        .collect();
    allocs.sort_unstable_by(|a, b| {
        b.modify_index
            .cmp(&a.modify_index)
            .then(b.create_index.cmp(&a.create_index))
            .then(a.id.cmp(&b.id))
    });
    let page = fmt::page_number(&q.page);
    let (shown, pages) = paged(&allocs, page, PER_PAGE);
    html! {
        h1 { "Allocations" }
        form method="get" action="/ui/allocations" class="filters" {
            label for="alloc-status" { "Status " }
            select id="alloc-status" name="status" {
                option value="" selected[q.status.is_empty()] { "any" }
                @for s in STATUSES { option value=(s) selected[q.status == s] { (s) } }
            }
            " "
            button type="submit" { "Filter" }
        }
        table {
            caption { (allocs.len()) " allocation" (if allocs.len() == 1 { "" } else { "s" }) ", most recently changed first" }
            (fmt::thead(&["ID", "Job", "Group", "Node", "Desired", "Status", "Modified"]))
            tbody {
                @for a in shown {
                    tr {
                        th scope="row" { a href=(fmt::alloc_href(&a.id)) { code { (fmt::short(&a.id)) } } }
                        td { a href=(fmt::job_href(&a.namespace, &a.job_id)) { (a.job_id) } }
                        td { (a.task_group) }
                        td { a href=(fmt::node_href(&a.node_id)) { (if a.node_name.is_empty() { fmt::short(&a.node_id) } else { &a.node_name }) } }
                        td { (a.desired_status) }
                        td { (fmt::status(&a.client_status)) }
                        td { (fmt::time(a.modify_time)) }
                    }
                }
                @if allocs.is_empty() { tr { td colspan="7" { "No allocations." } } }
            }
        }
        (pager("Allocations", page, pages, |p| format!("/ui/allocations{}", fmt::query(&[("status", &q.status), ("page", &p.to_string())]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::testdata::*;

    #[test]
    fn newest_changes_first_filtered_and_paged() {
        let mut allocs: Vec<serde_json::Value> = (0..60)
            .map(|i| {
                let mut a = alloc(&format!("id{i:03}"), "<web>", "n1", "running", i);
                a["ModifyIndex"] = i.into();
                a
            })
            .collect();
        allocs[3]["ModifyIndex"] = 1000.into();
        allocs[3]["ClientStatus"] = "failed".into();
        let s = state(vec![], allocs, vec![], vec![]);
        let html = render(&s, &AllocsQuery::default()).into_string();
        let first = html.find("id003").unwrap();
        assert!(first < html.find("id059").unwrap(), "{html}");
        assert!(
            html.contains("60 allocations") && html.contains("Page 1 of 2"),
            "{html}"
        );
        assert!(html.contains("&lt;web&gt;") && !html.contains("<web>"));
        let q = AllocsQuery {
            status: "failed".into(),
            page: None,
        };
        let html = render(&s, &q).into_string();
        assert!(
            html.contains("1 allocation,") && html.contains("id003"),
            "{html}"
        );
        let q = AllocsQuery {
            status: String::new(),
            page: Some("2".into()),
        };
        let html = render(&s, &q).into_string();
        assert!(html.contains("id000") && !html.contains("id059"), "{html}");
    }
}
