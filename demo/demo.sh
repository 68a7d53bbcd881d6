#!/usr/bin/env bash
# demo/demo.sh (make demo): boot a busybox subhost from a disk image, show it
# serving a web page over a bridge, power it off, and leave the machine as it
# found it, also when interrupted. Run as root from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=demo                   # the subhost
NET=subhost-demo-net        # throwaway netns standing in for the host's network
BR=br-demo HOST_IP=198.18.42.1 GUEST_IP=198.18.42.2 MAC=06:00:c6:12:2a:02
PKGS=(busybox-static e2fsprogs iproute2 util-linux)
SH=$PWD/bin/subhost

step() { printf '\n=== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
innet() { nsenter --net="/run/netns/$NET" -- "$@"; }
# Boot and stop run in their own session: a Ctrl-C (or timeout's SIGTERM)
# then reaches only this script, which lets them finish and cleans up after,
# rather than cutting a stage off half way.
shielded() { setsid -w nsenter --net="/run/netns/$NET" -- "$@"; }

[ "$(id -u)" = 0 ] || die "run me as root (loop devices, mounts and network namespaces need it)"
[ ! -e "/run/netns/$NET" ] || die "network namespace $NET already exists; not touching it (ip netns del $NET if it is a leftover)"
[ ! -e "/run/subhost/$NAME" ] && [ ! -e "/run/netns/$NAME" ] ||
	die "a subhost named $NAME already exists; not touching it (see: subhost status $NAME)"

# Cleanup runs once, on any exit: stop the subhost if we started it, delete
# the netns and the temp dir, and on a machine that had none yet, undo what
# `ip netns add` did to /run/netns and remove subhost's empty /run/subhost.
TMP= BOOTED= NETNS= CLEANED= NETNS_DIR_WAS= NETNS_MNT_WAS= STATE_DIR_WAS=
[ ! -d /run/netns ] || NETNS_DIR_WAS=1
! grep -q ' /run/netns ' /proc/self/mountinfo || NETNS_MNT_WAS=1
[ ! -d /run/subhost ] || STATE_DIR_WAS=1
cleanup() {
	local rc=$?
	[ -z "$CLEANED" ] || return 0
	CLEANED=1
	trap '' INT TERM HUP
	if [ -n "$BOOTED" ] && [ -e "/run/subhost/$NAME" ]; then
		echo "demo: stopping subhost $NAME" >&2
		shielded "$SH" stop --force "$NAME" >&2 || setsid -w "$SH" stop --force "$NAME" >&2 || true
		# A stop that races the supervisor's own teardown can leave its
		# request behind in an otherwise empty state directory.
		if [ ! -e "/run/subhost/$NAME/state.json" ]; then
			rm -f "/run/subhost/$NAME/stop.json"
			rmdir "/run/subhost/$NAME" 2>/dev/null || true
		fi
	fi
	if [ -n "$NETNS" ]; then
		ip netns del "$NET" 2>/dev/null || true
		if [ -z "$NETNS_MNT_WAS" ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
			umount -n /run/netns 2>/dev/null || true # -n: no /run/mount/utab either
			[ -n "$NETNS_DIR_WAS" ] || rmdir /run/netns 2>/dev/null || true
		fi
	fi
	[ -n "$STATE_DIR_WAS" ] || rmdir /run/subhost/.plugins /run/subhost 2>/dev/null || true
	[ -z "$TMP" ] || ! [ -O "$TMP" ] || rm -rf --one-file-system "$TMP"
	[ "$rc" = 0 ] || echo "demo: failed or interrupted (exit $rc); everything it made is removed" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

step "1. Packages (${PKGS[*]}) and make build"
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }
fi
command -v go >/dev/null || die "Go is needed to build subhost (see go.mod for the version)"
make --no-print-directory build >/dev/null
echo "built $("$SH" version | head -1)"

step "2. A busybox guest root, made into a disk image with 'subhost image build'"
# Name first, then mkdir: a signal between mktemp -d and the assignment
# would leave a directory the cleanup does not know of.
TMP=$(mktemp -u /tmp/subhost-demo.XXXXXX)
mkdir -m 0700 "$TMP"
ROOT=$TMP/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/rc0.d,etc/rc2.d,proc,sys,dev,run,tmp,root,www}
chmod 1777 "$ROOT/tmp"
install -m 755 /bin/busybox "$ROOT/bin/busybox"
/bin/busybox --list-full | while read -r p; do
	[ "$p" = bin/busybox ] || ln -sf "$(realpath -s -m --relative-to="/${p%/*}" /bin/busybox)" "$ROOT/$p"
done
install -m 755 demo/rcS "$ROOT/etc/init.d/rcS"
cat >"$ROOT/etc/init.d/rc" <<'EOF'
#!/bin/sh
# rc RUNLEVEL: K* scripts with "stop", then S* scripts with "start"
for s in /etc/rc$1.d/K*; do [ -x "$s" ] && "$s" stop; done
for s in /etc/rc$1.d/S*; do [ -x "$s" ] && "$s" start; done
exit 0
EOF
chmod 755 "$ROOT/etc/init.d/rc"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
printf '127.0.0.1 localhost\n%s %s\n' "$GUEST_IP" "$NAME" >"$ROOT/etc/hosts"
"$SH" image build --from "$ROOT" --size 64M --table mbr "$TMP/disk.raw"
echo "guest root: $(find "$ROOT" | wc -l) entries; image: $TMP/disk.raw (64M sparse, MBR, ext4 in partition 1)"

step "3. Network namespace $NET with bridge $BR ($HOST_IP/24)"
echo "The demo runs subhost inside a throwaway network namespace that stands in"
echo "for the host's network, so the machine's real network is never touched."
NETNS=1
ip netns add "$NET"
ip -n "$NET" link set lo up
ip -n "$NET" link add "$BR" type bridge
ip -n "$NET" addr add "$HOST_IP/24" dev "$BR"
ip -n "$NET" link set "$BR" up
innet ip -br addr show "$BR"

step "4. Boot subhost $NAME detached with pretend-boot"
HOME_DIR=$TMP/home
mkdir -p "$HOME_DIR"
cat >"$HOME_DIR/config" <<EOF
# subhost $NAME: root filesystem on partition 1 of the demo image, one NIC on $BR
DISKS=( vda:1:$TMP/disk.raw )
BRIDGES=( $BR:$MAC )
EOF
chown root:root "$HOME_DIR/config"
chmod 0644 "$HOME_DIR/config"
sed 's/^/  config: /' "$HOME_DIR/config"
# pretend-boot is subhost under another name (make install links it so):
# `pretend-boot ARGS` = `subhost run --pipeline pretend-boot ARGS`.
ln -s "$SH" "$TMP/pretend-boot"
BOOTED=1
echo "+ pretend-boot --detach --home $HOME_DIR $NAME"
shielded "$TMP/pretend-boot" --detach --home "$HOME_DIR" "$NAME"

step "5. The guest answers from the host side over $BR"
fetch() {
	if command -v curl >/dev/null; then innet curl -fsS --max-time 2 "$1"
	else innet /bin/busybox wget -qO- -T 2 "$1"; fi
}
page=
for _ in $(seq 20); do
	page=$(fetch "http://$GUEST_IP/" 2>/dev/null) && break
	sleep 0.5
done
[ -n "$page" ] || die "no answer from http://$GUEST_IP/ within 10 s (console log: /var/log/subhost/$NAME.log)"
echo "+ GET http://$GUEST_IP/"
echo "$page"
echo "+ subhost list"
"$SH" list
echo "+ subhost status $NAME"
"$SH" status "$NAME"
echo "+ subhost enter $NAME -- /bin/sh -c 'hostname; ip addr show eth0; ps'"
"$SH" enter "$NAME" -- /bin/sh -c 'hostname; ip addr show eth0; ps'
echo "+ host side: ip -br link show master $BR (in $NET)"
innet ip -br link show master "$BR"

step "6. Power off: write to /run/initctl inside the guest"
echo "+ subhost enter $NAME -- /bin/sh -c 'echo 0 >/run/initctl'"
"$SH" enter "$NAME" -- /bin/sh -c 'echo 0 >/run/initctl'
state= stopped=
for _ in $(seq 100); do
	state=$("$SH" status "$NAME") && state=${state%%$'\n'*}
	case $state in *stopped*) [ -e "/run/subhost/$NAME" ] || { stopped=1; break; } ;; esac
	sleep 0.2
done
if [ -n "$stopped" ]; then echo "$state"
else echo "still '$state' after 20 s; forcing it off"; shielded "$SH" stop --force "$NAME"; fi
BOOTED=

step "7. Clean up"
cleanup
echo "removed $NET, $BR and $TMP; the subhost's mounts, loop devices and netns went down with it"
echo "logs stay in /var/log/subhost/$NAME.log and $NAME.supervisor.log"
