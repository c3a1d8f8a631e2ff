//! The task's root: mount points made before `clone`, mount steps `init` runs, then
//! `pivot_root` into it.

use super::*;

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

/// One step of building the task's root, run by `init`.
pub(super) enum Op {
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

/// `root` joined with the absolute in-task path `p`.
fn inside(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
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
// One function on purpose: the steps are listed in the order init runs them, so reading
// it top to bottom is reading the task's root being built, mount by mount.
pub(super) fn plan_root(spec: &Spec) -> io::Result<Vec<(Op, CString)>> {
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

// One arm per mount step, each a single raw system call or two: split up, the
// async-signal-safety argument would be spread over many functions.
pub(super) unsafe fn run_op(op: &Op) -> libc::c_int {
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
