//! The exec driver on this machine's real kernel: namespaces, chroot, users and cgroups
//! (v1 or v2, whichever the machine has).

mod common;

use client_agent::driver::process;
use client_agent::driver::{Driver, ExecDriver, FsIsolation, TaskContext, TaskHandle};
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn exec_driver() -> ExecDriver {
    ExecDriver::new(Default::default())
}

fn sh(name: &str, script: &str) -> api::Task {
    task(
        name,
        "exec",
        serde_json::json!({ "command": "/bin/sh", "args": ["-c", script] }),
    )
}

fn ctx(root: &Path, test: &str, t: api::Task) -> TaskContext {
    task_ctx(root, &alloc_id(test), t, vec![], FsIsolation::Chroot)
}

fn cgroup_paths(h: &TaskHandle) -> Vec<PathBuf> {
    serde_json::from_value(h.driver_state["cgroup_paths"].clone()).unwrap()
}

fn procs_of(h: &TaskHandle) -> Vec<i32> {
    std::fs::read_to_string(cgroup_paths(h)[0].join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Kills whatever a test leaves in its cgroup and removes the cgroup.
struct CgroupGuard(Vec<PathBuf>);
impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for dir in &self.0 {
            for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in &self.0 {
            while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

async fn wait_gone(paths: &[PathBuf]) {
    poll(
        Duration::from_secs(10),
        "the task's cgroup to be removed",
        || async { paths.iter().all(|p| !p.exists()).then_some(()) },
    )
    .await
}

#[tokio::test]
async fn exec_fingerprint_is_healthy_and_names_the_cgroup_version() {
    let info = exec_driver().fingerprint().await.unwrap();
    assert!(info.detected);
    assert!(
        info.healthy,
        "exec unhealthy here: {}",
        info.health_description
    );
    let h = client_agent::cgroups::detect().unwrap();
    let v = h.version().to_string();
    assert!(v == "v1" || v == "v2");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = client_agent::AgentConfig {
        data_dir: tmp.path().to_path_buf(),
        http_addr: "127.0.0.1:4646".into(),
        ..Default::default()
    };
    let node = client_agent::fingerprint::fingerprint(
        &cfg,
        &client_agent::driver::Drivers::from_config(false),
    )
    .await
    .unwrap();
    assert_eq!(node.attributes["unique.cgroup.version"], v);
    assert_eq!(
        node.attributes["unique.cgroup.mountpoint"],
        h.mountpoint().display().to_string()
    );
    assert_eq!(node.attributes["driver.exec"], "1");
    assert!(node.drivers["exec"].healthy);
    // raw_exec stays opt-in.
    assert!(!node.drivers.contains_key("raw_exec"));
}

#[tokio::test]
async fn exec_task_cannot_see_host_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(
        tmp.path(),
        "pidns",
        sh(
            "ps",
            "for p in /proc/[0-9]*; do echo ${p#/proc/}; done; echo done",
        ),
    );
    let d = exec_driver();
    let h = d.start(&c).await.unwrap();
    let _g = CgroupGuard(cgroup_paths(&h));
    let res = tokio::time::timeout(Duration::from_secs(20), d.wait(&h))
        .await
        .unwrap();
    assert!(
        res.successful(),
        "{res:?}: {}",
        std::fs::read_to_string(&c.dirs.stderr).unwrap()
    );
    let out = std::fs::read_to_string(&c.dirs.stdout).unwrap();
    let pids: Vec<i32> = out.lines().filter_map(|l| l.parse().ok()).collect();
    // Only its init (1) and the shell (2) exist in its PID namespace.
    assert_eq!(pids, vec![1, 2], "{out}");
    let host_procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<i32>().is_ok())
        .count();
    assert!(
        host_procs > 2,
        "the host should have more processes than the task sees"
    );
    wait_gone(&cgroup_paths(&h)).await;
}

#[tokio::test]
async fn exec_task_runs_chrooted_as_the_given_user_with_its_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = sh(
        "who",
        "id -u; id -g; echo $NOMAD_TASK_DIR $NOMAD_ALLOC_DIR; touch /local/mine && echo wrote; \
         echo shared > /alloc/data/x 2>/dev/null || echo no-alloc-write; \
         touch /usr/evil 2>/dev/null || echo usr-readonly; ls /",
    );
    t.user = "nobody".into();
    let c = ctx(tmp.path(), "user", t);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let d = exec_driver();
    let h = d.start(&c).await.unwrap();
    let _g = CgroupGuard(cgroup_paths(&h));
    let res = tokio::time::timeout(Duration::from_secs(20), d.wait(&h))
        .await
        .unwrap();
    let out = std::fs::read_to_string(&c.dirs.stdout).unwrap();
    let err = std::fs::read_to_string(&c.dirs.stderr).unwrap();
    assert!(res.successful(), "{res:?}\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string(), "{out}");
    assert_eq!(lines[1], nobody.gid.to_string(), "{out}");
    assert_eq!(lines[2], "/local /alloc");
    assert_eq!(lines[3], "wrote");
    assert!(out.contains("usr-readonly"), "{out}");
    // The task's root is its task dir: local/ and secrets/ are there, the host's
    // home directories are not.
    assert!(
        lines.contains(&"local") && lines.contains(&"secrets"),
        "{out}"
    );
    assert!(
        !lines.contains(&"root") && !lines.contains(&"work"),
        "{out}"
    );
    let meta = std::fs::metadata(c.dirs.local.join("mine")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        nobody.uid.as_raw()
    );
}

#[tokio::test]
async fn exec_cgroup_carries_the_limits_and_is_removed_when_the_task_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = with_memory(
        sh(
            "limits",
            "echo up; while [ ! -e /local/go ]; do sleep 0.05; done",
        ),
        64,
        128,
    );
    t.resources.as_mut().unwrap().cpu = 300;
    let c = ctx(tmp.path(), "limits", t);
    let d = exec_driver();
    let h = d.start(&c).await.unwrap();
    let paths = cgroup_paths(&h);
    let _g = CgroupGuard(paths.clone());
    wait_for_content(&c.dirs.stdout, "up").await;
    let read = |file: &str| {
        paths
            .iter()
            .map(|p| p.join(file))
            .find(|p| p.exists())
            .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
    };
    match h.driver_state["cgroup_version"].as_str().unwrap() {
        "v1" => {
            assert_eq!(
                read("memory.limit_in_bytes").unwrap(),
                (128u64 << 20).to_string()
            );
            assert_eq!(
                read("memory.soft_limit_in_bytes").unwrap(),
                (64u64 << 20).to_string()
            );
            assert_eq!(read("cpu.shares").unwrap(), "300");
        }
        _ => {
            assert_eq!(read("memory.max").unwrap(), (128u64 << 20).to_string());
            assert_eq!(read("memory.low").unwrap(), (64u64 << 20).to_string());
        }
    }
    // The task's init and the shell (and its sleeps) are in the cgroup.
    assert!(procs_of(&h).contains(&h.pid));
    std::fs::write(c.dirs.local.join("go"), "").unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), d.wait(&h))
        .await
        .unwrap();
    assert!(res.successful(), "{res:?}");
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[tokio::test]
async fn exec_task_over_its_memory_limit_is_oom_killed_and_reported_so() {
    let tmp = tempfile::tempdir().unwrap();
    let alloc = alloc_id("oom");
    let t = with_memory(sh("hog", "a=x; while true; do a=\"$a$a\"; done"), 32, 0);
    let events = run_to_death(Arc::new(exec_driver()), tmp.path(), &alloc, t).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let oom = types.iter().position(|t| *t == "OOM Killed");
    let term = types.iter().position(|t| *t == "Terminated");
    assert!(oom.is_some() && term.is_some() && oom < term, "{types:?}");
    let term = &events[term.unwrap()];
    assert_eq!(term.detail().signal, 9, "{term:?}");
    assert!(
        term.display_message.contains("OOM Killed"),
        "{}",
        term.display_message
    );
}

