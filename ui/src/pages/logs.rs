//! `/ui/allocations/<id>/<task>/logs[?type=stderr]`: a task's stdout or stderr from the
//! end, following live. The script (`app.js`, `initLogs`) streams the agent's
//! `/v1/client/fs/logs/<alloc>?follow=true&origin=end&plain=true` through the server (which
//! relays it to the agent running the allocation), keeps at most [`MAX_LINES`] lines in
//! the page, and offers Pause, a regex Filter over old and new lines, Wrap and Download
//! of the whole file. Without JavaScript the page links to the whole file.

use crate::fmt;
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use server::state::StateStore;

/// Lines kept in the page; older ones are dropped (Download has them all).
pub const MAX_LINES: usize = 10_000;
/// How far before the end a followed log starts, in bytes.
pub const TAIL_BYTES: u64 = 256 * 1024;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct LogsQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `/v1/client/fs/logs/<alloc>?...`: the followed tail (`follow`) or the whole file.
pub fn log_url(alloc: &api::Allocation, task: &str, kind: &str, follow: bool) -> String {
    let offset = TAIL_BYTES.to_string();
    let q = if follow {
        fmt::query(&[
            ("task", task),
            ("type", kind),
            ("namespace", alloc.namespace.as_str()),
            ("follow", "true"),
            ("origin", "end"),
            ("offset", &offset),
            ("plain", "true"),
        ])
    } else {
        fmt::query(&[
            ("task", task),
            ("type", kind),
            ("namespace", alloc.namespace.as_str()),
            ("origin", "start"),
            ("plain", "true"),
        ])
    };
    format!("/v1/client/fs/logs/{}{q}", fmt::enc(&alloc.id))
}

/// The tasks an allocation runs (from its job's group, else from its task states).
pub fn task_names(state: &StateStore, a: &api::Allocation) -> Vec<String> {
    let group_tasks = |j: &api::Job| {
        j.task_groups
            .iter()
            .find(|g| g.name == a.task_group)
            .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
    };
    let from_job: Vec<String> = a
        .job
        .as_deref()
        .and_then(group_tasks)
        .or_else(|| {
            let ns = if a.namespace.is_empty() {
                api::DEFAULT_NAMESPACE
            } else {
                &a.namespace
            };
            state.job(ns, &a.job_id).as_deref().and_then(group_tasks)
        })
        .unwrap_or_default();
    if !from_job.is_empty() {
        return from_job;
    }
    a.task_states.keys().cloned().collect()
}

pub fn logs_href(alloc_id: &str, task: &str) -> String {
    format!("{}/{}/logs", fmt::alloc_href(alloc_id), fmt::enc(task))
}

pub fn render(a: &api::Allocation, task: &str, kind: &str) -> Markup {
    let other = if kind == "stderr" { "stdout" } else { "stderr" };
    let here = logs_href(&a.id, task);
    let file = format!("{}-{task}.{kind}.log", fmt::short(&a.id));
    html! {
        div data-no-live="" {
            h1 { "Logs of " (task) " " span class="help" { "(allocation " a href=(fmt::alloc_href(&a.id)) { code { (fmt::short(&a.id)) } } ")" } }
            nav class="tabs" aria-label="Log streams" {
                @for k in ["stdout", "stderr"] {
                    @if k == kind {
                        a href=(format!("{here}?type={k}")) aria-current="page" { (k) }
                    } @else {
                        a href=(format!("{here}?type={k}")) { (k) }
                    }
                }
                " · "
                a id="log-download" href=(log_url(a, task, kind, false)) download=(file) { "Download the whole " (kind) " file" }
            }
            div class="logctl" id="log-controls" hidden {
                button type="button" id="log-pause" aria-pressed="false" { "Pause" }
                label for="log-filter" { "Filter (regular expression)" }
                input id="log-filter" type="search" aria-describedby="log-count";
                label { input type="checkbox" id="log-wrap"; " Wrap" }
                span id="log-count" class="help" role="status" aria-live="polite" {}
            }
            p class="help" id="log-nojs" {
                "Following needs JavaScript; the link above has the whole file. The "
                a href=(format!("{here}?type={other}")) { (other) } " stream is on its own page."
            }
            pre id="log" class="log" tabindex="0" aria-label=(format!("{kind} of {task}"))
                data-src=(log_url(a, task, kind, true)) data-max-lines=(MAX_LINES) {}
        }
    }
}

pub async fn show(
    axum::Extension(srv): Srv,
    Path((id, task)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Response {
    let state = srv.snapshot();
    let Some(a) = super::alloc::find_alloc(&state, &id) else {
        return super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Allocation not found",
            &format!("There is no allocation {id:?} (or the prefix matches more than one)."),
        );
    };
    if !task_names(&state, &a).contains(&task) {
        return super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Task not found",
            &format!(
                "Allocation {} has no task {task:?}; its tasks are: {}.",
                fmt::short(&a.id),
                task_names(&state, &a).join(", ")
            ),
        );
    }
    let kind = match q.kind.as_deref() {
        Some("stderr") => "stderr",
        _ => "stdout",
    };
    crate::html(layout::page(
        &format!("Logs of {task} ({kind})"),
        Nav::Jobs,
        state.index(),
        render(&a, &task, kind),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::testdata::*;

    #[test]
    fn the_log_page_follows_from_the_end_through_the_server_and_downloads_the_whole_file() {
        let al = alloc("a1b2c3d4-0000", "web", "n1", "running", 3);
        let s = state(
            vec![job("web", "service", "running", 1)],
            vec![al],
            vec![],
            vec![],
        );
        let a = s.alloc_table().get("a1b2c3d4-0000").unwrap().clone();
        assert_eq!(task_names(&s, &a), vec!["t".to_string()]);
        let html = render(&a, "t", "stderr").into_string();
        assert!(
            html.contains("data-src=\"/v1/client/fs/logs/a1b2c3d4-0000?task=t&amp;type=stderr&amp;namespace=default&amp;follow=true&amp;origin=end"),
            "{html}"
        );
        assert!(html.contains("plain=true"));
        assert!(
            html.contains("origin=start") && html.contains("download=\"a1b2c3d4-t.stderr.log\"")
        );
        assert!(html.contains("data-max-lines=\"10000\""));
        for id in ["log-pause", "log-filter", "log-wrap"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains(r#"<label for="log-filter">"#));
    }
}
