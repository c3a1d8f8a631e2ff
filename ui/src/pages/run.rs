//! `/ui/jobs/run` and `/ui/jobs/<id>/edit`: a "Job specification" (HCL or JSON) and a
//! "Variables" text area. **Plan** parses through `/v1/jobs/parse` and dry-runs through
//! `/v1/job/<id>/plan` (both through the server's own router) and shows the diff the way
//! `job plan` does, plus placement failures with their reasons; a parse error keeps the
//! `line:column` the parser gave. **Run** registers with `PUT /v1/jobs` and lands on the
//! job page. An edit carries the job's modify index (`EnforceIndex`), so a change made
//! by someone else meanwhile is reported instead of overwritten. The page is never
//! swapped by the live refresh (`data-no-live`): it is the user's draft.

use crate::actions::{call_v1, same_origin};
use crate::fmt;
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::Path;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

/// What the form holds (also what a POST sends back).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RunForm {
    pub spec: String,
    pub variables: String,
    /// "plan" or "run".
    pub op: String,
    /// The job modify index the submission must find (empty: no check).
    pub modify_index: String,
    /// The job being edited (`<id>@<ns>`), empty on the run page.
    pub editing: String,
}

/// What happened when the form was submitted.
#[derive(Debug, Default)]
pub enum Outcome {
    #[default]
    Nothing,
    /// A sentence from the parser or the API (parse errors keep `line:column`).
    Error {
        title: String,
        message: String,
    },
    Plan(Box<api::JobPlanResponse>),
}

/// The form and, below it, the outcome of the last Plan (or an error).
pub fn render(f: &RunForm, outcome: &Outcome) -> Markup {
    let editing = !f.editing.is_empty();
    html! {
        div data-no-live="" {
            h1 { @if editing { "Edit job " (f.editing) } @else { "Run a job" } }
            @if let Outcome::Error { title, message } = outcome {
                div class="notice error" role="alert" id="run-error" tabindex="-1" {
                    strong { (title) }
                    pre class="errors" { (message) }
                }
            }
            form method="post" action="/ui/jobs/run" class="run" {
                input type="hidden" name="modify_index" value=(f.modify_index);
                input type="hidden" name="editing" value=(f.editing);
                p {
                    label for="spec" { "Job specification" }
                    span class="help" id="spec-help" { " HCL or JSON (" code { "{\"Job\": {...}}" } ")" }
                }
                textarea id="spec" name="spec" rows="22" spellcheck="false" aria-describedby="spec-help" required { (f.spec) }
                p {
                    label for="variables" { "Variables" }
                    span class="help" id="vars-help" { " one " code { "name = value" } " per line, as in a variables file" }
                }
                textarea id="variables" name="variables" rows="4" spellcheck="false" aria-describedby="vars-help" { (f.variables) }
                @if editing && !f.modify_index.is_empty() {
                    p class="help" { "Submitting checks that the job is still at modify index " (f.modify_index) "; a change made meanwhile is reported, not overwritten." }
                }
                p class="buttons" {
                    button type="submit" name="op" value="plan" { "Plan" }
                    " "
                    button type="submit" name="op" value="run" { "Run" }
                }
            }
            @if let Outcome::Plan(p) = outcome { (plan_result(p)) }
        }
    }
}

/// The dry run's answer: the diff, what each group would do, placement failures.
pub fn plan_result(p: &api::JobPlanResponse) -> Markup {
    let updates = p
        .annotations
        .as_ref()
        .map(|a| a.desired_tg_updates.clone())
        .unwrap_or_default();
    html! {
        section aria-labelledby="plan-h" id="plan" tabindex="-1" {
            h2 id="plan-h" { "Plan" }
            @if let Some(d) = &p.diff { (super::diff::render(d, "Job diff")) }
            table {
                caption { "Scheduler dry run" }
                thead { tr {
                    th scope="col" { "Group" }
                    th scope="col" class="num" { "Place" }
                    th scope="col" class="num" { "Stop" }
                    th scope="col" class="num" { "In place" }
                    th scope="col" class="num" { "Destructive" }
                    th scope="col" class="num" { "Canary" }
                    th scope="col" class="num" { "Ignore" }
                } }
                tbody {
                    @for (g, u) in &updates {
                        tr {
                            th scope="row" { (g) }
                            td class="num" { (u.place) }
                            td class="num" { (u.stop) }
                            td class="num" { (u.in_place_update) }
                            td class="num" { (u.destructive_update) }
                            td class="num" { (u.canary) }
                            td class="num" { (u.ignore) }
                        }
                    }
                    @if updates.is_empty() { tr { td colspan="7" { "Nothing to do." } } }
                }
            }
            @if p.failed_tg_allocs.is_empty() {
                p class="notice" role="status" { "All tasks successfully allocated." }
            } @else {
                div class="notice error" role="alert" {
                    strong { "Placement failures" }
                    ul {
                        @for (g, m) in &p.failed_tg_allocs {
                            li {
                                "Task group " strong { (g) } " (failed to place "
                                (m.coalesced_failures + 1) " allocation"
                                (if m.coalesced_failures == 0 { "" } else { "s" }) "): "
                                (scheduler::explain(m).join("; "))
                            }
                        }
                    }
                }
            }
            p class="help" { "Job modify index: " (p.job_modify_index) ". Run submits only if the job is still at this index." }
        }
    }
}

