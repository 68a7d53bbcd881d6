package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/subhost/subhost/sdk"
)

// defaultRunDir is where the runner keeps each subhost's state.json.
const defaultRunDir = "/run/subhost"

// macUser is another subhost's interface that holds a MAC.
type macUser struct {
	subhost string
	status  string
	iface   string
	file    string
}

// macsInUse reads the MACs of the other subhosts' interfaces from their
// state files (any status but "stopped": a hibernating or failed subhost
// may still have its veths). Unreadable files are skipped: they are the
// runner's to complain about.
func macsInUse(runDir, self string) map[string]macUser {
	files, _ := filepath.Glob(filepath.Join(runDir, "*", "state.json"))
	out := map[string]macUser{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		var st struct {
			Name   string         `json:"name"`
			Status string         `json:"status"`
			Record sdk.BootRecord `json:"record"`
		}
		if json.Unmarshal(data, &st) != nil {
			continue
		}
		if st.Name == "" {
			st.Name = filepath.Base(filepath.Dir(file))
		}
		if st.Name == self || filepath.Base(filepath.Dir(file)) == self || st.Status == "stopped" {
			continue
		}
		for _, i := range st.Record.Interfaces {
			out[strings.ToLower(i.MAC)] = macUser{subhost: st.Name, status: st.Status, iface: i.GuestName, file: file}
		}
	}
	return out
}

// checkOthers reports every cable whose MAC another subhost uses.
func checkOthers(p *plan, runDir string) []error {
	if len(p.cables) == 0 {
		return nil
	}
	used := macsInUse(runDir, p.name)
	var errs []error
	for _, c := range p.cables {
		if u, ok := used[c.mac.String()]; ok {
			errs = append(errs, c.errorf(sdk.Conflictf, "MAC %s is already used by subhost %q (%s, its %s, see %s)", c.mac, u.subhost, u.status, u.iface, u.file))
		}
	}
	return errs
}
