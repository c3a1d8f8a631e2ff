//! Namespaces in Nomad's shapes: `GET /v1/namespaces` (`?prefix=`, blocking),
//! `GET|PUT|POST|DELETE /v1/namespace/:name` and `PUT|POST /v1/namespace`.
//!
//! The auth layer has already decided who may enter (reads: any capability in the
//! namespace; writes: a management token) and filters the list to the namespaces the
//! token may use. Writes are checked here for a sentence before they are proposed; the
//! FSM decides again on apply (`fsm/namespaces.rs`), which is where deleting `default`
//! or a namespace that still holds a live job or a variable is refused. Job and
//! variable writes call [`check_job`] / [`check_exists`] before they are proposed.

use super::{blocking, parse_body, reply, ApiErr, ApiResult, AppState, QueryParams};
use crate::fsm::{Command, NamespaceCommand, NAMESPACE_IN_USE};
use crate::state::StateStore;
use crate::WriteError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

fn namespace_index(s: &StateStore) -> u64 {
    s.tables().namespaces
}

/// The 400 for a namespace (or a job, or a variable) in a namespace that does not exist.
pub fn check_exists(state: &StateStore, namespace: &str, what: String) -> Result<(), ApiErr> {
    if state.namespace_exists(namespace) {
        return Ok(());
    }
    Err(ApiErr::bad_request(format!(
        "{what} is in nonexistent namespace {namespace:?}"
    )))
}

/// The 400 for a job this server would refuse because of its namespace: one that does
/// not exist, or whose capabilities forbid a task driver the job uses.
pub fn check_job(state: &StateStore, job: &api::Job) -> Result<(), ApiErr> {
    let name = job.ns();
    check_exists(state, name, format!("job {:?}", job.id))?;
    let Some(caps) = state.namespace(name).and_then(|n| n.capabilities.clone()) else {
        return Ok(());
    };
    let tasks = job.task_groups.iter().flat_map(|g| g.tasks.iter());
    for t in tasks {
        let enabled =
            caps.enabled_task_drivers.is_empty() || caps.enabled_task_drivers.contains(&t.driver);
        if !enabled || caps.disabled_task_drivers.contains(&t.driver) {
            return Err(ApiErr::bad_request(format!(
                "task {:?} of job {:?} uses the {:?} driver, which namespace {name:?} does \
                 not allow",
                t.name, job.id, t.driver
            )));
        }
    }
    Ok(())
}

/// `GET /v1/namespaces?prefix=`: every namespace, ordered by name.
pub async fn list(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let state = blocking(&srv, &q, namespace_index).await?;
    let out: Vec<api::Namespace> = state
        .namespace_list()
        .into_iter()
        .filter(|n| q.prefix_matches(&n.name))
        .map(|n| (*n).clone())
        .collect();
    Ok(reply(&srv, namespace_index(&state), &out))
}

/// `GET /v1/namespace/:name`.
pub async fn get_namespace(
    State(srv): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = blocking(&srv, &q, namespace_index).await?;
    let ns = state
        .namespace(&name)
        .ok_or_else(|| ApiErr::not_found("namespace not found"))?;
    Ok(reply(&srv, namespace_index(&state), &*ns))
}

/// An empty 200 carrying the write's index, as Nomad answers namespace writes.
fn written(index: u64) -> Response {
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut()
        .insert("X-Nomad-Index", HeaderValue::from(index.max(1)));
    resp
}

/// A refused namespace write as its status and sentence.
fn refused(e: WriteError) -> ApiErr {
    match e {
        WriteError::Rejected(m) if m.contains(NAMESPACE_IN_USE) => ApiErr(StatusCode::CONFLICT, m),
        other => other.into(),
    }
}

async fn upsert(srv: AppState, path_name: Option<String>, body: Bytes) -> ApiResult {
    let mut ns: api::Namespace = parse_body(&body)?;
    if let Some(name) = path_name {
        if ns.name.is_empty() {
            ns.name = name;
        } else if ns.name != name {
            return Err(ApiErr::bad_request(format!(
                "namespace name {:?} in the body does not match {name:?} in the URL",
                ns.name
            )));
        }
    }
    if let Some(p) = ns.problem() {
        return Err(ApiErr::bad_request(p));
    }
    // The server sets the indexes.
    ns.create_index = 0;
    ns.modify_index = 0;
    let cmd = Command::Namespace(NamespaceCommand::Upsert(vec![ns]));
    let r = srv.write(cmd).await.map_err(refused)?;
    Ok(written(r.index))
}

/// `PUT|POST /v1/namespace`: the body names the namespace.
pub async fn create(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    upsert(srv, None, body).await
}

/// `PUT|POST /v1/namespace/:name`: create or update; the body's name, if any, must be
/// the URL's.
pub async fn update(
    State(srv): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    upsert(srv, Some(name), body).await
}

/// `DELETE /v1/namespace/:name`: 400 for `default`, 404 for an unknown name, 409 while
/// a live job or a variable is in it.
pub async fn delete(State(srv): State<AppState>, Path(name): Path<String>) -> ApiResult {
    if let Some(p) = api::namespace_name_problem(&name) {
        return Err(ApiErr::bad_request(p));
    }
    let cmd = Command::Namespace(NamespaceCommand::Delete(vec![name]));
    let r = srv.write(cmd).await.map_err(refused)?;
    Ok(written(r.index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_a_400_naming_it() {
        let s = StateStore::default();
        assert!(check_exists(&s, "default", "job \"web\"".into()).is_ok());
        let e = check_exists(&s, "team-b", "job \"web\"".into()).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert_eq!(e.1, "job \"web\" is in nonexistent namespace \"team-b\"");
    }

    #[test]
    fn a_namespace_may_forbid_task_drivers() {
        let mut s = StateStore::default();
        let ns = api::Namespace {
            name: "locked".into(),
            capabilities: Some(api::NamespaceCapabilities {
                disabled_task_drivers: vec!["raw_exec".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let cmd = crate::fsm::Command::Namespace(NamespaceCommand::Upsert(vec![ns]));
        crate::fsm::apply(&mut s, 1, cmd, &mut Default::default());
        let mut job = crate::fsm::tests::job("web", 1);
        job.namespace = "locked".into();
        let e = check_job(&s, &job).unwrap_err();
        assert!(e.1.contains("\"raw_exec\" driver"), "{}", e.1);
        job.task_groups[0].tasks[0].driver = "docker".into();
        assert!(check_job(&s, &job).is_ok());
    }

    #[test]
    fn deletes_still_in_use_are_conflicts() {
        let e = refused(WriteError::Rejected(format!(
            "namespace \"a\"{NAMESPACE_IN_USE}job \"web\" is not terminal"
        )));
        assert_eq!(e.0, StatusCode::CONFLICT);
        let e = refused(WriteError::Rejected("namespace \"a\" not found".into()));
        assert_eq!(e.0, StatusCode::NOT_FOUND);
        let e = refused(WriteError::Rejected(
            "the default namespace cannot be deleted".into(),
        ));
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
    }
}
