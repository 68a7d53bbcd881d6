// Package sdk is what every subhost stage plugin imports: the Stage
// interface, the request and boot-record types that flow down a pipeline,
// typed errors, and Main, which serves a stage over go-plugin gRPC.
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
// The runner imports this package too; nothing else is shared between the
// runner and its plugins. sdk/stagetest serves a stage in-process through
// real RPC for tests.
package sdk
