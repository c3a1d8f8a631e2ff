//! A dispatched job's payload, written where the task's `dispatch_payload { file }` says
//! (below its `local/` directory, never following a symlink).

use crate::allocdir::{self, Links};
use base64::Engine;
use rustix::fs::{Mode, OFlags};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

/// Writes `payload_b64` (decoded) to `<task>/local/<file>` below the alloc dir `root`.
pub fn write(root: &Path, task: &str, file: &str, payload_b64: &str) -> Result<(), String> {
    let rel = allocdir::relative("dispatch_payload file", file).map_err(|e| e.0)?;
    if rel.as_os_str().is_empty() {
        return Err("dispatch_payload file is empty".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload_b64.as_bytes())
        .map_err(|e| format!("dispatch payload is not valid base64: {e}"))?;
    let full = Path::new(task).join("local").join(&rel);
    let io = |e: std::io::Error| format!("writing the dispatch payload {file:?}: {e}");
    let dir = allocdir::open_dir(root).map_err(io)?;
    if let Some(parent) = full.parent() {
        allocdir::mkdir_all(dir.as_fd(), parent, Mode::from_raw_mode(0o755)).map_err(io)?;
    }
    let fd = allocdir::open_beneath(
        dir.as_fd(),
        &full,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
        Mode::from_raw_mode(0o644),
        Links::Never,
    )
    .map_err(io)?;
    std::fs::File::from(fd).write_all(&bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_below_local_and_refuses_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("t/local")).unwrap();
        super::write(tmp.path(), "t", "in/put.txt", "aGVsbG8=").unwrap();
        let got = std::fs::read_to_string(tmp.path().join("t/local/in/put.txt")).unwrap();
        assert_eq!(got, "hello");
        let e = super::write(tmp.path(), "t", "../../x", "aGVsbG8=").unwrap_err();
        assert!(e.contains(".."), "{e}");
    }
}
