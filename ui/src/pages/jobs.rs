//! `/ui/jobs`: every job with its status and allocation counts per client status (one pass
//! over the allocations), prefix search, status/type/namespace facets and paging.

use crate::fmt::{self, paged, pager};
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use server::state::StateStore;
use std::collections::{BTreeSet, HashMap};

pub const PER_PAGE: usize = 50;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct JobsQuery {
    pub search: String,
    pub status: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub namespace: String,
    pub page: Option<String>,
    pub done: Option<String>,
}

/// Allocation counts of one job by client status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub pending: u32,
    pub running: u32,
    pub complete: u32,
    pub failed: u32,
    pub lost: u32,
    pub unknown: u32,
}

impl Counts {
    pub fn add(&mut self, client_status: &str) {
        match client_status {
            api::ALLOC_CLIENT_PENDING => self.pending += 1,
            api::ALLOC_CLIENT_RUNNING => self.running += 1,
            api::ALLOC_CLIENT_COMPLETE => self.complete += 1,
            api::ALLOC_CLIENT_FAILED => self.failed += 1,
            api::ALLOC_CLIENT_LOST => self.lost += 1,
            api::ALLOC_CLIENT_UNKNOWN => self.unknown += 1,
            _ => {}
        }
    }
}

pub async fn list(axum::Extension(srv): Srv, Query(q): Query<JobsQuery>) -> Response {
    let state = srv.snapshot();
    crate::html(layout::page(
        "Jobs",
        Nav::Jobs,
        state.index(),
        render(&state, &q),
    ))
}

fn matches(job: &api::Job, q: &JobsQuery) -> bool {
    let search = q.search.trim().to_lowercase();
    (search.is_empty()
        || job.id.to_lowercase().starts_with(&search)
        || job.name.to_lowercase().starts_with(&search))
        && (q.status.is_empty() || job.status == q.status)
        && (q.job_type.is_empty() || job.job_type == q.job_type)
        && (q.namespace.is_empty() || q.namespace == "*" || job.ns() == q.namespace)
}

/// The jobs page's `<main>` contents.
pub fn render(state: &StateStore, q: &JobsQuery) -> Markup {
    let namespaces: BTreeSet<&str> = state
        .job_table()
        .keys()
        .map(|(ns, _)| ns.as_str())
        .collect();
    let jobs: Vec<&api::Job> = state
        .job_table()
        .values()
        .map(|j| &**j)
        .filter(|j| matches(j, q))
        .collect();
    let page = fmt::page_number(&q.page);
    let (shown, pages) = paged(&jobs, page, PER_PAGE);
    // One pass over the allocations, counting only the jobs on this page.
    let mut counts: HashMap<(&str, &str), Counts> = shown
        .iter()
        .map(|j| ((j.ns(), j.id.as_str()), Counts::default()))
        .collect();
    for a in state.alloc_table().values() {
        if let Some(c) = counts.get_mut(&(a.namespace.as_str(), a.job_id.as_str())) {
            c.add(&a.client_status);
        }
    }
    let link = |n: usize| {
        let n = n.to_string();
        format!(
            "/ui/jobs{}",
            fmt::query(&[
                ("search", &q.search),
                ("status", &q.status),
                ("type", &q.job_type),
                ("namespace", &q.namespace),
                ("page", &n),
            ])
        )
    };
    html! {
        h1 { "Jobs" }
        p { a href="/ui/jobs/run" class="button" { "Run a job" } }
        @if let Some(n) = super::done_notice(q.done.as_deref()) { (layout::notice("ok", n)) }
        form class="facets" method="get" action="/ui/jobs" aria-label="Filter jobs" {
            label { "ID or name prefix " input type="search" name="search" value=(q.search); }
            (select("Status", "status", &q.status, &["running", "pending", "dead"]))
            (select("Type", "type", &q.job_type, &["service", "batch", "system", "sysbatch"]))
            (select("Namespace", "namespace", &q.namespace, &namespaces.iter().copied().collect::<Vec<_>>()))
            button type="submit" { "Apply" }
        }
        table {
            caption { (jobs.len()) " job" (if jobs.len() == 1 { "" } else { "s" }) @if jobs.len() != state.job_table().len() { " matching" } }
            (fmt::thead(&["ID", "Namespace", "Type", "Priority", "Status", "#Pending", "#Running", "#Complete", "#Failed", "#Lost"]))
            tbody {
                @for j in shown {
                    @let c = counts.get(&(j.ns(), j.id.as_str())).copied().unwrap_or_default();
                    tr {
                        th scope="row" { a href=(fmt::job_href(j.ns(), &j.id)) { (j.id) } }
                        td { (j.ns()) }
                        td { (j.job_type) }
                        td class="num" { (j.priority) }
                        td { (fmt::status(if j.stop && j.status != api::JOB_STATUS_DEAD { "stopping" } else { &j.status })) }
                        td class="num" { (c.pending) }
                        td class="num" { (c.running) }
                        td class="num" { (c.complete) }
                        td class="num" { (c.failed) }
                        td class="num" { (c.lost) }
                    }
                }
                @if shown.is_empty() {
                    tr { td colspan="10" { "No jobs match. Run one with " code { "drover job run <file>" } "." } }
                }
            }
        }
        (pager("Jobs", page, pages, link))
    }
}

