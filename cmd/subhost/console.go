package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/console"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/supervisor"
	"github.com/subhost/subhost/sdk"
)

func newConsoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "console NAME",
		Short: "Attach to a running subhost's console",
		Long: `Attach this terminal to the console of a subhost running under a
supervisor (subhost run --detach). Ctrl-] then d detaches, Ctrl-] then q
powers the guest off.`,
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidName(args[0]); err != nil {
				return err
			}
			sock := supervisor.ConsoleSocket(g.StateDir, args[0])
			if _, err := os.Stat(sock); err != nil {
				if _, _, err := guestPID(args[0]); err != nil {
					return err // not running, or hibernating: say which
				}
				// A foreground run relays the console to its own
				// terminal; a guest whose supervisor was killed has none.
				return fmt.Errorf("subhost %s has no console to attach to: a foreground `subhost run` holds it, or its supervisor is gone", args[0])
			}
			res, err := attachConsole(cmd.Context(), sock)
			if res == console.Detached {
				fmt.Fprintln(os.Stderr, "\r\nsubhost: detached")
			}
			if err != nil && res != console.Detached {
				return err
			}
			return nil
		},
	}
}

// guestPID returns the running guest's PID 1 and its start time.
func guestPID(name string) (int, uint64, error) {
	st, err := state.Dir{Root: g.StateDir, Name: name}.Load()
	if err != nil {
		return 0, 0, fmt.Errorf("subhost %s is not running", name)
	}
	pid := st.Record.GuestPID
	switch {
	case pid == 0 && st.Status == state.Running:
		return 0, 0, fmt.Errorf("subhost %s has no guest: its pipeline launches none", name)
	case pid == 0 || !proc.Alive(pid, st.Record.GuestStartTime):
		return 0, 0, fmt.Errorf("subhost %s has no running guest (%s)", name, st.Status)
	}
	return pid, st.Record.GuestStartTime, nil
}
