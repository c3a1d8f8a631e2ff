//! Nomad Variables: `GET /v1/vars` (metadata), `GET|PUT|DELETE /v1/var/:path`.
//!
//! A path may hold `/` (`nomad/jobs/example/web`); the route's wildcard takes it whole.
//! Writes seal the items on the leader (`crate::keyring`) before proposing, and the FSM
//! decides the check-and-set (`?cas=`), so a refused write changes nothing; it is
//! answered 409 with the variable as it now is, as Nomad does. Reads open the items on
//! the server that answers (the leader, or any server with `?stale`).

use super::{filter, found, parse_body, read_table, reply, ApiErr, ApiResult, AppState};
use super::{QueryParams, Table};
use crate::fsm::{Command, CAS_CONFLICT};
use crate::state::StateStore;
use crate::WriteError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use std::time::Duration;

/// The query of a variable write.
#[derive(Debug, Default, Deserialize)]
pub struct WriteParams {
    pub namespace: Option<String>,
    pub cas: Option<String>,
}

impl WriteParams {
    fn cas(&self) -> Result<Option<u64>, ApiErr> {
        match self.cas.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiErr::bad_request(format!(
                    "invalid cas {s:?}: expected the variable's modify index (an integer)"
                ))
            }),
        }
    }
}

fn checked_path(path: &str) -> Result<(), ApiErr> {
    match api::variable_path_problem(path) {
        Some(p) => Err(ApiErr::bad_request(p)),
        None => Ok(()),
    }
}

fn decrypt_err(e: String) -> ApiErr {
    ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// The variable at `(ns, path)` opened, for a read.
fn opened(srv: &AppState, s: &StateStore, ns: &str, path: &str) -> Result<api::Variable, ApiErr> {
    let v = found("variable", path, s.variable(ns, path))?;
    srv.keyring.decrypt(s, &v).map_err(decrypt_err)
}

/// Paging of `GET /v1/vars`.
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    pub per_page: Option<String>,
    pub next_token: Option<String>,
}

/// `GET /v1/vars?prefix=&namespace=&filter=&per_page=&next_token=`: metadata only, never
/// the items, ordered by namespace and path. A page's `X-Nomad-NextToken` is the path of
/// the first variable left out (`<namespace>.<path>` when listing every namespace; neither
/// may hold a `.`).
pub async fn list(
    State(srv): State<AppState>,
    Query(q): Query<QueryParams>,
    Query(p): Query<PageParams>,
) -> ApiResult {
    let f = q.filter()?;
    let per_page = match p.per_page.as_deref().map(str::trim) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse::<u32>().map_err(|_| {
            ApiErr::bad_request(format!(
                "invalid per_page {s:?}: expected a positive integer"
            ))
        })? as usize),
    };
    let want = q.namespace().to_string();
    let token = |v: &api::VariableMetadata| match want.as_str() {
        "*" => format!("{}.{}", v.namespace, v.path),
        _ => v.path.clone(),
    };
    let state = super::blocking(&srv, &q, |s| s.tables().variables).await?;
    let all: Vec<api::VariableMetadata> = state
        .variable_table()
        .values()
        .filter(|v| q.namespace_matches(&v.namespace) && q.prefix_matches(&v.path))
        .map(|v| v.metadata())
        .collect();
    let mut out: Vec<_> = filter::apply(f.as_ref(), all)
        .into_iter()
        .filter(|v| {
            p.next_token
                .as_deref()
                .is_none_or(|t| token(v).as_str() >= t)
        })
        .collect();
    let next = match per_page {
        Some(n) if out.len() > n => {
            let t = token(&out[n]);
            out.truncate(n);
            Some(t)
        }
        _ => None,
    };
    let mut resp = reply(&srv, state.tables().variables, &out);
    if let Some(t) = next.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert("X-Nomad-NextToken", t);
    }
    Ok(resp)
}

/// `GET /v1/var/:path`: the variable with its items; 404 when there is none.
pub async fn get_var(
    State(srv): State<AppState>,
    Path(path): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    checked_path(&path)?;
    let ns = q.namespace().to_string();
    read_table(&srv, &q, Table::Variables, |s| opened(&srv, s, &ns, &path)).await
}

