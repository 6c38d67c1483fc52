package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u7s/u7s/internal/cis"
)

func TestCheckKubeBenchNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kube-bench")
	cfg := filepath.Join(dir, "cfg")
	o := &cisOptions{kubeBench: bin, configDir: cfg}
	if err := checkKubeBench(o, false); err == nil || !strings.Contains(err.Error(), bin) || !strings.Contains(err.Error(), "make components install") {
		t.Fatalf("no kube-bench: err = %v", err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkKubeBench(o, false); err == nil || !strings.Contains(err.Error(), "config.yaml") || !strings.Contains(err.Error(), "make components install") {
		t.Fatalf("no cfg: err = %v", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg, cis.Upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "config.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkKubeBench(o, false); err != nil {
		t.Fatalf("everything there: %v", err)
	}
	o.configDir = filepath.Join(dir, "elsewhere")
	if err := checkKubeBench(o, true); err == nil || !strings.Contains(err.Error(), "not readable inside the node's namespace") {
		t.Fatalf("inside, no cfg: err = %v", err)
	}
}

func TestCheckCISFlags(t *testing.T) {
	c := newCheckCommand()
	cisCmd, _, err := c.Find([]string{"cis"})
	if err != nil || cisCmd.Name() != "cis" {
		t.Fatalf("no check cis: %v", err)
	}
	for flag, def := range map[string]string{"kube-bench": "/usr/libexec/u7s/bin/kube-bench", "config-dir": "/usr/share/u7s/kube-bench/cfg", "json": "false"} {
		f := cisCmd.Flags().Lookup(flag)
		if f == nil || f.DefValue != def {
			t.Errorf("--%s: %+v, want default %s", flag, f, def)
		}
	}
	if f := cisCmd.Flags().Lookup(inNodeFlag); f == nil || !f.Hidden {
		t.Errorf("--%s is not a hidden flag", inNodeFlag)
	}
}
