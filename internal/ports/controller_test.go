package ports

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeManager is rootlesskit's port API in memory; busy host ports fail like a taken port.
type fakeManager struct {
	mu    sync.Mutex
	next  int
	ports map[int]port.Spec
	busy  map[int]bool
}

func newFakeManager() *fakeManager {
	return &fakeManager{next: 1, ports: map[int]port.Spec{}, busy: map[int]bool{}}
}

func (m *fakeManager) AddPort(_ context.Context, sp port.Spec) (*port.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy[sp.ParentPort] {
		return nil, errors.New("listen tcp 0.0.0.0: bind: address already in use")
	}
	id := m.next
	m.next++
	m.ports[id] = sp
	return &port.Status{ID: id, Spec: sp}, nil
}

func (m *fakeManager) ListPorts(context.Context) ([]port.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []port.Status
	for id, sp := range m.ports {
		out = append(out, port.Status{ID: id, Spec: sp})
	}
	return out, nil
}

func (m *fakeManager) RemovePort(_ context.Context, id int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ports, id)
	return nil
}

func svc(name string, typ corev1.ServiceType, annotations map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: annotations},
		Spec:       corev1.ServiceSpec{Type: typ, Ports: ports},
	}
}

func TestDesired(t *testing.T) {
	got := Desired([]*corev1.Service{
		svc("a", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30001, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{NodePort: 30001, Protocol: corev1.ProtocolUDP}),
		svc("lb", corev1.ServiceTypeLoadBalancer, nil, corev1.ServicePort{NodePort: 30002}),
		svc("cluster", corev1.ServiceTypeClusterIP, nil, corev1.ServicePort{Port: 80}),
		svc("off", corev1.ServiceTypeNodePort, map[string]string{DisableAnnotation: "false"}, corev1.ServicePort{NodePort: 30003}),
		svc("sctp", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30004, Protocol: corev1.ProtocolSCTP}),
	}, "10.0.2.100")
	want := []key{{"tcp", "0.0.0.0", 30001}, {"udp", "0.0.0.0", 30001}, {"tcp", "0.0.0.0", 30002}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for _, k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("missing %s in %v", k, got)
		}
	}
}

func TestSyncOwnsOnlyItsForwards(t *testing.T) {
	m := newFakeManager()
	manual, _ := m.AddPort(context.Background(), port.Spec{Proto: "tcp", ParentIP: "0.0.0.0", ParentPort: 6443, ChildPort: 6443})
	m.busy[30009] = true
	cs := fake.NewSimpleClientset()
	var logs []string
	c := &Controller{Ports: m, Client: cs, ChildIP: "10.0.2.100", Logf: func(f string, a ...any) { logs = append(logs, f) },
		owned: map[key]owned{}, failed: map[key]string{}}
	ctx := context.Background()
	sync := func(svcs ...*corev1.Service) { c.sync(ctx, Desired(svcs, c.ChildIP), nil) }

	taken := svc("taken", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30009})
	sync(svc("web", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30080}), taken)
	sts, _ := m.ListPorts(ctx)
	if len(sts) != 2 {
		t.Fatalf("want the manual forward and 30080, have %v", sts)
	}
	evs, _ := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if len(evs.Items) != 1 || evs.Items[0].Reason != "NodePortNotForwarded" || evs.Items[0].InvolvedObject.Name != "taken" ||
		!strings.Contains(evs.Items[0].Message, "in use") {
		t.Errorf("want one NodePortNotForwarded event on taken, have %+v", evs.Items)
	}
	// The same failure is reported once, not at every sync.
	sync(svc("web", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30080}), taken)
	if evs, _ := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{}); len(evs.Items) != 1 {
		t.Errorf("the failure was reported %d times", len(evs.Items))
	}
	// Services gone: its forwards go, the manual one stays.
	sync()
	sts, _ = m.ListPorts(ctx)
	if len(sts) != 1 || sts[0].ID != manual.ID {
		t.Errorf("want only the manual forward left, have %v", sts)
	}
}

func pod(name, ip string, phase corev1.PodPhase, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{PodIP: ip, Phase: phase},
	}
}

