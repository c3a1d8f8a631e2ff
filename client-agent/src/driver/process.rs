//! Linux process facts the drivers need: a process's start time (to tell a reused pid
//! from ours), liveness, and signalling a whole process group.
//!
//! Everything here reads `/proc` directly, so it works for processes this agent did not
//! spawn (tasks reattached after an agent restart).

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::str::FromStr;
use std::time::Duration;

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// One letter: R, S, D, Z (zombie), T, X (dead), ...
    pub state: char,
    pub pgrp: i32,
    /// Field 22: clock ticks after boot at which the process started.
    pub start_time: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

pub fn read_stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time (field 22 of `/proc/<pid>/stat`) of a process, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_time)
}

/// Is `pid` a live (non-zombie) process that started at `start_time`? A pid the kernel
/// handed to another process since then has a different start time.
pub fn is_same_process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match signal::kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    match read_stat(pid) {
        Some(st) => st.start_time == start_time && !matches!(st.state, 'Z' | 'X'),
        None => false,
    }
}

/// Does any live (non-zombie) process belong to process group `pgid`?
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            .and_then(read_stat)
            .is_some_and(|st| st.pgrp == pgid && !matches!(st.state, 'Z' | 'X'))
    })
}

/// The live processes of group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    if pgid <= 1 {
        return vec![];
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            read_stat(*pid).is_some_and(|st| st.pgrp == pgid && !matches!(st.state, 'Z' | 'X'))
        })
        .collect()
}

/// Memory and CPU of a set of processes, summed, from `/proc/<pid>/stat` and `statm`.
pub fn usage_of(pids: &[i32]) -> super::UsageSample {
    // SAFETY: sysconf has no preconditions.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as u64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
        )
    };
    let mut u = super::UsageSample {
        measured_memory: vec!["RSS"],
        measured_cpu: vec!["System Mode", "User Mode", "Percent"],
        ..Default::default()
    };
    for pid in pids {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // Fields 14 and 15 (utime, stime) are f[11] and f[12].
                let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                u.cpu_user_ns += field(11) * 1_000_000_000 / tick;
                u.cpu_system_ns += field(12) * 1_000_000_000 / tick;
            }
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/statm")) {
            let rss: u64 = text
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            u.rss_bytes += rss * page;
        }
    }
    u.usage_bytes = u.rss_bytes;
    u.cpu_total_ns = u.cpu_user_ns + u.cpu_system_ns;
    u
}

