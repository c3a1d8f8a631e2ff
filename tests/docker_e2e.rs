//! A docker job end to end through the real binary: `job run` of a container built
//! locally from Debian's static busybox (never pulled) serves HTTP on its mapped port,
//! its output comes back through `alloc logs`, `alloc exec` runs in it, and a `kill -9`
//! of the agent keeps the same container (no restart); `job stop` removes it. A service
//! with `address_mode = "driver"` is registered on the container's IP and `to` port.
//!
//! Skips loudly when Docker or /bin/busybox is missing.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const IMAGE: &str = "drover-e2e-busybox:1";

/// Builds [`IMAGE`] with `docker build` from a temp context; false when it cannot.
/// A missing prerequisite skips loudly on a developer's machine and fails under `CI=true`.
fn missing(what: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what}, and CI=true: the docker tests must run in CI"
    );
    eprintln!("\n!!!!! SKIPPED: {what} !!!!!\n");
    false
}

fn build_image() -> bool {
    if !std::path::Path::new("/bin/busybox").exists() {
        return missing("/bin/busybox is missing (apt-get install busybox-static)");
    }
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sh\"]\n",
    )
    .unwrap();
    match Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(ctx.path())
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => missing(&format!(
            "docker build failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => missing(&format!("cannot run docker: {e}")),
    }
}

/// Removes the test's container whatever happens.
struct ContainerGuard(String);
impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

