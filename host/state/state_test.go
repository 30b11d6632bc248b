package state

import (
	"errors"
	"path/filepath"
	"testing"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "berth.db")
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, p
}

func TestSandboxNamesAndPrefixes(t *testing.T) {
	s, _ := open(t)
	a := &Sandbox{ID: "abc123", Name: "pod_ns_uid_0", Phase: PhaseCreating, CreatedAt: 1}
	if err := s.CreateSandbox(a); err != nil {
		t.Fatal(err)
	}
	err := s.CreateSandbox(&Sandbox{ID: "abd456", Name: "pod_ns_uid_0"})
	var taken *NameTakenError
	if !errors.As(err, &taken) || taken.Holder != "abc123" {
		t.Fatalf("same name: %v", err)
	}
	if err := s.CreateSandbox(&Sandbox{ID: "abd456", Name: "pod_ns_uid_1", CreatedAt: 2}); err != nil {
		t.Fatal(err)
	}
	if sb, err := s.Sandbox("abc"); err != nil || sb.ID != "abc123" {
		t.Fatalf("prefix lookup: %v %v", sb, err)
	}
	if _, err := s.Sandbox("ab"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if _, err := s.Sandbox("zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	a.Phase = PhaseReady
	if err := s.UpdateSandbox(a); err != nil {
		t.Fatal(err)
	}
	all, err := s.Sandboxes()
	if err != nil || len(all) != 2 || all[0].Phase != PhaseReady {
		t.Fatalf("list: %v %v", all, err)
	}
	if err := s.DeleteSandbox("abc123"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSandbox("abc123"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	// The name is free again.
	if err := s.CreateSandbox(&Sandbox{ID: "new", Name: "pod_ns_uid_0"}); err != nil {
		t.Fatalf("reuse a released name: %v", err)
	}
}

func TestContainersNeedTheirSandbox(t *testing.T) {
	s, _ := open(t)
	if err := s.CreateContainer(&Container{ID: "c1", SandboxID: "nope", Name: "c"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("container without sandbox: %v", err)
	}
	if err := s.CreateSandbox(&Sandbox{ID: "p1", Name: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateContainer(&Container{ID: "c1", SandboxID: "p1", Name: "c", CreatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	err := s.CreateContainer(&Container{ID: "c2", SandboxID: "p1", Name: "c"})
	var taken *NameTakenError
	if !errors.As(err, &taken) || taken.Holder != "c1" {
		t.Fatalf("duplicate container name: %v", err)
	}
	// Sandbox and container names live in separate spaces.
	if err := s.CreateContainer(&Container{ID: "c3", SandboxID: "p1", Name: "p", CreatedAt: 2}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Containers("p1")
	if err != nil || len(cs) != 2 || cs[0].ID != "c1" {
		t.Fatalf("containers: %v %v", cs, err)
	}
}

// TestSurvivesReopen: what was committed is there after the store is
// closed and reopened (the process that had it open may have been killed;
// bbolt commits are fsynced).
func TestSurvivesReopen(t *testing.T) {
	s, p := open(t)
	if err := s.CreateSandbox(&Sandbox{ID: "p1", Name: "p", Phase: PhaseCreating}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	sb, err := s2.Sandbox("p1")
	if err != nil || sb.Phase != PhaseCreating {
		t.Fatalf("after reopen: %v %v", sb, err)
	}
	if err := s2.CreateSandbox(&Sandbox{ID: "p2", Name: "p"}); err == nil {
		t.Fatal("name reservation lost across reopen")
	}
}
