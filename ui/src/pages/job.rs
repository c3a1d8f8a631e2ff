//! `/ui/jobs/<id>[@<namespace>]`: header facts, Stop/Purge behind a confirmation step, task
//! groups with desired/placed/running/failed/lost, allocations and evaluations paged
//! server-side, and versions newest first. Statuses are honest: a job whose allocations
//! wait for room says "pending: 1 node exhausted memory", not "failed".

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

pub const ALLOCS_PER_PAGE: usize = 25;
pub const EVALS_PER_PAGE: usize = 10;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct JobQuery {
    pub apage: Option<String>,
    pub epage: Option<String>,
    pub done: Option<String>,
}

/// `<id>@<namespace>` (Nomad's URL shape) or `<id>` in `default`. A job whose ID itself
/// contains `@` is found too: the whole text is tried as an ID when the split finds none.
pub fn find_job(state: &StateStore, raw: &str) -> Option<Arc<api::Job>> {
    if let Some((id, ns)) = raw.rsplit_once('@') {
        if let Some(j) = state.job(ns, id) {
            return Some(j);
        }
    }
    state.job(api::DEFAULT_NAMESPACE, raw)
}

pub async fn show(
    axum::Extension(srv): Srv,
    Path(raw): Path<String>,
    Query(q): Query<JobQuery>,
) -> Response {
    let state = srv.snapshot();
    match find_job(&state, &raw) {
        Some(job) => crate::html(layout::page(
            &format!("Job {}", job.id),
            Nav::Jobs,
            state.index(),
            render(&state, &job, &q),
        )),
        None => super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Job not found",
            &format!("There is no job {raw:?}. It may have been purged."),
        ),
    }
}

/// An evaluation's status in words, with the reasons placements failed.
pub fn eval_words(e: &api::Evaluation) -> String {
    let reasons = placement_reasons(e);
    match e.status.as_str() {
        api::EVAL_STATUS_BLOCKED => {
            if reasons.is_empty() {
                "blocked: waiting for a node with room".to_string()
            } else {
                format!("blocked: waiting for room ({reasons})")
            }
        }
        api::EVAL_STATUS_FAILED => {
            let why = if e.status_description.is_empty() {
                "the scheduler gave up".to_string()
            } else {
                e.status_description.clone()
            };
            format!("failed: {why}")
        }
        api::EVAL_STATUS_PENDING if e.wait_until > 0 => {
            format!("pending: delayed until {}", fmt::time(e.wait_until))
        }
        api::EVAL_STATUS_PENDING => "pending: waiting for a scheduler".to_string(),
        api::EVAL_STATUS_COMPLETE if !reasons.is_empty() => {
            format!("complete, some placements failed: {reasons}")
        }
        api::EVAL_STATUS_CANCELED => {
            "canceled: a newer evaluation of the job replaced it".to_string()
        }
        other if !e.status_description.is_empty() => {
            format!("{other}: {}", e.status_description)
        }
        other => other.to_string(),
    }
}

