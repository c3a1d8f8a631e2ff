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

/// Called first thing in the binary's `main`: runs the artifact sandbox and returns its
/// exit code when this process was started as one, and otherwise records that this
/// binary can serve as the sandbox and returns `None`.
pub fn run_if_sandbox_child() -> Option<i32> {
    if std::env::args_os().nth(1).is_some_and(|a| a == SANDBOX_ARG) {
        return Some(sandbox_main());
    }
    SANDBOX_AVAILABLE.store(true, Ordering::SeqCst);
    None
}

/// The sandbox child: a JSON [`FetchRequest`] on stdin, the destination directory on fd 3,
/// a sentence on stderr when it fails.
fn sandbox_main() -> i32 {
    let res = (|| -> Result<(), String> {
        // Already set by the parent before exec; set again in case of a manual run.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let mut input = String::new();
        io::stdin()
            .take(1 << 20)
            .read_to_string(&mut input)
            .map_err(|e| format!("reading the artifact request: {e}"))?;
        let req: FetchRequest =
            serde_json::from_str(&input).map_err(|e| format!("bad artifact request: {e}"))?;
        // SAFETY: the parent placed the destination directory on fd 3 for us alone.
        let dest = unsafe { OwnedFd::from_raw_fd(DEST_FD) };
        let st = rustix::fs::fstat(&dest).map_err(|e| format!("destination descriptor: {e}"))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err("the destination descriptor is not a directory".into());
        }
        run_request(&req, dest.as_fd())
    })();
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Downloads `req.url` into `dest` and unpacks it if asked; what the sandbox child runs.
pub fn run_request(req: &FetchRequest, dest: BorrowedFd<'_>) -> Result<(), String> {
    allocdir::check_name("artifact file name", &req.file_name).map_err(|e| e.0)?;
    let tmp_name = format!(".drover-download-{}", std::process::id());
    let _ = rustix::fs::unlinkat(dest, tmp_name.as_str(), AtFlags::empty());
    let fd = rustix::fs::openat(
        dest,
        tmp_name.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| format!("creating the download file in the destination: {e}"))?;
    let mut file = File::from(fd);
    if req.archive.is_some() {
        // An archive is read from the open descriptor; its name is not needed, and
        // without one nothing is left behind if this process is killed.
        let _ = rustix::fs::unlinkat(dest, tmp_name.as_str(), AtFlags::empty());
    }
    let downloaded = download(req, &mut file);
    if downloaded.is_err() && req.archive.is_none() {
        let _ = rustix::fs::unlinkat(dest, tmp_name.as_str(), AtFlags::empty());
    }
    downloaded?;
    match req.archive {
        Some(kind) => {
            file.rewind()
                .map_err(|e| format!("rewinding the downloaded archive: {e}"))?;
            unpack(kind, file, dest, &req.limits)
        }
        None => {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(0o644))
                .map_err(|e| format!("setting the artifact's mode: {e}"))?;
            drop(file);
            rustix::fs::renameat(dest, tmp_name.as_str(), dest, req.file_name.as_str()).map_err(
                |e| {
                    let _ = rustix::fs::unlinkat(dest, tmp_name.as_str(), AtFlags::empty());
                    format!("moving the download to {:?}: {e}", req.file_name)
                },
            )
        }
    }
}

/// GETs the URL into `out`, at most `max_download_bytes`.
fn download(req: &FetchRequest, out: &mut File) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the download runtime: {e}"))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(req.timeout_secs.max(1)))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let mut resp = client
            .get(&req.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", req.url))?;
        if !resp.status().is_success() {
            return Err(format!(
                "GET {}: bad response code: {}",
                req.url,
                resp.status()
            ));
        }
        let mut total: u64 = 0;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {}: {e}", req.url))?
        {
            total += chunk.len() as u64;
            if total > req.limits.max_download_bytes {
                return Err(format!(
                    "GET {}: the download is larger than the limit of {} bytes",
                    req.url, req.limits.max_download_bytes
                ));
            }
            out.write_all(&chunk)
                .map_err(|e| format!("writing the download: {e}"))?;
        }
        out.flush()
            .map_err(|e| format!("writing the download: {e}"))
    })
}

