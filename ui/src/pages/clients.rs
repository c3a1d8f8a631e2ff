//! `/ui/clients` and `/ui/clients/<id>`: status, eligibility, drain (with time to its
//! deadline), resources allocated vs allocatable; the client page has the Eligible toggle
//! and the Drain form (deadline, force, ignore system jobs), both confirmed.

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
pub const ALLOCS_PER_PAGE: usize = 25;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ClientsQuery {
    pub status: String,
    pub page: Option<String>,
    pub done: Option<String>,
    pub error: Option<String>,
}

/// What the live allocations on a node hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub allocs: u32,
    pub cpu: i64,
    pub memory_mb: i64,
}

/// What the non-terminal allocations on one node hold (through the node's index: a page
/// of nodes costs its own allocations, not the cluster's).
pub fn usage_of(state: &StateStore, node_id: &str) -> Usage {
    let mut u = Usage::default();
    for a in state
        .allocs_for_node(node_id)
        .iter()
        .filter(|a| !a.terminal())
    {
        let ask = scheduler::usage::Ask::of_alloc(a);
        u.allocs += 1;
        u.cpu += ask.cpu;
        u.memory_mb += ask.memory_mb;
    }
    u
}

/// "no", "draining (deadline in 5m0s)", "draining (forced)", "draining (no deadline)".
pub fn drain_words(n: &api::Node, now: i64) -> String {
    match &n.drain_strategy {
        Some(d) if n.drain => {
            let mut s = if d.deadline < 0 {
                "draining (forced)".to_string()
            } else if d.force_deadline > 0 {
                format!(
                    "draining (deadline in {})",
                    fmt::duration(d.force_deadline - now)
                )
            } else {
                "draining (no deadline)".to_string()
            };
            if d.ignore_system_jobs {
                s.push_str(", system jobs stay");
            }
            s
        }
        _ if n.drain => "draining".to_string(),
        _ => "no".to_string(),
    }
}

fn node_label(n: &api::Node) -> &str {
    if n.name.is_empty() {
        fmt::short(&n.id)
    } else {
        &n.name
    }
}

pub async fn list(axum::Extension(srv): Srv, Query(q): Query<ClientsQuery>) -> Response {
    let state = srv.snapshot();
    crate::html(layout::page(
        "Clients",
        Nav::Clients,
        state.index(),
        render_list(&state, &q, server::now_nanos()),
    ))
}

pub fn render_list(state: &StateStore, q: &ClientsQuery, now: i64) -> Markup {
    let nodes: Vec<&Arc<api::Node>> = state
        .node_table()
        .values()
        .filter(|n| q.status.is_empty() || n.status == q.status)
        .collect();
    let page = fmt::page_number(&q.page);
    let (shown, pages) = paged(&nodes, page, PER_PAGE);
    html! {
        h1 { "Clients" }
        form class="facets" method="get" action="/ui/clients" aria-label="Filter clients" {
            (super::jobs::select("Status", "status", &q.status, &["ready", "initializing", "down", "disconnected"]))
            button type="submit" { "Apply" }
        }
        table {
            caption { (nodes.len()) " client" (if nodes.len() == 1 { "" } else { "s" }) }
            (fmt::thead(&["Name", "ID", "Datacenter", "Class", "Status", "Eligibility", "Drain", "#Allocations", "CPU MHz (allocated / allocatable)", "Memory MB (allocated / allocatable)"]))
            tbody {
                @for n in shown {
                    @let u = usage_of(state, &n.id);
                    @let (cpu, mem, _) = n.allocatable();
                    tr {
                        th scope="row" { a href=(fmt::node_href(&n.id)) { (node_label(n)) } }
                        td { code { (fmt::short(&n.id)) } }
                        td { (n.datacenter) }
                        td { (n.node_class) }
                        td { (fmt::status(&n.status)) }
                        td { (n.scheduling_eligibility) }
                        td { (drain_words(n, now)) }
                        td class="num" { (u.allocs) }
                        td { (u.cpu) " / " (cpu) }
                        td { (u.memory_mb) " / " (mem) }
                    }
                }
                @if shown.is_empty() { tr { td colspan="10" { "No clients." } } }
            }
        }
        (pager("Clients", page, pages, |n| format!("/ui/clients{}", fmt::query(&[("status", &q.status), ("page", &n.to_string())]))))
    }
}

