package sdk

import (
	"strings"

	pb "github.com/subhost/subhost/sdk/internal/stagepb"
)

// Converters between the public Go types and the generated protobuf
// types. Each is the inverse of its partner, up to an empty slice or map
// coming back as nil. TestRoundTripOfEveryFieldByReflection sets every
// field of a Request and a Description, found by reflection, so a field
// added to the Go types but not converted fails it.

func describeToProto(d Description) *pb.DescribeResponse {
	out := &pb.DescribeResponse{Name: d.Name, Version: d.Version, Summary: d.Summary}
	for _, p := range d.Params {
		out.Params = append(out.Params, &pb.Param{Name: p.Name, Doc: p.Doc, Default: p.Default, Required: p.Required})
	}
	for _, v := range d.Vars {
		out.Vars = append(out.Vars, &pb.ConfigVar{Name: v.Name, Doc: v.Doc, Default: v.Default, Live: v.Live})
	}
	out.Record = recordUseToProto(d.Record)
	return out
}

func recordUseToProto(u *RecordUse) *pb.RecordUse {
	if u == nil {
		return nil
	}
	return &pb.RecordUse{Reads: u.Reads, Writes: u.Writes}
}

func recordUseFromProto(u *pb.RecordUse) *RecordUse {
	if u == nil {
		return nil
	}
	return &RecordUse{Reads: u.GetReads(), Writes: u.GetWrites()}
}

func describeFromProto(p *pb.DescribeResponse) Description {
	out := Description{Name: p.GetName(), Version: p.GetVersion(), Summary: p.GetSummary()}
	for _, q := range p.GetParams() {
		out.Params = append(out.Params, Param{Name: q.GetName(), Doc: q.GetDoc(), Default: q.GetDefault(), Required: q.GetRequired()})
	}
	for _, v := range p.GetVars() {
		out.Vars = append(out.Vars, ConfigVar{Name: v.GetName(), Doc: v.GetDoc(), Default: v.GetDefault(), Live: v.GetLive()})
	}
	out.Record = recordUseFromProto(p.GetRecord())
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
	out := &pb.StageRequest{
		Subhost: s,
		Stage:   r.Stage,
		Params:  r.Params,
		Record:  recordToProto(r.Record),
		State:   r.State,
		Console: r.Console,
		Changes: r.Changes,

		CgroupParent: r.CgroupParent,
		StateDir:     r.StateDir,
	}
	for _, n := range r.Others {
		out.Others = append(out.Others, &pb.Neighbour{Name: n.Name, Status: n.Status, Interfaces: interfacesToProto(n.Interfaces)})
	}
	return out
}

func requestFromProto(p *pb.StageRequest) *Request {
	ps := p.GetSubhost()
	r := &Request{
		Subhost: Subhost{Name: ps.GetName(), Home: ps.GetHome(), ConfigFile: ps.GetConfigFile()},
		Stage:   p.GetStage(),
		Params:  p.GetParams(),
		Record:  recordFromProto(p.GetRecord()),
		State:   p.GetState(),
		Console: p.GetConsole(),
		Changes: p.GetChanges(),

		CgroupParent: p.GetCgroupParent(),
		StateDir:     p.GetStateDir(),
	}
	for _, n := range p.GetOthers() {
		r.Others = append(r.Others, Neighbour{Name: n.GetName(), Status: n.GetStatus(), Interfaces: interfacesFromProto(n.GetInterfaces())})
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
		Root:               r.Root,
		Netns:              r.Netns,
		Hostname:           r.Hostname,
		GuestPid:           int64(r.GuestPID),
		GuestStartTime:     r.GuestStartTime,
		GuestStopTimeoutMs: r.GuestStopTimeoutMS,
		Extra:              r.Extra,
		DevicePolicy:       r.DevicePolicy,
		Userns:             r.Userns,
		UsernsBase:         r.UsernsBase,
		UsernsSize:         r.UsernsSize,
		RootUserns:         r.RootUserns,
	}
	for _, c := range r.Cgroups {
		out.Cgroups = append(out.Cgroups, &pb.Cgroup{Hierarchy: c.Hierarchy, Dir: c.Dir, Guest: c.Guest})
	}
	for _, d := range r.Devices {
		out.Devices = append(out.Devices, &pb.Device{GuestName: d.GuestName, HostPath: d.HostPath, Major: d.Major, Minor: d.Minor, ReadOnly: d.ReadOnly})
	}
	out.Interfaces = interfacesToProto(r.Interfaces)
	return out
}

func interfacesToProto(in []Interface) []*pb.Interface {
	var out []*pb.Interface
	for _, i := range in {
		out = append(out, &pb.Interface{HostName: i.HostName, GuestName: i.GuestName, Mac: i.MAC, Bridge: i.Bridge})
	}
	return out
}

func interfacesFromProto(in []*pb.Interface) []Interface {
	var out []Interface
	for _, i := range in {
		out = append(out, Interface{HostName: i.GetHostName(), GuestName: i.GetGuestName(), MAC: i.GetMac(), Bridge: i.GetBridge()})
	}
	return out
}

func recordFromProto(p *pb.BootRecord) BootRecord {
	out := BootRecord{
		Root:               p.GetRoot(),
		Netns:              p.GetNetns(),
		Hostname:           p.GetHostname(),
		GuestPID:           int(p.GetGuestPid()),
		GuestStartTime:     p.GetGuestStartTime(),
		GuestStopTimeoutMS: p.GetGuestStopTimeoutMs(),
		Extra:              p.GetExtra(),
		DevicePolicy:       p.GetDevicePolicy(),
		Userns:             p.GetUserns(),
		UsernsBase:         p.GetUsernsBase(),
		UsernsSize:         p.GetUsernsSize(),
		RootUserns:         p.GetRootUserns(),
	}
	for _, c := range p.GetCgroups() {
		out.Cgroups = append(out.Cgroups, Cgroup{Hierarchy: c.GetHierarchy(), Dir: c.GetDir(), Guest: c.GetGuest()})
	}
	for _, d := range p.GetDevices() {
		out.Devices = append(out.Devices, Device{GuestName: d.GetGuestName(), HostPath: d.GetHostPath(), Major: d.GetMajor(), Minor: d.GetMinor(), ReadOnly: d.GetReadOnly()})
	}
	out.Interfaces = interfacesFromProto(p.GetInterfaces())
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
	// A protobuf string must be UTF-8, or the whole response fails to
	// marshal and the kind and the message are lost: a script's
	// standard error or a file name may be in another encoding.
	return []*pb.Problem{{Kind: kindToProto[KindOf(err)], Message: strings.ToValidUTF8(err.Error(), "\uFFFD")}}
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
