//! Processes on this machine (`/proc`): memory, descendants, and the fork+exec floor.

use super::*;

/// `(pid, ppid, comm, start time)` of every process, from `/proc/<pid>/stat`.
pub fn processes() -> Vec<(u32, u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let comm = text[open + 1..close].to_string();
        let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
        // fields[0] is field 3 (state): ppid is field 4, start time field 22.
        let ppid = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        let start = fields.get(19).and_then(|v| v.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, comm, start));
    }
    out
}

/// Every descendant of `root` (not `root` itself), as `(pid, ppid, comm, start time)`.
pub fn descendants(root: u32) -> Vec<(u32, u32, String, u64)> {
    let all = processes();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for pr in all.iter().filter(|x| x.1 == p) {
            frontier.push(pr.0);
            found.push(pr.clone());
        }
    }
    found
}

/// A bare fork+exec of /bin/true, spawn to wait: the floor under starting any process.
pub fn fork_exec_floor(n: usize) -> Duration {
    let mut lat = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let st = Command::new("/bin/true").status();
        lat.push(t.elapsed());
        assert!(matches!(st, Ok(s) if s.success()), "/bin/true failed");
    }
    median(lat)
}
