//! `GET /v1/client/allocation/:alloc/checks`: the latest result of each check of the
//! allocation's `provider = "nomad"` services, as a map from check ID to result.

use super::{find_alloc, HttpResult};
use crate::handle::ClientHandle;
use axum::extract::{Path as UrlPath, State};
use axum::response::IntoResponse;
use axum::Json;

pub(super) async fn alloc_checks(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let results = view.checks.borrow().clone();
    Ok(Json(&*results).into_response())
}
