//! `/v1/deployments`, `/v1/deployment/*`, and the job routes that act on versions:
//! `/v1/job/:id/deployment(s)`, `/v1/job/:id/revert`, `/v1/job/:id/stable`,
//! `/v1/job/:id/scale`.

use super::{
    alloc_stubs, blocking, found, parse_body, read_table, reply, ApiErr, ApiResult, AppState,
    QueryParams, Table,
};
use crate::deployments::{
    command_for, deployment_eval, failure, promotion_refusal, OperatorAction,
};
use crate::fsm::Command;
use crate::now_nanos;
use crate::state::StateStore;
use api::{
    Deployment, DeploymentAllocHealthRequest, DeploymentPauseRequest, DeploymentPromoteRequest,
    DeploymentStatusUpdate, DeploymentUpdateResponse, Job, JobRegisterResponse, JobRevertRequest,
    JobScaleStatus, JobStabilityRequest, JobStabilityResponse, ScalingRequest,
    TaskGroupScaleStatus,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A body that may be empty (the CLI and some clients send none for fail or pause).
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiErr> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

fn find(state: &StateStore, id: &str) -> Result<Arc<Deployment>, ApiErr> {
    found("deployment", id, state.deployment(id))
}

fn find_job(state: &StateStore, q: &QueryParams, id: &str) -> Result<Arc<Job>, ApiErr> {
    found("job", id, state.job(q.namespace(), id))
}

fn conflict(msg: impl Into<String>) -> ApiErr {
    ApiErr(StatusCode::BAD_REQUEST, msg.into())
}

/// `GET /v1/deployments`: newest first, `prefix` and `namespace` (`*` for all).
pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    read_table(&srv, &q, Table::Deployments, |state| {
        let mut out: Vec<Deployment> = state
            .deployment_table()
            .values()
            .filter(|d| q.namespace_matches(&d.namespace) && q.prefix_matches(&d.id))
            .map(|d| (**d).clone())
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.create_index));
        Ok(out)
    })
    .await
}

/// `GET /v1/deployment/:id`.
pub async fn get_deployment(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Deployments, |state| find(state, &id)).await
}

/// `GET /v1/deployment/allocations/:id`.
pub async fn allocations(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Allocs, |state| {
        let d = find(state, &id)?;
        Ok(alloc_stubs(&state.allocs_for_deployment(&d)))
    })
    .await
}

/// `GET /v1/job/:id/deployments`: newest first.
pub async fn job_deployments(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Deployments, |state| {
        Ok(state.deployments_for_job(q.namespace(), &id))
    })
    .await
}

/// `GET /v1/job/:id/deployment`: the newest one, or `null`.
pub async fn job_latest_deployment(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Deployments, |state| {
        Ok(state.latest_deployment(q.namespace(), &id))
    })
    .await
}

/// The answer to a deployment write.
fn update_reply(srv: &AppState, resp: crate::fsm::Response, eval_id: String) -> ApiResult {
    let body = DeploymentUpdateResponse {
        eval_create_index: if eval_id.is_empty() { 0 } else { resp.index },
        eval_id,
        deployment_modify_index: resp.index,
        reverted_job_version: None,
        index: resp.index,
    };
    if let Some(e) = resp.error {
        return Err(conflict(e));
    }
    Ok(reply(srv, resp.index, &body))
}

/// `PUT /v1/deployment/promote/:id`: refused until the canaries are healthy.
pub async fn promote(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: DeploymentPromoteRequest = optional_body(&body)?;
    let state = srv.snapshot();
    let d = find(&state, &id)?;
    let groups = if req.all { vec![] } else { req.groups };
    if let Some(why) = promotion_refusal(&state, &d, &groups) {
        return Err(conflict(why));
    }
    let job = found("job", &d.job_id, state.job(&d.namespace, &d.job_id))?;
    let now = now_nanos();
    let eval = deployment_eval(&job, &d, api::TRIGGER_DEPLOYMENT_WATCHER, now);
    let eval_id = eval.id.clone();
    let resp = srv
        .write(Command::PromoteDeployment {
            deployment_id: d.id.clone(),
            groups,
            eval: Some(eval),
            now,
        })
        .await?;
    update_reply(&srv, resp, eval_id)
}

