package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/guestenv"
	"github.com/subhost/subhost/internal/seccompguard"
	"github.com/subhost/subhost/sdk"
)

func newEnterCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "enter NAME [-- CMD ARGS...]",
		Short: "Run a command (default: a shell) inside a running subhost",
		Long: `Run a command in all of the guest's namespaces and in its root, with the
guest's environment basics (container=subhost, PATH, TERM, HOME=/root).
Without a command it starts the guest's shell (/bin/bash, else /bin/sh).
The command's exit status is subhost's.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{fmt.Errorf("want NAME [-- CMD ARGS...]")}
			}
			return nil
		},
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidName(args[0]); err != nil {
				return err
			}
			pid, err := guestPID(args[0])
			if err != nil {
				return err
			}
			command := args[1:]
			if len(command) == 0 {
				command = []string{"/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l"}
			}
			nsenter, err := exec.LookPath("nsenter")
			if err != nil {
				return fmt.Errorf("enter needs util-linux nsenter: %w", err)
			}
			argv := append([]string{"nsenter", "--target", strconv.Itoa(pid),
				"--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root", "--wd", "--"}, command...)
			env := guestenv.Base(os.Getenv("TERM"))
			// What runs in the guest is confined as its PID 1 is: its
			// device cgroup, the same capabilities dropped and the same
			// seccomp guard, all kept across nsenter's exec of the command. DropCapabilities locks
			// this goroutine to its thread; the exec must come from it.
			// The guest's device cgroup too (its cgroup namespace is
			// entered by nsenter --cgroup, after this joined the cgroups).
			if _, err := cgroups.JoinGuest(args[0]); err != nil {
				return err
			}
			if err := seccompguard.DropCapabilities(); err != nil {
				return err
			}
			if err := seccompguard.Install(); err != nil {
				return err
			}
			// nsenter execs the command, so its exit status is ours.
			return syscall.Exec(nsenter, argv, env)
		},
	}
}
