# The parameterized batch job python-nomad's dispatch tests register.
job "example-batch" {
  datacenters = ["*"]
  type        = "batch"

  parameterized {
    payload       = "optional"
    meta_required = ["time"]
  }

  group "batch" {
    task "sleep" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "sleep $(( ${NOMAD_META_time} / 1000 ))"]
      }

      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
