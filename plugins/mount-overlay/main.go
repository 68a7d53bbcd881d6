package main

import (
	"os"

	"github.com/subhost/subhost/sdk"
)

func main() {
	// The plugin re-executes itself inside an unprivileged guest's user
	// namespace to mount its overlay (userns_linux.go); that copy must
	// not start serving RPC.
	if len(os.Args) > 1 && os.Args[1] == overlayHelperArg {
		overlayHelperMain()
	}
	sdk.Main(&stage{})
}
