package testguest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/imagebuild"
)

// ImageSize is the size of the images Image makes: busybox needs ~2 MiB.
const ImageSize = 32 << 20

// Image makes a disk image of root with the project's image builder
// (internal/imagebuild): table "mbr" or "gpt" puts the filesystem in
// partition 1, "none" makes a bare filesystem. The image is in a fresh
// t.TempDir and removed with it.
func Image(t testing.TB, root, table string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk-"+table+".raw")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := imagebuild.Build(ctx, imagebuild.Options{From: root, Image: img, Table: table, Size: ImageSize}); err != nil {
		t.Fatalf("testguest: image of %s: %v", root, err)
	}
	return img
}
