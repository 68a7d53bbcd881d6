package stagepb

import (
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fullRequest sets every kind of field a stage call carries: nested
// messages, lists, maps of strings and of messages, bytes, numbers.
func fullRequest() *StageRequest {
	return &StageRequest{
		Subhost: &Subhost{Name: "web", Home: "/srv/web", ConfigFile: "/srv/web/config", Vars: map[string]*Var{
			"DISKS":  {Words: []string{"vda:1:/srv/web/web.img", "vdb:/dev/sdb"}, IsArray: true, Origin: "config"},
			"MEMORY": {Words: []string{"64M"}},
		}},
		Stage:   "mount-loop",
		Params:  map[string]string{"readonly": "true"},
		State:   []byte{0xff, 0x00, 0xfe}, // bytes need not be UTF-8
		Console: "/dev/pts/3",
		Record: &BootRecord{
			Root:         "/run/subhost/web/live",
			Devices:      []*Device{{GuestName: "vda", HostPath: "/dev/loop3", Major: 7, Minor: 3, ReadOnly: true}},
			Interfaces:   []*Interface{{HostName: "sh-web-0", GuestName: "eth0", Mac: "06:a7:dd:b4:02:f2", Bridge: "br0"}},
			GuestPid:     4242,
			Extra:        map[string]string{"note": "é ü"},
			Cgroups:      []*Cgroup{{Hierarchy: "memory", Dir: "/sys/fs/cgroup/memory/subhost/web", Guest: "guest"}},
			DevicePolicy: []string{"c 1:3 rwm"},
			UsernsBase:   100000,
		},
		Others:       []*Neighbour{{Name: "db", Status: "running", Interfaces: []*Interface{{HostName: "sh-db-0", Mac: "06:00:00:00:00:01"}}}},
		Changes:      map[string]string{"PIDS_MAX": "100"},
		CgroupParent: "subhost",
		StateDir:     "/run/subhost/web",
	}
}

// The registered "proto" codec is this one, and what it writes protobuf
// reads back as the same message, and the other way round: the wire is
// the same as with gRPC's own codec, so a plugin built with an sdk
// before the change talks to a runner after it.
func TestCodecIsRegisteredAndSpeaksProtobuf(t *testing.T) {
	if _, ok := encoding.GetCodec("proto").(codec); !ok {
		t.Fatalf("gRPC's proto codec is %T, want this package's", encoding.GetCodec("proto"))
	}
	want := fullRequest()
	data, err := codec{}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := &StageRequest{}
	if err := proto.Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("protobuf read back %v, want %v", got, want)
	}
	data, err = proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got = &StageRequest{}
	if err := (codec{}).Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("the codec read back %v, want %v", got, want)
	}
}

// Messages without generated vtprotobuf code (gRPC's health service,
// go-plugin's controller) go through protobuf.
func TestCodecCodesOtherMessages(t *testing.T) {
	for _, m := range []proto.Message{
		&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING},
		&emptypb.Empty{},
	} {
		data, err := codec{}.Marshal(m)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := (codec{}).Unmarshal(data, got); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !proto.Equal(got, m) {
			t.Fatalf("%T: read back %v, want %v", m, got, m)
		}
	}
	if _, err := (codec{}).Marshal("text"); err == nil {
		t.Fatal("a string was marshalled")
	}
}

// A string that is not UTF-8, wherever it sits, is refused on receipt,
// naming the field, as protobuf's own decoding refuses it: a stage that
// answers with one fails its call rather than have its text changed in
// the state.
func TestCodecRefusesStringsNotUTF8(t *testing.T) {
	bad := "\xff\xfe"
	for name, spoil := range map[string]func(*StageRequest){
		"Stage":                            func(r *StageRequest) { r.Stage = bad },
		"Subhost.ConfigFile":               func(r *StageRequest) { r.Subhost.ConfigFile = bad },
		`Subhost.Vars["DISKS"].Words[1]`:   func(r *StageRequest) { r.Subhost.Vars["DISKS"].Words[1] = bad },
		"Subhost.Vars key":                 func(r *StageRequest) { r.Subhost.Vars[bad] = &Var{} },
		`Params["readonly"]`:               func(r *StageRequest) { r.Params["readonly"] = bad },
		"Params key":                       func(r *StageRequest) { r.Params[bad] = "x" },
		"Record.Devices[0].HostPath":       func(r *StageRequest) { r.Record.Devices[0].HostPath = bad },
		`Record.Extra["note"]`:             func(r *StageRequest) { r.Record.Extra["note"] = bad },
		"Record.DevicePolicy[0]":           func(r *StageRequest) { r.Record.DevicePolicy[0] = bad },
		"Others[0].Interfaces[0].HostName": func(r *StageRequest) { r.Others[0].Interfaces[0].HostName = bad },
	} {
		r := fullRequest()
		spoil(r)
		data, err := r.MarshalVT() // protobuf would not write it
		if err != nil {
			t.Fatal(err)
		}
		err = codec{}.Unmarshal(data, &StageRequest{})
		if err == nil || !strings.Contains(err.Error(), "string field "+name+" contains invalid UTF-8") {
			t.Errorf("%s not UTF-8: got %v", name, err)
		}
		if proto.Unmarshal(data, &StageRequest{}) == nil {
			t.Errorf("%s not UTF-8: protobuf's decoding takes it; the test is wrong", name)
		}
	}
}
