//! The artifact sandbox: a child of the agent's binary, as the task's user or `nobody`
//! with `no_new_privs`, that downloads (and unpacks) into the descriptor it is handed.

use super::*;

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

/// Who the sandbox runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// The task's user, or `nobody`, when the agent is root; `None` (stay as we are) otherwise.
pub(super) fn sandbox_identity(task_user: &str) -> Result<Option<Identity>, String> {
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

/// The sandbox child's command: this binary with [`SANDBOX_ARG`], a scrubbed environment
/// (proxies, CA paths and `PATH` kept), `who`'s ids, and in the child `raw` as fd 3,
/// a parent-death signal and `no_new_privs`.
fn sandbox_command(raw: i32, who: Option<Identity>) -> tokio::process::Command {
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
    cmd
}

/// Runs [`run_request`] in a child of this binary as `who`, with `dest` as fd 3.
pub(super) async fn run_sandbox(
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
    let mut cmd = sandbox_command(dest.as_raw_fd(), who);
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
