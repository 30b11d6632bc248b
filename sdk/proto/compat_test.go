// Package proto_test guards the plugin wire: within a major version the
// protocol may only grow. descriptors.binpb is the released snapshot; the
// generated code compiled into this test must be a compatible superset of it.
package proto_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/berth-cri/berth/sdk/proto/monitor/v1"
	_ "github.com/berth-cri/berth/sdk/proto/network/v1"
	_ "github.com/berth-cri/berth/sdk/proto/plugin/v1"
	_ "github.com/berth-cri/berth/sdk/proto/runtime/v1"
	_ "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

func loadSnapshot(t *testing.T) *protoregistry.Files {
	t.Helper()
	b, err := os.ReadFile("descriptors.binpb")
	if err != nil {
		t.Fatalf("read snapshot: %v", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatalf("decode snapshot: %v", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("build snapshot registry: %v", err)
	}
	return files
}

func TestWireOnlyGrows(t *testing.T) {
	old := loadSnapshot(t)
	problems := compare(old, protoregistry.GlobalFiles)
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Log("a released berth.*.vN protocol may only grow; breaking changes need a new major (see sdk/doc.go)")
	}
}

// TestCompareDetectsBreaks proves the checker is not vacuous: each mutation of
// the snapshot must be reported.
func TestCompareDetectsBreaks(t *testing.T) {
	b, err := os.ReadFile("descriptors.binpb")
	if err != nil {
		t.Fatal(err)
	}
	mutations := []struct {
		name   string
		mutate func(*descriptorpb.FileDescriptorSet)
		want   string
	}{
		{"field removed", func(s *descriptorpb.FileDescriptorSet) {
			m := findMsg(s, "berth.plugin.v1", "InfoResponse")
			m.Field = m.Field[1:]
		}, "field berth.plugin.v1.InfoResponse.name"},
		{"field renumbered", func(s *descriptorpb.FileDescriptorSet) {
			m := findMsg(s, "berth.plugin.v1", "InfoResponse")
			m.Field[0].Number = proto.Int32(99)
		}, "number"},
		{"field type changed", func(s *descriptorpb.FileDescriptorSet) {
			m := findMsg(s, "berth.plugin.v1", "HealthResponse")
			m.Field[0].Type = descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
		}, "kind"},
		{"rpc removed", func(s *descriptorpb.FileDescriptorSet) {
			for _, f := range s.File {
				if f.GetPackage() == "berth.plugin.v1" {
					f.Service[0].Method = f.Service[0].Method[1:]
				}
			}
		}, "method berth.plugin.v1.Plugin.Info"},
		{"enum value removed", func(s *descriptorpb.FileDescriptorSet) {
			for _, f := range s.File {
				if f.GetPackage() == "berth.plugin.v1" {
					e := f.EnumType[0]
					e.Value = e.Value[:len(e.Value)-1]
				}
			}
		}, "enum value"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			var set descriptorpb.FileDescriptorSet
			if err := proto.Unmarshal(b, &set); err != nil {
				t.Fatal(err)
			}
			m.mutate(&set)
			// The mutated set plays the role of the *new* protocol.
			mutated, err := protodesc.NewFiles(&set)
			if err != nil {
				t.Fatal(err)
			}
			problems := compare(loadSnapshot(t), mutated)
			if !strings.Contains(strings.Join(problems, "\n"), m.want) {
				t.Fatalf("mutation not detected; problems: %q", problems)
			}
		})
	}
}

func findMsg(s *descriptorpb.FileDescriptorSet, pkg, name string) *descriptorpb.DescriptorProto {
	for _, f := range s.File {
		if f.GetPackage() != pkg {
			continue
		}
		for _, m := range f.MessageType {
			if m.GetName() == name {
				return m
			}
		}
	}
	panic("no message " + pkg + "." + name)
}

type resolver interface {
	FindDescriptorByName(protoreflect.FullName) (protoreflect.Descriptor, error)
	RangeFiles(func(protoreflect.FileDescriptor) bool)
}

