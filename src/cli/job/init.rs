//! `drover job init`: write an example job file to start from.
//!
//! The example runs on `drover agent -dev` as it is (the dev agent enables `raw_exec`);
//! on a production cluster change the driver to `exec` or `docker`.

use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Leave out the explanatory comments.
    #[arg(long)]
    pub short: bool,
    /// Where to write the example (default `example.nomad.hcl`).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

const SHORT: &str = r#"job "example" {
  datacenters = ["*"]

  group "cache" {
    count = 1

    network {
      port "db" {}
    }

    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo caught a signal' HUP USR1 USR2; echo listening on $NOMAD_ADDR_db; while true; do sleep 3600 & wait $!; done"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
"#;

const LONG: &str = r#"# An example job. Submit it with `drover job run example.nomad.hcl`, watch it with
# `drover job status example`, remove it with `drover job stop -purge example`.
job "example" {
  # Any datacenter; list names to pin the job to some.
  datacenters = ["*"]

  # "service" jobs run until stopped; "batch" jobs run to completion; "system" jobs run
  # on every eligible node.
  type = "service"

  # How new versions roll out: one allocation at a time, each healthy for 10 seconds
  # before the next is replaced; a failed rollout goes back to the last good version.
  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "3m"
    auto_revert      = true
  }

  group "cache" {
    # How many copies of this group run.
    count = 1

    # A port chosen by the scheduler on the node; tasks see it as NOMAD_PORT_db.
    network {
      port "db" {}
    }

    # How often a failing task is restarted in place before its allocation fails and is
    # rescheduled on another node.
    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    task "server" {
      # raw_exec runs a process without isolation; the dev agent enables it. On a real
      # cluster use "exec" (isolated, runs as nobody) or "docker".
      driver = "raw_exec"

      # A stand-in server: it logs HUP, USR1 and USR2 instead of dying, so
      # `drover alloc signal` can be tried on it.
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo caught a signal' HUP USR1 USR2; echo listening on $NOMAD_ADDR_db; while true; do sleep 3600 & wait $!; done"]
      }

      # What the scheduler reserves on the node: MHz of CPU and MiB of memory.
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
"#;

/// Writes the example; refuses to overwrite a file that exists.
pub fn init(a: InitArgs) -> anyhow::Result<i32> {
    let path = a.file.unwrap_or_else(|| PathBuf::from("example.nomad.hcl"));
    let text = if a.short { SHORT } else { LONG };
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("Job '{}' already exists", path.display());
            return Ok(1);
        }
        Err(e) => {
            eprintln!("Failed to write '{}': {e}", path.display());
            return Ok(1);
        }
    };
    f.write_all(text.as_bytes())?;
    println!("Example job file written to {}", path.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_examples_parse_and_validate() {
        for text in [SHORT, LONG] {
            let job = jobspecs::parse_str(text, "example.nomad.hcl").expect("example parses");
            assert_eq!(job.id, "example");
            assert_eq!(job.task_groups[0].name, "cache");
        }
    }
}
