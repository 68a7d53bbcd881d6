package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/testguest"
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
	kill := testguest.FlockAs(t, img, 65534)

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

// TestImageReplacedWhileLocking: A's Up has locked the image its path
// names when a new image is renamed over the path; B's Up locks and
// surveys the new one, then waits (a while) for A to survey too. A must
// not survey and attach the new image under its lock on the old one:
// the two would mount one file system read-write twice. One Up gets it,
// the other is refused, naming it.
func TestImageReplacedWhileLocking(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	nameA, homeA := subhost(t)
	nameB, homeB := subhost(t)
	img := buildImage(t, "mbr", "old")
	fresh := buildImage(t, "mbr", "new")
	reqA, reqB := request(nameA, homeA, "vda:1:"+img), request(nameB, homeB, "vda:1:"+img)
	downAtEnd(t, s, reqA)
	downAtEnd(t, s, reqB)

	var errB error
	doneB := make(chan struct{})
	surveyedA, surveyedB := make(chan struct{}), make(chan struct{})
	var onceLock, onceA, onceB sync.Once
	afterLockHook = func(name string) {
		if name != nameA {
			return
		}
		onceLock.Do(func() { // A's first lock
			if err := os.Rename(fresh, img); err != nil {
				t.Error(err)
				return
			}
			go func() {
				defer close(doneB)
				_, errB = s.Up(ctx, reqB)
			}()
			select { // until B has surveyed, unless it has to wait for A
			case <-surveyedB:
			case <-doneB:
			case <-time.After(2 * time.Second):
			}
		})
	}
	afterSurveyHook = func(name string) {
		switch name {
		case nameA:
			onceA.Do(func() { close(surveyedA) })
		case nameB:
			onceB.Do(func() {
				close(surveyedB)
				select { // until A has surveyed too, if it can
				case <-surveyedA:
				case <-time.After(2 * time.Second):
				}
			})
		}
	}
	defer func() { afterLockHook, afterSurveyHook = nil, nil }()
	_, errA := s.Up(ctx, reqA)
	<-doneB

	if (errA == nil) == (errB == nil) {
		t.Fatalf("A's Up: %v; B's Up: %v; want exactly one to succeed", errA, errB)
	}
	loser, winner := errA, nameB
	if errA == nil {
		loser, winner = errB, nameA
	}
	if !sdk.IsKind(loser, sdk.KindConflict) || !strings.Contains(loser.Error(), winner) {
		t.Errorf("the other Up: %v, want a conflict naming %s", loser, winner)
	}
	var ours int
	devs, _ := loopdev.FindByBacking(img)
	for _, d := range devs {
		if d.Tag == tagPrefix+winner {
			ours++
		}
	}
	if ours != len(devs) {
		t.Errorf("devices on the image: %+v, want only %s's", devs, winner)
	}
}

// TestDownRemovesALockLeftByAKilledUp: an Up killed while it held its
// image's lock leaves the lock file; the Down of the stop that follows
// takes it away.
func TestDownRemovesALockLeftByAKilledUp(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	img := buildImage(t, "mbr", "root")
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	lock := fileID{st.Dev, st.Ino}.lockFile()
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Down(ctx, request(name, home, "vda:1:"+img)); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if _, err := os.Lstat(lock); !os.IsNotExist(err) {
		t.Errorf("the killed Up's lock file is still there: %v", err)
	}
}
