# The built-in pipelines: the two variants of the original scripts.
# The userns stage runs only for an unprivileged subhost (when): a
# privileged boot does not start its plugin at all.
# A file in /etc/subhost/pipelines defining a pipeline of the same name
# replaces one of these entirely.

pipeline "pretend-boot" {
  description = "boot a subhost from disk images, like the pretend-boot script"
  home        = "/opt/sub"
  on_exit     = "down"

  stage "userns" {
    when = "PRIVATE_USERS"
  }
  stage "mount-loop" {}
  stage "net-veth" {}
  stage "cgroup" {}
  stage "init" {
    mode = "sysv"
  }
}

pipeline "control" {
  description = "run a subhost on an overlay with a shell, like the control script; keeps it for re-entry"
  home        = env("SUBHOST", "/opt/subhost")
  on_exit     = "keep"

  stage "userns" {
    when = "PRIVATE_USERS"
  }
  stage "mount-overlay" {}
  stage "net-veth" {}
  stage "cgroup" {}
  stage "init" {
    mode = "shell"
  }
}
