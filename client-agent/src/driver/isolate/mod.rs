//! Starting a process isolated, for the `exec` driver: new PID, mount, IPC and UTS
//! namespaces, a root built from bind mounts in the task directory, a fresh `/proc` and a
//! minimal `/dev`, then `pivot_root` into it, the user and capabilities, then `execve`.
//!
//! The task's root is the task directory bind-mounted onto itself `nosuid,nodev` (so
//! `local/`, `secrets/` and `tmp/` carry no setuid binaries or device nodes that work);
//! `/alloc` is bind-mounted `nosuid,nodev` as well, the host paths of `chroot_env`
//! read-only, `nosuid,nodev`. `pivot_root` makes it the root of the task's private mount
//! namespace and the old root is unmounted (`MNT_DETACH`), so no path, not even the
//! `chroot(subdir); chdir("..") x N` walk, leads back to the host's filesystem.
//!
//! The task then gets `no_new_privs`, a bounding set cut down to its capability set (so a
//! setuid binary cannot regain more), its user and groups, and exactly that capability
//! set as permitted, effective and inheritable (and ambient, when the user is not root).
//!
//! Process tree (host view):
//!
//! ```text
//! agent ── init (pid 1 of the new PID namespace; cloned by the agent)
//!             └── task (pid 2: the command)
//! ```
//!
//! The agent clones `init` straight into the new namespaces, so `init` is the agent's own
//! child (it can be reaped, and its exit status read). `init` is a tiny init, like tini:
//! a PID 1 ignores signals it has no handler for, so it forwards the usual ones to the
//! task, reaps orphans, and exits with the task's status as soon as the task exits. When
//! a namespace's PID 1 exits, the kernel kills everything else in it: nothing outlives
//! the task.
//!
//! Between `clone` and `execve` only async-signal-safe work is allowed (the agent is
//! multi-threaded): every string, path and pointer array is prepared before `clone`, and
//! the children call `libc` directly and never allocate. Even some libc wrappers are
//! off limits: `fork` (takes the malloc locks, possibly copied locked) and the
//! `set*id` family (broadcast to the parent's threads); the children use raw system
//! calls for those. Setup errors travel back
//! through a close-on-exec pipe as an errno plus a description; EOF on that pipe means
//! `execve` succeeded. `init` writes the task's raw wait status to a second pipe before
//! exiting, so the agent can tell an exit code from a signal.
//!
//! This file prepares and starts the children; the steps they run live beside it:
//! `mounts` (building the task's root and `pivot_root`), `user` (user, groups,
//! capabilities, `no_new_privs`) and `init` (the in-namespace init and the task itself).

mod init;
mod mounts;
mod user;

pub(crate) use user::{drop_privileges, Privileges};

use init::run_init;
use mounts::{plan_root, Op};

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use super::caps::{self, CapSet};

/// A host path made visible inside the task's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute, as the task sees it (`/usr`).
    pub target: PathBuf,
    pub readonly: bool,
}

/// What to run and how to isolate it.
#[derive(Debug)]
pub struct Spec {
    /// The task directory: the task's `/`.
    pub root: PathBuf,
    pub binds: Vec<Bind>,
    /// As configured: absolute, relative to `cwd`, or a bare name looked up in `PATH`.
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Inside the root.
    pub cwd: String,
    pub user: Option<User>,
    /// The task's capabilities (see [`super::caps`]).
    pub caps: CapSet,
    pub stdout: File,
    pub stderr: File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A started task.
#[derive(Debug)]
pub struct Launched {
    /// Host pid of `init`.
    pub pid: i32,
    /// Read end of the pipe `init` writes the task's wait status to.
    pub status: File,
}

/// The `PATH` a task gets when its environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the children need, prepared before `clone`.
struct ChildPlan {
    ops: Vec<(Op, CString)>,
    candidates: Vec<CString>,
    /// "executing <command>", for the error message.
    exec_what: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    privileges: Privileges,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    go_r: RawFd,
    err_w: RawFd,
    status_w: RawFd,
}

fn cstr(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", s.as_ref()),
        )
    })
}

