# A batch job that prints a line, waits two seconds and completes.
job "batch" {
  type = "batch"

  group "hello" {
    count = 1

    restart {
      attempts = 0
      mode     = "fail"
    }

    task "hello" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo hello; sleep 2"]
      }

      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
}
