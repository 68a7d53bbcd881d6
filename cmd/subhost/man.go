//go:build mangen

package main

import (
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Built only with -tags mangen (scripts/mkdeb.sh): cobra's man page
// generator and its markdown renderer cost every run of subhost half a
// millisecond of package initialisation, for a build step.
func init() { buildOnlyCmds = append(buildOnlyCmds, newManCmd) }

// newManCmd writes one man page per command, in section 8 (system
// administration: subhost runs as root). `make deb` uses it; hidden,
// since it is a build step, not an operator's command. The pages' date is
// $SOURCE_DATE_EPOCH's when set, so that a rebuild makes the same pages.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "__man DIR",
		Hidden: true,
		Args:   exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "SUBHOST", Section: "8", Source: "subhost", Manual: "System Administration"}
			if sec, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
				date := time.Unix(sec, 0).UTC()
				header.Date = &date
			}
			return doc.GenManTree(root, header, args[0])
		},
	}
}
