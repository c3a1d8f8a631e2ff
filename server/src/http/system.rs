//! `/v1/system/gc`, `/v1/system/reconcile/summaries`, and the evaluate routes
//! (`/v1/job/:id/evaluate`, `/v1/node/:id/evaluate`): operator nudges to the scheduler.

use super::{found, reply, ApiErr, ApiResult, AppState, QueryParams};
use crate::fsm::Command;
use crate::now_nanos;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

/// `PUT /v1/system/gc`: collect everything collectable now, ignoring the age thresholds
/// (Nomad's forced collection). Answers an empty 200 as Nomad does.
pub async fn gc(State(srv): State<AppState>) -> ApiResult {
    crate::gc::run_once(&srv, true).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `PUT /v1/system/reconcile/summaries`. Drover computes job summaries from the
/// allocations on every read, so they cannot drift; there is nothing to recompute, and the
/// call answers as Nomad's does once it has.
pub async fn reconcile_summaries(State(srv): State<AppState>) -> ApiResult {
    let _ = srv;
    Ok(axum::http::StatusCode::OK.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobEvaluateRequest {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub eval_options: EvalOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EvalOptions {
    pub force_reschedule: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct JobEvaluateResponse {
    #[serde(rename = "EvalID")]
    eval_id: String,
    eval_create_index: u64,
    job_modify_index: u64,
    index: u64,
}

/// `PUT /v1/job/:id/evaluate`: a new evaluation of the job; with
/// `EvalOptions.ForceReschedule`, its failed allocations are rescheduled now, whatever
/// their reschedule policy's delay.
pub async fn evaluate_job(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
    body: Bytes,
) -> ApiResult {
    let req: JobEvaluateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        JobEvaluateRequest::default()
    } else {
        super::parse_body(&body)?
    };
    if !req.job_id.is_empty() && req.job_id != id {
        return Err(ApiErr::bad_request(format!(
            "job ID {:?} in the body does not match {id:?} in the URL",
            req.job_id
        )));
    }
    let state = srv.snapshot();
    let job = found("job", &id, state.job(q.namespace(), &id))?;
    if crate::periodic::is_template(&job) {
        return Err(ApiErr::bad_request(
            "can't evaluate periodic or parameterized jobs: evaluate one of its children",
        ));
    }
    let eval = api::Evaluation {
        job_modify_index: job.job_modify_index,
        ..api::Evaluation::new_for_job(&job, api::TRIGGER_JOB_REGISTER, now_nanos(), api::new_id())
    };
    let eval_id = eval.id.clone();
    let cmd = if req.eval_options.force_reschedule {
        let transitions = state
            .allocs_for_job(job.ns(), &job.id)
            .iter()
            .filter(|a| a.client_status == api::ALLOC_CLIENT_FAILED && !a.desired_stop())
            .map(|a| {
                let t = api::DesiredTransition {
                    force_reschedule: Some(true),
                    ..a.desired_transition.clone()
                };
                (a.id.to_string(), t)
            })
            .collect();
        Command::AllocDesiredTransitions {
            transitions,
            evals: vec![eval],
        }
    } else {
        Command::UpsertEvals { evals: vec![eval] }
    };
    let resp = srv.write(cmd).await?;
    let body = JobEvaluateResponse {
        eval_id,
        eval_create_index: resp.index,
        job_modify_index: job.job_modify_index,
        index: resp.index,
    };
    Ok(reply(&srv, resp.index, &body))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeEvaluateResponse {
    #[serde(rename = "EvalIDs")]
    eval_ids: Vec<String>,
    eval_create_index: u64,
    node_modify_index: u64,
    index: u64,
}

/// `PUT /v1/node/:id/evaluate`: an evaluation for every job with allocations on the node
/// (and every system job), as a node update would create.
pub async fn evaluate_node(State(srv): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let state = srv.snapshot();
    let node = found("node", &id, state.node_table().get(&id).cloned())?;
    let evals = crate::heartbeat::node_evals(&state, &node.id, now_nanos());
    let eval_ids: Vec<String> = evals.iter().map(|e| e.id.clone()).collect();
    let index = if evals.is_empty() {
        state.index()
    } else {
        srv.write(Command::UpsertEvals { evals }).await?.index
    };
    let body = NodeEvaluateResponse {
        eval_ids,
        eval_create_index: index,
        node_modify_index: node.modify_index,
        index,
    };
    Ok(reply(&srv, index, &body))
}
