# /etc/subhost/pipelines/site.hcl: pretend-boot with a DNS entry for each
# subhost, kept by a shell script (dns-hosts.sh, run by the exec stage).
pipeline "site" {
  description = "pretend-boot with a hosts-file entry per subhost"
  home        = "/opt/sub"
  on_exit     = "down"

  stage "mount-loop" {}
  stage "net-veth" {}
  stage "dns" {
    plugin     = "exec"
    script     = "/etc/subhost/hooks/dns-hosts.sh"
    hosts_file = "/etc/subhost/hosts"
    domain     = "sub.example.org"
    timeout    = "10s"
  }
  stage "cgroup" {}
  stage "init" {
    mode = "sysv"
  }
}
