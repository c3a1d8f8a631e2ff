//! `/v1/jobs`, `/v1/job/:id` and friends.

use super::{blocking, parse_body, reply, ApiErr, ApiResult, AppState, QueryParams};
use crate::fsm::Command;
use crate::now_nanos;
use api::{
    AllocationListStub, Evaluation, Job, JobDeregisterResponse, JobListStub, JobRegisterRequest,
    JobRegisterResponse, JobsParseRequest,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let filter = q.filter()?;
    let state = blocking(&srv, &q, |s| s.tables().jobs.max(s.tables().allocs)).await?;
    let ns = q.namespace();
    let all_ns = ns == "*";
    let out: Vec<JobListStub> = state
        .job_table()
        .values()
        .filter(|j| (all_ns || j.ns() == ns) && q.prefix_matches(&j.id))
        .map(|j| JobListStub::from_job(j, Some(state.job_summary(j))))
        .collect();
    let out = super::filter::apply(filter.as_ref(), out);
    Ok(reply(
        &srv,
        state.tables().jobs.max(state.tables().allocs),
        &out,
    ))
}

fn new_eval(job: &Job, trigger: &str, now: i64) -> Evaluation {
    Evaluation::new_for_job(job, trigger, now, api::new_id())
}

async fn do_register(srv: AppState, req: JobRegisterRequest, path_id: Option<String>) -> ApiResult {
    let Some(mut job) = req.job else {
        return Err(ApiErr::bad_request(
            "missing job: the body must be {\"Job\": {...}}",
        ));
    };
    if let Some(id) = path_id {
        if job.id != id {
            return Err(ApiErr::bad_request(format!(
                "job ID {:?} in the body does not match {:?} in the URL",
                job.id, id
            )));
        }
    }
    job.canonicalize();
    let errs = job_problems(&srv, &job);
    if !errs.is_empty() {
        return Err(ApiErr::bad_request(format!(
            "job validation failed: {}",
            errs.join("; ")
        )));
    }
    let state = srv.snapshot();
    if req.enforce_index {
        let current = state
            .job(job.ns(), &job.id)
            .map(|j| j.job_modify_index)
            .unwrap_or(0);
        if current != req.job_modify_index {
            return Err(ApiErr(
                StatusCode::CONFLICT,
                format!(
                    "enforcing job modify index {}: job exists with conflicting job modify index {current}",
                    req.job_modify_index
                ),
            ));
        }
    }
    // Keep the server-owned fields out of what the user sent.
    job.stop = false;
    job.status.clear();
    job.stable = false;
    let now = now_nanos();
    let eval = new_eval(&job, api::TRIGGER_JOB_REGISTER, now);
    let resp = srv
        .write(Command::RegisterJob {
            job,
            eval: Some(eval),
            now,
        })
        .await?;
    Ok(reply(
        &srv,
        resp.index,
        &JobRegisterResponse {
            eval_id: resp.eval_id,
            eval_create_index: resp.index,
            job_modify_index: resp.job_modify_index,
            warnings: String::new(),
            index: resp.index,
            last_contact: 0,
            known_leader: true,
        },
    ))
}

/// Everything wrong with a canonicalized job this server would refuse to register:
/// `Job::validate` and the server's `job_max_count`.
pub(super) fn job_problems(srv: &AppState, job: &Job) -> Vec<String> {
    let mut errs = job.validate();
    if let Err(m) = job.check_max_count(srv.config.job_max_count) {
        errs.push(m);
    }
    errs
}

pub async fn register(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let req: JobRegisterRequest = parse_body(&body)?;
    do_register(srv, req, None).await
}

pub async fn register_at(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: JobRegisterRequest = parse_body(&body)?;
    do_register(srv, req, Some(id)).await
}

fn find_job(
    state: &crate::state::StateStore,
    q: &QueryParams,
    id: &str,
) -> Result<std::sync::Arc<Job>, ApiErr> {
    state
        .job(q.namespace(), id)
        .ok_or_else(|| ApiErr::not_found(format!("job {id:?} not found")))
}

pub async fn get_job(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().jobs).await?;
    let job = find_job(&state, &q, &id)?;
    Ok(reply(&srv, state.tables().jobs, &*job))
}

