// Package sdk is what every subhost stage plugin imports: the Stage
// interface, the request and boot-record types that flow down a pipeline,
// typed errors, and Main, which serves a stage over gRPC with
// hashicorp/go-plugin's protocol. Main speaks that protocol itself
// (serve.go) rather than linking go-plugin's server, which would cost
// every plugin about a millisecond of start; the runner's side
// (internal/pluginhost) does not link go-plugin's client either.
// sdk/goplugin is go-plugin's own side, for tools and tests, which hold
// a plugin to go-plugin's client.
//
// A stage is a small executable:
//
//	type motd struct{}
//
//	func (motd) Describe() sdk.Description { ... }
//	func (motd) Validate(ctx context.Context, req *sdk.Request) error { ... }
//	func (motd) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) { ... }
//	func (motd) Down(ctx context.Context, req *sdk.Request) error { ... }
//	func (motd) Check(ctx context.Context, req *sdk.Request) error { ... }
//
//	func main() { sdk.Main(motd{}) }
//
// A stage may also implement Updater, to change a running subhost's
// settings in place (`subhost set NAME KEY=VALUE...`): the runner calls
// Update on every stage that is up, with the changes in Request.Changes
// and the recorded boot record; each returns the keys it applied and
// leaves the others alone, and a key no stage applied is refused. A key
// that no stage up lists among its Description's Vars as Live is refused
// before any Update is called, so a stage marks the variables it can
// change so. A stage
// without Update (or a plugin built before the call existed, which
// answers gRPC Unimplemented) is reported as ErrUnsupported and skipped;
// nothing else is needed to stay compatible. The config file is never
// changed: it governs the next boot.
//
// The runner imports this package too (and sdk/goplugin); nothing else
// is shared between the runner and its plugins. sdk/stagetest serves a
// stage in-process through real RPC for tests.
package sdk
