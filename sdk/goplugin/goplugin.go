// Package goplugin is the stage protocol on hashicorp/go-plugin's side:
// the handshake and plugin set to start a stage plugin with go-plugin's
// client, the dispensed client, reattaching to a stage serving in debug
// mode, and serving a stage in-process for tests (package stagetest).
// Neither the plugins nor the runner link go-plugin (sdk.Main serves its
// protocol, internal/pluginhost speaks it); this package is for tools
// and tests that want go-plugin's own side, and its tests hold the
// plugins to it.
package goplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/subhost/subhost/sdk"
)

// Handshake is shared by the runner and every plugin (sdk.Main checks
// the same cookie and version).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  sdk.ProtocolVersion,
	MagicCookieKey:   sdk.MagicCookieKey,
	MagicCookieValue: sdk.MagicCookieValue,
}

// PluginName is the single plugin every stage executable serves.
const PluginName = "stage"

// PluginSet is the go-plugin map for a stage; impl is nil on the runner.
func PluginSet(impl sdk.Stage) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}

// GRPCPlugin adapts a Stage to go-plugin's gRPC transport.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl sdk.Stage
}

func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	sdk.RegisterServer(s, p.Impl)
	return nil
}

func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return sdk.NewClient(c), nil
}

// ParseReattach decodes the value of sdk.ReattachEnv into go-plugin
// reattach configs, keyed by stage plugin name.
func ParseReattach(value string) (map[string]*plugin.ReattachConfig, error) {
	var raw map[string]sdk.Reattach
	if err := json.Unmarshal([]byte(value), &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", sdk.ReattachEnv, err)
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
				return nil, fmt.Errorf("%s: stage %q: %w", sdk.ReattachEnv, name, err)
			}
			addr = a
		default:
			return nil, fmt.Errorf("%s: stage %q: unknown network %q", sdk.ReattachEnv, name, r.Addr.Network)
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
