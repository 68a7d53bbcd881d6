// Package launcher is the guest's launcher: the process the init stage
// starts in the guest's new namespaces, which sets the guest up (root,
// /proc, /sys, /dev, /run, the kernel files it must not write, its
// cgroups, the seccomp guard) and executes its PID 1.
//
// It runs as its own small executable, subhost-launch (cmd/subhost-launch,
// installed beside the plugins), not as a copy of the init plugin: every
// boot waits for the launcher to come up, and a Go program without gRPC,
// protobuf and go-plugin starts in a third of the time. So this package
// must not import the SDK or anything that does.
//
// The protocol, all of it between the init plugin and the launcher of the
// same build: the launcher's descriptor ConfigFD carries its Config as
// JSON, then PlacedToken once the plugin has moved it into its cgroups;
// descriptor ErrorFD carries back why it failed, and reaches end of file
// without a word when the exec of PID 1 succeeded; the detached mounts
// the plugin prepared follow from FirstPreparedFD.
package launcher

// The launcher's first argument says what it is to be.
const (
	// LaunchArg: the guest's launcher (Main).
	LaunchArg = "__launch-guest"
	// StarterArg: an unprivileged guest's starter (StarterMain).
	StarterArg = "__launch-in-userns"
)

// The launched child's descriptors: its config arrives on one pipe, and
// an error, if any, goes back on the other.
const (
	ConfigFD = 3
	ErrorFD  = 4
	// FirstPreparedFD is where the launcher finds the plugin's detached
	// mounts, after the config and error pipes.
	FirstPreparedFD = 5
)

// PlacedToken follows the launch config on its pipe once the plugin has
// moved the launcher into its cgroups; a pipe that ends without it (the
// plugin died meanwhile) stops the launch.
const PlacedToken = "placed\n"

// Config is what the launcher needs, sent as JSON.
type Config struct {
	Root     string   `json:"root"`
	Hostname string   `json:"hostname"`
	Devices  []Device `json:"devices,omitempty"`
	// Console is the host path of the console pty, which is also fds 0,
	// 1 and 2, to bind on /dev/console; "" means they are /dev/null.
	Console string   `json:"console,omitempty"`
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	// Cgroups are the guest's cgroups (the boot record's, Guest of
	// each), which the launcher joins before it unshares its cgroup
	// namespace. Empty for an unprivileged guest: the plugin places it.
	Cgroups []string `json:"cgroups,omitempty"`
	// Unprivileged: the launcher runs in the guest's user namespace, and
	// its root (RootFD: the idmapped clone) and /dev (DevFD: a tmpfs
	// with the nodes) come as detached mounts from the plugin.
	Unprivileged bool `json:"unprivileged,omitempty"`
	RootFD       int  `json:"root_fd,omitempty"`
	DevFD        int  `json:"dev_fd,omitempty"`
	// Mounts are the MOUNTS data disks, detached mounts to attach.
	Mounts []Mount `json:"mounts,omitempty"`
}

// Mount is a detached mount (descriptor FD) to attach at Path, created
// inside the guest root when missing.
type Mount struct {
	Path string `json:"path"`
	FD   int    `json:"fd"`
}

// Device is a disk of the boot record, made a block device node in the
// guest's /dev.
type Device struct {
	GuestName string `json:"guest_name"`
	Major     uint32 `json:"major"`
	Minor     uint32 `json:"minor"`
	ReadOnly  bool   `json:"read_only,omitempty"`
}

// PID1Comm is the command name of the guest's PID 1 once the launcher
// has executed it (the kernel takes it from the name executed): a
// launcher that ended under any other name died before the exec.
const PID1Comm = "subhost-init"
