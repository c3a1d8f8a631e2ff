//! `GET /v1/client/fs/{ls,stat,cat,readat}/:alloc`: the allocation directory, read only
//! beneath it, with the secrets directories refused.

use super::{find_alloc, HttpErr, HttpResult};
use crate::allocdir::{self, Links};
use crate::handle::ClientHandle;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
pub struct PathQuery {
    pub(super) path: Option<String>,
    pub(super) offset: Option<String>,
    pub(super) limit: Option<String>,
}

/// The request's `path` (relative to the alloc dir; `/` is its root) as a checked
/// relative path: `..`, NUL and `\` are refused before anything is opened.
fn fs_path(p: Option<&str>) -> Result<PathBuf, HttpErr> {
    let raw = p.unwrap_or("/").trim();
    allocdir::relative("path", raw.trim_start_matches('/')).map_err(|e| HttpErr::bad_request(e.0))
}

/// What every fs route starts from: the alloc dir's root, the checked relative path, and
/// the path as the caller wrote it (for messages; `shown_default` when none was given).
pub(super) fn fs_target(
    h: &ClientHandle,
    alloc: &str,
    q: &PathQuery,
    shown_default: &str,
) -> Result<(PathBuf, PathBuf, String), HttpErr> {
    let view = find_alloc(h, alloc)?;
    let rel = fs_path(q.path.as_deref())?;
    let shown = q.path.clone().unwrap_or_else(|| shown_default.into());
    Ok((view.alloc_dir.root.clone(), rel, shown))
}

/// Whether `rel` (relative to the alloc root) is in, or is, a task's `secrets` directory.
/// Compared without regard to case, as Nomad does.
fn is_secret(rel: &Path) -> bool {
    let mut c = rel.components();
    match (c.next(), c.next()) {
        (Some(Component::Normal(task)), Some(Component::Normal(dir))) => {
            task != "alloc" && dir.to_string_lossy().eq_ignore_ascii_case("secrets")
        }
        _ => false,
    }
}

fn secret_refused(shown: &str) -> HttpErr {
    HttpErr::forbidden(format!("Reading secret file prohibited: {shown}"))
}

/// Opens `rel` beneath the allocation directory for reading: `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so a symlink a task made that points out of
/// the alloc dir is refused (403); one that stays inside is followed, and where it lands
/// is checked again against the secrets rule. Never blocks on a FIFO.
fn open_in_alloc(
    root: &Path,
    rel: &Path,
    shown: &str,
    alloc: &str,
) -> Result<(OwnedFd, Stat), HttpErr> {
    if is_secret(rel) {
        return Err(secret_refused(shown));
    }
    let root_fd = allocdir::open_dir(root).map_err(|e| {
        HttpErr::not_found(format!("The directory of allocation {alloc} is gone: {e}"))
    })?;
    let fd = allocdir::open_beneath(
        root_fd.as_fd(),
        rel,
        OFlags::RDONLY | OFlags::NONBLOCK,
        Mode::empty(),
        Links::Beneath,
    )
    .map_err(|e| match e.kind() {
        _ if allocdir::is_link_refusal(&e) => HttpErr::forbidden(format!(
            "Path {shown:?} in allocation {alloc} leads out of the allocation directory \
             through a symbolic link; the agent does not follow it"
        )),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => HttpErr::not_found(
            format!("No file or directory {shown:?} in allocation {alloc}"),
        ),
        std::io::ErrorKind::PermissionDenied => HttpErr::forbidden(format!(
            "Reading {shown:?} in allocation {alloc} is not permitted: {e}"
        )),
        _ => HttpErr::internal(format!("opening {shown:?} in allocation {alloc}: {e}")),
    })?;
    // Where it landed (links inside the alloc dir were followed): still inside, and not
    // in a secrets directory.
    let real_root = allocdir::real_path(root_fd.as_fd())
        .map_err(|e| HttpErr::internal(format!("resolving allocation {alloc}'s directory: {e}")))?;
    let real = allocdir::real_path(fd.as_fd())
        .map_err(|e| HttpErr::internal(format!("resolving {shown:?}: {e}")))?;
    let Ok(real_rel) = real.strip_prefix(&real_root) else {
        return Err(HttpErr::forbidden(format!(
            "Path {shown:?} in allocation {alloc} resolves outside the allocation directory"
        )));
    };
    if is_secret(real_rel) {
        return Err(secret_refused(shown));
    }
    let st =
        rustix::fs::fstat(&fd).map_err(|e| HttpErr::internal(format!("reading {shown:?}: {e}")))?;
    Ok((fd, st))
}

/// Runs a blocking fs operation off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HttpErr> + Send + 'static,
) -> Result<T, HttpErr> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HttpErr::internal(format!("file access failed: {e}")))?
}

/// Opens a regular file for `cat`/`readat`.
pub(super) fn open_regular(
    root: &Path,
    rel: &Path,
    shown: &str,
    alloc: &str,
) -> Result<std::fs::File, HttpErr> {
    let (fd, st) = open_in_alloc(root, rel, shown, alloc)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(std::fs::File::from(fd)),
        FileType::Directory => Err(HttpErr::bad_request(format!(
            "{shown:?} is a directory; use /v1/client/fs/ls"
        ))),
        _ => Err(HttpErr::bad_request(format!(
            "{shown:?} is not a regular file (a device, FIFO or socket); only files can be read"
        ))),
    }
}