#[tokio::test]
async fn exec_stop_kills_every_process_in_the_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    // Everything ignores SIGTERM, and some of it is detached from the shell.
    let c = ctx(
        tmp.path(),
        "orphans",
        sh(
            "family",
            "trap '' TERM; (sleep 300 &) ; (trap '' TERM; sleep 300) & sleep 300 & echo ready; wait",
        ),
    );
    let d = exec_driver();
    let h = d.start(&c).await.unwrap();
    let paths = cgroup_paths(&h);
    let _g = CgroupGuard(paths.clone());
    wait_for_content(&c.dirs.stdout, "ready").await;
    let procs = poll(Duration::from_secs(10), "the task's processes", || async {
        let p = procs_of(&h);
        (p.len() >= 5).then_some(p)
    })
    .await;
    let started: Vec<(i32, u64)> = procs
        .iter()
        .filter_map(|p| process::start_time(*p).map(|t| (*p, t)))
        .collect();
    let t0 = Instant::now();
    d.stop(&h, "SIGTERM", Duration::from_millis(500))
        .await
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "SIGKILL came early"
    );
    for (pid, st) in &started {
        assert!(
            !process::is_same_process_alive(*pid, *st),
            "pid {pid} survived stop"
        );
    }
    let res = tokio::time::timeout(Duration::from_secs(20), d.wait(&h))
        .await
        .unwrap();
    assert!(!res.successful(), "{res:?}");
    wait_gone(&paths).await;
}