/// `GET /ui/jobs/run`.
pub async fn show(axum::Extension(srv): Srv) -> Response {
    let index = srv.snapshot().index();
    page(
        index,
        &RunForm::default(),
        &Outcome::Nothing,
        StatusCode::OK,
    )
}

/// `GET /ui/jobs/<id>/edit`: the run form with the job's definition (its API JSON) and
/// its modify index.
pub async fn edit(axum::Extension(srv): Srv, Path(raw): Path<String>) -> Response {
    let state = srv.snapshot();
    let Some(job) = super::job::find_job(&state, &raw) else {
        return super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Job not found",
            &format!("There is no job {raw:?} to edit."),
        );
    };
    page(
        state.index(),
        &edit_form(&job),
        &Outcome::Nothing,
        StatusCode::OK,
    )
}

/// The form an edit starts from: the job's definition without the fields the servers own.
pub fn edit_form(job: &api::Job) -> RunForm {
    let mut v = serde_json::to_value(job).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for k in [
            "Status",
            "StatusDescription",
            "Stable",
            "Version",
            "SubmitTime",
            "CreateIndex",
            "ModifyIndex",
            "JobModifyIndex",
            "Stop",
        ] {
            o.remove(k);
        }
    }
    let spec = serde_json::to_string_pretty(&serde_json::json!({ "Job": v })).unwrap_or_default();
    RunForm {
        spec,
        modify_index: job.job_modify_index.to_string(),
        editing: if job.ns() == api::DEFAULT_NAMESPACE {
            job.id.clone()
        } else {
            format!("{}@{}", job.id, job.ns())
        },
        ..Default::default()
    }
}

fn page(index: u64, f: &RunForm, outcome: &Outcome, status: StatusCode) -> Response {
    let title = if f.editing.is_empty() {
        "Run a job".to_string()
    } else {
        format!("Edit job {}", f.editing)
    };
    let mut resp = crate::html(layout::page(&title, Nav::Jobs, index, render(f, outcome)));
    *resp.status_mut() = status;
    resp
}

/// `POST /ui/jobs/run` with `op=plan` or `op=run`.
pub async fn submit(
    axum::Extension(srv): Srv,
    headers: HeaderMap,
    Form(mut f): Form<RunForm>,
) -> Response {
    let index = srv.snapshot().index();
    if let Err(why) = same_origin(&headers) {
        return super::problem(index, StatusCode::FORBIDDEN, "Request refused", &why);
    }
    let fail = |f: &RunForm, status: StatusCode, title: &str, message: String| {
        let o = Outcome::Error {
            title: title.into(),
            message,
        };
        page(index, f, &o, status)
    };
    // 1. Parse, as `job run` does before anything else.
    let (status, text) = call_v1(
        &srv,
        Method::PUT,
        "/v1/jobs/parse",
        Some(serde_json::json!({
            "JobHCL": f.spec, "Variables": f.variables, "Canonicalize": true
        })),
    )
    .await;
    if !status.is_success() {
        return fail(
            &f,
            StatusCode::BAD_REQUEST,
            "The job specification has errors",
            parse_errors(&text),
        );
    }
    let job: api::Job = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => {
            return fail(
                &f,
                StatusCode::BAD_GATEWAY,
                "Could not read the parsed job",
                e.to_string(),
            )
        }
    };
    let id = job.id.clone();
    let ns = job.ns().to_string();
    let nsq = fmt::query(&[("namespace", &ns)]);
    if f.op == "run" {
        let enforce = !f.modify_index.trim().is_empty();
        let body = serde_json::json!({
            "Job": job,
            "EnforceIndex": enforce,
            "JobModifyIndex": f.modify_index.trim().parse::<u64>().unwrap_or(0),
        });
        let (status, text) =
            call_v1(&srv, Method::PUT, &format!("/v1/jobs{nsq}"), Some(body)).await;
        if status.is_success() {
            let to = format!("{}?done=submitted", fmt::job_href(&ns, &id));
            return Redirect::to(&to).into_response();
        }
        if status == StatusCode::CONFLICT {
            return fail(
                &f,
                StatusCode::CONFLICT,
                "The job changed since you opened it",
                format!(
                    "{text}\nSomeone else submitted a new version of {id:?}. Nothing was overwritten: \
                     open the job again to see its current definition, or Plan to compare."
                ),
            );
        }
        return fail(&f, status, "Could not run the job", text);
    }
    // 2. Plan: the scheduler's dry run on the server.
    let path = format!("/v1/job/{}/plan{nsq}", fmt::enc(&id));
    let (status, text) = call_v1(
        &srv,
        Method::PUT,
        &path,
        Some(serde_json::json!({ "Job": job, "Diff": true })),
    )
    .await;
    if !status.is_success() {
        return fail(&f, status, "Could not plan the job", text);
    }
    match serde_json::from_str::<api::JobPlanResponse>(&text) {
        Ok(p) => {
            if f.modify_index.trim().is_empty() {
                f.modify_index = p.job_modify_index.to_string();
            }
            page(index, &f, &Outcome::Plan(Box::new(p)), StatusCode::OK)
        }
        Err(e) => fail(
            &f,
            StatusCode::BAD_GATEWAY,
            "Could not read the plan",
            e.to_string(),
        ),
    }
}

