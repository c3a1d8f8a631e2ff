//! `POST /v1/client/allocation/:alloc/exec`: a non-interactive exec in a running task.

use super::{find_alloc, parse_json, pick_task, HttpErr, HttpResult, EXEC_TIMEOUT};
use crate::driver::DriverError;
use crate::handle::ClientHandle;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    task: String,
    cmd: Vec<String>,
}

/// The answer of a non-interactive exec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecResponse {
    pub exit_code: i64,
    /// Base64.
    pub stdout: String,
    /// Base64.
    pub stderr: String,
}

impl ExecResponse {
    /// Decodes `Stdout` and `Stderr`.
    pub fn output(&self) -> (Vec<u8>, Vec<u8>) {
        let dec = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_default()
        };
        (dec(&self.stdout), dec(&self.stderr))
    }
}

pub(super) async fn exec(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    body: Bytes,
) -> HttpResult {
    let b: ExecBody = parse_json(&body)?;
    if b.cmd.is_empty() || b.cmd[0].trim().is_empty() {
        return Err(HttpErr::bad_request(
            "Cmd must name a command to run, e.g. [\"sh\", \"-c\", \"ls\"]",
        ));
    }
    let view = find_alloc(&h, &alloc)?;
    let task = pick_task(
        &view,
        &alloc,
        Some(&b.task).filter(|t| !t.is_empty()).map(|t| t.as_str()),
    )?;
    let handle = view
        .state
        .borrow()
        .tasks
        .get(&task)
        .and_then(|t| t.handle.clone());
    let Some(handle) = handle else {
        return Err(HttpErr::bad_request(format!(
            "task \"{task}\" is not running"
        )));
    };
    let driver = h
        .drivers()
        .get(&handle.driver)
        .ok_or_else(|| HttpErr::internal(format!("driver {:?} is gone", handle.driver)))?;
    match driver.exec(&handle, &b.cmd, EXEC_TIMEOUT).await {
        Ok(out) => {
            let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
            Ok(Json(ExecResponse {
                exit_code: out.exit_code,
                stdout: b64(&out.stdout),
                stderr: b64(&out.stderr),
            })
            .into_response())
        }
        Err(DriverError::Unsupported(m)) => Err(HttpErr {
            status: StatusCode::NOT_IMPLEMENTED,
            msg: m,
            not_here: false,
        }),
        Err(e) => Err(HttpErr::bad_request(format!(
            "exec in task \"{task}\" failed: {e}"
        ))),
    }
}
