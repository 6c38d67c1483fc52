package netpol

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

var testOpts = Options{Image: "registry.local/k8s-p10/u7s-netpol:v2.1.0-u7s.1", ServiceCIDR: "10.96.0.0/12", APIServer: "192.0.2.2:6443"}

func daemonSet(t *testing.T, o Options) *appsv1.DaemonSet {
	t.Helper()
	objs, err := Objects(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if ds, ok := obj.(*appsv1.DaemonSet); ok {
			return ds
		}
	}
	t.Fatal("no DaemonSet")
	return nil
}

func TestObjects(t *testing.T) {
	ds := daemonSet(t, testOpts)
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || len(spec.Containers) != 1 {
		t.Fatalf("want one container on the node's network, got hostNetwork %v, %d containers", spec.HostNetwork, len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != testOpts.Image {
		t.Errorf("image %q, want %q", c.Image, testOpts.Image)
	}
	for _, want := range []string{"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--service-cluster-ip-range=10.96.0.0/12", "--hostname-override=$(NODE_NAME)", "--health-port=20244"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["KUBERNETES_SERVICE_HOST"] != "192.0.2.2" || env["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("API server env %v, want 192.0.2.2:6443", env)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != HealthPort || p.HTTPGet.Host != "127.0.0.1" {
		t.Errorf("liveness probe %+v, want /healthz on 127.0.0.1:%d", p, HealthPort)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != "Exists" || spec.Tolerations[0].Effect != "" {
		t.Errorf("tolerations %+v: every node must run it, whatever its taints", spec.Tolerations)
	}
}

func TestObjectsRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no image":       {ServiceCIDR: "10.96.0.0/12"},
		"bad network":    {Image: "x", ServiceCIDR: "10.96.0.0"},
		"host bits":      {Image: "x", ServiceCIDR: "10.96.0.1/12"},
		"IPv6":           {Image: "x", ServiceCIDR: "fd00::/108"},
		"bad API server": {Image: "x", ServiceCIDR: "10.96.0.0/12", APIServer: "192.0.2.2"},
		"empty networks": {Image: "x"},
	} {
		if _, err := Objects(o); err == nil || !strings.Contains(err.Error(), "netpol: ") {
			t.Errorf("%s: error %v, want one naming the option", name, err)
		}
	}
}

// Apply creates everything the controller needs, and a second Apply (an upgrade) updates the
// DaemonSet's image in place.
func TestApply(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	if err := Apply(ctx, cs, testOpts); err != nil {
		t.Fatal(err)
	}
	cr, err := cs.RbacV1().ClusterRoles().Get(ctx, DaemonSetName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{"pods", "namespaces", "nodes", "networkpolicies"} {
		if !grants(cr.Rules, res, "watch") {
			t.Errorf("ClusterRole %s does not let it watch %s", cr.Name, res)
		}
	}
	if _, err := cs.CoreV1().ServiceAccounts(Namespace).Get(ctx, DaemonSetName, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	o := testOpts
	o.Image = "registry.local/k8s-p10/u7s-netpol:v2.1.0-u7s.2"
	if err := Apply(ctx, cs, o); err != nil {
		t.Fatal(err)
	}
	ds, err := cs.AppsV1().DaemonSets(Namespace).Get(ctx, DaemonSetName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ds.Spec.Template.Spec.Containers[0].Image; got != o.Image {
		t.Errorf("after the second Apply the image is %q, want %q", got, o.Image)
	}
}

func grants(rules []rbacv1.PolicyRule, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}
