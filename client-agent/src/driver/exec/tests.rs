//! The exec driver's reaping, stop and recover logic over an in-memory cgroup hierarchy
//! (`cgroups::fake`), with real processes standing in for the task's init and its
//! children. Launching a task needs root and is covered by `tests/exec_driver.rs`.

use super::*;
use crate::cgroups::fake::{FakeCgroup, FakeHierarchy};
use crate::driver::EXIT_UNKNOWN_AFTER_RECOVERY;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};

/// How long any of these tests may wait for the driver before it counts as stuck.
const STUCK: Duration = Duration::from_secs(20);

fn driver(cgroups: &FakeHierarchy) -> ExecDriver {
    ExecDriver::with_cgroups(ExecConfig::default(), Ok(Arc::new(cgroups.clone())))
}

fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

/// A handle on a task whose init is `init` and whose cgroup is `cgroup`.
fn handle(init: &Child, cgroup: &str) -> TaskHandle {
    let pid = init.id() as i32;
    TaskHandle {
        driver: NAME.into(),
        task_id: "a1/web".into(),
        pid,
        pgid: pid,
        start_time: process::start_time(pid).unwrap(),
        driver_state: serde_json::to_value(ExecState {
            cgroup: cgroup.into(),
            cgroup_version: "v2".into(),
            ..Default::default()
        })
        .unwrap(),
    }
}

/// The task's cgroup, created in `cgroups`, with `members` in it.
fn task_cgroup(cgroups: &FakeHierarchy, members: &[&Child]) -> FakeCgroup {
    cgroups.create("a1.web", &Limits::default()).unwrap();
    let cg = cgroups.get("a1.web");
    for m in members {
        cg.add_process(m.id() as i32).unwrap();
    }
    cg
}

/// Stops the task of `h` with `signal` and `timeout`; panics if stop itself hangs.
async fn stop(cgroups: &FakeHierarchy, h: &TaskHandle, signal: &str, timeout: Duration) {
    let d = driver(cgroups);
    let res = tokio::time::timeout(STUCK, d.stop(h, signal, timeout)).await;
    res.expect("stop hung").unwrap();
}

/// A task whose init has exited (and was reaped) while `straggler` is still in its
/// cgroup: its handle, the straggler and the cgroup.
fn init_gone_straggler_left(cgroups: &FakeHierarchy) -> (TaskHandle, Child, FakeCgroup) {
    let mut init = sleeper();
    let h = handle(&init, "a1.web");
    init.kill().unwrap();
    init.wait().unwrap();
    let straggler = sleeper();
    let cg = task_cgroup(cgroups, &[&straggler]);
    (h, straggler, cg)
}

/// The signal that ended `child` (reaping it).
fn killed_by(child: &mut Child) -> Option<i32> {
    child.wait().unwrap().signal()
}

/// Reaping kills what is left in the task's cgroup before removing the cgroup, and
/// reports the task's own status (the one init passes on).
#[tokio::test]
async fn reaping_empties_the_cgroup_reports_its_oom_kill_and_removes_it() {
    use std::io::Write;
    let cg = FakeCgroup::new("a1.web");
    let mut straggler = sleeper();
    cg.add_process(straggler.id() as i32).unwrap();
    cg.set_oom_killed();
    // init's stand-in exits at once; like init, the pipe carries the task's raw wait
    // status (exit code 3).
    let init = Command::new("true").spawn().unwrap().id() as i32;
    let (mut w, r) = std::os::unix::net::UnixStream::pair().unwrap();
    w.write_all(&(3i32 << 8).to_ne_bytes()).unwrap();
    drop(w);
    let status_pipe = std::fs::File::from(std::os::fd::OwnedFd::from(r));
    let res = reap(init, status_pipe, Box::new(cg.clone())).await;
    assert_eq!(killed_by(&mut straggler), Some(libc::SIGKILL));
    assert_eq!((res.exit_code, res.signal), (3, 0), "{res:?}");
    assert!(res.oom_killed, "{res:?}");
    assert!(!cg.exists());
    assert_eq!(cg.removals(), 1);
}

/// init would pass the kill signal on to the task a second time, so stop sends it to
/// every other process of the cgroup; init itself gets SIGKILL once the timeout passed.
#[tokio::test]
async fn stop_signals_the_cgroup_but_init_then_kills_init_after_the_timeout() {
    let cgroups = FakeHierarchy::new();
    let (mut init, mut task) = (sleeper(), sleeper());
    task_cgroup(&cgroups, &[&init, &task]);
    let h = handle(&init, "a1.web");
    stop(&cgroups, &h, "SIGINT", Duration::from_millis(200)).await;
    assert_eq!(killed_by(&mut task), Some(libc::SIGINT));
    assert_eq!(killed_by(&mut init), Some(libc::SIGKILL));
}

