// Package initprobe is the report that plugins/init's stand-in guest init
// (testdata/testinit) writes about what it sees as PID 1, shared by the
// program that writes it and the tests that read it so the two cannot
// drift apart.
package initprobe

// Node is a /dev entry as the guest sees it.
type Node struct {
	Type  string `json:"type"`
	Perm  uint32 `json:"perm"`
	Major uint32 `json:"major"`
	Minor uint32 `json:"minor"`
	Link  string `json:"link,omitempty"`
}

// Report is what the stand-in init writes to /report.json.
type Report struct {
	PID       int               `json:"pid"`
	PPID      int               `json:"ppid"`
	SID       int               `json:"sid"`
	Args      []string          `json:"args"`
	Env       []string          `json:"env"`
	Hostname  string            `json:"hostname"`
	Cwd       string            `json:"cwd"`
	Umask     int               `json:"umask"`
	FDs       map[string]string `json:"fds"`
	Mountinfo string            `json:"mountinfo"`
	Dev       map[string]Node   `json:"dev"`
	Ifaces    []string          `json:"ifaces"`
	RemountRO string            `json:"remount_ro"`
	BusyboxRO string            `json:"busybox_remount_ro"`
	Fspick    string            `json:"fspick"`
	BindRO    string            `json:"bind_remount_ro"`
	BindWrite string            `json:"bind_write"`
	RootWrite string            `json:"root_write"`
	Ctty      string            `json:"ctty"`
}
