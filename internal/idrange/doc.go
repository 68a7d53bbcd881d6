// Package idrange parses PRIVATE_USERS and hands out the host uid/gid
// ranges that unprivileged subhosts' user namespaces map to.
//
// A Registry is a host-wide file of its own (STATEROOT/.idranges, JSON,
// replaced atomically) guarded by an flock on STATEROOT/.idranges.lock:
// every allocation reads, decides and writes under that lock, so
// concurrent boots never pick the same range, and no subhost's choice
// depends on a snapshot of the others that a request carried. A range
// stays allocated to its subhost (name and home) until Release, which
// the userns stage's Down calls: a hibernating subhost keeps its range,
// and boots again with the same one.
//
// "pick" chooses a 65536-aligned block of 65536 ids between 0x80000 and
// 0x6fff0000 (systemd-nspawn's window, so the two never meet by
// accident), starting from a candidate derived from the subhost's name,
// so a subhost gets the same range each time while it is free, and
// skipping blocks that overlap another subhost's range or any range that
// /etc/subuid or /etc/subgid gives a user.
package idrange
