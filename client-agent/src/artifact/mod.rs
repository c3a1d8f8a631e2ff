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
    let root =
        allocdir::open_dir(root).map_err(|e| format!("opening the allocation directory: {e}"))?;
    let task_dir = allocdir::open_beneath(
        root.as_fd(),
        Path::new(task),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
        Links::Never,
    )
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
