//! Running a command inside a live task: its namespaces, root, user and capabilities.

use crate::driver::caps::{self, CapSet};
use crate::driver::isolate::{self, Privileges};
use crate::driver::process;
use crate::driver::DriverError;

/// The task's first process under its init, whose environment and credentials an exec
/// takes (init itself if the task cannot be found).
pub(super) fn task_process(init: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(init)
}

/// How long an exec waits for a task caught in the middle of `execve` to have an
/// environment again.
const ENVIRON_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The environment of the task's process `task`. Read while the process is in the middle
/// of `execve`, `/proc/<pid>/environ` can be empty (the new memory is in place, its
/// environment not yet) or cut short (the old memory is being torn down), so a read
/// counts only when it is not empty and a second read, opened afresh right after it,
/// gives the same: both cut short would need two `execve`s to finish between them.
/// Every task this driver starts has at least the `NOMAD_*` variables; after
/// [`ENVIRON_SETTLE`] the last read is taken as it is.
async fn task_environ(task: i32) -> Result<Vec<(String, String)>, DriverError> {
    let read = || {
        process::environ(task)
            .map_err(|e| DriverError::Exec(format!("reading the task's environment: {e}")))
    };
    let deadline = tokio::time::Instant::now() + ENVIRON_SETTLE;
    loop {
        let env = read()?;
        if (!env.is_empty() && env == read()?) || tokio::time::Instant::now() >= deadline {
            return Ok(env);
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Effective uid, gid and supplementary groups of `pid`, from `/proc/<pid>/status`.
/// `None` when it cannot be read (the task is gone).
fn ids_of(pid: i32) -> Option<(u32, u32, Vec<libc::gid_t>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key));
    let second = |key: &str| -> Option<u32> { field(key)?.split_whitespace().nth(1)?.parse().ok() };
    let groups = field("Groups:")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    Some((second("Uid:")?, second("Gid:")?, groups))
}

/// Spawns `cmd` inside the namespaces and root of the task whose init is `init`, as the
/// task's user with the task's capabilities and `no_new_privs`.
///
/// The forked child (single-threaded, so `setns` into a mount namespace is allowed) joins
/// the IPC, UTS, PID and mount namespaces through descriptors opened beforehand, enters
/// the task's root, and forks once more, since joining a PID namespace only applies to
/// children: the grandchild runs the command as PID N inside the task's namespace while
/// the child waits and exits with its status. Only raw system calls run after the fork.
// One function on purpose: everything is prepared before the fork and the child's steps
// follow in order, so the async-signal-safety of what runs after it reads in one place.
pub(super) async fn enter_task(
    init: i32,
    cmd: &[String],
    caps: CapSet,
) -> Result<tokio::process::Child, DriverError> {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt as _;
    let task = task_process(init);
    let env = task_environ(task).await?;
    let open = |p: String| -> Result<OwnedFd, DriverError> {
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(|e| DriverError::Exec(format!("opening {p}: {e}")))
    };
    let ns: Vec<OwnedFd> = ["ipc", "uts", "pid", "mnt"]
        .iter()
        .map(|n| open(format!("/proc/{init}/ns/{n}")))
        .collect::<Result<_, _>>()?;
    let root = open(format!("/proc/{task}/root"))?;
    let (uid, gid, groups) =
        ids_of(task).ok_or_else(|| DriverError::Exec("the task is not running".into()))?;
    let privileges = Privileges {
        ids: Some((uid, gid)),
        caps: caps.bits(),
        last_cap: caps::kernel_last_cap(),
    };
    let ns_fds: Vec<i32> = ns.iter().map(|f| f.as_raw_fd()).collect();
    let root_fd = root.as_raw_fd();
    let mut command = std::process::Command::new(&cmd[0]);
    command
        .args(&cmd[1..])
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs between fork and execve in a single-threaded child and
    // only makes raw system calls on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            for fd in &ns_fds {
                if libc::setns(*fd, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::fchdir(root_fd) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if isolate::drop_privileges(&privileges, &groups).is_err() {
                return Err(std::io::Error::last_os_error());
            }
            // A raw fork (clone with SIGCHLD): glibc's fork takes locks.
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if pid == 0 {
                return Ok(());
            }
            let mut status = 0;
            loop {
                let r = libc::waitpid(pid as i32, &mut status, 0);
                if r == pid as i32 {
                    break;
                }
                if r < 0 && *libc::__errno_location() != libc::EINTR {
                    libc::_exit(127);
                }
            }
            if libc::WIFEXITED(status) {
                libc::_exit(libc::WEXITSTATUS(status));
            }
            libc::_exit(128 + libc::WTERMSIG(status));
        });
    }
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::Exec(format!("running {:?} in the task: {e}", cmd[0])))?;
    drop(ns);
    drop(root);
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that re-executes itself without end is in the middle of `execve` now and
    /// then; read there, `/proc/<pid>/environ` is empty or cut short. Every read of its
    /// environment through `task_environ` still finds the variable it always has.
    #[tokio::test]
    async fn a_task_caught_mid_execve_still_shows_its_environment() {
        /// Kills the looping process however the test ends (a failed assertion too).
        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = KillOnDrop(
            std::process::Command::new("/bin/sh")
                .args(["-c", r#"exec /bin/sh -c "$0" "$0""#])
                .arg(r#"exec /bin/sh -c "$0" "$0""#)
                .env_clear()
                .env("FROM_TASK", "yes")
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id() as i32;
        let (mut torn, mut reads) = (0, 0);
        for _ in 0..400 {
            let plain = process::environ(pid).unwrap();
            if !plain.iter().any(|(k, _)| k == "FROM_TASK") {
                torn += 1;
            }
            let env = task_environ(pid).await.unwrap();
            assert!(
                env.iter().any(|(k, v)| k == "FROM_TASK" && v == "yes"),
                "{env:?}"
            );
            reads += 1;
        }
        drop(child);
        // Not asserted (it depends on timing), shown to tell that the race was met.
        eprintln!("{torn} of {reads} plain reads were empty or cut short");
    }
}
