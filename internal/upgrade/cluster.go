package upgrade

import (
	"context"
	"fmt"
	"net"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/u7s/u7s/internal/kubeadm"
)

// Read asks the cluster what it runs, with a node's credentials or the admin's:
// kubeadm-config's version, every API server's /version (the endpoints of the kubernetes
// Service, each asked directly, as a node's kubelet talks to whichever the balancer picks) and
// the kubelets (every node when the credentials may list them, else self's).
func Read(ctx context.Context, cfg *rest.Config, self string) (Cluster, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Cluster{}, err
	}
	cc, err := kubeadm.ClusterConfiguration(ctx, cs)
	if err != nil {
		return Cluster{}, err
	}
	c := Cluster{Version: cc.KubernetesVersion, APIServers: map[string]string{}, Kubelets: map[string]string{}}
	if nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nodes.Items {
			c.Kubelets[n.Name] = n.Status.NodeInfo.KubeletVersion
		}
	} else if apierrors.IsForbidden(err) {
		n, err := cs.CoreV1().Nodes().Get(ctx, self, metav1.GetOptions{})
		if err != nil {
			return c, fmt.Errorf("reading node %s: %w", self, err)
		}
		c.Kubelets[self] = n.Status.NodeInfo.KubeletVersion
	} else {
		return c, fmt.Errorf("listing the nodes: %w", err)
	}
	slices, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil {
		return c, fmt.Errorf("listing the API servers (EndpointSlices of the kubernetes Service): %w", err)
	}
	for _, s := range slices.Items {
		port := 0
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https") {
				port = int(*p.Port)
			}
		}
		for _, e := range s.Endpoints {
			for _, ip := range e.Addresses {
				addr := net.JoinHostPort(ip, strconv.Itoa(port))
				v, err := serverVersion(cfg, addr)
				if err != nil {
					return c, fmt.Errorf("asking the API server at %s its version: %w", addr, err)
				}
				c.APIServers[addr] = v
			}
		}
	}
	if len(c.APIServers) == 0 {
		return c, fmt.Errorf("the kubernetes Service has no endpoints: no API server is ready")
	}
	return c, nil
}

// serverVersion asks one API server directly; its certificate names its address.
func serverVersion(cfg *rest.Config, addr string) (string, error) {
	one := rest.CopyConfig(cfg)
	one.Host = "https://" + addr
	one.TLSClientConfig.ServerName = ""
	dc, err := discovery.NewDiscoveryClientForConfig(one)
	if err != nil {
		return "", err
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return "", err
	}
	return info.GitVersion, nil
}