#[tokio::test]
async fn exec_stop_lets_a_cooperative_task_exit_on_its_kill_signal() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(
        tmp.path(),
        "polite",
        sh(
            "polite",
            "trap 'echo got-int; exit 0' INT; echo ready; while true; do sleep 0.05; done",
        ),
    );
    let d = exec_driver();
    let h = d.start(&c).await.unwrap();
    let _g = CgroupGuard(cgroup_paths(&h));
    wait_for_content(&c.dirs.stdout, "ready").await;
    let t0 = Instant::now();
    d.stop(&h, "SIGINT", Duration::from_secs(20)).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    let res = d.wait(&h).await;
    assert_eq!(res.exit_code, 0, "{res:?}");
    assert!(std::fs::read_to_string(&c.dirs.stdout)
        .unwrap()
        .contains("got-int"));
}

#[tokio::test]
async fn exec_recover_reattaches_by_pid_and_finds_the_cgroup_again() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(tmp.path(), "recover", sh("long", "echo up; exec sleep 300"));
    // The first agent starts the task, then dies with all its tasks.
    let h = std::thread::spawn({
        let c = c.clone();
        move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let h = rt.block_on(async { exec_driver().start(&c).await.unwrap() });
            drop(rt);
            h
        }
    })
    .join()
    .unwrap();
    let paths = cgroup_paths(&h);
    let _g = CgroupGuard(paths.clone());
    wait_for_content(&c.dirs.stdout, "up").await;

    let persisted: TaskHandle = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
    let d = Arc::new(exec_driver());
    assert!(d.recover(&persisted).await.unwrap());
    assert!(
        process::is_same_process_alive(h.pid, h.start_time),
        "the task was restarted"
    );
    let waiter = tokio::spawn({
        let (h, d) = (persisted.clone(), d.clone());
        async move { d.wait(&h).await }
    });
    d.stop(&persisted, "SIGTERM", Duration::from_secs(5))
        .await
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        res.exit_code, -1,
        "a recovered task's exit status is unknown: {res:?}"
    );
    wait_gone(&paths).await;
    // A task that is gone is not recovered.
    assert!(!exec_driver().recover(&persisted).await.unwrap());
}

#[tokio::test]
async fn exec_missing_command_is_an_unrecoverable_error_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let t = task(
        "ghost",
        "exec",
        serde_json::json!({ "command": "/no/such/binary" }),
    );
    let c = ctx(tmp.path(), "missing", t);
    let h = client_agent::cgroups::detect().unwrap();
    let cg = h.cgroup(&format!("{}.{}", c.alloc_id, c.task.name));
    let err = exec_driver().start(&c).await.unwrap_err();
    assert!(!err.recoverable(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/no/such/binary") && msg.contains("No such file"),
        "{msg}"
    );
    assert!(!cg.exists(), "cgroup left behind");
}

