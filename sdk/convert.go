package sdk

import (
	"strings"

	pb "github.com/subhost/subhost/sdk/internal/stagepb"
)

// Converters between the public Go types and the generated protobuf
// types. Each is the exact inverse of its partner; a round-trip test keeps
// them honest when a field is added.

func describeToProto(d Description) *pb.DescribeResponse {
	out := &pb.DescribeResponse{Name: d.Name, Version: d.Version, Summary: d.Summary}
	for _, p := range d.Params {
		out.Params = append(out.Params, &pb.Param{Name: p.Name, Doc: p.Doc, Default: p.Default, Required: p.Required})
	}
	return out
}

func describeFromProto(p *pb.DescribeResponse) Description {
	out := Description{Name: p.GetName(), Version: p.GetVersion(), Summary: p.GetSummary()}
	for _, q := range p.GetParams() {
		out.Params = append(out.Params, Param{Name: q.GetName(), Doc: q.GetDoc(), Default: q.GetDefault(), Required: q.GetRequired()})
	}
	return out
}

func requestToProto(r *Request) *pb.StageRequest {
	s := &pb.Subhost{Name: r.Subhost.Name, Home: r.Subhost.Home, ConfigFile: r.Subhost.ConfigFile}
	if len(r.Subhost.Vars) > 0 {
		s.Vars = make(map[string]*pb.Var, len(r.Subhost.Vars))
		for k, v := range r.Subhost.Vars {
			s.Vars[k] = &pb.Var{Words: v.Words, IsArray: v.IsArray, Origin: v.Origin}
		}
	}
	return &pb.StageRequest{
		Subhost: s,
		Stage:   r.Stage,
		Params:  r.Params,
		Record:  recordToProto(r.Record),
		State:   r.State,
	}
}

func requestFromProto(p *pb.StageRequest) *Request {
	ps := p.GetSubhost()
	r := &Request{
		Subhost: Subhost{Name: ps.GetName(), Home: ps.GetHome(), ConfigFile: ps.GetConfigFile()},
		Stage:   p.GetStage(),
		Params:  p.GetParams(),
		Record:  recordFromProto(p.GetRecord()),
		State:   p.GetState(),
	}
	if len(ps.GetVars()) > 0 {
		r.Subhost.Vars = make(map[string]Var, len(ps.GetVars()))
		for k, v := range ps.GetVars() {
			r.Subhost.Vars[k] = Var{Words: v.GetWords(), IsArray: v.GetIsArray(), Origin: v.GetOrigin()}
		}
	}
	return r
}

func recordToProto(r BootRecord) *pb.BootRecord {
	out := &pb.BootRecord{
		Root:           r.Root,
		Netns:          r.Netns,
		Hostname:       r.Hostname,
		GuestPid:       int64(r.GuestPID),
		GuestStartTime: r.GuestStartTime,
		Console:        r.Console,
		Extra:          r.Extra,
	}
	for _, d := range r.Devices {
		out.Devices = append(out.Devices, &pb.Device{GuestName: d.GuestName, HostPath: d.HostPath, Major: d.Major, Minor: d.Minor, ReadOnly: d.ReadOnly})
	}
	for _, i := range r.Interfaces {
		out.Interfaces = append(out.Interfaces, &pb.Interface{HostName: i.HostName, GuestName: i.GuestName, Mac: i.MAC, Bridge: i.Bridge})
	}
	return out
}

func recordFromProto(p *pb.BootRecord) BootRecord {
	out := BootRecord{
		Root:           p.GetRoot(),
		Netns:          p.GetNetns(),
		Hostname:       p.GetHostname(),
		GuestPID:       int(p.GetGuestPid()),
		GuestStartTime: p.GetGuestStartTime(),
		Console:        p.GetConsole(),
		Extra:          p.GetExtra(),
	}
	for _, d := range p.GetDevices() {
		out.Devices = append(out.Devices, Device{GuestName: d.GetGuestName(), HostPath: d.GetHostPath(), Major: d.GetMajor(), Minor: d.GetMinor(), ReadOnly: d.GetReadOnly()})
	}
	for _, i := range p.GetInterfaces() {
		out.Interfaces = append(out.Interfaces, Interface{HostName: i.GetHostName(), GuestName: i.GetGuestName(), MAC: i.GetMac(), Bridge: i.GetBridge()})
	}
	return out
}

var kindToProto = map[ErrorKind]pb.ErrorKind{
	KindInternal:      pb.ErrorKind_ERROR_KIND_INTERNAL,
	KindInvalidConfig: pb.ErrorKind_ERROR_KIND_INVALID_CONFIG,
	KindConflict:      pb.ErrorKind_ERROR_KIND_CONFLICT,
	KindNotFound:      pb.ErrorKind_ERROR_KIND_NOT_FOUND,
}

// problemsToProto flattens an error tree (errors.Join from a Down that
// kept going) into one problem per failure, each with its own kind.
func problemsToProto(err error) []*pb.Problem {
	if err == nil {
		return nil
	}
	var out []*pb.Problem
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			out = append(out, problemsToProto(e)...)
		}
		return out
	}
	return []*pb.Problem{{Kind: kindToProto[KindOf(err)], Message: err.Error()}}
}

// problemsFromProto rebuilds the error: one *Error, or several joined.
func problemsFromProto(ps []*pb.Problem) error {
	var errs []error
	for _, p := range ps {
		kind := KindInternal
		for k, v := range kindToProto {
			if v == p.GetKind() {
				kind = k
			}
		}
		errs = append(errs, &Error{Kind: kind, Msg: p.GetMessage()})
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return joinedError(errs)
	}
}

// joinedError is errors.Join with a one-line message: an operator reads
// "a; b" better than a line per failure in the middle of a report.
type joinedError []error

func (j joinedError) Error() string {
	msgs := make([]string, len(j))
	for i, e := range j {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joinedError) Unwrap() []error { return j }