/// The parser's sentences, one per line, with the `input.hcl:` file prefix the API puts
/// in front of `line:column` replaced by `line ` so they read as places in the text area.
pub fn parse_errors(text: &str) -> String {
    let text = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| text.to_string());
    text.replace("input.hcl:", "line ")
        .replace("variables.hcl:", "variables line ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_labelled_and_keeps_what_was_typed_escaped() {
        let f = RunForm {
            spec: "job \"x\" { meta { a = \"</textarea><script>\" } }".into(),
            ..Default::default()
        };
        let html = render(&f, &Outcome::Nothing).into_string();
        assert!(html.contains(r#"<label for="spec">Job specification</label>"#));
        assert!(html.contains(r#"<label for="variables">Variables</label>"#));
        assert!(html.contains("&lt;/textarea&gt;&lt;script&gt;"), "{html}");
        assert!(html.contains(r#"value="plan""#) && html.contains(r#"value="run""#));
        assert!(html.contains("data-no-live"));
    }

    #[test]
    fn parse_errors_point_at_line_and_column() {
        let e = parse_errors("input.hcl:3:5: unexpected token\ninput.hcl:9:1: missing }");
        assert_eq!(e, "line 3:5: unexpected token\nline 9:1: missing }");
        let html = render(
            &RunForm::default(),
            &Outcome::Error {
                title: "The job specification has errors".into(),
                message: e,
            },
        )
        .into_string();
        assert!(html.contains("line 3:5: unexpected token"), "{html}");
        assert!(html.contains(r#"role="alert""#));
    }

    #[test]
    fn a_plan_shows_the_diff_and_placement_failures_with_reasons() {
        let p: api::JobPlanResponse = serde_json::from_value(serde_json::json!({
            "JobModifyIndex": 0,
            "Diff": {"Type": "Added", "ID": "web", "Fields": [], "Objects": [],
                "TaskGroups": [{"Type": "Added", "Name": "main", "Fields": [], "Objects": [],
                    "Tasks": [], "Updates": {"create": 2}}]},
            "Annotations": {"DesiredTGUpdates": {"main": {"Place": 2}}},
            "FailedTGAllocs": {"main": {"NodesEvaluated": 1, "CoalescedFailures": 1,
                "DimensionExhausted": {"memory": 1}}}
        }))
        .unwrap();
        let html = plan_result(&p).into_string();
        assert!(html.contains("+ Job: &quot;web&quot;"), "{html}");
        assert!(
            html.contains("Task Group: &quot;main&quot; (2 create)"),
            "{html}"
        );
        assert!(html.contains("failed to place 2 allocations"), "{html}");
        assert!(html.contains("exhausted memory"), "{html}");
    }

    #[test]
    fn an_edit_carries_the_modify_index_and_drops_server_fields() {
        let mut j: api::Job = serde_json::from_value(serde_json::json!({
            "ID": "web", "Namespace": "prod", "Status": "running", "JobModifyIndex": 17,
            "TaskGroups": []
        }))
        .unwrap();
        j.job_modify_index = 17;
        let f = edit_form(&j);
        assert_eq!(f.modify_index, "17");
        assert_eq!(f.editing, "web@prod");
        assert!(f.spec.starts_with("{\n  \"Job\""), "{}", f.spec);
        assert!(!f.spec.contains("\"Status\""), "{}", f.spec);
        let html = render(&f, &Outcome::Nothing).into_string();
        assert!(html.contains("Edit job web@prod"));
        assert!(html.contains("still at modify index 17"));
    }
}