/// `PUT /v1/deployment/fail/:id`: with `auto_revert`, rolls back as a watcher failure does.
pub async fn fail(State(srv): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let state = srv.snapshot();
    let d = find(&state, &id)?;
    if !d.active() {
        return Err(conflict(OperatorAction::Fail.terminal_refusal()));
    }
    let now = now_nanos();
    let action = failure(&state, &d, api::DEPLOYMENT_DESC_FAILED_BY_USER);
    let Some(mut cmd) = command_for(&state, action, now) else {
        return Err(ApiErr::not_found(format!("deployment {id:?} not found")));
    };
    let mut eval_id = String::new();
    if let Command::UpdateDeploymentStatus { eval, .. } = &mut cmd {
        if eval.is_none() {
            if let Some(job) = state.job(&d.namespace, &d.job_id) {
                *eval = Some(deployment_eval(
                    &job,
                    &d,
                    api::TRIGGER_DEPLOYMENT_WATCHER,
                    now,
                ));
            }
        }
        eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    }
    let resp = srv.write(cmd).await?;
    update_reply(&srv, resp, eval_id)
}

/// `PUT /v1/deployment/pause/:id`: `{"Pause": true}` pauses, `false` resumes.
pub async fn pause(State(srv): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let req: DeploymentPauseRequest = optional_body(&body)?;
    let state = srv.snapshot();
    let d = find(&state, &id)?;
    if !d.active() {
        let action = if req.pause {
            OperatorAction::Pause
        } else {
            OperatorAction::Resume
        };
        return Err(conflict(action.terminal_refusal()));
    }
    let now = now_nanos();
    let (status, description) = if req.pause {
        (api::DEPLOYMENT_STATUS_PAUSED, api::DEPLOYMENT_DESC_PAUSED)
    } else if d.requires_promotion() && !d.auto_promotes() {
        (
            api::DEPLOYMENT_STATUS_RUNNING,
            api::DEPLOYMENT_DESC_NEEDS_PROMOTION,
        )
    } else {
        (api::DEPLOYMENT_STATUS_RUNNING, api::DEPLOYMENT_DESC_RUNNING)
    };
    // Resuming asks the scheduler to continue the rollout.
    let eval = (!req.pause)
        .then(|| state.job(&d.namespace, &d.job_id))
        .flatten()
        .map(|job| deployment_eval(&job, &d, api::TRIGGER_DEPLOYMENT_WATCHER, now));
    let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    let resp = srv
        .write(Command::UpdateDeploymentStatus {
            update: DeploymentStatusUpdate {
                deployment_id: d.id.clone(),
                status: status.into(),
                status_description: description.into(),
            },
            job: None,
            eval,
            now,
        })
        .await?;
    update_reply(&srv, resp, eval_id)
}

/// `PUT /v1/deployment/allocation-health/:id`: an operator's verdict on allocations.
pub async fn allocation_health(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: DeploymentAllocHealthRequest = parse_body(&body)?;
    let state = srv.snapshot();
    let d = find(&state, &id)?;
    if !d.active() {
        return Err(conflict(OperatorAction::SetHealth.terminal_refusal()));
    }
    let ids = req
        .healthy_allocation_ids
        .iter()
        .chain(&req.unhealthy_allocation_ids);
    for a in ids {
        let ok = state
            .alloc_table()
            .get(a)
            .is_some_and(|a| a.deployment_id == d.id);
        if !ok {
            return Err(conflict(format!(
                "Allocation {a:?} is not part of deployment {:?}",
                d.id
            )));
        }
    }
    let now = now_nanos();
    let eval = state
        .job(&d.namespace, &d.job_id)
        .map(|job| deployment_eval(&job, &d, api::TRIGGER_ALLOC_HEALTH, now));
    let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    let resp = srv
        .write(Command::SetAllocHealth {
            deployment_id: d.id.clone(),
            healthy: req.healthy_allocation_ids,
            unhealthy: req.unhealthy_allocation_ids,
            eval,
            now,
        })
        .await?;
    update_reply(&srv, resp, eval_id)
}

/// Register `job` as the job's next version, with an evaluation triggered by `trigger`.
async fn register_version(srv: &AppState, job: Job, trigger: &str) -> ApiResult {
    super::jobs::check_job(srv, &job)?;
    super::jobs::register_version(srv, job, trigger).await
}