#[tokio::test]
async fn exec_into_a_task_enters_its_namespaces_root_and_env() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = sh("inside", "echo marker > /local/mark; exec sleep 30");
    t.env.insert("FROM_TASK".into(), "yes".into());
    let c = ctx(tmp.path(), "execinto", t);
    let d = exec_driver();
    let h = d.start(&c).await.unwrap();
    let _g = CgroupGuard(cgroup_paths(&h));
    poll(
        Duration::from_secs(10),
        "the task to write its marker",
        || async { c.dirs.local.join("mark").exists().then_some(()) },
    )
    .await;
    let cmd: Vec<String> = [
        "/bin/sh",
        "-c",
        "cat /local/mark; echo env=$FROM_TASK; for p in /proc/[0-9]*; do echo pid=${p#/proc/}; done; exit 3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = d.exec(&h, &cmd, Duration::from_secs(20)).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.exit_code,
        3,
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its root: the task's /local; its env; its PID namespace (init, task, us).
    assert!(text.contains("marker"), "{text}");
    assert!(text.contains("env=yes"), "{text}");
    let pids: Vec<i32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pid=")?.parse().ok())
        .collect();
    assert!(pids.contains(&1) && pids.len() <= 4, "{text}");
    let usage = d.usage(&h).await.unwrap();
    assert!(usage.usage_bytes > 0 || usage.rss_bytes > 0, "{usage:?}");
    d.stop(&h, "SIGKILL", Duration::from_secs(1)).await.unwrap();
}

// ---- Isolation: user, capabilities, no_new_privs, pivot_root, nosuid/nodev.

/// Nomad's default capability set as /proc/<pid>/status prints it.
const NOMAD_DEFAULT_CAPS: &str = "00000000a80405fb";

/// Runs `t` to its end with `d`; returns (stdout, stderr).
async fn run_task(d: &ExecDriver, c: &TaskContext) -> (String, String) {
    let h = d.start(c).await.unwrap();
    let _g = CgroupGuard(cgroup_paths(&h));
    let res = tokio::time::timeout(Duration::from_secs(30), d.wait(&h))
        .await
        .unwrap();
    let out = std::fs::read_to_string(&c.dirs.stdout).unwrap();
    let err = std::fs::read_to_string(&c.dirs.stderr).unwrap();
    assert!(res.successful(), "{res:?}\nstdout: {out}\nstderr: {err}");
    (out, err)
}

/// The value of `key` in /proc/self/status as the task printed it.
fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

fn root_allowed() -> ExecDriver {
    ExecDriver::new(client_agent::driver::exec::ExecConfig {
        user_denylist: vec![],
        ..Default::default()
    })
}

const SHOW_PRIVILEGES: &str = "id -u; grep -E '^(Cap|NoNewPrivs)' /proc/self/status";

#[tokio::test]
async fn exec_task_without_a_user_runs_as_nobody_with_nomads_default_capabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(
        tmp.path(),
        "nobody",
        sh(
            "who",
            &format!("{SHOW_PRIVILEGES}; echo shadow-bytes=$(cat /etc/shadow | wc -c)"),
        ),
    );
    let (out, _) = run_task(&exec_driver(), &c).await;
    // dac_override would let it read the host's password hashes: they are masked.
    if std::fs::metadata("/etc/shadow").is_ok_and(|m| m.len() > 0) {
        assert!(out.contains("shadow-bytes=0"), "{out}");
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(out.lines().next(), Some(nobody.uid.to_string().as_str()));
    assert_eq!(status_field(&out, "CapEff:"), NOMAD_DEFAULT_CAPS, "{out}");
    assert_eq!(status_field(&out, "CapPrm:"), NOMAD_DEFAULT_CAPS, "{out}");
    // Nothing outside the set can be regained, by a setuid binary or otherwise.
    assert_eq!(status_field(&out, "CapBnd:"), NOMAD_DEFAULT_CAPS, "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs:"), "1", "{out}");
}

#[tokio::test]
async fn exec_task_as_root_is_refused_unless_the_agent_takes_root_off_its_denylist() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = sh("rooted", SHOW_PRIVILEGES);
    t.user = "root".into();
    let c = ctx(tmp.path(), "root-refused", t.clone());
    let err = exec_driver().start(&c).await.unwrap_err();
    assert!(!err.recoverable(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("may not run as user \"root\"") && msg.contains("user.denylist"),
        "{msg}"
    );
    assert!(
        !c.dirs.stdout.exists() || std::fs::read_to_string(&c.dirs.stdout).unwrap().is_empty(),
        "the refused task ran"
    );

    // Allowed, root still gets only the default set, not every capability.
    let c = ctx(tmp.path(), "root-allowed", t);
    let (out, _) = run_task(&root_allowed(), &c).await;
    assert_eq!(out.lines().next(), Some("0"), "{out}");
    assert_eq!(status_field(&out, "CapEff:"), NOMAD_DEFAULT_CAPS, "{out}");
    assert_eq!(status_field(&out, "CapBnd:"), NOMAD_DEFAULT_CAPS, "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs:"), "1", "{out}");
}

