// Command subhost-launch is the guest's launcher (internal/launcher): the
// init stage starts it in the guest's new namespaces to set the guest up
// and execute its PID 1, and, for an unprivileged guest, as the starter
// that clones it inside the guest's user namespace. It is a program of
// its own, beside the plugins, because every boot waits for it to start:
// without gRPC, protobuf and go-plugin it does so in a third of the init
// plugin's time. It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/subhost/subhost/internal/launcher"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case launcher.LaunchArg:
			launcher.Main()
		case launcher.StarterArg:
			launcher.StarterMain()
		}
	}
	fmt.Fprintln(os.Stderr, "subhost-launch is started by the init stage, not by hand")
	os.Exit(2)
}
