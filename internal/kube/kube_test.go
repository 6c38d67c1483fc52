package kube

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func node(ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
}

func pod(ns, name string, ready corev1.ConditionStatus, waiting string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
	if waiting != "" {
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}}}
	}
	return p
}

func TestWaitNodeReady(t *testing.T) {
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		want    string // in the error; "" for none
	}{
		{"ready", []runtime.Object{node(corev1.ConditionTrue),
			pod("kube-system", "kube-proxy-x", corev1.ConditionTrue, ""), pod("kube-flannel", "flannel-x", corev1.ConditionTrue, "")}, ""},
		{"node not ready", []runtime.Object{node(corev1.ConditionFalse),
			pod("kube-system", "kube-proxy-x", corev1.ConditionTrue, ""), pod("kube-flannel", "flannel-x", corev1.ConditionTrue, "")}, "node Ready"},
		{"a pod pulling its image", []runtime.Object{node(corev1.ConditionTrue),
			pod("kube-system", "kube-proxy-x", corev1.ConditionFalse, "ErrImagePull"), pod("kube-flannel", "flannel-x", corev1.ConditionTrue, "")}, "kube-proxy-x (ErrImagePull)"},
		{"no flannel pod yet", []runtime.Object{node(corev1.ConditionTrue),
			pod("kube-system", "kube-proxy-x", corev1.ConditionTrue, "")}, "kube-flannel pods"},
		{"no node", nil, "the API server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			var out bytes.Buffer
			err := WaitNodeReady(ctx, fake.NewClientset(tc.objects...), "n1", &out)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("WaitNodeReady = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("WaitNodeReady = %v, want an error naming %q", err, tc.want)
			case tc.want != "" && !strings.Contains(out.String(), "waiting for "):
				t.Errorf("nothing printed while waiting: %q", out.String())
			}
		})
	}
}

// After a restart (an etcd restore above all) the API still holds the Ready statuses of before:
// they do not count until the kubelet has reported again.
func TestWaitNodeReadySince(t *testing.T) {
	since := time.Now()
	before, after := metav1.NewTime(since.Add(-time.Hour)), metav1.NewTime(since.Add(time.Second))
	nodeAt := func(t metav1.Time) *corev1.Node {
		n := node(corev1.ConditionTrue)
		n.Status.Conditions[0].LastHeartbeatTime = t
		return n
	}
	podAt := func(ns, name string, t metav1.Time) *corev1.Pod {
		p := pod(ns, name, corev1.ConditionTrue, "")
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t}}}}
		return p
	}
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		want    string
	}{
		{"reported again", []runtime.Object{nodeAt(after), podAt("kube-system", "kube-proxy-x", after), podAt("kube-flannel", "flannel-x", after)}, ""},
		{"the node's status from before", []runtime.Object{nodeAt(before), podAt("kube-system", "kube-proxy-x", after), podAt("kube-flannel", "flannel-x", after)}, "the kubelet's first report"},
		{"a pod's status from before", []runtime.Object{nodeAt(after), podAt("kube-system", "kube-proxy-x", after), podAt("kube-flannel", "flannel-x", before)}, "flannel-x (started again)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			var out bytes.Buffer
			err := WaitNodeReadySince(ctx, fake.NewClientset(tc.objects...), "n1", since, &out)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("WaitNodeReadySince = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("WaitNodeReadySince = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
