#!/bin/sh
# dns-hosts: a subhost site stage in shell, run by subhost's exec stage.
#
# Keeps one line per subhost in a hosts file (dnsmasq's addn-hosts, or
# anything else that reads /etc/hosts syntax):
#
#   192.0.2.10 web1.sub.example.org web1 # subhost web1
#
# up adds it (or replaces an older one), down removes it, check looks for
# it. The address is the subhost's own setting, DNS_ADDRESS=192.0.2.10 in
# its config; where the file is and the domain are the pipeline's:
#
#   stage "dns" {
#     plugin     = "exec"
#     script     = "/etc/subhost/hooks/dns-hosts.sh"
#     hosts_file = "/etc/subhost/hosts"
#     domain     = "sub.example.org"
#   }
#
# The exec stage calls it with the verb as $1 and a fixed environment;
# whatever it says on stderr goes to subhost's log, its last line is the
# error when it exits non-zero, and exit 2 from validate is bad input.
set -eu

hosts=${SUBHOST_PARAM_HOSTS_FILE:-}
domain=${SUBHOST_PARAM_DOMAIN:-}
addr=${SUBHOST_VAR_DNS_ADDRESS:-}
name=$SUBHOST_NAME

bad() {
	echo "$*" >&2
	exit 2
}

# valid reports bad input: validate runs it before any stage is up.
valid() {
	case $hosts in
	/*) ;;
	*) bad "parameter hosts_file: want the absolute path of a hosts file, not \"$hosts\"" ;;
	esac
	case $hosts in
	*[!A-Za-z0-9/._-]*) bad "parameter hosts_file $hosts: letters, digits and /._- only" ;;
	esac
	[ -d "${hosts%/*}/" ] || bad "parameter hosts_file $hosts: directory ${hosts%/*}/ does not exist"
	case $domain in
	*[!A-Za-z0-9.-]*) bad "parameter domain $domain: letters, digits, dots and dashes only" ;;
	esac
	case $addr in
	"") bad "${SUBHOST_HOME}/config: set DNS_ADDRESS, the subhost's address (DNS_ADDRESS=192.0.2.10)" ;;
	*[!0-9A-Fa-f.:]*) bad "${SUBHOST_HOME}/config: DNS_ADDRESS=$addr is not an IPv4 or IPv6 address" ;;
	esac
}

fqdn=$name${domain:+.$domain}
line="$addr $fqdn${domain:+ $name} # subhost $name"
ours="[[:space:]]# subhost $name\$"

# rewrite replaces the hosts file by a copy without this subhost's line,
# plus the line given (if any): atomically, since a DNS server may read it
# at any time, and under a lock on its directory, since other subhosts'
# stages write it too.
rewrite() {
	exec 9<"${hosts%/*}/"
	flock 9
	tmp=$(mktemp "$hosts.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	if [ -f "$hosts" ]; then
		grep -v -e "$ours" "$hosts" >"$tmp" || :
	fi
	if [ -n "$1" ]; then
		echo "$1" >>"$tmp"
	fi
	chmod 0644 "$tmp"
	mv -f "$tmp" "$hosts"
	trap - EXIT
}

case ${1:-} in
validate)
	valid
	;;
up)
	valid
	if ! grep -q -x -F -e "$line" "$hosts" 2>/dev/null; then
		rewrite "$line"
		echo "$hosts: $line" >&2
	fi
	# Joins the boot record: `subhost status --json NAME` shows it.
	printf '{"extra": {"dns_name": "%s", "dns_address": "%s"}}\n' "$fqdn" "$addr"
	;;
down)
	# Nothing can have been written with a bad hosts_file: nothing to undo.
	(valid) 2>/dev/null || exit 0
	if grep -q -e "$ours" "$hosts" 2>/dev/null; then
		rewrite ""
		echo "$hosts: removed $name" >&2
	fi
	;;
check)
	valid
	grep -q -x -F -e "$line" "$hosts" 2>/dev/null || {
		echo "$hosts has no line \"$line\"" >&2
		exit 1
	}
	;;
*)
	bad "usage: $0 validate|up|down|check (subhost's exec stage runs it)"
	;;
esac
