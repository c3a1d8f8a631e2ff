//! `PUT /v1/node/:id/drain`, `PUT /v1/node/:id/eligibility`, `PUT /v1/allocation/:id/stop`.

use super::{found, parse_body, reply, ApiErr, ApiResult, AppState};
use crate::fsm::Command;
use crate::now_nanos;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainSpec {
    /// Nanoseconds; negative forces an immediate drain, 0 means no deadline.
    pub deadline: i64,
    pub ignore_system_jobs: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainRequest {
    pub drain_spec: Option<DrainSpec>,
    pub mark_eligible: bool,
    pub meta: BTreeMap<String, String>,
}

fn node_reply(srv: &AppState, index: u64) -> serde_json::Value {
    let _ = srv;
    serde_json::json!({
        "EvalIDs": [],
        "EvalCreateIndex": 0,
        "NodeModifyIndex": index,
        "Index": index,
    })
}

pub async fn drain(State(srv): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let req: DrainRequest = parse_body(&body)?;
    let state = srv.snapshot();
    let node = found("node", &id, state.node_table().get(&id))?;
    let now = now_nanos();
    let message = req.meta.get("message").cloned();
    let cmd = match req.drain_spec {
        Some(spec) => {
            let strategy = api::DrainStrategy {
                deadline: spec.deadline,
                ignore_system_jobs: spec.ignore_system_jobs,
                force_deadline: if spec.deadline > 0 {
                    now.checked_add(spec.deadline).ok_or_else(|| {
                        ApiErr::bad_request(format!(
                            "invalid drain deadline {}ns: it ends past the year 2262; give a shorter one",
                            spec.deadline
                        ))
                    })?
                } else {
                    0
                },
                // Updating a running drain keeps its start.
                started_at: node
                    .drain_strategy
                    .as_ref()
                    .map(|d| d.started_at)
                    .unwrap_or(now),
            };
            let mut details = BTreeMap::new();
            if let Some(m) = message {
                details.insert("message".to_string(), m);
            }
            Command::UpdateNodeDrain {
                node_id: id.clone(),
                strategy: Some(strategy),
                mark_eligible: false,
                drain_status: "draining".into(),
                event: Some(api::NodeEvent {
                    message: "Node drain strategy set".into(),
                    subsystem: "Drain".into(),
                    details,
                    timestamp: now,
                    ..Default::default()
                }),
                evals: vec![],
                now,
            }
        }
        None => Command::UpdateNodeDrain {
            node_id: id.clone(),
            strategy: None,
            mark_eligible: req.mark_eligible,
            drain_status: if node.drain { "canceled" } else { "complete" }.into(),
            event: node.drain.then(|| api::NodeEvent {
                message: "Node drain disabled".into(),
                subsystem: "Drain".into(),
                timestamp: now,
                ..Default::default()
            }),
            evals: vec![],
            now,
        },
    };
    let resp = srv.write(cmd).await?;
    Ok(reply(&srv, resp.index, &node_reply(&srv, resp.index)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EligibilityRequest {
    pub eligibility: String,
}

pub async fn eligibility(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: EligibilityRequest = parse_body(&body)?;
    if req.eligibility != api::NODE_ELIGIBLE && req.eligibility != api::NODE_INELIGIBLE {
        return Err(ApiErr::bad_request(format!(
            "invalid eligibility {:?}: expected \"eligible\" or \"ineligible\"",
            req.eligibility
        )));
    }
    let state = srv.snapshot();
    let node = found("node", &id, state.node_table().get(&id))?;
    if node.drain && req.eligibility == api::NODE_ELIGIBLE {
        return Err(ApiErr(
            StatusCode::BAD_REQUEST,
            "cannot mark a draining node eligible; disable the drain first".into(),
        ));
    }
    let now = now_nanos();
    // A node that becomes eligible may take system jobs and blocked work.
    let evals = if req.eligibility == api::NODE_ELIGIBLE {
        crate::heartbeat::node_evals(&state, &id, now)
    } else {
        vec![]
    };
    let resp = srv
        .write(Command::UpdateNodeEligibility {
            node_id: id,
            eligibility: req.eligibility,
            evals,
            now,
        })
        .await?;
    Ok(reply(&srv, resp.index, &node_reply(&srv, resp.index)))
}

/// `drover alloc stop`: the scheduler replaces the allocation elsewhere and stops it.
pub async fn stop_alloc(State(srv): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let state = srv.snapshot();
    let alloc = found("alloc", &id, state.alloc_table().get(&id))?;
    let job = found(
        "job",
        &alloc.job_id,
        state.job(&alloc.namespace, &alloc.job_id),
    )?;
    let now = now_nanos();
    let eval = api::Evaluation::new_for_job(&job, "alloc-stop", now, api::new_id());
    let eval_id = eval.id.clone();
    let resp = srv
        .write(Command::AllocDesiredTransitions {
            transitions: vec![(
                id,
                api::DesiredTransition {
                    migrate: Some(true),
                    ..Default::default()
                },
            )],
            evals: vec![eval],
        })
        .await?;
    Ok(reply(
        &srv,
        resp.index,
        &serde_json::json!({ "EvalID": eval_id, "Index": resp.index }),
    ))
}
