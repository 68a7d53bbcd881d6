package solo

import (
	"os"
	"strconv"
	"testing"
)

// TestTakeKnockRelease: the first Take holds the name; a second finds it
// taken, knocks and gets nothing; the knock is seen exactly once; the name
// is free again once released.
func TestTakeKnockRelease(t *testing.T) {
	name := "@subhost-test-solo-" + strconv.Itoa(os.Getpid())
	c := Take(name)
	if c == nil {
		t.Fatal("cannot take a free name")
	}
	if c.Knocked() {
		t.Error("knocked before anyone came")
	}
	if Take(name) != nil {
		t.Fatal("a second Take got the name")
	}
	if !c.Knocked() || c.Knocked() {
		t.Error("one knock is not seen exactly once")
	}
	c.Release()
	again := Take(name)
	if again == nil {
		t.Fatal("the name is still taken after Release")
	}
	again.Release()
}
