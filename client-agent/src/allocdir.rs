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
//!
//! # The filesystem boundary
//!
//! Everything below the alloc root can be written by tasks (a task can replace its
//! `local/` or `alloc/logs/` with a symlink to `/`), and names in it come from jobs and
//! requests. So every path the agent builds from user input goes through this module:
//!
//! - [`check_name`] / [`check_task_name`] accept one plain path component (no `/`, `\`,
//!   NUL, `.`/`..`; a task may not be called `alloc`), and [`relative`] accepts a relative
//!   path without `..`. Neither ever calls `Path::join` with the raw input.
//! - [`open_beneath`] / [`mkdir_all`] then open that path relative to a directory file
//!   descriptor without leaving it: `openat2(2)` with `RESOLVE_BENEATH |
//!   RESOLVE_NO_MAGICLINKS` (and `RESOLVE_NO_SYMLINKS` for [`Links::Never`]), or, on a
//!   kernel without `openat2`, a component-by-component walk with `O_NOFOLLOW`. The agent
//!   itself never follows a symlink when it creates or writes something ([`Links::Never`]);
//!   reads for the fs API may follow links that stay inside the alloc dir.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

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

/// A name or path from a job or a request that would leave (or misuse) the allocation
/// directory; the message is a sentence naming the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl From<Refused> for io::Error {
    fn from(r: Refused) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, r.0)
    }
}

/// The directory names under the alloc root that are not task directories.
const SHARED_DIR: &str = "alloc";

/// Checks that `name` (described as `what`, e.g. "task name") is usable as one directory
/// or file name inside the alloc dir: not empty, not `.` or `..`, without `/`, `\` or NUL.
pub fn check_name(what: &str, name: &str) -> Result<(), Refused> {
    let why = if name.is_empty() {
        "is empty"
    } else if name == "." || name == ".." {
        "names a directory rather than an entry inside the allocation directory"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains('\\') {
        "contains '\\'"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Refused(format!(
        "{what} {name:?} {why}; it must be a plain name because the agent uses it as a \
         file name inside the allocation directory"
    )))
}

/// [`check_name`] for a task name, which also may not be `alloc` (the group's shared
/// directory), as Nomad requires.
pub fn check_task_name(name: &str) -> Result<(), Refused> {
    check_name("task name", name)?;
    if name == SHARED_DIR {
        return Err(Refused(format!(
            "task name {name:?} is reserved: the allocation's shared directory is called \
             {SHARED_DIR:?}; rename the task"
        )));
    }
    Ok(())
}

/// `input` (described as `what`) as a relative path below some base directory: `.` and
/// empty components are dropped; a leading `/`, `..`, `\` or NUL is refused. The empty
/// path means the base itself.
pub fn relative(what: &str, input: &str) -> Result<PathBuf, Refused> {
    let refuse = |why: &str| {
        Err(Refused(format!(
            "{what} {input:?} {why}; it must be a relative path that stays inside the \
             allocation directory"
        )))
    };
    if input.contains('\0') {
        return refuse("contains a NUL byte");
    }
    if input.contains('\\') {
        return refuse("contains '\\'");
    }
    if input.starts_with('/') {
        return refuse("is absolute");
    }
    let mut out = PathBuf::new();
    for c in input.split('/') {
        match c {
            "" | "." => {}
            ".." => return refuse("contains '..'"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// How [`open_beneath`] treats symbolic links on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// No symlink is followed, not even one that stays inside (for everything the agent
    /// creates or writes).
    Never,
    /// Symlinks are followed as long as they resolve beneath the directory (for reads on
    /// behalf of the fs API). Magic links (`/proc/*/fd`) never are.
    Beneath,
}

/// Whether `e` is the kernel refusing to follow a link (out of the directory, or at all).
pub fn is_link_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == libc::ELOOP || code == libc::EXDEV
    )
}

fn os(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Opens `rel` (already checked by [`relative`]) below `dir` without leaving it.
pub fn open_beneath(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
    links: Links,
) -> io::Result<OwnedFd> {
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a plain relative path", rel.display()),
        ));
    }
    let target: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let resolve = match links {
        Links::Never => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        Links::Beneath => ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    };
    let extra = match links {
        Links::Never => OFlags::NOFOLLOW,
        Links::Beneath => OFlags::empty(),
    };
    match rustix::fs::openat2(dir, target, flags | extra | OFlags::CLOEXEC, mode, resolve) {
        Ok(fd) => Ok(fd),
        // No openat2 (old kernel, or a seccomp filter): walk without following anything.
        Err(Errno::NOSYS) | Err(Errno::PERM) if openat2_missing() => {
            walk_nofollow(dir, rel, flags, mode)
        }
        // `O_DIRECTORY | O_NOFOLLOW` on a symlink says ENOTDIR; the walk names it a link.
        Err(Errno::NOTDIR) if links == Links::Never => walk_nofollow(dir, rel, flags, mode),
        Err(e) => Err(os(e)),
    }
}

