//! Memory and CPU of a task, read from its cgroup's counters (v1 or v2).

use crate::cgroups;
use std::path::PathBuf;

/// Reads one number from a cgroup file.
fn read_u64(p: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Memory and CPU of a task's cgroup (v2 or v1, whichever directories it has).
pub(super) fn cgroup_usage(paths: &[PathBuf]) -> crate::driver::UsageSample {
    let mut u = crate::driver::UsageSample::default();
    for dir in paths {
        let stat = |f: &str, k: &str| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|t| cgroups::flat_keyed(&t, k))
        };
        if let Some(cur) = read_u64(&dir.join("memory.current")) {
            // v2
            u.usage_bytes = cur;
            u.max_usage_bytes = read_u64(&dir.join("memory.peak")).unwrap_or(0);
            u.rss_bytes = stat("memory.stat", "anon").unwrap_or(0);
            u.cache_bytes = stat("memory.stat", "file").unwrap_or(0);
            u.swap_bytes = read_u64(&dir.join("memory.swap.current")).unwrap_or(0);
            u.measured_memory = vec!["RSS", "Cache", "Swap", "Usage"];
        }
        if let Some(usec) = stat("cpu.stat", "usage_usec") {
            u.cpu_total_ns = usec * 1000;
            u.cpu_user_ns = stat("cpu.stat", "user_usec").unwrap_or(0) * 1000;
            u.cpu_system_ns = stat("cpu.stat", "system_usec").unwrap_or(0) * 1000;
            u.throttled_periods = stat("cpu.stat", "nr_throttled").unwrap_or(0);
            u.throttled_time_ns = stat("cpu.stat", "throttled_usec").unwrap_or(0) * 1000;
        }
        if let Some(usage) = read_u64(&dir.join("memory.usage_in_bytes")) {
            // v1 memory controller
            u.usage_bytes = usage;
            u.max_usage_bytes = read_u64(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
            u.rss_bytes = stat("memory.stat", "rss").unwrap_or(0);
            u.cache_bytes = stat("memory.stat", "cache").unwrap_or(0);
            u.swap_bytes = stat("memory.stat", "swap").unwrap_or(0);
            u.measured_memory = vec!["RSS", "Cache", "Swap", "Usage", "Max Usage"];
        }
        if let Some(ns) = read_u64(&dir.join("cpuacct.usage")) {
            // v1 cpuacct: user/system are in clock ticks.
            // SAFETY: sysconf has no preconditions.
            let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            u.cpu_total_ns = ns;
            u.cpu_user_ns = stat("cpuacct.stat", "user").unwrap_or(0) * 1_000_000_000 / tick;
            u.cpu_system_ns = stat("cpuacct.stat", "system").unwrap_or(0) * 1_000_000_000 / tick;
        }
        if let Some(n) = stat("cpu.stat", "nr_throttled") {
            u.throttled_periods = n;
            if let Some(t) = stat("cpu.stat", "throttled_time") {
                u.throttled_time_ns = t;
            }
        }
    }
    u.measured_cpu = vec![
        "System Mode",
        "User Mode",
        "Throttled Periods",
        "Throttled Time",
        "Percent",
    ];
    u
}