/// `PUT /v1/job/:id/revert`: register an older version's spec as the next version.
pub async fn revert(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
    body: Bytes,
) -> ApiResult {
    let req: JobRevertRequest = parse_body(&body)?;
    let state = srv.snapshot();
    let current = find_job(&state, &q, &id)?;
    if let Some(prior) = req.enforce_prior_version {
        if prior != current.version {
            return Err(conflict(format!(
                "Current job has version {}; enforcing version {prior}",
                current.version
            )));
        }
    }
    if req.job_version == current.version {
        return Err(conflict(format!(
            "can't revert to current version {}",
            req.job_version
        )));
    }
    let Some(target) = state
        .job_versions(q.namespace(), &id)
        .into_iter()
        .find(|j| j.version == req.job_version)
    else {
        return Err(ApiErr::not_found(format!(
            "job {id:?} at version {} not found",
            req.job_version
        )));
    };
    register_version(&srv, (*target).clone(), api::TRIGGER_JOB_REGISTER).await
}

/// `PUT /v1/job/:id/stable`: mark a version stable or not.
pub async fn stable(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
    body: Bytes,
) -> ApiResult {
    let req: JobStabilityRequest = parse_body(&body)?;
    let state = srv.snapshot();
    let job = find_job(&state, &q, &id)?;
    let resp = srv
        .write(Command::UpdateJobStability {
            namespace: job.ns().to_string(),
            job_id: job.id.clone(),
            version: req.job_version,
            stable: req.stable,
        })
        .await?;
    if let Some(e) = resp.error {
        return Err(ApiErr::not_found(e));
    }
    Ok(reply(
        &srv,
        resp.index,
        &JobStabilityResponse { index: resp.index },
    ))
}

/// `GET /v1/job/:id/scale`: each group's desired count and what runs of it.
pub async fn scale_status(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().jobs.max(s.tables().allocs)).await?;
    let job = find_job(&state, &q, &id)?;
    let mut out = JobScaleStatus {
        job_id: job.id.clone(),
        namespace: job.ns().to_string(),
        job_create_index: job.create_index,
        job_modify_index: job.job_modify_index,
        job_stopped: job.stop,
        task_groups: Default::default(),
    };
    for g in &job.task_groups {
        out.task_groups.insert(
            g.name.clone(),
            TaskGroupScaleStatus {
                desired: g.count,
                ..Default::default()
            },
        );
    }
    for a in state.allocs_for_job(job.ns(), &job.id) {
        let Some(g) = out.task_groups.get_mut(a.task_group.as_str()) else {
            continue;
        };
        if a.terminal() || a.job_version() != job.version {
            continue;
        }
        g.placed += 1;
        if a.client_status == api::ALLOC_CLIENT_RUNNING {
            g.running += 1;
        }
        match a.deployment_status.as_ref().and_then(|s| s.healthy) {
            Some(true) => g.healthy += 1,
            Some(false) => g.unhealthy += 1,
            None => {}
        }
    }
    Ok(reply(
        &srv,
        state.tables().jobs.max(state.tables().allocs),
        &out,
    ))
}

/// `PUT /v1/job/:id/scale` (Nomad's `ScalingRequest`): a new version with the group's
/// count set.
pub async fn scale(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
    body: Bytes,
) -> ApiResult {
    let req: ScalingRequest = parse_body(&body)?;
    let Some(group) = req.target.get("Group").filter(|g| !g.is_empty()) else {
        return Err(ApiErr::bad_request(
            "missing task group name in scaling request: Target must name a Group",
        ));
    };
    let state = srv.snapshot();
    super::operator::check_registration_allowed(&state)?;
    let current = find_job(&state, &q, &id)?;
    let Some(count) = req.count else {
        // Nomad records a scaling event without a count; there is nothing to change.
        return Ok(reply(
            &srv,
            state.index(),
            &JobRegisterResponse {
                index: state.index(),
                job_modify_index: current.job_modify_index,
                known_leader: true,
                ..Default::default()
            },
        ));
    };
    if count < 0 {
        return Err(ApiErr::bad_request(
            "scaling action count can't be negative",
        ));
    }
    let mut job = (*current).clone();
    let Some(g) = job.task_groups.iter_mut().find(|g| &g.name == group) else {
        return Err(ApiErr::bad_request(format!(
            "task group {group:?} specified for scaling does not exist in job"
        )));
    };
    g.count = count;
    register_version(&srv, job, api::TRIGGER_JOB_SCALING).await
}
