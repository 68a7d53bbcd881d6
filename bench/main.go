package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// pollEvery is how often the benchmark looks for the marker (one stat):
// fine enough not to matter beside boots of tens of ms.
const pollEvery = 500 * time.Microsecond

// pollCleanEvery is how often it checks for a clean host after stop: the
// check reads mountinfo and every loop device's backing file.
const pollCleanEvery = time.Millisecond

// Targets from the issue.
const (
	targetRatio = 2.0
	// targetStageMS is what the cgroup stage may add to the median boot
	// (-without-cgroup), targetUnprivilegedMS what an unprivileged boot
	// may cost more than a privileged one (-private-users).
	targetStageMS        = 5.0
	targetUnprivilegedMS = 8.0
	targetRSSMB          = 15.0
	settleBefore         = 250 * time.Millisecond // guest up, before memory is read
	// settleAfter is the pause after each teardown (the floor's, each
	// stop) before the next boot: the kernel finishes a netns's and a
	// veth's removal, and frees cgroups, in the background for tens of
	// milliseconds after the command returned, and a boot started at once
	// would share the CPUs with that.
	settleAfter = 200 * time.Millisecond
)

type options struct {
	n         int
	bin       string
	busybox   string
	keepLogs  bool
	logLevel  string
	verbose   bool
	beforeBin string
	// privateUsers is the guest's PRIVATE_USERS ("" for the default,
	// privileged): run once with and once without to compare.
	privateUsers string
	// withoutCgroup: each round also boots the guest with the same
	// pipeline less its cgroup stage, to see what the stage costs.
	withoutCgroup bool
	// many, when above 0, is how many subhosts to boot at once instead
	// of the rounds.
	many int
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 25, "measured rounds (after one warm-up round); at least 10 for the report")
	flag.StringVar(&o.bin, "bin", "bin", "the build tree's bin directory (subhost and plugins/)")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "a statically linked busybox (Debian: busybox-static)")
	flag.BoolVar(&o.keepLogs, "keep-logs", false, "keep the subhost's console and supervisor logs in /var/log/subhost")
	flag.BoolVar(&o.verbose, "v", false, "print every round")
	flag.StringVar(&o.beforeBin, "before-bin", "", "another build's bin directory (say, main's before a change): each round also boots and stops the same guest with it, for a before/after comparison in one run")
	flag.StringVar(&o.logLevel, "log-level", "", "pass --log-level to subhost run and stop (with -keep-logs, for profiling: debug or trace)")
	flag.StringVar(&o.privateUsers, "private-users", "", "PRIVATE_USERS for the guest (pick: an unprivileged guest); alone, each round also boots it privileged, for the comparison")
	flag.BoolVar(&o.withoutCgroup, "without-cgroup", false, "each round also boots the guest with pretend-boot less its cgroup stage (and DEVICE_POLICY=none), to see what the stage costs")
	flag.IntVar(&o.many, "many", 0, "instead of the rounds: boot this many subhosts at once (each from its own copy of the image), report how many came up and how long each took, then stop them all at once")
	flag.Parse()
	if flag.NArg() != 0 || o.n < 1 || o.many < 0 || (o.withoutCgroup && (o.beforeBin != "" || o.privateUsers != "")) ||
		(o.many > 0 && (o.withoutCgroup || o.beforeBin != "" || o.privateUsers != "")) {
		flag.Usage()
		os.Exit(2)
	}
	// Output into a pipe that closed early (`| head`) must not kill the
	// benchmark before it has undone its mounts, loop devices and
	// netns: asked for, SIGPIPE turns into EPIPE on the write.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	b := &bench{opts: o}
	err := b.run(ctx)
	if cerr := b.cleanup(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// bench holds one benchmark run and what it must undo.
type bench struct {
	opts    options
	subhost string // absolute path of bin/subhost
	scratch string // tmpfs mount point holding everything else
	name    string // the subhost's name
	netns   string // the test network namespace holding br0
	home    string
	image   string
	// pipeline and pipelineFile are what `run` boots the guest with.
	pipeline, pipelineFile string
	// twin is the variant each round also boots: from another home or
	// with another pipeline (-private-users, -without-cgroup); nil
	// without one.
	twin *twin
	// subhostBefore is -before-bin's subhost, "" without it.
	subhostBefore string
	fl            *floor
	// cpu counts the CPU time of each boot's and stop's own processes;
	// nil where the host has no cgroup2 mount.
	cpu        *cpuMeter
	logDirMade bool
	undo       []func() error
}

// stageTime is one stage's Up duration as the runner recorded it.
type stageTime struct {
	name string
	ms   int64
}

// sample is one measured round.
type sample struct {
	floor, boot, detach, stop, stopCmd time.Duration
	before, beforeStop                 time.Duration // boot and stop with -before-bin's build, or of the twin
	beforeTimeline                     timeline
	bootAt, stopAt                     time.Time // wall clock, to read beside the logs
	// bootCPU and stopCPU are the CPU time subhost's own processes used
	// (cpuMeter); beforeCPU the same boot's with -before-bin or the twin.
	bootCPU, stopCPU, beforeCPU time.Duration
	supRSS, supAnon, treeRSS    int64
	treeProcs                   int
	stages                      []stageTime
	timeline                    timeline
	timelineOrder               []string
}

func (b *bench) run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (it makes loop devices, mounts and network namespaces)")
	}
	sh, err := filepath.Abs(filepath.Join(b.opts.bin, "subhost"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(b.opts.bin, "plugins", "init")); err != nil {
		return fmt.Errorf("no build in %s (run make build): %w", b.opts.bin, err)
	}
	b.subhost = sh
	for _, tool := range []string{"unshare", "nsenter", "ip", "mount", "umount", "pivot_root", "cp", "hostname", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: %w", tool, err)
		}
	}
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	// Not b*, st*, acc* or bars*: the project's checks sweep network
	// namespaces of those names that appear while they run.
	b.name = "shb" + tag
	b.netns = "sbench-" + tag
	if _, err := os.Stat("/var/log/subhost"); errors.Is(err, os.ErrNotExist) {
		b.logDirMade = true
	}

	// Scratch on a tmpfs: images, the floor's mounts and the subhost's home.
	scratch, err := os.MkdirTemp("", "subhost-bench.")
	if err != nil {
		return err
	}
	b.undo = append(b.undo, func() error { return os.RemoveAll(scratch) })
	size := "size=512m"
	if b.opts.many > 0 {
		size = manyTmpfsSize(b.opts.many)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", size+",mode=0700", "subhost-bench", scratch).CombinedOutput(); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %v: %s", scratch, err, out)
	}
	b.scratch = scratch
	b.undo = append(b.undo, func() error { return runQuiet("umount", "-l", scratch) })

	rootfs := filepath.Join(scratch, "rootfs")
	if err := buildRootfs(rootfs, b.opts.busybox); err != nil {
		return fmt.Errorf("busybox root: %w", err)
	}
	b.image = filepath.Join(scratch, "disk.raw")
	if out, err := exec.Command(sh, "image", "build", "--from", rootfs, "--size", "64M", "--table", "mbr", b.image).CombinedOutput(); err != nil {
		return fmt.Errorf("subhost image build: %v: %s", err, out)
	}

	if b.opts.many == 0 {
		b.fl, err = setupFloor(scratch, b.image)
	}
	if b.fl != nil {
		fl := b.fl
		b.undo = append(b.undo, fl.unmount)
	}
	if err != nil {
		return err
	}

	// One bridge in a throwaway network namespace; subhost runs in it.
	if err := runQuiet("ip", "netns", "add", b.netns); err != nil {
		return err
	}
	b.undo = append(b.undo, func() error {
		if !netnsExists(b.netns) {
			return nil
		}
		return runQuiet("ip", "netns", "del", b.netns)
	})
	for _, args := range [][]string{
		{"-n", b.netns, "link", "add", "br0", "type", "bridge"},
		{"-n", b.netns, "link", "set", "br0", "up"},
		{"-n", b.netns, "link", "set", "lo", "up"},
		{"-n", b.netns, "addr", "add", "198.18.77.1/24", "dev", "br0"},
	} {
		if err := runQuiet("ip", args...); err != nil {
			return err
		}
	}

	if b.opts.many > 0 {
		return b.runMany(ctx, b.opts.many, func(image, mac string) string {
			return fmt.Sprintf("DISKS=( vda:1:%s )\nBRIDGES=( br0:%s )\n", image, mac)
		})
	}

	b.home = filepath.Join(scratch, "home")
	if err := os.Mkdir(b.home, 0o755); err != nil {
		return err
	}
	if b.cpu, err = newCPUMeter("subhost-bench-" + b.name); err != nil {
		fmt.Println("note:", err)
		b.cpu = nil
	} else {
		m := b.cpu
		b.undo = append(b.undo, m.close)
	}
	config := fmt.Sprintf("DISKS=( vda:1:%s )\nBRIDGES=( br0:02:5b:%s:%s:00:01 )\n", b.image, tag[:2], tag[2:])
	if b.opts.privateUsers != "" {
		config += "PRIVATE_USERS=" + b.opts.privateUsers + "\n"
	}
	if err := os.WriteFile(filepath.Join(b.home, "config"), []byte(config), 0o644); err != nil {
		return err
	}
	b.undo = append(b.undo, b.stopSubhostIfUp)
	b.pipeline = "pretend-boot"
	baseConfig := fmt.Sprintf("DISKS=( vda:1:%s )\nBRIDGES=( br0:02:5b:%s:%s:00:01 )\n", b.image, tag[:2], tag[2:])
	switch {
	case b.opts.privateUsers != "" && b.opts.beforeBin == "":
		// The same guest privileged, from a home of its own.
		b.twin, err = newTwin(scratch, "privileged", baseConfig, "pretend-boot", "")
		beforeWhat, targetMS = "a privileged guest", targetUnprivilegedMS
	case b.opts.withoutCgroup:
		// The pipeline's cgroup stage, skipped by a `when` its config
		// never sets: no plugin, no call (a pipeline without any stage
		// named cgroup would get one implied). init boots a guest
		// without a device policy only when the config opts out.
		file := filepath.Join(scratch, "without-cgroup.hcl")
		if err := os.WriteFile(file, []byte(withoutCgroupPipeline), 0o644); err != nil {
			return err
		}
		b.twin, err = newTwin(scratch, "without-cgroup", baseConfig+"DEVICE_POLICY=none\n", "bench-without-cgroup", file)
		beforeWhat = "no cgroup stage"
		// Without the stage the guest stays in the boot's cgroup.
		cpuCaveat = "; the boot without the stage counts its guest's CPU time too, which the other's cgroups take"
	}
	if err != nil {
		return err
	}
	if b.opts.beforeBin != "" {
		if b.subhostBefore, err = filepath.Abs(filepath.Join(b.opts.beforeBin, "subhost")); err != nil {
			return err
		}
	}

	fmt.Printf("subhost bench: %d rounds (+1 warm-up), busybox guest on a 64M MBR image on tmpfs, pipeline pretend-boot, 1 bridge in netns %s, PRIVATE_USERS=%s\n", b.opts.n, b.netns, cmp.Or(b.opts.privateUsers, "no"))
	fmt.Printf("load average before: %s (%d CPUs)\n", loadavg(), numCPU())
	if busy() {
		fmt.Println("note: the machine is busy (1-minute load above half the CPUs); the figures will be inflated and noisy")
	}
	var samples []sample
	for i := -1; i < b.opts.n; i++ {
		s, err := b.round(ctx, i%2 != 0)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		if i < 0 {
			continue // warm-up: page cache, subhost-init injection
		}
		if b.opts.verbose {
			fmt.Printf("round %2d: floor %s  boot %s (detach %s) at %s  stop %s (cmd %s) at %s  supervisor %s, tree %s in %d procs\n",
				i+1, ms(s.floor), ms(s.boot), ms(s.detach), clock(s.bootAt), ms(s.stop), ms(s.stopCmd), clock(s.stopAt), mb(s.supRSS), mb(s.treeRSS), s.treeProcs)
		}
		samples = append(samples, s)
	}
	fmt.Printf("load average after:  %s\n", loadavg())
	report(os.Stdout, samples)
	var tls, others []timeline
	for _, s := range samples {
		if s.timeline != nil {
			tls = append(tls, s.timeline)
		}
		if s.beforeTimeline != nil {
			others = append(others, s.beforeTimeline)
		}
	}
	if len(tls) > 0 {
		reportTimeline(os.Stdout, tls, others, samples[0].timelineOrder)
	}
	return nil
}

