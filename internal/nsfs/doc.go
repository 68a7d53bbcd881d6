// Package nsfs pins namespaces to files and finds them again: the bind
// mounts of /proc/PID/ns/* that `ip netns add` and `unshare --user=FILE`
// make, so that a namespace outlives the processes that were in it, and
// the checks that a pinned file is the namespace it should be.
package nsfs
