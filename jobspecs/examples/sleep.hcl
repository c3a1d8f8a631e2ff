# A long-running service: one raw_exec task that sleeps for an hour.
job "sleep" {
  type = "service"

  group "sleep" {
    count = 1

    task "sleep" {
      driver = "raw_exec"

      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
