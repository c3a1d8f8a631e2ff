//! cgroup v1: one hierarchy per controller, each mounted on its own directory.
//!
//! A task cgroup is a directory `drover/<name>` in the `memory` hierarchy and, when
//! mounted, in `cpu`, `cpuacct` and `pids`. Files used:
//! - `memory.limit_in_bytes` (hard limit), `memory.memsw.limit_in_bytes` (the same, so
//!   swap cannot stretch it; when swap accounting exists), `memory.soft_limit_in_bytes`
//!   (the reservation);
//! - `cpu.shares`;
//! - `cgroup.procs` (join and list);
//! - `memory.oom_control` (`oom_kill N`, kernels >= 4.13) and `memory.failcnt` (older
//!   kernels: the limit was hit) to tell an OOM kill.

use super::{flat_keyed, read_procs, write, Cgroup, Limits, PARENT};
use std::io;
use std::path::{Path, PathBuf};

/// The controllers' mount points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    root: PathBuf,
    memory: PathBuf,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    pids: Option<PathBuf>,
}

impl V1 {
    pub fn new(
        memory: PathBuf,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        pids: Option<PathBuf>,
    ) -> V1 {
        let root = memory
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| memory.clone());
        V1 {
            root,
            memory,
            cpu,
            cpuacct,
            pids,
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.root
    }

    /// Nothing to enable on v1: every hierarchy has its controller already.
    pub fn prepare(&self) -> io::Result<()> {
        Ok(())
    }

    pub fn cgroup(&self, name: &str) -> V1Cgroup {
        let dir = |mp: &Path| mp.join(PARENT).join(name);
        let mut others: Vec<PathBuf> = Vec::new();
        // cpu and cpuacct are often co-mounted (`cpu,cpuacct`): one directory then.
        for mp in [&self.cpu, &self.cpuacct, &self.pids].into_iter().flatten() {
            let d = dir(mp);
            if d != dir(&self.memory) && !others.contains(&d) {
                others.push(d);
            }
        }
        V1Cgroup {
            name: name.to_string(),
            memory: dir(&self.memory),
            cpu: self.cpu.as_deref().map(dir),
            others,
        }
    }
}

#[derive(Debug, Clone)]
pub struct V1Cgroup {
    name: String,
    memory: PathBuf,
    cpu: Option<PathBuf>,
    /// The directories in the other hierarchies (cpu, cpuacct, pids).
    others: Vec<PathBuf>,
}

impl Cgroup for V1Cgroup {
    fn name(&self) -> &str {
        &self.name
    }

    fn paths(&self) -> Vec<PathBuf> {
        std::iter::once(self.memory.clone())
            .chain(self.others.iter().cloned())
            .collect()
    }

    fn exists(&self) -> bool {
        self.paths().iter().any(|p| p.exists())
    }

    fn apply(&self, limits: &Limits) -> io::Result<()> {
        if let Some(bytes) = limits.memory_bytes {
            write(
                &self.memory.join("memory.limit_in_bytes"),
                &bytes.to_string(),
            )?;
            let memsw = self.memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string())?;
            }
        }
        if let Some(bytes) = limits.memory_reservation_bytes {
            write(
                &self.memory.join("memory.soft_limit_in_bytes"),
                &bytes.to_string(),
            )?;
        }
        if let Some(cpu) = &self.cpu {
            write(&cpu.join("cpu.shares"), &limits.cpu_shares.to_string())?;
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> io::Result<()> {
        for dir in self.paths() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn procs(&self) -> Vec<i32> {
        read_procs(&self.memory.join("cgroup.procs"))
    }

    fn oom_killed(&self) -> bool {
        let ctl =
            std::fs::read_to_string(self.memory.join("memory.oom_control")).unwrap_or_default();
        match flat_keyed(&ctl, "oom_kill") {
            Some(n) => n > 0,
            None => std::fs::read_to_string(self.memory.join("memory.failcnt"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0),
        }
    }

    fn remove(&self) -> io::Result<()> {
        for dir in self.paths() {
            match std::fs::remove_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("removing {}: {e}", dir.display()),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}
