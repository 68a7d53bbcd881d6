package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/launcher"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

type stage struct{}

var _ sdk.Stage = (*stage)(nil)

// guestState is the stage's state: which process is the guest's PID 1.
type guestState struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	Root      string `json:"root"`
}

func (*stage) Describe() sdk.Description {
	return sdk.Description{
		Name:    "init",
		Version: version.Version,
		Summary: "inject subhost-init into the guest root and boot the guest in its own namespaces",
		Params:  paramDocs,
	}
}

func (*stage) Validate(ctx context.Context, req *sdk.Request) error {
	if _, err := parseParams(req); err != nil {
		return err
	}
	if _, err := parseMounts(&req.Subhost); err != nil {
		return err
	}
	// A launcher missing or not root's fails the boot before any stage
	// has made anything.
	exe, err := openLauncher()
	if err != nil {
		return err
	}
	exe.Close()
	return checkRecord(req)
}

func (s *stage) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) {
	upStart := time.Now()
	p, err := parseParams(req)
	if err != nil {
		return nil, err
	}
	if err := checkRecord(req); err != nil {
		return nil, err
	}
	rec := &req.Record
	if rec.Root == "" {
		return nil, sdk.Invalidf("the boot record has no root: a mount stage must come before init")
	}
	if wantsUserns(&req.Subhost) && rec.Userns == "" {
		return nil, sdk.Invalidf("%s: PRIVATE_USERS=%s asks for an unprivileged guest, but no stage made its user namespace (the pipeline needs the userns stage first)", req.Subhost.Where("PRIVATE_USERS"), req.Subhost.Scalar("PRIVATE_USERS"))
	}
	if err := checkDevices(rec.Devices); err != nil {
		return nil, err
	}
	if err := checkDevicePolicy(req); err != nil {
		return nil, err
	}
	recPath, err := launchRecordPath(req.Subhost)
	if err != nil {
		return nil, err
	}
	log := sdk.Logger(ctx)

	if st, ok := recorded(req); ok && alive(st.PID, st.StartTime) {
		if st.Root != "" && st.Root != rec.Root {
			return nil, sdk.Conflictf("a guest (pid %d) is already running from root %q, not %q", st.PID, st.Root, rec.Root)
		}
		log.Debug("guest already running", "pid", st.PID)
		return result(st, req.Subhost.Name, p.shutdownTimeout)
	}
	// A guest that only the launch record knows was launched by an Up
	// whose result never reached the runner (killed, or timed out): it
	// has no supervisor and a console nobody reads. It is powered off as
	// Down would, then booted afresh, rather than adopted or run twice.
	if lr, ok := readLaunchRecord(recPath); ok && alive(lr.PID, lr.StartTime) {
		log.Warn("a guest from an interrupted boot is still running; powering it off first", "pid", lr.PID, "root", lr.Root)
		if err := stopGuest(ctx, lr.PID, lr.StartTime, p.shutdownTimeout, log); err != nil {
			return nil, sdk.Internalf("stop the guest (pid %d) of an interrupted boot: %w", lr.PID, err)
		}
	}

	content, unmap, err := mapFile(p.initBinary)
	if err != nil {
		return nil, sdk.Internalf("read init_binary: %w", err)
	}
	defer unmap()
	// On a root freshly mounted from an image, comparing subhost-init with
	// the guest's copy reads 2 MB through the loop device: one or two
	// milliseconds, spent while the launcher starts and mounts the guest's
	// file systems. Nothing of the guest runs before it is done: the
	// launcher waits for the word that it may go on (installed, in
	// launch's place), and every return below waits for it first (the
	// deferred call runs before unmap).
	installed := installInBackground(rec, content)
	defer installed()

	cfg := launcher.Config{
		Root:     rec.Root,
		Hostname: req.Subhost.Name,
		Devices:  launcherDevices(rec.Devices),
		Console:  req.Console,
		Argv:     guestArgv(p),
		Env:      guestEnv(p),
		Cgroups:  cgroups.GuestDirs(rec.Cgroups),
	}
	guestCgroups := cfg.Cgroups
	prep, err := prepareUnprivileged(req, &cfg)
	if err != nil {
		return nil, err
	}
	defer prep.close()
	if cfg.Unprivileged {
		warnForeignOwners(log, rec.Root, prep.ids, rec.RootUserns != "")
	}
	log.Debug("launch prepared", "took", time.Since(upStart))
	pid, start, err := launch(ctx, cfg, rec, req.Console, prep, func(pid int, start uint64) error {
		lr := launchRecord{Name: req.Subhost.Name, Home: req.Subhost.Home, PID: pid, StartTime: start, Root: rec.Root}
		if err := writeLaunchRecord(recPath, lr); err != nil {
			return sdk.Internalf("record the launched guest: %w", err)
		}
		return nil
	}, func(pid int) error {
		waitStart := time.Now()
		wrote, err := installed()
		if err != nil {
			return err
		}
		log.Debug("subhost-init in the guest root", "path", "/sbin/subhost-init", "rewritten", wrote, "waited_for", time.Since(waitStart))
		if !cfg.Unprivileged {
			return nil
		}
		// The plugin places an unprivileged guest itself (the launcher,
		// in the guest's user namespace, may not), before the launcher
		// goes on: nothing of the guest runs outside its cgroups.
		if err := placeGuest(pid, guestCgroups); err != nil {
			return sdk.Internalf("launch guest: %w", err)
		}
		return nil
	})
	if err != nil {
		// launch reaped whatever it started.
		removeLaunchRecord(recPath)
		return nil, err
	}
	log.Info("guest started", "pid", pid, "root", rec.Root, "mode", p.mode, "unprivileged", cfg.Unprivileged)
	return result(guestState{PID: pid, StartTime: start, Root: rec.Root}, req.Subhost.Name, p.shutdownTimeout)
}

