package config

import (
	"slices"
	"testing"
)

func TestRolePorts(t *testing.T) {
	cp := RolePorts(ControlPlane, 7443)
	w := RolePorts(Worker, 7443)
	for _, want := range []string{"0.0.0.0:7443:7443/tcp", "0.0.0.0:2379:2379/tcp", "0.0.0.0:2380:2380/tcp", "0.0.0.0:10250:10250/tcp", "0.0.0.0:8472:8472/udp"} {
		if !slices.Contains(cp, want) {
			t.Errorf("control plane lacks %s: %v", want, cp)
		}
	}
	if slices.Contains(cp, "0.0.0.0:6443:6443/tcp") {
		t.Errorf("the API server port did not move: %v", cp)
	}
	for _, no := range []string{"0.0.0.0:7443:7443/tcp", "0.0.0.0:2379:2379/tcp", "0.0.0.0:2380:2380/tcp"} {
		if slices.Contains(w, no) {
			t.Errorf("worker forwards %s: %v", no, w)
		}
	}
	if !slices.Contains(w, "0.0.0.0:10250:10250/tcp") || !slices.Contains(w, "0.0.0.0:10256:10256/tcp") || !slices.Contains(w, "0.0.0.0:8472:8472/udp") {
		t.Errorf("worker ports %v", w)
	}
}
