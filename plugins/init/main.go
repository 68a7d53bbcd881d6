package main

import (
	"os"

	"github.com/subhost/subhost/sdk"
)

func main() {
	// The plugin re-executes itself to become the guest's PID 1 (see
	// launch_linux.go); that copy must not start serving RPC.
	if len(os.Args) > 1 && os.Args[1] == launchArg {
		guestMain()
	}
	if len(os.Args) > 1 && os.Args[1] == userStarterArg {
		userStarterMain()
	}
	sdk.Main(&stage{})
}
