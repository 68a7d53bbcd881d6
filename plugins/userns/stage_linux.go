package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/internal/nsfs"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/userns"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

type stage struct {
	// registry and pinDir are the host's unless a test points them at
	// scratch places.
	registry idrange.Registry
	pinDir   string
}

var _ sdk.Stage = (*stage)(nil)

const (
	netnsDir = "/run/netns"
	varName  = "PRIVATE_USERS"
)

// reg is the host's id-range registry. It stays in the default state
// root whatever the runner's --state-dir: host ids are one resource for
// every runner on the host, and two subhosts under different state roots
// must not share a range either (their roots would be one host user,
// able to signal and read each other's processes and files).
func (s *stage) reg() idrange.Registry {
	if s.registry.Dir == "" {
		return idrange.Registry{Dir: state.DefaultRoot}
	}
	return s.registry
}

// pinDirs are where a user namespace's pin may be: under the runner's
// state root (--state-dir), then where builds before that put it,
// /run/subhost/.userns, still read so that a subhost one of them started
// keeps its namespace (the two are one with the default state root).
func (s *stage) pinDirs(req *sdk.Request) []string {
	if s.pinDir != "" {
		return []string{s.pinDir}
	}
	root := req.StateDir
	if root == "" {
		root = state.DefaultRoot
	}
	dirs := []string{filepath.Join(root, ".userns")}
	if old := filepath.Join(state.DefaultRoot, ".userns"); old != dirs[0] {
		dirs = append(dirs, old)
	}
	return dirs
}

// upState is what Up records.
type upState struct {
	Userns string `json:"userns"`
	Netns  string `json:"netns"`
	Base   uint32 `json:"base"`
	Size   uint32 `json:"size"`
}

func (*stage) Describe() sdk.Description {
	return sdk.Description{
		Name:    "userns",
		Version: version.Version,
		Summary: "unprivileged subhosts: a user namespace mapping the guest's ids to a host range, and the network namespace it owns",
		Record:  &sdk.RecordUse{Reads: nil, Writes: []string{sdk.FieldUserns, sdk.FieldNetns}},
		Vars: []sdk.ConfigVar{{Name: varName, Default: "no",
			Doc: "no: the guest's root is the host's root; pick: a free range of 65536 host ids chosen by subhost; BASE[:SIZE]: that range (SIZE 65536 by default)"}},
	}
}

// spec reads PRIVATE_USERS and the paths that follow from the name.
func (s *stage) spec(req *sdk.Request) (idrange.Spec, upState, error) {
	sub := &req.Subhost
	spec, err := idrange.Parse(sub.Scalar(varName))
	if err != nil {
		return spec, upState{}, sdk.Invalidf("%s: %s: %v", sub.Where(varName), varName, err)
	}
	if !spec.Enabled {
		return spec, upState{}, nil
	}
	if sub.Name == "" || strings.ContainsAny(sub.Name, "/\x00") || sub.Name == "." || sub.Name == ".." {
		return spec, upState{}, sdk.Invalidf("subhost name %q cannot name a file", sub.Name)
	}
	sum := sha256.Sum256([]byte(sub.Home))
	pin := pinPath(s.pinDirs(req), fmt.Sprintf("%s.%x", sub.Name, sum[:8]))
	return spec, upState{Userns: pin, Netns: filepath.Join(netnsDir, sub.Name)}, nil
}

func owner(req *sdk.Request) idrange.Owner {
	return idrange.Owner{Name: req.Subhost.Name, Home: req.Subhost.Home}
}

func (s *stage) Validate(ctx context.Context, req *sdk.Request) error {
	spec, st, err := s.spec(req)
	if err != nil || !spec.Enabled || spec.Pick {
		return err
	}
	if err := s.keptRange(req, spec, st); err != nil {
		return err
	}
	if err := s.reg().Check(owner(req), spec.Range); err != nil {
		return sdk.Invalidf("%s: %v", req.Subhost.Where(varName), err)
	}
	return nil
}

// keptRange refuses an explicit range other than the one the subhost's
// user namespace maps, when that namespace is kept (a hibernating
// subhost re-entered): the namespace cannot change its map, and giving
// the subhost the new range in the registry would free the old one, still
// in use, for another subhost's pick.
func (s *stage) keptRange(req *sdk.Request, spec idrange.Spec, st upState) error {
	if spec.Pick || userns.Check(st.Userns, st.Netns) != nil {
		return nil
	}
	held, ok, err := s.reg().Lookup(owner(req))
	if err != nil {
		return sdk.Internalf("%w", err)
	}
	if !ok || held == spec.Range {
		return nil
	}
	return sdk.Conflictf("%s: %s=%d:%d, but the subhost's user namespace, kept since it was last up, maps %d:%d: stop it first to change its range",
		req.Subhost.Where(varName), varName, spec.Range.Base, spec.Range.Size, held.Base, held.Size)
}