// round is one floor boot, one subhost boot and one stop, and with
// -before-bin or a twin one more boot and stop, first in every other
// round (beforeFirst): whichever boots second would otherwise always
// follow the other's stop.
func (b *bench) round(ctx context.Context, beforeFirst bool) (sample, error) {
	var s sample
	var err error
	if s.floor, err = b.fl.run(ctx, b.name); err != nil {
		return s, err
	}
	before := b.subhostBefore != "" || b.twin != nil
	bootBefore := func() error {
		if err := settle(ctx); err != nil {
			return err
		}
		if s.before, s.beforeStop, s.beforeCPU, s.beforeTimeline, err = b.bootBefore(ctx); err != nil {
			return fmt.Errorf("with %s: %w", b.subhostBefore, err)
		}
		return nil
	}
	if before && beforeFirst {
		if err := bootBefore(); err != nil {
			return s, err
		}
	}
	if err := settle(ctx); err != nil {
		return s, err
	}
	if err := b.boot(ctx, &s); err != nil {
		return s, err
	}
	if err := b.measureMemory(ctx, &s); err != nil {
		return s, err
	}
	if err := b.stopOnce(ctx, &s); err != nil {
		return s, err
	}
	if before && !beforeFirst {
		if err := bootBefore(); err != nil {
			return s, err
		}
	}
	return s, nil
}

