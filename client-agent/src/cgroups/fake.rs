//! In-memory cgroups for tests: the [`Manager`] and [`Cgroup`] traits without root or a
//! mounted hierarchy. A [`FakeCgroup`] records the limits applied and how often it was
//! removed, can be told the OOM killer struck, and holds real process ids the test
//! started. Like a real cgroup, a process stops being listed once it exited (a zombie is
//! not a member). A [`FakeHierarchy`] hands out the same [`FakeCgroup`] for a name every
//! time, so a test inspects what the code under test did through its own handle.

use super::{sanitize, Cgroup, Limits, Manager, Version};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State {
    exists: bool,
    limits: Option<Limits>,
    procs: Vec<i32>,
    oom: bool,
    removals: usize,
}

/// A cgroup that lives in memory. Clones share it, so a test keeps one to inspect what
/// the code under test did with the other.
#[derive(Debug, Default, Clone)]
pub struct FakeCgroup {
    name: String,
    state: Arc<Mutex<State>>,
}

impl FakeCgroup {
    /// An existing, empty cgroup called `name`.
    pub fn new(name: &str) -> FakeCgroup {
        FakeCgroup {
            name: name.to_string(),
            state: Arc::new(Mutex::new(State {
                exists: true,
                ..State::default()
            })),
        }
    }

    /// A handle on a cgroup called `name` that does not exist (yet).
    fn absent(name: &str) -> FakeCgroup {
        FakeCgroup {
            name: name.to_string(),
            state: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the cgroup as one the OOM killer struck in.
    pub fn set_oom_killed(&self) {
        self.state().oom = true;
    }

    /// The limits last applied.
    pub fn limits(&self) -> Option<Limits> {
        self.state().limits
    }

    /// How many times [`Cgroup::remove`] removed it.
    pub fn removals(&self) -> usize {
        self.state().removals
    }
}

/// Whether `pid` runs (exists and is not a zombie).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

impl Cgroup for FakeCgroup {
    fn name(&self) -> &str {
        &self.name
    }

    fn paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn exists(&self) -> bool {
        self.state().exists
    }

    fn apply(&self, limits: &Limits) -> io::Result<()> {
        self.state().limits = Some(*limits);
        Ok(())
    }

    fn add_process(&self, pid: i32) -> io::Result<()> {
        let mut st = self.state();
        if !st.exists {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cgroup {} does not exist", self.name),
            ));
        }
        st.procs.push(pid);
        Ok(())
    }

    fn procs(&self) -> Vec<i32> {
        let mut st = self.state();
        st.procs.retain(|p| running(*p));
        st.procs.clone()
    }

    fn oom_killed(&self) -> bool {
        self.state().oom
    }

    fn remove(&self) -> io::Result<()> {
        if !self.procs().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("cgroup {} still has processes", self.name),
            ));
        }
        let mut st = self.state();
        if st.exists {
            st.exists = false;
            st.removals += 1;
        }
        Ok(())
    }
}

/// A cgroup hierarchy that lives in memory: one [`FakeCgroup`] per name, shared by every
/// handle on it. Clones share the whole hierarchy.
#[derive(Debug, Default, Clone)]
pub struct FakeHierarchy {
    cgroups: Arc<Mutex<BTreeMap<String, FakeCgroup>>>,
}

impl FakeHierarchy {
    pub fn new() -> FakeHierarchy {
        FakeHierarchy::default()
    }

    /// The cgroup `name` (named as the real hierarchy would), whether it exists or not.
    pub fn get(&self, name: &str) -> FakeCgroup {
        let name = sanitize(name);
        let mut cgroups = self.cgroups.lock().unwrap_or_else(|e| e.into_inner());
        cgroups
            .entry(name.clone())
            .or_insert_with(|| FakeCgroup::absent(&name))
            .clone()
    }
}

impl Manager for FakeHierarchy {
    fn version(&self) -> Version {
        Version::V2
    }

    fn mountpoint(&self) -> &Path {
        Path::new("/fake/cgroup")
    }

    fn cgroup(&self, name: &str) -> Box<dyn Cgroup> {
        Box::new(self.get(name))
    }

    fn create(&self, name: &str, limits: &Limits) -> io::Result<Box<dyn Cgroup>> {
        let cg = self.get(name);
        cg.state().exists = true;
        cg.apply(limits)?;
        Ok(Box::new(cg))
    }
}