// mapFile maps the file at path read-only. The injected init is compared
// with the guest's copy on every boot: read into the heap, its 2 MB cost
// milliseconds each time (fresh pages, a garbage collection), where a
// mapping shares the page cache. The shipped binary is replaced by
// rename on upgrade, never truncated in place, which a mapping would not
// survive.
func mapFile(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() == 0 || !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a non-empty regular file", path)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %s: %w", path, err)
	}
	return b, func() { unix.Munmap(b) }, nil
}

// result records the guest, and how long its PID 1 may take to power off
// (shutdown_timeout, which it was given): a stop waits that long.
func result(st guestState, name string, shutdown time.Duration) (*sdk.Result, error) {
	state, err := json.Marshal(st)
	if err != nil {
		return nil, sdk.Internalf("encode state: %w", err)
	}
	return &sdk.Result{
		Record: sdk.BootRecord{GuestPID: st.PID, GuestStartTime: st.StartTime, GuestStopTimeoutMS: shutdown.Milliseconds(), Hostname: name},
		State:  state,
	}, nil
}

// recorded finds the guest from the stage's state or, without one (the
// state was lost), from the boot record.
func recorded(req *sdk.Request) (guestState, bool) {
	if st, ok := fromState(req); ok {
		return st, true
	}
	return fromRecord(req)
}

func fromState(req *sdk.Request) (guestState, bool) {
	var st guestState
	if len(req.State) > 0 && json.Unmarshal(req.State, &st) == nil && st.PID > 0 {
		return st, true
	}
	return guestState{}, false
}

func fromRecord(req *sdk.Request) (guestState, bool) {
	if req.Record.GuestPID > 0 {
		return guestState{PID: req.Record.GuestPID, StartTime: req.Record.GuestStartTime, Root: req.Record.Root}, true
	}
	return guestState{}, false
}