/// Whether `openat2` is unavailable here (probed once).
fn openat2_missing() -> bool {
    static MISSING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MISSING.get_or_init(|| {
        matches!(
            rustix::fs::openat2(
                CWD,
                "/",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::empty(),
            ),
            Err(Errno::NOSYS) | Err(Errno::PERM)
        )
    })
}

/// Opens one directory component of a walk: never a symlink.
fn open_dir_component(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOTDIR) if is_symlink_at(dir, name) => Err(os(Errno::LOOP)),
        Err(e) => Err(os(e)),
    }
}

fn is_symlink_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

/// The portable fallback of [`open_beneath`]: one `openat` per component, each with
/// `O_NOFOLLOW`, so no symlink is followed anywhere.
fn walk_nofollow(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return rustix::fs::openat(dir, ".", flags | OFlags::CLOEXEC, mode).map_err(os);
    };
    let mut cur: Option<OwnedFd> = None;
    for p in parents {
        let next = open_dir_component(cur.as_ref().map_or(dir, |f| f.as_fd()), p)?;
        cur = Some(next);
    }
    let at = cur.as_ref().map_or(dir, |f| f.as_fd());
    match rustix::fs::openat(at, *last, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOTDIR) if is_symlink_at(at, last) => Err(os(Errno::LOOP)),
        Err(e) => Err(os(e)),
    }
}

/// Creates `rel` (checked by [`relative`]) and its missing parents below `dir` with
/// `mode`, never following a symlink, and returns the last directory opened.
pub fn mkdir_all(dir: BorrowedFd<'_>, rel: &Path, mode: Mode) -> io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for c in rel.components() {
        let name = match c {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ))
            }
        };
        let at = cur.as_ref().map_or(dir, |f| f.as_fd());
        match rustix::fs::mkdirat(at, name, mode) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(os(e)),
        }
        cur = Some(open_dir_component(at, name)?);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(os),
    }
}

/// Opens a trusted directory path (one the agent chose, such as the alloc root).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(os)
}

/// Opens the task's own directory below the alloc root `root` (the agent's path), never
/// through a link a task planted.
pub fn open_task_dir(root: &Path, task: &str) -> io::Result<OwnedFd> {
    let root = open_dir(root)?;
    open_beneath(
        root.as_fd(),
        Path::new(task),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
        Links::Never,
    )
}

