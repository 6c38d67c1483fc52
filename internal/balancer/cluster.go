package balancer

import (
	"context"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
)

// FromCluster reads the balancer's backends from the cluster: each control plane's API server
// as kubeadm recorded it on the API server's pod (its advertise address and port: what the
// certificates name), and with ingress every node's InternalIP. port is the control-plane
// endpoint's port, the frontend's.
func FromCluster(ctx context.Context, cs kubernetes.Interface, port int, ingress bool) (HAProxy, error) {
	h := HAProxy{Port: port}
	pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		LabelSelector: "component=" + kubeadmconstants.KubeAPIServer, // kubeadm's static pod label
	})
	if err != nil {
		return h, fmt.Errorf("listing the API servers: %w", err)
	}
	for _, p := range pods.Items {
		s, err := apiServer(&p)
		if err != nil {
			return h, err
		}
		h.ControlPlanes = append(h.ControlPlanes, s)
	}
	if ingress {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return h, fmt.Errorf("listing the nodes: %w", err)
		}
		h.Nodes = []Server{}
		for _, n := range nodes.Items {
			if a := internalIP(&n); a != "" {
				h.Nodes = append(h.Nodes, Server{Name: n.Name, Address: a})
			}
		}
	}
	return h, h.Check()
}

// apiServer is the control plane of an API server's mirror pod.
func apiServer(p *corev1.Pod) (Server, error) {
	ep := p.Annotations[kubeadmconstants.KubeAPIServerAdvertiseAddressEndpointAnnotationKey]
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return Server{}, fmt.Errorf("the API server pod %s has no advertise endpoint (annotation %s %q): was its control plane set up by u7s?",
			p.Name, kubeadmconstants.KubeAPIServerAdvertiseAddressEndpointAnnotationKey, ep)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return Server{}, fmt.Errorf("the API server pod %s: advertise endpoint %q: %w", p.Name, ep, err)
	}
	name := p.Spec.NodeName
	if name == "" {
		name = p.Name
	}
	return Server{Name: name, Address: host, Port: n}, nil
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}
