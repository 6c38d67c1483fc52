// Package netpol deploys NetworkPolicy enforcement on every node of a u7s cluster: the
// objects of manifests/u7s-netpol.yml, a DaemonSet of kube-router's network policy controller
// (cmd/u7s-netpol, its in-pod side in package controller), with the image and the cluster's
// networks u7s chose.
package netpol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/u7s/u7s/internal/apply"
	"github.com/u7s/u7s/internal/namespace"
	"github.com/u7s/u7s/manifests"
)

const (
	// Namespace holds the controller's DaemonSet and ServiceAccount.
	Namespace = "kube-system"
	// DaemonSetName is the controller's DaemonSet, and its pods' app.kubernetes.io/name.
	DaemonSetName = "u7s-netpol"
	// HealthPort is where the controller serves /healthz in the node's network namespace
	// (kube-router's default; the manifest's liveness probe asks it).
	HealthPort = 20244
	// NodePortRange is the cluster's NodePort range (kube-apiserver's default, which u7s keeps).
	NodePortRange = "30000-32767"
)

// Options are what the objects depend on.
type Options struct {
	// Image is the controller's image: <U7S_REGISTRY>/u7s-netpol:<NETPOL_IMAGE_TAG>, or
	// upstream's kube-router image for the native registry, which takes the same arguments.
	Image string
	// ServiceCIDR is the cluster's Service network.
	ServiceCIDR string
	// APIServer is HOST:PORT of the API server the pods talk to, as for flannel: the kubelet's
	// own endpoint, so that the controller does not depend on the Service network's rules.
	APIServer string
}

// Args are the controller's arguments: kube-router's flags, which u7s-netpol shares, with
// every part of kube-router but its firewall off.
func (o Options) Args() []string {
	return []string{
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--hostname-override=$(NODE_NAME)",
		"--service-cluster-ip-range=" + o.ServiceCIDR,
		"--service-node-port-range=" + NodePortRange,
		"--health-port=" + strconv.Itoa(HealthPort),
	}
}

func (o Options) validate() error {
	if o.Image == "" {
		return errors.New("netpol: no image given: pass <U7S_REGISTRY>/u7s-netpol:<NETPOL_IMAGE_TAG>")
	}
	p, err := netip.ParsePrefix(o.ServiceCIDR)
	if err != nil || !p.Addr().Is4() || p != p.Masked() {
		return fmt.Errorf("netpol: Service network %q is not an IPv4 network such as 10.96.0.0/12", o.ServiceCIDR)
	}
	return nil
}

// Objects returns the controller's objects in the order to create them, configured by o.
func Objects(o Options) ([]runtime.Object, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	objs, err := apply.Decode(manifests.Netpol)
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if ds, ok := obj.(*appsv1.DaemonSet); ok && ds.Name == DaemonSetName {
			if err := setDaemonSet(ds, o); err != nil {
				return nil, err
			}
			return objs, nil
		}
	}
	return nil, fmt.Errorf("manifest %s lacks DaemonSet %s", manifests.Netpol, DaemonSetName)
}

func setDaemonSet(ds *appsv1.DaemonSet, o Options) error {
	for i := range ds.Spec.Template.Spec.Containers {
		c := &ds.Spec.Template.Spec.Containers[i]
		c.Image = o.Image
		c.Args = o.Args()
		if o.APIServer != "" {
			if err := apply.SetAPIServer(c, o.APIServer); err != nil {
				return fmt.Errorf("netpol: %w", err)
			}
		}
	}
	return nil
}

// Apply creates the controller's objects, or updates them where they exist.
func Apply(ctx context.Context, cs kubernetes.Interface, o Options) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	if err := apply.Objects(ctx, cs, objs); err != nil {
		return fmt.Errorf("applying the NetworkPolicy controller: %w", err)
	}
	return nil
}

// Enforcing asks this node's controller, in the node's network namespace (the namespace
// process pid), whether it enforces the policies: kube-router's /healthz, which fails when its
// rules are overdue. The error says what to look at.
func Enforcing(pid int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(HealthPort))
	conn, err := namespace.DialInNet(pid, "tcp", addr, 3*time.Second)
	if err != nil {
		return fmt.Errorf("its controller does not answer on %s in the node's namespace (%w): "+
			"kubectl -n %s get pods -l app.kubernetes.io/name=%s -o wide; kubectl -n %s logs ds/%s",
			addr, err, Namespace, DaemonSetName, Namespace, DaemonSetName)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		return fmt.Errorf("asking its controller on %s: %w", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("asking its controller on %s: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("its controller reports %s: its rules are overdue (kubectl -n %s logs ds/%s)", resp.Status, Namespace, DaemonSetName)
	}
	return nil
}