/// Unpacks an archive read from `file` into `dest`.
pub fn unpack(
    kind: ArchiveKind,
    file: File,
    dest: BorrowedFd<'_>,
    limits: &Limits,
) -> Result<(), String> {
    let mut u = Unpacker::new(dest, limits);
    let buffered = io::BufReader::new(file);
    match kind {
        ArchiveKind::Tar => u.tar(buffered),
        ArchiveKind::TarGz => u.tar(flate2::read::MultiGzDecoder::new(buffered)),
        ArchiveKind::TarBz2 => u.tar(bzip2::read::MultiBzDecoder::new(buffered)),
        ArchiveKind::TarXz => u.tar(xz2::read::XzDecoder::new_multi_decoder(buffered)),
        ArchiveKind::Zip => u.zip(buffered.into_inner()),
    }
}

/// What an archive entry is.
enum EntryKind<'a> {
    Dir,
    File,
    Symlink(&'a str),
    HardLink(&'a str),
}

/// Writes archive entries below one directory descriptor.
struct Unpacker<'a> {
    dest: BorrowedFd<'a>,
    limits: Limits,
    entries: u64,
    bytes: u64,
}

fn sys(what: &str, e: Errno) -> String {
    format!("{what}: {}", io::Error::from_raw_os_error(e.raw_os_error()))
}

