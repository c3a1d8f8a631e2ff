//! Local state that lets a restarted agent reattach to its tasks instead of restarting
//! them: one JSON file per allocation, `<data_dir>/client-state/<alloc_id>.json`, holding
//! the allocation, and per task its driver handle, TaskState and restart count.
//!
//! Files are written atomically (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves either the old or the new version, never a torn one.

use crate::driver::TaskHandle;
use crate::ports::AllocatedPort;
use crate::restart::RestartTracker;
use anyhow::Context;
use api::{Allocation, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the agent remembers about one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalTaskState {
    pub state: TaskState,
    /// Set while the task's process runs.
    pub handle: Option<TaskHandle>,
    pub restart: RestartTracker,
}

/// What the agent remembers about one allocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalAllocState {
    pub alloc: Allocation,
    pub tasks: BTreeMap<String, LocalTaskState>,
    pub client_status: String,
    pub client_description: String,
    /// The host ports this agent assigned to the group's network ports.
    pub ports: Vec<AllocatedPort>,
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The directory of per-allocation state files.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(data_dir: &Path) -> Self {
        StateStore {
            dir: data_dir.join("client-state"),
        }
    }

    fn path(&self, alloc_id: &str) -> PathBuf {
        self.dir.join(format!("{alloc_id}.json"))
    }

    pub fn save(&self, st: &LocalAllocState) -> anyhow::Result<()> {
        let path = self.path(&st.alloc.id);
        let bytes = serde_json::to_vec(st).context("encoding alloc state")?;
        write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))
    }

    pub fn remove(&self, alloc_id: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(self.path(alloc_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing state of alloc {alloc_id}"))
            }
            _ => Ok(()),
        }
    }

    /// Every saved allocation. A file that cannot be read is logged and skipped: one
    /// corrupt file must not stop the agent from recovering the others.
    pub fn load_all(&self) -> anyhow::Result<Vec<LocalAllocState>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<LocalAllocState>(&b)?))
            {
                Ok(st) if !st.alloc.id.is_empty() => out.push(st),
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "alloc state without an ID, skipped")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable alloc state, skipped")
                }
            }
        }
        out.sort_by(|a, b| a.alloc.id.cmp(&b.alloc.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_state_round_trips_through_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path());
        assert!(store.load_all().unwrap().is_empty());
        let mut st = LocalAllocState {
            alloc: Allocation {
                id: "a1".into(),
                job_id: "j".into(),
                ..Default::default()
            },
            client_status: "running".into(),
            ..Default::default()
        };
        st.tasks.insert(
            "web".into(),
            LocalTaskState {
                state: TaskState {
                    state: "running".into(),
                    restarts: 2,
                    ..Default::default()
                },
                handle: Some(TaskHandle {
                    driver: "raw_exec".into(),
                    task_id: "a1/web".into(),
                    pid: 42,
                    pgid: 42,
                    start_time: 777,
                    driver_state: serde_json::Value::Null,
                }),
                restart: RestartTracker {
                    count: 2,
                    window_start: 5,
                },
            },
        );
        store.save(&st).unwrap();
        st.client_status = "complete".into();
        store.save(&st).unwrap();
        std::fs::write(tmp.path().join("client-state/broken.json"), b"{not json").unwrap();
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded, vec![st]);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("client-state"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        store.remove("a1").unwrap();
        store.remove("a1").unwrap();
        assert!(store.load_all().unwrap().is_empty());
    }
}