/// Streams `len` bytes (or to the end) of `file` from its current position as a body.
fn file_body(mut file: std::fs::File, len: Option<u64>) -> Response {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len.unwrap_or(u64::MAX);
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match file.read(&mut buf[..want]) {
                Ok(0) => return,
                Ok(n) => {
                    left -= n as u64;
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    (
        [("content-type", "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

pub(super) async fn cat(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let (root, rel, shown) = fs_target(&h, &alloc, &q, "")?;
    let file = blocking(move || open_regular(&root, &rel, &shown, &alloc)).await?;
    Ok(file_body(file, None))
}

pub(super) fn parse_u64(name: &str, v: Option<&str>) -> Result<Option<u64>, HttpErr> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
            HttpErr::bad_request(format!("{name} must be a non-negative integer, got {s:?}"))
        }),
    }
}

/// `GET /v1/client/fs/readat/:alloc?path=&offset=&limit=`: `limit` bytes from `offset`.
pub(super) async fn readat(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let (root, rel, shown) = fs_target(&h, &alloc, &q, "")?;
    let offset = parse_u64("offset", q.offset.as_deref())?.unwrap_or(0);
    let limit = parse_u64("limit", q.limit.as_deref())?;
    let file = blocking(move || {
        use std::io::{Seek, SeekFrom};
        let mut f = open_regular(&root, &rel, &shown, &alloc)?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| HttpErr::bad_request(format!("cannot seek {shown:?} to {offset}: {e}")))?;
        Ok(f)
    })
    .await?;
    Ok(file_body(file, limit))
}

/// One entry of `fs/ls`, as Nomad's `AllocFileInfo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocFileInfo {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub file_mode: String,
    /// RFC 3339.
    pub mod_time: String,
}

/// Go's `FileMode.String()` for the kinds an alloc dir holds (`d`, `L` for a link).
fn mode_string(mode: u32, kind: FileType) -> String {
    let mut s = String::from(match kind {
        FileType::Directory => "d",
        FileType::Symlink => "L",
        FileType::Fifo => "p",
        FileType::Socket => "S",
        FileType::CharacterDevice => "Dc",
        FileType::BlockDevice => "D",
        _ => "-",
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn file_info(name: String, st: &Stat) -> AllocFileInfo {
    let kind = FileType::from_raw_mode(st.st_mode);
    let mod_time =
        chrono::DateTime::<chrono::Utc>::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
    AllocFileInfo {
        name,
        is_dir: kind == FileType::Directory,
        size: st.st_size as u64,
        file_mode: mode_string(st.st_mode, kind),
        mod_time,
    }
}

pub(super) async fn ls(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let (root, rel, shown) = fs_target(&h, &alloc, &q, "/")?;
    let out = blocking(move || {
        let (fd, st) = open_in_alloc(&root, &rel, &shown, &alloc)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(HttpErr::bad_request(format!(
                "{shown:?} is not a directory; use /v1/client/fs/cat or /v1/client/fs/stat"
            )));
        }
        let dir = rustix::fs::Dir::read_from(&fd)
            .map_err(|e| HttpErr::internal(format!("listing {shown:?}: {e}")))?;
        let mut out = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            // The entry itself: a link is listed as a link, never followed.
            let Ok(st) = rustix::fs::statat(&fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            out.push(file_info(name, &st));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await?;
    Ok(Json(out).into_response())
}

/// `GET /v1/client/fs/stat/:alloc?path=`: one `AllocFileInfo`.
pub(super) async fn stat(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> HttpResult {
    let (root, rel, shown) = fs_target(&h, &alloc, &q, "/")?;
    let info = blocking(move || {
        let (_fd, st) = open_in_alloc(&root, &rel, &shown, &alloc)?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        Ok(file_info(name, &st))
    })
    .await?;
    Ok(Json(info).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn secrets_dirs_of_tasks_are_recognised_in_any_case_but_not_the_shared_dir() {
        for p in ["web/secrets", "web/secrets/token", "web/SeCrEtS/x"] {
            assert!(is_secret(Path::new(p)), "{p}");
        }
        for p in [
            "",
            "web",
            "web/local/secrets",
            "alloc/secrets",
            "web/secretsx",
        ] {
            assert!(!is_secret(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn fs_paths_are_relative_to_the_alloc_dir_and_never_climb_out() {
        assert_eq!(fs_path(None).unwrap(), Path::new(""));
        assert_eq!(
            fs_path(Some("/web/local/")).unwrap(),
            Path::new("web/local")
        );
        for bad in ["../x", "/web/../../x", "a\0b", "a\\b"] {
            let e = fs_path(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn a_link_outside_the_alloc_dir_is_a_403_and_a_link_inside_is_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a1");
        std::fs::create_dir_all(root.join("web/local")).unwrap();
        std::fs::create_dir_all(root.join("web/secrets")).unwrap();
        std::fs::write(root.join("web/local/f"), "in").unwrap();
        std::fs::write(root.join("web/secrets/t"), "tok").unwrap();
        std::fs::write(tmp.path().join("host"), "host").unwrap();
        std::os::unix::fs::symlink("../../../host", root.join("web/local/up")).unwrap();
        std::os::unix::fs::symlink("f", root.join("web/local/alias")).unwrap();
        std::os::unix::fs::symlink("../secrets/t", root.join("web/local/s")).unwrap();
        let open = |p: &str| open_regular(&root, &fs_path(Some(p)).unwrap(), p, "a1");
        let e = open("web/local/up").unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN, "{}", e.msg);
        let e = open("web/local/s").unwrap_err();
        assert!(
            e.msg.contains("Reading secret file prohibited"),
            "{}",
            e.msg
        );
        let mut s = String::new();
        use std::io::Read;
        open("web/local/alias")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "in");
        assert_eq!(
            open("web/local/none").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            open("web/local").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
