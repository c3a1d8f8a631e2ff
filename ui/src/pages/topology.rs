//! `/ui/topology[?page=N]`: every client node with CPU and memory bars (`<meter>`, no
//! inline style) of what its live allocations hold against what it can allocate, the
//! jobs that hold it, and its status in words; cluster totals first, nodes paged.

use crate::fmt::{self, paged, pager};
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use server::state::StateStore;
use std::collections::BTreeMap;

pub const NODES_PER_PAGE: usize = 50;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TopologyQuery {
    pub page: Option<String>,
}

pub async fn show(axum::Extension(srv): Srv, Query(q): Query<TopologyQuery>) -> Response {
    let state = srv.snapshot();
    crate::html(layout::page(
        "Topology",
        Nav::Topology,
        state.index(),
        render(&state, &q),
    ))
}

/// A node's status in words: "ready", "ready, ineligible", "ready, draining", "down".
pub fn status_words(n: &api::Node) -> String {
    let mut s = n.status.clone();
    if n.drain {
        s.push_str(", draining");
    } else if n.scheduling_eligibility != api::NODE_ELIGIBLE {
        s.push_str(", ineligible");
    }
    s
}

/// What each job's live allocations hold on `node`: job -> (cpu MHz, memory MB), the
/// biggest CPU holder first.
pub fn by_job(state: &StateStore, node: &str) -> Vec<(String, i64, i64)> {
    let mut m: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for a in state.allocs_for_node(node).iter().filter(|a| !a.terminal()) {
        let ask = scheduler::usage::Ask::of_alloc(a);
        let e = m.entry(a.job_id.to_string()).or_default();
        e.0 += ask.cpu;
        e.1 += ask.memory_mb;
    }
    let mut v: Vec<(String, i64, i64)> = m.into_iter().map(|(j, (c, mm))| (j, c, mm)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn pct(used: i64, of: i64) -> i64 {
    if of <= 0 {
        0
    } else {
        used * 100 / of
    }
}

fn bar(label: &str, used: i64, of: i64, unit: &str) -> Markup {
    html! {
        span class="bar" {
            (label) " "
            meter min="0" max=(of.max(1)) value=(used.clamp(0, of.max(1)))
                aria-label=(format!("{label}: {used} of {of} {unit} allocated")) {}
            " " (used) " / " (of) " " (unit) " (" (pct(used, of)) "%)"
        }
    }
}

pub fn render(state: &StateStore, q: &TopologyQuery) -> Markup {
    let nodes: Vec<&std::sync::Arc<api::Node>> = state.node_table().values().collect();
    let (mut cpu_used, mut cpu_all, mut mem_used, mut mem_all) = (0i64, 0i64, 0i64, 0i64);
    for n in &nodes {
        let (c, m, _) = n.allocatable();
        cpu_all += c;
        mem_all += m;
    }
    // The totals need every live allocation once; each shown node reads only its own.
    for a in state.alloc_table().values().filter(|a| !a.terminal()) {
        let ask = scheduler::usage::Ask::of_alloc(a);
        cpu_used += ask.cpu;
        mem_used += ask.memory_mb;
    }
    let page = fmt::page_number(&q.page);
    let (shown, pages) = paged(&nodes, page, NODES_PER_PAGE);
    html! {
        h1 { "Topology" }
        p class="totals" {
            (nodes.len()) (if nodes.len() == 1 { " client node · " } else { " client nodes · " })
            (bar("CPU", cpu_used, cpu_all, "MHz")) " · "
            (bar("Memory", mem_used, mem_all, "MB"))
        }
        table class="topology" {
            caption { "Client nodes, what their allocations hold, by job" }
            (fmt::thead(&["Node", "Status", "CPU (allocated / allocatable)", "Memory (allocated / allocatable)", "Jobs (MHz, MB)"]))
            tbody {
                @for n in shown {
                    @let (c, m, _) = n.allocatable();
                    @let u = super::clients::usage_of(state, &n.id);
                    @let jobs = if u.allocs > 0 { by_job(state, &n.id) } else { Vec::new() };
                    tr {
                        th scope="row" { a href=(fmt::node_href(&n.id)) { (if n.name.is_empty() { fmt::short(&n.id) } else { &n.name }) } }
                        td { (fmt::status(&status_words(n))) }
                        td { (bar("CPU", u.cpu, c, "MHz")) }
                        td { (bar("Memory", u.memory_mb, m, "MB")) }
                        td {
                            @if jobs.is_empty() { "none" }
                            @for (i, (job, jc, jm)) in jobs.iter().take(5).enumerate() {
                                @if i > 0 { ", " }
                                (job) " (" (jc) ", " (jm) ")"
                            }
                            @if jobs.len() > 5 { ", and " (jobs.len() - 5) " more" }
                        }
                    }
                }
                @if nodes.is_empty() { tr { td colspan="5" { "No client nodes have registered." } } }
            }
        }
        (pager("Nodes", page, pages, |p| format!("/ui/topology{}", fmt::query(&[("page", &p.to_string())]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::testdata::*;

    #[test]
    fn nodes_show_bars_by_job_and_are_paged() {
        let mut nodes: Vec<serde_json::Value> = (0..120)
            .map(|i| node(&format!("n{i:03}"), &format!("node-{i:03}")))
            .collect();
        nodes[0]["Drain"] = true.into();
        let s = state(
            vec![job("<web>", "service", "running", 2)],
            vec![
                alloc("a1", "<web>", "n000", "running", 1),
                alloc("a2", "<web>", "n000", "running", 2),
            ],
            vec![],
            nodes,
        );
        let html = render(&s, &TopologyQuery::default()).into_string();
        assert!(html.contains("120 client nodes"), "{html}");
        assert!(html.contains("&lt;web&gt; (200, 128)"), "{html}");
        assert!(html.contains("ready, draining"), "{html}");
        assert!(html.contains("200 / 4000 MHz (5%)"), "{html}");
        assert!(html.contains("<meter"), "{html}");
        assert!(html.contains("Page 1 of 3"), "{html}");
        assert!(!html.contains("node-050"));
        let q = TopologyQuery {
            page: Some("3".into()),
        };
        let html = render(&s, &q).into_string();
        assert!(
            html.contains("node-119") && !html.contains("node-000"),
            "{html}"
        );
    }
}