#[tokio::test]
async fn exec_task_cap_add_and_cap_drop_change_its_set_within_the_agents_allow_caps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = sh("narrow", SHOW_PRIVILEGES);
    t.config
        .insert("cap_drop".into(), serde_json::json!(["all"]));
    t.config.insert(
        "cap_add".into(),
        serde_json::json!(["CAP_NET_BIND_SERVICE"]),
    );
    let c = ctx(tmp.path(), "capdrop", t);
    let (out, _) = run_task(&exec_driver(), &c).await;
    // Bit 10 only.
    assert_eq!(status_field(&out, "CapEff:"), "0000000000000400", "{out}");
    assert_eq!(status_field(&out, "CapBnd:"), "0000000000000400", "{out}");

    let mut t = sh("wide", SHOW_PRIVILEGES);
    t.config
        .insert("cap_add".into(), serde_json::json!(["sys_admin"]));
    let c = ctx(tmp.path(), "capadd", t);
    let err = exec_driver().start(&c).await.unwrap_err();
    assert!(!err.recoverable(), "{err}");
    assert!(
        err.to_string().contains("does not allow: sys_admin"),
        "{err}"
    );
}

#[tokio::test]
async fn exec_root_task_cannot_reach_the_host_with_the_chroot_escape() {
    // The classic escape: chroot into a subdirectory while the working directory stays
    // outside it, walk up with "..", chroot there. After a bare chroot this lands on
    // the host's root; after pivot_root with the old root detached there is nothing
    // above the task's root.
    let perl = Path::new("/usr/bin/perl");
    assert!(
        perl.exists(),
        "this test needs /usr/bin/perl (Debian's perl-base) to make the chroot calls"
    );
    let tmp = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let marker = host.path().join("escaped");
    let script = r#"
        mkdir "/local/sub";
        chroot "/local/sub" or die "chroot subdir: $!";
        chdir ".." for 1..64;
        chroot "." or die "chroot back: $!";
        chdir "/";
        if (open(my $f, ">", $ARGV[0])) { print $f "escaped\n"; close $f; print "ESCAPED\n"; }
        else { print "contained: $!\n"; }
        opendir(my $d, "/") or die; print "root: ", join(" ", sort grep { !/^\./ } readdir($d)), "\n";
    "#;
    let mut t = task(
        "escape",
        "exec",
        serde_json::json!({
            "command": "/usr/bin/perl",
            "args": ["-e", script, marker.display().to_string()],
        }),
    );
    t.user = "root".into();
    let c = ctx(tmp.path(), "escape", t);
    let (out, _) = run_task(&root_allowed(), &c).await;
    assert!(!marker.exists(), "the task wrote on the host: {out}");
    assert!(out.contains("contained: No such file"), "{out}");
    // Where it ended up is its own root: the task directory.
    let root_line = out.lines().find(|l| l.starts_with("root: ")).unwrap();
    let entries: Vec<&str> = root_line["root: ".len()..].split(' ').collect();
    assert!(
        entries.contains(&"local") && entries.contains(&"secrets"),
        "{out}"
    );
    // Nothing but the task's own root: its directories and the chroot_env binds.
    let task_root = [
        "alloc", "bin", "dev", "etc", "lib", "lib32", "lib64", "local", "proc", "sbin", "secrets",
        "tmp", "usr",
    ];
    assert!(
        entries.iter().all(|e| task_root.contains(e)),
        "host entries visible after the escape: {out}"
    );
}

