package balancer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
)

func apiPod(node, endpoint string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "kube-apiserver-" + node, Namespace: "kube-system",
			Labels:      map[string]string{"component": "kube-apiserver"},
			Annotations: map[string]string{kubeadmconstants.KubeAPIServerAdvertiseAddressEndpointAnnotationKey: endpoint},
		},
		Spec: corev1.PodSpec{NodeName: node},
	}
}

func node(name, ip string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip},
		}},
	}
}

func TestFromCluster(t *testing.T) {
	cs := fake.NewSimpleClientset(
		apiPod("cp2", "10.0.0.12:6443"), apiPod("cp1", "10.0.0.11:7443"),
		// Not an API server: left out.
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etcd-cp1", Namespace: "kube-system", Labels: map[string]string{"component": "etcd"}}},
		node("cp1", "10.0.0.11"), node("cp2", "10.0.0.12"), node("w1", "10.0.0.21"),
	)
	h, err := FromCluster(context.Background(), cs, 8443, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.ControlPlanes) != 2 || h.Nodes != nil || h.Port != 8443 {
		t.Fatalf("got %+v", h)
	}
	cfg, err := h.Config()
	if err != nil {
		t.Fatal(err)
	}
	// Sorted by name, each on its own advertised port.
	i1, i2 := strings.Index(cfg, "server cp1 10.0.0.11:7443 check"), strings.Index(cfg, "server cp2 10.0.0.12:6443 check")
	if i1 < 0 || i2 < 0 || i1 > i2 {
		t.Errorf("servers missing or unsorted:\n%s", cfg)
	}
	for _, want := range []string{"bind *:8443", "option httpchk GET /healthz", "http-check expect status 200",
		"option ssl-hello-chk", "balance roundrobin", "retries 3", "option redispatch", "timeout connect 2s"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("no %q in:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "ingress") || strings.Contains(cfg, "w1") {
		t.Errorf("ingress frontends without --ingress:\n%s", cfg)
	}
	haproxyCheck(t, cfg)

	h, err = FromCluster(context.Background(), cs, 8443, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ = h.Config()
	for _, want := range []string{"bind *:80\n", "bind *:443\n", "server w1 10.0.0.21:80 check", "server cp1 10.0.0.11:443 check"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("--ingress: no %q in:\n%s", want, cfg)
		}
	}
	haproxyCheck(t, cfg)
}

func TestFromClusterRefuses(t *testing.T) {
	// No API server at all, and one without kubeadm's annotation.
	if _, err := FromCluster(context.Background(), fake.NewSimpleClientset(), 8443, false); err == nil || !strings.Contains(err.Error(), "no control planes") {
		t.Errorf("no control planes: %v", err)
	}
	cs := fake.NewSimpleClientset(apiPod("cp1", ""))
	if _, err := FromCluster(context.Background(), cs, 8443, false); err == nil || !strings.Contains(err.Error(), "advertise endpoint") {
		t.Errorf("no annotation: %v", err)
	}
}

func TestHAProxyCheck(t *testing.T) {
	ok := HAProxy{Port: 8443, ControlPlanes: []Server{{Name: "cp1", Address: "10.0.0.11", Port: 6443}}}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]HAProxy{
		"port":         {Port: 0, ControlPlanes: ok.ControlPlanes},
		"address":      {Port: 8443, ControlPlanes: []Server{{Name: "cp1", Address: "cp1.example", Port: 6443}}},
		"name":         {Port: 8443, ControlPlanes: []Server{{Name: "c p", Address: "10.0.0.11", Port: 6443}}},
		"server port":  {Port: 8443, ControlPlanes: []Server{{Name: "cp1", Address: "10.0.0.11", Port: 70000}}},
		"ingress port": {Port: 443, ControlPlanes: ok.ControlPlanes, Nodes: []Server{}},
	} {
		if _, err := h.Config(); err == nil {
			t.Errorf("%s: accepted %+v", name, h)
		}
	}
}

func TestKeepalived(t *testing.T) {
	k := Keepalived{VIP: "192.168.1.10", Interface: "eth0", Priority: 101, RouterID: 10}
	cfg, err := k.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"interface eth0", "virtual_router_id 10", "priority 101", "192.168.1.10/32 dev eth0",
		"state BACKUP", "nopreempt", "kill -0", HAProxyPIDFile, "track_script {\n        haproxy"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("no %q in:\n%s", want, cfg)
		}
	}
	// keepalived reports what it ignores without failing: it must print nothing.
	if out := parsedBy(t, "keepalived", "--config-test", cfg); out != "" {
		t.Errorf("keepalived --config-test:\n%s", out)
	}
	for name, bad := range map[string]Keepalived{
		"vip":       {VIP: "vip", Interface: "eth0", Priority: 100, RouterID: 1},
		"ipv6":      {VIP: "fd00::1", Interface: "eth0", Priority: 100, RouterID: 1},
		"interface": {VIP: "192.168.1.10", Interface: "", Priority: 100, RouterID: 1},
		"priority":  {VIP: "192.168.1.10", Interface: "eth0", Priority: 255, RouterID: 1},
		"router":    {VIP: "192.168.1.10", Interface: "eth0", Priority: 100, RouterID: 0},
	} {
		if _, err := bad.Config(); err == nil {
			t.Errorf("%s: accepted %+v", name, bad)
		}
	}
}

// haproxyCheck has Debian's haproxy (a host dependency) parse cfg.
func haproxyCheck(t *testing.T, cfg string) {
	t.Helper()
	parsedBy(t, "haproxy", "-c", cfg)
}

// parsedBy has tool (a host dependency) test cfg with its flag; it returns what tool printed.
func parsedBy(t *testing.T, tool, flag, cfg string) string {
	t.Helper()
	bin, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found (make host-deps installs it): %v", tool, err)
	}
	f := filepath.Join(t.TempDir(), tool+".cfg")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, flag, "-f", f).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s\n%s", tool, flag, err, out, cfg)
	}
	return string(out)
}