/// With no process in its cgroup (or no cgroup named in the handle) the signal goes to
/// init, and stop returns once init is gone, before the timeout.
#[tokio::test]
async fn stop_signals_init_when_the_cgroup_holds_nothing_else() {
    let cgroups = FakeHierarchy::new();
    task_cgroup(&cgroups, &[]);
    let mut init = sleeper();
    stop(&cgroups, &handle(&init, "a1.web"), "", STUCK).await;
    assert_eq!(killed_by(&mut init), Some(libc::SIGTERM));

    let mut init = sleeper();
    let mut h = handle(&init, "a1.web");
    h.driver_state = serde_json::Value::Null;
    stop(&cgroups, &h, "SIGHUP", STUCK).await;
    assert_eq!(killed_by(&mut init), Some(libc::SIGHUP));
}

/// A task whose init is already gone can still have processes in its cgroup: stop
/// SIGKILLs them and waits until the cgroup is empty.
#[tokio::test]
async fn stop_kills_what_is_left_in_the_cgroup_after_init_died() {
    let cgroups = FakeHierarchy::new();
    let (h, mut straggler, cg) = init_gone_straggler_left(&cgroups);
    stop(&cgroups, &h, "SIGTERM", STUCK).await;
    assert_eq!(killed_by(&mut straggler), Some(libc::SIGKILL));
    assert!(cg.procs().is_empty());
    // Removing the cgroup is the reaper's (or recovery's) job, not stop's.
    assert!(cg.exists());
}

#[tokio::test]
async fn recovering_a_running_task_keeps_it_and_its_cgroup() {
    let cgroups = FakeHierarchy::new();
    let mut init = sleeper();
    let cg = task_cgroup(&cgroups, &[&init]);
    let recovered = driver(&cgroups).recover(&handle(&init, "a1.web")).await;
    assert!(recovered.unwrap());
    assert_eq!(cg.procs(), vec![init.id() as i32]);
    assert!(cg.exists());
    init.kill().unwrap();
    init.wait().unwrap();
}

/// A task that ended while the agent was away is not recovered, and what it left in
/// its cgroup is killed and the cgroup removed.
#[tokio::test]
async fn recovering_a_vanished_task_clears_its_cgroup() {
    let cgroups = FakeHierarchy::new();
    let (h, mut straggler, cg) = init_gone_straggler_left(&cgroups);
    let recovered = tokio::time::timeout(STUCK, driver(&cgroups).recover(&h)).await;
    assert!(!recovered.unwrap().unwrap());
    assert_eq!(killed_by(&mut straggler), Some(libc::SIGKILL));
    assert!(!cg.exists());
    assert_eq!(cg.removals(), 1);
}

/// Waiting on a task recovered after an agent restart (not our child) ends when its
/// init does; the exit status is unknown, but an OOM kill in its cgroup is reported and
/// the cgroup removed.
#[tokio::test]
async fn waiting_on_a_recovered_task_reports_an_unknown_exit_and_its_oom_kill() {
    let cgroups = FakeHierarchy::new();
    let mut init = sleeper();
    let cg = task_cgroup(&cgroups, &[&init]);
    cg.set_oom_killed();
    let h = handle(&init, "a1.web");
    let d = driver(&cgroups);
    let mut wait = tokio::spawn(async move { d.wait(&h).await });
    let early = tokio::time::timeout(process::RECOVERED_POLL * 2, &mut wait).await;
    assert!(early.is_err(), "wait returned while init ran: {early:?}");
    init.kill().unwrap();
    init.wait().unwrap();
    let res = tokio::time::timeout(STUCK, wait).await.unwrap().unwrap();
    assert_eq!(res.exit_code, -1);
    assert_eq!(res.err.as_deref(), Some(EXIT_UNKNOWN_AFTER_RECOVERY));
    assert!(res.oom_killed, "{res:?}");
    assert!(!cg.exists());
}

/// Without a usable cgroup hierarchy the driver is detected but unhealthy, saying why;
/// with one it can create and remove a cgroup in, it is healthy (as root).
#[tokio::test]
async fn fingerprint_is_unhealthy_without_usable_cgroups() {
    let none = ExecDriver::with_cgroups(ExecConfig::default(), Err("no memory controller".into()));
    let info = none.fingerprint().await.unwrap();
    assert!(info.detected && !info.healthy, "{info:?}");
    let root = nix::unistd::geteuid().is_root();
    if root {
        assert_eq!(
            info.health_description,
            "the exec driver needs cgroups: no memory controller"
        );
    }
    let cgroups = FakeHierarchy::new();
    let info = driver(&cgroups).fingerprint().await.unwrap();
    assert_eq!(info.healthy, root, "{info:?}");
    // The probe cleaned up after itself.
    let probe = cgroups.get(&format!("probe-{}", std::process::id()));
    assert!(!probe.exists());
    assert_eq!(probe.removals(), usize::from(root));
}