#[tokio::test]
async fn exec_setuid_binaries_and_device_nodes_in_the_task_dirs_do_not_work() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(
        tmp.path(),
        "nosuid",
        sh(
            "suid",
            "/local/id -u; \
             mknod /local/null c 1 3 && { echo hi > /local/null && echo local-dev-works || echo local-dev-blocked; }; \
             mknod /dev/mine c 1 3 && { echo hi > /dev/mine && echo dev-dev-works || echo dev-dev-blocked; }; \
             echo hi > /dev/null && echo real-null-works; \
             while read -r id parent major root mnt opts rest; do echo \"mount $mnt $opts\"; done < /proc/self/mountinfo",
        ),
    );
    // A setuid-root copy of `id` planted in local/ (as an artifact or a previous run
    // could).
    let id = ["/usr/bin/id", "/bin/id"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("coreutils id");
    let planted = c.dirs.local.join("id");
    std::fs::copy(id, &planted).unwrap();
    std::os::unix::fs::chown(&planted, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(
        &planted,
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    let (out, err) = run_task(&exec_driver(), &c).await;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        out.lines().next(),
        Some(nobody.uid.to_string().as_str()),
        "{out}{err}"
    );
    // The task may make device nodes (mknod is in Nomad's default set), but none works.
    assert!(out.contains("local-dev-blocked"), "{out}{err}");
    assert!(out.contains("dev-dev-blocked"), "{out}{err}");
    assert!(out.contains("real-null-works"), "{out}{err}");
    let opts = |mnt: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("mount {mnt} ")))
            .unwrap_or_else(|| panic!("no mount at {mnt}: {out}"))
            .to_string()
    };
    for mnt in ["/", "/alloc", "/dev", "/usr"] {
        let o = opts(mnt);
        assert!(
            o.contains("nosuid") && o.contains("nodev"),
            "{mnt}: {o}\n{out}"
        );
    }
    assert!(opts("/usr").contains("ro"), "{out}");
    // Only the task's own mounts: nothing of the host's other mounts is visible.
    let mounts: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("mount "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(
        mounts
            .iter()
            .all(|m| !m.starts_with("/sys") && !m.starts_with("/tmp") && !m.starts_with("/work")),
        "{mounts:?}"
    );
}

#[tokio::test]
async fn exec_into_a_task_runs_as_its_user_with_its_capabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = sh("idle", "echo up; exec sleep 30");
    t.config
        .insert("cap_drop".into(), serde_json::json!(["mknod"]));
    let c = ctx(tmp.path(), "execprivs", t);
    let d = exec_driver();
    let h = d.start(&c).await.unwrap();
    let _g = CgroupGuard(cgroup_paths(&h));
    wait_for_content(&c.dirs.stdout, "up").await;
    let cmd: Vec<String> = ["/bin/sh", "-c", SHOW_PRIVILEGES]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = d.exec(&h, &cmd, Duration::from_secs(20)).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.exit_code,
        0,
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(text.lines().next(), Some(nobody.uid.to_string().as_str()));
    // The default set without mknod (bit 27).
    assert_eq!(status_field(&text, "CapEff:"), "00000000a00405fb", "{text}");
    assert_eq!(status_field(&text, "CapBnd:"), "00000000a00405fb", "{text}");
    assert_eq!(status_field(&text, "NoNewPrivs:"), "1", "{text}");
    d.stop(&h, "SIGKILL", Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn exec_root_task_cannot_write_host_wide_kernel_settings_through_proc() {
    let tmp = tempfile::tempdir().unwrap();
    // Only harmless probes: the hostname is per UTS namespace (the task has its own),
    // and nothing is ever written to sysrq-trigger; its mount must be read-only.
    let mut t = sh(
        "procfs",
        "echo drover-probe > /proc/sys/kernel/hostname 2>/dev/null && echo sys-writable || echo sys-readonly; \
         echo kcore-bytes=$(head -c 16 /proc/kcore 2>/dev/null | wc -c); \
         while read -r id parent major root mnt opts rest; do echo \"mount $mnt $opts\"; done < /proc/self/mountinfo",
    );
    t.user = "root".into();
    let c = ctx(tmp.path(), "procfs", t);
    let (out, err) = run_task(&root_allowed(), &c).await;
    assert!(out.contains("sys-readonly"), "{out}{err}");
    assert!(out.contains("kcore-bytes=0"), "{out}{err}");
    for mnt in ["/proc/sys", "/proc/sysrq-trigger"] {
        if !Path::new(mnt).exists() {
            // A kernel without it (CONFIG_MAGIC_SYSRQ off).
            continue;
        }
        let opts = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("mount {mnt} ")))
            .unwrap_or_else(|| panic!("{mnt} is not a mount of its own: {out}"));
        assert!(opts.split(',').any(|o| o == "ro"), "{mnt}: {opts}");
    }
}
