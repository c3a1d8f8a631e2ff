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

/// A loopback port that nothing listens on now, for a process a test or harness starts.
///
/// Not the kernel's `bind(0)`: that hands out ports from the ephemeral range, which every
/// outgoing connection also draws from, so between this call and the process binding the
/// port a test's own HTTP client could take it as its local port (CI saw an agent fail
/// with "Address already in use" so). Not Drover's dynamic port range either (20000 and
/// up, `api::DYNAMIC_PORT_MIN`), where the scheduler puts tasks' ports. Ports come from
/// 10000-19999 (below the ephemeral range, should a machine start it lower), each handed
/// out once per process (a counter from a per-process start), checked free.
pub fn free_port() -> u16 {
    free_port_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// [`free_port`] on another loopback address (a test cluster's servers each bind their own).
pub fn free_port_on(ip: std::net::IpAddr) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // The range, read once per process: [low, high).
    static RANGE: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    let (low, high) = *RANGE.get_or_init(|| {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32768);
        let high = ephemeral_low.clamp(11_024, u32::from(api::DYNAMIC_PORT_MIN));
        (high.saturating_sub(10_000).max(1_024), high)
    });
    let span = high - low;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + n) % span) as u16;
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
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
