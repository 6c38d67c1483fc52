package cgroups

import (
	"strings"
	"testing"
)

// TestDrivers pins what each mode does where the node's other parts ask (cri-o's rootless mode
// and infra container, the kubelet's limits, the supervisor's evacuation, the description).
func TestDrivers(t *testing.T) {
	for _, tc := range []struct {
		mode                            Mode
		crioRootless, dropInfra, limits bool
		description                     string
	}{
		// cri-o's rootless mode discards every limit on v1; v1 delegation has root's subtrees.
		{V1Delegated, false, false, true, "cgroup v1, subtrees delegated by root: limits enforced"},
		// On v2, rootless mode would take every container out of its pod's cgroup.
		{V2Delegated, false, true, true, "cgroup v2 with delegation: pod limits enforced"},
		{None, true, false, false, "no delegation: pods run without resource limits"},
	} {
		d, err := For(tc.mode)
		if err != nil {
			t.Fatal(err)
		}
		if d.Mode() != tc.mode || d.CrioRootless() != tc.crioRootless || d.DropInfraContainer() != tc.dropInfra || d.Limits() != tc.limits {
			t.Errorf("%s: mode %s, cri-o rootless %v, drop infra %v, limits %v; want %v %v %v", tc.mode, d.Mode(),
				d.CrioRootless(), d.DropInfraContainer(), d.Limits(), tc.crioRootless, tc.dropInfra, tc.limits)
		}
		if tc.mode.Description() != tc.description {
			t.Errorf("%s: %q", tc.mode, tc.mode.Description())
		}
	}
	// Only v1 has work before a start, in the supervisor and in the namespace; none has nothing.
	n := Must(None)
	if ev, err := n.EnterSupervisor(1000); ev != "" || err != nil || n.Prepare() != nil || n.EnterNamespace() != nil {
		t.Errorf("none does something: %q %v", ev, err)
	}
	if _, err := For(""); err == nil || !strings.Contains(err.Error(), "u7s reset") {
		t.Errorf("For(\"\") = %v, want an error naming the fix", err)
	}
	if d := Mode("v3").Description(); !strings.Contains(d, "unknown") {
		t.Errorf("an unknown mode's description: %q", d)
	}
}
