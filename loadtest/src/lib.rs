//! What the load harnesses (`cluster-load`, `agent-load`) share: the release binary they
//! start, numeric flags, free loopback ports and memory read from `/proc`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The `drover` binary to measure: `DROVER_BIN`, else `target/release/drover`; an error
/// naming `build` (the command that makes it) when it is missing.
pub fn release_binary(build: &str) -> anyhow::Result<PathBuf> {
    let bin = std::env::var("DROVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/release/drover"));
    anyhow::ensure!(
        bin.exists(),
        "{} not found: run `{build}` first",
        bin.display()
    );
    Ok(bin)
}

/// The number after `name` on the command line, else `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One line of `/proc/<pid>/status` in KiB (`VmRSS:` and the like); 0 when gone.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A process's resident memory in KiB; 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Bytes of the regular files under `p`, recursively (a data directory's size on disk).
pub fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}
