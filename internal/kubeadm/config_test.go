package kubeadm

import (
	"testing"

	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/version"
)

// kubeadm itself must accept the documents, defaulted and validated as `kubeadm init --config`.
func TestInitDocumentsAcceptedByKubeadm(t *testing.T) {
	for _, mode := range []cgroups.Mode{cgroups.V1Delegated, cgroups.None} {
		n := &config.Node{
			NodeName: "node1", AdvertiseAddress: "192.0.2.10", APIServerPort: 6443,
			PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12",
			ImageRepository: "registry.local/k8s-p10", Cgroup: mode,
		}
		docs, err := InitDocuments(InitOptions{Node: n})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := configutil.BytesToInitConfiguration(docs, true)
		if err != nil {
			t.Fatalf("kubeadm rejects the configuration: %v\n%s", err, docs)
		}
		if cfg.KubernetesVersion != version.Pinned.Kubernetes {
			t.Errorf("KubernetesVersion %q", cfg.KubernetesVersion)
		}
		if cfg.ImageRepository != "registry.local/k8s-p10" || cfg.Networking.PodSubnet != "10.244.0.0/16" {
			t.Errorf("repository %q pod subnet %q", cfg.ImageRepository, cfg.Networking.PodSubnet)
		}
		if cfg.LocalAPIEndpoint.AdvertiseAddress != "192.0.2.10" {
			t.Errorf("advertise address %q", cfg.LocalAPIEndpoint.AdvertiseAddress)
		}
		if _, ok := cfg.ComponentConfigs["kubelet.config.k8s.io"]; !ok {
			t.Errorf("no kubelet component config")
		}
		if _, ok := cfg.ComponentConfigs["kubeproxy.config.k8s.io"]; !ok {
			t.Errorf("no kube-proxy component config")
		}
	}
}
