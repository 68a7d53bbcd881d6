package console

import (
	"bufio"
	"bytes"
	"testing"
)

func TestEscaper(t *testing.T) {
	const e = DefaultEscape
	type step struct {
		fwd string
		act action
	}
	tests := []struct {
		name  string
		esc   byte
		input []string // successive reads
		want  []step   // every scan result, in order
	}{
		{"plain", e, []string{"ls\r"}, []step{{"ls\r", actNone}}},
		{"detach at start", e, []string{"\x1dd"}, []step{{"", actDetach}}},
		{"poweroff after a line", e, []string{"ls\r\x1dq"}, []step{{"ls\r", actPowerOff}}},
		{"after newline", e, []string{"ls\n\x1dd"}, []step{{"ls\n", actDetach}}},
		{"mid-line is literal", e, []string{"ab\x1dd"}, []step{{"ab\x1dd", actNone}}},
		{"double escape sends one", e, []string{"\x1d\x1dd"}, []step{{"\x1dd", actNone}}},
		{"unknown sends both", e, []string{"\x1dx\r"}, []step{{"\x1dx\r", actNone}}},
		{"unknown then newline rearms", e, []string{"\x1d\r\x1dd"}, []step{{"\x1d\r", actDetach}}},
		{"split over reads", e, []string{"\x1d", "d"}, []step{{"", actNone}, {"", actDetach}}},
		{"help then detach", e, []string{"\x1d?\x1dd"}, []step{{"", actHelp}, {"", actDetach}}},
		{"disabled", 0, []string{"\x1dd"}, []step{{"\x1dd", actNone}}},
		{"other escape char", 'X', []string{"\x1dd\rXq"}, []step{{"\x1dd\r", actPowerOff}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := newEscaper(tt.esc)
			var got []step
			for _, in := range tt.input {
				for p := []byte(in); ; {
					fwd, act, n := es.scan(p)
					got = append(got, step{string(fwd), act})
					p = p[n:]
					if len(p) == 0 {
						break
					}
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("step %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestHelpTextNamesEscape(t *testing.T) {
	if h := helpText(DefaultEscape); !bytes.Contains(h, []byte("^]d")) || !bytes.Contains(h, []byte("\r\n")) {
		t.Fatalf("help text %q", h)
	}
}

func TestRing(t *testing.T) {
	r := ring{max: 8}
	r.write([]byte("abc"))
	r.write([]byte("defgh"))
	r.write([]byte("ij"))
	if got := string(r.b); got != "cdefghij" {
		t.Fatalf("ring = %q", got)
	}
	r.write([]byte("0123456789"))
	if got := string(r.b); got != "23456789" {
		t.Fatalf("ring = %q", got)
	}
}

func TestFrames(t *testing.T) {
	big := bytes.Repeat([]byte("z"), maxFrame+10)
	var b []byte
	b = appendData(b, big)
	b = appendFrame(b, frameResize, resizePayload(40, 120))
	b = appendFrame(b, framePowerOff, nil)
	br := bufio.NewReader(bytes.NewReader(b))
	var buf []byte
	var data []byte
	var types []byte
	for {
		typ, p, err := readFrame(br, &buf)
		if err != nil {
			break
		}
		types = append(types, typ)
		if typ == frameData {
			data = append(data, p...)
		}
		if typ == frameResize && !bytes.Equal(p, []byte{0, 40, 0, 120}) {
			t.Fatalf("resize payload %v", p)
		}
	}
	if string(types) != "ddwp" || !bytes.Equal(data, big) {
		t.Fatalf("types %q, %d data bytes", types, len(data))
	}
	// A length over the cap is refused before anything is allocated.
	bad := []byte{frameData, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(bad)), &buf); err == nil {
		t.Fatal("oversized frame accepted")
	}
}
