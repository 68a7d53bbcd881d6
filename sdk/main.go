package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// ReattachEnv is the variable the runner reads to use stages started by
// hand with --debug instead of starting its own: a JSON object from stage
// plugin name to the value such a stage prints.
const ReattachEnv = "SUBHOST_REATTACH_PLUGINS"

// LogLevelEnv carries the runner's log level to its plugins.
const LogLevelEnv = "SUBHOST_LOG_LEVEL"

// Main serves stage as a plugin and never returns. Run with the argument
// "describe" it prints the stage's description as JSON and exits; with
// "--debug" it serves in go-plugin's test mode and prints the line to put
// in the runner's environment so that one stage can run under a debugger:
//
//	dlv exec ./bin/plugins/net-veth -- --debug
//	SUBHOST_REATTACH_PLUGINS='{...}' subhost stage net-veth up NAME
func Main(stage Stage) {
	keepExecutableFromChildren()
	// The logger exists before Serve: go-plugin reads JSON lines from the
	// plugin's stderr and replays them in the runner's log.
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
		default:
			if os.Getenv(Handshake.MagicCookieKey) == "" {
				fmt.Fprintf(os.Stderr, "%s: a subhost stage plugin; run it through subhost, or with \"describe\" or \"--debug\"\n", os.Args[0])
				os.Exit(2)
			}
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(stage),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
	os.Exit(0)
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

// reattachJSON is go-plugin's ReattachConfig in a form JSON can carry.
type reattachJSON struct {
	Protocol        string
	ProtocolVersion int
	Pid             int
	Test            bool
	Addr            struct{ Network, String string }
}

func serveDebug(stage Stage) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	go plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(stage),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
		Test:            &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed},
	})
	select {
	case rc := <-reattach:
		var r reattachJSON
		r.Protocol, r.ProtocolVersion, r.Pid, r.Test = string(rc.Protocol), rc.ProtocolVersion, rc.Pid, true
		r.Addr.Network, r.Addr.String = rc.Addr.Network(), rc.Addr.String()
		value, _ := json.Marshal(map[string]reattachJSON{stage.Describe().Name: r})
		fmt.Printf("Stage %q is serving in debug mode. In another shell, as root:\n\n", stage.Describe().Name)
		fmt.Printf("\texport %s='%s'\n\n", ReattachEnv, value)
		fmt.Println("then run subhost as usual; interrupt this process to stop.")
	case <-closed:
		fmt.Fprintln(os.Stderr, "debug server stopped before it was ready")
		return 1
	}
	<-closed
	return 0
}

// ParseReattach decodes the value of SUBHOST_REATTACH_PLUGINS into
// go-plugin reattach configs, keyed by stage plugin name.
func ParseReattach(value string) (map[string]*plugin.ReattachConfig, error) {
	var raw map[string]reattachJSON
	if err := json.Unmarshal([]byte(value), &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", ReattachEnv, err)
	}
	out := make(map[string]*plugin.ReattachConfig, len(raw))
	for name, r := range raw {
		var addr net.Addr
		switch r.Addr.Network {
		case "unix":
			addr = &net.UnixAddr{Name: r.Addr.String, Net: "unix"}
		case "tcp":
			a, err := net.ResolveTCPAddr("tcp", r.Addr.String)
			if err != nil {
				return nil, fmt.Errorf("%s: stage %q: %w", ReattachEnv, name, err)
			}
			addr = a
		default:
			return nil, fmt.Errorf("%s: stage %q: unknown network %q", ReattachEnv, name, r.Addr.Network)
		}
		out[name] = &plugin.ReattachConfig{
			Protocol:        plugin.Protocol(r.Protocol),
			ProtocolVersion: r.ProtocolVersion,
			Addr:            addr,
			Pid:             r.Pid,
			Test:            r.Test,
		}
	}
	return out, nil
}
