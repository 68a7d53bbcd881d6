// Package testunit makes, for tests on a host without systemd, what
// systemd makes for a service unit: a scratch cgroup
// <slice>.slice/<unit>.service in the cgroup2 tree and, on hybrid hosts,
// in systemd's name=systemd hierarchy, marked delegated
// (trusted.delegate=1, as systemd 251 and later marks a unit with
// Delegate=yes) or not, and a way to start a process in it. At cleanup
// it does what systemd does once a unit has stopped: it removes the
// unit's cgroup with whatever the supervisor left below it (its leaf),
// after failing the test for anything else left there: a guest's
// cgroups must be gone by then.
package testunit