// Down stops every guest that the state, the boot record or the launch
// record names and that is still that process: the launch record finds a
// guest whose launch the runner never recorded. The launch record is
// removed once its guest is gone.
func (*stage) Down(ctx context.Context, req *sdk.Request) error {
	log := sdk.Logger(ctx)
	timeout := defaultTimeout
	if d, err := parseTimeout(req.Param("shutdown_timeout", defaultTimeout.String())); err == nil {
		timeout = d
	}
	var guests []guestState
	add := func(g guestState, ok bool) {
		if !ok || slices.ContainsFunc(guests, func(h guestState) bool { return h.PID == g.PID && h.StartTime == g.StartTime }) {
			return
		}
		guests = append(guests, g)
	}
	add(fromState(req))
	add(fromRecord(req))
	recPath, pathErr := launchRecordPath(req.Subhost)
	lr, haveLR := launchRecord{}, false
	if pathErr == nil {
		lr, haveLR = readLaunchRecord(recPath)
		add(lr.guest(), haveLR)
	}

	var errs []error
	// A guest that froze its own cgroup would not die of SIGKILL. One
	// whose PID 1 is gone (a stop's usual case) needs no thawing here: the
	// cgroup stage's Down thaws and kills whatever it left.
	if slices.ContainsFunc(guests, func(g guestState) bool { return alive(g.PID, g.StartTime) }) {
		var dirs []string
		for _, c := range req.Record.Cgroups {
			dirs = append(dirs, c.Dir)
		}
		if err := cgroups.Thaw(dirs); err != nil {
			log.Warn("thaw the guest's cgroups", "error", err)
		}
	}
	for _, g := range guests {
		if err := stopGuest(ctx, g.PID, g.StartTime, timeout, log); err != nil {
			errs = append(errs, fmt.Errorf("stop guest pid %d: %w", g.PID, err))
		}
	}
	// A record of a guest still alive stays, for a retry to find.
	if pathErr == nil && (!haveLR || !alive(lr.PID, lr.StartTime)) {
		if err := removeLaunchRecord(recPath); err != nil {
			errs = append(errs, fmt.Errorf("remove the launch record: %w", err))
		}
	}
	if len(errs) > 0 {
		return sdk.Internalf("%w", errors.Join(errs...))
	}
	return nil
}

// Check reports whether the recorded guest still runs; with neither state
// nor boot record, the launch record is asked.
func (*stage) Check(ctx context.Context, req *sdk.Request) error {
	st, ok := recorded(req)
	if !ok {
		if path, err := launchRecordPath(req.Subhost); err == nil {
			var lr launchRecord
			lr, ok = readLaunchRecord(path)
			st = lr.guest()
		}
	}
	if !ok {
		return sdk.NotFoundf("no guest is recorded")
	}
	if !alive(st.PID, st.StartTime) {
		return sdk.NotFoundf("guest pid %d is not running", st.PID)
	}
	return nil
}

// checkDevicePolicy refuses to boot a guest that nothing keeps to its own
// devices: a pipeline without the cgroup stage (or a site's equivalent
// that records one), unless the config opts out with DEVICE_POLICY=none.
func checkDevicePolicy(req *sdk.Request) error {
	if len(req.Record.DevicePolicy) > 0 || req.Subhost.Scalar("DEVICE_POLICY") == "none" {
		return nil
	}
	return sdk.Invalidf("the boot record carries no device policy, so the guest could open any host device: put the cgroup stage before init in the pipeline, or set DEVICE_POLICY=none in the config (unsafe)")
}

// checkDevices compares each device's host node, when it still exists,
// with the major:minor the record gives: a mismatch is a stale record.
func checkDevices(devs []sdk.Device) error {
	for _, d := range devs {
		if d.HostPath == "" {
			continue
		}
		var st syscall.Stat_t
		err := syscall.Stat(d.HostPath, &st)
		if errors.Is(err, syscall.ENOENT) {
			return sdk.NotFoundf("device %q: host node %q is gone", d.GuestName, d.HostPath)
		}
		if err != nil {
			return sdk.Internalf("device %q: %w", d.GuestName, err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFBLK {
			return sdk.Invalidf("device %q: host node %q is not a block device", d.GuestName, d.HostPath)
		}
		if maj, min := major(uint64(st.Rdev)), minor(uint64(st.Rdev)); maj != d.Major || min != d.Minor {
			return sdk.Conflictf("device %q: host node %q is %d:%d, the boot record says %d:%d", d.GuestName, d.HostPath, maj, min, d.Major, d.Minor)
		}
	}
	return nil
}

func ownedByRoot(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}
