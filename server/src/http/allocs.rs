//! `/v1/allocations`, `/v1/allocation/:id`, `/v1/evaluations`, `/v1/evaluation/:id`.

use super::{alloc_stubs, found, read_table, ApiResult, AppState, QueryParams, Table};
use axum::extract::{Path, Query, State};

pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let filter = q.filter()?;
    read_table(&srv, &q, Table::Allocs, |state| {
        let resources = QueryParams::flag(&q.resources);
        let out: Vec<api::AllocationListStub> = state
            .alloc_table()
            .values()
            .filter(|a| q.namespace_matches(&a.namespace) && q.prefix_matches(&a.id))
            .map(|a| {
                let stub = api::AllocationListStub::from_alloc(a);
                if resources {
                    stub.with_resources(a)
                } else {
                    stub
                }
            })
            .collect();
        Ok(super::filter::apply(filter.as_ref(), out))
    })
    .await
}

pub async fn get_alloc(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Allocs, |state| {
        found("alloc", &id, state.alloc_table().get(&id).cloned())
    })
    .await
}

pub async fn list_evals(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let filter = q.filter()?;
    read_table(&srv, &q, Table::Evals, |state| {
        let out = super::newest_first(
            state
                .eval_table()
                .values()
                .filter(|e| q.namespace_matches(&e.namespace) && q.prefix_matches(&e.id)),
        );
        Ok(super::filter::apply(filter.as_ref(), out))
    })
    .await
}

pub async fn get_eval(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Evals, |state| {
        found("eval", &id, state.eval_table().get(&id).cloned())
    })
    .await
}

pub async fn eval_allocs(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    read_table(&srv, &q, Table::Allocs, |state| {
        Ok(alloc_stubs(
            state.alloc_table().values().filter(|a| a.eval_id == id),
        ))
    })
    .await
}
