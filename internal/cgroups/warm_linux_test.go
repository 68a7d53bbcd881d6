package cgroups

import (
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// TestKeepMigrationWarm: the moves change nothing (this process stays in
// its cgroups); while a boot's warmer runs, another boot's call does not
// take its place (it knocks and returns); the name is free once the
// warmer stopped, and stop may be called more than once.
func TestKeepMigrationWarm(t *testing.T) {
	stagetest.RequireRoot(t)
	procs, ok := ownProcsFile()
	if !ok {
		t.Skip("no mounted cgroup hierarchy")
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	taken := func() bool {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		return unix.Bind(fd, &unix.SockaddrUnix{Name: warmSocket}) != nil
	}
	if taken() {
		t.Skip("another boot's warmer runs on this host")
	}
	stop1 := KeepMigrationWarm()
	if !taken() {
		t.Fatal("the first boot's warmer does not hold the name")
	}
	time.Sleep(20 * warmInterval)
	// A move of its own meanwhile works as ever.
	if err := writeFile(procs, strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	stop2 := KeepMigrationWarm()
	stop2()
	if !taken() {
		t.Error("the name went with the second boot")
	}
	stop1()
	stop1()
	for deadline := time.Now().Add(2 * time.Second); taken(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the name is still taken after stop")
		}
	}
	after, _ := os.ReadFile("/proc/self/cgroup")
	if string(after) != string(before) {
		t.Errorf("cgroups changed:\n%s\nnow:\n%s", before, after)
	}
}
