package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testguest"
)

// collection is the project's Ansible collection, found by Ansible under
// ANSIBLE_COLLECTIONS_PATH=../ansible.
const collection = "../ansible/ansible_collections/subhost/subhost"

// TestAnsibleFleet runs the collection's fleet playbook (tests/fleet) with
// Debian's ansible-core: three inventory hosts on the local connection,
// each with its own busybox subhost, in parallel (-f 3). The playbook
// asserts each step itself (first run changes every host, second none,
// check mode writes nothing, a change on one host changes that one,
// stopped stops all, subhost_info lists them); NoLeaks checks the host
// after. The modules find `subhost` on PATH: a wrapper that gives it this
// test's state directory (and an etc directory for autostart enrolments).
func TestAnsibleFleet(t *testing.T) {
	e := newEnv(t)
	playbook := testguest.Tool(t, "ansible-playbook", "ansible-core")
	scratch := testguest.Scratch(t)
	root := testguest.BusyboxRoot(t, filepath.Join(scratch, "rootfs"))

	wrapper := t.TempDir()
	os.Chmod(wrapper, 0o755)
	script := fmt.Sprintf("#!/bin/sh\nSUBHOST_ETC_DIR=%s exec %s --state-dir %s \"$@\"\n", filepath.Join(scratch, "etc"), subhostBin(), e.state)
	if err := os.WriteFile(filepath.Join(wrapper, "subhost"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The enrolment steps run when this subhost has `enable` (issue "Host
	// operations").
	autostart := exec.Command(subhostBin(), "enable", "--help").Run() == nil

	var inv strings.Builder
	inv.WriteString("[fleet]\n")
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&inv, "h%d sh=%s\n", i, e.name("ansb"))
	}
	fmt.Fprintf(&inv, "[fleet:vars]\nansible_connection=local\nansible_python_interpreter=/usr/bin/python3\nscratch=%s\nrootfs=%s\nsubhost_bin=%s\nautostart=%t\n",
		scratch, root.Dir, filepath.Join(wrapper, "subhost"), autostart)
	inventory := filepath.Join(scratch, "inventory")
	if err := os.WriteFile(inventory, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	collections, err := filepath.Abs("../ansible")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, playbook, "-i", inventory, "-f", "3", filepath.Join(collection, "tests/fleet/fleet.yml"))
	// Any subhost the playbook leaves up comes down before the scratch
	// filesystem holding its image is unmounted.
	t.Cleanup(e.stopAll)
	cmd.Env = append(os.Environ(),
		"PATH="+wrapper+":"+os.Getenv("PATH"),
		"ANSIBLE_COLLECTIONS_PATH="+collections,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(scratch, "ansible-local"),
		"ANSIBLE_REMOTE_TEMP="+filepath.Join(scratch, "ansible-remote"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_RETRY_FILES_ENABLED=False", "ANSIBLE_HOST_KEY_CHECKING=False",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, tail(out.String(), 12000))
	}
	if !autostart {
		t.Log("this subhost has no `enable`: the playbook's autostart steps were skipped")
	}
	for _, n := range e.names {
		e.clean(n)
	}
}
