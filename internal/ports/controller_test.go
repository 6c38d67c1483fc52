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
	})
	want := []key{{"tcp", 30001}, {"udp", 30001}, {"tcp", 30002}}
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
		owned: map[key]int{}, failed: map[key]string{}}
	ctx := context.Background()

	taken := svc("taken", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30009})
	c.sync(ctx, []*corev1.Service{svc("web", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30080}), taken})
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
	c.sync(ctx, []*corev1.Service{svc("web", corev1.ServiceTypeNodePort, nil, corev1.ServicePort{NodePort: 30080}), taken})
	if evs, _ := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{}); len(evs.Items) != 1 {
		t.Errorf("the failure was reported %d times", len(evs.Items))
	}
	// Services gone: its forwards go, the manual one stays.
	c.sync(ctx, nil)
	sts, _ = m.ListPorts(ctx)
	if len(sts) != 1 || sts[0].ID != manual.ID {
		t.Errorf("want only the manual forward left, have %v", sts)
	}
}
