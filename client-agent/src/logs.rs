//! Task logs: rotation per the task's `logs` block, and reading them back for
//! `/v1/client/fs/logs` (from an offset, or following new bytes as they are written).
//!
//! Every driver appends a task's output to `alloc/logs/<task>.stdout.0` (and `.stderr.0`)
//! through a file descriptor the task (or the docker log pump) holds. Those descriptors
//! must survive an agent crash, so the agent never sits between the task and its file;
//! instead one in-process rotator per task (no helper process per task, unlike Nomad's
//! logmon) polls the file's size and, past `max_file_size`, rotates it logrotate-style:
//! `.N-1` is dropped, `.k` becomes `.k+1`, the live file is copied to `.1` and truncated
//! (writers append, so they carry on at the start). So `.0` is always the newest file and
//! the log as a whole is `.N-1`, ..., `.1`, `.0` in that order. Bytes written between the
//! last copy and the truncation (microseconds) are lost, as with logrotate's copytruncate.

use crate::allocdir::{self, Links};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the rotator looks at a task's log sizes.
pub const ROTATE_POLL: Duration = Duration::from_millis(500);
/// How often a follower looks for new bytes.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Largest frame sent to a reader.
pub const FRAME_BYTES: usize = 64 * 1024;

/// The `logs` block as the rotator applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Files kept, the live one included (at least 1).
    pub max_files: usize,
    /// Size at which the live file is rotated.
    pub max_bytes: u64,
}

impl Rotation {
    pub fn from_config(cfg: Option<&api::LogConfig>) -> Rotation {
        let d = api::LogConfig::default();
        let cfg = cfg.unwrap_or(&d);
        let files = if cfg.max_files > 0 {
            cfg.max_files
        } else {
            d.max_files
        };
        let mb = if cfg.max_file_size_mb > 0 {
            cfg.max_file_size_mb
        } else {
            d.max_file_size_mb
        };
        Rotation {
            max_files: files.max(1) as usize,
            max_bytes: (mb as u64) * 1024 * 1024,
        }
    }
}

/// `<task>.<kind>.<index>`, the name of one log file; the task name is checked
/// ([`allocdir::check_task_name`]) so that it cannot name a file outside the logs dir.
pub fn log_name(task: &str, kind: &str, index: usize) -> io::Result<String> {
    allocdir::check_task_name(task)?;
    if !matches!(kind, "stdout" | "stderr") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("log type must be stdout or stderr, got {kind:?}"),
        ));
    }
    Ok(format!("{task}.{kind}.{index}"))
}

/// An allocation's `alloc/logs` directory, opened without following a symlink anywhere
/// below the alloc root; every log file is opened relative to it with `O_NOFOLLOW`.
#[derive(Debug)]
pub struct LogsDir {
    fd: OwnedFd,
}

fn os(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// What a task did to its logs that the agent refuses to follow.
fn refused(name: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("log file {name} {what}; the agent does not follow it"),
    )
}