// compare lists every way cur breaks a client or server built against old,
// for the berth.* packages.
func compare(old, cur resolver) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	old.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(f.Package()), "berth.") {
			return true
		}
		walkMessages(f.Messages(), func(om protoreflect.MessageDescriptor) {
			d, err := cur.FindDescriptorByName(om.FullName())
			nm, ok := d.(protoreflect.MessageDescriptor)
			if err != nil || !ok {
				add("message %s was removed", om.FullName())
				return
			}
			for i := 0; i < om.Fields().Len(); i++ {
				of := om.Fields().Get(i)
				nf := nm.Fields().ByNumber(of.Number())
				if nf == nil {
					if byName := nm.Fields().ByName(of.Name()); byName != nil {
						add("field %s changed number from %d to %d", of.FullName(), of.Number(), byName.Number())
					} else {
						add("field %s (number %d) was removed; reserve it instead", of.FullName(), of.Number())
					}
					continue
				}
				if nf.Name() != of.Name() {
					add("field %s (number %d) was renamed to %s", of.FullName(), of.Number(), nf.Name())
				}
				if nf.Kind() != of.Kind() || nf.Cardinality() != of.Cardinality() || nf.IsMap() != of.IsMap() {
					add("field %s changed kind or cardinality (%v %v -> %v %v)", of.FullName(), of.Cardinality(), of.Kind(), nf.Cardinality(), nf.Kind())
				}
				if of.Message() != nil && nf.Message() != nil && of.Message().FullName() != nf.Message().FullName() {
					add("field %s changed message type %s -> %s", of.FullName(), of.Message().FullName(), nf.Message().FullName())
				}
				if of.Enum() != nil && nf.Enum() != nil && of.Enum().FullName() != nf.Enum().FullName() {
					add("field %s changed enum type %s -> %s", of.FullName(), of.Enum().FullName(), nf.Enum().FullName())
				}
				oo, no := of.ContainingOneof(), nf.ContainingOneof()
				if (oo == nil) != (no == nil) || (oo != nil && oo.Name() != no.Name()) {
					add("field %s moved into or out of a oneof", of.FullName())
				}
			}
		})
		walkEnums(f, func(oe protoreflect.EnumDescriptor) {
			d, err := cur.FindDescriptorByName(oe.FullName())
			ne, ok := d.(protoreflect.EnumDescriptor)
			if err != nil || !ok {
				add("enum %s was removed", oe.FullName())
				return
			}
			for i := 0; i < oe.Values().Len(); i++ {
				ov := oe.Values().Get(i)
				nv := ne.Values().ByNumber(ov.Number())
				if nv == nil || nv.Name() != ov.Name() {
					add("enum value %s (%d) was removed or renamed", ov.FullName(), ov.Number())
				}
			}
		})
		for i := 0; i < f.Services().Len(); i++ {
			os := f.Services().Get(i)
			d, err := cur.FindDescriptorByName(os.FullName())
			ns, ok := d.(protoreflect.ServiceDescriptor)
			if err != nil || !ok {
				add("service %s was removed", os.FullName())
				continue
			}
			for j := 0; j < os.Methods().Len(); j++ {
				om := os.Methods().Get(j)
				nm := ns.Methods().ByName(om.Name())
				if nm == nil {
					add("method %s was removed", om.FullName())
					continue
				}
				if nm.Input().FullName() != om.Input().FullName() || nm.Output().FullName() != om.Output().FullName() {
					add("method %s changed its request or response type", om.FullName())
				}
				if nm.IsStreamingClient() != om.IsStreamingClient() || nm.IsStreamingServer() != om.IsStreamingServer() {
					add("method %s changed streaming", om.FullName())
				}
			}
		}
		return true
	})
	return problems
}

func walkMessages(ms protoreflect.MessageDescriptors, fn func(protoreflect.MessageDescriptor)) {
	for i := 0; i < ms.Len(); i++ {
		m := ms.Get(i)
		if m.IsMapEntry() {
			continue
		}
		fn(m)
		walkMessages(m.Messages(), fn)
	}
}

func walkEnums(f protoreflect.FileDescriptor, fn func(protoreflect.EnumDescriptor)) {
	for i := 0; i < f.Enums().Len(); i++ {
		fn(f.Enums().Get(i))
	}
	var inMsgs func(protoreflect.MessageDescriptors)
	inMsgs = func(ms protoreflect.MessageDescriptors) {
		for i := 0; i < ms.Len(); i++ {
			for j := 0; j < ms.Get(i).Enums().Len(); j++ {
				fn(ms.Get(i).Enums().Get(j))
			}
			inMsgs(ms.Get(i).Messages())
		}
	}
	inMsgs(f.Messages())
}
