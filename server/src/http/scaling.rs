//! `GET /v1/scaling/policies` and `GET /v1/scaling/policy/:id`: the scaling policies of
//! the jobs' `scaling` blocks, as Nomad lists them for autoscalers.
//!
//! Drover's job model has no `scaling` block yet (the job file parser accepts and ignores
//! one), so no job carries a policy: the list is empty and every policy is not found.
//! The routes exist so that autoscalers and clients get Nomad's answers, not a 404 route.

use super::{read_table, ApiErr, ApiResult, AppState, QueryParams, Table};
use axum::extract::{Path, Query, State};
use serde::Serialize;

/// One row of the list, Nomad's `ScalingPolicyListStub`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyStub {
    #[serde(rename = "ID")]
    id: String,
    enabled: bool,
    #[serde(rename = "Type")]
    kind: String,
    target: std::collections::BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
}

/// The policies of the jobs in the state (none until jobs carry `scaling` blocks).
fn policies(_state: &crate::state::StateStore) -> Vec<PolicyStub> {
    Vec::new()
}

/// `GET /v1/scaling/policies?job=&type=`.
pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    read_table(&srv, &q, Table::Jobs, |state| Ok(policies(state))).await
}

/// `GET /v1/scaling/policy/:id`.
pub async fn get_policy(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Jobs, |state| {
        policies(state)
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| ApiErr::not_found("scaling policy not found"))
    })
    .await
}
