package maintenance

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func node(name string, request bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	if request {
		n.Annotations[RequestAnnotation] = "reboot"
	}
	return n
}

func pod(name, nodeName string, owner string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: nodeName}}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: owner, Name: "x"}}
	}
	return p
}

type fixture struct {
	cs  *fake.Clientset
	c   *Coordinator
	now time.Time
}

// newFixture: evictions delete the pod unless blocked says the PodDisruptionBudget forbids it.
func newFixture(t *testing.T, blocked *bool, objs ...runtime.Object) *fixture {
	f := &fixture{cs: fake.NewClientset(objs...), now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	f.cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		if blocked != nil && *blocked {
			return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
		}
		e := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		return true, nil, f.cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, e.Namespace, e.Name)
	})
	// An approved node is a cordoned one at every moment: nobody watching may see a node
	// schedulable (pods landing on it) while it still says approved.
	f.cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if p := string(a.(k8stesting.PatchAction).GetPatch()); strings.Contains(p, `"unschedulable":false`) {
			n, err := f.cs.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, "", a.(k8stesting.PatchAction).GetName())
			if err == nil && n.(*corev1.Node).Annotations[ApprovedAnnotation] != "" {
				t.Errorf("node %s uncordoned while still approved", a.(k8stesting.PatchAction).GetName())
			}
		}
		return false, nil, nil
	})
	f.c = &Coordinator{Client: f.cs, Identity: "cp1", MaxDuration: 30 * time.Minute, DrainTimeout: time.Second,
		Logf: t.Logf, now: func() time.Time { return f.now }, pollInterval: time.Millisecond}
	return f
}