/// "group main: 1 node exhausted memory; ..." from an evaluation's failed placements.
fn placement_reasons(e: &api::Evaluation) -> String {
    e.failed_tg_allocs
        .iter()
        .map(|(group, m)| {
            let why = scheduler::explain(m);
            let why: Vec<&str> = why.iter().take(2).map(String::as_str).collect();
            format!("group {group}: {}", why.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The job's status word and, when it is waiting, why (from its newest evaluation with
/// failed placements).
pub fn job_status(state: &StateStore, job: &api::Job, queued: u64) -> (String, Option<String>) {
    if job.stop {
        let word = if job.status == api::JOB_STATUS_DEAD {
            "dead (stopped)"
        } else {
            "stopping"
        };
        return (word.into(), None);
    }
    if queued > 0 {
        let newest_failed = state
            .evals_for_job(job.ns(), &job.id)
            .into_iter()
            .filter(|e| !e.failed_tg_allocs.is_empty())
            .max_by_key(|e| e.create_index);
        let why = match newest_failed {
            Some(e) => {
                let first: Vec<String> = e
                    .failed_tg_allocs
                    .values()
                    .flat_map(|m| scheduler::explain(m).into_iter().take(1))
                    .collect();
                format!(
                    "pending: {queued} allocation{} not placed yet: {}",
                    if queued == 1 { "" } else { "s" },
                    if first.is_empty() {
                        "waiting for room".to_string()
                    } else {
                        first.join("; ")
                    }
                )
            }
            None => format!(
                "pending: {queued} allocation{} waiting to be placed",
                if queued == 1 { "" } else { "s" }
            ),
        };
        return ("pending".into(), Some(why));
    }
    (job.status.clone(), None)
}

pub fn render(state: &StateStore, job: &api::Job, q: &JobQuery) -> Markup {
    let href = fmt::job_href(job.ns(), &job.id);
    let mut allocs = state.allocs_for_job(job.ns(), &job.id);
    let summary = state.job_summary_of(job, &allocs);
    let queued: u64 = summary.summary.values().map(|g| g.queued).sum();
    let (word, why) = job_status(state, job, queued);
    allocs.sort_by_key(|a| std::cmp::Reverse(a.create_index));
    let apage = fmt::page_number(&q.apage);
    let (shown_allocs, apages) = paged(&allocs, apage, ALLOCS_PER_PAGE);

    let mut evals = state.evals_for_job(job.ns(), &job.id);
    evals.sort_by_key(|e| std::cmp::Reverse(e.create_index));
    let epage = fmt::page_number(&q.epage);
    let (shown_evals, epages) = paged(&evals, epage, EVALS_PER_PAGE);

    let versions = state.job_versions(job.ns(), &job.id);
    let epage_s = epage.to_string();
    let apage_s = apage.to_string();

    html! {
        h1 { "Job " (job.id) }
        @if let Some(n) = super::done_notice(q.done.as_deref()) { (layout::notice("ok", n)) }
        dl class="facts" {
            dt { "Status" } dd { (fmt::status(&word)) @if let Some(w) = &why { " — " span class="why" { (w) } } }
            dt { "Type" } dd { (job.job_type) }
            dt { "Namespace" } dd { (job.ns()) }
            dt { "Priority" } dd { (job.priority) }
            dt { "Version" } dd { (job.version) }
            dt { "Datacenters" } dd { (job.datacenters.join(", ")) }
            @if !job.node_pool.is_empty() { dt { "Node pool" } dd { (job.node_pool) } }
            dt { "Submitted" } dd { (fmt::time(job.submit_time)) }
            @if !job.status_description.is_empty() { dt { "Description" } dd { (job.status_description) } }
        }
        section aria-labelledby="actions-h" class="actions" {
            h2 id="actions-h" { "Actions" }
            p { a href=(format!("{href}/edit")) { "Edit the job definition" } }
            @if !job.stop {
                details {
                    summary { "Stop job…" }
                    form method="post" action=(format!("{href}/stop")) {
                        input type="hidden" name="namespace" value=(job.ns());
                        p { "Stopping " strong { (job.id) } " stops all its allocations." }
                        p { label { input type="checkbox" name="purge" value="true"; " Also purge it (remove the job and its history)" } }
                        button type="submit" class="danger" { "Yes, stop " (job.id) }
                    }
                }
            } @else {
                details {
                    summary { "Purge job…" }
                    form method="post" action=(format!("{href}/stop")) {
                        input type="hidden" name="namespace" value=(job.ns());
                        input type="hidden" name="purge" value="true";
                        p { "Purging removes " strong { (job.id) } " and its history." }
                        button type="submit" class="danger" { "Yes, purge " (job.id) }
                    }
                }
            }
        }
        table {
            caption { "Task groups" }
            (fmt::thead(&["Group", "#Desired", "#Placed", "#Queued", "#Running", "#Failed", "#Lost"]))
            tbody {
                @for g in &job.task_groups {
                    @let s = summary.summary.get(&g.name).cloned().unwrap_or_default();
                    @let placed = allocs.iter().filter(|a| a.task_group == g.name && !a.terminal()).count();
                    tr {
                        th scope="row" { (g.name) }
                        td class="num" { (if job.job_type == api::JOB_TYPE_SYSTEM || job.job_type == api::JOB_TYPE_SYSBATCH { "per node".to_string() } else { g.count.to_string() }) }
                        td class="num" { (placed) }
                        td class="num" { (s.queued) }
                        td class="num" { (s.running) }
                        td class="num" { (s.failed) }
                        td class="num" { (s.lost) }
                    }
                }
            }
        }
        table {
            caption { "Allocations (" (allocs.len()) ", newest first)" }
            (fmt::thead(&["ID", "Group", "Node", "Desired", "Status", "Version", "Created"]))
            tbody {
                @for a in shown_allocs {
                    tr {
                        th scope="row" { a href=(fmt::alloc_href(&a.id)) { code { (fmt::short(&a.id)) } } }
                        td { (a.task_group) }
                        td { a href=(fmt::node_href(&a.node_id)) { (if a.node_name.is_empty() { fmt::short(&a.node_id) } else { &a.node_name }) } }
                        td { (a.desired_status) }
                        td { (fmt::status(&a.client_status)) }
                        td class="num" { (a.job.as_ref().map(|j| j.version.to_string()).unwrap_or_default()) }
                        td { (fmt::time(a.create_time)) }
                    }
                }
                @if allocs.is_empty() { tr { td colspan="7" { "No allocations yet." } } }
            }
        }
        (pager("Allocations", apage, apages, |n| format!("{href}{}", fmt::query(&[("apage", &n.to_string()), ("epage", &epage_s)]))))
        table {
            caption { "Evaluations (" (evals.len()) ", newest first)" }
            (fmt::thead(&["ID", "Triggered by", "Status", "Created"]))
            tbody {
                @for e in shown_evals {
                    tr {
                        th scope="row" { code { (fmt::short(&e.id)) } }
                        td { (e.triggered_by) }
                        td { (eval_words(e)) }
                        td { (fmt::time(e.create_time)) }
                    }
                }
                @if evals.is_empty() { tr { td colspan="4" { "No evaluations." } } }
            }
        }
        (pager("Evaluations", epage, epages, |n| format!("{href}{}", fmt::query(&[("apage", &apage_s), ("epage", &n.to_string())]))))
        (versions_section(&versions))
        (deployments_section(state, job))
        (services_section(state, job))
    }
}

/// Versions newest first, each with what changed from the one before (the server's
/// `job_diff`, as `/v1/job/:id/versions?diffs=true` computes it). At most 20.
pub fn versions_section(versions: &[Arc<api::Job>]) -> Markup {
    html! {
        section aria-labelledby="versions-h" {
            h2 id="versions-h" { "Versions (" (versions.len()) ", newest first)" }
            @for (i, v) in versions.iter().enumerate().take(20) {
                details class="version" id=(format!("version-{}", v.version)) open[i == 0 && versions.len() > 1] {
                    summary {
                        "Version " (v.version)
                        @if v.stable { " · stable" } @else { " · not stable" }
                        " · submitted " (fmt::time(v.submit_time))
                        " · " (v.task_groups.iter().map(|g| format!("{} × {}", g.name, g.count)).collect::<Vec<_>>().join(", "))
                    }
                    @match versions.get(i + 1) {
                        Some(prev) => {
                            p class="help" { "Changes from version " (prev.version) ":" }
                            (super::diff::render(&api::diff::job_diff(Some(prev), v), &format!("Changes in version {}", v.version)))
                        }
                        None => p class="help" { "The first version of the job." },
                    }
                }
            }
        }
    }
}

/// The job's deployments, newest first, with Promote (canaries waiting) and Fail (still
/// rolling out) behind a confirmation step.
pub fn deployments_section(state: &StateStore, job: &api::Job) -> Markup {
    let deps = state.deployments_for_job(job.ns(), &job.id);
    html! {
        @if !deps.is_empty() {
            table {
                caption { "Deployments (" (deps.len()) ", newest first)" }
                (fmt::thead(&["ID", "Version", "Status", "Groups (healthy / placed / desired, canaries)", "Actions"]))
                tbody {
                    @for d in deps.iter().take(10) {
                        @let needs_promotion = d.active() && d.task_groups.values().any(|g| g.desired_canaries > 0 && !g.promoted);
                        tr {
                            th scope="row" { code { (fmt::short(&d.id)) } }
                            td class="num" { (d.job_version) }
                            td { (fmt::status(&d.status)) @if !d.status_description.is_empty() { " — " (d.status_description) } }
                            td {
                                @for (name, g) in &d.task_groups {
                                    div {
                                        (name) ": " (g.healthy_allocs) " / " (g.placed_allocs) " / " (g.desired_total)
                                        @if g.desired_canaries > 0 {
                                            ", " (g.placed_canaries.len()) " of " (g.desired_canaries) " canaries"
                                            (if g.promoted { " (promoted)" } else { " (not promoted)" })
                                        }
                                        @if g.unhealthy_allocs > 0 { ", " (g.unhealthy_allocs) " unhealthy" }
                                    }
                                }
                            }
                            td class="actions" {
                                @if needs_promotion { (deployment_action(job, d, "promote", "Promote…", "Promoting replaces the old allocations with the new version.", "")) }
                                @if d.active() { (deployment_action(job, d, "fail", "Fail…", "Failing stops the rollout (and rolls back when auto_revert is set).", "danger")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn deployment_action(
    job: &api::Job,
    d: &api::Deployment,
    op: &str,
    label: &str,
    what: &str,
    class: &str,
) -> Markup {
    html! {
        details {
            summary { (label) }
            form method="post" action=(format!("/ui/deployments/{}/{op}", fmt::enc(&d.id))) {
                input type="hidden" name="job" value=(job.id);
                input type="hidden" name="namespace" value=(job.ns());
                p { (what) }
                button type="submit" class=(class) { "Yes, " (op) " deployment " (fmt::short(&d.id)) }
            }
        }
    }
}

/// The service instances the job's live allocations registered (`provider = "nomad"`).
pub fn services_section(state: &StateStore, job: &api::Job) -> Markup {
    let declares = job
        .task_groups
        .iter()
        .any(|g| !g.services.is_empty() || g.tasks.iter().any(|t| !t.services.is_empty()));
    if !declares {
        return html! {};
    }
    let mut regs: Vec<Arc<api::ServiceRegistration>> = state
        .allocs_for_job(job.ns(), &job.id)
        .iter()
        .filter(|a| !a.terminal())
        .flat_map(|a| state.services_for_alloc(&a.id))
        .collect();
    regs.sort_by(|a, b| (&a.service_name, &a.id).cmp(&(&b.service_name, &b.id)));
    html! {
        @if !regs.is_empty() {
            table {
                caption { "Services (" (regs.len()) " instances)" }
                (fmt::thead(&["Service", "Address", "Tags", "Allocation"]))
                tbody {
                    @for r in regs.iter().take(100) {
                        tr {
                            th scope="row" { (r.service_name) }
                            td { code { (r.address) ":" (r.port) } }
                            td { (r.tags.join(", ")) }
                            td { a href=(fmt::alloc_href(&r.alloc_id)) { code { (fmt::short(&r.alloc_id)) } } }
                        }
                    }
                }
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
    fn a_job_waiting_for_room_is_pending_with_the_reason_not_failed() {
        let eval = json!({
            "ID": "e1", "Namespace": "default", "JobID": "big", "Status": "complete",
            "TriggeredBy": "job-register", "CreateIndex": 5, "BlockedEval": "e2",
            "FailedTGAllocs": {"main": {"NodesEvaluated": 1, "NodesAvailable": {"dc1": 1},
                "DimensionExhausted": {"memory": 1}}}
        });
        let blocked = json!({"ID": "e2", "Namespace": "default", "JobID": "big", "Status": "blocked", "CreateIndex": 6});
        let s = state(
            vec![job("big", "service", "pending", 2)],
            vec![],
            vec![eval, blocked],
            vec![],
        );
        let j = s.job("default", "big").unwrap();
        let html = render(&s, &j, &JobQuery::default()).into_string();
        assert!(
            html.contains("pending: 2 allocations not placed yet: 1 node exhausted memory"),
            "{html}"
        );
        assert!(
            html.contains("blocked: waiting for a node with room"),
            "{html}"
        );
        assert!(!html.contains(">failed<"), "{html}");
    }

    #[test]
    fn allocations_are_paged_newest_first() {
        let allocs = (0..30)
            .map(|i| alloc(&format!("{i:02}-alloc-aaaa"), "web", "n1", "running", i + 1))
            .collect();
        let s = state(
            vec![job("web", "service", "running", 30)],
            allocs,
            vec![],
            vec![],
        );
        let j = s.job("default", "web").unwrap();
        let first = render(&s, &j, &JobQuery::default()).into_string();
        assert!(
            first.contains(">29-alloc<") && first.contains(">05-alloc<"),
            "{first}"
        );
        assert!(!first.contains(">04-alloc<"), "{first}");
        assert!(first.contains("Page 1 of 2"));
        let q = JobQuery {
            apage: Some("2".into()),
            ..Default::default()
        };
        let second = render(&s, &j, &q).into_string();
        assert!(
            second.contains(">04-alloc<") && second.contains(">00-alloc<"),
            "{second}"
        );
        assert!(!second.contains(">05-alloc<"), "{second}");
    }

    #[test]
    fn an_id_with_a_namespace_suffix_finds_the_job() {
        let mut j = job("web", "service", "running", 1);
        j["Namespace"] = json!("prod");
        let s = state(
            vec![j, job("a@b", "batch", "dead", 1)],
            vec![],
            vec![],
            vec![],
        );
        assert_eq!(find_job(&s, "web@prod").unwrap().namespace, "prod");
        assert!(find_job(&s, "web").is_none());
        assert_eq!(find_job(&s, "a@b").unwrap().id, "a@b");
    }

    #[test]
    fn versions_show_diffs_deployments_offer_promote_and_fail_and_services_are_listed() {
        let v0 = job("web", "service", "running", 1);
        let mut v1 = v0.clone();
        v1["Version"] = json!(1);
        v1["TaskGroups"][0]["Services"] = json!([{"Name": "http<x>", "PortLabel": "http"}]);
        v1["TaskGroups"][0]["Count"] = json!(3);
        let base = state(
            vec![v1.clone()],
            vec![alloc("a1-0000-aaaa", "web", "n1", "running", 3)],
            vec![],
            vec![],
        );
        let mut v = serde_json::to_value(&base).unwrap();
        v["job_versions"] = json!([v0, v1]);
        v["deployments"] = json!([{
            "ID": "d1-dep-0000", "Namespace": "default", "JobID": "web", "JobVersion": 1,
            "Status": "running", "StatusDescription": "Deployment is running but requires manual promotion",
            "TaskGroups": {"main": {"DesiredCanaries": 1, "DesiredTotal": 3, "PlacedCanaries": ["a1-0000-aaaa"],
                "PlacedAllocs": 1, "HealthyAllocs": 1}},
            "CreateIndex": 5
        }]);
        v["services"] = json!([{
            "ID": "_nomad-task-a1-0000-aaaa-t-http-http", "ServiceName": "http<x>", "Namespace": "default",
            "NodeID": "n1", "JobID": "web", "AllocID": "a1-0000-aaaa", "Address": "127.0.0.1", "Port": 20001
        }]);
        let s: StateStore = serde_json::from_value(v).unwrap();
        let j = s.job("default", "web").unwrap();
        let html = render(&s, &j, &JobQuery::default()).into_string();
        assert!(html.contains("Versions (2, newest first)"), "{html}");
        assert!(html.contains("Changes from version 0"), "{html}");
        assert!(
            html.contains("Count: &quot;1&quot; =&gt; &quot;3&quot;"),
            "{html}"
        );
        assert!(html.contains("The first version of the job."), "{html}");
        assert!(
            html.contains(r#"action="/ui/deployments/d1-dep-0000/promote""#),
            "{html}"
        );
        assert!(
            html.contains(r#"action="/ui/deployments/d1-dep-0000/fail""#),
            "{html}"
        );
        assert!(html.contains("1 of 1 canaries (not promoted)"), "{html}");
        assert!(
            html.contains("http&lt;x&gt;") && html.contains("127.0.0.1:20001"),
            "{html}"
        );
        assert!(html.contains(r#"href="/ui/jobs/web/edit""#), "{html}");
    }
}
