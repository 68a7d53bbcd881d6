package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The plugin's side of hashicorp/go-plugin's protocol, which the runner
// speaks as go-plugin's client (package sdk/goplugin), served here
// without linking go-plugin: its server brings net/rpc, gob, yamux and
// gRPC reflection into every plugin, whose package initialisation and
// start cost about 0.9 ms of CPU per plugin, and a boot starts four or
// five at once on the machine's CPUs. go-plugin documents the protocol for
// plugins written without it (docs/guide-plugin-write-non-go.md): a magic
// cookie in the environment, one handshake line on standard output, and
// a gRPC server with the health service and go-plugin's controller
// (Shutdown), stdio and broker services beside the plugin's own.
const (
	coreProtocolVersion = 1 // go-plugin's CoreProtocolVersion
	healthService       = "plugin"
	envProtocolVersions = "PLUGIN_PROTOCOL_VERSIONS"
	envUnixSocketDir    = "PLUGIN_UNIX_SOCKET_DIR"
	envClientCert       = "PLUGIN_CLIENT_CERT"
	envMultiplexGRPC    = "PLUGIN_MULTIPLEX_GRPC"
)

// pluginServer is one stage served over gRPC on a unix socket.
type pluginServer struct {
	grpc     *grpc.Server
	listener net.Listener
	path     string // the socket's, removed at the end
}

// newPluginServer listens on a new unix socket in dir (the system's
// temporary directory when "") and registers stage with the services
// go-plugin's client calls.
func newPluginServer(stage Stage, dir string) (*pluginServer, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	// A name no other plugin holds: bound directly, rather than freed
	// from a temporary file as go-plugin does (two file-system changes
	// fewer on every start). A name taken (a socket left by a killed
	// plugin with the same PID) is passed over.
	var path string
	var l net.Listener
	for try := 0; ; try++ {
		path = filepath.Join(dir, fmt.Sprintf("plugin%d-%08x", os.Getpid(), rand.Uint32()))
		var err error
		if l, err = net.Listen("unix", path); err == nil {
			break
		} else if !errors.Is(err, syscall.EADDRINUSE) || try == 9 {
			return nil, err
		}
	}
	s := &pluginServer{grpc: grpc.NewServer(), listener: l, path: path}
	h := health.NewServer()
	h.SetServingStatus(healthService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, h)
	s.grpc.RegisterService(&controllerDesc, s)
	s.grpc.RegisterService(&stdioDesc, s)
	s.grpc.RegisterService(&brokerDesc, s)
	RegisterServer(s.grpc, stage)
	return s, nil
}

// serve serves until the client shuts the server down (or the listener
// fails), then removes the socket.
func (s *pluginServer) serve() error {
	defer os.Remove(s.path)
	return s.grpc.Serve(s.listener)
}

// serve is Main's plugin mode: the handshake go-plugin's client expects,
// then the stage until the client shuts it down. It returns the exit
// status.
func serve(stage Stage) int {
	if os.Getenv(envClientCert) != "" || os.Getenv(envMultiplexGRPC) == "true" {
		// The runner asks for neither; a client that does is not it.
		fmt.Fprintf(os.Stderr, "%s: the client asks for go-plugin's mTLS or gRPC broker multiplexing, which a subhost stage does not serve\n", os.Args[0])
		return 1
	}
	if !offered(os.Getenv(envProtocolVersions), ProtocolVersion) {
		fmt.Fprintf(os.Stderr, "%s: the runner speaks stage protocol version(s) %s; this plugin speaks %d: use a subhost and a plugin built from the same release\n", os.Args[0], os.Getenv(envProtocolVersions), ProtocolVersion)
		return 1
	}
	s, err := newPluginServer(stage, os.Getenv(envUnixSocketDir))
	if err != nil {
		logger.Error("plugin init error", LogKeyError, err)
		return 1
	}
	// A terminal's Ctrl-C is the runner's to act on, not a plugin's
	// (go-plugin's server eats it too). A handler, not SIG_IGN, which a
	// stage's own children would inherit.
	signal.Notify(make(chan os.Signal, 1), os.Interrupt)
	fmt.Printf("%d|%d|unix|%s|grpc|\n", coreProtocolVersion, ProtocolVersion, s.path)
	if err := s.serve(); err != nil {
		logger.Error("serve", LogKeyError, err)
		return 1
	}
	return 0
}

// offered reports whether the client's list of protocol versions (comma
// separated; empty from a client that sends none) has v.
func offered(list string, v int) bool {
	if list == "" {
		return true
	}
	for _, s := range strings.Split(list, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n == v {
			return true
		}
	}
	return false
}

// serveDebug is Main's --debug: the stage served until interrupted, with
// the reattach line the runner needs printed instead of the handshake.
func serveDebug(stage Stage) int {
	s, err := newPluginServer(stage, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "debug server: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		s.grpc.Stop()
	}()
	r := Reattach{Protocol: "grpc", ProtocolVersion: ProtocolVersion, Pid: os.Getpid(), Test: true}
	r.Addr.Network, r.Addr.String = "unix", s.path
	printReattach(stage.Describe().Name, r)
	s.serve()
	return 0
}

// Shutdown is go-plugin's controller call, the client's Close: the
// server stops, and with it Main.
func (s *pluginServer) Shutdown(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	// Not from this handler's goroutine: Stop waits for handlers.
	go s.grpc.Stop()
	return &emptypb.Empty{}, nil
}

// streamStdio is go-plugin's stdio stream. A stage writes nothing to
// its standard output, and its standard error is the log the client
// reads from the process itself, so the stream carries nothing; it is
// held open until the client goes, as go-plugin's is, because a client
// that gets no stream logs a warning about it.
func streamStdio(_ any, stream grpc.ServerStream) error {
	if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// startBrokerStream is go-plugin's broker stream, for plugins that
// serve more gRPC servers to the client; a stage has one, so it waits
// for the client to go.
func startBrokerStream(_ any, stream grpc.ServerStream) error {
	<-stream.Context().Done()
	return nil
}

type controllerServer interface {
	Shutdown(context.Context, *emptypb.Empty) (*emptypb.Empty, error)
}

// go-plugin's services (its internal/plugin package), by the names and
// shapes its client calls: their messages are empty ones or never sent.
var (
	controllerDesc = grpc.ServiceDesc{
		ServiceName: "plugin.GRPCController",
		HandlerType: (*controllerServer)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Shutdown",
			Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				return srv.(controllerServer).Shutdown(ctx, in)
			},
		}},
	}
	stdioDesc = grpc.ServiceDesc{
		ServiceName: "plugin.GRPCStdio",
		HandlerType: (*any)(nil),
		Streams:     []grpc.StreamDesc{{StreamName: "StreamStdio", Handler: streamStdio, ServerStreams: true}},
	}
	brokerDesc = grpc.ServiceDesc{
		ServiceName: "plugin.GRPCBroker",
		HandlerType: (*any)(nil),
		Streams:     []grpc.StreamDesc{{StreamName: "StartStream", Handler: startBrokerStream, ServerStreams: true, ClientStreams: true}},
	}
)
