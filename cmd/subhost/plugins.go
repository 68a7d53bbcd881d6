package main

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/subhost/subhost/internal/pluginhost"
	"github.com/subhost/subhost/sdk"
)

func newPluginsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plugins",
		Short: "List the stage plugins found, with version, summary and sha256",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, err := g.PluginHost(g.Logger())
			if err != nil {
				return err
			}
			found, err := pluginhost.Available(host.Dirs)
			if err != nil {
				return err
			}
			names := make([]string, 0, len(found))
			for n := range found {
				names = append(names, n)
			}
			slices.Sort(names)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSUMMARY\tPATH\tSHA256")
			for _, n := range names {
				path := found[n]
				desc, sum, err := describePlugin(cmd.Context(), host, n, path)
				if err != nil {
					fmt.Fprintf(tw, "%s\t-\t(%s)\t%s\t%s\n", n, err, path, dash(sum))
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, desc.Version, desc.Summary, path, sum)
			}
			fmt.Fprintf(tw, "\nsearched: %s\n", joinComma(host.Dirs))
			return tw.Flush()
		},
	}
}

func describePlugin(ctx context.Context, h *pluginhost.Host, name, path string) (sdk.Description, string, error) {
	sum, err := pluginhost.SHA256(path)
	if err != nil {
		return sdk.Description{}, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := h.Start(ctx, name, path, "")
	if err != nil {
		return sdk.Description{}, sum, err
	}
	defer p.Kill()
	d, err := sdk.DescribeContext(ctx, p.Stage())
	return d, sum, err
}
