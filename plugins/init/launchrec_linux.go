package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/subhost/subhost/sdk"
)

// launchDir holds the plugin's own record of each guest it launched, so
// that Down finds a guest whose launch never reached the runner's state:
// a runner killed while Up was pending, or a plugin killed for a timeout
// just after launching. It is a dot entry of the runner's default state
// directory, which the runner's listing skips, and root-only.
const launchDir = "/run/subhost/.init"

// launchRecord is one guest launch: written once the launcher exists,
// before it is sent its config, so no guest can run without one.
type launchRecord struct {
	Name      string `json:"name"`
	Home      string `json:"home"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	Root      string `json:"root"`
}

func (r launchRecord) guest() guestState {
	return guestState{PID: r.PID, StartTime: r.StartTime, Root: r.Root}
}

// launchRecordPath names a subhost's launch record. A subhost is its
// name and home: the home is hashed into the file name so that two
// subhosts of one name under different state directories (tests, the
// stage command) never share a record. Any name checkRecord accepts
// (no slash) makes a plain file name once the hash follows it.
func launchRecordPath(sub sdk.Subhost) (string, error) {
	if sub.Name == "" || strings.ContainsAny(sub.Name, "/\x00") {
		return "", sdk.Invalidf("subhost name %q cannot name a file", sub.Name)
	}
	sum := sha256.Sum256([]byte(sub.Home))
	return filepath.Join(launchDir, fmt.Sprintf("%s.%x.json", sub.Name, sum[:8])), nil
}

// writeLaunchRecord replaces the record at path atomically (a temporary
// file renamed over it), root-only.
func writeLaunchRecord(path string, r launchRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// A Down of another subhost may remove the directory once it is
	// empty, between our mkdir and create: try again.
	for try := 0; ; try++ {
		err = writeAtomic(path, data)
		if !errors.Is(err, fs.ErrNotExist) || try == 2 {
			return err
		}
	}
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := checkLaunchDir(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// checkLaunchDir refuses a directory that is not root's alone: a record
// there decides which process Down signals (after the start time check).
func checkLaunchDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is not a directory writable by root alone", dir)
	}
	return nil
}

// readLaunchRecord reads the record at path; ok is false when there is
// none or it names no process (unreadable, or garbage).
func readLaunchRecord(path string) (launchRecord, bool) {
	var r launchRecord
	if checkLaunchDir(filepath.Dir(path)) != nil {
		return r, false
	}
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &r) != nil || r.PID <= 0 {
		return launchRecord{}, false
	}
	return r, true
}

// removeLaunchRecord removes the record, any temporary file a killed
// writer left for it, and the directory once it holds nothing else.
// Not-found is success.
func removeLaunchRecord(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	temps, _ := filepath.Glob(path + ".tmp-*")
	for _, t := range temps {
		os.Remove(t)
	}
	os.Remove(filepath.Dir(path)) // fails while another record is there
	return nil
}
