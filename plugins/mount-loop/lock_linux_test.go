package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

func TestMain(m *testing.M) {
	// The images' locks go to a scratch directory, not the host's state
	// root.
	dir, err := os.MkdirTemp("", "mount-loop-locks")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lockDir = dir
	code := m.Run()
	if entries, _ := os.ReadDir(dir); len(entries) > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "image lock files left behind: %v\n", entries)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// downAtEnd downs req from an empty state when the test ends.
func downAtEnd(t *testing.T, s *stage, req *sdk.Request) {
	t.Cleanup(func() {
		down := *req
		down.State = nil
		if err := s.Down(ctx, &down); err != nil {
			t.Errorf("cleanup Down of %s: %v", req.Subhost.Name, err)
		}
	})
}

// TestImageFlockedByAUser: an unprivileged user who may read an image
// and holds a flock on it (flock(1) as uid 65534) does not hold up Up.
func TestImageFlockedByAUser(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	img := buildImage(t, "mbr", "root")
	// Readable by all, as images often are.
	for _, p := range []string{filepath.Dir(filepath.Dir(img)), filepath.Dir(img)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(img, 0o644); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("flock", img, "sh", "-c", "echo locked; exec sleep 60")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
		Setpgid:    true,
	}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Skipf("flock(1) as uid 65534: %v", err)
	}
	kill := func() {
		unix.Kill(-holder.Process.Pid, unix.SIGKILL)
		holder.Wait()
	}
	defer kill()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("uid 65534's flock on %s: %q, %v", img, line, err)
	}

	req := request(name, home, "vda:1:"+img)
	downAtEnd(t, s, req)
	done := make(chan error, 1)
	go func() {
		_, err := s.Up(ctx, req)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Up: %v", err)
		}
	case <-time.After(5 * time.Second):
		kill() // lets it finish, so that its Down leaves nothing
		<-done
		t.Fatalf("Up waited 5 s for the flock uid 65534 holds on %s", img)
	}
}
