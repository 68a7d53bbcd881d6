package stagepb

import (
	"fmt"
	"reflect"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
)

// codec is gRPC's "proto" codec, registered in its place in every process
// that links this package (the runner and every stage plugin), with the
// stage messages coded by the code vtprotobuf generates
// (stage_vtproto.pb.go). The standard codec works through protobuf's
// reflection, which builds each message type's coder on its first use in
// a process: a plugin lives for one pipeline step, so it paid that on
// nearly every message it coded, about 0.4 ms of CPU per plugin, and a
// boot starts four at once on the host's CPUs. Other messages (gRPC's
// health service, go-plugin's controller) go through protobuf as before.
type codec struct{}

// vtMessage is a message with vtprotobuf's generated code.
type vtMessage interface {
	MarshalVT() ([]byte, error)
	UnmarshalVT([]byte) error
}

func init() { encoding.RegisterCodec(codec{}) }

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case vtMessage:
		return m.MarshalVT()
	case proto.Message:
		return proto.Marshal(m)
	}
	return nil, fmt.Errorf("cannot marshal %T: not a protocol buffer message", v)
}

func (codec) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case vtMessage:
		if err := m.UnmarshalVT(data); err != nil {
			return err
		}
		return checkUTF8(reflect.ValueOf(m), "")
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("cannot unmarshal into %T: not a protocol buffer message", v)
}

// checkUTF8 refuses a string field (in a message, a list or a map, at any
// depth) that is not UTF-8, as protobuf's own decoding does for proto3
// strings and vtprotobuf's does not: a stage's text is recorded in the
// subhost's state as JSON, which would replace stray bytes, and the next
// call would name something else. path names the field for the error.
func checkUTF8(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return checkUTF8(v.Elem(), path)
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			return fmt.Errorf("string field %s contains invalid UTF-8", path)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil // bytes
		}
		for i := 0; i < v.Len(); i++ {
			if err := checkUTF8(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if err := checkUTF8(it.Key(), path+" key"); err != nil {
				return err
			}
			if err := checkUTF8(it.Value(), fmt.Sprintf("%s[%q]", path, it.Key().String())); err != nil {
				return err
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() { // protobuf's own bookkeeping
				continue
			}
			name := f.Name
			if path != "" {
				name = path + "." + f.Name
			}
			if err := checkUTF8(v.Field(i), name); err != nil {
				return err
			}
		}
	}
	return nil
}
