//! `/v1/allocations`, `/v1/allocation/:id`, `/v1/evaluations`, `/v1/evaluation/:id`.

use super::{blocking, reply, ApiErr, ApiResult, AppState, QueryParams};
use api::AllocationListStub;
use axum::extract::{Path, Query, State};

pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let filter = q.filter()?;
    let state = blocking(&srv, &q, |s| s.tables().allocs).await?;
    let out: Vec<AllocationListStub> = state
        .alloc_table()
        .values()
        .filter(|a| q.prefix_matches(&a.id))
        .map(|a| AllocationListStub::from_alloc(a))
        .collect();
    let out = super::filter::apply(filter.as_ref(), out);
    Ok(reply(&srv, state.tables().allocs, &out))
}

pub async fn get_alloc(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().allocs).await?;
    let a = state
        .alloc_table()
        .get(&id)
        .ok_or_else(|| ApiErr::not_found(format!("alloc {id:?} not found")))?;
    Ok(reply(&srv, state.tables().allocs, &**a))
}

pub async fn list_evals(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let filter = q.filter()?;
    let state = blocking(&srv, &q, |s| s.tables().evals).await?;
    let out = super::newest_first(
        state
            .eval_table()
            .values()
            .filter(|e| q.prefix_matches(&e.id)),
    );
    let out = super::filter::apply(filter.as_ref(), out);
    Ok(reply(&srv, state.tables().evals, &out))
}

pub async fn get_eval(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().evals).await?;
    let e = state
        .eval_table()
        .get(&id)
        .ok_or_else(|| ApiErr::not_found(format!("eval {id:?} not found")))?;
    Ok(reply(&srv, state.tables().evals, &**e))
}

pub async fn eval_allocs(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, |s| s.tables().allocs).await?;
    let out: Vec<AllocationListStub> = state
        .alloc_table()
        .values()
        .filter(|a| a.eval_id == id)
        .map(|a| AllocationListStub::from_alloc(a))
        .collect();
    Ok(reply(&srv, state.tables().allocs, &out))
}
