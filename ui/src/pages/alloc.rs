//! `/ui/allocations/<id>` (a unique ID prefix works too): status and descriptions, what it
//! asked for, task states with their events timeline, and the reschedule chain.

use crate::fmt;
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::{Path, Query};
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
        .from_id(id)
        .take_while(|a| a.id.starts_with(id));
    match (it.next(), it.next()) {
        (Some(a), None) => Some(a.clone()),
        _ => None,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AllocQuery {
    pub done: Option<String>,
}

/// What the allocation uses now, from `/v1/client/allocation/<id>/stats` through the
/// server's router (relayed to the node), or why it could not be read. Waits at most 2 s.
pub async fn fetch_usage(
    srv: &server::http::AppState,
    id: &str,
) -> Result<serde_json::Value, String> {
    let path = format!("/v1/client/allocation/{}/stats", fmt::enc(id));
    let call = crate::actions::call_v1(srv, axum::http::Method::GET, &path, None);
    match tokio::time::timeout(std::time::Duration::from_secs(2), call).await {
        Err(_) => Err("the node did not answer within 2 s".into()),
        Ok((status, body)) if status.is_success() => {
            serde_json::from_str(&body).map_err(|e| format!("unreadable answer: {e}"))
        }
        Ok((status, body)) => Err(format!("{status}: {body}")),
    }
}

pub async fn show(
    axum::Extension(srv): Srv,
    Path(id): Path<String>,
    Query(q): Query<AllocQuery>,
) -> Response {
    let state = srv.snapshot();
    match find_alloc(&state, &id) {
        Some(a) => {
            page(
                &srv,
                &state,
                &a,
                super::done_notice(q.done.as_deref()),
                None,
            )
            .await
        }
        None => super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Allocation not found",
            &format!("There is no allocation {id:?} (or the prefix matches more than one)."),
        ),
    }
}

/// What the allocation uses now when it runs (`None` when it does not).
async fn live_usage(
    srv: &server::http::AppState,
    a: &api::Allocation,
) -> Option<Result<serde_json::Value, String>> {
    if a.client_status == "running" {
        Some(fetch_usage(srv, &a.id).await)
    } else {
        None
    }
}

/// The allocation page as a response, with an action's notice or the output of a
/// command run from it.
pub async fn page(
    srv: &server::http::AppState,
    state: &StateStore,
    a: &Arc<api::Allocation>,
    notice: Option<&str>,
    exec: Option<&ExecRun>,
) -> Response {
    let usage = live_usage(srv, a).await;
    let body = html! {
        @if let Some(n) = notice { (layout::notice("ok", n)) }
        (render(state, a, usage.as_ref(), exec))
    };
    crate::html(layout::page(
        &format!("Allocation {}", fmt::short(&a.id)),
        Nav::Jobs,
        state.index(),
        body,
    ))
}

/// A command run from the page (**Run command**) and what it gave.
#[derive(Debug, Clone)]
pub struct ExecRun {
    pub task: String,
    pub command: String,
    /// The exit code and output, or why it did not run (an API sentence).
    pub result: Result<crate::actions::ExecOutput, String>,
}

