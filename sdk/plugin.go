package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/subhost/subhost/sdk/internal/stagepb"
)

// ProtocolVersion is the stage protocol's version; it matches the
// package version in stage.proto (subhost.stage.v1).
const ProtocolVersion = 1

// The magic cookie of the plugin handshake, shared by the runner and
// every plugin: it only keeps a plugin from being run by hand by mistake;
// it is no security.
const (
	MagicCookieKey   = "SUBHOST_STAGE_PLUGIN"
	MagicCookieValue = "4d1f9c1e-boot-pipeline-stage"
)

// RegisterServer registers impl as the stage service on a gRPC server:
// how Main serves a stage, and how sdk/goplugin serves one in-process.
func RegisterServer(s grpc.ServiceRegistrar, impl Stage) {
	pb.RegisterStageServer(s, &server{impl: impl})
}

// NewClient is the stage served on conn, as a Stage: the runner's side
// (sdk/goplugin dispenses it).
func NewClient(conn grpc.ClientConnInterface) Stage {
	return &client{rpc: pb.NewStageClient(conn)}
}

// server runs in the plugin: each handler decodes, calls the stage and
// encodes, with the stage's failure as a typed problem in the response.
type server struct {
	pb.UnimplementedStageServer
	impl Stage
}

func (s *server) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	return describeToProto(s.impl.Describe()), nil
}

func (s *server) Validate(ctx context.Context, req *pb.StageRequest) (*pb.ValidateResponse, error) {
	r := requestFromProto(req)
	err := s.impl.Validate(withLogger(ctx, r, "validate"), r)
	logFailure(r, "validate", err)
	return &pb.ValidateResponse{Problems: problemsToProto(err), Record: recordUseToProto(s.impl.Describe().Record)}, nil
}

func (s *server) Up(ctx context.Context, req *pb.StageRequest) (*pb.UpResponse, error) {
	r := requestFromProto(req)
	res, err := s.impl.Up(withLogger(ctx, r, "up"), r)
	logFailure(r, "up", err)
	out := &pb.UpResponse{Problems: problemsToProto(err)}
	if res != nil {
		out.Record, out.State = recordToProto(res.Record), res.State
	}
	return out, nil
}

func (s *server) Down(ctx context.Context, req *pb.StageRequest) (*pb.DownResponse, error) {
	r := requestFromProto(req)
	err := s.impl.Down(withLogger(ctx, r, "down"), r)
	logFailure(r, "down", err)
	return &pb.DownResponse{Problems: problemsToProto(err)}, nil
}

func (s *server) Check(ctx context.Context, req *pb.StageRequest) (*pb.CheckResponse, error) {
	r := requestFromProto(req)
	err := s.impl.Check(withLogger(ctx, r, "check"), r)
	return &pb.CheckResponse{Problems: problemsToProto(err)}, nil
}

// Update serves the optional Updater: a stage without it says so in the
// response rather than as a transport error.
func (s *server) Update(ctx context.Context, req *pb.StageRequest) (*pb.UpdateResponse, error) {
	u, ok := s.impl.(Updater)
	if !ok {
		return &pb.UpdateResponse{Unsupported: true}, nil
	}
	r := requestFromProto(req)
	applied, err := u.Update(withLogger(ctx, r, "update"), r)
	logFailure(r, "update", err)
	return &pb.UpdateResponse{Problems: problemsToProto(err), Applied: applied}, nil
}

func logFailure(r *Request, call string, err error) {
	if err != nil {
		logger.Debug("stage call failed", LogKeySubhost, r.Subhost.Name, LogKeyCall, call, LogKeyError, err)
	}
}

// client runs in the runner and is itself a Stage, so the runner cannot
// tell a plugin from an in-process stage.
type client struct {
	rpc pb.StageClient
}

var _ Stage = (*client)(nil)

func (c *client) Describe() Description {
	d, _ := c.DescribeContext(context.Background())
	return d
}

// DescribeContext is Describe with a deadline and the transport error.
func (c *client) DescribeContext(ctx context.Context) (Description, error) {
	resp, err := c.rpc.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return Description{}, err
	}
	return describeFromProto(resp), nil
}

