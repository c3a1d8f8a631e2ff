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

/// Devices bind-mounted from the host into the task's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Parts of `/proc` that reach the whole host, not the task's namespaces, made read-only
/// (as runc does): a task whose uid is 0 must not write kernel settings
/// (`/proc/sys/kernel/core_pattern`) or trigger SysRq (`/proc/sysrq-trigger`), which file
/// permissions alone would let it.
const PROC_READONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// Parts of `/proc` hidden (an empty read-only tmpfs over a directory, `/dev/null` over a
/// file): host memory, keys and timers.
const PROC_MASKED: &[&str] = &[
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];

/// Files of the host's `/etc` hidden from tasks (`/dev/null` over them): password
/// hashes, which Nomad's default capabilities (`dac_override`) would let a task read.
const ETC_MASKED: &[&str] = &["etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-"];

/// Signals `init` passes on to the task.
const FORWARDED: &[libc::c_int] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGWINCH,
];

/// The task's host pid, in `init`'s copy of memory (for the signal handler).
static TASK_PID: AtomicI32 = AtomicI32::new(0);

/// One step of building the task's root, run by `init`.
enum Op {
    /// Stop mount events from propagating back to the host.
    MakePrivate,
    Bind {
        src: CString,
        dst: CString,
        /// When not 0: remount the bind with these flags (`MS_RDONLY`, `MS_NOSUID`, ...).
        remount: libc::c_ulong,
    },
    Tmpfs {
        dst: CString,
        data: CString,
        flags: libc::c_ulong,
    },
    Proc {
        dst: CString,
    },
    /// Bind-mounts `path` onto itself read-only; skipped when the kernel has no `path`.
    ReadOnly {
        path: CString,
    },
    /// Hides `path` (a read-only empty tmpfs or `/dev/null` over it); skipped when the
    /// kernel has no `path`.
    Mask {
        path: CString,
    },
    /// Creates an empty file (a mount point for a device).
    Touch {
        path: CString,
    },
    Mkdir {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// Makes `path` (a mount point) the root and detaches the old root.
    PivotRoot {
        path: CString,
    },
    Chdir {
        path: CString,
    },
}

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

/// `root` joined with the absolute in-task path `p`.
fn inside(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
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

/// The `MS_*` flags of the mount `path` is on (only those `statvfs` reports).
fn mount_flags_of(path: &Path) -> io::Result<libc::c_ulong> {
    let c = cstr(path)?;
    // SAFETY: statvfs writes into the zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

/// Creates the mount points in `root` and lists the mount steps.
fn plan_root(spec: &Spec) -> io::Result<Vec<(Op, CString)>> {
    let root = &spec.root;
    let d = |s: String| cstr(s);
    let mut ops = vec![(Op::MakePrivate, d("making mounts private".into())?)];
    // The task dir becomes a mount of its own (pivot_root needs one), without setuid
    // or devices; read-only or noexec stays so if the data dir is mounted that way.
    let inherited = mount_flags_of(root)? & (libc::MS_RDONLY | libc::MS_NOEXEC);
    ops.push((
        Op::Bind {
            src: cstr(root)?,
            dst: cstr(root)?,
            remount: libc::MS_NOSUID | libc::MS_NODEV | inherited,
        },
        d(format!(
            "bind-mounting the task directory {} onto itself",
            root.display()
        ))?,
    ));
    for b in &spec.binds {
        let dst = inside(root, &b.target);
        let meta = match std::fs::symlink_metadata(&b.source) {
            Ok(m) => m,
            // Paths this host does not have (/lib32 on most) are skipped.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() && b.source == b.target {
            // Merged-/usr hosts: /bin -> usr/bin. The same link inside the root points
            // at the bind mount of /usr.
            let target = std::fs::read_link(&b.source)?;
            if std::fs::symlink_metadata(&dst).is_err() {
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::os::unix::fs::symlink(&target, &dst)?;
            }
            continue;
        }
        if std::fs::metadata(&b.source)?.is_dir() {
            std::fs::create_dir_all(&dst)?;
        } else {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if !dst.exists() {
                File::create(&dst)?;
            }
        }
        ops.push((
            Op::Bind {
                src: cstr(&b.source)?,
                dst: cstr(&dst)?,
                remount: libc::MS_NOSUID
                    | libc::MS_NODEV
                    | if b.readonly { libc::MS_RDONLY } else { 0 },
            },
            d(format!(
                "bind-mounting {} at {}",
                b.source.display(),
                b.target.display()
            ))?,
        ));
    }
    for f in ETC_MASKED {
        ops.push((
            Op::Mask {
                path: cstr(root.join(f))?,
            },
            d(format!("masking /{f}"))?,
        ));
    }
    let dev = root.join("dev");
    std::fs::create_dir_all(&dev)?;
    ops.push((
        // nodev: the devices below are bind mounts of their own; a node made here by
        // a task (CAP_MKNOD) cannot be opened.
        Op::Tmpfs {
            dst: cstr(&dev)?,
            data: cstr("mode=755,size=1m")?,
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        },
        d("mounting a tmpfs at /dev".into())?,
    ));
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let path = cstr(dev.join(name))?;
        ops.push((
            Op::Touch { path: path.clone() },
            d(format!("creating /dev/{name}"))?,
        ));
        ops.push((
            Op::Bind {
                src: cstr(&host)?,
                dst: path,
                remount: 0,
            },
            d(format!("bind-mounting /dev/{name}"))?,
        ));
    }
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        ops.push((
            Op::Symlink {
                target: cstr(target)?,
                link: cstr(dev.join(link))?,
            },
            d(format!("linking /dev/{link}"))?,
        ));
    }
    ops.push((
        Op::Mkdir {
            path: cstr(dev.join("shm"))?,
        },
        d("creating /dev/shm".into())?,
    ));
    ops.push((
        Op::Tmpfs {
            dst: cstr(dev.join("shm"))?,
            data: cstr("mode=1777,size=64m")?,
            flags: libc::MS_NOSUID | libc::MS_NODEV,
        },
        d("mounting a tmpfs at /dev/shm".into())?,
    ));
    let proc_dir = root.join("proc");
    std::fs::create_dir_all(&proc_dir)?;
    ops.push((
        Op::Proc {
            dst: cstr(&proc_dir)?,
        },
        d("mounting /proc".into())?,
    ));
    for p in PROC_READONLY {
        ops.push((
            Op::ReadOnly {
                path: cstr(proc_dir.join(p))?,
            },
            d(format!("making /proc/{p} read-only"))?,
        ));
    }
    for p in PROC_MASKED {
        ops.push((
            Op::Mask {
                path: cstr(proc_dir.join(p))?,
            },
            d(format!("masking /proc/{p}"))?,
        ));
    }
    ops.push((
        Op::PivotRoot { path: cstr(root)? },
        d(format!("pivot_root into {}", root.display()))?,
    ));
    ops.push((
        Op::Chdir {
            path: cstr(&spec.cwd)?,
        },
        d(format!("changing directory to {}", spec.cwd))?,
    ));
    Ok(ops)
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

/// Who a task runs as and what it may do, for [`drop_privileges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Privileges {
    /// (uid, gid) to switch to; `None` keeps the caller's.
    pub ids: Option<(u32, u32)>,
    /// The capability set (bit N = capability N).
    pub caps: u64,
    /// The kernel's highest capability number.
    pub last_cap: u32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// In a child about to `execve` a task (or a command in it): sets `no_new_privs`, cuts
/// the bounding set down to `p.caps`, switches to the user and `groups`, and leaves
/// exactly `p.caps` permitted, effective and inheritable, and ambient for a non-root
/// user (which `execve` would otherwise clear). Raw system calls only: glibc's
/// `set*id` wrappers would try to apply the change to every thread it believes this
/// process has (the agent's threads, which do not exist here). Async-signal-safe.
pub(crate) unsafe fn drop_privileges(
    p: &Privileges,
    groups: &[libc::gid_t],
) -> Result<(), &'static CStr> {
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        return Err(c"setting no_new_privs");
    }
    let caps = p.caps & cap_mask(p.last_cap);
    for cap in 0..=p.last_cap.min(63) {
        if caps & (1 << cap) == 0
            && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
        {
            return Err(c"dropping capabilities from the bounding set");
        }
    }
    if let Some((uid, gid)) = p.ids {
        // Keep the permitted set across the switch away from uid 0; it is cut down
        // to `caps` right after.
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(c"keeping capabilities across the user switch");
        }
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
            return Err(c"setting the task's groups");
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            return Err(c"setting the task's group id");
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return Err(c"setting the task's user id");
        }
    }
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| (caps >> shift) as u32;
    let data = [
        CapData {
            effective: half(0),
            permitted: half(0),
            inheritable: half(0),
        },
        CapData {
            effective: half(32),
            permitted: half(32),
            inheritable: half(32),
        },
    ];
    if libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) != 0 {
        return Err(c"setting the task's capabilities");
    }
    if libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        0,
        0,
    ) != 0
    {
        return Err(c"clearing the ambient capabilities");
    }
    if libc::geteuid() != 0 {
        for cap in 0..=p.last_cap.min(63) {
            if caps & (1 << cap) != 0
                && libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                ) != 0
            {
                return Err(c"raising the task's ambient capabilities");
            }
        }
    }
    Ok(())
}