impl LogsDir {
    /// Opens `<alloc_root>/alloc/logs`.
    pub fn open(alloc_root: &Path) -> io::Result<LogsDir> {
        let root = allocdir::open_dir(alloc_root)?;
        let fd = allocdir::open_beneath(
            root.as_fd(),
            Path::new("alloc/logs"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
            Links::Never,
        )
        .map_err(|e| {
            if allocdir::is_link_refusal(&e) {
                refused("directory alloc/logs", "is a symbolic link")
            } else {
                e
            }
        })?;
        Ok(LogsDir { fd })
    }

    /// The entry's size if it is a regular file; `None` if it does not exist.
    fn regular_len(&self, name: &str) -> io::Result<Option<u64>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                Ok(Some(st.st_size as u64))
            }
            Ok(_) => Err(refused(name, "is not a regular file")),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(os(e)),
        }
    }

    fn identity(&self, name: &str) -> Option<(u64, u64)> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| (st.st_dev, st.st_ino))
    }

    /// Opens a log file that must be a regular file, never through a symlink (and never
    /// blocking on a FIFO a task planted).
    fn open_file(&self, name: &str, flags: OFlags, mode: Mode) -> io::Result<File> {
        let fd = allocdir::open_beneath(
            self.fd.as_fd(),
            Path::new(name),
            flags | OFlags::NONBLOCK,
            mode,
            Links::Never,
        )
        .map_err(|e| {
            if allocdir::is_link_refusal(&e) {
                refused(name, "is a symbolic link")
            } else {
                e
            }
        })?;
        let st = rustix::fs::fstat(&fd).map_err(os)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(refused(name, "is not a regular file"));
        }
        Ok(File::from(fd))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(os)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(os(e)),
        }
    }

    /// Names of the directory's entries.
    fn names(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in rustix::fs::Dir::read_from(&self.fd).map_err(os)? {
            let e = e.map_err(os)?;
            if let Ok(n) = e.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
}

/// Copies the open `src` (from its current position) to a new file `to`; returns the
/// bytes copied.
fn copy_all(src: &mut File, logs: &LogsDir, to: &str) -> io::Result<u64> {
    logs.remove(to)?;
    let mut dst = logs.open_file(
        to,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(0o644),
    )?;
    let mut copied = io::copy(src, &mut dst)?;
    // Catch what was appended while copying, so the loss window is as short as it gets.
    loop {
        let n = io::copy(src, &mut dst)?;
        if n == 0 {
            break;
        }
        copied += n;
    }
    Ok(copied)
}

/// Rotates `<task>.<kind>.0` if it reached `rot.max_bytes`; true if it did. Every file
/// is reached through the logs directory without following links: a task that replaced
/// a log file with a symlink to a host file gets an error, not a copy or a truncation
/// of the host file.
pub fn rotate_if_needed(logs: &LogsDir, task: &str, kind: &str, rot: Rotation) -> io::Result<bool> {
    let live = log_name(task, kind, 0)?;
    let size = match logs.regular_len(&live)? {
        Some(len) => len,
        None => return Ok(false),
    };
    if size < rot.max_bytes {
        return Ok(false);
    }
    let mut src = logs.open_file(&live, OFlags::RDWR, Mode::empty())?;
    if rot.max_files > 1 {
        logs.remove(&log_name(task, kind, rot.max_files - 1)?)?;
        for k in (1..rot.max_files - 1).rev() {
            let from = log_name(task, kind, k)?;
            if logs.identity(&from).is_some() {
                logs.rename(&from, &log_name(task, kind, k + 1)?)?;
            }
        }
        copy_all(&mut src, logs, &log_name(task, kind, 1)?)?;
    }
    src.set_len(0)?;
    Ok(true)
}

/// Rotates a task's stdout and stderr files until `cancel` fires.
pub async fn rotate_loop(
    alloc_root: PathBuf,
    task: String,
    rot: Rotation,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(ROTATE_POLL) => {}
        }
        for kind in ["stdout", "stderr"] {
            let (root, t) = (alloc_root.clone(), task.clone());
            let res = tokio::task::spawn_blocking(move || {
                rotate_if_needed(&LogsDir::open(&root)?, &t, kind, rot)
            })
            .await;
            match res {
                Ok(Ok(true)) => tracing::debug!(task = %task, kind, "rotated log file"),
                Ok(Ok(false)) => {}
                // Not built yet (or already destroyed).
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
                Ok(Err(e)) => {
                    tracing::warn!(task = %task, kind, error = %e, "cannot rotate log file")
                }
                Err(e) => tracing::warn!(task = %task, error = %e, "log rotation panicked"),
            }
        }
    }
}