pub async fn show(
    axum::Extension(srv): Srv,
    Path(id): Path<String>,
    Query(q): Query<ClientsQuery>,
) -> Response {
    let state = srv.snapshot();
    let node = state.node_table().get(&id).cloned().or_else(|| {
        let mut it = state
            .node_table()
            .range(id.clone()..)
            .take_while(|(k, _)| k.starts_with(&id));
        match (it.next(), it.next()) {
            (Some((_, n)), None) if id.len() >= 4 => Some(n.clone()),
            _ => None,
        }
    });
    match node {
        Some(n) => crate::html(layout::page(
            &format!("Client {}", node_label(&n)),
            Nav::Clients,
            state.index(),
            render_node(&state, &n, &q, server::now_nanos()),
        )),
        None => super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Client not found",
            &format!("There is no client node {id:?}."),
        ),
    }
}

/// The allocations a drain still has to move off `n`: those the client still runs
/// (a migrating one stays until its replacement is placed and it stops), system jobs
/// left out when the drain ignores them.
pub fn drain_remaining(state: &StateStore, n: &api::Node) -> Vec<Arc<api::Allocation>> {
    let ignore_system = n
        .drain_strategy
        .as_ref()
        .is_some_and(|d| d.ignore_system_jobs);
    let mut left: Vec<Arc<api::Allocation>> = state
        .allocs_for_node(&n.id)
        .into_iter()
        .filter(|a| !a.client_terminal())
        .filter(|a| !(ignore_system && a.job.as_ref().is_some_and(|j| j.job_type == "system")))
        .collect();
    left.sort_by_key(|a| std::cmp::Reverse(a.create_index));
    left
}

/// The live drain monitor: what is left to migrate and the time to the deadline while a
/// drain runs, how the last one ended otherwise. `/ui/live` re-renders it as it moves.
pub fn drain_monitor(state: &StateStore, n: &api::Node, now: i64) -> Markup {
    let last = n.last_drain.as_ref();
    if !n.drain && last.is_none() {
        return html! {};
    }
    html! {
        section aria-labelledby="drain-h" class="drain-monitor" aria-live="polite" {
            h2 id="drain-h" { "Drain" }
            @if n.drain {
                @let left = drain_remaining(state, n);
                p class="drain-state" {
                    strong { "Draining: " }
                    @if left.is_empty() { "no allocation left to migrate; finishing." }
                    @else if left.len() == 1 { "1 allocation left to migrate" }
                    @else { (left.len()) " allocations left to migrate" }
                    @if let Some(d) = &n.drain_strategy {
                        @if d.deadline < 0 { " · forced: all are being stopped now" }
                        @else if d.force_deadline > 0 {
                            " · deadline in " (fmt::duration((d.force_deadline - now).max(0)))
                            " (" (fmt::time(d.force_deadline)) ")"
                        }
                        @else { " · no deadline" }
                        @if d.started_at > 0 { " · started " (fmt::time(d.started_at)) }
                    }
                    "."
                }
                @if !left.is_empty() {
                    table {
                        caption { "Allocations left to migrate" }
                        (fmt::thead(&["ID", "Job", "Desired", "Status"]))
                        tbody {
                            @for a in left.iter().take(50) {
                                tr {
                                    th scope="row" { a href=(fmt::alloc_href(&a.id)) { code { (fmt::short(&a.id)) } } }
                                    td { a href=(fmt::job_href(&a.namespace, &a.job_id)) { (a.job_id) } }
                                    td { (a.desired_status) @if a.desired_status == "run" { " (waiting to be migrated)" } @else { " (migrating)" } }
                                    td { (fmt::status(&a.client_status)) }
                                }
                            }
                        }
                    }
                }
            } @else if let Some(l) = last {
                p class="drain-state" {
                    @match l.status.as_str() {
                        "complete" => { strong { "Drain complete" } ": no allocation is left to migrate" }
                        "canceled" => { strong { "Drain canceled" } }
                        other => { "Last drain: " (other) }
                    }
                    @if l.updated_at > 0 { " (" (fmt::time(l.updated_at)) ")" }
                    "."
                }
            }
        }
    }
}

