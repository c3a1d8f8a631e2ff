//! Scheduler-assigned host ports through the real binary: the servers pick each dynamic
//! port's host port, the allocation says which (`AllocatedResources.Shared.Ports`), and
//! the task sees exactly that port in its `NOMAD_*` variables.

mod common;

use common::*;
use std::time::Duration;

const JOB: &str = r#"
job "ported" {
  datacenters = ["dc1"]
  type = "service"

  group "web" {
    count = 2

    network {
      port "http" {}
    }

    task "show" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo \"port=$NOMAD_PORT_http host=$NOMAD_HOST_PORT_http addr=$NOMAD_ADDR_http end\"; exec sleep 3600"]
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
"#;

/// The value of `key=` in the task's one line of output.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn tasks_listen_on_the_host_ports_the_scheduler_assigned_and_each_alloc_gets_its_own() {
    let agent = DevAgent::start();
    wait_for("the dev node to be ready", Duration::from_secs(30), || {
        stdout(&agent.cli(&["node", "status"]))
            .contains("ready")
            .then_some(())
    });
    let job_file = agent.dir.path().join("ported.hcl");
    std::fs::write(&job_file, JOB).unwrap();
    let out = agent.cli(&["job", "run", "-detach", job_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "job run failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );

    let allocs = wait_for("two running allocations", Duration::from_secs(60), || {
        let (_, list) = agent.get_json("/v1/job/ported/allocations");
        let running: Vec<String> = list
            .as_array()?
            .iter()
            .filter(|a| a["ClientStatus"] == "running" && a["DesiredStatus"] == "run")
            .filter_map(|a| a["ID"].as_str().map(str::to_string))
            .collect();
        (running.len() == 2).then_some(running)
    });

    let mut ports = Vec::new();
    for id in &allocs {
        let (status, alloc) = agent.get_json(&format!("/v1/allocation/{id}"));
        assert_eq!(status, 200, "{alloc}");
        let shared = &alloc["AllocatedResources"]["Shared"];
        let mapping = &shared["Ports"][0];
        assert_eq!(mapping["Label"], "http", "{shared}");
        let value = mapping["Value"].as_i64().expect("an assigned port");
        assert!((20000..=32000).contains(&value), "{value} is in the range");
        let host_ip = mapping["HostIP"].as_str().unwrap_or_default().to_string();
        assert!(!host_ip.is_empty(), "{shared}");
        assert_eq!(shared["Networks"][0]["DynamicPorts"][0]["Value"], value);

        // What the task saw.
        let log = agent
            .data_dir()
            .join("client/alloc")
            .join(id)
            .join("alloc/logs/show.stdout.0");
        let line = wait_for("the task's output", Duration::from_secs(20), || {
            let s = std::fs::read_to_string(&log).ok()?;
            s.lines().find(|l| l.ends_with(" end")).map(str::to_string)
        });
        assert_eq!(
            field(&line, "port"),
            Some(value.to_string().as_str()),
            "{line}"
        );
        assert_eq!(
            field(&line, "host"),
            Some(value.to_string().as_str()),
            "{line}"
        );
        let addr = format!("{host_ip}:{value}");
        assert_eq!(field(&line, "addr"), Some(addr.as_str()), "{line}");
        ports.push(value);
    }
    assert_ne!(
        ports[0], ports[1],
        "two allocations on one node share no port"
    );
}
