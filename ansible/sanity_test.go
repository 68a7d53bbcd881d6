package ansible

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/testguest"
)

// collectionDir is the collection, where ansible-test must run.
const collectionDir = "ansible_collections/subhost/subhost"

// offlineSanity are the `ansible-test sanity` tests that need nothing from
// the network. The others (ansible-doc, import, pep8, pylint,
// runtime-metadata, validate-modules, yamllint) install their requirements
// into a virtualenv with pip fetched from the network, which this project's
// machines do not have; pslint and shellcheck have no files to check.
var offlineSanity = []string{
	"action-plugin-docs", "changelog", "compile", "empty-init", "future-import-boilerplate", "ignores",
	"line-endings", "metaclass-boilerplate", "no-assert", "no-basestring", "no-dict-iteritems",
	"no-dict-iterkeys", "no-dict-itervalues", "no-get-exception", "no-illegal-filenames",
	"no-main-display", "no-smart-quotes", "no-unicode-literals", "replace-urlopen", "shebang",
	"symlinks", "use-argspec-type-path", "use-compat-six",
}

func TestAnsibleTestSanity(t *testing.T) {
	ansibleTest := testguest.Tool(t, "ansible-test", "ansible-core")
	// ansible-test runs under Debian's python3 (its #!); test that one.
	ver, err := exec.Command("/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
	if err != nil {
		t.Fatalf("/usr/bin/python3: %v", err)
	}
	args := []string{"sanity", "--python", strings.TrimSpace(string(ver))}
	for _, s := range offlineSanity {
		args = append(args, "--test", s)
	}
	cmd := exec.Command(ansibleTest, args...)
	cmd.Dir = collectionDir
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ansible-test %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The modules' documentation parses (what the ansible-doc sanity test
// would check first).
func TestAnsibleDoc(t *testing.T) {
	ansibleDoc := testguest.Tool(t, "ansible-doc", "ansible-core")
	for _, m := range []string{"subhost", "subhost_image", "subhost_info"} {
		cmd := exec.Command(ansibleDoc, "subhost.subhost."+m)
		cmd.Env = append(os.Environ(), "ANSIBLE_COLLECTIONS_PATH=.", "ANSIBLE_NOCOLOR=1")
		if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "ERROR") {
			t.Errorf("ansible-doc subhost.subhost.%s: %v\n%s", m, err, out)
		}
	}
}
