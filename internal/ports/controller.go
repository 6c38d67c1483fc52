package ports

import (
	"context"
	"fmt"
	"log"
	"sort"
	"sync"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// DisableAnnotation, set to "false" on a Service, keeps its node ports unforwarded.
const DisableAnnotation = "u7s.io/forward-node-ports"

// Controller forwards from the host every NodePort of every Service (NodePort and
// LoadBalancer types), and removes the forward when the port goes away. It only ever removes
// forwards it created: the control-plane ports and those added by hand are not its own.
type Controller struct {
	Ports  port.Manager
	Client kubernetes.Interface
	// ChildIP is where forwarded connections go inside the namespace: the tap0 address, which
	// kube-proxy's NodePort rules treat as local.
	ChildIP string
	Logf    func(format string, args ...any)

	mu    sync.Mutex
	owned map[key]int // forward → rootlesskit port id
	// failed remembers ports that could not be forwarded, so that each problem is reported once.
	failed map[key]string
}

type key struct {
	proto string
	port  int
}

func (k key) String() string { return fmt.Sprintf("%d/%s", k.port, k.proto) }

// want is a forward a Service asks for.
type want struct{ svc *corev1.Service }

// Run watches Services until ctx ends; forwards are created for what exists at start too.
func (c *Controller) Run(ctx context.Context) {
	if c.Logf == nil {
		c.Logf = log.Printf
	}
	c.owned, c.failed = map[key]int{}, map[key]string{}
	factory := informers.NewSharedInformerFactory(c.Client, 10*time.Minute)
	inf := factory.Core().V1().Services()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, o any) { poke(o) },
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return
	}
	c.Logf("NodePort forwarding started")
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		svcs, err := inf.Lister().List(labels.Everything())
		if err == nil {
			c.sync(ctx, svcs)
		}
		select {
		case <-ctx.Done():
			c.removeAll()
			return
		case <-kick:
		case <-tick.C:
		}
	}
}

// Desired returns the forwards the Services ask for.
func Desired(svcs []*corev1.Service) map[key]want {
	out := map[key]want{}
	for _, s := range svcs {
		if s.Spec.Type != corev1.ServiceTypeNodePort && s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		if s.Annotations[DisableAnnotation] == "false" {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			var proto string
			switch p.Protocol {
			case corev1.ProtocolTCP, "":
				proto = "tcp"
			case corev1.ProtocolUDP:
				proto = "udp"
			default:
				continue // SCTP: the builtin port driver has none
			}
			out[key{proto, int(p.NodePort)}] = want{svc: s}
		}
	}
	return out
}

func (c *Controller) sync(ctx context.Context, svcs []*corev1.Service) {
	desired := Desired(svcs)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, id := range c.owned {
		if _, ok := desired[k]; !ok {
			if err := c.Ports.RemovePort(ctx, id); err != nil {
				c.Logf("removing the forward of node port %s: %v", k, err)
				continue
			}
			c.Logf("node port %s no longer used: forward removed", k)
			delete(c.owned, k)
		}
	}
	for k := range c.failed {
		if _, ok := desired[k]; !ok {
			delete(c.failed, k)
		}
	}
	keys := make([]key, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].port < keys[j].port })
	for _, k := range keys {
		if _, ok := c.owned[k]; ok {
			continue
		}
		w := desired[k]
		sp := port.Spec{Proto: k.proto, ParentIP: "0.0.0.0", ParentPort: k.port, ChildIP: c.ChildIP, ChildPort: k.port}
		st, err := Add(ctx, c.Ports, sp)
		if err != nil {
			msg := err.Error()
			if c.failed[k] != msg {
				c.failed[k] = msg
				c.Logf("service %s/%s: %v", w.svc.Namespace, w.svc.Name, err)
				c.event(ctx, w.svc, "NodePortNotForwarded", fmt.Sprintf("u7s could not forward node port %s from the host: %v", k, err))
			}
			continue
		}
		delete(c.failed, k)
		c.owned[k] = st.ID
		c.Logf("service %s/%s: node port %s forwarded from the host", w.svc.Namespace, w.svc.Name, k)
	}
}

func (c *Controller) removeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for k, id := range c.owned {
		_ = c.Ports.RemovePort(ctx, id)
		delete(c.owned, k)
	}
}

// event records a Warning on the Service, where `kubectl describe service` shows it.
func (c *Controller) event(ctx context.Context, s *corev1.Service, reason, msg string) {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: s.Name + ".", Namespace: s.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Service", APIVersion: "v1", Namespace: s.Namespace, Name: s.Name, UID: s.UID,
			ResourceVersion: s.ResourceVersion,
		},
		Reason: reason, Message: msg, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "u7s-nodeport-forwarder"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, err := c.Client.CoreV1().Events(s.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		c.Logf("recording an event on service %s/%s: %v", s.Namespace, s.Name, err)
	}
}