/// A process's environment, from `/proc/<pid>/environ`.
pub fn environ(pid: i32) -> std::io::Result<Vec<(String, String)>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// Sends `sig` to every process of group `pgid`. A group that is already gone is fine.
pub fn signal_group(pgid: i32, sig: Signal) -> Result<(), Errno> {
    if pgid <= 1 {
        // Never signal group 0 (our own) or 1 by accident.
        return Err(Errno::EINVAL);
    }
    match signal::killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Polls `done` every `every` until it holds (true) or `timeout` has passed (false).
/// Processes that are not our children (and cgroups) give no event to wait on.
pub async fn poll_until(
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until group `pgid` has no live process, polling; false if `timeout` passed first.
pub async fn wait_group_gone(pgid: i32, timeout: Duration) -> bool {
    poll_until(timeout, Duration::from_millis(50), || !group_alive(pgid)).await
}

/// How often a task recovered after an agent restart is checked for liveness.
pub const RECOVERED_POLL: Duration = Duration::from_millis(250);

/// Waits, however long it runs, until the task's own process is gone, and tells its
/// exit as unknown. For tasks recovered after an agent restart: they are not our
/// children, so there is no exit status to wait for.
pub async fn recovered_exit(handle: &super::TaskHandle) -> super::ExitResult {
    while is_same_process_alive(handle.pid, handle.start_time) {
        tokio::time::sleep(RECOVERED_POLL).await;
    }
    super::ExitResult {
        exit_code: -1,
        err: Some(super::EXIT_UNKNOWN_AFTER_RECOVERY.into()),
        ..Default::default()
    }
}

/// A task's `kill_signal`, SIGTERM when unset or unknown (with a warning).
pub fn kill_signal_or_term(signal: &str) -> Signal {
    if signal.trim().is_empty() {
        return Signal::SIGTERM;
    }
    parse_signal(signal).unwrap_or_else(|| {
        tracing::warn!(signal, "unknown kill_signal, sending SIGTERM");
        Signal::SIGTERM
    })
}

/// Sends the task's process (its init, for exec) a named signal, after checking that the
/// pid still belongs to the process the handle recorded (a reused pid is never signalled).
pub fn signal_task(handle: &super::TaskHandle, signal: &str) -> Result<(), super::DriverError> {
    use super::DriverError;
    let sig = parse_signal(signal)
        .ok_or_else(|| DriverError::Signal(format!("unknown signal {signal:?}")))?;
    if !is_same_process_alive(handle.pid, handle.start_time) {
        return Err(DriverError::Signal("the task is not running".into()));
    }
    signal::kill(Pid::from_raw(handle.pid), sig)
        .map_err(|e| DriverError::Signal(format!("sending {sig} to the task: {e}")))
}

/// Parses a signal name as jobspecs write it: `SIGTERM`, `TERM`, `sigint` or a number.
pub fn parse_signal(name: &str) -> Option<Signal> {
    let n = name.trim();
    if n.is_empty() {
        return None;
    }
    if let Ok(num) = n.parse::<i32>() {
        return Signal::try_from(num).ok();
    }
    let upper = n.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_spaces_and_parens_in_the_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.pgrp, 1234);
        assert_eq!(st.start_time, 98765);
    }

    #[test]
    fn our_own_process_is_alive_with_its_start_time_only() {
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert!(is_same_process_alive(me, st));
        assert!(!is_same_process_alive(me, st + 1));
    }

    #[test]
    fn signal_names_parse_in_every_spelling() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("int"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGBOGUS"), None);
        assert_eq!(parse_signal(""), None);
    }
}

/// A receiver that yields a spawned task's exit once it is known.
pub type ExitRx = tokio::sync::watch::Receiver<Option<super::ExitResult>>;

/// The tasks a driver instance spawned itself, by (pid, start time), with their exits.
/// Reattached tasks are not here: they are not our children and are polled instead.
#[derive(Debug, Default)]
pub struct Children(std::sync::Mutex<std::collections::HashMap<(i32, u64), ExitRx>>);

impl Children {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(i32, u64), ExitRx>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, pid: i32, start_time: u64, rx: ExitRx) {
        self.lock().insert((pid, start_time), rx);
    }

    /// Records the task `pid` started at `start_time`, whose exit `reaper` yields, and
    /// runs `reaper` in the background.
    pub fn spawn_reaper(
        &self,
        pid: i32,
        start_time: u64,
        reaper: impl std::future::Future<Output = super::ExitResult> + Send + 'static,
    ) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        self.insert(pid, start_time, rx);
        tokio::spawn(async move {
            let _ = tx.send(Some(reaper.await));
        });
    }

    pub fn get(&self, handle: &super::TaskHandle) -> Option<ExitRx> {
        self.lock().get(&(handle.pid, handle.start_time)).cloned()
    }

    pub fn forget(&self, handle: &super::TaskHandle) {
        self.lock().remove(&(handle.pid, handle.start_time));
    }

    /// Waits for the exit of a task this driver spawned, then forgets it; `None` for a
    /// task it did not spawn. `reaper` names what delivers the exit, for the error if it
    /// went away first.
    pub async fn wait(
        &self,
        handle: &super::TaskHandle,
        reaper: &str,
    ) -> Option<super::ExitResult> {
        let rx = self.get(handle)?;
        let res = await_exit(rx, reaper).await;
        self.forget(handle);
        Some(res)
    }
}

/// The exit `rx` yields; an unknown exit if its sender (`reaper`) went away first.
pub async fn await_exit(mut rx: ExitRx, reaper: &str) -> super::ExitResult {
    match rx.wait_for(|r| r.is_some()).await {
        Ok(r) => r.clone().expect("checked by wait_for"),
        Err(_) => super::ExitResult {
            exit_code: -1,
            err: Some(format!("{reaper} went away")),
            ..Default::default()
        },
    }
}