/// The log files of one stream, oldest first, with their sizes (regular files only).
pub fn files_oldest_first(
    logs: &LogsDir,
    task: &str,
    kind: &str,
) -> io::Result<Vec<(String, u64)>> {
    let prefix = log_name(task, kind, 0)?;
    let prefix = prefix.trim_end_matches('0');
    let mut found: Vec<(usize, String, u64)> = Vec::new();
    for name in logs.names()? {
        let Some(idx) = name
            .strip_prefix(prefix)
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        if let Ok(Some(len)) = logs.regular_len(&name) {
            found.push((idx, name, len));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found.into_iter().map(|(_, n, l)| (n, l)).collect())
}

/// One piece of a log, as Nomad's `StreamFrame`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// File name (e.g. `web.stdout.0`).
    pub file: String,
    /// Offset within `file` after this frame's data.
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Where a reader is: a position in the live file, plus the identity of `.1` so that a
/// rotation (which always makes a new `.1`) is noticed even if `.0` grew past the
/// position again since.
#[derive(Debug)]
pub struct Cursor {
    alloc_root: PathBuf,
    task: String,
    kind: String,
    /// Offset in `.0`.
    pos: u64,
    rotated_marker: Option<(u64, u64)>,
}

fn read_range(logs: &LogsDir, name: &str, from: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut f = logs.open_file(name, OFlags::RDONLY, Mode::empty())?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(max.min(FRAME_BYTES));
    f.take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Where to start reading: `origin` is `start` or `end`, `offset` counts bytes from it
/// over the whole log (all files, oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Start,
    End,
}

/// Reads what is in the log now, from `origin`/`offset`, as frames; returns them with a
/// cursor at the end of the live file for following.
pub fn read_existing(
    alloc_root: &Path,
    task: &str,
    kind: &str,
    origin: Origin,
    offset: u64,
) -> io::Result<(Vec<Frame>, Cursor)> {
    let logs = LogsDir::open(alloc_root)?;
    let rotated_marker = logs.identity(&log_name(task, kind, 1)?);
    let files = files_oldest_first(&logs, task, kind)?;
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    let mut skip = match origin {
        Origin::Start => offset.min(total),
        Origin::End => total.saturating_sub(offset),
    };
    let mut frames = Vec::new();
    let mut live_end = 0;
    for (i, (path, len)) in files.iter().enumerate() {
        let is_live = i + 1 == files.len() && path.ends_with(".0");
        if skip >= *len {
            skip -= len;
            if is_live {
                live_end = *len;
            }
            continue;
        }
        let mut pos = skip;
        skip = 0;
        while pos < *len {
            let want = ((*len - pos) as usize).min(FRAME_BYTES);
            let data = read_range(&logs, path, pos, want)?;
            if data.is_empty() {
                break;
            }
            pos += data.len() as u64;
            frames.push(Frame {
                file: path.clone(),
                offset: pos,
                data,
            });
        }
        if is_live {
            live_end = pos;
        }
    }
    Ok((
        frames,
        Cursor {
            alloc_root: alloc_root.to_path_buf(),
            task: task.to_string(),
            kind: kind.to_string(),
            pos: live_end,
            rotated_marker,
        },
    ))
}

impl Cursor {
    /// The bytes written since the last call, as frames; empty when there are none. A
    /// rotation in between is followed: the rest of the rotated file first, then the new
    /// live file from its start.
    pub fn poll(&mut self) -> io::Result<Vec<Frame>> {
        let logs = LogsDir::open(&self.alloc_root)?;
        let live = log_name(&self.task, &self.kind, 0)?;
        let rotated = log_name(&self.task, &self.kind, 1)?;
        let mut frames = Vec::new();
        let marker = logs.identity(&rotated);
        let live_len = logs.regular_len(&live)?.unwrap_or(0);
        if marker != self.rotated_marker || live_len < self.pos {
            // `.1` is the old live file, byte for byte: finish it from where we were.
            if marker.is_some() {
                let len = logs.regular_len(&rotated)?.unwrap_or(0);
                let mut pos = self.pos;
                while pos < len {
                    let data = read_range(&logs, &rotated, pos, FRAME_BYTES)?;
                    if data.is_empty() {
                        break;
                    }
                    pos += data.len() as u64;
                    frames.push(Frame {
                        file: rotated.clone(),
                        offset: pos,
                        data,
                    });
                }
            }
            self.rotated_marker = marker;
            self.pos = 0;
        }
        while self.pos < live_len {
            let data = read_range(&logs, &live, self.pos, FRAME_BYTES)?;
            if data.is_empty() {
                break;
            }
            self.pos += data.len() as u64;
            frames.push(Frame {
                file: live.clone(),
                offset: self.pos,
                data,
            });
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    /// An alloc root with its `alloc/logs` directory.
    fn alloc_root() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("alloc/logs");
        fs::create_dir_all(&logs).unwrap();
        (tmp, logs)
    }

    fn lp(logs: &Path, task: &str, kind: &str, i: usize) -> PathBuf {
        logs.join(log_name(task, kind, i).unwrap())
    }

    fn append(path: &Path, data: &[u8]) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(data).unwrap();
    }

    fn all(frames: &[Frame]) -> String {
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .collect()
    }

    #[test]
    fn rotation_keeps_max_files_newest_in_dot_zero() {
        let (tmp, logs) = alloc_root();
        let dir = LogsDir::open(tmp.path()).unwrap();
        let rot = Rotation {
            max_files: 3,
            max_bytes: 10,
        };
        let live = lp(&logs, "t", "stdout", 0);
        // The writer keeps its descriptor across rotations, as a task does.
        let mut w = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&live)
            .unwrap();
        for chunk in ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"] {
            w.write_all(chunk.as_bytes()).unwrap();
            assert!(rotate_if_needed(&dir, "t", "stdout", rot).unwrap());
        }
        w.write_all(b"eee").unwrap();
        let files = files_oldest_first(&dir, "t", "stdout").unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["t.stdout.2", "t.stdout.1", "t.stdout.0"]);
        let (frames, _) = read_existing(tmp.path(), "t", "stdout", Origin::Start, 0).unwrap();
        assert_eq!(all(&frames), "ccccccccccddddddddddeee");
        assert!(!rotate_if_needed(&dir, "t", "stdout", rot).unwrap());
    }

    #[test]
    fn reading_from_the_end_spans_files() {
        let (tmp, logs) = alloc_root();
        append(&lp(&logs, "t", "stderr", 1), b"12345");
        append(&lp(&logs, "t", "stderr", 0), b"678");
        let (frames, _) = read_existing(tmp.path(), "t", "stderr", Origin::End, 5).unwrap();
        assert_eq!(all(&frames), "45678");
        assert_eq!(frames.last().unwrap().file, "t.stderr.0");
        assert_eq!(frames.last().unwrap().offset, 3);
        let (frames, _) = read_existing(tmp.path(), "t", "stderr", Origin::Start, 7).unwrap();
        assert_eq!(all(&frames), "8");
    }

    #[test]
    fn a_follower_sees_new_bytes_across_a_rotation() {
        let (tmp, logs) = alloc_root();
        let dir = LogsDir::open(tmp.path()).unwrap();
        let rot = Rotation {
            max_files: 2,
            max_bytes: 8,
        };
        let live = lp(&logs, "t", "stdout", 0);
        append(&live, b"one\n");
        let (frames, mut cur) = read_existing(tmp.path(), "t", "stdout", Origin::Start, 0).unwrap();
        assert_eq!(all(&frames), "one\n");
        assert!(cur.poll().unwrap().is_empty());
        append(&live, b"two\n");
        assert_eq!(all(&cur.poll().unwrap()), "two\n");
        append(&live, b"three\n");
        assert!(rotate_if_needed(&dir, "t", "stdout", rot).unwrap());
        // More than the old position is written again before the follower looks.
        append(&live, b"four-four-four\n");
        assert_eq!(all(&cur.poll().unwrap()), "three\nfour-four-four\n");
    }

    #[test]
    fn a_log_file_replaced_by_a_symlink_is_neither_read_nor_rotated_through() {
        let (tmp, logs) = alloc_root();
        let host = tmp.path().join("host-shadow");
        fs::write(&host, "root:secret-hash:").unwrap();
        std::os::unix::fs::symlink(&host, lp(&logs, "t", "stdout", 0)).unwrap();
        let err = read_existing(tmp.path(), "t", "stdout", Origin::Start, 0)
            .map(|(f, _)| all(&f))
            .unwrap_or_default();
        assert!(!err.contains("secret"), "the host file was read: {err}");
        let dir = LogsDir::open(tmp.path()).unwrap();
        let rot = Rotation {
            max_files: 2,
            max_bytes: 1,
        };
        let e = rotate_if_needed(&dir, "t", "stdout", rot).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // Neither copied nor truncated.
        assert_eq!(fs::read_to_string(&host).unwrap(), "root:secret-hash:");
        assert!(!lp(&logs, "t", "stdout", 1).exists());
        // A `.1` that is a link is not followed either: it is replaced, not written through.
        fs::remove_file(lp(&logs, "t", "stdout", 0)).unwrap();
        append(&lp(&logs, "t", "stdout", 0), b"fresh-bytes");
        std::os::unix::fs::symlink(&host, lp(&logs, "t", "stdout", 1)).unwrap();
        let rot = Rotation {
            max_files: 3,
            max_bytes: 1,
        };
        assert!(rotate_if_needed(&dir, "t", "stdout", rot).unwrap());
        assert_eq!(fs::read_to_string(&host).unwrap(), "root:secret-hash:");
        assert_eq!(
            fs::read_to_string(lp(&logs, "t", "stdout", 1)).unwrap(),
            "fresh-bytes"
        );
    }

    #[test]
    fn a_logs_directory_replaced_by_a_symlink_is_refused() {
        let (tmp, logs) = alloc_root();
        let host = tmp.path().join("host");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("t.stdout.0"), "host bytes").unwrap();
        fs::remove_dir(&logs).unwrap();
        std::os::unix::fs::symlink(&host, &logs).unwrap();
        let e = read_existing(tmp.path(), "t", "stdout", Origin::Start, 0).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn task_names_that_leave_the_logs_dir_are_refused() {
        let (tmp, _logs) = alloc_root();
        for t in ["../../x", "/etc/x", "a/b"] {
            let e = read_existing(tmp.path(), t, "stdout", Origin::Start, 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{t}: {e}");
        }
    }
}
