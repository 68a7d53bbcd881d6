package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/subhost/subhost/internal/guestenv"
	"github.com/subhost/subhost/sdk"
)

// params are the init stage's parameters, parsed and checked.
type params struct {
	mode            string
	shell           string
	shutdownTimeout time.Duration
	initBinary      string
	term            string
}

const (
	defaultMode    = "sysv"
	defaultShell   = "/bin/bash"
	defaultTimeout = 30 * time.Second
	defaultTerm    = "linux"
)

var paramDocs = []sdk.Param{
	{Name: "mode", Default: defaultMode, Doc: `"sysv": subhost-init runs /etc/init.d/rcS and rc 2 and powers off on /run/initctl; "shell": an interactive shell is the guest's session`},
	{Name: "shell", Default: defaultShell, Doc: "the guest's shell (mode shell); /bin/sh when the guest lacks it, judged inside the guest"},
	{Name: "shutdown_timeout", Default: defaultTimeout.String(), Doc: "how long the guest gets to power off (its PID 1 fits rc 0 and ending every process in it; Down waits as long after SIGPWR) before it is killed"},
	{Name: "init_binary", Default: "subhost-init beside the plugin", Doc: "host path of the subhost-init binary injected as the guest's /sbin/subhost-init"},
	{Name: "term", Default: defaultTerm, Doc: "TERM in the guest's init environment"},
}

// parseParams reads req.Params. It only reads the file system (the init
// binary's status): it is safe in Validate.
func parseParams(req *sdk.Request) (params, error) {
	for name := range req.Params {
		if !slices.ContainsFunc(paramDocs, func(p sdk.Param) bool { return p.Name == name }) {
			return params{}, sdk.Invalidf("unknown parameter %q (known: mode, shell, shutdown_timeout, init_binary, term)", name)
		}
	}
	p := params{
		mode:  req.Param("mode", defaultMode),
		shell: req.Param("shell", defaultShell),
		term:  req.Param("term", defaultTerm),
	}
	if p.mode != "sysv" && p.mode != "shell" {
		return p, sdk.Invalidf("mode %q: want \"sysv\" or \"shell\"", p.mode)
	}
	if !strings.HasPrefix(p.shell, "/") || strings.ContainsAny(p.shell, "\x00\n") {
		return p, sdk.Invalidf("shell %q: want an absolute path inside the guest", p.shell)
	}
	if !plainWord(p.term, ".+_-", len(p.term)) {
		return p, sdk.Invalidf("term %q: want a terminal type name such as \"linux\" or \"xterm-256color\"", p.term)
	}
	var err error
	if p.shutdownTimeout, err = parseTimeout(req.Param("shutdown_timeout", defaultTimeout.String())); err != nil {
		return p, err
	}
	p.initBinary = req.Param("init_binary", "")
	if p.initBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return p, sdk.Internalf("find the plugin's own path for the default init_binary: %w", err)
		}
		p.initBinary = filepath.Join(filepath.Dir(exe), "subhost-init")
	}
	if err := checkInitBinary(p.initBinary); err != nil {
		return p, err
	}
	return p, nil
}

// plainWord reports whether s is 1 to max bytes of ASCII letters, digits
// and the punctuation in punct, starting with a letter or digit. A loop,
// not a regexp: package-level regexps are compiled at every plugin start
// (a bounded repetition such as {0,62} alone took 0.3 ms of it).
func plainWord(s, punct string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || strings.IndexByte(punct, c) < 0) {
			return false
		}
	}
	return true
}

// parseTimeout accepts a Go duration ("30s", "1m30s") or a number of
// seconds ("30").
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseUint(s, 10, 32)
		if nerr != nil {
			return 0, sdk.Invalidf("shutdown_timeout %q: want a duration such as \"30s\"", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > 24*time.Hour {
		return 0, sdk.Invalidf("shutdown_timeout %q: want more than 0 and at most 24h", s)
	}
	return d, nil
}

// checkInitBinary: the file is copied into every guest and runs there as
// root, so it gets the runner's rule for plugins: a regular executable
// file, owned by root, not writable by group or others.
func checkInitBinary(path string) error {
	if !filepath.IsAbs(path) {
		return sdk.Invalidf("init_binary %q: want an absolute path", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return sdk.Invalidf("init_binary: %w (build it with make build, or set init_binary)", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return sdk.Invalidf("init_binary %q is not an executable file", path)
	}
	if st.Mode().Perm()&0o022 != 0 || !ownedByRoot(st) {
		return sdk.Invalidf("init_binary %q must be owned by root and not writable by group or others", path)
	}
	return nil
}

// maxDevName is the longest guest device name the stage takes.
const maxDevName = 63

// checkRecord checks the boot record fields the stage reads. At Validate
// time they may still be empty (the stages before this one have not run).
func checkRecord(req *sdk.Request) error {
	r := &req.Record
	name := req.Subhost.Name
	if err := sdk.ValidName(name); err != nil {
		return err
	}
	for _, p := range []struct{ field, value string }{{"root", r.Root}, {"netns", r.Netns}, {"console", req.Console}} {
		if p.value != "" && !filepath.IsAbs(p.value) {
			return sdk.Invalidf("boot record %s %q is not an absolute path", p.field, p.value)
		}
	}
	if r.RootUserns != "" && r.RootUserns != r.Userns {
		return sdk.Invalidf("boot record: the root belongs to user namespace %q, but the guest's is %q", r.RootUserns, r.Userns)
	}
	seen := map[string]bool{}
	for _, d := range r.Devices {
		switch {
		case !plainWord(d.GuestName, "._-", maxDevName):
			return sdk.Invalidf("boot record device %q: not a plain /dev name", d.GuestName)
		case sdk.IsReservedDevName(d.GuestName):
			return sdk.Invalidf("boot record device %q: the name of a standard /dev entry", d.GuestName)
		case seen[d.GuestName]:
			return sdk.Invalidf("boot record device %q given twice", d.GuestName)
		case d.Major == 0 && d.Minor == 0:
			return sdk.Invalidf("boot record device %q has no major:minor", d.GuestName)
		}
		seen[d.GuestName] = true
	}
	return nil
}

// guestArgv is how the guest's PID 1 is started.
func guestArgv(p params) []string {
	return []string{"/sbin/subhost-init", "--mode", p.mode, "--shell", p.shell, "--shutdown-timeout", p.shutdownTimeout.String()}
}

// guestEnv is PID 1's whole environment. container=subhost is the
// systemd container-interface convention guest scripts test.
func guestEnv(p params) []string {
	return guestenv.Base(p.term)
}
