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

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
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

/// `<logs dir>/<task>.<kind>.<index>`
pub fn log_path(logs_dir: &Path, task: &str, kind: &str, index: usize) -> PathBuf {
    logs_dir.join(format!("{task}.{kind}.{index}"))
}

/// Copies `from` to a new file `to`; returns the bytes copied.
fn copy_all(from: &Path, to: &Path) -> io::Result<u64> {
    let mut src = File::open(from)?;
    let mut dst = File::create(to)?;
    let mut copied = io::copy(&mut src, &mut dst)?;
    // Catch what was appended while copying, so the loss window is as short as it gets.
    loop {
        let n = io::copy(&mut src, &mut dst)?;
        if n == 0 {
            break;
        }
        copied += n;
    }
    Ok(copied)
}

/// Rotates `<task>.<kind>.0` if it reached `rot.max_bytes`; true if it did.
pub fn rotate_if_needed(
    logs_dir: &Path,
    task: &str,
    kind: &str,
    rot: Rotation,
) -> io::Result<bool> {
    let live = log_path(logs_dir, task, kind, 0);
    let size = match fs::metadata(&live) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size < rot.max_bytes {
        return Ok(false);
    }
    if rot.max_files > 1 {
        let oldest = log_path(logs_dir, task, kind, rot.max_files - 1);
        match fs::remove_file(&oldest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for k in (1..rot.max_files - 1).rev() {
            let from = log_path(logs_dir, task, kind, k);
            if from.exists() {
                fs::rename(&from, log_path(logs_dir, task, kind, k + 1))?;
            }
        }
        copy_all(&live, &log_path(logs_dir, task, kind, 1))?;
    }
    fs::OpenOptions::new().write(true).open(&live)?.set_len(0)?;
    Ok(true)
}

/// Rotates a task's stdout and stderr files until `cancel` fires.
pub async fn rotate_loop(
    logs_dir: PathBuf,
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
            let (dir, t) = (logs_dir.clone(), task.clone());
            let res =
                tokio::task::spawn_blocking(move || rotate_if_needed(&dir, &t, kind, rot)).await;
            match res {
                Ok(Ok(true)) => tracing::debug!(task = %task, kind, "rotated log file"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(task = %task, kind, error = %e, "cannot rotate log file")
                }
                Err(e) => tracing::warn!(task = %task, error = %e, "log rotation panicked"),
            }
        }
    }
}

/// The log files of one stream, oldest first, with their sizes.
pub fn files_oldest_first(logs_dir: &Path, task: &str, kind: &str) -> Vec<(PathBuf, u64)> {
    let prefix = format!("{task}.{kind}.");
    let mut found: Vec<(usize, PathBuf, u64)> = fs::read_dir(logs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let idx: usize = name.strip_prefix(&prefix)?.parse().ok()?;
            let len = e.metadata().ok()?.len();
            Some((idx, e.path(), len))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p, l)| (p, l)).collect()
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
    logs_dir: PathBuf,
    task: String,
    kind: String,
    /// Offset in `.0`.
    pos: u64,
    rotated_marker: Option<(u64, u64)>,
}

