package main

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/pluginhost"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

func newPipelinesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pipelines",
		Short: "List the pipelines and their stages",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := pipeline.Load(pipeline.LoadOptions{Files: g.pipelineFiles})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, name := range set.Names() {
				p, _ := set.Get(name)
				fmt.Fprintf(w, "%s  (%s)\n", p.Name, p.Source)
				if p.Description != "" {
					fmt.Fprintf(w, "  %s\n", p.Description)
				}
				fmt.Fprintf(w, "  home %s, on exit: %s\n", p.Home, p.OnExit)
				for i, s := range p.Stages {
					fmt.Fprintf(w, "  %d. %s", i+1, s.Name)
					if s.Plugin != s.Name {
						fmt.Fprintf(w, " (plugin %s)", s.Plugin)
					}
					keys := make([]string, 0, len(s.Params))
					for k := range s.Params {
						keys = append(keys, k)
					}
					slices.Sort(keys)
					for _, k := range keys {
						fmt.Fprintf(w, " %s=%q", k, s.Params[k])
					}
					fmt.Fprintln(w)
				}
			}
			return nil
		},
	}
}

func completePipelines(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	set, err := pipeline.Load(pipeline.LoadOptions{Files: g.pipelineFiles})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	return set.Names(), cobra.ShellCompDirectiveNoFileComp
}

func newPluginsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plugins",
		Short: "List the stage plugins found, with version, summary and sha256",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := g.newRunner()
			if err != nil {
				return err
			}
			found, err := pluginhost.Available(r.PluginDirs)
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
				desc, sum, err := describePlugin(cmd.Context(), r.Plugins, n, path)
				if err != nil {
					fmt.Fprintf(tw, "%s\t-\t(%s)\t%s\t%s\n", n, err, path, dash(sum))
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, desc.Version, desc.Summary, path, sum)
			}
			fmt.Fprintf(tw, "\nsearched: %s\n", joinComma(r.PluginDirs))
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
	d, err := sdk.DescribeContext(ctx, p.Stage)
	return d, sum, err
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print subhost's version and stage protocol version",
		Args:  exactArgs(0, "no arguments"),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "subhost %s (stage protocol v%d)\n", version.Version, sdk.ProtocolVersion)
		},
	}
}
