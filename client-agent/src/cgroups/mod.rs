//! cgroups for the `exec` driver: find which cgroup version this machine runs, create
//! one cgroup per task with its memory and CPU limits, list and kill what runs in it,
//! tell whether the OOM killer struck, and remove it.
//!
//! Both versions sit behind the [`Cgroup`] trait, one small file each ([`v1`], [`v2`]),
//! in the manner of youki's libcgroups; the [`Manager`] trait (the machine's
//! [`Hierarchy`], or `fake::FakeHierarchy` in tests) hands them out. Which one is used is decided at run time by
//! [`detect`] from `/proc/self/mountinfo`: cgroup v1 when the `memory` controller is
//! mounted as a v1 hierarchy (also in "hybrid" setups, where a cgroup2 tree exists without
//! controllers), cgroup v2 when a cgroup2 mount offers `memory`.
//!
//! Task cgroups live under a `drover` parent: `<mount>/<controller>/drover/<name>` on v1,
//! `<mount>/drover/<name>` on v2.

#[cfg(test)]
pub mod fake;
pub mod v1;
pub mod v2;

use nix::sys::signal::Signal;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory every task cgroup of this agent lives in.
pub const PARENT: &str = "drover";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// The limits of one task, already converted from Nomad's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Hard memory limit in bytes (`memory_max`, else `memory`).
    pub memory_bytes: Option<u64>,
    /// Soft reservation in bytes (`memory` when `memory_max` is set).
    pub memory_reservation_bytes: Option<u64>,
    /// CPU shares, as Nomad derives them: the task's MHz (at least 2).
    pub cpu_shares: u64,
}

impl Limits {
    pub fn from_resources(res: &api::Resources) -> Limits {
        let mib = |m: i64| (m.max(0) as u64) * 1024 * 1024;
        let (memory_bytes, memory_reservation_bytes) = if res.memory_max_mb > 0 {
            (Some(mib(res.memory_max_mb)), Some(mib(res.memory_mb)))
        } else if res.memory_mb > 0 {
            (Some(mib(res.memory_mb)), None)
        } else {
            (None, None)
        };
        Limits {
            memory_bytes,
            memory_reservation_bytes: memory_reservation_bytes.filter(|b| *b > 0),
            cpu_shares: res.cpu.max(2) as u64,
        }
    }
}

/// One task's cgroup.
pub trait Cgroup: Send + Sync + fmt::Debug {
    /// The name under [`PARENT`].
    fn name(&self) -> &str;
    /// Every directory that makes up this cgroup (one per controller on v1).
    fn paths(&self) -> Vec<PathBuf>;
    fn exists(&self) -> bool;
    /// Writes the memory and CPU limits.
    fn apply(&self, limits: &Limits) -> io::Result<()>;
    /// Moves process `pid` (and later its children) into the cgroup.
    fn add_process(&self, pid: i32) -> io::Result<()>;
    /// The processes in the cgroup now.
    fn procs(&self) -> Vec<i32>;
    /// Whether the kernel's OOM killer killed a process of this cgroup.
    fn oom_killed(&self) -> bool;
    /// Removes the (empty) cgroup; one that is already gone is fine.
    fn remove(&self) -> io::Result<()>;
}

/// The mounted cgroup hierarchy of this machine.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    V1(v1::V1),
    V2(v2::V2),
}

impl Hierarchy {
    pub fn version(&self) -> Version {
        match self {
            Hierarchy::V1(_) => Version::V1,
            Hierarchy::V2(_) => Version::V2,
        }
    }

    /// Where cgroups are mounted (`/sys/fs/cgroup` on most machines).
    pub fn mountpoint(&self) -> &Path {
        match self {
            Hierarchy::V1(h) => h.mountpoint(),
            Hierarchy::V2(h) => h.mountpoint(),
        }
    }

    /// A handle on the cgroup `name`, which may or may not exist.
    pub fn cgroup(&self, name: &str) -> Box<dyn Cgroup> {
        let name = sanitize(name);
        match self {
            Hierarchy::V1(h) => Box::new(h.cgroup(&name)),
            Hierarchy::V2(h) => Box::new(h.cgroup(&name)),
        }
    }
}

/// What the exec driver asks of a cgroup hierarchy: handles on task cgroups, creating one
/// with limits, and a health probe. The machine's [`Hierarchy`] implements it, and so does
/// `fake::FakeHierarchy`, so the driver's stop and recover paths run in unit tests
/// without root. What is done with one cgroup (join, list, OOM, remove) is [`Cgroup`]'s;
/// [`signal_all`], [`wait_empty`] and [`destroy`] work over any of them.
pub trait Manager: Send + Sync + fmt::Debug {
    fn version(&self) -> Version;
    /// Where cgroups are mounted, for people.
    fn mountpoint(&self) -> &Path;
    /// A handle on the cgroup `name`, which may or may not exist.
    fn cgroup(&self, name: &str) -> Box<dyn Cgroup>;
    /// Creates the cgroup `name` with `limits`.
    fn create(&self, name: &str, limits: &Limits) -> io::Result<Box<dyn Cgroup>>;

