#!/bin/sh
# The exec stage's conformance script: up makes the file named by its
# parameter "marker" (adopting one that is there), down removes it, check
# looks for it.
set -eu
m=${SUBHOST_PARAM_MARKER:-}
case $1 in
validate)
	case $m in
	/*) ;;
	*) echo "parameter marker: want an absolute path, not \"$m\"" >&2; exit 2 ;;
	esac
	;;
up)
	echo "$SUBHOST_NAME" >"$m"
	echo "made $m" >&2
	echo "{\"extra\": {\"marker\": \"$m\"}, \"state\": {\"marker\": \"$m\"}}"
	;;
down)
	rm -f "$m"
	;;
check)
	[ -f "$m" ] || { echo "$m is gone" >&2; exit 1; }
	;;
esac
