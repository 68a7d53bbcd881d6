package sdk

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// ReattachEnv is the variable the runner reads to use stages started by
// hand with --debug instead of starting its own: a JSON object from stage
// plugin name to the value such a stage prints.
const ReattachEnv = "SUBHOST_REATTACH_PLUGINS"

// LogLevelEnv carries the runner's log level to its plugins.
const LogLevelEnv = "SUBHOST_LOG_LEVEL"

// Main serves stage as a plugin and never returns. Run with the argument
// "describe" it prints the stage's description as JSON and exits; with
// "--debug" it serves until interrupted and prints the line to put in
// the runner's environment so that one stage can run under a debugger:
//
//	dlv exec ./bin/plugins/net-veth -- --debug
//	SUBHOST_REATTACH_PLUGINS='{...}' subhost stage net-veth up NAME
func Main(stage Stage) {
	keepExecutableFromChildren()
	// The runner reads JSON lines from the plugin's stderr and replays
	// them in its own log.
	logger = hclog.New(&hclog.LoggerOptions{
		Name:       stage.Describe().Name,
		Level:      hclog.LevelFromString(os.Getenv(LogLevelEnv)),
		Output:     os.Stderr,
		JSONFormat: true,
	})
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "describe":
			out, _ := json.MarshalIndent(stage.Describe(), "", "  ")
			fmt.Println(string(out))
			os.Exit(0)
		case "--debug":
			os.Exit(serveDebug(stage))
		}
	}
	if os.Getenv(MagicCookieKey) != MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s: a subhost stage plugin; run it through subhost, or with \"describe\" or \"--debug\"\n", os.Args[0])
		os.Exit(2)
	}
	os.Exit(serve(stage))
}

// keepExecutableFromChildren marks descriptor 3 close-on-exec when it is
// this program's own executable: the runner starts a plugin from the
// file it checked, handed over as descriptor 3, which the plugin's own
// children (a script the exec stage runs) need not inherit.
func keepExecutableFromChildren() {
	var fd, exe syscall.Stat_t
	if syscall.Fstat(3, &fd) != nil || syscall.Stat("/proc/self/exe", &exe) != nil {
		return
	}
	if fd.Dev == exe.Dev && fd.Ino == exe.Ino {
		syscall.CloseOnExec(3)
	}
}

// Reattach is how a stage serving in debug mode tells the runner where it
// is: the value of ReattachEnv is a JSON object from stage plugin name to
// a Reattach (go-plugin's ReattachConfig in a form JSON can carry; see
// sdk/goplugin.ParseReattach).
type Reattach struct {
	Protocol        string
	ProtocolVersion int
	Pid             int
	Test            bool
	Addr            struct{ Network, String string }
}

func printReattach(stage string, r Reattach) {
	value, _ := json.Marshal(map[string]Reattach{stage: r})
	fmt.Printf("Stage %q is serving in debug mode. In another shell, as root:\n\n", stage)
	fmt.Printf("\texport %s='%s'\n\n", ReattachEnv, value)
	fmt.Println("then run subhost as usual; interrupt this process to stop.")
}
