//! cgroup v2: one unified hierarchy.
//!
//! A task cgroup is `<mount>/drover/<name>`. The `memory`, `cpu` and `pids` controllers
//! are enabled for it through `cgroup.subtree_control` of the root and of `drover`.
//! Files used:
//! - `memory.max` (hard limit), `memory.low` (the reservation), `memory.swap.max` = 0
//!   (swap cannot stretch the limit; when it exists);
//! - `cpu.weight`, converted from CPU shares as runc and crun do;
//! - `cgroup.procs` (join and list);
//! - `memory.events` (`oom_kill N`) to tell an OOM kill.

use super::{flat_keyed, read_procs, write, Cgroup, Limits, PARENT};
use std::io;
use std::path::{Path, PathBuf};

/// The controllers a task cgroup needs (memory) or uses when available.
const WANTED: &[&str] = &["memory", "cpu", "pids"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2 {
    root: PathBuf,
}

/// CPU shares (2..262144) to cgroup v2's `cpu.weight` (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

impl V2 {
    pub fn new(root: PathBuf) -> V2 {
        V2 { root }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.root
    }

    /// Creates `drover` and enables the wanted controllers down to its children.
    pub fn prepare(&self) -> io::Result<()> {
        let parent = self.root.join(PARENT);
        std::fs::create_dir_all(&parent)?;
        let available = std::fs::read_to_string(self.root.join("cgroup.controllers"))?;
        for dir in [&self.root, &parent] {
            let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control"))?;
            for c in WANTED {
                let has = |text: &str| text.split_whitespace().any(|x| x == *c);
                if has(&available) && !has(&enabled) {
                    let res = write(&dir.join("cgroup.subtree_control"), &format!("+{c}"));
                    // Memory is required; the others only make limits finer.
                    if *c == "memory" {
                        res?;
                    }
                }
            }
        }
        Ok(())
    }

    pub fn cgroup(&self, name: &str) -> V2Cgroup {
        V2Cgroup {
            name: name.to_string(),
            dir: self.root.join(PARENT).join(name),
        }
    }
}

#[derive(Debug, Clone)]
pub struct V2Cgroup {
    name: String,
    dir: PathBuf,
}

impl Cgroup for V2Cgroup {
    fn name(&self) -> &str {
        &self.name
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn exists(&self) -> bool {
        self.dir.exists()
    }

    fn apply(&self, limits: &Limits) -> io::Result<()> {
        if let Some(bytes) = limits.memory_bytes {
            write(&self.dir.join("memory.max"), &bytes.to_string())?;
            let swap = self.dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        if let Some(bytes) = limits.memory_reservation_bytes {
            write(&self.dir.join("memory.low"), &bytes.to_string())?;
        }
        let weight = self.dir.join("cpu.weight");
        if weight.exists() {
            write(&weight, &shares_to_weight(limits.cpu_shares).to_string())?;
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> io::Result<()> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn procs(&self) -> Vec<i32> {
        read_procs(&self.dir.join("cgroup.procs"))
    }

    fn oom_killed(&self) -> bool {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        flat_keyed(&events, "oom_kill").is_some_and(|n| n > 0)
    }

    fn remove(&self) -> io::Result<()> {
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
                e.kind(),
                format!("removing {}: {e}", self.dir.display()),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_onto_the_weight_range() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }
}
