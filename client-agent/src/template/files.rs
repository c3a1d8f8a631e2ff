//! Where a template's file goes and where its `source` comes from, confined to the task:
//! paths are checked with [`allocdir::relative`], opened relative to the alloc root with
//! [`allocdir::open_beneath`]/[`allocdir::mkdir_all`] (no symlink followed), and a file
//! is replaced atomically: written to a new temporary file beside it, then renamed over.

use crate::allocdir::{self, Links, TaskDirs};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The longest `source` file read.
const MAX_SOURCE: u64 = 1024 * 1024;

/// `p` (a destination or source, after `${...}` interpolation) as a path below the
/// alloc root: `<task>/<p>`, or `alloc/<rest>` for the group's shared directory.
/// Absolute paths are accepted only when they name the task's own directories (as
/// `${NOMAD_TASK_DIR}`, `${NOMAD_SECRETS_DIR}` and `${NOMAD_ALLOC_DIR}` expand).
pub fn below_root(what: &str, p: &str, task: &str, dirs: &TaskDirs) -> Result<PathBuf, String> {
    let strip = |base: &Path| -> Option<String> {
        let base = base.to_str()?;
        let rest = p.strip_prefix(base)?;
        (rest.is_empty() || rest.starts_with('/')).then(|| rest.trim_start_matches('/').to_string())
    };
    let rel = if let Some(rest) = strip(&dirs.shared) {
        format!("alloc/{rest}")
    } else if let Some(rest) = strip(&dirs.dir) {
        rest
    } else if let Some(rest) = ["/alloc", "/local", "/secrets", "/tmp"]
        .iter()
        .find(|d| p == **d || p.starts_with(&format!("{d}/")))
        .map(|_| p.trim_start_matches('/').to_string())
    {
        // The paths a chrooted task sees (`NOMAD_TASK_DIR=/local`).
        rest
    } else {
        p.to_string()
    };
    let rel = allocdir::relative(&format!("template {what}"), &rel).map_err(|e| e.0)?;
    let mut parts = rel.components();
    let first = parts.next().map(|c| c.as_os_str().to_owned());
    match first {
        None => Err(format!(
            "template {what} {p:?} names the task directory itself, not a file"
        )),
        Some(f) if f == "alloc" => Ok(Path::new("alloc").join(parts.as_path())),
        Some(_) => Ok(Path::new(task).join(rel)),
    }
}

/// Reads a template's `source` (below the alloc root, inside the task's own directory),
/// following symlinks only while they stay inside it.
pub fn read_source(root: &Path, task: &str, rel_below_root: &Path) -> Result<String, String> {
    let io =
        |e: std::io::Error| format!("reading template source {}: {e}", rel_below_root.display());
    let inside = rel_below_root.strip_prefix(task).map_err(|_| {
        format!(
            "template source {} is not inside the task directory",
            rel_below_root.display()
        )
    })?;
    let task_dir = allocdir::open_task_dir(root, task).map_err(io)?;
    let fd = allocdir::open_beneath(
        task_dir.as_fd(),
        inside,
        OFlags::RDONLY | OFlags::NONBLOCK,
        Mode::empty(),
        Links::Beneath,
    )
    .map_err(io)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(format!(
            "template source {} is not a regular file",
            rel_below_root.display()
        ));
    }
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_SOURCE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_SOURCE {
        return Err(format!(
            "template source {} is larger than {} KiB",
            rel_below_root.display(),
            MAX_SOURCE / 1024
        ));
    }
    Ok(text)
}

/// What a destination holds now (read without following a symlink).
pub fn read_written(root: &Path, rel_below_root: &Path) -> std::io::Result<String> {
    let root = allocdir::open_dir(root)?;
    let fd = allocdir::open_beneath(
        root.as_fd(),
        rel_below_root,
        OFlags::RDONLY | OFlags::NONBLOCK,
        Mode::empty(),
        Links::Never,
    )?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(super::exec::MAX_OUTPUT as u64)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Replaces `rel_below_root` below the alloc root with `bytes` and `mode`, atomically,
/// without following any symlink: the parents are created or opened with `O_NOFOLLOW`,
/// and a symlink (or anything but a regular file) at the destination is refused.
pub fn write_atomic(
    root: &Path,
    rel_below_root: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), String> {
    let shown = rel_below_root.display();
    let io = |e: std::io::Error| {
        if allocdir::is_link_refusal(&e) {
            format!("writing template destination {shown}: a symbolic link is in the way; refusing to follow it")
        } else {
            format!("writing template destination {shown}: {e}")
        }
    };
    let name = rel_below_root
        .file_name()
        .ok_or_else(|| format!("template destination {shown} has no file name"))?;
    let parent = rel_below_root.parent().unwrap_or(Path::new(""));
    let root_fd = allocdir::open_dir(root).map_err(io)?;
    let dir =
        allocdir::mkdir_all(root_fd.as_fd(), parent, Mode::from_raw_mode(0o755)).map_err(io)?;
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Symlink {
                return Err(format!(
                    "template destination {shown} is a symbolic link; refusing to write through \
                     or replace it"
                ));
            }
            if kind != FileType::RegularFile {
                return Err(format!(
                    "template destination {shown} exists and is not a regular file"
                ));
            }
        }
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(io(e.into())),
    }
    let tmp = format!(
        ".{}.drover-{}.tmp",
        name.to_string_lossy(),
        std::process::id() as u64 * 1_000_003 + crate::events::now_nanos() as u64 % 1_000_003
    );
    let fd = rustix::fs::openat(
        &dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| io(e.into()))?;
    let cleanup = |e: String| {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        e
    };
    // The umask may have taken bits away; perms says what the file gets.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| cleanup(io(e.into())))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| cleanup(io(e)))?;
    rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(|e| cleanup(io(e.into())))?;
    Ok(())
}

/// Parses `KEY=VALUE` lines (`env = true`): blank lines and `#` comments are skipped,
/// `export ` is allowed, values may be quoted.
pub fn parse_env(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=VALUE: {line:?}", i + 1));
        };
        let k = k.trim();
        if k.is_empty()
            || k.starts_with(|c: char| c.is_ascii_digit())
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(format!(
                "line {}: {k:?} is not a valid variable name",
                i + 1
            ));
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}