/// Whether symlink `target`, placed in directory `parent` (relative to the destination),
/// stays inside the destination (lexically; the unpacker itself never follows links).
fn link_stays_inside(parent: &Path, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth = parent.components().count() as i64;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

impl<'a> Unpacker<'a> {
    fn new(dest: BorrowedFd<'a>, limits: &Limits) -> Self {
        Unpacker {
            dest,
            limits: *limits,
            entries: 0,
            bytes: 0,
        }
    }

    fn tar(&mut self, r: impl Read) -> Result<(), String> {
        let mut ar = tar::Archive::new(r);
        let entries = ar
            .entries()
            .map_err(|e| format!("reading the archive: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("reading the archive: {e}"))?;
            let path = entry.path_bytes().into_owned();
            let name = String::from_utf8(path)
                .map_err(|_| "archive entry has a name that is not UTF-8; refused".to_string())?;
            let mode = entry.header().mode().unwrap_or(0o644);
            let et = entry.header().entry_type();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            use tar::EntryType as T;
            let kind = match et {
                T::Directory => EntryKind::Dir,
                T::Regular | T::Continuous | T::GNUSparse => EntryKind::File,
                T::Symlink => EntryKind::Symlink(link.as_deref().unwrap_or("")),
                T::Link => EntryKind::HardLink(link.as_deref().unwrap_or("")),
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
                T::Char | T::Block => {
                    return Err(format!(
                        "archive entry {name:?} is a device; artifacts may only hold files, \
                         directories and links, so the archive was refused"
                    ))
                }
                T::Fifo => {
                    return Err(format!(
                        "archive entry {name:?} is a FIFO; artifacts may only hold files, \
                         directories and links, so the archive was refused"
                    ))
                }
                other => {
                    return Err(format!(
                        "archive entry {name:?} has an unsupported type ({other:?}); refused"
                    ))
                }
            };
            self.entry(&name, kind, mode, &mut entry)?;
        }
        Ok(())
    }

    fn zip(&mut self, file: File) -> Result<(), String> {
        let mut ar =
            zip::ZipArchive::new(file).map_err(|e| format!("reading the zip archive: {e}"))?;
        if ar.len() as u64 > self.limits.max_entries {
            return Err(self.too_many());
        }
        for i in 0..ar.len() {
            let mut f = ar
                .by_index(i)
                .map_err(|e| format!("reading the zip archive: {e}"))?;
            let name = f.name().to_string();
            let raw_mode = f.unix_mode();
            let mode = raw_mode.unwrap_or(if f.is_dir() { 0o755 } else { 0o644 });
            let fmt = raw_mode.map(|m| m & libc::S_IFMT).unwrap_or(0);
            if f.is_dir() {
                self.entry(&name, EntryKind::Dir, mode, &mut f)?;
            } else if fmt == libc::S_IFLNK {
                let mut target = String::new();
                (&mut f)
                    .take(4096)
                    .read_to_string(&mut target)
                    .map_err(|e| format!("reading the link target of {name:?}: {e}"))?;
                self.entry(&name, EntryKind::Symlink(&target), mode, &mut io::empty())?;
            } else if fmt == 0 || fmt == libc::S_IFREG {
                self.entry(&name, EntryKind::File, mode, &mut f)?;
            } else {
                return Err(format!(
                    "archive entry {name:?} is a device, FIFO or socket; artifacts may only \
                     hold files, directories and links, so the archive was refused"
                ));
            }
        }
        Ok(())
    }

    fn too_many(&self) -> String {
        format!(
            "the archive has more than {} entries (the limit); refused",
            self.limits.max_entries
        )
    }

    /// Removes what is at `name` in `dir` so that a new entry can take its place; a
    /// directory is kept (and is an error for a non-directory entry).
    fn clear(dir: BorrowedFd<'_>, name: &str, shown: &str) -> Result<(), String> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(sys(&format!("archive entry {shown:?}"), e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Err(format!(
                "archive entry {shown:?} would replace a directory; refused"
            )),
            Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| sys(&format!("replacing {shown:?}"), e)),
        }
    }

    fn entry(
        &mut self,
        name: &str,
        kind: EntryKind<'_>,
        mode: u32,
        data: &mut impl Read,
    ) -> Result<(), String> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.too_many());
        }
        let rel = allocdir::relative("archive entry", name)
            .map_err(|e| format!("{e}; the archive was refused"))?;
        // Permission bits only: no setuid, setgid or sticky bit survives.
        let perm = Mode::from_raw_mode(mode & 0o777);
        let link_err = |e: io::Error| {
            if allocdir::is_link_refusal(&e) {
                format!("archive entry {name:?} would be written through a symbolic link; refused")
            } else {
                format!("unpacking {name:?}: {e}")
            }
        };
        let Some(file_name) = rel.file_name().and_then(|n| n.to_str()) else {
            // `./` and the like: the destination itself.
            return match kind {
                EntryKind::Dir => Ok(()),
                _ => Err(format!("archive entry {name:?} has no file name; refused")),
            };
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        // Judge links before anything is created for them.
        if let EntryKind::Symlink(target) = kind {
            if !link_stays_inside(parent_rel, target) {
                return Err(format!(
                    "archive entry {name:?} is a symbolic link to {target:?}, which leads \
                     outside the artifact's destination; the archive was refused"
                ));
            }
        }
        let hard_target = match kind {
            EntryKind::HardLink(target) => {
                Some(allocdir::relative("hard link target", target).map_err(|e| {
                    format!(
                        "archive entry {name:?} is a hard link that leads outside the \
                         artifact's destination ({e}); the archive was refused"
                    )
                })?)
            }
            _ => None,
        };
        if let EntryKind::Dir = kind {
            let fd = allocdir::mkdir_all(self.dest, &rel, Mode::from_raw_mode(0o755))
                .map_err(link_err)?;
            // Keep the directory writable for the rest of the archive.
            return rustix::fs::fchmod(&fd, perm | Mode::RWXU)
                .map_err(|e| sys(&format!("setting the mode of {name:?}"), e));
        }
        let parent = allocdir::mkdir_all(self.dest, parent_rel, Mode::from_raw_mode(0o755))
            .map_err(link_err)?;
        match kind {
            EntryKind::Dir => unreachable!("handled above"),
            EntryKind::File => {
                Self::clear(parent.as_fd(), file_name, name)?;
                let fd = rustix::fs::openat(
                    &parent,
                    file_name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| sys(&format!("creating {name:?}"), e))?;
                let mut out = File::from(fd);
                let left = self.limits.max_unpacked_bytes - self.bytes;
                let n = io::copy(&mut data.take(left + 1), &mut out)
                    .map_err(|e| format!("unpacking {name:?}: {e}"))?;
                if n > left {
                    return Err(format!(
                        "the archive unpacks to more than {} bytes (the limit); refused",
                        self.limits.max_unpacked_bytes
                    ));
                }
                self.bytes += n;
                rustix::fs::fchmod(&out, perm)
                    .map_err(|e| sys(&format!("setting the mode of {name:?}"), e))
            }
            EntryKind::Symlink(target) => {
                Self::clear(parent.as_fd(), file_name, name)?;
                rustix::fs::symlinkat(target, &parent, file_name)
                    .map_err(|e| sys(&format!("creating the link {name:?}"), e))
            }
            EntryKind::HardLink(target) => {
                let trel = hard_target.unwrap_or_default();
                let (Some(tname), tparent) =
                    (trel.file_name(), trel.parent().unwrap_or(Path::new("")))
                else {
                    return Err(format!(
                        "archive entry {name:?} is a hard link without a target; refused"
                    ));
                };
                let tdir = allocdir::open_beneath(
                    self.dest,
                    tparent,
                    OFlags::PATH | OFlags::DIRECTORY,
                    Mode::empty(),
                    Links::Never,
                )
                .map_err(link_err)?;
                match rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
                    _ => {
                        return Err(format!(
                            "archive entry {name:?} is a hard link to {target:?}, which is not a \
                             file unpacked before it; refused"
                        ))
                    }
                }
                Self::clear(parent.as_fd(), file_name, name)?;
                rustix::fs::linkat(&tdir, tname, &parent, file_name, AtFlags::empty())
                    .map_err(|e| sys(&format!("creating the hard link {name:?}"), e))
            }
        }
    }
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

