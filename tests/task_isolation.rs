//! Task isolation through the real binary (issue 11, holes 5 and 10): an `exec` job runs
//! as `nobody` with Nomad's default capabilities and `no_new_privs`, a `root` task is
//! refused unless the agent takes root off its `user.denylist`, and even an allowed root
//! task cannot reach the host with the chroot escape; a `docker` job that binds a host
//! path fails with a sentence and creates no container unless the agent enables volumes.
//!
//! Needs root (namespaces, cgroups), /usr/bin/perl (Debian's perl-base) for the escape,
//! and for the docker test Docker plus /bin/busybox (busybox-static): without them the
//! tests fail, they never skip.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `drover agent -dev` with an agent config file.
struct Agent {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Agent {
    fn start(config: &str) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("drover-isolation-")
            .tempdir()
            .unwrap();
        let cfg = dir.path().join("agent.hcl");
        std::fs::write(&cfg, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let child = Command::new(drover_bin())
            .args(["agent", "-dev", "-data-dir"])
            .arg(dir.path().join("data"))
            .args(["-http-port", &port.to_string(), "-config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut a = Agent { dir, port, child };
        wait_for(
            "the dev node to be ready with a healthy exec driver",
            Duration::from_secs(60),
            || {
                if let Ok(Some(st)) = a.child.try_wait() {
                    panic!("the agent exited with {st}:\n{}", a.log());
                }
                let (_, nodes) = a.get("/v1/nodes");
                let n = nodes.as_array()?.first()?.clone();
                let (_, node) = a.get(&format!("/v1/node/{}", n["ID"].as_str()?));
                (n["Status"] == "ready" && node["Drivers"]["exec"]["Healthy"] == true).then_some(())
            },
        );
        a
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let Ok(r) = reqwest::blocking::get(format!("{}{path}", self.addr())) else {
            return (0, serde_json::Value::Null);
        };
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(drover_bin())
            .args(args)
            .env("NOMAD_ADDR", self.addr())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the job file `hcl`, waits for its first allocation to finish; returns it.
    fn run_to_end(&self, job: &str, hcl: &str) -> serde_json::Value {
        let file = self.dir.path().join(format!("{job}.hcl"));
        std::fs::write(&file, hcl).unwrap();
        let out = self.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let id = wait_for(
            &format!("job {job}'s allocation to finish"),
            Duration::from_secs(90),
            || {
                let (_, allocs) = self.get(&format!("/v1/job/{job}/allocations"));
                allocs.as_array()?.iter().find_map(|a| {
                    matches!(a["ClientStatus"].as_str(), Some("complete" | "failed"))
                        .then(|| a["ID"].as_str().unwrap().to_string())
                })
            },
        );
        self.get(&format!("/v1/allocation/{id}")).1
    }

    fn logs(&self, alloc: &serde_json::Value, task: &str) -> String {
        let id = alloc["ID"].as_str().unwrap();
        let out = self.cli(&["alloc", "logs", id, task]);
        stdout(&out)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages of the task's events.
fn events(alloc: &serde_json::Value, task: &str) -> String {
    alloc["TaskStates"][task]["Events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .map(|e| {
                    format!(
                        "{}: {} {}",
                        e["Type"].as_str().unwrap_or(""),
                        e["DisplayMessage"].as_str().unwrap_or(""),
                        e["DriverError"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn batch_job(job: &str, task: &str) -> String {
    format!(
        r#"
job "{job}" {{
  datacenters = ["dc1"]
  type = "batch"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    {task}
  }}
}}
"#
    )
}

const SHOW: &str = r#"task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"]
      }
    }"#;

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

#[test]
fn exec_job_runs_as_nobody_with_nomads_capabilities_and_root_is_refused() {
    let agent = Agent::start("");
    let a = agent.run_to_end("who", &batch_job("who", SHOW));
    let out = agent.logs(&a, "t");
    assert_eq!(a["ClientStatus"], "complete", "{}\n{out}", events(&a, "t"));
    let nobody = nix_uid("nobody");
    assert_eq!(out.lines().next(), Some(nobody.as_str()), "{out}");
    assert_eq!(field(&out, "CapEff:"), "00000000a80405fb", "{out}");
    assert_eq!(field(&out, "CapBnd:"), "00000000a80405fb", "{out}");
    assert_eq!(field(&out, "NoNewPrivs:"), "1", "{out}");

    let rooted = SHOW.replace(
        "driver = \"exec\"",
        "driver = \"exec\"\n      user = \"root\"",
    );
    let a = agent.run_to_end("rooted", &batch_job("rooted", &rooted));
    let ev = events(&a, "t");
    assert_eq!(a["ClientStatus"], "failed", "{ev}");
    assert!(
        ev.contains("may not run as user \"root\"") && ev.contains("user.denylist"),
        "{ev}"
    );
    assert!(agent.logs(&a, "t").is_empty(), "the refused task ran");
}

/// The uid of `name` on this host, as `id -u` prints it.
fn nix_uid(name: &str) -> String {
    let out = Command::new("id").args(["-u", name]).output().unwrap();
    assert!(out.status.success(), "no user {name} on this host");
    stdout(&out).trim().to_string()
}

#[test]
fn exec_root_task_allowed_by_the_agent_cannot_escape_to_the_host() {
    assert!(
        Path::new("/usr/bin/perl").exists(),
        "this test needs /usr/bin/perl (Debian's perl-base) to make the chroot calls"
    );
    let agent = Agent::start(
        r#"
client {
  options = {
    "user.denylist" = ""
  }
}
"#,
    );
    let host = tempfile::tempdir().unwrap();
    let marker: PathBuf = host.path().join("escaped");
    // chroot into a subdirectory, keep the working directory outside it, walk up, chroot
    // there, and try to write a file at a host path.
    let perl = "mkdir q{/local/sub}; chroot q{/local/sub} or die qq{chroot: $!}; \
                chdir q{..} for 1..64; chroot q{.} or die qq{chroot back: $!}; \
                if (open(my $f, q{>}, $ARGV[0])) { print $f qq{x}; close $f; print qq{ESCAPED\\n}; } \
                else { print qq{contained: $!\\n}; }";
    let task = format!(
        r#"task "t" {{
      driver = "exec"
      user   = "root"
      config {{
        command = "/usr/bin/perl"
        args    = ["-e", "{perl}", "{}"]
      }}
    }}"#,
        marker.display()
    );
    let a = agent.run_to_end("escape", &batch_job("escape", &task));
    let out = agent.logs(&a, "t");
    assert_eq!(a["ClientStatus"], "complete", "{}\n{out}", events(&a, "t"));
    assert!(!marker.exists(), "the task wrote on the host: {out}");
    assert!(out.contains("contained: No such file"), "{out}");
}

const IMAGE: &str = "drover-isolation-busybox:1";

/// Builds [`IMAGE`] from /bin/busybox with `docker build` (never pulls).
fn build_image() {
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing: apt-get install -y busybox-static"
    );
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sh\"]\n",
    )
    .unwrap();
    let o = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(ctx.path())
        .output()
        .expect("the docker CLI");
    assert!(o.status.success(), "docker build: {}", stderr(&o));
}

fn container_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

struct ContainerGuard(String);
impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

fn docker_task(host_dir: &Path) -> String {
    format!(
        r#"task "t" {{
      driver = "docker"
      config {{
        image   = "{IMAGE}"
        command = "/bin/busybox"
        args    = ["sh", "-c", "/bin/busybox cat /host/marker; /bin/busybox ls /root-of-host/ > /dev/null && echo saw-host-root"]
        volumes = ["/:/root-of-host:ro", "{}:/host"]
      }}
    }}"#,
        host_dir.display()
    )
}

