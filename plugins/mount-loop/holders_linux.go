package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxHolders bounds the report.
const maxHolders = 12

// holders says what keeps a filesystem or a block device busy: processes
// whose cwd, root, executable, open files or memory maps are on the
// filesystem fsMajor:fsMinor (when not 0:0), processes holding the block
// device blockDev open (when not 0), mounts below live in this mount
// namespace, and other mount namespaces that mount either. Devices are
// compared by number, so processes in the guest's namespaces count too.
func holders(fsMajor, fsMinor uint32, blockDev uint64, live string, mounts []mountEntry) []string {
	var out []string
	fsDev := uint64(0)
	if fsMajor != 0 || fsMinor != 0 {
		fsDev = unix.Mkdev(fsMajor, fsMinor)
	}
	if live != "" {
		for _, m := range mounts {
			if strings.HasPrefix(m.Mountpoint, live+"/") {
				out = append(out, fmt.Sprintf("a mount on %s (%s)", m.Mountpoint, m.FSType))
			}
		}
	}
	onFS := func(path string) bool {
		var st unix.Stat_t
		return fsDev != 0 && unix.Stat(path, &st) == nil && st.Dev == fsDev
	}
	isDev := func(path string) bool {
		var st unix.Stat_t
		return blockDev != 0 && unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == blockDev
	}
	selfNs, _ := os.Readlink("/proc/self/ns/mnt")
	seenNs := map[string]bool{selfNs: true}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid := filepath.Base(p)
		comm, _ := os.ReadFile(p + "/comm")
		who := fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(string(comm)))
		var what []string
		for _, l := range []string{"cwd", "root", "exe"} {
			if onFS(p + "/" + l) {
				what = append(what, l)
			}
		}
		fds, _ := os.ReadDir(p + "/fd")
		for _, fd := range fds {
			fp := p + "/fd/" + fd.Name()
			if onFS(fp) || isDev(fp) {
				target, _ := os.Readlink(fp)
				what = append(what, "fd "+fd.Name()+" "+target)
			}
		}
		if fsDev != 0 {
			if m := mappedFrom(p+"/maps", fsMajor, fsMinor); m != "" {
				what = append(what, "maps "+m)
			}
		}
		if len(what) > 0 {
			out = append(out, who+": "+strings.Join(what, ", "))
		}
		if ns, err := os.Readlink(p + "/ns/mnt"); err == nil && !seenNs[ns] {
			seenNs[ns] = true
			nsMounts, _ := readMountinfo(p + "/mountinfo")
			for _, m := range nsMounts {
				dev := unix.Mkdev(m.Major, m.Minor)
				if fsDev != 0 && dev == fsDev || blockDev != 0 && dev == blockDev {
					out = append(out, fmt.Sprintf("the mount namespace of %s mounts it on %s", who, m.Mountpoint))
					break
				}
			}
		}
	}
	return out
}

// mappedFrom returns the first file in a maps file that lies on the
// filesystem major:minor.
func mappedFrom(maps string, major, minor uint32) string {
	f, err := os.Open(maps)
	if err != nil {
		return ""
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x", major, minor)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fl := strings.Fields(sc.Text())
		if len(fl) >= 6 && fl[3] == want {
			return fl[5]
		}
	}
	return ""
}

func describeHolders(h []string) string {
	switch {
	case len(h) == 0:
		return "held by nothing subhost can see (another mount namespace or a kernel user)"
	case len(h) > maxHolders:
		return "held by " + strings.Join(h[:maxHolders], "; ") + fmt.Sprintf("; and %d more", len(h)-maxHolders)
	default:
		return "held by " + strings.Join(h, "; ")
	}
}
