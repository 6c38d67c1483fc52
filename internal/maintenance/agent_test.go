package maintenance

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The whole protocol with a coordinator: sentinel → request → approval (drained) → reboot →
// Ready → request withdrawn → uncordoned and released.
func TestAgentWithCoordinator(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, nil, node("w1", false))
	rebooted := 0
	a := &Agent{Client: f.cs, Node: "w1", Sentinel: filepath.Join(dir, "reboot-required"), Marker: filepath.Join(dir, "marker"),
		Asked: filepath.Join(dir, "asked"), Reboot: func() error { rebooted++; return nil }, Logf: t.Logf}
	step := func(want State) {
		t.Helper()
		got, err := a.Step(context.Background())
		if err != nil || got != want {
			t.Fatalf("Step = %q, %v; want %q", got, err, want)
		}
	}
	step(Idle)
	os.WriteFile(a.Sentinel, nil, 0o644)
	step(Waiting)
	if _, err := os.Stat(a.Asked); err != nil {
		t.Fatalf("the request is not recorded: %v", err)
	}
	step(Waiting) // not approved yet
	if rebooted != 0 {
		t.Fatal("rebooted before approval")
	}
	f.sync(t) // the coordinator drains and approves
	step(Rebooting)
	if rebooted != 1 {
		t.Fatalf("rebooted %d times, want 1", rebooted)
	}
	// The boot: /run is empty again; the node is not Ready yet.
	os.Remove(a.Sentinel)
	n := f.node(t, "w1")
	n.Status.Conditions[0].Status = corev1.ConditionFalse
	f.cs.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	step(Returning)
	f.sync(t)
	if !f.node(t, "w1").Spec.Unschedulable {
		t.Fatal("uncordoned before the node came back")
	}
	// Still the Ready of before the reboot: not back yet.
	n = f.node(t, "w1")
	n.Status.Conditions[0].Status = corev1.ConditionTrue
	n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(-time.Hour))
	f.cs.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	step(Returning)
	n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Second))
	f.cs.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	step(Idle)
	f.sync(t)
	if n := f.node(t, "w1"); n.Spec.Unschedulable || n.Annotations[RequestAnnotation] != "" || n.Annotations[ApprovedAnnotation] != "" || f.holder(t) != "" {
		t.Errorf("after the reboot: %+v, holder %q; want uncordoned, no annotations, lock free", n.ObjectMeta.Annotations, f.holder(t))
	}
	for _, p := range []string{a.Marker, a.Asked} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s remains", p)
		}
	}
}

// Nothing due and nothing asked: no call to the API server. A request withdrawn because the
// sentinel went away is forgotten, and the agent is quiet again.
func TestAgentQuietWhenIdle(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, nil, node("w1", false))
	a := &Agent{Client: f.cs, Node: "w1", Sentinel: filepath.Join(dir, "reboot-required"), Marker: filepath.Join(dir, "marker"),
		Asked: filepath.Join(dir, "asked"), Reboot: func() error { t.Fatal("rebooted"); return nil }, Logf: t.Logf}
	step := func(want State) {
		t.Helper()
		if got, err := a.Step(context.Background()); err != nil || got != want {
			t.Fatalf("Step = %q, %v; want %q", got, err, want)
		}
	}
	calls := func() int { return len(f.cs.Actions()) }
	step(Idle)
	if n := calls(); n != 0 {
		t.Fatalf("an idle step made %d API calls: %v", n, f.cs.Actions())
	}
	os.WriteFile(a.Sentinel, nil, 0o644)
	step(Waiting)
	os.Remove(a.Sentinel)
	step(Idle) // withdraws the request
	if n := f.node(t, "w1"); n.Annotations[RequestAnnotation] != "" {
		t.Fatalf("the request stays: %v", n.Annotations)
	}
	if _, err := os.Stat(a.Asked); err == nil {
		t.Fatal("the withdrawn request is still recorded")
	}
	before := calls()
	step(Idle)
	if n := calls() - before; n != 0 {
		t.Errorf("an idle step after the withdrawal made %d API calls", n)
	}
}

func TestWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 12, 1, h, m, 0, 0, time.Local) }
	w, err := ParseWindow("22:00-04:30")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t    time.Time
		want bool
	}{{at(23, 0), true}, {at(3, 0), true}, {at(4, 30), false}, {at(12, 0), false}, {at(22, 0), true}} {
		if got := w.Contains(c.t); got != c.want {
			t.Errorf("%s in 22:00-04:30: %v, want %v", c.t.Format("15:04"), got, c.want)
		}
	}
	if w, _ := ParseWindow(""); !w.Contains(at(12, 0)) {
		t.Errorf("the empty window is not always open")
	}
	for _, bad := range []string{"22:00", "25:00-01:00", "a-b"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
	}
}

// An upgrade asks with the same annotation: the agent neither withdraws it nor reboots on
// its approval, and asks for its reboot only after the upgrade is done.
func TestAgentLeavesUpgradeAlone(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, nil, node("w1", false))
	rebooted := 0
	a := &Agent{Client: f.cs, Node: "w1", Sentinel: filepath.Join(dir, "reboot-required"), Marker: filepath.Join(dir, "marker"),
		Asked: filepath.Join(dir, "asked"), Reboot: func() error { rebooted++; return nil }, Logf: t.Logf}
	ctx := context.Background()
	if err := Annotate(ctx, f.cs, "w1", RequestAnnotation, ptrTo(ReasonUpgrade)); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Step(ctx); err != nil || got != Idle {
		t.Fatalf("Step without a sentinel = %q, %v; want %q", got, err, Idle)
	}
	if f.node(t, "w1").Annotations[RequestAnnotation] != ReasonUpgrade {
		t.Fatal("the agent withdrew the upgrade's request")
	}
	os.WriteFile(a.Sentinel, nil, 0o644)
	f.sync(t) // approved for the upgrade
	for range 2 {
		if got, err := a.Step(ctx); err != nil || got != Busy {
			t.Fatalf("Step during the upgrade = %q, %v; want %q", got, err, Busy)
		}
	}
	if rebooted != 0 {
		t.Fatal("rebooted on the upgrade's approval")
	}
	if err := Annotate(ctx, f.cs, "w1", RequestAnnotation, nil); err != nil { // upgrade done
		t.Fatal(err)
	}
	f.sync(t)
	if got, err := a.Step(ctx); err != nil || got != Waiting {
		t.Fatalf("Step after the upgrade = %q, %v; want %q", got, err, Waiting)
	}
}

func ptrTo(s string) *string { return &s }
