//! `artifact` blocks: files downloaded over HTTP(S) into the task directory before the
//! task starts (default destination `local/`).
//!
//! Archives (`.tar`, `.tar.gz`/`.tgz`, `.tar.bz2`/`.tbz2`, `.tar.xz`/`.txz`, `.zip`) are
//! unpacked into the destination unless `mode = "file"` or `options { archive = "false" }`.
//! Checksums (`options { checksum = ... }`) are not verified yet; a failure names the
//! artifact.
//!
//! # Unprivileged, and never out of the task directory
//!
//! The agent runs as root; an artifact is hostile input. So:
//!
//! 1. The agent resolves the destination beneath the task directory without following a
//!    single symlink ([`allocdir::mkdir_all`]): a task (or an earlier archive) that left
//!    `local/evil -> /` makes `destination = "local/evil/tmp"` fail, it does not write to
//!    the host. The destination directory is opened and handed over as a descriptor.
//! 2. Download and unpacking run in a child process: the agent's own binary re-executed
//!    with a hidden argument ([`SANDBOX_ARG`], see [`run_if_sandbox_child`]), as the task's
//!    `user` or `nobody` (the agent's own user when it is not root), with supplementary
//!    groups dropped, `PR_SET_NO_NEW_PRIVS` and a parent-death signal. A fork without exec
//!    is not safe in a multi-threaded async agent (only async-signal-safe calls may follow
//!    it), so the child is a fresh process image; it only receives the destination
//!    descriptor (fd 3) and a JSON request on stdin, and reports a sentence on stderr.
//! 3. The child unpacks with the `tar`, `flate2`, `bzip2`, `xz2` and `zip` crates relative
//!    to that descriptor, never following a link: entries with `..` or absolute paths,
//!    symlinks or hard links that lead outside the destination, devices, FIFOs and sockets
//!    are refused; setuid, setgid and sticky bits are dropped; the unpacked size, the
//!    entry count and the download size are capped ([`Limits`]).
//!
//! This file is the agent's side (destinations, fetching, the request types); beside it:
//! `sandbox` (the child process and how it is started) and `unpack` (writing archive
//! entries beneath the destination descriptor).

mod sandbox;
mod unpack;

pub use sandbox::{run_if_sandbox_child, run_request};
pub use unpack::unpack;

use sandbox::{run_sandbox, sandbox_identity, Identity};
use unpack::sys;

use crate::allocdir::{self, Links};
use crate::taskenv::TaskEnv;
use api::TaskArtifact;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long one download (and its unpacking) may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The hidden first argument that makes the agent's binary run as the artifact sandbox.
pub const SANDBOX_ARG: &str = "__drover-artifact-sandbox";
/// The descriptor of the destination directory in the sandbox child.
const DEST_FD: i32 = 3;
/// Longest error text read back from the child.
const MAX_CHILD_STDERR: usize = 16 * 1024;

/// Set once the process's `main` has offered to run the sandbox ([`run_if_sandbox_child`]),
/// so `/proc/self/exe` understands [`SANDBOX_ARG`].
static SANDBOX_AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Caps on what one artifact may put on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes downloaded.
    pub max_download_bytes: u64,
    /// Bytes written by unpacking an archive (all files together).
    pub max_unpacked_bytes: u64,
    /// Entries in an archive (Nomad's `decompression_file_count_limit` default).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_download_bytes: 4 << 30,
            max_unpacked_bytes: 4 << 30,
            max_entries: 4096,
        }
    }
}

/// The archive formats unpacked in Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarBz2,
    TarXz,
    Zip,
}

/// What the agent asks the sandbox child to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRequest {
    pub url: String,
    /// The name of the file in the destination directory (for a file that is not
    /// unpacked).
    pub file_name: String,
    /// Unpack as this kind of archive instead of keeping the file.
    pub archive: Option<ArchiveKind>,
    pub limits: Limits,
    pub timeout_secs: u64,
}

/// The last path segment of a URL, without its query.
fn file_name_of(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "artifact".into())
}

/// The archive kind an artifact's name says, if it is one.
fn archive_kind(name: &str) -> Option<ArchiveKind> {
    let n = name.to_ascii_lowercase();
    let ends = |sfx: &[&str]| sfx.iter().any(|s| n.ends_with(s));
    if ends(&[".zip"]) {
        Some(ArchiveKind::Zip)
    } else if ends(&[".tar.gz", ".tgz"]) {
        Some(ArchiveKind::TarGz)
    } else if ends(&[".tar.bz2", ".tbz2"]) {
        Some(ArchiveKind::TarBz2)
    } else if ends(&[".tar.xz", ".txz"]) {
        Some(ArchiveKind::TarXz)
    } else if ends(&[".tar"]) {
        Some(ArchiveKind::Tar)
    } else {
        None
    }
}

