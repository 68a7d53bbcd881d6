package pluginhost

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// TestProcessRunsItsFileWhateverItsNumber: before the exec, os/exec's
// child moves its error pipe onto the number just above the files it is
// given. An executable named by its number in this process
// (/proc/self/fd/N) was overwritten there when N was that number and the
// pipe had a lower one, and the child then executed the pipe (EACCES);
// concurrent starts under load made that layout now and then. The test
// makes it on purpose.
func TestProcessRunsItsFileWhateverItsNumber(t *testing.T) {
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	// Two low numbers, freed just before the start, for the error pipe.
	low := make([]*os.File, 2)
	for i := range low {
		if low[i], err = os.Open(os.DevNull); err != nil {
			t.Fatal(err)
		}
	}
	opened, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProcess(opened, bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.cmd.Path != "/proc/self/fd/3" || len(p.cmd.ExtraFiles) != 1 || p.cmd.ExtraFiles[0] != opened {
		t.Fatalf("the child runs %s with extra files %v, want /proc/self/fd/3, the executable its descriptor 3", p.cmd.Path, p.cmd.ExtraFiles)
	}
	// The executable goes to the number just above the child's files.
	top := 0
	for _, f := range []*os.File{p.cmd.Stdin.(*os.File), p.stdoutW(t), p.stderrW(t)} {
		top = max(top, int(f.Fd()))
	}
	target := top + 1
	if _, err := unix.FcntlInt(uintptr(target), unix.F_GETFD, 0); err == nil {
		t.Skipf("descriptor %d is taken: cannot make the layout", target)
	}
	if err := unix.Dup3(int(opened.Fd()), target, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	exe := os.NewFile(uintptr(target), bin)
	p.cmd.ExtraFiles = []*os.File{exe}
	p.exe = exe
	opened.Close()
	for _, f := range low {
		f.Close()
	}

	if err := p.Start(); err != nil {
		t.Fatalf("start %s open as descriptor %d: %v", bin, target, err)
	}
	p.stdout.Close()
	p.stderr.Close()
	if <-p.done; p.status != "exit status 0" {
		t.Errorf("%s: %s", bin, p.status)
	}
}

// stdoutW and stderrW are the write ends of the plugin's output pipes,
// the child's descriptors 1 and 2.
func (p *process) stdoutW(t *testing.T) *os.File { return childFile(t, p.cmd.Stdout) }
func (p *process) stderrW(t *testing.T) *os.File { return childFile(t, p.cmd.Stderr) }

func childFile(t *testing.T, w any) *os.File {
	f, ok := w.(*os.File)
	if !ok {
		t.Fatalf("child output is a %T, not a file", w)
	}
	return f
}
