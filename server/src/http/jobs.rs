//! `/v1/jobs`, `/v1/job/:id` and friends.

use super::{
    alloc_stubs, blocking, found, parse_body, read_table, reply, ApiErr, ApiResult, AppState,
    QueryParams, Table,
};
use crate::fsm::Command;
use crate::now_nanos;
use api::{
    Evaluation, Job, JobDeregisterResponse, JobListStub, JobRegisterRequest, JobRegisterResponse,
    JobsParseRequest,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let filter = q.filter()?;
    read_table(&srv, &q, Table::JobsAndAllocs, |state| {
        let ns = q.namespace();
        let all_ns = ns == "*";
        let out: Vec<JobListStub> = state
            .job_table()
            .values()
            .filter(|j| (all_ns || j.ns() == ns) && q.prefix_matches(&j.id))
            .map(|j| JobListStub::from_job(j, Some(state.job_summary(j))))
            .collect();
        Ok(super::filter::apply(filter.as_ref(), out))
    })
    .await
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
        check_path_id(&job, &id)?;
    }
    job.canonicalize();
    check_job(&srv, &job)?;
    let state = srv.snapshot();
    super::operator::check_registration_allowed(&state)?;
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
    register_version(&srv, job, api::TRIGGER_JOB_REGISTER).await
}

/// Refuses a body whose job is not the one the URL names.
pub(super) fn check_path_id(job: &Job, id: &str) -> Result<(), ApiErr> {
    if job.id != id {
        return Err(ApiErr::bad_request(format!(
            "job ID {:?} in the body does not match {:?} in the URL",
            job.id, id
        )));
    }
    Ok(())
}

/// The 400 every path that takes a job answers for one this server would refuse.
pub(super) fn check_job(srv: &AppState, job: &Job) -> Result<(), ApiErr> {
    super::namespaces::check_job(&srv.snapshot(), job)?;
    let errs = job_problems(srv, job);
    if !errs.is_empty() {
        return Err(ApiErr::bad_request(format!(
            "job validation failed: {}",
            errs.join("; ")
        )));
    }
    Ok(())
}

/// Keep the server-owned fields (stop, stable, status) out of what a user sent.
pub(super) fn clear_server_fields(job: &mut Job) {
    job.stop = false;
    job.status.clear();
    job.stable = false;
}

/// Write a checked `job` as the job's next version, with an evaluation triggered by
/// `trigger`, and answer as `PUT /v1/jobs` does (register, revert and scale share it).
pub(super) async fn register_version(srv: &AppState, mut job: Job, trigger: &str) -> ApiResult {
    clear_server_fields(&mut job);
    let now = now_nanos();
    // A periodic or parameterized template places nothing: its children do.
    let eval = (!crate::periodic::is_template(&job)).then(|| new_eval(&job, trigger, now));
    let resp = srv.write(Command::RegisterJob { job, eval, now }).await?;
    Ok(reply(
        srv,
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
    // A schedule the launcher could not follow (an unknown time zone, say).
    if let Some(p) = &job.periodic {
        if let Err(m) = crate::periodic::next_launch(p, now_nanos() / 1_000_000_000) {
            errs.push(format!("periodic: {m}"));
        }
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
    found("job", id, state.job(q.namespace(), id))
}

pub async fn get_job(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Jobs, |state| find_job(state, &q, &id)).await
}

pub async fn deregister(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let purge = QueryParams::parse_bool("purge", &q.purge)?;
    let state = srv.snapshot();
    // Deregistering is idempotent in Nomad: a job that is not there (never was, or was
    // purged) answers 200 with no evaluation.
    let Some(job) = state.job(q.namespace(), &id) else {
        return Ok(reply(
            &srv,
            state.index(),
            &JobDeregisterResponse {
                eval_id: String::new(),
                eval_create_index: 0,
                job_modify_index: 0,
                index: state.index(),
                last_contact: 0,
                known_leader: true,
            },
        ));
    };
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
    read_table(&srv, &q, Table::Allocs, |state| {
        Ok(alloc_stubs(&state.allocs_for_job(q.namespace(), &id)))
    })
    .await
}

pub async fn evaluations(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Evals, |state| {
        Ok(super::newest_first(
            state.evals_for_job(q.namespace(), &id).iter(),
        ))
    })
    .await
}

pub async fn summary(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::JobsAndAllocs, |state| {
        let job = find_job(state, &q, &id)?;
        Ok(state.job_summary(&job))
    })
    .await
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
