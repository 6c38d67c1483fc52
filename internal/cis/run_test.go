package cis

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckKubeBenchNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kube-bench")
	cfg := filepath.Join(dir, "cfg")
	o := &Runner{KubeBench: bin, ConfigDir: cfg}
	if err := o.CheckKubeBench(false); err == nil || !strings.Contains(err.Error(), bin) || !strings.Contains(err.Error(), "make components install") {
		t.Fatalf("no kube-bench: err = %v", err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := o.CheckKubeBench(false); err == nil || !strings.Contains(err.Error(), "config.yaml") || !strings.Contains(err.Error(), "make components install") {
		t.Fatalf("no cfg: err = %v", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg, Upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "config.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := o.CheckKubeBench(false); err != nil {
		t.Fatalf("everything there: %v", err)
	}
	o.ConfigDir = filepath.Join(dir, "elsewhere")
	if err := o.CheckKubeBench(true); err == nil || !strings.Contains(err.Error(), "not readable inside the node's namespace") {
		t.Fatalf("inside, no cfg: err = %v", err)
	}
}
