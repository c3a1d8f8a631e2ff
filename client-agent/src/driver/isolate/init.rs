//! Code that runs in the cloned children: the task namespace's init (PID 1: forwards
//! signals, reaps, reports the task's status) and the task itself. No allocation, no
//! locks, no panics.

use super::mounts::run_op;
use super::*;

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

/// PID 1 of the task's namespace.
// One function on purpose: PID 1 runs the root steps, forks the task and reaps, with
// no allocation; its order of operations is what keeps it async-signal-safe.
pub(super) unsafe fn run_init(
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