/// Moves `fd` to a number above 2, so that placing stdio at 0-2 cannot clobber it.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl on a valid fd; the new fd is owned by the returned OwnedFd.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// The paths `execve` tries, in order.
fn exec_candidates(command: &str, env: &[(String, String)]) -> io::Result<Vec<CString>> {
    if command.contains('/') {
        return Ok(vec![cstr(command)?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cstr(format!("{}/{command}", d.trim_end_matches('/'))))
        .collect()
}

/// Starts the task. `before_go` runs once `init` exists (stopped before doing anything):
/// it puts `init` into the task's cgroup, so everything the task starts is counted there.
// One function on purpose: the clone, cgroup placement, go signal and error handshake
// are one sequence whose fds must be closed in a precise order on every path.
pub fn launch(spec: Spec, before_go: impl FnOnce(i32) -> io::Result<()>) -> io::Result<Launched> {
    if spec.command.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the command is empty",
        ));
    }
    let ops = plan_root(&spec)?;
    let candidates = exec_candidates(&spec.command, &spec.env)?;
    let argv: Vec<CString> = std::iter::once(&spec.command)
        .chain(&spec.args)
        .map(cstr)
        .collect::<io::Result<_>>()?;
    let mut envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}")))
        .collect::<io::Result<_>>()?;
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        envp.push(cstr(format!("PATH={DEFAULT_PATH}"))?);
    }
    let stdin = above_stdio(File::open("/dev/null")?.into())?;
    let stdout = above_stdio(spec.stdout.into())?;
    let stderr = above_stdio(spec.stderr.into())?;
    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (status_r, status_w) = pipe()?;

    let plan = ChildPlan {
        ops,
        candidates,
        exec_what: cstr(format!("executing {}", spec.command))?,
        argv,
        envp,
        privileges: Privileges {
            ids: spec.user.as_ref().map(|u| (u.uid, u.gid)),
            caps: spec.caps.bits(),
            last_cap: caps::kernel_last_cap(),
        },
        stdin: stdin.as_raw_fd(),
        stdout: stdout.as_raw_fd(),
        stderr: stderr.as_raw_fd(),
        go_r: go_r.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        status_w: status_w.as_raw_fd(),
    };
    // Pointer arrays for execve, built here: the children must not allocate.
    let argv_ptrs: Vec<*const libc::c_char> = plan
        .argv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = plan
        .envp
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let groups: Vec<libc::gid_t> = spec
        .user
        .as_ref()
        .map(|u| u.groups.clone())
        .unwrap_or_default();

    let mut stack = vec![0u8; 512 * 1024];
    let flags = nix::sched::CloneFlags::CLONE_NEWPID
        | nix::sched::CloneFlags::CLONE_NEWNS
        | nix::sched::CloneFlags::CLONE_NEWIPC
        | nix::sched::CloneFlags::CLONE_NEWUTS;
    let cb = Box::new(|| -> isize {
        // SAFETY: runs in the cloned child, which only makes raw syscalls on data
        // prepared above and never returns.
        unsafe { run_init(&plan, &argv_ptrs, &envp_ptrs, &groups) }
    });
    // SAFETY: the child runs only async-signal-safe code (see run_init).
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("creating the task's namespaces (clone): {e}"),
            )
        })?
        .as_raw();
    drop((go_r, err_w, status_w, stdin, stdout, stderr));

    let kill_and_reap = |pid: i32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    };
    if let Err(e) = before_go(pid) {
        kill_and_reap(pid);
        return Err(e);
    }
    let mut go = File::from(go_w);
    if let Err(e) = std::io::Write::write_all(&mut go, b"g") {
        kill_and_reap(pid);
        return Err(e);
    }
    drop(go);
    // EOF once the command was exec'd (or everything died); a message otherwise.
    let mut msg = Vec::new();
    File::from(err_r).read_to_end(&mut msg)?;
    if msg.len() >= 4 {
        let errno = i32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let what = String::from_utf8_lossy(&msg[4..]).into_owned();
        kill_and_reap(pid);
        let os = io::Error::from_raw_os_error(errno);
        return Err(io::Error::new(os.kind(), format!("{what}: {os}")));
    }
    Ok(Launched {
        pid,
        status: File::from(status_r),
    })
}

/// Decodes the raw wait status `init` reports: (exit code, signal), with exit code
/// `128 + signal` for a signal, as shells report it.
pub fn decode_status(status: i32) -> (i64, i64) {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status) as i64;
        (128 + sig, sig)
    } else {
        (libc::WEXITSTATUS(status) as i64, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_commands_are_looked_up_in_the_tasks_path() {
        let env = vec![("PATH".to_string(), "/opt/bin:/bin/".to_string())];
        let c = exec_candidates("sleep", &env).unwrap();
        assert_eq!(
            c,
            vec![cstr("/opt/bin/sleep").unwrap(), cstr("/bin/sleep").unwrap()]
        );
        let c = exec_candidates("local/run.sh", &env).unwrap();
        assert_eq!(c, vec![cstr("local/run.sh").unwrap()]);
        assert_eq!(exec_candidates("ls", &[]).unwrap().len(), 6);
    }

    #[test]
    fn wait_statuses_decode_like_a_shell() {
        assert_eq!(decode_status(3 << 8), (3, 0));
        assert_eq!(decode_status(9), (137, 9));
        assert_eq!(decode_status(0), (0, 0));
    }
}
