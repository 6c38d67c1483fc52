package phases

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeepLogs(t *testing.T) {
	dir := t.TempDir()
	logs, failed := filepath.Join(dir, "u7s"), filepath.Join(dir, "u7s-failed")
	if err := os.MkdirAll(filepath.Join(logs, "audit"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kubelet.log", "crio.log", "audit/audit.log"} {
		if err := os.WriteFile(filepath.Join(logs, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pods := filepath.Join(dir, "pods")
	for _, p := range []string{"kube-system_kube-apiserver-h1_0a/kube-apiserver/0.log", "default_web_1b/web/0.log"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(pods, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pods, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 2, 10, 55, 0, 0, time.UTC)
	kept, err := keepLogs(logs, pods, failed, "init", now)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(failed, "init-20261202T105500Z"); kept != want {
		t.Fatalf("kept in %s, want %s", kept, want)
	}
	for _, f := range []string{"kubelet.log", "crio.log", "audit/audit.log"} {
		if b, err := os.ReadFile(filepath.Join(kept, f)); err != nil || string(b) != f {
			t.Errorf("%s not kept: %q %v", f, b, err)
		}
		if _, err := os.Stat(filepath.Join(logs, f)); err == nil {
			t.Errorf("%s is still in %s", f, logs)
		}
	}
	// The control plane's pod logs are kept; a workload's are not.
	const api = "kube-system_kube-apiserver-h1_0a/kube-apiserver/0.log"
	if b, err := os.ReadFile(filepath.Join(kept, "pods", api)); err != nil || string(b) != api {
		t.Errorf("the API server's log not kept: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(kept, "pods", "default_web_1b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a workload's log was kept")
	}
	// Nothing to keep: no directory made.
	if kept, err := keepLogs(filepath.Join(dir, "none"), filepath.Join(dir, "none"), failed, "join", now); kept != "" || err != nil {
		t.Errorf("keepLogs of a missing directory = %q, %v", kept, err)
	}

	base := errors.New("kubeadm init failed (logs: " + logs + "): timed out")
	e := &logsMoved{err: base, from: logs, to: kept}
	if !strings.Contains(e.Error(), "(logs: "+kept+")") || strings.Contains(e.Error(), logs+")") || !errors.Is(e, base) {
		t.Errorf("the error names %q", e.Error())
	}
	if e := (&logsMoved{err: errors.New("preflight: bad key"), from: logs, to: kept}); !strings.HasSuffix(e.Error(), "(logs: "+kept+")") {
		t.Errorf("an error naming no logs: %q", e.Error())
	}
}

// TestPhaseEffects: a phase's declared effect decides whether a dry run skips it and whether a
// failure from it on is undone; no phase sets Changed by hand.
func TestPhaseEffects(t *testing.T) {
	for _, tc := range []struct {
		e                effect
		dryRun           bool
		wantRan, changed bool
	}{
		{readOnly, false, true, false},
		{readOnly, true, true, false},
		{changesHost, false, true, true},
		{changesHost, true, false, false},
		{changesHostOrSays, false, true, true},
		{changesHostOrSays, true, true, false},
		{needsNode, false, true, false},
		{needsNode, true, false, false},
	} {
		d := &Data{O: Options{DryRun: tc.dryRun}}
		ran := false
		p := phase("p", "", tc.e, func(*Data) error { ran = true; return errors.New("failed") })
		_ = p.Run(d)
		if ran != tc.wantRan || d.Changed != tc.changed {
			t.Errorf("effect %d, dry run %v: ran %v, changed %v; want %v, %v", tc.e, tc.dryRun, ran, d.Changed, tc.wantRan, tc.changed)
		}
	}
	// Start runs the phases init and join share to start the node and wait for it, with data
	// of its own: nothing to record, nothing skipped.
	sd := &StartData{}
	for _, e := range []effect{changesHost, needsNode} {
		ran := false
		p := phaseOf("p", "", e, func(nodeData) error { ran = true; return nil })
		if err := p.Run(sd); err != nil || !ran {
			t.Errorf("effect %d on start's data: ran %v, %v", e, ran, err)
		}
	}
	// A phase run with another flow's data says so rather than panicking.
	if err := phase("p", "", readOnly, func(*Data) error { return nil }).Run(sd); err == nil {
		t.Error("an init phase ran with start's data")
	}
}