func (c *client) Validate(ctx context.Context, req *Request) error {
	_, err := c.validateUse(ctx, req)
	return err
}

func (c *client) validateUse(ctx context.Context, req *Request) (*RecordUse, error) {
	resp, err := c.rpc.Validate(ctx, requestToProto(req))
	if err != nil {
		return nil, err
	}
	return recordUseFromProto(resp.GetRecord()), problemsFromProto(resp.GetProblems())
}

func (c *client) Up(ctx context.Context, req *Request) (*Result, error) {
	resp, err := c.rpc.Up(ctx, requestToProto(req))
	if err != nil {
		return nil, err
	}
	res := &Result{Record: recordFromProto(resp.GetRecord()), State: resp.GetState()}
	return res, problemsFromProto(resp.GetProblems())
}

func (c *client) Down(ctx context.Context, req *Request) error {
	resp, err := c.rpc.Down(ctx, requestToProto(req))
	if err != nil {
		return err
	}
	return problemsFromProto(resp.GetProblems())
}

func (c *client) Check(ctx context.Context, req *Request) error {
	resp, err := c.rpc.Check(ctx, requestToProto(req))
	if err != nil {
		return err
	}
	return problemsFromProto(resp.GetProblems())
}

// Update asks the plugin to change settings in place. A plugin that does
// not implement it, or predates the call, gives ErrUnsupported.
func (c *client) Update(ctx context.Context, req *Request) ([]string, error) {
	resp, err := c.rpc.Update(ctx, requestToProto(req))
	if status.Code(err) == codes.Unimplemented {
		return nil, ErrUnsupported
	}
	if err != nil {
		return nil, err
	}
	if resp.GetUnsupported() {
		return nil, ErrUnsupported
	}
	return resp.GetApplied(), problemsFromProto(resp.GetProblems())
}

// ErrUnsupported is Update's answer from a stage that cannot change a
// running subhost's settings.
var ErrUnsupported = fmt.Errorf("the stage cannot change settings in place: %w", errors.ErrUnsupported)

// Update changes settings of a running subhost through s, which may be a
// dispensed plugin or an in-process stage: ErrUnsupported when s cannot.
func Update(ctx context.Context, s Stage, req *Request) ([]string, error) {
	if u, ok := s.(Updater); ok {
		return u.Update(ctx, req)
	}
	return nil, ErrUnsupported
}

// ValidateUse validates the request as s.Validate does, and returns how
// the stage's Up uses the boot record (its Description's Record), which a
// plugin sends with the validation: what the runner needs before a boot,
// in the one call. A plugin built before there was a way to declare it
// answers nil, as a stage that declares nothing.
func ValidateUse(ctx context.Context, s Stage, req *Request) (*RecordUse, error) {
	if c, ok := s.(interface {
		validateUse(context.Context, *Request) (*RecordUse, error)
	}); ok {
		return c.validateUse(ctx, req)
	}
	if err := s.Validate(ctx, req); err != nil {
		return nil, err
	}
	return s.Describe().Record, nil
}

// DescribeContext asks a dispensed stage to describe itself within ctx,
// returning the transport error a plain Describe cannot.
func DescribeContext(ctx context.Context, s Stage) (Description, error) {
	if c, ok := s.(interface {
		DescribeContext(context.Context) (Description, error)
	}); ok {
		return c.DescribeContext(ctx)
	}
	return s.Describe(), nil
}

// logger is the plugin's logger: made by Main before serving (JSON on
// stderr, which the runner's go-plugin client reads into its log), a plain
// one in tests.
var logger hclog.Logger = hclog.New(&hclog.LoggerOptions{Name: "stage", Level: hclog.Info})

type loggerKey struct{}

func withLogger(ctx context.Context, r *Request, call string) context.Context {
	return context.WithValue(ctx, loggerKey{}, logger.With(LogKeySubhost, r.Subhost.Name, LogKeyCall, call))
}

// Logger returns the logger for a stage call: forwarded to the runner's
// log with the stage name when running as a plugin.
func Logger(ctx context.Context) hclog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(hclog.Logger); ok {
		return l
	}
	return logger
}
