// Package testguest builds what end-to-end tests boot: a busybox guest
// root (Debian's busybox-static), disk images of it, throwaway network
// namespaces holding bridges, and scratch tmpfs directories.
//
// It is test support: every helper takes a testing.TB, fails the test on
// error and undoes what it created in t.Cleanup, so a test that calls
// stagetest.NoLeaks first sees a clean host when it ends.
//
// The guest root's /etc/init.d/rcS and /etc/init.d/rc leave markers a test
// can wait for:
//
//	/run/ready-rcS    rcS has finished (tmpfs: gone at power off)
//	/root/rcS-ran     rcS has run (on the root filesystem: seen from the host)
//	/root/rcN-ran     rc N has started (N = 0, 2, 6, ...)
//
// and print "testguest: rcS done" and "testguest: rc N" on the console.
//
// rc N runs /etc/rcN.d/K* with "stop", then /etc/rcN.d/S* with "start"
// ("stop" for runlevels 0 and 6), as Debian's rc does.
package testguest
