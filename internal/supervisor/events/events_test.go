package events

import (
	"bytes"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	var pipe bytes.Buffer
	w := NewWriter(&pipe)
	w.Send(Event{Progress: "a validate ok\n"})
	pipe.WriteString("not an event\n")
	w.Send(Event{Log: "/var/log/subhost/x.supervisor.log"})
	w.Send(Event{Progress: strings.Repeat("x", 200<<10)}) // past bufio's default line
	w.Send(Event{Ready: true, PID: 42})

	rd := NewReader(&pipe)
	var got []Event
	for e, ok := rd.Next(); ok; e, ok = rd.Next() {
		got = append(got, e)
	}
	if len(got) != 4 || got[0].Progress != "a validate ok\n" || got[1].Log == "" || len(got[2].Progress) != 200<<10 || got[3].PID != 42 {
		t.Errorf("events %+v", got)
	}
	if rd.Log != "/var/log/subhost/x.supervisor.log" {
		t.Errorf("Log %q", rd.Log)
	}
}
