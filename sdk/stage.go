package sdk

import (
	"context"
	"strings"
)

// Stage is one step of a subhost's boot pipeline, modelled on CNI's
// ADD/DEL/CHECK.
type Stage interface {
	// Describe names the stage and the parameters it accepts.
	Describe() Description
	// Validate checks the config and parameters. It must have no side
	// effects: the runner validates every stage before any stage changes
	// anything, so a bad config never leaves a half-built subhost. For the
	// same reason its request carries an empty boot record: what earlier
	// stages will contribute is checked in Up.
	Validate(ctx context.Context, req *Request) error
	// Up brings this stage's objects up and returns what it contributes to
	// the boot record, plus opaque state for later calls. It is idempotent:
	// objects that already exist as wanted are adopted, ones that exist but
	// differ are a Conflict.
	Up(ctx context.Context, req *Request) (*Result, error)
	// Down removes this stage's objects. It is idempotent and best effort:
	// it must succeed from an empty or partial state (req.State may be
	// nil), treats not-found as success, and keeps going past an error,
	// reporting all of them.
	Down(ctx context.Context, req *Request) error
	// Check is read-only: it reports whether what the state says exists
	// still does.
	Check(ctx context.Context, req *Request) error
}

// Updater is implemented by a stage that can change a running
// subhost's settings in place (`subhost set NAME KEY=VALUE...`); it is
// optional. Update gets the subhost's request with Changes set, checks
// every change it knows before applying any (an unknown key is not its
// business: it leaves it out), and returns the keys it applied. The keys
// it can change must be among its Description's Vars, marked Live: before
// any Update, the runner refuses a key that no stage up lists so. A stage
// without it answers ErrUnsupported through the RPC.
type Updater interface {
	Update(ctx context.Context, req *Request) (applied []string, err error)
}

// Description is what a stage says about itself.
type Description struct {
	Name    string  `json:"name"`
	Version string  `json:"version"`
	Summary string  `json:"summary"`
	Params  []Param `json:"params,omitempty"`
	// Vars are the config variables the stage reads, so that `subhost
	// plugins` can say where each variable is handled.
	Vars []ConfigVar `json:"vars,omitempty"`
	// Record declares which boot-record fields Up reads and sets, so
	// that the runner can run it beside the stages it does not depend
	// on; nil (the default) declares nothing: it runs alone.
	Record *RecordUse `json:"record,omitempty"`
}

// ConfigVar documents one variable of the subhost's config that a stage
// reads.
type ConfigVar struct {
	Name    string `json:"name"`
	Doc     string `json:"doc,omitempty"`
	Default string `json:"default,omitempty"`
	// Live: the stage's Update changes it in a running subhost
	// (`subhost set`). The runner refuses, before any Update, a key that
	// no stage up lists as live.
	Live bool `json:"live,omitempty"`
}

// Param documents one parameter a stage accepts from its pipeline block.
type Param struct {
	Name     string `json:"name"`
	Doc      string `json:"doc,omitempty"`
	Default  string `json:"default,omitempty"`
	Required bool   `json:"required,omitempty"`
}

// Request is what every stage call receives.
type Request struct {
	Subhost Subhost `json:"subhost"`
	// Stage is this stage's name in the pipeline.
	Stage string `json:"stage"`
	// Params are the attributes of this stage's pipeline block, as strings
	// (numbers and bools in their HCL spelling, durations like "10s").
	Params map[string]string `json:"params,omitempty"`
	// Record is the boot record built by the stages before this one (for
	// Down and Check: the whole recorded boot record).
	Record BootRecord `json:"record"`
	// State is what this stage's last Up returned, or nil.
	State []byte `json:"state,omitempty"`
	// Console is the host path of the pty the guest's console is to be
	// bound to: the runner's, not any stage's.
	Console string `json:"console,omitempty"`
	// Others are the other subhosts that are up on this host (booting,
	// running, hibernating or failed with objects left), so that a stage
	// can refuse what one of them holds (a MAC address) without reading
	// the runner's private state.
	Others []Neighbour `json:"others,omitempty"`
	// Changes, in an Update only, are the settings to change in the
	// running subhost: config variable names and values as the config
	// would spell them (MEMORY_MAX=2G).
	Changes map[string]string `json:"changes,omitempty"`
	// CgroupParent is the cgroup a service manager delegated to the
	// supervisor (systemd's Delegate=yes unit, e.g.
	// /system.slice/subhost@web.service), relative to the cgroup2
	// tree's root: the cgroup stage makes the guest's cgroups below it
	// rather than at their fixed place at each hierarchy's root. Empty
	// when there is none, and in calls from outside the supervisor
	// (`subhost stop`, `set`, `stage`): those go by the boot record.
	CgroupParent string `json:"cgroup_parent,omitempty"`
	// StateDir is the runner's state root (--state-dir; /run/subhost by
	// default): where a stage keeps host-side files of a subhost that
	// outlive the runner (the userns stage's pinned namespaces). "" from
	// an older runner: the default.
	StateDir string `json:"state_dir,omitempty"`
}

