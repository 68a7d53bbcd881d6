package idrange

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]Spec{
		"":            {},
		"no":          {},
		"pick":        {Enabled: true, Pick: true},
		"1000000":     {Enabled: true, Range: Range{1000000, Block}},
		"524288:1000": {Enabled: true, Range: Range{524288, 1000}},
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yes", "0", "0:65536", "-1", "65536:0", "65536:x", "4294967295", "4294967000:65536", "pick:1", " 65536"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func scratch(t *testing.T, subuid string) Registry {
	dir := t.TempDir()
	sub := filepath.Join(dir, "subuid")
	if err := os.WriteFile(sub, []byte(subuid), 0o644); err != nil {
		t.Fatal(err)
	}
	return Registry{Dir: dir, SubIDFiles: []string{sub, filepath.Join(dir, "no-subgid")}, AccountFiles: []string{}}
}

func TestPickIsStableAndReleased(t *testing.T) {
	r := scratch(t, "")
	a := Owner{"web1", "/opt/sub/web1"}
	got, err := r.Acquire(a, Spec{Enabled: true, Pick: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != Block || got.Base%Block != 0 || got.Base < pickFirst || uint64(got.Base)+Block > pickEnd {
		t.Fatalf("picked %+v: not an aligned block in the window", got)
	}
	again, err := r.Acquire(a, Spec{Enabled: true, Pick: true})
	if err != nil || again != got {
		t.Fatalf("second acquire by the same owner: %+v, %v; want %+v", again, err, got)
	}
	if err := r.Release(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.file()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an empty registry left its file: %v", err)
	}
	after, err := r.Acquire(a, Spec{Enabled: true, Pick: true})
	if err != nil || after != got {
		t.Fatalf("after release the same name got %+v, %v; want %+v (stable while free)", after, err, got)
	}
	if err := r.Release(Owner{"other", "/x"}); err != nil {
		t.Errorf("releasing what is not held: %v", err)
	}
}

func TestConcurrentPicksAreDisjoint(t *testing.T) {
	r := scratch(t, "")
	const n = 20
	got := make([]Range, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each its own Registry value, as separate processes would be.
			reg := Registry{Dir: r.Dir, SubIDFiles: r.SubIDFiles, AccountFiles: r.AccountFiles}
			got[i], errs[i] = reg.Acquire(Owner{fmt.Sprintf("g%d", i%3), fmt.Sprintf("/h/%d", i)}, Spec{Enabled: true, Pick: true})
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for j := range i {
			if got[i].Overlaps(got[j]) {
				t.Errorf("picks %d and %d overlap: %s, %s", i, j, got[i], got[j])
			}
		}
	}
	entries, err := r.read()
	if err != nil || len(entries) != n {
		t.Fatalf("registry holds %d entries (%v), want %d", len(entries), err, n)
	}
}

func TestPickSkipsSubIDsAndExplicitOverlapIsRefused(t *testing.T) {
	// The name's first candidate, then given to a user in subuid.
	first, err := pick("web1", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := scratch(t, fmt.Sprintf("# comment\nbad line\nalice:%d:100\n", first.Base+10))
	got, err := r.Acquire(Owner{"web1", "/h"}, Spec{Enabled: true, Pick: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Overlaps(Range{first.Base + 10, 100}) {
		t.Fatalf("picked %s over alice's subuid range", got)
	}
	// An explicit range over alice's, or over web1's: refused, unrecorded.
	for _, want := range []Range{{first.Base, Block}, {got.Base + 5, 10}} {
		_, err := r.Acquire(Owner{"web2", "/h"}, Spec{Enabled: true, Range: want})
		if !errors.Is(err, ErrTaken) {
			t.Errorf("explicit %s: got %v, want ErrTaken", want, err)
		}
		if err := r.Check(Owner{"web2", "/h"}, want); !errors.Is(err, ErrTaken) {
			t.Errorf("check %s: got %v, want ErrTaken", want, err)
		}
	}
	if _, held, _ := r.Lookup(Owner{"web2", "/h"}); held {
		t.Error("a refused range was recorded")
	}
	// A free explicit range is given, and kept by its owner.
	free := Range{got.Base + Block, 1000}
	if g, err := r.Acquire(Owner{"web2", "/h"}, Spec{Enabled: true, Range: free}); err != nil || g != free {
		t.Errorf("free explicit range: %v, %v", g, err)
	}
}

// A host user's or group's own id is never in a guest's range: its owner
// could ptrace the guest's root, or the guest's root would be that user.
// An explicit range holding one is refused naming it; pick passes over it.
func TestRangesKeepClearOfHostAccounts(t *testing.T) {
	first, err := pick("web1", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := scratch(t, "")
	passwd := filepath.Join(r.Dir, "passwd")
	group := filepath.Join(r.Dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"), 0o644)
	os.WriteFile(group, []byte(fmt.Sprintf("root:x:0:\nldapusers:x:%d:alice,bob\n", first.Base+7)), 0o644)
	r.AccountFiles = []string{passwd, group}
	for _, tc := range []struct {
		want Range
		says string
	}{
		{Range{1000, Block}, "it overlaps id 1000 of alice at " + passwd + ":2"},
		{Range{1, Block}, "it overlaps id 1000 of alice"},
		{Range{first.Base, Block}, fmt.Sprintf("it overlaps id %d of ldapusers at %s:2", first.Base+7, group)},
	} {
		_, err := r.Acquire(Owner{"web2", "/h"}, Spec{Enabled: true, Range: tc.want})
		if !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("explicit %s: %v, want ErrTaken saying %q", tc.want, err, tc.says)
		}
	}
	got, err := r.Acquire(Owner{"web1", "/h"}, Spec{Enabled: true, Pick: true})
	if err != nil || got.Overlaps(Range{first.Base + 7, 1}) {
		t.Errorf("picked %s (%v) over the ldapusers group's id %d", got, err, first.Base+7)
	}
}

// The registry's directory, /run/subhost when the userns stage is the
// first to need it, is made root-only, as the runner makes it.
func TestRegistryDirIsRootOnly(t *testing.T) {
	r := scratch(t, "")
	r.Dir = filepath.Join(r.Dir, "run-subhost")
	if _, err := r.Acquire(Owner{"web1", "/h"}, Spec{Enabled: true, Pick: true}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(r.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("registry directory: %v %v, want mode 0700", fi.Mode(), err)
	}
}
