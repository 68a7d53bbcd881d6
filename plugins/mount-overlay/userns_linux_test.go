package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/internal/nsfs"
	"github.com/subhost/subhost/internal/userns"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// The test binary is the plugin's executable here: Up runs it as the
	// overlay helper inside the user namespace.
	if len(os.Args) > 1 && os.Args[1] == overlayHelperArg {
		overlayHelperMain()
	}
	os.Exit(m.Run())
}

// testRange is outside pick's window: no subhost uses it.
var testRange = idrange.Range{Base: 0x7e000000, Size: idrange.Block}

// TestUnprivilegedOverlay: with PRIVATE_USERS and a user namespace in the
// boot record, the overlay is mounted inside that namespace (userxattr)
// over idmapped layers: live shows the layers' uid 0 files as the range's
// base, and the record says the root is the namespace's. Up adopts it
// again; a privileged request refuses it (and an unprivileged one refuses
// a privileged overlay); a request without the namespace is invalid;
// Down leaves nothing.
func TestUnprivilegedOverlay(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	dir := t.TempDir()
	pin, netPin := filepath.Join(dir, "user"), filepath.Join(dir, "net")
	if err := userns.Create(testRange, pin, netPin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsfs.Unpin(netPin); nsfs.Unpin(pin) })

	parent := scratch(t)
	top, bottom := filepath.Join(parent, "top"), filepath.Join(parent, "bottom")
	write(t, filepath.Join(top, "etc", "layer"), "top\n")
	write(t, filepath.Join(bottom, "etc", "layer"), "bottom\n")
	write(t, filepath.Join(bottom, "etc", "only-bottom"), "b\n")
	priv := newHome(t, parent, "uo", top+":"+bottom)
	unpriv := *priv
	unpriv.Subhost.Vars = map[string]sdk.Var{"PRIVATE_USERS": {Words: []string{"pick"}}}
	for k, v := range priv.Subhost.Vars {
		unpriv.Subhost.Vars[k] = v
	}
	live := filepath.Join(priv.Subhost.Home, "live")

	if _, err := (&stage{}).Up(context.Background(), &unpriv); !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), "userns stage") {
		t.Errorf("Up without the user namespace in the record: %v, want invalid config naming the userns stage", err)
	}
	unpriv.Record.Userns = pin
	res := up(t, &unpriv)
	// The Up closed the layers' descriptors; a file opened now may take
	// one of their numbers, and must keep it through a garbage
	// collection (an os.File left over a closed descriptor closes it
	// again when collected: so it did, and a test's cleanup then failed
	// with "bad file descriptor").
	probes := make([]*os.File, 8)
	for i := range probes {
		f, err := os.Open(parent)
		if err != nil {
			t.Fatal(err)
		}
		probes[i] = f
	}
	runtime.GC()
	runtime.GC()
	time.Sleep(20 * time.Millisecond) // finalizers run in their own goroutine
	for _, f := range probes {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Errorf("descriptor %d, opened after the Up, was closed under its file: %v", f.Fd(), err)
		}
		f.Close()
	}
	if res.Record.RootUserns != pin {
		t.Errorf("record root_userns %q, want %q", res.Record.RootUserns, pin)
	}
	if m := mountinfo.TopAt(mounts(t), live); m == nil || m.FSType != "overlay" {
		t.Fatalf("live: %+v, want an overlay", m)
	} else if _, ok := m.Option("userxattr"); !ok {
		t.Errorf("live's overlay has no userxattr: it was not mounted inside the user namespace")
	}
	hostSafe(t, live)
	if got := read(t, filepath.Join(live, "etc", "layer")); got != "top\n" {
		t.Errorf("live/etc/layer: %q, want the top layer's", got)
	}
	for _, f := range []string{"etc/layer", "etc/only-bottom"} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(live, f), &st); err != nil || st.Uid != testRange.Base {
			t.Errorf("live/%s: uid %d (%v), want the range's base %d", f, st.Uid, err, testRange.Base)
		}
	}

	// Hibernation: adopted as it is.
	if res := up(t, &unpriv); res.Record.RootUserns != pin {
		t.Errorf("adopted: record root_userns %q", res.Record.RootUserns)
	}
	if _, err := (&stage{}).Up(context.Background(), priv); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "unprivileged") {
		t.Errorf("privileged Up over the unprivileged overlay: %v, want a conflict", err)
	}
	down(t, &unpriv)

	up(t, priv)
	if _, err := (&stage{}).Up(context.Background(), &unpriv); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "privileged") {
		t.Errorf("unprivileged Up over a privileged overlay: %v, want a conflict", err)
	}
	down(t, priv)
	if got := mountsUnder(t, priv.Subhost.Home); len(got) != 0 {
		t.Errorf("left mounted: %v", got)
	}
}

func mounts(t *testing.T) []mountinfo.Entry {
	t.Helper()
	ms, err := mountinfo.Self()
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