pub fn render_node(state: &StateStore, n: &api::Node, q: &ClientsQuery, now: i64) -> Markup {
    let href = fmt::node_href(&n.id);
    let mut allocs = state.allocs_for_node(&n.id);
    allocs.sort_by_key(|a| std::cmp::Reverse(a.create_index));
    let page = fmt::page_number(&q.page);
    let (shown, pages) = paged(&allocs, page, ALLOCS_PER_PAGE);
    let u = usage_of(state, &n.id);
    let (cpu, mem, disk) = n.allocatable();
    let eligible = n.scheduling_eligibility == api::NODE_ELIGIBLE;
    html! {
        h1 { "Client " (node_label(n)) }
        @if let Some(d) = super::done_notice(q.done.as_deref()) { (layout::notice("ok", d)) }
        dl class="facts" {
            dt { "ID" } dd { code { (n.id) } }
            dt { "Status" } dd { (fmt::status(&n.status)) @if !n.status_description.is_empty() { " — " (n.status_description) } }
            dt { "Eligibility" } dd { (n.scheduling_eligibility) }
            dt { "Drain" } dd { (drain_words(n, now)) }
            dt { "Datacenter" } dd { (n.datacenter) }
            dt { "Node pool" } dd { (n.node_pool) }
            dt { "Class" } dd { (n.node_class) }
            dt { "Address" } dd { (n.http_addr) }
            dt { "CPU" } dd { (u.cpu) " of " (cpu) " MHz allocated" }
            dt { "Memory" } dd { (u.memory_mb) " of " (mem) " MB allocated" }
            dt { "Disk" } dd { (disk) " MB allocatable" }
        }
        (drain_monitor(state, n, now))
        section aria-labelledby="node-actions" class="actions" {
            h2 id="node-actions" { "Actions" }
            details {
                summary { (if eligible { "Mark ineligible…" } else { "Mark eligible…" }) }
                form method="post" action=(format!("{href}/eligibility")) {
                    input type="hidden" name="eligibility" value=(if eligible { api::NODE_INELIGIBLE } else { api::NODE_ELIGIBLE });
                    p { (if eligible { "An ineligible node takes no new allocations; those running stay." } else { "An eligible node takes new allocations." }) }
                    button type="submit" { (if eligible { "Yes, mark ineligible" } else { "Yes, mark eligible" }) }
                }
            }
            @if n.drain {
                details {
                    summary { "Stop draining…" }
                    form method="post" action=(format!("{href}/drain")) {
                        input type="hidden" name="disable" value="true";
                        p { "Allocations already migrated stay where they are; the node stays ineligible." }
                        button type="submit" { "Yes, stop the drain" }
                    }
                }
            }
            details {
                summary { (if n.drain { "Update the drain…" } else { "Drain…" }) }
                form method="post" action=(format!("{href}/drain")) {
                    p {
                        label for="drain-deadline" { "Deadline " }
                        input id="drain-deadline" name="deadline" value="1h" size="8" aria-describedby="drain-deadline-help";
                        span id="drain-deadline-help" class="help" { " e.g. 30m or 1h; 0 for none. Allocations still there at the deadline are stopped." }
                    }
                    p { label { input type="checkbox" name="force" value="true"; " Force: stop all allocations now" } }
                    p { label { input type="checkbox" name="ignore_system_jobs" value="true"; " Ignore system jobs (they keep running)" } }
                    button type="submit" class="danger" { "Yes, drain " (node_label(n)) }
                }
            }
        }
        table {
            caption { "Allocations on this node (" (allocs.len()) ", newest first)" }
            (fmt::thead(&["ID", "Job", "Group", "Desired", "Status", "Created"]))
            tbody {
                @for a in shown {
                    tr {
                        th scope="row" { a href=(fmt::alloc_href(&a.id)) { code { (fmt::short(&a.id)) } } }
                        td { a href=(fmt::job_href(&a.namespace, &a.job_id)) { (a.job_id) } }
                        td { (a.task_group) }
                        td { (a.desired_status) }
                        td { (fmt::status(&a.client_status)) }
                        td { (fmt::time(a.create_time)) }
                    }
                }
                @if allocs.is_empty() { tr { td colspan="6" { "No allocations." } } }
            }
        }
        (pager("Allocations", page, pages, |p| format!("{href}{}", fmt::query(&[("page", &p.to_string())]))))
        table {
            caption { "Node events (newest first)" }
            thead { tr { th scope="col" { "Time" } th scope="col" { "Subsystem" } th scope="col" { "Message" } } }
            tbody {
                @for e in n.events.iter().rev().take(20) {
                    tr { td { (fmt::time(e.timestamp)) } td { (e.subsystem) } td { (e.message) } }
                }
            }
        }
        details {
            summary { "Drivers and attributes" }
            table {
                caption { "Drivers" }
                thead { tr { th scope="col" { "Driver" } th scope="col" { "Detected" } th scope="col" { "Healthy" } } }
                tbody {
                    @for (name, d) in &n.drivers {
                        tr { th scope="row" { (name) } td { (if d.detected { "yes" } else { "no" }) } td { (if d.healthy { "yes" } else { "no" }) } }
                    }
                }
            }
            table {
                caption { "Attributes" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                tbody {
                    @for (k, v) in &n.attributes { tr { th scope="row" { (k) } td { (v) } } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::testdata::*;

    #[test]
    fn allocated_counts_only_live_allocations_of_the_node() {
        let mut stopped = alloc("a3", "web", "n1", "complete", 3);
        stopped["DesiredStatus"] = "stop".into();
        let s = state(
            vec![job("web", "service", "running", 2)],
            vec![
                alloc("a1", "web", "n1", "running", 1),
                alloc("a2", "web", "n1", "pending", 2),
                stopped,
            ],
            vec![],
            vec![node("n1", "<i>box</i>")],
        );
        let html = render_list(&s, &ClientsQuery::default(), 0).into_string();
        assert!(html.contains("200 / 4000"), "{html}");
        assert!(html.contains("128 / 8192"), "{html}");
        assert!(html.contains("&lt;i&gt;box&lt;/i&gt;"), "{html}");
    }

    #[test]
    fn drain_says_how_long_to_the_deadline() {
        let mut n: api::Node = serde_json::from_value(node("n1", "x")).unwrap();
        n.drain = true;
        n.drain_strategy = Some(api::DrainStrategy {
            deadline: 600_000_000_000,
            force_deadline: 900_000_000_000,
            ..Default::default()
        });
        assert_eq!(
            drain_words(&n, 600_000_000_000),
            "draining (deadline in 5m)"
        );
    }

    #[test]
    fn the_drain_monitor_counts_what_is_left_and_says_when_it_is_done() {
        let mut nv = node("n1", "x");
        nv["Drain"] = true.into();
        nv["DrainStrategy"] = serde_json::json!({"Deadline": 600_000_000_000i64,
            "ForceDeadline": 900_000_000_000i64, "StartedAt": 300_000_000_000i64});
        let mut moving = alloc("a2", "<web>", "n1", "running", 2);
        moving["DesiredStatus"] = "stop".into();
        let s = state(
            vec![job("<web>", "service", "running", 2)],
            vec![
                alloc("a1", "<web>", "n1", "running", 1),
                moving,
                alloc("a3", "<web>", "n1", "complete", 3),
            ],
            vec![],
            vec![nv.clone()],
        );
        let n = s.node_table().get("n1").unwrap().clone();
        assert_eq!(drain_remaining(&s, &n).len(), 2);
        let html = drain_monitor(&s, &n, 600_000_000_000).into_string();
        assert!(html.contains("2 allocations left to migrate"), "{html}");
        assert!(html.contains("deadline in 5m"), "{html}");
        assert!(
            html.contains("(migrating)") && html.contains("&lt;web&gt;"),
            "{html}"
        );
        nv["Drain"] = false.into();
        nv["DrainStrategy"] = serde_json::Value::Null;
        nv["LastDrain"] = serde_json::json!({"Status": "complete", "UpdatedAt": 1});
        let s = state(vec![], vec![], vec![], vec![nv]);
        let n = s.node_table().get("n1").unwrap().clone();
        let html = drain_monitor(&s, &n, 0).into_string();
        assert!(html.contains("Drain complete"), "{html}");
        let plain: api::Node = serde_json::from_value(node("n2", "y")).unwrap();
        assert!(drain_monitor(&s, &plain, 0).into_string().is_empty());
    }
}
