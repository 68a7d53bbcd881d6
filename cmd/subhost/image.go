package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/imagebuild"
)

func newImageCmd() *cobra.Command {
	image := &cobra.Command{
		Use:   "image",
		Short: "Make subhost disk images",
		// cobra refuses an unknown command only at the top: below, a
		// command without a Run prints its help and exits 0, so that
		// `image biuld` would look as if it had worked.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE:                       func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		SuggestionsMinimumDistance: 2, // as the root's: build for biuld
	}
	var opts imagebuild.Options
	var size string
	build := &cobra.Command{
		Use:   "build --from DIR --size SIZE [--table mbr|gpt|none] [--force] IMAGE",
		Short: "Make a sparse disk image holding an ext4 filesystem populated from DIR",
		Long: `Make a sparse raw disk image whose partition 1 (or, with --table none, the
whole image) is an ext4 filesystem populated from DIR, without mounting
anything (mkfs.ext4 -d). Use it as DISKS=( vda:1:IMAGE ) (vda:0:IMAGE for
--table none).`,
		Args: exactArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.From == "" || size == "" {
				return usageError{fmt.Errorf("--from and --size are required")}
			}
			n, err := imagebuild.ParseSize(size)
			if err != nil {
				return err
			}
			opts.Size, opts.Image = n, args[0]
			if err := imagebuild.Build(cmd.Context(), opts); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, table %s, ext4 from %s\n", opts.Image, size, opts.Table, opts.From)
			return nil
		},
	}
	f := build.Flags()
	f.StringVar(&opts.From, "from", "", "directory whose content fills the filesystem")
	f.StringVar(&size, "size", "", "image size, e.g. 512M or 4G")
	f.StringVar(&opts.Table, "table", "mbr", "partition table: mbr, gpt or none")
	f.BoolVar(&opts.Force, "force", false, "overwrite an existing IMAGE")
	image.AddCommand(build)
	return image
}
