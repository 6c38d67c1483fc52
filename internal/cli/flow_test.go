package cli

import (
	"slices"
	"strings"
	"testing"
)

// TestFlowsHavePhases: every operation that changes a node is a flow whose phases can be run
// alone (`phase NAME`) and skipped (--skip-phases), in the order its list gives.
func TestFlowsHavePhases(t *testing.T) {
	root := NewRootCommand()
	for _, tc := range []struct {
		path   string
		phases []string
	}{
		{"init", []string{"preflight", "host", "cgroups", "config", "release", "start", "kubeadm", "upload-certs", "network", "policy", "addons", "wait", "timers", "summary"}},
		{"join", []string{"preflight", "host", "cgroups", "config", "release", "start", "kubeadm", "network", "wait", "timers", "summary"}},
		{"start", []string{"start", "wait"}},
		{"stop", []string{"service", "supervisor"}},
		{"reset", []string{"leave", "stop", "cleanup"}},
		{"etcd snapshot save", []string{"save", "prune"}},
		{"etcd snapshot restore", []string{"check", "stop", "restore", "start", "forget"}},
		{"certs renew", []string{"renew", "restart"}},
		{"upgrade apply", []string{"preflight", "snapshot", "drain", "kubeadm", "addons", "release", "restart", "uncordon"}},
		{"upgrade node", []string{"preflight", "snapshot", "drain", "kubeadm", "release", "restart", "uncordon"}},
	} {
		c, _, err := root.Find(strings.Fields(tc.path))
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if c.Flags().Lookup("skip-phases") == nil {
			t.Errorf("%s has no --skip-phases", tc.path)
		}
		var phase []string
		for _, sub := range c.Commands() {
			if sub.Name() == "phase" {
				for _, p := range sub.Commands() {
					phase = append(phase, p.Name())
				}
			}
		}
		want := slices.Clone(tc.phases)
		slices.Sort(want) // cobra lists subcommands by name
		if !slices.Equal(phase, want) {
			t.Errorf("u7s %s phase: %v, want %v", tc.path, phase, want)
		}
		for i, p := range tc.phases {
			if !strings.Contains(c.Long, p) {
				t.Errorf("u7s %s --help does not list its phase %d, %s:\n%s", tc.path, i, p, c.Long)
			}
		}
	}
}
