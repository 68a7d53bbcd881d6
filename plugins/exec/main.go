package main

import (
	"os"

	"github.com/subhost/subhost/sdk"
)

func main() {
	// The plugin re-executes itself as the guard of each script's process
	// group (see guard_linux.go); that copy must not serve RPC.
	if len(os.Args) > 2 && os.Args[1] == guardArg {
		guardMain()
	}
	sdk.Main(&stage{})
}