// Neighbour is another subhost on the same host.
type Neighbour struct {
	Name       string      `json:"name"`
	Status     string      `json:"status"`
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// Param returns a stage parameter, or def when it is not set.
func (r *Request) Param(name, def string) string {
	if v, ok := r.Params[name]; ok {
		return v
	}
	return def
}

// Subhost identifies the subhost a request is about.
type Subhost struct {
	Name string `json:"name"`
	// Home is the subhost's own directory, e.g. /opt/sub/NAME.
	Home string `json:"home"`
	// ConfigFile is the config that was read, "" when there was none.
	ConfigFile string `json:"config_file,omitempty"`
	// Vars holds every variable the config set, and DISKS/BRIDGES taken
	// from the environment.
	Vars map[string]Var `json:"vars,omitempty"`
}

// Var is a config variable: a bash scalar has one word and IsArray false.
type Var struct {
	Words   []string `json:"words"`
	IsArray bool     `json:"is_array,omitempty"`
	// Origin says where it was set, "FILE:LINE" or "environment", for
	// error messages that name the element at fault.
	Origin string `json:"origin,omitempty"`
}

// Lookup returns a variable and whether the config set it.
func (s *Subhost) Lookup(name string) (Var, bool) {
	v, ok := s.Vars[name]
	return v, ok
}

// Scalar returns a variable's value as bash's "$NAME" would: the first
// word of an array, "" when unset.
func (s *Subhost) Scalar(name string) string {
	v := s.Vars[name]
	if len(v.Words) == 0 {
		return ""
	}
	return v.Words[0]
}

// Array returns a variable's words, as bash's "${NAME[@]}" would.
func (s *Subhost) Array(name string) []string {
	return s.Vars[name].Words
}

// Where names the place a variable was set, for error messages:
// "config /opt/sub/x/config:3" or "environment".
func (s *Subhost) Where(name string) string {
	v, ok := s.Vars[name]
	switch {
	case !ok:
		if s.ConfigFile != "" {
			return "config " + s.ConfigFile
		}
		return "config"
	case v.Origin == "environment":
		return "environment"
	case strings.HasPrefix(v.Origin, "/"):
		return "config " + v.Origin
	default:
		return v.Origin
	}
}

// Result is what a stage's Up contributes.
type Result struct {
	// Record holds only what this stage adds; the runner merges it into the
	// boot record and rejects conflicting single-valued fields.
	Record BootRecord `json:"record"`
	// State is opaque to the runner and handed back on later calls.
	State []byte `json:"state,omitempty"`
}

// BootRecord is the data that flows down the pipeline.
type BootRecord struct {
	// Root is the guest root filesystem's path on the host.
	Root string `json:"root,omitempty"`
	// Devices are the nodes to create in the guest's /dev.
	Devices []Device `json:"devices,omitempty"`
	// Netns is the path of the guest's network namespace.
	Netns      string      `json:"netns,omitempty"`
	Interfaces []Interface `json:"interfaces,omitempty"`
	Hostname   string      `json:"hostname,omitempty"`
	// GuestPID is the launched guest's PID 1 (as seen from the host), and
	// GuestStartTime its start time in clock ticks since boot
	// (/proc/PID/stat field 22): together they identify the process.
	GuestPID       int    `json:"guest_pid,omitempty"`
	GuestStartTime uint64 `json:"guest_start_time,omitempty"`
	// GuestStopTimeoutMS is how long the guest's PID 1 may take to power
	// off, as the stage that launched it told it (init's
	// shutdown_timeout), in milliseconds; 0 when no stage says. A stop
	// without a timeout of its own waits that long before it kills it.
	GuestStopTimeoutMS int64 `json:"guest_stop_timeout_ms,omitempty"`
	// Extra is for site stages.
	Extra map[string]string `json:"extra,omitempty"`
	// Cgroups are the guest's cgroups, one per hierarchy: the guest's
	// PID 1 and whatever enters the guest join each Guest.
	Cgroups []Cgroup `json:"cgroups,omitempty"`
	// DevicePolicy names what keeps the guest to its own devices
	// ("cgroup1-devices", "cgroup2-bpf"); empty when nothing does.
	DevicePolicy []string `json:"device_policy,omitempty"`
	// Userns is the host path of the guest's pinned user namespace (the
	// userns stage's, for PRIVATE_USERS); "" when the guest is
	// privileged. The guest's uids and gids 0..UsernsSize-1 are the
	// host's UsernsBase.. .
	Userns     string `json:"userns,omitempty"`
	UsernsBase uint32 `json:"userns_base,omitempty"`
	UsernsSize uint32 `json:"userns_size,omitempty"`
	// RootUserns is the user namespace (its host path, as Userns) that
	// owns the root's file system when a mount stage assembled the root
	// inside the guest's user namespace (an overlay over idmapped
	// layers, mounted by the guest's root): its files already show with
	// the guest's ids, so init gives the guest a plain clone of it
	// instead of an idmapped one, and writes into it as the guest's
	// root. "" otherwise.
	RootUserns string `json:"root_userns,omitempty"`
}

// Cgroup is a subhost's cgroup in one hierarchy.
type Cgroup struct {
	// Hierarchy names it by its controllers ("memory", "cpu,cpuacct"),
	// or "cgroup2".
	Hierarchy string `json:"hierarchy"`
	// Dir is the host path of the cgroup that holds the limits.
	Dir string `json:"dir"`
	// Guest is the host path of the guest's own cgroup below Dir, the
	// root of the guest's cgroup namespace.
	Guest string `json:"guest"`
}

// Device is a node in the guest's /dev.
type Device struct {
	GuestName string `json:"guest_name"` // e.g. "vda1"
	HostPath  string `json:"host_path"`  // e.g. "/dev/loop3"
	Major     uint32 `json:"major"`
	Minor     uint32 `json:"minor"`
	ReadOnly  bool   `json:"read_only,omitempty"`
}

// Interface is one veth cable between a host bridge and the guest.
type Interface struct {
	HostName  string `json:"host_name"`
	GuestName string `json:"guest_name"`
	MAC       string `json:"mac"`
	Bridge    string `json:"bridge"`
}