fn identity(p: &Path) -> Option<(u64, u64)> {
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

fn read_range(path: &Path, from: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(max.min(FRAME_BYTES));
    f.take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
    logs_dir: &Path,
    task: &str,
    kind: &str,
    origin: Origin,
    offset: u64,
) -> io::Result<(Vec<Frame>, Cursor)> {
    let rotated_marker = identity(&log_path(logs_dir, task, kind, 1));
    let files = files_oldest_first(logs_dir, task, kind);
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    let mut skip = match origin {
        Origin::Start => offset.min(total),
        Origin::End => total.saturating_sub(offset),
    };
    let mut frames = Vec::new();
    let mut live_end = 0;
    for (i, (path, len)) in files.iter().enumerate() {
        let is_live = i + 1 == files.len() && file_name(path).ends_with(".0");
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
            let data = read_range(path, pos, want)?;
            if data.is_empty() {
                break;
            }
            pos += data.len() as u64;
            frames.push(Frame {
                file: file_name(path),
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
            logs_dir: logs_dir.to_path_buf(),
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
        let live = log_path(&self.logs_dir, &self.task, &self.kind, 0);
        let rotated = log_path(&self.logs_dir, &self.task, &self.kind, 1);
        let mut frames = Vec::new();
        let marker = identity(&rotated);
        let live_len = fs::metadata(&live).map(|m| m.len()).unwrap_or(0);
        if marker != self.rotated_marker || live_len < self.pos {
            // `.1` is the old live file, byte for byte: finish it from where we were.
            if marker.is_some() {
                let len = fs::metadata(&rotated).map(|m| m.len()).unwrap_or(0);
                let mut pos = self.pos;
                while pos < len {
                    let data = read_range(&rotated, pos, FRAME_BYTES)?;
                    if data.is_empty() {
                        break;
                    }
                    pos += data.len() as u64;
                    frames.push(Frame {
                        file: file_name(&rotated),
                        offset: pos,
                        data,
                    });
                }
            }
            self.rotated_marker = marker;
            self.pos = 0;
        }
        while self.pos < live_len {
            let data = read_range(&live, self.pos, FRAME_BYTES)?;
            if data.is_empty() {
                break;
            }
            self.pos += data.len() as u64;
            frames.push(Frame {
                file: file_name(&live),
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
    use std::io::Write;

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
        let tmp = tempfile::tempdir().unwrap();
        let rot = Rotation {
            max_files: 3,
            max_bytes: 10,
        };
        let live = log_path(tmp.path(), "t", "stdout", 0);
        // The writer keeps its descriptor across rotations, as a task does.
        let mut w = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&live)
            .unwrap();
        for chunk in ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"] {
            w.write_all(chunk.as_bytes()).unwrap();
            assert!(rotate_if_needed(tmp.path(), "t", "stdout", rot).unwrap());
        }
        w.write_all(b"eee").unwrap();
        let files = files_oldest_first(tmp.path(), "t", "stdout");
        let names: Vec<String> = files.iter().map(|(p, _)| file_name(p)).collect();
        assert_eq!(names, ["t.stdout.2", "t.stdout.1", "t.stdout.0"]);
        let (frames, _) = read_existing(tmp.path(), "t", "stdout", Origin::Start, 0).unwrap();
        assert_eq!(all(&frames), "ccccccccccddddddddddeee");
        assert!(!rotate_if_needed(tmp.path(), "t", "stdout", rot).unwrap());
    }

    #[test]
    fn reading_from_the_end_spans_files() {
        let tmp = tempfile::tempdir().unwrap();
        append(&log_path(tmp.path(), "t", "stderr", 1), b"12345");
        append(&log_path(tmp.path(), "t", "stderr", 0), b"678");
        let (frames, _) = read_existing(tmp.path(), "t", "stderr", Origin::End, 5).unwrap();
        assert_eq!(all(&frames), "45678");
        assert_eq!(frames.last().unwrap().file, "t.stderr.0");
        assert_eq!(frames.last().unwrap().offset, 3);
        let (frames, _) = read_existing(tmp.path(), "t", "stderr", Origin::Start, 7).unwrap();
        assert_eq!(all(&frames), "8");
    }

    #[test]
    fn a_follower_sees_new_bytes_across_a_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let rot = Rotation {
            max_files: 2,
            max_bytes: 8,
        };
        let live = log_path(tmp.path(), "t", "stdout", 0);
        append(&live, b"one\n");
        let (frames, mut cur) = read_existing(tmp.path(), "t", "stdout", Origin::Start, 0).unwrap();
        assert_eq!(all(&frames), "one\n");
        assert!(cur.poll().unwrap().is_empty());
        append(&live, b"two\n");
        assert_eq!(all(&cur.poll().unwrap()), "two\n");
        append(&live, b"three\n");
        assert!(rotate_if_needed(tmp.path(), "t", "stdout", rot).unwrap());
        // More than the old position is written again before the follower looks.
        append(&live, b"four-four-four\n");
        assert_eq!(all(&cur.poll().unwrap()), "three\nfour-four-four\n");
    }
}
