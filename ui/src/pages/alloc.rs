//! `/ui/allocations/<id>` (a unique ID prefix works too): status and descriptions, what it
//! asked for, task states with their events timeline, and the reschedule chain.

use crate::fmt;
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use server::state::StateStore;
use std::sync::Arc;

/// The allocation with this ID, or the only one whose ID starts with it.
pub fn find_alloc(state: &StateStore, id: &str) -> Option<Arc<api::Allocation>> {
    if let Some(a) = state.alloc_table().get(id) {
        return Some(a.clone());
    }
    if id.len() < 4 {
        return None;
    }
    let mut it = state
        .alloc_table()
        .range(id.to_string()..)
        .take_while(|(k, _)| k.starts_with(id));
    match (it.next(), it.next()) {
        (Some((_, a)), None) => Some(a.clone()),
        _ => None,
    }
}

pub async fn show(axum::Extension(srv): Srv, Path(id): Path<String>) -> Response {
    let state = srv.snapshot();
    match find_alloc(&state, &id) {
        Some(a) => crate::html(layout::page(
            &format!("Allocation {}", fmt::short(&a.id)),
            Nav::Jobs,
            state.index(),
            render(&state, &a),
        )),
        None => super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Allocation not found",
            &format!("There is no allocation {id:?} (or the prefix matches more than one)."),
        ),
    }
}

/// The allocations before and after `a` (by `PreviousAllocation` / `NextAllocation`),
/// oldest first, `a` included; at most 20 each way.
pub fn chain(state: &StateStore, a: &Arc<api::Allocation>) -> Vec<Arc<api::Allocation>> {
    let mut before = Vec::new();
    let mut cur = a.previous_allocation.clone();
    while !cur.is_empty() && before.len() < 20 {
        match state.alloc_table().get(&cur) {
            Some(p) => {
                cur = p.previous_allocation.clone();
                before.push(p.clone());
            }
            None => break,
        }
    }
    before.reverse();
    before.push(a.clone());
    let mut cur = a.next_allocation.clone();
    let mut after = 0;
    while !cur.is_empty() && after < 20 {
        match state.alloc_table().get(&cur) {
            Some(n) => {
                cur = n.next_allocation.clone();
                before.push(n.clone());
                after += 1;
            }
            None => break,
        }
    }
    before
}

pub fn render(state: &StateStore, a: &Arc<api::Allocation>) -> Markup {
    let ask = scheduler::usage::Ask::of_alloc(a);
    let chain = chain(state, a);
    html! {
        h1 { "Allocation " code { (fmt::short(&a.id)) } }
        dl class="facts" {
            dt { "ID" } dd { code { (a.id) } }
            dt { "Name" } dd { (a.name) }
            dt { "Job" } dd { a href=(fmt::job_href(&a.namespace, &a.job_id)) { (a.job_id) } " (group " (a.task_group) ")" }
            dt { "Node" } dd { a href=(fmt::node_href(&a.node_id)) { (if a.node_name.is_empty() { fmt::short(&a.node_id) } else { &a.node_name }) } }
            dt { "Client status" } dd { (fmt::status(&a.client_status)) @if !a.client_description.is_empty() { " — " (a.client_description) } }
            dt { "Desired status" } dd { (a.desired_status) @if !a.desired_description.is_empty() { " — " (a.desired_description) } }
            dt { "Asked for" } dd { (ask.cpu) " MHz CPU, " (ask.memory_mb) " MB memory, " (ask.disk_mb) " MB disk" }
            dt { "Created" } dd { (fmt::time(a.create_time)) }
            dt { "Modified" } dd { (fmt::time(a.modify_time)) }
            dt { "Evaluation" } dd { code { (fmt::short(&a.eval_id)) } }
        }
        @for (name, t) in &a.task_states {
            section aria-labelledby=(format!("task-{}", fmt::enc(name))) {
                h2 id=(format!("task-{}", fmt::enc(name))) { "Task " (name) }
                p {
                    "State: " (fmt::status(&t.state))
                    @if t.failed { " (failed)" }
                    " · restarts: " (t.restarts)
                    @if let Some(s) = &t.started_at { " · started " (s) }
                    @if let Some(f) = &t.finished_at { " · finished " (f) }
                    " · "
                    a href=(super::logs::logs_href(&a.id, name)) { "Logs of " (name) }
                }
                table {
                    caption { "Events of task " (name) ", newest first" }
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Type" } th scope="col" { "Message" } } }
                    tbody {
                        @for e in t.events.iter().rev().take(50) {
                            tr {
                                td { (fmt::time(e.time)) }
                                th scope="row" { (e.event_type) }
                                td { (event_message(e)) }
                            }
                        }
                        @if t.events.is_empty() { tr { td colspan="3" { "No events yet." } } }
                    }
                }
            }
        }
        @if a.task_states.is_empty() {
            p { "No task has reported a state yet." }
        }
        @if chain.len() > 1 || a.reschedule_tracker.as_ref().is_some_and(|r| !r.events.is_empty()) {
            table {
                caption { "Reschedule chain (oldest first)" }
                thead { tr { th scope="col" { "Allocation" } th scope="col" { "Node" } th scope="col" { "Status" } th scope="col" { "Created" } } }
                tbody {
                    @for c in &chain {
                        tr {
                            th scope="row" {
                                @if c.id == a.id { code { (fmt::short(&c.id)) } " (this one)" }
                                @else { a href=(fmt::alloc_href(&c.id)) { code { (fmt::short(&c.id)) } } }
                            }
                            td { (if c.node_name.is_empty() { fmt::short(&c.node_id) } else { &c.node_name }) }
                            td { (fmt::status(&c.client_status)) }
                            td { (fmt::time(c.create_time)) }
                        }
                    }
                }
            }
        }
    }
}

/// What a task event says, in its most readable field.
fn event_message(e: &api::TaskEvent) -> String {
    for s in [
        &e.display_message,
        &e.message,
        &e.driver_error,
        &e.restart_reason,
    ] {
        if !s.is_empty() {
            return s.clone();
        }
    }
    if e.exit_code != 0 || e.signal != 0 {
        return format!("exit code {}, signal {}", e.exit_code, e.signal);
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::testdata::*;

    #[test]
    fn the_reschedule_chain_links_both_ways_and_events_are_escaped() {
        let mut a1 = alloc("aaaa0001", "web", "n1", "failed", 1);
        a1["NextAllocation"] = "aaaa0002".into();
        let mut a2 = alloc("aaaa0002", "web", "n1", "running", 2);
        a2["PreviousAllocation"] = "aaaa0001".into();
        a2["TaskStates"] = serde_json::json!({"t": {"State": "running", "Events": [
            {"Type": "Started", "Time": 1, "DisplayMessage": "<b>hi</b>"}]}});
        let s = state(
            vec![job("web", "service", "running", 1)],
            vec![a1, a2],
            vec![],
            vec![],
        );
        let a = find_alloc(&s, "aaaa0002").unwrap();
        assert_eq!(chain(&s, &a).len(), 2);
        let html = render(&s, &a).into_string();
        assert!(html.contains("href=\"/ui/allocations/aaaa0001\""), "{html}");
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"), "{html}");
        // A prefix shared by two allocations finds neither.
        assert!(find_alloc(&s, "aaaa000").is_none());
        assert_eq!(find_alloc(&s, "aaaa0001").unwrap().id, "aaaa0001");
    }
}
