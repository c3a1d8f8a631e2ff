//! Resource usage in Nomad's JSON shapes: per task and allocation
//! (`/v1/client/allocation/:id/stats`, from each task's driver) and for the host
//! (`/v1/client/stats`, from `/proc`).
//!
//! CPU rates need two samples: a request samples, waits [`SAMPLE_WINDOW`], samples again.
//! `TotalTicks` is CPU use in MHz (percent of one core times the core's MHz), which is
//! what the `cpu` of a task's `resources` reserves, so the two compare directly.

use crate::driver::{Driver, TaskHandle, UsageSample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time between the two samples of a CPU rate.
pub const SAMPLE_WINDOW: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MemoryStats {
    #[serde(rename = "RSS")]
    pub rss: u64,
    pub cache: u64,
    pub swap: u64,
    pub usage: u64,
    pub max_usage: u64,
    pub kernel_usage: u64,
    pub kernel_max_usage: u64,
    pub measured: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CpuStats {
    /// Percent of one core spent in the kernel.
    pub system_mode: f64,
    pub user_mode: f64,
    /// MHz used.
    pub total_ticks: f64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
    /// Percent of one core (may exceed 100 on several cores).
    pub percent: f64,
    pub measured: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResourceUsage {
    pub memory_stats: MemoryStats,
    pub cpu_stats: CpuStats,
    pub device_stats: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskResourceUsage {
    pub resource_usage: ResourceUsage,
    /// Unix nanoseconds.
    pub timestamp: i64,
    pub pids: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocResourceUsage {
    /// The sum over the tasks.
    pub resource_usage: ResourceUsage,
    pub tasks: BTreeMap<String, TaskResourceUsage>,
    pub timestamp: i64,
}

/// The MHz of one core of this node, from its fingerprint.
pub fn mhz_per_core(node: Option<&api::Node>) -> f64 {
    let Some(n) = node else { return 0.0 };
    let get = |k: &str| {
        n.attributes
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cores = get("cpu.numcores");
    if cores > 0.0 {
        get("cpu.totalcompute") / cores
    } else {
        get("cpu.frequency")
    }
}

/// A task's usage from two samples `elapsed` apart.
pub fn task_usage(
    first: &UsageSample,
    second: &UsageSample,
    elapsed: Duration,
    mhz: f64,
) -> ResourceUsage {
    let ns = elapsed.as_nanos().max(1) as f64;
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / ns * 100.0;
    let percent = rate(first.cpu_total_ns, second.cpu_total_ns);
    ResourceUsage {
        memory_stats: MemoryStats {
            rss: second.rss_bytes,
            cache: second.cache_bytes,
            swap: second.swap_bytes,
            usage: second.usage_bytes,
            max_usage: second.max_usage_bytes,
            measured: second
                .measured_memory
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        },
        cpu_stats: CpuStats {
            system_mode: rate(first.cpu_system_ns, second.cpu_system_ns),
            user_mode: rate(first.cpu_user_ns, second.cpu_user_ns),
            total_ticks: percent / 100.0 * mhz,
            throttled_periods: second.throttled_periods,
            throttled_time: second.throttled_time_ns,
            percent,
            measured: second.measured_cpu.iter().map(|s| s.to_string()).collect(),
        },
        device_stats: vec![],
    }
}

/// Adds `b` into `a` (the allocation's total).
pub fn add(a: &mut ResourceUsage, b: &ResourceUsage) {
    let (m, n) = (&mut a.memory_stats, &b.memory_stats);
    m.rss += n.rss;
    m.cache += n.cache;
    m.swap += n.swap;
    m.usage += n.usage;
    m.max_usage += n.max_usage;
    for s in &n.measured {
        if !m.measured.contains(s) {
            m.measured.push(s.clone());
        }
    }
    let (c, d) = (&mut a.cpu_stats, &b.cpu_stats);
    c.system_mode += d.system_mode;
    c.user_mode += d.user_mode;
    c.total_ticks += d.total_ticks;
    c.throttled_periods += d.throttled_periods;
    c.throttled_time += d.throttled_time;
    c.percent += d.percent;
    for s in &d.measured {
        if !c.measured.contains(s) {
            c.measured.push(s.clone());
        }
    }
}

/// Usage of the running tasks `(name, driver, handle)`, sampled concurrently.
pub async fn alloc_usage(
    tasks: Vec<(String, Arc<dyn Driver>, TaskHandle)>,
    mhz: f64,
) -> AllocResourceUsage {
    let sample_all = |tasks: &[(String, Arc<dyn Driver>, TaskHandle)]| {
        futures_util::future::join_all(
            tasks
                .iter()
                .map(|(_, d, h)| {
                    let (d, h) = (d.clone(), h.clone());
                    async move { d.usage(&h).await.ok() }
                })
                .collect::<Vec<_>>(),
        )
    };
    let t0 = Instant::now();
    let first = sample_all(&tasks).await;
    tokio::time::sleep(SAMPLE_WINDOW).await;
    let second = sample_all(&tasks).await;
    let elapsed = t0.elapsed();
    let now = crate::events::now_nanos();
    let mut out = AllocResourceUsage {
        timestamp: now,
        ..Default::default()
    };
    for (((name, _, _), a), b) in tasks.iter().zip(first).zip(second) {
        let (Some(a), Some(b)) = (a, b) else { continue };
        let u = task_usage(&a, &b, elapsed, mhz);
        add(&mut out.resource_usage, &u);
        out.tasks.insert(
            name.clone(),
            TaskResourceUsage {
                resource_usage: u,
                timestamp: now,
                pids: None,
            },
        );
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostMemoryStats {
    pub total: u64,
    pub available: u64,
    pub used: u64,
    pub free: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostCpuStats {
    #[serde(rename = "CPU")]
    pub cpu: String,
    pub user: f64,
    pub system: f64,
    pub idle: f64,
    pub total: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostDiskStats {
    pub device: String,
    pub mountpoint: String,
    pub size: u64,
    pub used: u64,
    pub available: u64,
    pub used_percent: f64,
    pub inodes_used_percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostStats {
    pub memory: HostMemoryStats,
    #[serde(rename = "CPU")]
    pub cpu: Vec<HostCpuStats>,
    pub disk_stats: Vec<HostDiskStats>,
    pub alloc_dir_stats: HostDiskStats,
    /// Seconds since boot.
    pub uptime: u64,
    pub timestamp: i64,
    #[serde(rename = "CPUTicksConsumed")]
    pub cpu_ticks_consumed: f64,
}

/// `(name, busy user, busy system, idle, total)` jiffies per CPU from `/proc/stat`.
pub(crate) fn cpu_times() -> Vec<(String, u64, u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?.to_string();
            let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            let user = get(0) + get(1);
            let system = get(2) + get(5) + get(6);
            let idle = get(3) + get(4);
            let total = user + system + idle + get(7);
            Some((name, user, system, idle, total))
        })
        .collect()
}

pub(crate) fn meminfo() -> HostMemoryStats {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kb("MemTotal:");
    let available = kb("MemAvailable:");
    HostMemoryStats {
        total,
        available,
        used: total.saturating_sub(available),
        free: kb("MemFree:"),
    }
}

fn disk(path: &Path) -> HostDiskStats {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size();
            let size = s.blocks() * frag;
            let available = s.blocks_available() * frag;
            let used = size.saturating_sub(s.blocks_free() * frag);
            let files = s.files() as f64;
            HostDiskStats {
                device: String::new(),
                mountpoint: path.display().to_string(),
                size,
                used,
                available,
                used_percent: if size > 0 {
                    used as f64 / size as f64 * 100.0
                } else {
                    0.0
                },
                inodes_used_percent: if files > 0.0 {
                    (files - s.files_free() as f64) / files * 100.0
                } else {
                    0.0
                },
            }
        }
        Err(_) => HostDiskStats {
            mountpoint: path.display().to_string(),
            ..Default::default()
        },
    }
}

/// The host's memory, per-CPU use over [`SAMPLE_WINDOW`], uptime and the alloc dir's disk.
pub async fn host_stats(alloc_dir: &Path, mhz: f64) -> HostStats {
    let a = cpu_times();
    tokio::time::sleep(SAMPLE_WINDOW).await;
    let b = cpu_times();
    let cpu: Vec<HostCpuStats> = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| {
            let total = y.4.saturating_sub(x.4).max(1) as f64;
            let pct = |p: u64, q: u64| q.saturating_sub(p) as f64 / total * 100.0;
            let user = pct(x.1, y.1);
            let system = pct(x.2, y.2);
            HostCpuStats {
                cpu: x.0.clone(),
                user,
                system,
                idle: pct(x.3, y.3),
                total: user + system,
            }
        })
        .collect();
    let consumed = cpu.iter().map(|c| c.total / 100.0 * mhz).sum();
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0) as u64;
    let root = disk(Path::new("/"));
    HostStats {
        memory: meminfo(),
        cpu,
        disk_stats: vec![root],
        alloc_dir_stats: disk(alloc_dir),
        uptime,
        timestamp: crate::events::now_nanos(),
        cpu_ticks_consumed: consumed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rates_come_from_two_samples() {
        let a = UsageSample {
            cpu_total_ns: 1_000_000_000,
            cpu_user_ns: 800_000_000,
            ..Default::default()
        };
        let b = UsageSample {
            cpu_total_ns: 1_100_000_000,
            cpu_user_ns: 850_000_000,
            rss_bytes: 4096,
            measured_memory: vec!["RSS"],
            ..Default::default()
        };
        let u = task_usage(&a, &b, Duration::from_millis(200), 2000.0);
        assert!((u.cpu_stats.percent - 50.0).abs() < 1e-9);
        assert!((u.cpu_stats.user_mode - 25.0).abs() < 1e-9);
        assert!((u.cpu_stats.total_ticks - 1000.0).abs() < 1e-9);
        assert_eq!(u.memory_stats.rss, 4096);
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["MemoryStats"]["RSS"], 4096);
        assert!(json["CpuStats"]["Percent"].is_number());
    }
}