/// Who the sandbox runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    uid: u32,
    gid: u32,
}

/// The task's user, or `nobody`, when the agent is root; `None` (stay as we are) otherwise.
fn sandbox_identity(task_user: &str) -> Result<Option<Identity>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let name = match task_user.trim() {
        "" => "nobody",
        n => n,
    };
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(Some(Identity {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })),
        Ok(None) if name == "nobody" => Ok(Some(Identity {
            uid: 65534,
            gid: 65534,
        })),
        Ok(None) => Err(format!(
            "user {name:?} does not exist on this node, so its artifacts cannot be fetched"
        )),
        Err(e) => Err(format!("looking up user {name:?}: {e}")),
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
        tokio::task::spawn_blocking(move || -> Result<(OwnedFd, Option<Identity>), String> {
            let who = sandbox_identity(&user)?;
            allocdir::check_task_name(&task).map_err(|e| e.0)?;
            let root = allocdir::open_dir(&root)
                .map_err(|e| format!("opening the allocation directory: {e}"))?;
            let task_dir = allocdir::open_beneath(
                root.as_fd(),
                Path::new(&task),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
                Links::Never,
            )
            .map_err(|e| format!("opening the task directory: {e}"))?;
            let dest = allocdir::mkdir_all(task_dir.as_fd(), &dir_rel, Mode::from_raw_mode(0o755))
                .map_err(|e| {
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
                })?;
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
        })
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