/// The namespace a write goes to: `?namespace=`, else the body's, else `default`.
fn write_namespace(q: &WriteParams, body_ns: &str) -> Result<String, ApiErr> {
    let ns = [q.namespace.as_deref().unwrap_or(""), body_ns]
        .into_iter()
        .find(|n| !n.is_empty())
        .unwrap_or(api::DEFAULT_NAMESPACE);
    if ns == "*" {
        return Err(ApiErr::bad_request(
            "a variable is written to one namespace, not \"*\"",
        ));
    }
    Ok(ns.to_string())
}

/// A refused check-and-set: 409 and the variable as it now is (only its namespace and
/// path when there is none).
async fn conflict(srv: &AppState, ns: &str, path: &str) -> ApiResult {
    let state = srv.snapshot();
    let current = match state.variable(ns, path) {
        Some(v) => srv.keyring.decrypt(&state, &v).map_err(decrypt_err)?,
        None => api::Variable {
            namespace: ns.to_string(),
            path: path.to_string(),
            ..Default::default()
        },
    };
    let index = state.tables().variables;
    let mut resp = reply(srv, index, &current);
    *resp.status_mut() = StatusCode::CONFLICT;
    Ok(resp)
}

/// `PUT /v1/var/:path?cas=N`: create or replace a variable; answers the stored variable.
pub async fn put_var(
    State(srv): State<AppState>,
    Path(path): Path<String>,
    Query(q): Query<WriteParams>,
    body: Bytes,
) -> ApiResult {
    checked_path(&path)?;
    let cas = q.cas()?;
    let var: api::Variable = parse_body(&body)?;
    let ns = write_namespace(&q, &var.namespace)?;
    if let Some(p) = api::variable_items_problem(&var.items) {
        return Err(ApiErr::bad_request(p));
    }
    super::namespaces::check_exists(&srv.snapshot(), &ns, format!("variable {path:?}"))?;
    let now = crate::now_nanos();
    if let Some(key) = srv.keyring.key_to_replicate(&srv.snapshot(), now) {
        let r = srv.write(Command::UpsertRootKey { key }).await?;
        srv.wait_for_index(r.index, Duration::from_secs(5)).await;
    }
    let mut sealed = srv
        .keyring
        .seal(&srv.snapshot(), &ns, &path, &var.items)
        .map_err(|e| decrypt_err(format!("cannot encrypt variable {path:?}: {e}")))?;
    sealed.create_time = now;
    sealed.modify_time = now;
    let resp = match srv.write(Command::PutVariable { var: sealed, cas }).await {
        Ok(r) => r,
        Err(WriteError::Rejected(m)) if m.starts_with(CAS_CONFLICT) => {
            return conflict(&srv, &ns, &path).await;
        }
        Err(e) => return Err(e.into()),
    };
    let state = srv.wait_for_index(resp.index, Duration::from_secs(5)).await;
    let (create_index, create_time) = state
        .variable(&ns, &path)
        .filter(|v| v.modify_index == resp.index)
        .map_or((resp.index, now), |v| (v.create_index, v.create_time));
    let out = api::Variable {
        namespace: ns,
        path,
        create_index,
        modify_index: resp.index,
        create_time,
        modify_time: now,
        items: var.items,
    };
    Ok(reply(&srv, resp.index, &out))
}

/// `DELETE /v1/var/:path?cas=N`: remove a variable; 409 (nothing removed) on a stale
/// check index.
pub async fn delete_var(
    State(srv): State<AppState>,
    Path(path): Path<String>,
    Query(q): Query<WriteParams>,
) -> ApiResult {
    checked_path(&path)?;
    let cas = q.cas()?;
    let ns = write_namespace(&q, "")?;
    let cmd = Command::DeleteVariable {
        namespace: ns.clone(),
        path: path.clone(),
        cas,
    };
    match srv.write(cmd).await {
        Ok(r) => {
            let mut resp = StatusCode::OK.into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&r.index.to_string()) {
                resp.headers_mut().insert("X-Nomad-Index", v);
            }
            Ok(resp)
        }
        Err(WriteError::Rejected(m)) if m.starts_with(CAS_CONFLICT) => {
            conflict(&srv, &ns, &path).await
        }
        Err(e) => Err(e.into()),
    }
}
