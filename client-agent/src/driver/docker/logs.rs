//! The container's output, followed into the same rotated log files raw_exec writes.

use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::io::Write;
use std::path::{Path, PathBuf};

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    crate::allocdir::open_log_append(path)
}

/// Follows the container's output into the task's log files until the container stops.
pub(super) async fn pump_logs(
    docker: Docker,
    id: String,
    stdout: PathBuf,
    stderr: PathBuf,
    since: i32,
) {
    let (mut out, mut err) = match (open_append(&stdout), open_append(&stderr)) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(container = %id, error = %e, "cannot open the task's log files");
            return;
        }
    };
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        since,
        ..Default::default()
    };
    let mut stream = docker.logs(&id, Some(opts));
    while let Some(item) = stream.next().await {
        let res = match item {
            Ok(bollard::container::LogOutput::StdErr { message }) => err.write_all(&message),
            Ok(
                bollard::container::LogOutput::StdOut { message }
                | bollard::container::LogOutput::Console { message },
            ) => out.write_all(&message),
            Ok(bollard::container::LogOutput::StdIn { .. }) => Ok(()),
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "log stream ended");
                break;
            }
        };
        if let Err(e) = res {
            tracing::warn!(container = %id, error = %e, "cannot write the task's logs");
        }
    }
}

/// Seconds since the epoch of `path`'s last change, for `logs --since`.
pub(super) fn mtime_secs(path: &Path) -> i32 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i32)
        .unwrap_or(0)
}
