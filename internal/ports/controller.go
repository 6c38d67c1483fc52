package ports

import (
	"context"
	"fmt"
	"log"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// DisableAnnotation, set to "false" on a Service, keeps its node ports unforwarded.
const DisableAnnotation = "u7s.io/forward-node-ports"

// Controller forwards from the host every NodePort of every Service (NodePort and
// LoadBalancer types) and every hostPort of the pods on this node, and removes the forward
// when the port goes away. It only ever removes forwards it created: the control-plane ports
// and those added by hand are not its own.
//
// A hostPort needs the forward because the node's address is not local inside the namespace
// (nsinit.Network): a connection to it, from the network or from the node itself, arrives on
// the host. Its forward goes straight to the pod's address and container port, so that a
// hostPort bound to the node's address works as well as one on every address.
type Controller struct {
	Ports  port.Manager
	Client kubernetes.Interface
	// ChildIP is where forwarded NodePort connections go inside the namespace: the tap0
	// address, which kube-proxy's NodePort rules treat as local.
	ChildIP string
	// NodeName is this node: the pods whose hostPorts are forwarded.
	NodeName string
	Logf     func(format string, args ...any)

	mu    sync.Mutex
	owned map[key]owned // forward → what it forwards to, with rootlesskit's port id
	// failed remembers ports that could not be forwarded, so that each problem is reported once.
	failed map[key]string
}

// key is a listening host port: protocol, host address ("0.0.0.0" for all) and port.
type key struct {
	proto    string
	parentIP string
	port     int
}

func (k key) String() string {
	if k.parentIP == "0.0.0.0" {
		return fmt.Sprintf("%d/%s", k.port, k.proto)
	}
	return fmt.Sprintf("%s:%d/%s", k.parentIP, k.port, k.proto)
}

type owned struct {
	id     int
	target target
}

// target is where a forward's connections go inside the namespace.
type target struct {
	ip   string
	port int
}

// want is a forward a Service (node port) or a pod (hostPort) asks for.
type want struct {
	target target
	// svc is nil for a hostPort; target.ip is then the pod's address.
	svc *corev1.Service
	pod *corev1.Pod
}

func (w want) owner() string {
	if w.svc != nil {
		return "service " + w.svc.Namespace + "/" + w.svc.Name
	}
	return "pod " + w.pod.Namespace + "/" + w.pod.Name
}

// Run watches Services and this node's pods until ctx ends; forwards are created for what
// exists at start too.
func (c *Controller) Run(ctx context.Context) {
	if c.Logf == nil {
		c.Logf = log.Printf
	}
	c.owned, c.failed = map[key]owned{}, map[key]string{}
	factory := informers.NewSharedInformerFactory(c.Client, 10*time.Minute)
	svcs := factory.Core().V1().Services()
	// The node's credentials may list only its own pods.
	podFactory := informers.NewSharedInformerFactoryWithOptions(c.Client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", c.NodeName).String()
		}))
	pods := podFactory.Core().V1().Pods()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, o any) { poke(o) }}
	_, _ = svcs.Informer().AddEventHandler(handler)
	_, _ = pods.Informer().AddEventHandler(handler)
	factory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcs.Informer().HasSynced, pods.Informer().HasSynced) {
		return
	}
	c.Logf("NodePort and hostPort forwarding started")
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		s, err1 := svcs.Lister().List(labels.Everything())
		p, err2 := pods.Lister().List(labels.Everything())
		if err1 == nil && err2 == nil {
			c.sync(ctx, Desired(s, c.ChildIP), DesiredHostPorts(p))
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

// protocol is the port driver's name of a Kubernetes protocol; SCTP has none.
func protocol(p corev1.Protocol) (string, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return "tcp", true
	case corev1.ProtocolUDP:
		return "udp", true
	}
	return "", false
}

// Desired returns the forwards the Services ask for, to childIP at the node port.
func Desired(svcs []*corev1.Service, childIP string) map[key]want {
	out := map[key]want{}
	for _, s := range svcs {
		if s.Spec.Type != corev1.ServiceTypeNodePort && s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		if s.Annotations[DisableAnnotation] == "false" {
			continue
		}
		for _, p := range s.Spec.Ports {
			proto, ok := protocol(p.Protocol)
			if p.NodePort == 0 || !ok {
				continue
			}
			out[key{proto, "0.0.0.0", int(p.NodePort)}] = want{target: target{childIP, int(p.NodePort)}, svc: s}
		}
	}
	return out
}