// settle waits settleAfter, or until ctx ends.
func settle(ctx context.Context) error {
	select {
	case <-time.After(settleAfter):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inNet runs bin/subhost in the benchmark's network namespace.
func (b *bench) inNet(args ...string) *exec.Cmd {
	pre := []string{"--net=/run/netns/" + b.netns, "--", b.subhost}
	if b.opts.logLevel != "" {
		pre = append(pre, "--log-level", b.opts.logLevel)
	}
	return exec.Command("nsenter", append(pre, args...)...)
}

// twin is a variant of the guest each round also boots.
type twin struct {
	home, pipeline, pipelineFile string
}

// newTwin makes the twin's home, scratch/home-what, with config.
func newTwin(scratch, what, config, pipeline, pipelineFile string) (*twin, error) {
	t := &twin{home: filepath.Join(scratch, "home-"+what), pipeline: pipeline, pipelineFile: pipelineFile}
	if err := os.Mkdir(t.home, 0o755); err != nil {
		return nil, err
	}
	return t, os.WriteFile(filepath.Join(t.home, "config"), []byte(config), 0o644)
}

// withoutCgroupPipeline is pretend-boot with its cgroup stage skipped.
const withoutCgroupPipeline = `pipeline "bench-without-cgroup" {
  description = "pretend-boot less its cgroup stage (subhost bench -without-cgroup)"
  home        = "/opt/sub"
  on_exit     = "down"

  stage "userns" {
    when = "PRIVATE_USERS"
  }
  stage "mount-loop" {}
  stage "net-veth" {}
  stage "cgroup" {
    when = "SUBHOST_BENCH_NEVER_SET"
  }
  stage "init" {
    mode = "sysv"
  }
}
`

// bootBefore times a boot with -before-bin's build, or of the twin, and
// its stop.
func (b *bench) bootBefore(ctx context.Context) (boot, stop, cpu time.Duration, _ timeline, _ error) {
	after, home, pipeline, file := b.subhost, b.home, b.pipeline, b.pipelineFile
	if b.subhostBefore != "" {
		b.subhost = b.subhostBefore
	}
	if b.twin != nil {
		b.home, b.pipeline, b.pipelineFile = b.twin.home, b.twin.pipeline, b.twin.pipelineFile
	}
	defer func() { b.subhost, b.home, b.pipeline, b.pipelineFile = after, home, pipeline, file }()
	var s sample
	if err := b.boot(ctx, &s); err != nil {
		return 0, 0, 0, nil, err
	}
	err := b.stopOnce(ctx, &s)
	return s.boot, s.stop, s.bootCPU, s.timeline, err
}

// boot times `subhost run --detach` until the marker, and until the
// command returns.
func (b *bench) boot(ctx context.Context, s *sample) error {
	marker := filepath.Join(b.home, "live", MarkerPath)
	// --timings: the command returns once the guest has written its
	// first console line (rcS's first), with the boot's timeline.
	args := []string{"run", "--detach", "--timings", "--pipeline", b.pipeline, "--home", b.home}
	if b.pipelineFile != "" {
		args = append(args, "--pipeline-file", b.pipelineFile)
	}
	cmd := b.inNet(append(args, b.name)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cpu0 := b.cpu.usage()
	t0 := time.Now()
	s.bootAt = t0
	if err := b.cpu.start(cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := t0.Add(60 * time.Second)
	interrupted := false
	for s.boot == 0 || s.detach == 0 {
		if s.boot == 0 && exists(marker) {
			s.boot = time.Since(t0)
		}
		if s.detach == 0 {
			select {
			case err := <-done:
				s.detach = time.Since(t0)
				if err != nil {
					return fmt.Errorf("subhost run --detach: %v: %s", err, tail(out.String()))
				}
			default:
			}
		}
		if !interrupted && (ctx.Err() != nil || time.Now().After(deadline)) {
			// The CLI passes SIGINT on to the supervisor, which rolls back.
			cmd.Process.Signal(os.Interrupt)
			interrupted = true
		}
		if interrupted && s.detach != 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("no marker %s 60s after subhost run: %s", marker, tail(out.String()))
		}
		time.Sleep(pollEvery)
	}
	s.bootCPU = b.cpu.usage() - cpu0
	s.timeline, s.timelineOrder = parseTimeline(out.String())
	return os.Remove(marker)
}

// status is what the benchmark reads from `subhost status --json`.
type status struct {
	State      string `json:"state"`
	PID        int    `json:"pid"`
	Supervisor int    `json:"supervisor"`
	Stages     []struct {
		Name       string `json:"name"`
		DurationMS int64  `json:"duration_ms"`
	} `json:"stages"`
}

func (b *bench) status() (status, error) {
	var st status
	out, err := exec.Command(b.subhost, "status", "--json", b.name).Output()
	if err != nil {
		return st, fmt.Errorf("subhost status: %w", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("subhost status --json: %w", err)
	}
	return st, nil
}

// measureMemory reads the supervisor's VmRSS, and that of its process
// tree without the guest, once the guest has settled.
func (b *bench) measureMemory(ctx context.Context, s *sample) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settleBefore):
	}
	st, err := b.status()
	if err != nil {
		return err
	}
	if st.State != "running" || st.Supervisor == 0 || st.PID == 0 {
		return fmt.Errorf("subhost status says %s, supervisor %d, guest %d; want running with both", st.State, st.Supervisor, st.PID)
	}
	s.supRSS = vmRSS(st.Supervisor)
	s.supAnon = statusBytes(st.Supervisor, "RssAnon")
	s.treeRSS, s.treeProcs = treeRSS(st.Supervisor, st.PID)
	s.stages = nil
	for _, stg := range st.Stages {
		s.stages = append(s.stages, stageTime{stg.Name, stg.DurationMS})
	}
	return nil
}

// clean says whether nothing of the subhost is left on the host. The
// cheap checks come first, in the order stop clears them last to first,
// so that polling does not load the machine it measures.
func (b *bench) clean(supervisor int) bool {
	if netnsExists(b.name) || exists(filepath.Join("/run/subhost", b.name)) {
		return false
	}
	if supervisor != 0 {
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", supervisor)); err == nil && strings.Contains(string(cmd), "__supervise") {
			return false
		}
	}
	return len(mountsUnder(b.home)) == 0 && len(loopsBackedBy(b.image)) == 0
}

