//! Resource usage of an allocation and the host, and restarting or signalling tasks.

use super::{find_alloc, parse_json, pick_task, HttpErr, HttpResult};
use crate::alloc_runner::AllocView;
use crate::driver::{Driver, TaskHandle};
use crate::handle::ClientHandle;
use crate::stats;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// The running tasks of an allocation with their drivers and handles.
fn running_tasks(h: &ClientHandle, view: &AllocView) -> Vec<(String, Arc<dyn Driver>, TaskHandle)> {
    let st = view.state.borrow();
    st.tasks
        .iter()
        .filter_map(|(name, t)| {
            let handle = t.handle.clone()?;
            let driver = h.drivers().get(&handle.driver)?;
            Some((name.clone(), driver, handle))
        })
        .collect()
}

pub(super) async fn alloc_stats(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    let tasks = running_tasks(&h, &view);
    let mhz = stats::mhz_per_core(h.node().as_deref());
    let usage = stats::alloc_usage(tasks, mhz).await;
    Ok(Json(usage).into_response())
}

pub(super) async fn host_stats(State(h): State<ClientHandle>) -> HttpResult {
    let mhz = stats::mhz_per_core(h.node().as_deref());
    let dir = h.data_dir().join("alloc");
    let dir = if dir.exists() {
        dir
    } else {
        h.data_dir().to_path_buf()
    };
    Ok(Json(stats::host_stats(&dir, mhz).await).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartBody {
    // Options: clients send `null` for what they leave out.
    task_name: Option<String>,
    all_tasks: Option<bool>,
}

pub(super) async fn restart(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    body: Bytes,
) -> HttpResult {
    let b: RestartBody = parse_json(&body)?;
    let view = find_alloc(&h, &alloc)?;
    let name = b.task_name.unwrap_or_default();
    let task = if name.trim().is_empty() || b.all_tasks.unwrap_or(false) {
        None
    } else {
        Some(pick_task(&view, &alloc, Some(&name))?)
    };
    h.restart(&alloc, task).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SignalBody {
    // Options: clients send `null` for what they leave out (python-nomad's `Task`).
    task: Option<String>,
    signal: Option<String>,
}

pub(super) async fn signal(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    body: Bytes,
) -> HttpResult {
    let b: SignalBody = parse_json(&body)?;
    let view = find_alloc(&h, &alloc)?;
    let sig = match b.signal.as_deref().map(str::trim) {
        None | Some("") => "SIGKILL".to_string(),
        Some(s) => s.to_string(),
    };
    if crate::driver::process::parse_signal(&sig).is_none() {
        return Err(HttpErr::bad_request(format!(
            "invalid signal {sig:?}: expected a signal name such as SIGHUP, SIGUSR1 or SIGTERM"
        )));
    }
    let task = match b.task.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(pick_task(&view, &alloc, Some(t))?),
    };
    h.signal(&alloc, task, sig).await?;
    Ok(Json(serde_json::json!({})).into_response())
}
