//! `PUT /v1/job/:id/dispatch` (parameterized jobs) and `PUT /v1/job/:id/periodic/force`.

use super::{found, parse_body, reply, ApiErr, ApiResult, AppState, QueryParams};
use crate::fsm::Command;
use crate::{now_nanos, periodic};
use api::{Evaluation, JobDispatchRequest, JobDispatchResponse, PeriodicForceResponse};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use base64::Engine;

pub const TRIGGER_DISPATCH: &str = "job-register";

pub async fn dispatch(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
    body: Bytes,
) -> ApiResult {
    let req: JobDispatchRequest = if body.is_empty() {
        JobDispatchRequest::default()
    } else {
        parse_body(&body)?
    };
    let state = srv.snapshot();
    super::operator::check_registration_allowed(&state)?;
    let parent = found("job", &id, state.job(q.namespace(), &id))?;
    let params = match &parent.parameterized_job {
        Some(p) if parent.parent_id.is_empty() => p,
        _ => {
            return Err(ApiErr::bad_request(format!(
                "Specified job {id:?} is not a parameterized job"
            )))
        }
    };
    if parent.stop {
        return Err(ApiErr::bad_request(format!(
            "Specified job {id:?} is stopped"
        )));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(req.payload.as_bytes())
        .map_err(|e| ApiErr::bad_request(format!("Payload is not valid base64: {e}")))?;
    let errs = api::dispatch_problems(params, &req.meta, payload.len());
    if !errs.is_empty() {
        return Err(ApiErr::bad_request(errs.join("; ")));
    }
    let now = now_nanos();
    let uid = api::new_id();
    let mut child = (*parent).clone();
    child.id = if req.id_prefix_template.is_empty() {
        format!("{id}/dispatch-{}-{}", now / 1_000_000_000, &uid[..8])
    } else {
        format!(
            "{id}/dispatch-{}-{}-{}",
            req.id_prefix_template,
            now / 1_000_000_000,
            &uid[..8]
        )
    };
    child.name = child.id.clone();
    child.parent_id = id.clone();
    child.parameterized_job = None;
    child.periodic = None;
    child.payload = req.payload.clone();
    child.meta.extend(req.meta);
    child.status.clear();
    child.stable = false;
    let child_id = child.id.clone();
    let eval = Evaluation::new_for_job(&child, TRIGGER_DISPATCH, now, api::new_id());
    let resp = srv
        .write(Command::RegisterJob {
            job: child,
            eval: Some(eval),
            now,
        })
        .await?;
    Ok(reply(
        &srv,
        resp.index,
        &JobDispatchResponse {
            dispatched_job_id: child_id,
            eval_id: resp.eval_id,
            eval_create_index: resp.index,
            job_create_index: resp.index,
            index: resp.index,
        },
    ))
}

pub async fn periodic_force(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = srv.snapshot();
    let job = found("job", &id, state.job(q.namespace(), &id))?;
    if job.periodic.is_none() || !job.parent_id.is_empty() {
        return Err(ApiErr::bad_request(format!("Job {id:?} is not periodic")));
    }
    if job.stop {
        return Err(ApiErr::bad_request(format!("Job {id:?} is stopped")));
    }
    if !job.periodic.as_ref().is_some_and(|p| p.enabled) {
        return Err(ApiErr::bad_request(format!(
            "periodic job {id:?} is not enabled"
        )));
    }
    let now = now_nanos();
    let (resp, eval_id) = periodic::launch_child(&srv, &job, now / 1_000_000_000, now).await?;
    let eval_id = if resp.eval_id.is_empty() {
        eval_id
    } else {
        resp.eval_id
    };
    Ok(reply(
        &srv,
        resp.index,
        &PeriodicForceResponse {
            eval_id,
            eval_create_index: resp.index,
            index: resp.index,
        },
    ))
}