func (s *stage) Up(ctx context.Context, req *sdk.Request) (_ *sdk.Result, err error) {
	log := sdk.Logger(ctx)
	spec, st, err := s.spec(req)
	if err != nil || !spec.Enabled {
		return &sdk.Result{}, err
	}
	if err := s.keptRange(req, spec, st); err != nil {
		return nil, err
	}
	r, err := s.reg().Acquire(owner(req), spec)
	if errors.Is(err, idrange.ErrTaken) {
		return nil, sdk.Invalidf("%s: %v", req.Subhost.Where(varName), err)
	}
	if err != nil {
		return nil, sdk.Internalf("%w", err)
	}
	st.Base, st.Size = r.Base, r.Size

	switch err := userns.Check(st.Userns, st.Netns); {
	case err == nil:
		log.Info("adopting user namespace", "userns", st.Userns, "netns", st.Netns, "base", r.Base, "size", r.Size)
	case errors.Is(err, fs.ErrNotExist) && !exists(st.Userns) && !exists(st.Netns):
		if err := os.MkdirAll(filepath.Dir(st.Userns), 0o700); err != nil {
			return nil, sdk.Internalf("%w", err)
		}
		// The lock beside the id range registry: the host's state root,
		// as net-veth's, or a test's scratch directory.
		if err := nsfs.SharedDir(netnsDir, s.reg().Dir); err != nil {
			return nil, sdk.Internalf("%w", err)
		}
		if err := userns.Create(r, st.Userns, st.Netns); err != nil {
			return nil, sdk.Internalf("%w", err)
		}
		log.Info("created user namespace", "userns", st.Userns, "netns", st.Netns, "base", r.Base, "size", r.Size)
	default:
		return nil, sdk.Conflictf("%v: stop the subhost first (a privileged subhost's network namespace cannot become an unprivileged one's)", err)
	}
	data, _ := json.Marshal(st)
	return &sdk.Result{
		Record: sdk.BootRecord{Userns: st.Userns, UsernsBase: st.Base, UsernsSize: st.Size, Netns: st.Netns},
		State:  data,
	}, nil
}

// Down unpins both namespaces and releases the range. Without a state it
// finds them by name and home; a config that no longer asks for
// PRIVATE_USERS still gets cleaned, as long as the name makes a path.
func (s *stage) Down(ctx context.Context, req *sdk.Request) error {
	var st upState
	if len(req.State) == 0 || json.Unmarshal(req.State, &st) != nil || st.Userns == "" {
		req2 := *req
		req2.Subhost.Vars = map[string]sdk.Var{varName: {Words: []string{"pick"}}}
		var err error
		if _, st, err = s.spec(&req2); err != nil {
			return nil // a name that makes no path never had pins
		}
		if !exists(st.Userns) {
			// Never made, or already removed; a netns of that name is
			// net-veth's (a privileged subhost's), not ours.
			st.Netns = ""
		}
	}
	var errs []error
	if st.Netns != "" {
		if err := nsfs.Unpin(st.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := nsfs.Unpin(st.Userns); err != nil {
		errs = append(errs, err)
	}
	if err := s.reg().Release(owner(req)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return sdk.Internalf("%w", errors.Join(errs...))
	}
	return nil
}

func (s *stage) Check(ctx context.Context, req *sdk.Request) error {
	spec, st, err := s.spec(req)
	if err != nil || !spec.Enabled {
		return err
	}
	if err := userns.Check(st.Userns, st.Netns); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return sdk.NotFoundf("%v", err)
		}
		return sdk.Conflictf("%v", err)
	}
	if _, held, err := s.reg().Lookup(owner(req)); err != nil || !held {
		return sdk.NotFoundf("no id range is registered for subhost %q", req.Subhost.Name)
	}
	return nil
}

// pinPath is file in the first of dirs, unless only a later one holds it
// (a pin an older build made): then that one.
func pinPath(dirs []string, file string) string {
	for _, d := range dirs {
		if p := filepath.Join(d, file); exists(p) {
			return p
		}
	}
	return filepath.Join(dirs[0], file)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