func (f *fixture) node(t *testing.T, name string) *corev1.Node {
	n, err := f.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) holder(t *testing.T) string {
	l, err := f.cs.CoordinationV1().Leases("kube-system").Get(context.Background(), LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

func (f *fixture) sync(t *testing.T) {
	t.Helper()
	if err := f.c.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// One node at a time: drained (DaemonSet pods stay) and approved, the other waits; when the
// first withdraws its request and is Ready it is uncordoned and the next one goes.
func TestOneAtATime(t *testing.T) {
	f := newFixture(t, nil, node("w1", true), node("w2", true), pod("app", "w1", "ReplicaSet"), pod("ds", "w1", "DaemonSet"), pod("app2", "w2", ""))
	f.sync(t)
	if h := f.holder(t); h != "w1" {
		t.Fatalf("lock held by %q, want w1", h)
	}
	w1 := f.node(t, "w1")
	if !w1.Spec.Unschedulable || w1.Annotations[ApprovedAnnotation] == "" {
		t.Errorf("w1 not cordoned and approved: %+v", w1)
	}
	if _, err := f.cs.CoreV1().Pods("default").Get(context.Background(), "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("w1's pod was not evicted")
	}
	if _, err := f.cs.CoreV1().Pods("default").Get(context.Background(), "ds", metav1.GetOptions{}); err != nil {
		t.Errorf("w1's DaemonSet pod was evicted")
	}

	f.now = f.now.Add(time.Minute)
	f.sync(t) // w1 still at work: renewed, w2 waits
	if w2 := f.node(t, "w2"); w2.Spec.Unschedulable || w2.Annotations[ApprovedAnnotation] != "" || f.holder(t) != "w1" {
		t.Errorf("w2 granted while w1 holds the lock")
	}

	if err := Annotate(context.Background(), f.cs, "w1", RequestAnnotation, nil); err != nil { // w1 rebooted, Ready
		t.Fatal(err)
	}
	f.sync(t)
	w1 = f.node(t, "w1")
	if w1.Spec.Unschedulable || w1.Annotations[ApprovedAnnotation] != "" || f.holder(t) != "" {
		t.Errorf("after w1's withdrawal: unschedulable %v, approved %q, holder %q; want uncordoned, cleared, released",
			w1.Spec.Unschedulable, w1.Annotations[ApprovedAnnotation], f.holder(t))
	}
	f.sync(t)
	if h := f.holder(t); h != "w2" || !f.node(t, "w2").Spec.Unschedulable {
		t.Errorf("w2 not granted after w1: holder %q", h)
	}
}

// A holder that never comes back blocks the others only until MaxDuration (plus the Lease's
// own duration): then the next request is granted.
func TestDeadHolderExpires(t *testing.T) {
	f := newFixture(t, nil, node("w1", true), node("w2", true))
	start := f.now
	f.sync(t)
	// The coordinator syncs every 30 s; w1 never withdraws its request.
	for f.holder(t) == "w1" && f.now.Sub(start) < time.Hour {
		f.now = f.now.Add(30 * time.Second)
		f.sync(t)
	}
	took := f.now.Sub(start)
	if h := f.holder(t); h != "w2" || took < f.c.MaxDuration || took > f.c.MaxDuration+2*time.Minute {
		t.Errorf("holder %q after %s; want w2 after MaxDuration (%s) and the Lease's minute", h, took, f.c.MaxDuration)
	}
}

// A PodDisruptionBudget that forbids the eviction: the drain is given up, the node uncordoned,
// the lock released, the request kept.
func TestDrainBlockedByPDB(t *testing.T) {
	blocked := true
	f := newFixture(t, &blocked, node("w1", true), pod("app", "w1", "ReplicaSet"))
	f.sync(t)
	w1 := f.node(t, "w1")
	if w1.Spec.Unschedulable || w1.Annotations[ApprovedAnnotation] != "" || f.holder(t) != "" {
		t.Errorf("blocked drain: unschedulable %v, approved %q, holder %q; want all undone", w1.Spec.Unschedulable, w1.Annotations[ApprovedAnnotation], f.holder(t))
	}
	if w1.Annotations[RequestAnnotation] == "" {
		t.Errorf("the request was dropped")
	}
	if _, err := f.cs.CoreV1().Pods("default").Get(context.Background(), "app", metav1.GetOptions{}); err != nil {
		t.Errorf("the PDB-protected pod is gone")
	}
}

// A coordinator that stopped between taking the lock and approving: the next one finishes
// the drain and approves, rather than leaving the node cordoned until the lock expires.
func TestTakeOverMidDrain(t *testing.T) {
	f := newFixture(t, nil, node("w1", true), pod("app", "w1", "ReplicaSet"))
	now := metav1.NewMicroTime(f.now)
	if _, err := f.cs.CoordinationV1().Leases("kube-system").Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: "kube-system"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("w1"), AcquireTime: &now, RenewTime: &now, LeaseDurationSeconds: ptr.To(int32(60))},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.sync(t)
	if n := f.node(t, "w1"); !n.Spec.Unschedulable || n.Annotations[ApprovedAnnotation] == "" {
		t.Errorf("w1 not drained and approved by the coordinator that took over: %+v", n.Annotations)
	}
}

// An evicted pod whose containers stopped (phase Failed) but that is not deleted yet keeps the
// drain waiting, as kubectl drain waits: approval comes only when it is gone.
func TestDrainWaitsForDeletion(t *testing.T) {
	f := newFixture(t, nil, node("w1", true))
	p := pod("app", "w1", "ReplicaSet")
	p.Status.Phase = corev1.PodFailed
	p.DeletionTimestamp = ptr.To(metav1.NewTime(f.now))
	if _, err := f.cs.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.sync(t) // the drain times out (1 s): undone
	if n := f.node(t, "w1"); n.Annotations[ApprovedAnnotation] != "" {
		t.Fatalf("approved while an evicted pod is still on the node")
	}
	if err := f.cs.CoreV1().Pods("default").Delete(context.Background(), "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.sync(t)
	if n := f.node(t, "w1"); n.Annotations[ApprovedAnnotation] == "" {
		t.Errorf("not approved once the pod was gone")
	}
}

// The lock is renewed at every round of a drain, and a coordinator whose lock changed hands
// mid-drain (another one renewed or took it) stops: it approves nothing, so that a drain
// longer than the Lease never leaves two nodes in maintenance.
func TestDrainKeepsTheLock(t *testing.T) {
	f := newFixture(t, nil, node("w1", true))
	p := pod("app", "w1", "ReplicaSet")
	p.DeletionTimestamp = ptr.To(metav1.NewTime(f.now)) // terminating: the drain waits for it
	if _, err := f.cs.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.c.DrainTimeout = time.Minute
	updates, lists := 0, 0
	f.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		updates++
		if updates > 3 { // the grant, then two renewals; then another coordinator has it
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, LeaseName, nil)
		}
		return false, nil, nil
	})
	f.cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists++
		return false, nil, nil
	})
	f.sync(t)
	if updates < 4 || lists < 2 {
		t.Errorf("%d lease updates over %d rounds of the drain: the lock was not renewed at each", updates, lists)
	}
	if n := f.node(t, "w1"); n.Annotations[ApprovedAnnotation] != "" {
		t.Errorf("w1 approved after its coordinator lost the lock")
	}
}
