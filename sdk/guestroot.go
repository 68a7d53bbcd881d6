package sdk

import (
	"errors"
	"io/fs"
	"os"
)

// GuestRoot opens the guest's root filesystem (the boot record's Root) as
// an os.Root: every operation through it stays inside the guest's tree,
// symlinks included, which is how a stage should touch a tenant's files.
// A record without a root is an invalid config (the stage must come after
// a mount stage); a root that does not exist is not found, which Down can
// take as "nothing to do" (IsKind(err, KindNotFound)).
func (r *Request) GuestRoot() (*os.Root, error) {
	if r.Record.Root == "" {
		return nil, Invalidf("stage %q: the boot record has no guest root; put it after a mount stage", r.Stage)
	}
	root, err := os.OpenRoot(r.Record.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, NotFoundf("stage %q: guest root %s: %w", r.Stage, r.Record.Root, err)
	}
	if err != nil {
		return nil, Internalf("stage %q: guest root %s: %w", r.Stage, r.Record.Root, err)
	}
	return root, nil
}
