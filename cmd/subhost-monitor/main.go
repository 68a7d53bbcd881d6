// Command subhost-monitor watches a running guest in place of the full
// supervisor, which executes it once the guest runs and is executed again
// by it when there is work for the pipeline. See package monitor.
package main

import (
	"os"

	"github.com/subhost/subhost/internal/monitor"
)

func main() { os.Exit(monitor.Main(os.Args[1:])) }