/// Bits 0..=last_cap.
fn cap_mask(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

// ---- Below: code that runs in the cloned children. No allocation, no locks, no panics.

/// Reports `errno` and `what` to the agent and exits.
unsafe fn fail(err_w: RawFd, what: &CStr) -> ! {
    let errno = *libc::__errno_location();
    let mut buf = [0u8; 512];
    buf[..4].copy_from_slice(&errno.to_le_bytes());
    let bytes = what.to_bytes();
    let n = bytes.len().min(buf.len() - 4);
    buf[4..4 + n].copy_from_slice(&bytes[..n]);
    libc::write(err_w, buf.as_ptr().cast(), 4 + n);
    libc::_exit(127)
}

/// Closes every fd from 3 up except those in `keep` (sorted ascending, all > 2).
unsafe fn close_fds_except(keep: &[RawFd]) {
    let mut from: u32 = 3;
    let mut ok = true;
    for &k in keep {
        let k = k as u32;
        if k > from && libc::syscall(libc::SYS_close_range, from, k - 1, 0) != 0 {
            ok = false;
            break;
        }
        from = k + 1;
    }
    if ok && libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) == 0 {
        return;
    }
    // Kernels before 5.9: close them one by one.
    let mut lim: libc::rlimit = std::mem::zeroed();
    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
        lim.rlim_cur.min(65536) as RawFd
    } else {
        4096
    };
    for fd in 3..max {
        if !keep.contains(&fd) {
            libc::close(fd);
        }
    }
}