#[test]
fn docker_job_binding_a_host_path_fails_with_a_sentence_unless_the_agent_enables_volumes() {
    build_image();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "host-file\n").unwrap();

    let agent = Agent::start("");
    let a = agent.run_to_end("hostvol", &batch_job("hostvol", &docker_task(host.path())));
    let name = format!("t-{}", a["ID"].as_str().unwrap());
    let _g = ContainerGuard(name.clone());
    let ev = events(&a, "t");
    assert_eq!(a["ClientStatus"], "failed", "{ev}");
    assert!(
        ev.contains("volume \"/\" binds the host path / into the container")
            && ev.contains("volumes { enabled = true }"),
        "{ev}"
    );
    assert!(!container_exists(&name), "a container was created");
    drop(agent);

    let agent = Agent::start(
        r#"
plugin "docker" {
  config {
    volumes {
      enabled = true
    }
  }
}
"#,
    );
    let a = agent.run_to_end("hostvol", &batch_job("hostvol", &docker_task(host.path())));
    let _g = ContainerGuard(format!("t-{}", a["ID"].as_str().unwrap()));
    let out = agent.logs(&a, "t");
    assert_eq!(a["ClientStatus"], "complete", "{}\n{out}", events(&a, "t"));
    assert!(
        out.contains("host-file") && out.contains("saw-host-root"),
        "{out}"
    );
}

#[test]
fn agent_refuses_to_start_with_a_misspelt_driver_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.hcl");
    std::fs::write(
        &cfg,
        "plugin \"exec\" {\n  config {\n    allow_caps = [\"net_rwa\"]\n  }\n}\n",
    )
    .unwrap();
    let out = Command::new(drover_bin())
        .args(["agent", "-dev", "-data-dir"])
        .arg(dir.path().join("data"))
        .args(["-http-port", &free_port().to_string(), "-config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("\"net_rwa\" is not a Linux capability"),
        "{err}"
    );
}