/// Where an artifact goes: the directory (relative to the task dir) and the file name in
/// it for a file that is kept as is.
fn destination(
    art: &TaskArtifact,
    env: &TaskEnv,
    url_name: &str,
) -> Result<(PathBuf, String), String> {
    let raw = env.interpolate(art.relative_dest.trim());
    let raw = if raw.is_empty() {
        "local/".to_string()
    } else {
        raw
    };
    // Nomad reads the destination relative to the task directory even with a leading `/`.
    let rel =
        allocdir::relative("artifact destination", raw.trim_start_matches('/')).map_err(|e| e.0)?;
    if art.getter_mode.trim() == "file" {
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                format!("artifact destination {raw:?} must name a file in mode \"file\"")
            })?
            .to_string();
        Ok((rel.parent().unwrap_or(Path::new("")).to_path_buf(), name))
    } else {
        allocdir::check_name("artifact file name", url_name).map_err(|e| e.0)?;
        Ok((rel, url_name.to_string()))
    }
}

/// Opens (creating it) the artifact's destination `dir_rel` beneath the task directory
/// without following any link, and hands it to the sandbox's user; blocking.
fn open_destination(
    root: &Path,
    task: &str,
    user: &str,
    dir_rel: &Path,
) -> Result<(OwnedFd, Option<Identity>), String> {
    let who = sandbox_identity(user)?;
    allocdir::check_task_name(task).map_err(|e| e.0)?;
    let task_dir = allocdir::open_task_dir(root, task)
        .map_err(|e| format!("opening the task directory: {e}"))?;
    let dest = allocdir::mkdir_all(task_dir.as_fd(), dir_rel, Mode::from_raw_mode(0o755)).map_err(
        |e| {
            if allocdir::is_link_refusal(&e) {
                format!(
                    "artifact destination {:?} passes through a symbolic link in \
                         the task directory; the agent does not write through links",
                    dir_rel.display().to_string()
                )
            } else {
                format!(
                    "creating the artifact destination {}: {e}",
                    dir_rel.display()
                )
            }
        },
    )?;
    if let Some(id) = who {
        // The unprivileged sandbox writes here.
        rustix::fs::fchown(
            &dest,
            Some(rustix::fs::Uid::from_raw(id.uid)),
            Some(rustix::fs::Gid::from_raw(id.gid)),
        )
        .map_err(|e| sys("handing the destination to the sandbox user", e))?;
    }
    Ok((dest, who))
}

/// Fetches one artifact into the directory of `task` under `alloc_root`.
pub async fn fetch(
    art: &TaskArtifact,
    env: &TaskEnv,
    alloc_root: &Path,
    task: &str,
    task_user: &str,
    limits: &Limits,
) -> Result<(), String> {
    let source = env.interpolate(art.getter_source.trim());
    let url = reqwest::Url::parse(&source)
        .map_err(|e| format!("artifact source {source:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "artifact source {source:?}: only http and https are supported"
        ));
    }
    let url_name = file_name_of(&url);
    let (dir_rel, file_name) = destination(art, env, &url_name)?;
    let archive_off = art
        .getter_options
        .get("archive")
        .is_some_and(|v| v == "false");
    let archive = if art.getter_mode.trim() == "file" || archive_off {
        None
    } else {
        archive_kind(&url_name)
    };
    // The destination, resolved beneath the task dir without following any link.
    let (dest, who) = {
        let (root, task) = (alloc_root.to_path_buf(), task.to_string());
        let user = task_user.to_string();
        let dir_rel = dir_rel.clone();
        tokio::task::spawn_blocking(move || open_destination(&root, &task, &user, &dir_rel))
            .await
            .map_err(|e| format!("resolving the artifact destination: {e}"))??
    };
    let req = FetchRequest {
        url: url.to_string(),
        file_name,
        archive,
        limits: *limits,
        timeout_secs: DOWNLOAD_TIMEOUT.as_secs(),
    };
    run_sandbox(&req, dest, who)
        .await
        .map_err(|e| format!("artifact {source}: {e}"))
}

/// Fetches every artifact of a task, in order; the first failure stops.
pub async fn fetch_all(
    artifacts: &[TaskArtifact],
    env: &TaskEnv,
    alloc_root: &Path,
    task: &str,
    task_user: &str,
) -> Result<(), String> {
    let limits = Limits::default();
    for art in artifacts {
        fetch(art, env, alloc_root, task, task_user, &limits).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