    /// Checks that this agent can create, limit and remove a cgroup; the error is a
    /// sentence for the driver's health description.
    fn probe(&self) -> Result<(), String> {
        let name = format!("probe-{}", std::process::id());
        let limits = Limits {
            memory_bytes: Some(64 * 1024 * 1024),
            memory_reservation_bytes: None,
            cpu_shares: 100,
        };
        let cg = self.create(&name, &limits).map_err(|e| {
            format!(
                "cannot create a cgroup under {} (cgroup {}): {e}",
                self.mountpoint().display(),
                self.version()
            )
        })?;
        cg.remove()
            .map_err(|e| format!("cannot remove the probe cgroup {name}: {e}"))
    }
}

impl Manager for Hierarchy {
    fn version(&self) -> Version {
        Hierarchy::version(self)
    }

    fn mountpoint(&self) -> &Path {
        Hierarchy::mountpoint(self)
    }

    fn cgroup(&self, name: &str) -> Box<dyn Cgroup> {
        Hierarchy::cgroup(self, name)
    }

    fn create(&self, name: &str, limits: &Limits) -> io::Result<Box<dyn Cgroup>> {
        match self {
            Hierarchy::V1(h) => h.prepare()?,
            Hierarchy::V2(h) => h.prepare()?,
        }
        let cg = Hierarchy::cgroup(self, name);
        for p in cg.paths() {
            std::fs::create_dir_all(&p)
                .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", p.display())))?;
        }
        if let Err(e) = cg.apply(limits) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }
}

/// A cgroup name must be one path component.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect()
}

/// One mount of `/proc/self/mountinfo`: where, which filesystem, its super options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub super_opts: Vec<String>,
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mountpoint = left.split_whitespace().nth(4)?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?.to_string();
            let _source = r.next()?;
            let super_opts = r
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::to_string)
                .collect();
            Some(MountInfo {
                mountpoint: PathBuf::from(mountpoint.replace("\\040", " ")),
                fstype,
                super_opts,
            })
        })
        .collect()
}

/// Decides the hierarchy from the mount table; `controllers_of` reads a cgroup2 mount's
/// `cgroup.controllers` (a parameter so tests can describe any machine).
pub(crate) fn detect_from(
    mounts: &[MountInfo],
    controllers_of: impl Fn(&Path) -> String,
) -> Result<Hierarchy, String> {
    let v1_mounts: Vec<&MountInfo> = mounts.iter().filter(|m| m.fstype == "cgroup").collect();
    let has_v1 = |ctrl: &str| {
        v1_mounts
            .iter()
            .find(|m| m.super_opts.iter().any(|o| o == ctrl))
            .map(|m| m.mountpoint.clone())
    };
    if let Some(memory) = has_v1("memory") {
        return Ok(Hierarchy::V1(v1::V1::new(
            memory,
            has_v1("cpu"),
            has_v1("cpuacct"),
            has_v1("pids"),
        )));
    }
    for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        let ctrls = controllers_of(&m.mountpoint);
        if ctrls.split_whitespace().any(|c| c == "memory") {
            return Ok(Hierarchy::V2(v2::V2::new(m.mountpoint.clone())));
        }
    }
    if mounts.iter().any(|m| m.fstype == "cgroup2") {
        Err("a cgroup2 hierarchy is mounted but offers no memory controller".into())
    } else {
        Err("no cgroup hierarchy with the memory controller is mounted".into())
    }
}

/// Finds this machine's cgroup hierarchy.
pub fn detect() -> Result<Hierarchy, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    detect_from(&parse_mountinfo(&text), |mp| {
        std::fs::read_to_string(mp.join("cgroup.controllers")).unwrap_or_default()
    })
}

/// Reads `key value` lines (memory.events, memory.oom_control) for `key`.
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