/// A labelled `<select>` with an "any" choice, keeping the current value selected.
pub fn select(label: &str, name: &str, current: &str, options: &[&str]) -> Markup {
    html! {
        label {
            (label) " "
            select name=(name) {
                option value="" selected[current.is_empty()] { "any" }
                @for o in options {
                    option value=(o) selected[current == *o] { (o) }
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
    fn a_hostile_job_id_is_escaped_and_its_link_encoded() {
        let s = state(
            vec![job("<script>alert(1)</script>", "service", "running", 1)],
            vec![],
            vec![],
            vec![],
        );
        let html = render(&s, &JobsQuery::default()).into_string();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("/ui/jobs/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"),
            "{html}"
        );
    }

    #[test]
    fn counts_are_per_job_and_client_status() {
        let s = state(
            vec![
                job("web", "service", "running", 3),
                job("api", "service", "running", 1),
            ],
            vec![
                alloc("a1", "web", "n1", "running", 1),
                alloc("a2", "web", "n1", "running", 2),
                alloc("a3", "web", "n1", "failed", 3),
                alloc("a4", "api", "n1", "pending", 4),
            ],
            vec![],
            vec![],
        );
        let html = render(&s, &JobsQuery::default()).into_string();
        // api: pending 1, running 0, complete 0, failed 0, lost 0.
        let api_row = html
            .split("/ui/jobs/api\"")
            .nth(1)
            .unwrap()
            .split("</tr>")
            .next()
            .unwrap();
        let nums: Vec<&str> = api_row
            .match_indices("class=\"num\">")
            .map(|(i, _)| &api_row[i + 12..i + 13])
            .collect();
        assert_eq!(nums, ["5", "1", "0", "0", "0", "0"], "{api_row}");
        let web_row = html
            .split("/ui/jobs/web\"")
            .nth(1)
            .unwrap()
            .split("</tr>")
            .next()
            .unwrap();
        let nums: Vec<&str> = web_row
            .match_indices("class=\"num\">")
            .map(|(i, _)| &web_row[i + 12..i + 13])
            .collect();
        assert_eq!(nums, ["5", "0", "2", "0", "1", "0"], "{web_row}");
    }

    #[test]
    fn jobs_are_paged_and_filtered_by_the_query() {
        let jobs = (0..120)
            .map(|i| job(&format!("job-{i:03}"), "batch", "dead", 1))
            .collect();
        let s = state(jobs, vec![], vec![], vec![]);
        let q = JobsQuery {
            page: Some("3".into()),
            ..Default::default()
        };
        let html = render(&s, &q).into_string();
        assert!(
            html.contains("job-100") && html.contains("job-119"),
            "{html}"
        );
        assert!(!html.contains(">job-099<"));
        assert!(html.contains("Page 3 of 3"));
        let q = JobsQuery {
            search: "job-01".into(),
            ..Default::default()
        };
        let html = render(&s, &q).into_string();
        assert!(html.contains("10 jobs matching"), "{html}");
        let q = JobsQuery {
            job_type: "service".into(),
            ..Default::default()
        };
        assert!(render(&s, &q).into_string().contains("No jobs match"));
    }
}
