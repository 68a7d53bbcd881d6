// Package pluginhost finds stage plugin executables and runs them, with
// go-plugin's protocol, the way a root process must: only root-owned files that no one
// else can write, optionally pinned by sha256 (hashed afresh from the very
// file descriptor that is executed), each plugin in its own process group
// with a parent-death signal, /dev/null stdin, a fixed environment and its
// socket in a root-only directory; and killed, group and all, after use.
package pluginhost