pub(crate) fn read_procs(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub(crate) fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

/// Sends `sig` to every process in `cg` except `except`.
pub fn signal_all(cg: &dyn Cgroup, sig: Signal, except: Option<i32>) {
    for pid in cg.procs() {
        if Some(pid) != except && pid > 1 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
}

/// Waits until no process is left in `cg`, polling; false if `timeout` passed first.
pub async fn wait_empty(cg: &dyn Cgroup, timeout: Duration) -> bool {
    let every = Duration::from_millis(25);
    crate::driver::process::poll_until(timeout, every, || cg.procs().is_empty()).await
}

/// Kills whatever is left in `cg` and removes it. Returns whether the OOM killer had
/// struck in it (read before removal).
pub async fn destroy(cg: &dyn Cgroup) -> io::Result<bool> {
    if !cg.exists() {
        return Ok(false);
    }
    let mut emptied = false;
    for _ in 0..3 {
        signal_all(cg, Signal::SIGKILL, None);
        if wait_empty(cg, Duration::from_secs(2)).await {
            emptied = true;
            break;
        }
    }
    let oom = cg.oom_killed();
    if !emptied {
        return Err(io::Error::other(format!(
            "processes {:?} are still in cgroup {} after SIGKILL",
            cg.procs(),
            cg.name()
        )));
    }
    // The kernel may take a moment to let go of a cgroup whose last process just died.
    let mut removed = Ok(());
    let every = Duration::from_millis(25);
    crate::driver::process::poll_until(Duration::from_secs(5), every, || {
        removed = cg.remove();
        removed.is_ok()
    })
    .await;
    removed.map(|()| oom)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
25 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_machines_with_v1_memory_use_v1() {
        let h = detect_from(&parse_mountinfo(HYBRID), |_| "hugetlb".into()).unwrap();
        assert_eq!(h.version(), Version::V1);
        assert_eq!(h.mountpoint(), Path::new("/sys/fs/cgroup"));
        let cg = h.cgroup("a1.web");
        assert!(cg
            .paths()
            .contains(&PathBuf::from("/sys/fs/cgroup/memory/drover/a1.web")));
        assert!(cg
            .paths()
            .contains(&PathBuf::from("/sys/fs/cgroup/cpu/drover/a1.web")));
    }

    #[test]
    fn unified_machines_use_v2() {
        let h = detect_from(&parse_mountinfo(UNIFIED), |_| {
            "cpuset cpu io memory pids".into()
        })
        .unwrap();
        assert_eq!(h.version(), Version::V2);
        assert_eq!(h.mountpoint(), Path::new("/sys/fs/cgroup"));
        assert_eq!(
            h.cgroup("a1/web").paths(),
            vec![PathBuf::from("/sys/fs/cgroup/drover/a1_web")]
        );
        let err = detect_from(&parse_mountinfo(UNIFIED), |_| "pids".into()).unwrap_err();
        assert!(err.contains("no memory controller"), "{err}");
        let err = detect_from(&[], |_| String::new()).unwrap_err();
        assert!(err.contains("no cgroup hierarchy"), "{err}");
    }

    #[test]
    fn limits_follow_nomads_units() {
        let l = Limits::from_resources(&api::Resources {
            cpu: 500,
            memory_mb: 64,
            memory_max_mb: 128,
            ..Default::default()
        });
        assert_eq!(l.memory_bytes, Some(128 << 20));
        assert_eq!(l.memory_reservation_bytes, Some(64 << 20));
        assert_eq!(l.cpu_shares, 500);
        let l = Limits::from_resources(&api::Resources {
            cpu: 1,
            memory_mb: 32,
            ..Default::default()
        });
        assert_eq!(l.memory_bytes, Some(32 << 20));
        assert_eq!(l.memory_reservation_bytes, None);
        assert_eq!(l.cpu_shares, 2);
    }

    #[test]
    fn flat_keyed_files_parse() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n";
        assert_eq!(flat_keyed(events, "oom_kill"), Some(1));
        assert_eq!(flat_keyed(events, "oom"), Some(1));
        assert_eq!(
            flat_keyed("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"),
            None
        );
    }

    /// Runs against this machine's real cgroups: create with limits, join, list, remove.
    #[tokio::test]
    async fn a_real_cgroup_is_created_limited_joined_and_removed() {
        let h = match detect() {
            Ok(h) => h,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "no usable cgroup hierarchy here ({e}), and CI=true: the exec driver needs one"
                );
                eprintln!("SKIPPED: no usable cgroup hierarchy here: {e}");
                return;
            }
        };
        if let Err(e) = h.probe() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot manage cgroups here ({e}), and CI=true: the exec driver needs them"
            );
            eprintln!("SKIPPED: cannot manage cgroups here: {e}");
            return;
        }
        let name = format!("unit-{}", std::process::id());
        let limits = Limits {
            memory_bytes: Some(48 << 20),
            memory_reservation_bytes: Some(16 << 20),
            cpu_shares: 256,
        };
        let cg = h.create(&name, &limits).unwrap();
        assert!(cg.exists());
        let mem_file = match h.version() {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        let mem_dir = cg
            .paths()
            .into_iter()
            .find(|p| p.join(mem_file).exists())
            .unwrap();
        let limit = std::fs::read_to_string(mem_dir.join(mem_file)).unwrap();
        assert_eq!(limit.trim(), (48u64 << 20).to_string());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        cg.add_process(child.id() as i32).unwrap();
        assert_eq!(cg.procs(), vec![child.id() as i32]);
        assert!(!cg.oom_killed());
        let oom = destroy(cg.as_ref()).await.unwrap();
        assert!(!oom);
        let _ = child.wait();
        assert!(!cg.exists());
        for p in cg.paths() {
            assert!(!p.exists(), "{} left behind", p.display());
        }
    }
}