pub async fn deregister(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = srv.snapshot();
    let job = find_job(&state, &q, &id)?;
    let purge = QueryParams::flag(&q.purge);
    let now = now_nanos();
    let eval = new_eval(&job, api::TRIGGER_JOB_DEREGISTER, now);
    let eval_id = eval.id.clone();
    let resp = srv
        .write(Command::DeregisterJob {
            namespace: job.ns().to_string(),
            job_id: job.id.clone(),
            purge,
            eval: Some(eval),
            now,
        })
        .await?;
    Ok(reply(
        &srv,
        resp.index,
        &JobDeregisterResponse {
            eval_id,
            eval_create_index: resp.index,
            job_modify_index: resp.job_modify_index.max(job.job_modify_index),
            index: resp.index,
            last_contact: 0,
            known_leader: true,
        },
    ))
}

pub async fn allocations(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().allocs).await?;
    let out: Vec<AllocationListStub> = state
        .allocs_for_job(q.namespace(), &id)
        .iter()
        .map(|a| AllocationListStub::from_alloc(a))
        .collect();
    Ok(reply(&srv, state.tables().allocs, &out))
}

pub async fn evaluations(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().evals).await?;
    let out = super::newest_first(state.evals_for_job(q.namespace(), &id).iter());
    Ok(reply(&srv, state.tables().evals, &out))
}

pub async fn summary(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().jobs.max(s.tables().allocs)).await?;
    let job = find_job(&state, &q, &id)?;
    Ok(reply(
        &srv,
        state.tables().allocs.max(state.tables().jobs),
        &state.job_summary(&job),
    ))
}

/// `?diffs=true` of `GET /v1/job/:id/versions`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DiffsParam {
    pub diffs: Option<String>,
}

pub async fn versions(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
    Query(d): Query<DiffsParam>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().jobs).await?;
    let versions: Vec<Job> = state
        .job_versions(q.namespace(), &id)
        .iter()
        .map(|j| (**j).clone())
        .collect();
    if versions.is_empty() {
        return Err(ApiErr::not_found(format!("job {id:?} not found")));
    }
    Ok(reply(
        &srv,
        state.tables().jobs,
        &api::JobVersionsResponse {
            diffs: QueryParams::flag(&d.diffs).then(|| {
                versions
                    .windows(2)
                    .map(|w| api::diff::job_diff(Some(&w[1]), &w[0]))
                    .collect()
            }),
            versions,
            index: state.tables().jobs,
        },
    ))
}

/// `PUT /v1/jobs/parse`: `{"JobHCL": "...", "Variables": "k = v\n..."}` in, the job's
/// API JSON out (always with Nomad's defaults filled in); a jobspec error is a 400 whose
/// sentences carry `input.hcl:line:column` (or `variables.hcl:...` for the variables).
pub async fn parse(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let req: JobsParseRequest = parse_body(&body)?;
    let size = req.job_hcl.len() + req.variables.len();
    let limit = srv.config.job_max_source_size;
    if size > limit {
        return Err(ApiErr(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "job source is {size} bytes (JobHCL plus Variables), more than this server's \
                 job_max_source_size of {limit} bytes; split the job, or raise \
                 job_max_source_size in the agent's server block"
            ),
        ));
    }
    if req.job_hcl.trim().is_empty() {
        return Err(ApiErr::bad_request(
            "JobHCL is empty: send {\"JobHCL\": \"job \\\"name\\\" { ... }\"}",
        ));
    }
    let inputs = jobspecs::VarInputs {
        values: parse_variables(&req.variables)?,
        ..Default::default()
    };
    let parsed = jobspecs::parse_str_with_inputs(&req.job_hcl, "input.hcl", &inputs)
        .map_err(|d| ApiErr::bad_request(d.to_string()))?;
    Ok(reply(&srv, srv.snapshot().index(), &parsed.job))
}

/// The `Variables` of a parse request: HCL `name = value` lines like a variables file,
/// or `name=value` lines taken as `-var` text; never read from the server's disk.
fn parse_variables(text: &str) -> Result<Vec<(String, jobspecs::GivenVar)>, ApiErr> {
    jobspecs::parse_variables_text(text, "variables.hcl")
        .map_err(|d| ApiErr::bad_request(d.to_string()))
}

pub async fn validate(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let req: JobRegisterRequest = parse_body(&body)?;
    let Some(mut job) = req.job else {
        return Err(ApiErr::bad_request(
            "missing job: the body must be {\"Job\": {...}}",
        ));
    };
    job.canonicalize();
    let errs = job_problems(&srv, &job);
    Ok(reply(
        &srv,
        srv.snapshot().index(),
        &serde_json::json!({
            "DriverConfigValidated": true,
            "ValidationErrors": errs,
            "Error": errs.join("; "),
            "Warnings": "",
        }),
    ))
}