/// The output of a Run command, escaped; never swapped by the live refresh (a re-fetch
/// of the page would lose it).
fn exec_result(run: &ExecRun) -> Markup {
    html! {
        section aria-labelledby="exec-h" id="exec-output" class="exec" data-no-live="" tabindex="-1" {
            h2 id="exec-h" { "Output of " code { (run.command) } @if !run.task.is_empty() { " in task " (run.task) } }
            @match &run.result {
                Ok(o) => {
                    p role="status" class=(if o.exit_code == 0 { "notice" } else { "notice error" }) {
                        "Exit code " strong id="exec-exit" { (o.exit_code) }
                        @if o.exit_code == 0 { " (success)" } @else { " (failure)" }
                    }
                    h3 { "Standard output" }
                    @if o.stdout.is_empty() { p class="help" { "(empty)" } }
                    @else { pre class="file" id="exec-stdout" tabindex="0" aria-label="Standard output" { (o.stdout) } }
                    h3 { "Standard error" }
                    @if o.stderr.is_empty() { p class="help" { "(empty)" } }
                    @else { pre class="file" id="exec-stderr" tabindex="0" aria-label="Standard error" { (o.stderr) } }
                }
                Err(e) => {
                    p class="notice error" role="alert" { "The command did not run: " (e) }
                }
            }
        }
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

/// "12 MHz CPU, 30 MB memory" from an `AllocResourceUsage`.
pub fn used_words(u: &serde_json::Value) -> String {
    let r = &u["ResourceUsage"];
    let mhz = r["CpuStats"]["TotalTicks"].as_f64().unwrap_or(0.0);
    let mem = r["MemoryStats"]["RSS"]
        .as_u64()
        .unwrap_or(0)
        .max(r["MemoryStats"]["Usage"].as_u64().unwrap_or(0));
    format!("{:.0} MHz CPU, {} MB memory", mhz, mem / (1024 * 1024))
}

/// The confirmed Stop / Restart / Signal forms of a live allocation.
fn actions(a: &api::Allocation, exec: Option<&ExecRun>) -> Markup {
    let href = fmt::alloc_href(&a.id);
    let tasks: Vec<&String> = a.task_states.keys().collect();
    html! {
        section aria-labelledby="actions-h" class="actions" {
            h2 id="actions-h" { "Actions" }
            p {
                a href=(format!("{href}/fs")) { "Browse the allocation's files" }
            }
            @if a.desired_status == "run" && !matches!(a.client_status.as_str(), "complete" | "failed" | "lost") {
                details {
                    summary { "Stop allocation…" }
                    form method="post" action=(format!("{href}/stop")) {
                        p { "Stopping " code { (fmt::short(&a.id)) } " stops its tasks; the scheduler places a replacement if the job still wants one." }
                        button type="submit" class="danger" { "Yes, stop the allocation" }
                    }
                }
                details {
                    summary { "Restart…" }
                    form method="post" action=(format!("{href}/restart")) {
                        p {
                            label for="restart-task" { "Task " }
                            select id="restart-task" name="task" {
                                option value="" { "all tasks" }
                                @for t in &tasks { option value=(t) { (t) } }
                            }
                        }
                        button type="submit" class="danger" { "Yes, restart" }
                    }
                }
                details {
                    summary { "Send a signal…" }
                    form method="post" action=(format!("{href}/signal")) {
                        p {
                            label for="signal-task" { "Task " }
                            select id="signal-task" name="task" {
                                option value="" { "all tasks" }
                                @for t in &tasks { option value=(t) { (t) } }
                            }
                            " "
                            label for="signal-name" { "Signal " }
                            select id="signal-name" name="signal" {
                                @for s in crate::actions::SIGNALS { option value=(s) { (s) } }
                            }
                        }
                        button type="submit" class="danger" { "Yes, send the signal" }
                    }
                }
                details open[exec.is_some()] {
                    summary { "Run command…" }
                    form method="post" action=(format!("{href}/exec")) {
                        p {
                            label for="exec-task" { "Task " }
                            select id="exec-task" name="task" {
                                @for t in &tasks {
                                    option value=(t) selected[exec.is_some_and(|r| &r.task == *t)] { (t) }
                                }
                            }
                        }
                        p {
                            label for="exec-command" { "Command " }
                            input id="exec-command" name="command" type="text" required size="50"
                                spellcheck="false" aria-describedby="exec-help"
                                value=(exec.map(|r| r.command.as_str()).unwrap_or(""));
                        }
                        p class="help" id="exec-help" {
                            "Runs to completion (at most 5 minutes) inside the task; words are split as a shell quotes them, without pipes or variables: use "
                            code { "sh -c '…'" } " for those."
                        }
                        button type="submit" { "Run command" }
                    }
                }
            }
        }
    }
}

/// The allocation page; `usage` is what `/v1/client/allocation/<id>/stats` said (or why
/// it could not be read), `None` when the allocation is not running.
pub fn render(
    state: &StateStore,
    a: &Arc<api::Allocation>,
    usage: Option<&Result<serde_json::Value, String>>,
    exec: Option<&ExecRun>,
) -> Markup {
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
            dt { "Using now" } dd {
                @match usage {
                    Some(Ok(u)) => (used_words(u)),
                    Some(Err(e)) => { "unknown: " (e) }
                    None => "nothing (the allocation is not running)",
                }
            }
            dt { "Created" } dd { (fmt::time(a.create_time)) }
            dt { "Modified" } dd { (fmt::time(a.modify_time)) }
            dt { "Evaluation" } dd { code { (fmt::short(&a.eval_id)) } }
        }
        @if let Some(run) = exec { (exec_result(run)) }
        (actions(a, exec))
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
    let d = e.detail();
    for s in [
        e.display_message.as_str(),
        &d.message,
        &d.driver_error,
        &d.restart_reason,
    ] {
        if !s.is_empty() {
            return s.to_string();
        }
    }
    let e = d;
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
        let html = render(&s, &a, None, None).into_string();
        assert!(html.contains("href=\"/ui/allocations/aaaa0001\""), "{html}");
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"), "{html}");
        // A prefix shared by two allocations finds neither.
        assert!(find_alloc(&s, "aaaa000").is_none());
        assert_eq!(find_alloc(&s, "aaaa0001").unwrap().id, "aaaa0001");
    }

    #[test]
    fn actions_are_confirmed_forms_and_usage_is_shown() {
        let mut a1 = alloc("bbbb0001", "web", "n1", "running", 1);
        a1["TaskStates"] = serde_json::json!({"<t>": {"State": "running"}});
        let s = state(
            vec![job("web", "service", "running", 1)],
            vec![a1],
            vec![],
            vec![],
        );
        let a = find_alloc(&s, "bbbb0001").unwrap();
        let u = serde_json::json!({"ResourceUsage": {"CpuStats": {"TotalTicks": 12.4},
            "MemoryStats": {"RSS": 31_457_280}}});
        let html = render(&s, &a, Some(&Ok(u)), None).into_string();
        assert!(html.contains("12 MHz CPU, 30 MB memory"), "{html}");
        for action in ["stop", "restart", "signal", "fs"] {
            assert!(
                html.contains(&format!("/ui/allocations/bbbb0001/{action}")),
                "{action}: {html}"
            );
        }
        assert!(html.contains("<option value=\"&lt;t&gt;\">"), "{html}");
        assert!(html.contains("SIGUSR1"));
        let html = render(&s, &a, Some(&Err("<nope>".into())), None).into_string();
        assert!(html.contains("unknown: &lt;nope&gt;"), "{html}");
        let run = ExecRun {
            task: "<t>".into(),
            command: "echo '<i>'".into(),
            result: Ok(crate::actions::ExecOutput {
                exit_code: 2,
                stdout: "<i>\n".into(),
                stderr: "</pre><script>".into(),
            }),
        };
        let html = render(&s, &a, None, Some(&run)).into_string();
        assert!(html.contains("/ui/allocations/bbbb0001/exec"), "{html}");
        assert!(
            html.contains("Exit code <strong id=\"exec-exit\">2</strong>"),
            "{html}"
        );
        assert!(html.contains("&lt;i&gt;\n</pre>"), "{html}");
        assert!(html.contains("&lt;/pre&gt;&lt;script&gt;"), "{html}");
        assert!(html.contains("value=\"echo '&lt;i&gt;'\""), "{html}");
        assert!(
            html.contains("<option value=\"&lt;t&gt;\" selected>"),
            "{html}"
        );
        assert!(html.contains("data-no-live"), "{html}");
    }
}
