package release

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// store makes an installed release whose kubelet says version v.
func store(t *testing.T, v string) *Store {
	t.Helper()
	dir := t.TempDir()
	inst := filepath.Join(dir, "libexec")
	if err := os.MkdirAll(inst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(inst, b), []byte("#!/bin/sh\necho Kubernetes "+v+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &Store{Dir: filepath.Join(dir, "releases"), Installed: inst, KubeletVersion: KubeletVersion}
}

func TestImportUseAndCheck(t *testing.T) {
	ctx := context.Background()
	s := store(t, "v1.0.1")
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "no release") {
		t.Fatalf("Check of an empty store = %v, want no release", err)
	}
	if err := s.Import(ctx, "v1.0.2"); err == nil || !strings.Contains(err.Error(), "is v1.0.1, not v1.0.2") {
		t.Fatalf("Import of a kubelet of another version = %v, want refused", err)
	}
	if s.Has("v1.0.2") {
		t.Fatal("a refused import left a release")
	}
	if err := s.Import(ctx, "v1.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Use("v1.0.1"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Current(); err != nil || v != "v1.0.1" {
		t.Fatalf("Current = %q, %v", v, err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}

	// A newer package: the node still runs what it ran, from its own copy.
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(s.Installed, b), []byte("#!/bin/sh\necho Kubernetes v1.0.2\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := KubeletVersion(ctx, filepath.Join(s.Dir, "current", "kubelet")); got != "v1.0.1" {
		t.Fatalf("after a package update the node's kubelet is %q, want v1.0.1", got)
	}
	if err := s.Use("v1.0.2"); err == nil {
		t.Fatal("Use of a release not imported succeeded")
	}
	if err := s.Import(ctx, "v1.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Use("v1.0.2"); err != nil {
		t.Fatal(err)
	}
	if got, _ := KubeletVersion(ctx, filepath.Join(s.Dir, "current", "kubelet")); got != "v1.0.2" {
		t.Fatalf("after Use the node's kubelet is %q, want v1.0.2", got)
	}

	// Prune keeps the current release and the one named.
	if err := os.MkdirAll(filepath.Join(s.Dir, "v1.0.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune("v1.0.1"); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(s.Dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "current v1.0.1 v1.0.2" {
		t.Fatalf("after Prune: %v", names)
	}

	// A binary gone from a release this u7s does not carry is named before a start.
	if err := os.Remove(filepath.Join(s.Dir, "v1.0.2", "crio")); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "incomplete") || !strings.Contains(err.Error(), "carries "+Carried()) {
		t.Fatalf("Check with a missing binary = %v", err)
	}
}

// A binary gone from the release this u7s carries is copied again.
func TestCheckRepairsTheCarriedRelease(t *testing.T) {
	ctx := context.Background()
	s := store(t, Carried())
	if err := s.Import(ctx, Carried()); err != nil {
		t.Fatal(err)
	}
	if err := s.Use(Carried()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Dir, Carried(), "runc")); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Has(Carried()) {
		t.Fatal("Check did not copy the carried release again")
	}
}
