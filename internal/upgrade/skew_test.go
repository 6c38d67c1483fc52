package upgrade

import (
	"errors"
	"strings"
	"testing"
)

// before: the cluster at v1.35.4, one control plane and a worker.
func before() Cluster {
	return Cluster{
		Version:    "v1.35.4",
		APIServers: map[string]string{"10.0.0.1:6443": "v1.35.4"},
		Kubelets:   map[string]string{"cp1": "v1.35.4", "w1": "v1.35.4"},
	}
}

func wantErr(t *testing.T, err error, part string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), part) {
		t.Fatalf("error = %v, want one saying %q", err, part)
	}
}

func TestCheckTarget(t *testing.T) {
	for _, ok := range []string{"v1.35.4", "v1.35.8", "v1.36.0", "v1.36.3"} {
		if err := CheckTarget("v1.35.4", ok); err != nil {
			t.Errorf("CheckTarget(v1.35.4, %s) = %v", ok, err)
		}
	}
	wantErr(t, CheckTarget("v1.35.8", "v1.35.4"), "does not downgrade")
	wantErr(t, CheckTarget("v1.36.1", "v1.35.8"), "does not downgrade")
	wantErr(t, CheckTarget("v1.35.8", "v1.37.2"), "upgrade to v1.36 first")
	wantErr(t, CheckTarget("v1.35.8", "v2.0.0"), "skips a minor")
	wantErr(t, CheckTarget("v1.35.8", "1.36"), "not a Kubernetes version")
}

func TestCheckCarried(t *testing.T) {
	if err := CheckCarried("v1.35.8", "v1.35.8"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckCarried("v1.35.9", "v1.35.8"), "carries Kubernetes v1.35.8, not v1.35.9")
}

const (
	cp1 = "10.0.0.1:6443"
	cp2 = "10.0.0.2:6443"
)

func TestCheckApply(t *testing.T) {
	c := before()
	if err := CheckApply(c, "cp1", cp1, "v1.35.8"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckApply(c, "cp1", cp1, "v1.37.0"), "skips a minor")
	wantErr(t, CheckApply(c, "cp1", cp1, "v1.34.0"), "does not downgrade")
	// A second control plane left behind by the previous upgrade.
	c.Version = "v1.35.8"
	c.APIServers = map[string]string{cp1: "v1.35.8", cp2: "v1.35.4"}
	wantErr(t, CheckApply(c, "cp1", cp1, "v1.36.0"), "API server at 10.0.0.2:6443 runs v1.35.4")
	// Done already.
	c = Cluster{Version: "v1.35.8", APIServers: map[string]string{cp1: "v1.35.8"}, Kubelets: map[string]string{"cp1": "v1.35.8"}}
	if err := CheckApply(c, "cp1", cp1, "v1.35.8"); !errors.Is(err, ErrUpToDate) {
		t.Fatalf("CheckApply when done = %v, want ErrUpToDate", err)
	}
	// Resumed after the control plane moved but before the node's kubelet did.
	c.Kubelets["cp1"] = "v1.35.4"
	if err := CheckApply(c, "cp1", cp1, "v1.35.8"); err != nil {
		t.Fatalf("CheckApply resumed = %v", err)
	}
}

func TestCheckNode(t *testing.T) {
	c := before()
	// A worker before its control plane.
	wantErr(t, CheckNode(c, "w1", "", "v1.35.8"), "upgrade it first with u7s upgrade apply v1.35.8")
	c.Version = "v1.35.8"
	c.APIServers = map[string]string{cp1: "v1.35.8", cp2: "v1.35.4"}
	// A worker before the second control plane.
	wantErr(t, CheckNode(c, "w1", "", "v1.35.8"), "API server at 10.0.0.2:6443 still runs v1.35.4")
	// The second control plane may go.
	if err := CheckNode(c, "cp2", cp2, "v1.35.8"); err != nil {
		t.Fatal(err)
	}
	c.APIServers[cp2] = "v1.35.8"
	if err := CheckNode(c, "w1", "", "v1.35.8"); err != nil {
		t.Fatal(err)
	}
	// An older u7s than the cluster.
	wantErr(t, CheckNode(c, "w1", "", "v1.35.4"), "older than the cluster's v1.35.8")
	c.Kubelets["w1"] = "v1.35.8"
	if err := CheckNode(c, "w1", "", "v1.35.8"); !errors.Is(err, ErrUpToDate) {
		t.Fatalf("CheckNode when done = %v, want ErrUpToDate", err)
	}
}

func TestCheckJoin(t *testing.T) {
	if err := CheckJoin("v1.35.8", "v1.35.8"); err != nil {
		t.Fatal(err)
	}
	if err := CheckJoin("v1.35.8", "v1.35.4"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckJoin("v1.35.4", "v1.35.8"), "newer than the cluster's control plane (v1.35.4)")
}

func TestMakePlan(t *testing.T) {
	c := before()
	c.Kubelets["w1"] = "v1.35.4"
	p := MakePlan(c, "v1.35.8", "v1.35.8")
	if p.Refusal != nil || p.UpToDate {
		t.Fatalf("plan = %+v", p)
	}
	s := p.String()
	for _, want := range []string{"control plane (", "v1.35.4 -> v1.35.8", "1. u7s upgrade apply v1.35.8", "node w1: kubelet", "2. u7s upgrade node   on each worker"} {
		if !strings.Contains(s, want) {
			t.Errorf("plan lacks %q:\n%s", want, s)
		}
	}
	if p := MakePlan(c, "v1.37.0", "v1.35.8"); p.Refusal == nil || !strings.Contains(p.String(), "skips a minor") {
		t.Errorf("a skipped minor planned: %s", p.String())
	}
	if p := MakePlan(c, "v1.35.9", "v1.35.8"); p.Refusal == nil {
		t.Errorf("a release this u7s does not carry planned: %s", p.String())
	}
	done := Cluster{Version: "v1.35.8", APIServers: map[string]string{cp1: "v1.35.8"}, Kubelets: map[string]string{"cp1": "v1.35.8"}}
	if p := MakePlan(done, "v1.35.8", "v1.35.8"); !p.UpToDate {
		t.Errorf("an upgraded cluster planned: %s", p.String())
	}
}