fn container_id(name: &str) -> Option<String> {
    let o = Command::new("docker")
        .args(["inspect", "-f", "{{.Id}}", name])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

const JOB: &str = r#"
job "web" {
  datacenters = ["dc1"]
  type = "service"
  group "g" {
    network {
      port "http" {
        to = 8080
      }
    }
    task "t" {
      driver = "docker"
      kill_timeout = "2s"
      config {
        image   = "drover-e2e-busybox:1"
        command = "/bin/busybox"
        args    = ["sh", "-c", "echo hello-from-docker; /bin/busybox mkdir -p /www; echo served-by-drover > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
        ports   = ["http"]
      }
      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
"#;

#[test]
fn docker_job_serves_on_its_port_logs_and_survives_agent_kill_9() {
    if !build_image() {
        return;
    }
    let mut agent = DevAgent::start();
    wait_for(
        "the dev node to be ready with docker",
        Duration::from_secs(30),
        || {
            let (_, nodes) = agent.get_json("/v1/nodes");
            let n = nodes.as_array()?.first()?.clone();
            let id = n["ID"].as_str()?.to_string();
            let (_, node) = agent.get_json(&format!("/v1/node/{id}"));
            (n["Status"] == "ready" && node["Drivers"]["docker"]["Healthy"] == true).then_some(())
        },
    );
    let file = agent.dir.path().join("web.hcl");
    std::fs::write(&file, JOB).unwrap();
    let out = agent.cli(&["job", "run", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let alloc = wait_for("the alloc to run", Duration::from_secs(60), || {
        let (_, allocs) = agent.get_json("/v1/job/web/allocations");
        allocs.as_array()?.iter().find_map(|a| {
            (a["ClientStatus"] == "running").then(|| a["ID"].as_str().unwrap().to_string())
        })
    });
    let name = format!("t-{alloc}");
    let _guard = ContainerGuard(name.clone());

    // exec through Docker's exec API tells where the port was mapped.
    let out = agent.cli(&[
        "alloc",
        "exec",
        &alloc,
        "/bin/busybox",
        "sh",
        "-c",
        "echo $NOMAD_ADDR_http",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let addr = stdout(&out).trim().to_string();
    assert!(addr.contains(':'), "{addr:?}");
    let body = wait_for("HTTP on the mapped port", Duration::from_secs(20), || {
        reqwest::blocking::get(format!("http://{addr}/"))
            .ok()?
            .text()
            .ok()
    });
    assert_eq!(body.trim(), "served-by-drover");

    let logs = wait_for(
        "the container's output in alloc logs",
        Duration::from_secs(20),
        || {
            let t = stdout(&agent.cli(&["alloc", "logs", &alloc]));
            t.contains("hello-from-docker").then_some(t)
        },
    );
    assert!(logs.contains("hello-from-docker"));
    let (code, stats) = agent.get_json(&format!("/v1/client/allocation/{alloc}/stats"));
    assert_eq!(code, 200);
    assert!(
        stats["Tasks"]["t"]["ResourceUsage"]["MemoryStats"]["Usage"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats}"
    );

    // kill -9 and restart: the same container keeps running.
    let before = container_id(&name).expect("the container exists");
    agent.kill9();
    agent.restart_and_wait_reattached(1, Duration::from_secs(30));
    assert_eq!(container_id(&name).as_deref(), Some(before.as_str()));
    let (_, a) = agent.get_json(&format!("/v1/allocation/{alloc}"));
    assert_eq!(a["TaskStates"]["t"]["Restarts"], 0, "{a}");
    assert_eq!(a["ClientStatus"], "running");
    assert_eq!(
        reqwest::blocking::get(format!("http://{addr}/"))
            .unwrap()
            .text()
            .unwrap()
            .trim(),
        "served-by-drover"
    );

    // job stop removes the container.
    let out = agent.cli(&["job", "stop", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "the container to be removed",
        Duration::from_secs(30),
        || container_id(&name).is_none().then_some(()),
    );
}

const DRIVER_JOB: &str = r#"
job "drv" {
  datacenters = ["dc1"]
  type = "service"
  group "g" {
    network {
      port "http" {
        to = 8080
      }
    }
    task "t" {
      driver = "docker"
      kill_timeout = "2s"
      service {
        name         = "drv-web"
        provider     = "nomad"
        port         = "http"
        address_mode = "driver"
      }
      config {
        image   = "drover-e2e-busybox:1"
        command = "/bin/busybox"
        args    = ["sh", "-c", "/bin/busybox mkdir -p /www; echo hi > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
        ports   = ["http"]
      }
      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
"#;

#[test]
fn a_driver_address_mode_service_registers_the_container_ip_and_its_to_port() {
    if !build_image() {
        return;
    }
    let agent = DevAgent::start();
    wait_for(
        "the dev node to be ready with docker",
        Duration::from_secs(30),
        || {
            let (_, nodes) = agent.get_json("/v1/nodes");
            let n = nodes.as_array()?.first()?.clone();
            let id = n["ID"].as_str()?.to_string();
            let (_, node) = agent.get_json(&format!("/v1/node/{id}"));
            (n["Status"] == "ready" && node["Drivers"]["docker"]["Healthy"] == true).then_some(())
        },
    );
    let file = agent.dir.path().join("drv.hcl");
    std::fs::write(&file, DRIVER_JOB).unwrap();
    let out = agent.cli(&["job", "run", "-detach", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let alloc = wait_for("the alloc to run", Duration::from_secs(60), || {
        let (_, allocs) = agent.get_json("/v1/job/drv/allocations");
        allocs.as_array()?.iter().find_map(|a| {
            (a["ClientStatus"] == "running").then(|| a["ID"].as_str().unwrap().to_string())
        })
    });
    let name = format!("t-{alloc}");
    let _guard = ContainerGuard(name.clone());
    let o = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &name,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ips = String::from_utf8_lossy(&o.stdout).to_string();
    let ip = ips
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!ip.is_empty(), "the container has no IP: {ips:?}");
    let instance = wait_for(
        "the service to be registered",
        Duration::from_secs(30),
        || {
            let (_, list) = agent.get_json("/v1/service/drv-web");
            list.as_array()?.first().cloned()
        },
    );
    assert_eq!(instance["Address"], ip.as_str(), "{instance}");
    assert_eq!(instance["Port"], 8080, "{instance}");
    assert_eq!(instance["AllocID"], alloc.as_str(), "{instance}");
    let out = agent.cli(&["job", "stop", "drv"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