/// Where an open file really is (its path as the kernel sees it now).
pub fn real_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens a task's log file (`<alloc root>/alloc/logs/<task>.<kind>.<n>`) for appending,
/// creating it, without following a symlink anywhere below the alloc root: a task that
/// replaced its log file (or the logs directory) with a link cannot make the agent or a
/// driver write elsewhere. Refuses anything but a regular file.
pub fn open_log_append(path: &Path) -> io::Result<File> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a log file of an allocation directory (<alloc>/alloc/logs/<file>)",
                path.display()
            ),
        )
    };
    let name = path.file_name().ok_or_else(bad)?;
    let logs = path.parent().ok_or_else(bad)?;
    let shared = logs.parent().ok_or_else(bad)?;
    let root = shared.parent().ok_or_else(bad)?;
    if logs.file_name() != Some("logs".as_ref()) || shared.file_name() != Some(SHARED_DIR.as_ref())
    {
        return Err(bad());
    }
    check_name("log file name", &name.to_string_lossy())?;
    let root = open_dir(root)?;
    let dir = mkdir_all(
        root.as_fd(),
        Path::new("alloc/logs"),
        Mode::from_raw_mode(0o755),
    )?;
    let fd = open_beneath(
        dir.as_fd(),
        Path::new(name),
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NONBLOCK,
        Mode::from_raw_mode(0o644),
        Links::Never,
    )
    .map_err(|e| {
        if is_link_refusal(&e) {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is a symbolic link; refusing to write through it",
                    path.display()
                ),
            )
        } else {
            e
        }
    })?;
    let st = rustix::fs::fstat(&fd).map_err(os)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a regular file; refusing to write to it",
                path.display()
            ),
        ));
    }
    // Regular files ignore O_NONBLOCK, but the task inherits this descriptor: clear it.
    rustix::fs::fcntl_setfl(&fd, OFlags::APPEND).map_err(os)?;
    Ok(File::from(fd))
}

impl AllocDir {
    pub fn new(data_dir: &Path, alloc_id: &str) -> Self {
        AllocDir {
            root: data_dir.join("alloc").join(alloc_id),
        }
    }

    pub fn shared(&self) -> PathBuf {
        self.root.join(SHARED_DIR)
    }

    pub fn logs(&self) -> PathBuf {
        self.shared().join("logs")
    }

    /// The alloc root, opened (created first if missing).
    pub fn open_root(&self) -> io::Result<OwnedFd> {
        fs::create_dir_all(&self.root)?;
        open_dir(&self.root)
    }

    /// Creates the shared directories (idempotent), never through a symlink.
    pub fn build(&self) -> io::Result<()> {
        let root = self.open_root()?;
        for d in ["logs", "data", "tmp"] {
            mkdir_all(
                root.as_fd(),
                &Path::new(SHARED_DIR).join(d),
                Mode::from_raw_mode(0o755),
            )?;
        }
        Ok(())
    }

    /// One task's paths; the task name is checked first ([`check_task_name`]).
    pub fn task_dirs(&self, task: &str) -> Result<TaskDirs, Refused> {
        check_task_name(task)?;
        let dir = self.root.join(task);
        Ok(TaskDirs {
            local: dir.join("local"),
            secrets: dir.join("secrets"),
            tmp: dir.join("tmp"),
            shared: self.shared(),
            stdout: self.logs().join(format!("{task}.stdout.0")),
            stderr: self.logs().join(format!("{task}.stderr.0")),
            dir,
        })
    }

    /// Creates one task's directories (idempotent) and returns their paths. A name that
    /// would leave the alloc dir is refused (`InvalidInput`, with a sentence), and an
    /// existing symlink in place of a directory is an error, never followed.
    pub fn build_task(&self, task: &str) -> io::Result<TaskDirs> {
        let dirs = self.task_dirs(task)?;
        self.build()?;
        let root = self.open_root()?;
        let base = Path::new(task);
        mkdir_all(
            root.as_fd(),
            &base.join("local"),
            Mode::from_raw_mode(0o755),
        )?;
        mkdir_all(root.as_fd(), &base.join("tmp"), Mode::from_raw_mode(0o755))?;
        let secrets = mkdir_all(
            root.as_fd(),
            &base.join("secrets"),
            Mode::from_raw_mode(0o700),
        )?;
        rustix::fs::fchmod(&secrets, Mode::from_raw_mode(0o700)).map_err(os)?;
        Ok(dirs)
    }

    /// Removes the whole tree; a tree that is already gone is fine. (`remove_dir_all`
    /// does not follow symlinks inside the tree.)
    pub fn destroy(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