// DesiredHostPorts returns the forwards the hostPorts of running pods ask for: from the host
// address of the hostPort (every address when it names none) to the pod's address and
// container port. Pods of the host network bind their ports in the namespace themselves.
func DesiredHostPorts(pods []*corev1.Pod) map[key]want {
	out := map[key]want{}
	for _, p := range pods {
		if p.Spec.HostNetwork || p.Status.PodIP == "" || p.DeletionTimestamp != nil ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		podIP := net.ParseIP(p.Status.PodIP)
		if podIP == nil || podIP.To4() == nil {
			continue // the port driver forwards IPv4
		}
		for _, ctr := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			for _, cp := range ctr.Ports {
				proto, ok := protocol(cp.Protocol)
				if cp.HostPort == 0 || !ok {
					continue
				}
				hostIP := cp.HostIP
				if hostIP == "" || hostIP == "::" {
					hostIP = "0.0.0.0"
				}
				if ip := net.ParseIP(hostIP); ip == nil || ip.To4() == nil {
					continue
				}
				out[key{proto, hostIP, int(cp.HostPort)}] = want{target: target{p.Status.PodIP, int(cp.ContainerPort)}, pod: p}
			}
		}
	}
	return out
}

// sync makes the forwards the controller owns those of nodePorts and hostPorts. A node port
// wins over a hostPort on the same host port.
func (c *Controller) sync(ctx context.Context, nodePorts, hostPorts map[key]want) {
	desired := map[key]want{}
	for k, w := range hostPorts {
		desired[k] = w
	}
	for k, w := range nodePorts {
		desired[k] = w
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, o := range c.owned {
		w, ok := desired[k]
		if ok && w.target == o.target {
			continue
		}
		if err := c.Ports.RemovePort(ctx, o.id); err != nil {
			c.Logf("removing the forward of host port %s: %v", k, err)
			continue
		}
		if ok {
			c.Logf("host port %s: forward moved to %s:%d", k, w.target.ip, w.target.port)
		} else {
			c.Logf("host port %s no longer used: forward removed", k)
		}
		delete(c.owned, k)
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
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].port != keys[j].port {
			return keys[i].port < keys[j].port
		}
		return keys[i].String() < keys[j].String()
	})
	for _, k := range keys {
		if _, ok := c.owned[k]; ok {
			continue
		}
		w := desired[k]
		sp := port.Spec{Proto: k.proto, ParentIP: k.parentIP, ParentPort: k.port, ChildIP: w.target.ip, ChildPort: w.target.port}
		st, err := Add(ctx, c.Ports, sp)
		if err != nil {
			msg := err.Error()
			if c.failed[k] != msg {
				c.failed[k] = msg
				c.Logf("%s: %v", w.owner(), err)
				c.event(ctx, w, fmt.Sprintf("u7s could not forward host port %s from the host: %v", k, err))
			}
			continue
		}
		delete(c.failed, k)
		c.owned[k] = owned{id: st.ID, target: w.target}
		c.Logf("%s: host port %s forwarded from the host", w.owner(), k)
	}
}

func (c *Controller) removeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for k, o := range c.owned {
		_ = c.Ports.RemovePort(ctx, o.id)
		delete(c.owned, k)
	}
}

// event records a Warning on the Service or pod, where `kubectl describe` shows it.
func (c *Controller) event(ctx context.Context, w want, msg string) {
	now := metav1.Now()
	ref, reason := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1"}, "HostPortNotForwarded"
	obj := metav1.Object(w.pod)
	if w.svc != nil {
		ref.Kind, reason, obj = "Service", "NodePortNotForwarded", w.svc
	}
	ref.Namespace, ref.Name, ref.UID, ref.ResourceVersion = obj.GetNamespace(), obj.GetName(), obj.GetUID(), obj.GetResourceVersion()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: obj.GetName() + ".", Namespace: obj.GetNamespace()},
		InvolvedObject: ref,
		Reason:         reason, Message: msg, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "u7s-port-forwarder"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, err := c.Client.CoreV1().Events(obj.GetNamespace()).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		c.Logf("recording an event on %s: %v", w.owner(), err)
	}
}
