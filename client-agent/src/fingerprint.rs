//! Fingerprinting: what this node is (CPU, memory, disk, kernel, OS, drivers) in
//! Nomad's attribute names, and its stable identity.
//!
//! The node ID is generated once and kept in `<data_dir>/node-id`, so a restarted agent
//! is the same node to the servers. `computed_class` hashes everything that affects
//! feasibility (not the `unique.*` attributes), so the scheduler can check one node per
//! class.

use crate::config::AgentConfig;
use crate::driver::Drivers;
use anyhow::Context;
use api::{Node, NodeCpuResources, NodeDiskResources, NodeMemoryResources, NodeResources};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads the node ID from `<data_dir>/node-id`, creating it (a UUID v4) the first time.
pub fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let id = api::new_id();
    crate::state::write_atomic(&path, format!("{id}\n").as_bytes())
        .with_context(|| format!("writing the node ID to {}", path.display()))?;
    Ok(id)
}

/// Nomad's name for the CPU architecture.
pub fn nomad_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// The value of `key : value` lines (the format of /proc/cpuinfo and /proc/meminfo).
fn proc_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// `KEY=value` of /etc/os-release, unquoted.
fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

fn cpu_cores() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as i64
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1)
    }
}

fn cpu_mhz(cpuinfo: &str) -> i64 {
    if let Some(mhz) = proc_field(cpuinfo, "cpu MHz").and_then(|v| v.parse::<f64>().ok()) {
        if mhz > 0.0 {
            return mhz.round() as i64;
        }
    }
    let sysfs = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
    if let Some(khz) = std::fs::read_to_string(sysfs)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
    {
        if khz > 0 {
            return khz / 1000;
        }
    }
    1000
}

/// The local IP to advertise: the host part of `http_addr` when it is a concrete
/// address, else the source address of the default route, else loopback.
fn advertise_ip(http_addr: &str) -> String {
    let host = http_addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(http_addr)
        .trim_start_matches("http://")
        .trim_matches(|c| c == '[' || c == ']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        if !ip.is_unspecified() {
            return ip.to_string();
        }
    }
    // Connecting a UDP socket sends nothing; it only picks the route's source address.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// The device mounted at the longest mount point containing `path`.
fn storage_volume(path: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .filter(|(_, mp)| canon.starts_with(mp))
        .max_by_key(|(_, mp)| mp.len())
        .map(|(dev, _)| dev)
}

/// (total bytes, free bytes) of the filesystem holding `path`.
fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = st.fragment_size() as u64;
    Some((
        st.blocks() as u64 * frsize,
        st.blocks_available() as u64 * frsize,
    ))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stable hash of what makes two nodes interchangeable for the scheduler.
pub fn computed_class(node: &Node) -> String {
    let attrs: BTreeMap<&String, &String> = node
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("unique."))
        .collect();
    let drivers: BTreeMap<&String, (bool, bool)> = node
        .drivers
        .iter()
        .map(|(k, d)| (k, (d.detected, d.healthy)))
        .collect();
    let key = serde_json::json!({
        "datacenter": node.datacenter,
        "class": node.node_class,
        "pool": node.node_pool,
        "attributes": attrs,
        "meta": node.meta,
        "drivers": drivers,
    });
    format!("v1:{}", fnv1a(key.to_string().as_bytes()))
}

