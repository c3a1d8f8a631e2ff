//! The on-disk layout of an allocation, as Nomad lays it out:
//!
//! ```text
//! <data_dir>/alloc/<alloc_id>/
//!     alloc/            shared by the group's tasks (NOMAD_ALLOC_DIR)
//!         logs/         <task>.stdout.0, <task>.stderr.0
//!         data/
//!         tmp/
//!     <task>/           the task's working directory
//!         local/        NOMAD_TASK_DIR
//!         secrets/      NOMAD_SECRETS_DIR (mode 0700)
//!         tmp/
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The directory tree of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocDir {
    /// `<data_dir>/alloc/<alloc_id>`
    pub root: PathBuf,
}

/// The paths one task sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDirs {
    /// The task's working directory, `<alloc root>/<task>`.
    pub dir: PathBuf,
    pub local: PathBuf,
    pub secrets: PathBuf,
    pub tmp: PathBuf,
    /// The group's shared directory, `<alloc root>/alloc`.
    pub shared: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl AllocDir {
    pub fn new(data_dir: &Path, alloc_id: &str) -> Self {
        AllocDir {
            root: data_dir.join("alloc").join(alloc_id),
        }
    }

    pub fn shared(&self) -> PathBuf {
        self.root.join("alloc")
    }

    pub fn logs(&self) -> PathBuf {
        self.shared().join("logs")
    }

    /// Creates the shared directories (idempotent).
    pub fn build(&self) -> io::Result<()> {
        for d in ["logs", "data", "tmp"] {
            fs::create_dir_all(self.shared().join(d))?;
        }
        Ok(())
    }

    pub fn task_dirs(&self, task: &str) -> TaskDirs {
        let dir = self.root.join(task);
        TaskDirs {
            local: dir.join("local"),
            secrets: dir.join("secrets"),
            tmp: dir.join("tmp"),
            shared: self.shared(),
            stdout: self.logs().join(format!("{task}.stdout.0")),
            stderr: self.logs().join(format!("{task}.stderr.0")),
            dir,
        }
    }

    /// Creates one task's directories (idempotent) and returns their paths.
    pub fn build_task(&self, task: &str) -> io::Result<TaskDirs> {
        self.build()?;
        let dirs = self.task_dirs(task);
        fs::create_dir_all(&dirs.local)?;
        fs::create_dir_all(&dirs.tmp)?;
        fs::create_dir_all(&dirs.secrets)?;
        fs::set_permissions(&dirs.secrets, fs::Permissions::from_mode(0o700))?;
        Ok(dirs)
    }

    /// Removes the whole tree; a tree that is already gone is fine.
    pub fn destroy(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_dirs_follow_nomads_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let ad = AllocDir::new(tmp.path(), "a1");
        let td = ad.build_task("web").unwrap();
        let root = tmp.path().join("alloc/a1");
        for p in [
            "alloc/logs",
            "alloc/data",
            "alloc/tmp",
            "web/local",
            "web/secrets",
            "web/tmp",
        ] {
            assert!(root.join(p).is_dir(), "{p} missing");
        }
        assert_eq!(td.stdout, root.join("alloc/logs/web.stdout.0"));
        let mode = fs::metadata(&td.secrets).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        ad.destroy().unwrap();
        assert!(!root.exists());
        ad.destroy().unwrap();
    }
}
