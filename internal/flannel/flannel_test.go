package flannel

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

var testOpts = Options{Image: "registry.local/k8s-p10/flannel:v0.28.7", PodCIDR: "10.244.0.0/16"}

func TestObjects(t *testing.T) {
	objs, err := Objects(Options{Image: testOpts.Image, PodCIDR: "10.88.0.0/16", CNIConfDir: "/etc/u7s/cni"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var ds *appsv1.DaemonSet
	var cm *corev1.ConfigMap
	for _, o := range objs {
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *corev1.ConfigMap:
			cm = o
		}
	}
	wantKinds := []string{"Namespace", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "ConfigMap", "DaemonSet"}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("kinds = %v, want %v", kinds, wantKinds)
	}

	spec := ds.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != "install-cni" {
		t.Errorf("init containers = %+v, want only install-cni", spec.InitContainers)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if c.Image != testOpts.Image {
			t.Errorf("container %s image = %q, want %q", c.Name, c.Image, testOpts.Image)
		}
	}
	if got := spec.Containers[0].Args; !slices.Equal(got, []string{"--ip-masq", "--kube-subnet-mgr"}) {
		t.Errorf("flanneld args = %v", got)
	}
	if !spec.HostNetwork || spec.ServiceAccountName != "flannel" {
		t.Errorf("hostNetwork = %v, serviceAccount = %q", spec.HostNetwork, spec.ServiceAccountName)
	}
	caps := spec.Containers[0].SecurityContext.Capabilities.Add
	if !slices.Equal(caps, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("capabilities = %v", caps)
	}
	for _, v := range spec.Volumes {
		if v.Name == "cni" && v.HostPath.Path != "/etc/u7s/cni" {
			t.Errorf("cni volume = %s, want /etc/u7s/cni", v.HostPath.Path)
		}
	}

	var nc map[string]any
	if err := json.Unmarshal([]byte(cm.Data["net-conf.json"]), &nc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"Network": "10.88.0.0/16", "EnableNFTables": false, "Backend": map[string]any{"Type": "vxlan"}}
	if g, w := mustJSON(t, nc), mustJSON(t, want); g != w {
		t.Errorf("net-conf.json = %s, want %s", g, w)
	}
	var cniConf struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(cm.Data["cni-conf.json"]), &cniConf); err != nil {
		t.Fatal(err)
	}
	if cniConf.Name != "cbr0" || len(cniConf.Plugins) != 2 || cniConf.Plugins[0].Type != "flannel" || cniConf.Plugins[1].Type != "portmap" {
		t.Errorf("cni-conf.json = %+v", cniConf)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestObjectsRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no image", Options{PodCIDR: "10.244.0.0/16"}, "no image"},
		{"no cidr", Options{Image: "x"}, "not an IPv4 CIDR"},
		{"ipv6 cidr", Options{Image: "x", PodCIDR: "fd00::/56"}, "not an IPv4 CIDR"},
		{"host bits", Options{Image: "x", PodCIDR: "10.244.1.0/16"}, "use 10.244.0.0/16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Objects(tt.o); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	if err := Apply(ctx, cs, testOpts); err != nil {
		t.Fatal(err)
	}
	ds, err := cs.AppsV1().DaemonSets(Namespace).Get(ctx, DaemonSetName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != testOpts.Image {
		t.Errorf("image = %q", img)
	}
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cm.Data["net-conf.json"], `"Network": "10.244.0.0/16"`) {
		t.Errorf("net-conf.json = %s", cm.Data["net-conf.json"])
	}
	for _, get := range []func() error{
		func() error { _, err := cs.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); return err },
		func() error {
			_, err := cs.RbacV1().ClusterRoles().Get(ctx, "flannel", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "flannel", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(Namespace).Get(ctx, "flannel", metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); err != nil {
			t.Error(err)
		}
	}

	// Something else annotates the DaemonSet (kubectl rollout restart); a second Apply
	// succeeds, keeps that annotation and leaves the object count alone.
	ds.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
	if _, err := cs.AppsV1().DaemonSets(Namespace).Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := len(cs.Actions())
	if err := Apply(ctx, cs, testOpts); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	for _, a := range cs.Actions()[before:] {
		if a.GetVerb() == "delete" {
			t.Errorf("second Apply deleted something: %v", a)
		}
	}
	ds, _ = cs.AppsV1().DaemonSets(Namespace).Get(ctx, DaemonSetName, metav1.GetOptions{})
	if ds.Annotations["kubectl.kubernetes.io/restartedAt"] != "now" {
		t.Errorf("second Apply dropped another writer's annotation: %v", ds.Annotations)
	}
	list, _ := cs.AppsV1().DaemonSets(Namespace).List(ctx, metav1.ListOptions{})
	if len(list.Items) != 1 {
		t.Errorf("%d DaemonSets after two Applies", len(list.Items))
	}

	// A new image and CIDR update the existing objects.
	o := testOpts
	o.Image, o.PodCIDR = "registry.local/k8s-p10/flannel:v0.28.8", "10.88.0.0/16"
	if err := Apply(ctx, cs, o); err != nil {
		t.Fatal(err)
	}
	ds, _ = cs.AppsV1().DaemonSets(Namespace).Get(ctx, DaemonSetName, metav1.GetOptions{})
	cm, _ = cs.CoreV1().ConfigMaps(Namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if ds.Spec.Template.Spec.InitContainers[0].Image != o.Image || !strings.Contains(cm.Data["net-conf.json"], "10.88.0.0/16") {
		t.Errorf("update not applied: image %q, net-conf %s", ds.Spec.Template.Spec.InitContainers[0].Image, cm.Data["net-conf.json"])
	}
}

func TestSetNodePublicIP(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}
	flannelPod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"app": "flannel"}},
			Spec:       corev1.PodSpec{NodeName: node},
		}
	}
	cs := fake.NewClientset(node, flannelPod("on-node1", "node1"), flannelPod("on-node2", "node2"))
	ip := netip.MustParseAddr("192.0.2.10")

	if err := SetNodePublicIP(ctx, cs, "node1", ip); err != nil {
		t.Fatal(err)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
	if got := n.Annotations[PublicIPOverwriteAnnotation]; got != "192.0.2.10" {
		t.Errorf("annotation = %q", got)
	}
	pods, _ := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 1 || pods.Items[0].Name != "on-node2" {
		t.Errorf("pods after the change = %v, want only node2's flannel pod left", pods.Items)
	}

	// Unchanged: no patch, no restart.
	before := len(cs.Actions())
	if err := SetNodePublicIP(ctx, cs, "node1", ip); err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions()[before:] {
		if a.GetVerb() != "get" {
			t.Errorf("unchanged address caused %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}

	if err := SetNodePublicIP(ctx, cs, "node1", netip.MustParseAddr("127.0.0.1")); err == nil {
		t.Error("loopback address accepted")
	}
	if err := SetNodePublicIP(ctx, cs, "nope", ip); err == nil {
		t.Error("missing node accepted")
	}
}

// flanneld reaches the API at the control-plane endpoint, not through the Service address.
func TestAPIServerEnv(t *testing.T) {
	objs, err := Objects(Options{Image: "r/flannel:v1", PodCIDR: "10.244.0.0/16", APIServer: "192.0.2.1:8443"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		ds, ok := o.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		env := map[string]string{}
		for _, c := range ds.Spec.Template.Spec.Containers {
			if c.Name == "kube-flannel" {
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
			}
		}
		if env["KUBERNETES_SERVICE_HOST"] != "192.0.2.1" || env["KUBERNETES_SERVICE_PORT"] != "8443" {
			t.Errorf("flanneld's API env %v", env)
		}
		return
	}
	t.Fatal("no DaemonSet")
}