unsafe fn reset_signals() {
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
}

extern "C" fn forward(sig: libc::c_int) {
    let pid = TASK_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

unsafe fn run_op(op: &Op) -> libc::c_int {
    let null = std::ptr::null::<libc::c_char>();
    match op {
        Op::MakePrivate => libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ),
        Op::Bind { src, dst, remount } => {
            let r = libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            );
            if r != 0 || *remount == 0 {
                return r;
            }
            libc::mount(
                null,
                dst.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REMOUNT | remount,
                std::ptr::null(),
            )
        }
        Op::Tmpfs { dst, data, flags } => libc::mount(
            c"tmpfs".as_ptr(),
            dst.as_ptr(),
            c"tmpfs".as_ptr(),
            *flags,
            data.as_ptr().cast(),
        ),
        Op::Proc { dst } => libc::mount(
            c"proc".as_ptr(),
            dst.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ),
        Op::ReadOnly { path } => {
            let r = libc::mount(
                path.as_ptr(),
                path.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            );
            if r != 0 {
                return if *libc::__errno_location() == libc::ENOENT {
                    0
                } else {
                    r
                };
            }
            libc::mount(
                null,
                path.as_ptr(),
                null,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        }
        Op::Mask { path } => {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::stat(path.as_ptr(), &mut st) != 0 {
                return if *libc::__errno_location() == libc::ENOENT {
                    0
                } else {
                    -1
                };
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"size=4k,mode=555".as_ptr().cast(),
                )
            } else {
                libc::mount(
                    c"/dev/null".as_ptr(),
                    path.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            }
        }
        Op::Touch { path } => {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return -1;
            }
            libc::close(fd)
        }
        Op::Mkdir { path } => {
            let r = libc::mkdir(path.as_ptr(), 0o755);
            if r != 0 && *libc::__errno_location() == libc::EEXIST {
                0
            } else {
                r
            }
        }
        Op::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()),
        Op::PivotRoot { path } => {
            // pivot_root(".", "."): the old root ends up stacked on the new one, and is
            // detached at once (see pivot_root(2)). Nothing of the host stays reachable.
            if libc::chdir(path.as_ptr()) != 0
                || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
                || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            {
                return -1;
            }
            libc::chdir(c"/".as_ptr())
        }
        Op::Chdir { path } => libc::chdir(path.as_ptr()),
    }
}