// stopOnce times `subhost stop` until the host is clean, and until the
// command returns.
func (b *bench) stopOnce(ctx context.Context, s *sample) error {
	st, err := b.status()
	if err != nil {
		return err
	}
	cmd := b.inNet("stop", b.name)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cpu0 := b.cpu.usage()
	t0 := time.Now()
	s.stopAt = t0
	if err := b.cpu.start(cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := t0.Add(60 * time.Second)
	for s.stop == 0 || s.stopCmd == 0 {
		if s.stop == 0 && b.clean(st.Supervisor) {
			s.stop = time.Since(t0)
		}
		if s.stopCmd == 0 {
			select {
			case err := <-done:
				s.stopCmd = time.Since(t0)
				if err != nil {
					return fmt.Errorf("subhost stop: %v: %s", err, tail(out.String()))
				}
			default:
			}
		}
		if ctx.Err() != nil && s.stopCmd != 0 {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host not clean 60s after subhost stop: %s", tail(out.String()))
		}
		time.Sleep(pollCleanEvery)
	}
	s.stopCPU = b.cpu.usage() - cpu0
	return nil
}

// stopSubhostIfUp is the cleanup for an interrupted round.
func (b *bench) stopSubhostIfUp() error {
	if b.clean(0) {
		return nil
	}
	return b.inNet("stop", "--force", "--timeout", "5s", b.name).Run()
}

// cleanup undoes everything in reverse, removes the subhost's logs and
// checks that nothing of the benchmark's is left.
func (b *bench) cleanup() error {
	var errs []error
	for i := len(b.undo) - 1; i >= 0; i-- {
		if err := b.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if b.name != "" && !b.opts.keepLogs {
		for _, name := range b.names() {
			for _, f := range []string{".log", ".log.1", ".supervisor.log"} {
				os.Remove(filepath.Join("/var/log/subhost", name+f))
			}
		}
		if b.logDirMade {
			os.Remove("/var/log/subhost") // only when empty
		}
	}
	if b.scratch != "" {
		errs = append(errs, b.leftovers()...)
	}
	return errors.Join(errs...)
}

// names are the benchmark's subhosts: its one, or -many's.
func (b *bench) names() []string {
	if b.opts.many == 0 {
		return []string{b.name}
	}
	names := make([]string, b.opts.many)
	for i := range names {
		names[i] = manyName(b.name, i)
	}
	return names
}

// leftovers lists anything of this run's still on the host.
func (b *bench) leftovers() []error {
	var errs []error
	if m := mountsUnder(b.scratch); len(m) > 0 {
		errs = append(errs, fmt.Errorf("left behind: mounts %v", m))
	}
	if l := loopsBackedBy(b.scratch); len(l) > 0 {
		errs = append(errs, fmt.Errorf("left behind: loop devices %v", l))
	}
	if netnsExists(b.netns) {
		errs = append(errs, fmt.Errorf("left behind: netns %s", b.netns))
	}
	for _, name := range b.names() {
		if netnsExists(name) {
			errs = append(errs, fmt.Errorf("left behind: netns %s", name))
		}
		if linkExists(name + "0") {
			errs = append(errs, fmt.Errorf("left behind: link %s0", name))
		}
		if exists(filepath.Join("/run/subhost", name)) {
			errs = append(errs, fmt.Errorf("left behind: /run/subhost/%s", name))
		}
	}
	if p := processesMentioning(b.scratch); len(p) > 0 {
		errs = append(errs, fmt.Errorf("left behind: process %d (%s)", p[0].pid, p[0].cmdline))
	}
	if exists(b.scratch) {
		errs = append(errs, fmt.Errorf("left behind: %s", b.scratch))
	}
	return errs
}

func runQuiet(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
