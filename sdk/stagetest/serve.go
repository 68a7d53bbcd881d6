package stagetest

import (
	"os"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/goplugin"
)

// Serve serves stage in-process over real go-plugin gRPC and returns the
// client side, so every request and result crosses the RPC boundary as it
// does between the runner and a plugin. It is closed when the test ends.
func Serve(t testing.TB, stage sdk.Stage) sdk.Stage {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, goplugin.PluginSet(stage))
	// Closing the client shuts the server down through go-plugin's
	// controller; stopping the server as well races with that.
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(goplugin.PluginName)
	if err != nil {
		t.Fatalf("dispense stage: %v", err)
	}
	return raw.(sdk.Stage)
}

// RequireRootEnv, when "1", turns RequireRoot's skip into a failure: CI
// sets it so that a test meant to touch the kernel never silently skips.
const RequireRootEnv = "SUBHOST_TEST_REQUIRE_ROOT"

// RequireRoot skips a test that needs root when not root, or fails it
// when SUBHOST_TEST_REQUIRE_ROOT=1.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("this test needs root and %s=1", RequireRootEnv)
	}
	t.Skip("needs root")
}