// TestDesiredHostPorts: a hostPort goes from its host address (all when it names none) to the
// pod's address and container port; pods without an address, finished ones, host-network ones
// and ports without a hostPort get none.
func TestDesiredHostPorts(t *testing.T) {
	hostNet := pod("hostnet", "192.0.2.2", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 9000, HostPort: 9000})
	hostNet.Spec.HostNetwork = true
	got := DesiredHostPorts([]*corev1.Pod{
		pod("any", "10.244.0.5", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 8080, HostPort: 54323},
			corev1.ContainerPort{ContainerPort: 8081}),
		pod("node-ip", "10.244.0.6", corev1.PodRunning,
			corev1.ContainerPort{ContainerPort: 8080, HostPort: 54324, HostIP: "192.0.2.2"},
			corev1.ContainerPort{ContainerPort: 8080, HostPort: 54324, HostIP: "192.0.2.2", Protocol: corev1.ProtocolUDP}),
		pod("pending", "", corev1.PodPending, corev1.ContainerPort{ContainerPort: 80, HostPort: 54325}),
		pod("done", "10.244.0.7", corev1.PodSucceeded, corev1.ContainerPort{ContainerPort: 80, HostPort: 54326}),
		hostNet,
	})
	want := map[key]target{
		{"tcp", "0.0.0.0", 54323}:   {"10.244.0.5", 8080},
		{"tcp", "192.0.2.2", 54324}: {"10.244.0.6", 8080},
		{"udp", "192.0.2.2", 54324}: {"10.244.0.6", 8080},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, tg := range want {
		if got[k].target != tg {
			t.Errorf("%s: forwards to %v, want %v", k, got[k].target, tg)
		}
	}
}

// TestSyncHostPorts: hostPort forwards follow their pods: made, moved when the pod's address
// changes, and removed with the pod; a node port keeps its port from a hostPort.
func TestSyncHostPorts(t *testing.T) {
	m := newFakeManager()
	c := &Controller{Ports: m, Client: fake.NewSimpleClientset(), ChildIP: "10.0.2.100", Logf: func(string, ...any) {},
		owned: map[key]owned{}, failed: map[key]string{}}
	ctx := context.Background()
	specs := func() map[string]port.Spec {
		sts, _ := m.ListPorts(ctx)
		out := map[string]port.Spec{}
		for _, st := range sts {
			out[Format(st.Spec)] = st.Spec
		}
		return out
	}
	p := pod("web", "10.244.0.5", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 8080, HostPort: 54323, HostIP: "192.0.2.2"})
	c.sync(ctx, nil, DesiredHostPorts([]*corev1.Pod{p}))
	if got := specs(); len(got) != 1 || got[Format(port.Spec{Proto: "tcp", ParentIP: "192.0.2.2", ParentPort: 54323, ChildIP: "10.244.0.5", ChildPort: 8080})].ChildPort != 8080 {
		t.Fatalf("want 192.0.2.2:54323 to 10.244.0.5:8080, have %v", got)
	}
	p2 := p.DeepCopy()
	p2.Status.PodIP = "10.244.0.9"
	c.sync(ctx, nil, DesiredHostPorts([]*corev1.Pod{p2}))
	if got := specs(); len(got) != 1 || got[Format(port.Spec{Proto: "tcp", ParentIP: "192.0.2.2", ParentPort: 54323, ChildIP: "10.244.0.9", ChildPort: 8080})].ChildPort != 8080 {
		t.Fatalf("want the forward moved to 10.244.0.9, have %v", got)
	}
	// A node port on the same host port wins.
	nodePort := svc("np", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30080})
	hp := pod("hp", "10.244.0.6", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 80, HostPort: 30080})
	c.sync(ctx, Desired([]*corev1.Service{nodePort}, c.ChildIP), DesiredHostPorts([]*corev1.Pod{hp}))
	if got := specs(); len(got) != 1 || got[Format(port.Spec{Proto: "tcp", ParentIP: "0.0.0.0", ParentPort: 30080, ChildIP: "10.0.2.100", ChildPort: 30080})].ChildPort != 30080 {
		t.Fatalf("want only the node port's forward, have %v", got)
	}
	c.sync(ctx, nil, nil)
	if got := specs(); len(got) != 0 {
		t.Errorf("want no forwards left, have %v", got)
	}
}
