package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The main goroutine, and so TestMain, stays on the process's main
// thread: see mainThreadElsewhere.
func init() { runtime.LockOSThread() }

// mainThreadElsewhere, set in a helper process's environment, moves the
// main thread into a network namespace of its own before the tests run:
// as a plugin's main thread ends up when one of its throwaway-thread
// goroutines ran there (the runtime parks the main thread for good
// rather than end it), and /proc/self/ns/net then names that namespace.
const mainThreadElsewhere = "NET_VETH_MAIN_THREAD_ELSEWHERE"

// lockDirEnv hands a helper process the tests' lockDir.
const lockDirEnv = "NET_VETH_LOCK_DIR"

func TestMain(m *testing.M) {
	if os.Getenv(mainThreadElsewhere) != "" {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	// Locks and marks go to a scratch directory, not the host's state
	// root; a helper process the tests start uses its parent's.
	dir, ownDir := os.Getenv(lockDirEnv), false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "net-veth-locks"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ownDir = true
	}
	lockDir = dir
	// The first netns a test makes turns /run/netns into a shared mount
	// point, as `ip netns add` does, and it stays one (iproute2 never
	// undoes it either). Do it before any test takes its leak snapshot.
	if os.Geteuid() == 0 {
		if err := prepareNetnsDir(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if ownDir {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// testHost is a throwaway network namespace standing in for the host:
// the stage's bridges live there, never in the machine's real network.
type testHost struct {
	t  *testing.T
	ns *os.File
	h  *netlink.Handle
}

// newTestHost makes an unnamed network namespace, held only by an open
// file, so nothing shows in /run/netns; it goes away when the test ends.
// It returns a stage pointed at it and at an empty runner state dir.
func newTestHost(t *testing.T) (*testHost, *stage) {
	t.Helper()
	var ns *os.File
	err := onThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		var err error
		ns, err = os.Open("/proc/thread-self/ns/net")
		return err
	})
	if err != nil {
		t.Fatalf("test host netns: %v", err)
	}
	h, err := handleAt(ns)
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		ns.Close()
	})
	th := &testHost{t: t, ns: ns, h: h}
	return th, &stage{hostNetns: fmt.Sprintf("/proc/self/fd/%d", ns.Fd())}
}

// bridge adds an up bridge with that MTU (0: the default).
func (th *testHost) bridge(name string, mtu int) *netlink.Bridge {
	th.t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = name, mtu
	br := &netlink.Bridge{LinkAttrs: attrs}
	if err := th.h.LinkAdd(br); err != nil {
		th.t.Fatalf("add bridge %s: %v", name, err)
	}
	if err := th.h.LinkSetUp(br); err != nil {
		th.t.Fatal(err)
	}
	return br
}

// uplink stands in for the host's NIC on the bridge's network: port
// nic0 of br with that MAC, one end of a veth pair (nic0p the other),
// deleted when the test ends.
func (th *testHost) uplink(br *netlink.Bridge, mac string) {
	th.t.Helper()
	nic := netlink.NewLinkAttrs()
	nic.Name, nic.MasterIndex = "nic0", br.Attrs().Index
	nic.HardwareAddr, _ = net.ParseMAC(mac)
	if err := th.h.LinkAdd(&netlink.Veth{LinkAttrs: nic, PeerName: "nic0p"}); err != nil {
		th.t.Fatal(err)
	}
	th.t.Cleanup(func() { th.h.LinkDel(th.link("nic0")) })
}

// tap adds a persistent tap device: a port that is not a veth, as a
// VM's would be (this kernel has no dummy interfaces).
func (th *testHost) tap(name string) {
	th.t.Helper()
	ip := exec.Command("nsenter", "--net=/proc/self/fd/3", "ip", "tuntap", "add", name, "mode", "tap")
	ip.ExtraFiles = []*os.File{th.ns}
	if out, err := ip.CombinedOutput(); err != nil {
		th.t.Fatalf("add tap %s: %v: %s", name, err, out)
	}
	th.t.Cleanup(func() { th.h.LinkDel(th.link(name)) })
}

func (th *testHost) link(name string) netlink.Link {
	th.t.Helper()
	l, err := th.h.LinkByName(name)
	if err != nil {
		th.t.Fatalf("host interface %s: %v", name, err)
	}
	return l
}

func (th *testHost) has(name string) bool {
	_, err := th.h.LinkByName(name)
	return err == nil
}

func (th *testHost) linkNames() []string {
	th.t.Helper()
	links, err := th.h.LinkList()
	if err != nil {
		th.t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	slices.Sort(out)
	return out
}

// guest opens the subhost's named netns for inspection.
func guest(t *testing.T, name string) *netlink.Handle {
	t.Helper()
	f, err := openNetns(netnsDir + "/" + name)
	if err != nil || f == nil {
		t.Fatalf("netns %s: %v (exists: %v)", name, err, f != nil)
	}
	defer f.Close()
	h, err := handleAt(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func netnsExists(name string) bool {
	_, err := os.Lstat(netnsDir + "/" + name)
	return err == nil
}

// inNetns runs fn on a throwaway thread inside the named netns: sockets
// fn opens stay there.
func inNetns(name string, fn func() error) error {
	return onThrowawayThread(func() error {
		f, err := os.Open(netnsDir + "/" + name)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return err
		}
		return fn()
	})
}

// subhostName is unique to this test process, short enough for
// "<name><i>" to fit in an interface name.
func subhostName(tag string) string {
	return fmt.Sprintf("nv%d%s", os.Getpid()%100000, tag)
}

func isUp(l netlink.Link) bool { return l.Attrs().Flags&net.FlagUp != 0 }