/// Fingerprints this machine into a Node with status `initializing`.
// Long but flat: one line per attribute in Nomad's names, then the node built from them;
// split up, the list would be harder to check against Nomad's.
pub async fn fingerprint(config: &AgentConfig, drivers: &Drivers) -> anyhow::Result<Node> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let id = node_id(&config.data_dir)?;
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    let os_release = read("/etc/os-release");

    let cores = cpu_cores();
    let mhz = cpu_mhz(&cpuinfo);
    let mem_bytes = proc_field(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let (disk_total, disk_free) = disk_space(&config.data_dir).unwrap_or((0, 0));

    let mut a = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        a.insert(k.to_string(), v);
    };
    set("cpu.numcores", cores.to_string());
    set("cpu.frequency", mhz.to_string());
    set("cpu.totalcompute", (cores * mhz).to_string());
    if let Some(model) = proc_field(&cpuinfo, "model name") {
        set("cpu.modelname", model.to_string());
    }
    set("cpu.arch", nomad_arch(std::env::consts::ARCH).to_string());
    set("memory.totalbytes", mem_bytes.to_string());
    set("kernel.name", std::env::consts::OS.to_string());
    set(
        "kernel.version",
        read("/proc/sys/kernel/osrelease").trim().to_string(),
    );
    if let Some(os) = os_release_field(&os_release, "ID") {
        set("os.name", os);
    }
    if let Some(v) = os_release_field(&os_release, "VERSION_ID") {
        set("os.version", v);
    }
    set("unique.hostname", hostname.clone());
    set("unique.network.ip-address", advertise_ip(&config.http_addr));
    set("nomad.version", env!("CARGO_PKG_VERSION").to_string());
    if let Some(dev) = storage_volume(&config.data_dir) {
        set("unique.storage.volume", dev);
    }
    set("unique.storage.bytestotal", disk_total.to_string());
    set("unique.storage.bytesfree", disk_free.to_string());

    match crate::cgroups::detect() {
        Ok(h) => {
            set("unique.cgroup.version", h.version().to_string());
            set(
                "unique.cgroup.mountpoint",
                h.mountpoint().display().to_string(),
            );
        }
        Err(e) => tracing::info!(reason = %e, "no usable cgroup hierarchy"),
    }

    let driver_infos = drivers.fingerprint().await;
    for (name, info) in &driver_infos {
        if info.detected && info.healthy {
            a.insert(format!("driver.{name}"), "1".into());
            // `driver.docker.version` and the like.
            a.extend(info.attributes.clone());
        }
    }

    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    let mut node = Node {
        id,
        name: or(&config.node_name, &hostname),
        datacenter: or(&config.datacenter, "dc1"),
        node_class: config.node_class.clone(),
        node_pool: or(&config.node_pool, "default"),
        http_addr: config.http_addr.clone(),
        attributes: a,
        meta: config.meta.clone(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: cores * mhz,
                total_cpu_cores: cores,
            },
            memory: NodeMemoryResources {
                memory_mb: (mem_bytes / (1024 * 1024)) as i64,
            },
            disk: NodeDiskResources {
                disk_mb: (disk_free / (1024 * 1024)) as i64,
            },
        },
        drivers: driver_infos,
        status: api::NODE_STATUS_INIT.into(),
        scheduling_eligibility: api::NODE_ELIGIBLE.into(),
        ..Default::default()
    };
    node.computed_class = computed_class(&node);
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, raw_exec: bool) -> AgentConfig {
        AgentConfig {
            data_dir: dir.to_path_buf(),
            servers: vec![],
            node_class: "c1".into(),
            meta: BTreeMap::from([("rack".into(), "r1".into())]),
            raw_exec_enabled: raw_exec,
            http_addr: "127.0.0.1:4646".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn fingerprint_has_nomads_attributes_and_resources() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), true);
        let node = fingerprint(&cfg, &Drivers::from_config(true))
            .await
            .unwrap();
        for k in [
            "cpu.numcores",
            "cpu.frequency",
            "cpu.totalcompute",
            "cpu.arch",
            "memory.totalbytes",
            "kernel.name",
            "kernel.version",
            "unique.hostname",
            "unique.network.ip-address",
            "nomad.version",
            "unique.storage.bytestotal",
            "unique.storage.bytesfree",
        ] {
            assert!(node.attributes.contains_key(k), "missing {k}");
        }
        assert_eq!(node.attributes["kernel.name"], "linux");
        assert_eq!(node.attributes["unique.network.ip-address"], "127.0.0.1");
        assert_eq!(node.attributes["driver.raw_exec"], "1");
        let cores: i64 = node.attributes["cpu.numcores"].parse().unwrap();
        assert!(cores >= 1);
        assert_eq!(node.node_resources.cpu.total_cpu_cores, cores);
        assert!(node.node_resources.cpu.cpu_shares >= cores);
        assert!(node.node_resources.memory.memory_mb > 0);
        assert_eq!(node.datacenter, "dc1");
        assert_eq!(node.node_pool, "default");
        assert_eq!(node.status, api::NODE_STATUS_INIT);
        assert!(node.drivers["raw_exec"].healthy);
        assert_eq!(node.drivers["raw_exec"].health_description, "Healthy");
        assert!(node.computed_class.starts_with("v1:"));
        // docker and exec are always fingerprinted (healthy or with a reason why not).
        assert!(node.drivers.contains_key("docker"));
        assert!(node.drivers.contains_key("exec"));
        if let Some(v) = node.attributes.get("unique.cgroup.version") {
            assert!(v == "v1" || v == "v2", "{v}");
            assert!(node.attributes.contains_key("unique.cgroup.mountpoint"));
        }
    }

    #[tokio::test]
    async fn node_id_is_stable_across_fingerprints() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), false);
        let a = fingerprint(&cfg, &Drivers::default()).await.unwrap();
        let b = fingerprint(&cfg, &Drivers::default()).await.unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 36);
        assert!(!a.drivers.contains_key("raw_exec"));
        assert!(!a.attributes.contains_key("driver.raw_exec"));
    }

    #[tokio::test]
    async fn computed_class_ignores_unique_attributes_only() {
        let tmp = tempfile::tempdir().unwrap();
        let node = fingerprint(&config(tmp.path(), true), &Drivers::from_config(true))
            .await
            .unwrap();
        let mut other = node.clone();
        other.id = "other".into();
        other
            .attributes
            .insert("unique.hostname".into(), "elsewhere".into());
        assert_eq!(computed_class(&node), computed_class(&other));
        other.meta.insert("rack".into(), "r2".into());
        assert_ne!(computed_class(&node), computed_class(&other));
    }

    #[test]
    fn arch_names_follow_nomad() {
        assert_eq!(nomad_arch("x86_64"), "amd64");
        assert_eq!(nomad_arch("aarch64"), "arm64");
    }
}