/// Runs [`run_request`] in a child of this binary as `who`, with `dest` as fd 3.
async fn run_sandbox(
    req: &FetchRequest,
    dest: OwnedFd,
    who: Option<Identity>,
) -> Result<(), String> {
    if !SANDBOX_AVAILABLE.load(Ordering::SeqCst) {
        return Err(
            "this process cannot run the artifact sandbox (its main did not call \
             artifact::run_if_sandbox_child), so artifacts are not fetched"
                .into(),
        );
    }
    let mut cmd = tokio::process::Command::new("/proc/self/exe");
    cmd.arg(SANDBOX_ARG)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in std::env::vars_os() {
        let key = k.to_string_lossy().to_ascii_lowercase();
        if matches!(
            key.as_str(),
            "http_proxy"
                | "https_proxy"
                | "no_proxy"
                | "all_proxy"
                | "ssl_cert_file"
                | "ssl_cert_dir"
                | "path"
        ) {
            cmd.env(k, v);
        }
    }
    if let Some(id) = who {
        // std drops the supplementary groups (setgroups(0)) when it changes the uid as root.
        cmd.uid(id.uid).gid(id.gid);
    }
    let raw = dest.as_raw_fd();
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if raw == DEST_FD {
                if libc::fcntl(DEST_FD, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, DEST_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the artifact sandbox: {e}"))?;
    drop(dest);
    let body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("the sandbox has no stdin")?;
    let mut stderr = child.stderr.take().ok_or("the sandbox has no stderr")?;
    let run = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stdin
            .write_all(&body)
            .await
            .map_err(|e| format!("talking to the artifact sandbox: {e}"))?;
        drop(stdin);
        let mut err = Vec::new();
        (&mut stderr)
            .take(MAX_CHILD_STDERR as u64)
            .read_to_end(&mut err)
            .await
            .map_err(|e| format!("reading the artifact sandbox's answer: {e}"))?;
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for the artifact sandbox: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&err).trim().to_string();
            Err(if text.is_empty() {
                format!("the artifact sandbox failed ({status})")
            } else {
                text
            })
        }
    };
    match tokio::time::timeout(DOWNLOAD_TIMEOUT + Duration::from_secs(30), run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the download did not finish within {}s and was stopped",
            DOWNLOAD_TIMEOUT.as_secs()
        )),
    }
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
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn dest_dir() -> (tempfile::TempDir, OwnedFd) {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("dest")).unwrap();
        let fd = allocdir::open_dir(&tmp.path().join("dest")).unwrap();
        (tmp, fd)
    }

    fn small() -> Limits {
        Limits {
            max_download_bytes: 1 << 20,
            max_unpacked_bytes: 1 << 20,
            max_entries: 100,
        }
    }

    /// Name, type, mode, data and link target of one raw tar entry.
    type RawEntry<'a> = (&'a str, tar::EntryType, u32, &'a [u8], Option<&'a str>);

    /// A tar whose headers are written raw, so that names `tar::Builder` would refuse
    /// (`..`, absolute) can be built.
    fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, mode, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            {
                let gnu = h.as_gnu_mut().unwrap();
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(l) = link {
                    gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
                }
            }
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }

    fn unpack_bytes(
        kind: ArchiveKind,
        bytes: &[u8],
        dest: &OwnedFd,
        limits: &Limits,
    ) -> Result<(), String> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        unpack(kind, f, dest.as_fd(), limits)
    }

    use tar::EntryType as T;

    #[test]
    fn a_plain_archive_unpacks_with_modes_but_without_setuid_bits() {
        let (tmp, dest) = dest_dir();
        let tar = raw_tar(&[
            ("bin/", T::Directory, 0o755, b"", None),
            ("bin/tool", T::Regular, 0o4755, b"#!/bin/sh\n", None),
            ("bin/alias", T::Symlink, 0o777, b"", Some("tool")),
            ("bin/hard", T::Link, 0o644, b"", Some("bin/tool")),
            ("conf/app.txt", T::Regular, 0o2644, b"hello", None),
        ]);
        unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap();
        let d = tmp.path().join("dest");
        let mode = fs::metadata(d.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "setuid must be dropped");
        let mode = fs::metadata(d.join("conf/app.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644, "setgid must be dropped");
        assert_eq!(
            fs::read_link(d.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
        assert_eq!(
            fs::read_to_string(d.join("bin/hard")).unwrap(),
            "#!/bin/sh\n"
        );
    }

    #[test]
    fn every_hostile_tar_entry_kind_is_refused_and_nothing_lands_outside() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "dotdot",
                raw_tar(&[("../escaped", T::Regular, 0o644, b"x", None)]),
                "'..'",
            ),
            (
                "absolute",
                raw_tar(&[("/tmp/escaped", T::Regular, 0o644, b"x", None)]),
                "absolute",
            ),
            (
                "symlink to /",
                raw_tar(&[("evil", T::Symlink, 0o777, b"", Some("/"))]),
                "symbolic link",
            ),
            (
                "symlink up",
                raw_tar(&[("a/evil", T::Symlink, 0o777, b"", Some("../../x"))]),
                "symbolic link",
            ),
            (
                "hard link out",
                raw_tar(&[("h", T::Link, 0o644, b"", Some("../../etc/passwd"))]),
                "hard link",
            ),
            (
                "hard link absolute",
                raw_tar(&[("h", T::Link, 0o644, b"", Some("/etc/passwd"))]),
                "hard link",
            ),
            (
                "char device",
                raw_tar(&[("null", T::Char, 0o666, b"", None)]),
                "device",
            ),
            (
                "block device",
                raw_tar(&[("sda", T::Block, 0o666, b"", None)]),
                "device",
            ),
            (
                "fifo",
                raw_tar(&[("pipe", T::Fifo, 0o666, b"", None)]),
                "FIFO",
            ),
        ];
        for (what, tar, needle) in cases {
            let (tmp, dest) = dest_dir();
            let err = unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap_err();
            assert!(err.contains(needle), "{what}: {err}");
            assert!(!tmp.path().join("escaped").exists(), "{what}");
            assert!(
                fs::read_dir(tmp.path().join("dest"))
                    .unwrap()
                    .next()
                    .is_none(),
                "{what}: something was unpacked"
            );
        }
    }

    #[test]
    fn an_archive_cannot_write_through_a_link_it_or_the_task_planted() {
        let (tmp, dest) = dest_dir();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        // Planted earlier (by the task or a previous archive).
        std::os::unix::fs::symlink(&outside, tmp.path().join("dest/evil")).unwrap();
        let tar = raw_tar(&[("evil/payload", T::Regular, 0o644, b"x", None)]);
        let err = unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        // A link inside the archive pointing inside, then a file through it: refused too.
        let tar = raw_tar(&[
            ("sub/", T::Directory, 0o755, b"", None),
            ("in", T::Symlink, 0o777, b"", Some("sub")),
            ("in/x", T::Regular, 0o644, b"x", None),
        ]);
        let err = unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        // A file entry named like an existing link replaces the link, not its target.
        let host = tmp.path().join("host-file");
        fs::write(&host, "host").unwrap();
        std::os::unix::fs::symlink(&host, tmp.path().join("dest/f")).unwrap();
        let tar = raw_tar(&[("f", T::Regular, 0o644, b"archive", None)]);
        unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap();
        assert_eq!(fs::read_to_string(&host).unwrap(), "host");
        assert_eq!(
            fs::read_to_string(tmp.path().join("dest/f")).unwrap(),
            "archive"
        );
    }

    #[test]
    fn size_and_entry_caps_stop_an_archive_bomb() {
        let (_tmp, dest) = dest_dir();
        let big = vec![0u8; 4096];
        let tar = raw_tar(&[("big", T::Regular, 0o644, &big, None)]);
        let limits = Limits {
            max_unpacked_bytes: 1000,
            ..small()
        };
        // Gzip-compressed, the way a bomb arrives.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let err = unpack_bytes(ArchiveKind::TarGz, &gz, &dest, &limits).unwrap_err();
        assert!(err.contains("more than 1000 bytes"), "{err}");
        let many: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        let entries: Vec<RawEntry<'_>> = many
            .iter()
            .map(|n| (n.as_str(), T::Regular, 0o644, &b""[..], None))
            .collect();
        let limits = Limits {
            max_entries: 10,
            ..small()
        };
        let err = unpack_bytes(ArchiveKind::Tar, &raw_tar(&entries), &dest, &limits).unwrap_err();
        assert!(err.contains("more than 10 entries"), "{err}");
    }

    #[test]
    fn bzip2_and_xz_tarballs_unpack_and_are_checked_the_same_way() {
        let good = raw_tar(&[("f.txt", T::Regular, 0o6755, b"data", None)]);
        let bad = raw_tar(&[("evil", T::Symlink, 0o777, b"", Some("/"))]);
        fn bz(t: &[u8]) -> Vec<u8> {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(t).unwrap();
            e.finish().unwrap()
        }
        fn xz(t: &[u8]) -> Vec<u8> {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(t).unwrap();
            e.finish().unwrap()
        }
        type Encoder = fn(&[u8]) -> Vec<u8>;
        let encoders: [(ArchiveKind, Encoder); 2] =
            [(ArchiveKind::TarBz2, bz), (ArchiveKind::TarXz, xz)];
        for (kind, enc) in encoders {
            let (tmp, dest) = dest_dir();
            unpack_bytes(kind, &enc(&good), &dest, &small()).unwrap();
            let p = tmp.path().join("dest/f.txt");
            assert_eq!(fs::read_to_string(&p).unwrap(), "data");
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
                0o755
            );
            let err = unpack_bytes(kind, &enc(&bad), &dest, &small()).unwrap_err();
            assert!(err.contains("symbolic link"), "{kind:?}: {err}");
        }
    }

    fn zip_with(f: impl FnOnce(&mut zip::ZipWriter<io::Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        f(&mut w);
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn hostile_zip_entries_are_refused_and_setuid_dropped() {
        use zip::write::SimpleFileOptions;
        let opts = SimpleFileOptions::default();
        let ok = zip_with(|w| {
            w.start_file("dir/run.sh", opts.unix_permissions(0o4755))
                .unwrap();
            w.write_all(b"echo").unwrap();
            w.add_symlink("dir/link", "run.sh", opts).unwrap();
        });
        let (tmp, dest) = dest_dir();
        unpack_bytes(ArchiveKind::Zip, &ok, &dest, &small()).unwrap();
        let mode = fs::metadata(tmp.path().join("dest/dir/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert_eq!(
            fs::read_link(tmp.path().join("dest/dir/link")).unwrap(),
            Path::new("run.sh")
        );
        let dotdot = zip_with(|w| {
            w.start_file("../escaped", opts).unwrap();
            w.write_all(b"x").unwrap();
        });
        let absolute = zip_with(|w| {
            w.start_file("/tmp/escaped", opts).unwrap();
        });
        let link_out = zip_with(|w| {
            w.add_symlink("evil", "/", opts).unwrap();
        });
        for (what, bytes, needle) in [
            ("dotdot", dotdot, "'..'"),
            ("absolute", absolute, "absolute"),
            ("symlink out", link_out, "symbolic link"),
        ] {
            let (tmp, dest) = dest_dir();
            let err = unpack_bytes(ArchiveKind::Zip, &bytes, &dest, &small()).unwrap_err();
            assert!(err.contains(needle), "{what}: {err}");
            assert!(!tmp.path().join("escaped").exists());
        }
    }

    #[test]
    fn symlink_targets_are_judged_from_their_directory() {
        assert!(link_stays_inside(Path::new("a/b"), "../c"));
        assert!(link_stays_inside(Path::new("a"), "../c"));
        assert!(!link_stays_inside(Path::new("a"), "../../c"));
        assert!(!link_stays_inside(Path::new(""), ".."));
        assert!(!link_stays_inside(Path::new(""), "/etc"));
        assert!(link_stays_inside(Path::new(""), "./x/../y"));
    }

    #[test]
    fn destinations_stay_inside_the_task_dir() {
        let env = TaskEnv::default();
        let mut a = TaskArtifact::default();
        assert_eq!(
            destination(&a, &env, "x.tgz").unwrap(),
            (PathBuf::from("local"), "x.tgz".to_string())
        );
        a.relative_dest = "/local/conf".into();
        assert_eq!(
            destination(&a, &env, "x").unwrap().0,
            Path::new("local/conf")
        );
        a.getter_mode = "file".into();
        assert_eq!(
            destination(&a, &env, "x").unwrap(),
            (PathBuf::from("local"), "conf".to_string())
        );
        a.relative_dest = "../../etc".into();
        assert!(destination(&a, &env, "x").unwrap_err().contains("'..'"));
    }

    #[test]
    fn archives_are_recognised_by_name() {
        assert_eq!(archive_kind("x.tar.gz"), Some(ArchiveKind::TarGz));
        assert_eq!(archive_kind("x.ZIP"), Some(ArchiveKind::Zip));
        assert_eq!(archive_kind("x.tbz2"), Some(ArchiveKind::TarBz2));
        assert_eq!(archive_kind("x.tar.xz"), Some(ArchiveKind::TarXz));
        assert_eq!(archive_kind("x.tar"), Some(ArchiveKind::Tar));
        assert_eq!(archive_kind("x.txt"), None);
    }

    #[tokio::test]
    async fn a_destination_through_a_planted_symlink_is_refused_before_any_download() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("alloc1");
        let host = tmp.path().join("host");
        fs::create_dir_all(root.join("web/local")).unwrap();
        fs::create_dir_all(&host).unwrap();
        std::os::unix::fs::symlink(&host, root.join("web/local/evil")).unwrap();
        let art = TaskArtifact {
            // Nothing listens here: the refusal must come first.
            getter_source: "http://127.0.0.1:9/files/payload.txt".into(),
            relative_dest: "local/evil/tmp".into(),
            ..Default::default()
        };
        let err = fetch(&art, &TaskEnv::default(), &root, "web", "", &small())
            .await
            .unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(
            fs::read_dir(&host).unwrap().next().is_none(),
            "wrote to the host dir"
        );
    }

    #[tokio::test]
    async fn the_sandbox_routine_downloads_a_file_and_reports_a_404() {
        let app = axum::Router::new().route(
            "/files/hello.txt",
            axum::routing::get(|| async { "hello artifact" }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (tmp, dest) = dest_dir();
        let req = FetchRequest {
            url: format!("http://{addr}/files/hello.txt"),
            file_name: "hello.txt".into(),
            archive: None,
            limits: small(),
            timeout_secs: 30,
        };
        // The routine runs a runtime of its own, as in the child.
        let r = req.clone();
        let fd = dest.try_clone().unwrap();
        tokio::task::spawn_blocking(move || run_request(&r, fd.as_fd()))
            .await
            .unwrap()
            .unwrap();
        let got = fs::read_to_string(tmp.path().join("dest/hello.txt")).unwrap();
        assert_eq!(got, "hello artifact");
        let missing = FetchRequest {
            url: format!("http://{addr}/files/nope.txt"),
            ..req
        };
        let err = tokio::task::spawn_blocking(move || run_request(&missing, dest.as_fd()))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.contains("404"), "{err}");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(tmp.path().join("dest"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["hello.txt"]);
    }
}