/// PID 1 of the task's namespace.
unsafe fn run_init(
    plan: &ChildPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    groups: &[libc::gid_t],
) -> isize {
    // The agent's signal handlers make no sense here (and SIGCHLD must not be ignored).
    reset_signals();
    libc::dup2(plan.stdin, 0);
    libc::dup2(plan.stdout, 1);
    libc::dup2(plan.stderr, 2);
    let mut keep = [plan.go_r, plan.err_w, plan.status_w];
    keep.sort_unstable();
    close_fds_except(&keep);

    // Wait until the agent has put us into the task's cgroup.
    let mut b = [0u8; 1];
    if libc::read(plan.go_r, b.as_mut_ptr().cast(), 1) != 1 {
        libc::_exit(1);
    }
    libc::close(plan.go_r);
    libc::setsid();

    for (op, what) in &plan.ops {
        if run_op(op) != 0 {
            fail(plan.err_w, what.as_c_str());
        }
    }

    // Block the forwarded signals until the task's pid is known.
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    for &s in FORWARDED {
        libc::sigaddset(&mut set, s);
    }
    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());

    // glibc's fork() takes the malloc locks, which another thread of the agent may have
    // held when we were cloned: use the raw system call (a fork with SIGCHLD).
    let child = libc::syscall(
        libc::SYS_clone,
        libc::SIGCHLD as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    ) as libc::pid_t;
    if child < 0 {
        fail(plan.err_w, c"forking the task from its init process");
    }
    if child == 0 {
        run_task(plan, argv, envp, groups);
    }
    TASK_PID.store(child, Ordering::SeqCst);
    for &s in FORWARDED {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(s, &sa, std::ptr::null_mut());
    }
    libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    libc::close(plan.err_w);

    loop {
        let mut status: libc::c_int = 0;
        let r = libc::waitpid(-1, &mut status, 0);
        if r == child {
            libc::write(plan.status_w, (&status as *const libc::c_int).cast(), 4);
            let code = if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                libc::WEXITSTATUS(status)
            };
            libc::_exit(code);
        }
        if r < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(255);
        }
    }
}

/// The task itself: drop to the user, then exec.
unsafe fn run_task(
    plan: &ChildPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    groups: &[libc::gid_t],
) -> ! {
    reset_signals();
    libc::setpgid(0, 0);
    // init runs with oom_score_adj -1000 so the OOM killer picks the task; the task
    // gets the default back.
    let fd = libc::open(
        c"/proc/self/oom_score_adj".as_ptr(),
        libc::O_WRONLY | libc::O_CLOEXEC,
    );
    if fd >= 0 {
        libc::write(fd, c"0".as_ptr().cast(), 1);
        libc::close(fd);
    }
    if let Err(what) = drop_privileges(&plan.privileges, groups) {
        fail(plan.err_w, what);
    }
    let mut last = libc::ENOENT;
    for c in &plan.candidates {
        libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let e = *libc::__errno_location();
        // Keep the most telling error: "permission denied" beats "not found".
        if e != libc::ENOENT || last == libc::ENOENT {
            last = e;
        }
    }
    *libc::__errno_location() = last;
    fail(plan.err_w, &plan.exec_what);
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
