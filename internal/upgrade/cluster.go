package upgrade

import (
	"context"
	"fmt"
	"net"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/u7s/u7s/internal/kubeadm"
)

// Read asks the cluster what it runs, with a node's credentials or the admin's:
// kubeadm-config's version, every API server's /version (the endpoints of the kubernetes
// Service, each asked directly: through a balancer a node talks to any of them) and the
// kubelets (every node when the credentials may list them; a node may read only its own).
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
	// The Endpoints of the kubernetes Service, which the API servers keep themselves: a node
	// may get them (not list EndpointSlices). Deprecated, still served; the warning says nothing here.
	quiet := rest.CopyConfig(cfg)
	quiet.WarningHandler = rest.NoWarnings{}
	qcs, err := kubernetes.NewForConfig(quiet)
	if err != nil {
		return c, err
	}
	ep, err := qcs.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return c, fmt.Errorf("reading the API servers' addresses (Endpoints default/kubernetes): %w", err)
	}
	for _, sub := range ep.Subsets {
		port := 0
		for _, p := range sub.Ports {
			if p.Name == "" || p.Name == "https" {
				port = int(p.Port)
			}
		}
		for _, a := range sub.Addresses {
			addr := net.JoinHostPort(a.IP, strconv.Itoa(port))
			v, err := serverVersion(cfg, addr)
			if err != nil {
				return c, fmt.Errorf("asking the API server at %s its version: %w", addr, err)
			}
			c.APIServers[addr] = v
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
