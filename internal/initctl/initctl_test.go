package initctl

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func req(cmd int32, rl rune) []byte {
	return Request{Cmd: cmd, Runlevel: int32(rl)}.Marshal()
}

func setenv(s string) []byte {
	r := Request{Cmd: CmdSetenv}
	copy(r.Data[:], s+"\x00")
	return r.Marshal()
}

func TestNext(t *testing.T) {
	badMagic := req(CmdRunlevel, '6')
	binary.NativeEndian.PutUint32(badMagic, 0x69190903) // other byte order
	for _, tc := range []struct {
		name string
		in   []byte
		act  Action
		why  string
		rest int
	}{
		{"runlevel 0", req(CmdRunlevel, '0'), PowerOff, "runlevel 0", 0},
		{"runlevel 6", req(CmdRunlevel, '6'), Reboot, "runlevel 6", 0},
		{"runlevel 2", req(CmdRunlevel, '2'), Ignore, "runlevel 2", 0},
		{"runlevel S", req(CmdRunlevel, 'S'), Ignore, "runlevel S", 0},
		{"telinit q", req(CmdRunlevel, 'q'), Ignore, "runlevel q", 0},
		{"setenv", setenv("INIT_HALT=POWEROFF"), Ignore, `SETENV "INIT_HALT=POWEROFF"`, 0},
		{"unsetenv", Request{Cmd: CmdUnsetenv}.Marshal(), Ignore, `UNSETENV ""`, 0},
		{"powerfail", req(CmdPowerFail, 0), Ignore, "power status 2", 0},
		{"two requests", append(req(CmdRunlevel, '2'), req(CmdRunlevel, '0')...), Ignore, "runlevel 2", Size},
		{"empty", nil, PowerOff, "short request (0 bytes, want 384)", 0},
		{"echo x", []byte("x\n"), PowerOff, "short request (2 bytes, want 384)", 0},
		{"short", req(CmdRunlevel, '6')[:Size-1], PowerOff, "short request (383 bytes, want 384)", 0},
		{"garbage", bytes.Repeat([]byte("garbage!"), 48), PowerOff, "bad magic 0x62726167", 0},
		{"wrong byte order", badMagic, PowerOff, "bad magic 0x69190903", 0},
		{"runlevel as number", req(CmdRunlevel, 0), PowerOff, "unknown runlevel 0x0", 0},
		{"runlevel junk", req(CmdRunlevel, 'x'), PowerOff, "unknown runlevel 0x78", 0},
		{"unknown command", req(99, '0'), PowerOff, "unknown command 99", 0},
		{"trailing garbage is garbage", append(req(CmdRunlevel, '6'), 'x'), Reboot, "runlevel 6", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			act, why, rest := Next(tc.in)
			if act != tc.act || why != tc.why || len(rest) != tc.rest {
				t.Errorf("Next = %v, %q, %d bytes left; want %v, %q, %d", act, why, len(rest), tc.act, tc.why, tc.rest)
			}
		})
	}
}

func TestNextSequence(t *testing.T) {
	// What sysvinit's shutdown -h writes: SETENV first, then runlevel 0.
	buf := append(setenv("INIT_HALT=POWEROFF"), req(CmdRunlevel, '0')...)
	var acts []Action
	for len(buf) > 0 {
		var act Action
		act, _, buf = Next(buf)
		acts = append(acts, act)
	}
	if len(acts) != 2 || acts[0] != Ignore || acts[1] != PowerOff {
		t.Errorf("actions = %v, want [ignore power off]", acts)
	}
}

func TestRoundTrip(t *testing.T) {
	r := Request{Cmd: CmdRunlevel, Runlevel: '6', Sleeptime: 5}
	copy(r.Data[:], "hello")
	got, err := Parse(r.Marshal())
	if err != nil || got != r {
		t.Errorf("Parse(Marshal(r)) = %+v, %v; want %+v", got, err, r)
	}
}

func TestFirstStringBounded(t *testing.T) {
	_, why, _ := Next(setenv(strings.Repeat("A", 300)))
	if len(why) > 80 {
		t.Errorf("note is %d characters long: %q", len(why), why)
	}
}

func FuzzNext(f *testing.F) {
	f.Add([]byte("x\n"))
	f.Add(req(CmdRunlevel, '0'))
	f.Add(req(CmdRunlevel, '6'))
	f.Add(append(setenv("A=B"), req(CmdRunlevel, '2')...))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		for buf := b; len(buf) > 0; n++ {
			act, why, rest := Next(buf)
			if why == "" || strings.ContainsAny(why, "\n\r") {
				t.Fatalf("note %q is not one short line", why)
			}
			if len(rest) >= len(buf) {
				t.Fatalf("Next did not consume input: %d -> %d bytes", len(buf), len(rest))
			}
			if act != Ignore && len(buf) >= Size && binary.NativeEndian.Uint32(buf) == Magic {
				// a decision on a well-formed request names it
				if !strings.Contains(why, "runlevel") && !strings.Contains(why, "command") {
					t.Fatalf("%v with note %q", act, why)
				}
			}
			if act == Ignore && len(buf) < Size {
				t.Fatalf("short input %d bytes ignored", len(buf))
			}
			buf = rest
		}
	})
}
